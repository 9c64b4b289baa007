import Foundation
import Testing
@testable import VFIO

/// `VFIOSharedMemory`'s guarded copies: a mapping whose file a peer shrank fails the copy (EFAULT) instead of killing
/// the process with SIGBUS, and a SIGBUS anywhere else still kills it.
@Suite struct SharedMemoryTests {
    /// An unlinked regular file of `size` bytes mapped shared: a file its holder can still shrink, as QEMU's guest RAM
    /// is to a vfio-user server.
    private static func shrinkableMapping(size: Int) throws -> (fd: Int32, memory: VFIOSharedMemory) {
        let path = NSTemporaryDirectory() + "/swift-cxl-shm-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VFIOError.system(errno: errno, "open \(path)") }
        unlink(path)
        guard ftruncate(fd, off_t(size)) == 0 else { close(fd); throw VFIOError.system(errno: errno, "ftruncate") }
        return (fd, try VFIOSharedMemory(mapping: fd, offset: 0, size: size, writable: true, takeOwnership: true))
    }

    @Test func copiesInsideTheFileMoveTheBytes() throws {
        let (_, m) = try Self.shrinkableMapping(size: 0x2000)
        let data = [UInt8](0..<200)
        try data.withUnsafeBytes { try m.copy(at: 0x1F00, from: $0.baseAddress!, count: 200) }
        var back = [UInt8](repeating: 0, count: 200)
        try back.withUnsafeMutableBytes { try m.copy(at: 0x1F00, to: $0.baseAddress!, count: 200) }
        #expect(back == data)
        #expect(m.read(offset: 0x1F00, count: 200) == data)
    }

    @Test func copiesFromPagesTheFileNoLongerHasFailWithEFAULT() throws {
        let (fd, m) = try Self.shrinkableMapping(size: 0x3000)
        #expect(ftruncate(fd, 0x1000) == 0)
        var buffer = [UInt8](repeating: 0, count: 64)
        for offset in [0x1000, 0x2FC0, 0x0FE0] {   // the last one starts in the page that is left and runs out of it
            #expect(throws: VFIOError.self) { try buffer.withUnsafeMutableBytes { try m.copy(at: offset, to: $0.baseAddress!, count: 64) } }
            #expect(throws: VFIOError.self) { try buffer.withUnsafeBytes { try m.copy(at: offset, from: $0.baseAddress!, count: 64) } }
        }
        do {
            try buffer.withUnsafeMutableBytes { try m.copy(at: 0x1000, to: $0.baseAddress!, count: 64) }
            Issue.record("copy from a truncated page succeeded")
        } catch VFIOError.system(let e, _) {
            #expect(e == EFAULT)
        }
        // What is left of the file still copies, both ways.
        try buffer.withUnsafeMutableBytes { try m.copy(at: 0, to: $0.baseAddress!, count: 64) }
        try buffer.withUnsafeBytes { try m.copy(at: 0xFC0, from: $0.baseAddress!, count: 64) }
    }

    /// `read(offset:count:)` and `write(offset:data:)` (what `cxlkit conform` reads a server's or the kernel's
    /// mapping with) are guarded too: nil and false for pages that are gone, as for a range outside the mapping.
    @Test func arrayReadsAndWritesOfPagesThatAreGoneFailCleanly() throws {
        let (fd, m) = try Self.shrinkableMapping(size: 0x2000)
        #expect(m.write(offset: 0xFFC, data: [1, 2, 3, 4]))
        #expect(ftruncate(fd, 0x1000) == 0)
        #expect(m.read(offset: 0x1000, count: 4) == nil)
        #expect(m.read(offset: 0xFFE, count: 4) == nil)
        #expect(!m.write(offset: 0x1800, data: [9]))
        #expect(m.read(offset: 0xFFC, count: 4) == [1, 2, 3, 4])
        #expect(m.read(offset: 0x2000, count: 0) == [])
        #expect(m.read(offset: 0x1FFF, count: 2) == nil)
    }

    /// The guard catches only faults inside a guarded copy's ranges; any other SIGBUS still ends the process, as
    /// before the handler was installed.
    @Test func aFaultOutsideAGuardedCopyStillKillsTheProcess() async {
        await #expect(processExitsWith: .signal(SIGBUS)) {
            let (fd, m) = try SharedMemoryTests.shrinkableMapping(size: 0x2000)
            var byte: UInt8 = 0
            try m.copy(at: 0, to: &byte, count: 1)   // installs the handler
            _ = ftruncate(fd, 0x1000)
            #expect(throws: VFIOError.self) { try m.copy(at: 0x1000, to: &byte, count: 1) }
            m.base.storeBytes(of: 1, toByteOffset: 0x1000, as: UInt8.self)   // unguarded: dies here
        }
    }
}
