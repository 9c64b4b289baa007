import CXL
import Foundation
import Testing
import VFIO
@testable import VFIOCXL
#if canImport(Glibc)
import Glibc
#endif

/// Device memory at `memoryFileOffset` in a shared-memory file (as a kernel device's BAR sits at its region offset).
private final class OffsetMemory: CXLDeviceMemory, @unchecked Sendable {
    let file: VFIOSharedMemory
    let memoryFileOffset: UInt64
    let memorySize: UInt64
    var memoryFD: Int32 { file.fd }
    init(fileSize: Int, at offset: UInt64, size: UInt64) throws {
        file = try VFIOSharedMemory(name: "memory-region-test", size: fileSize)
        memoryFileOffset = offset
        memorySize = size
    }
}

@Suite struct MemoryRegionTests {
    /// DPA d is file byte `memoryFileOffset + d` on every path: the in-place calls the server uses (a copy from the
    /// mapping when the offset is page aligned, pread/pwrite when it is not) and the array calls.
    @Test(arguments: [UInt64(0), 4096, 100])
    func inPlaceAndArrayAccessesUseTheFileOffset(offset: UInt64) throws {
        let memory = try OffsetMemory(fileSize: 3 * 4096, at: offset, size: 8192)
        for i in 0..<(3 * 4096) { memory.file.base.storeBytes(of: UInt8(truncatingIfNeeded: i &* 7 &+ 3), toByteOffset: i, as: UInt8.self) }
        let handler = MemoryRegionHandler(memory: memory)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        let dpas: [UInt64] = [0, 1, 4000, 8192 - 64]
        for dpa in dpas {
            try handler.read(offset: dpa, into: buffer)
            let expected = (0..<64).map { UInt8(truncatingIfNeeded: (Int(offset + dpa) + $0) &* 7 &+ 3) }
            #expect(Array(buffer) == expected, "in-place read of DPA \(dpa)")
            #expect(try handler.read(offset: dpa, count: 64) == expected, "array read of DPA \(dpa)")
        }
        let data = (0..<64).map { UInt8(255 - $0) }
        try data.withUnsafeBytes { try handler.write(offset: 512, from: $0) }
        #expect(Array(UnsafeRawBufferPointer(start: memory.file.base + Int(offset) + 512, count: 64)) == data)
        // Bounds and the gate hold on the in-place path too.
        #expect(throws: VFIOError.self) { try handler.read(offset: 8192 - 63, into: buffer) }
        handler.setActive(false)
        #expect(throws: VFIOError.self) { try handler.read(offset: 0, into: buffer) }
    }
}

@Suite struct MemoryRegionBadInputTests {
    /// Hostile offsets are clear errors on the in-place paths, never a trap or a stray copy: an access past the
    /// region's end, one whose end wraps past 2^64, and a read beyond a backing file shorter than the memory it
    /// claims (no mapping then; pread comes back short).
    @Test func hostileOffsetsAreErrors() throws {
        let memory = try OffsetMemory(fileSize: 4096, at: 0, size: 8192)
        let handler = MemoryRegionHandler(memory: memory)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        try handler.read(offset: 4096 - 64, into: buffer)  // inside the file: read
        #expect(throws: VFIOError.self) { try handler.read(offset: 4096, into: buffer) }
        #expect(throws: VFIOError.self) { try handler.read(offset: 8192 - 32, into: buffer) }
        #expect(throws: VFIOError.self) { try handler.read(offset: .max - 8, into: buffer) }
        let data = [UInt8](repeating: 0xA5, count: 64)
        #expect(throws: VFIOError.self) { try data.withUnsafeBytes { try handler.write(offset: 8192 - 32, from: $0) } }
        #expect(throws: VFIOError.self) { try data.withUnsafeBytes { try handler.write(offset: .max - 8, from: $0) } }
        #expect(throws: VFIOError.self) { try handler.read(offset: .max - 8, count: 64) }
        #expect(!Array(UnsafeRawBufferPointer(start: memory.file.base, count: 4096)).contains(0xA5))
    }
}

/// Device memory in a plain temporary file, which anyone holding the fd may truncate.
private final class UnsealedFileMemory: CXLDeviceMemory, @unchecked Sendable {
    let memoryFD: Int32
    let memorySize: UInt64
    init(size: UInt64) throws {
        var template = Array((NSTemporaryDirectory() + "/cxl-unsealed-XXXXXX").utf8CString)
        memoryFD = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard memoryFD >= 0 else { throw VFIOError.system(errno: errno, "mkstemp") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        memorySize = size
        guard ftruncate(memoryFD, off_t(size)) == 0 else { throw VFIOError.system(errno: errno, "ftruncate") }
    }
    deinit { close(memoryFD) }
}

@Suite struct MemoryRegionShrinkTests {
    /// A backing whose size is not sealed is never mapped: when its holder truncates it, a region read is a clear
    /// error (pread comes back short). Mapped, the same read would kill the process with SIGBUS.
    @Test func truncatedUnsealedBackingIsAnErrorNotSIGBUS() throws {
        let memory = try UnsealedFileMemory(size: 2 * 4096)
        let handler = MemoryRegionHandler(memory: memory)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { buffer.deallocate() }
        try handler.read(offset: 4096, into: buffer)
        #expect(ftruncate(memory.memoryFD, 0) == 0)
        #expect(throws: VFIOError.self) { try handler.read(offset: 4096, into: buffer) }
        #expect(throws: VFIOError.self) { try handler.read(offset: 0, into: buffer) }
    }

    /// Our shared memory cannot be shrunk, grown or further sealed by a peer holding its fd, so the region maps it
    /// and a peer's ftruncate fails instead of pulling the pages out from under the mapping.
    @Test func sealedSharedMemoryRefusesTruncation() throws {
        let memory = try OffsetMemory(fileSize: 2 * 4096, at: 0, size: 8192)
        #expect(VFIOSharedMemory.sizeIsSealed(fd: memory.memoryFD))
        let handler = MemoryRegionHandler(memory: memory)
        memory.file.base.storeBytes(of: 0x5A, toByteOffset: 4096, as: UInt8.self)
        #expect(ftruncate(memory.memoryFD, 0) == -1 && errno == EPERM)
        #expect(ftruncate(memory.memoryFD, 4 * 4096) == -1 && errno == EPERM)
        #expect(try handler.read(offset: 4096, count: 1) == [0x5A])
        var st = stat()
        #expect(fstat(memory.memoryFD, &st) == 0 && st.st_size == 2 * 4096)
        #expect(!VFIOSharedMemory.sizeIsSealed(fd: STDIN_FILENO))
    }
}
