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
