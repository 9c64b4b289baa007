import Foundation
import Testing
@testable import VFIO
import VFIOTestSupport

/// `VFIOSharedMemory`'s guarded copies: a mapping whose file a peer shrank fails the copy (EFAULT) instead of killing
/// the process with SIGBUS, and a SIGBUS anywhere else still kills it.
@Suite struct SharedMemoryTests {
    /// A shrinkable file and a shared mapping of all of it.
    private static func shrinkableMapping(size: Int) throws -> (file: ShrinkableFile, memory: VFIOSharedMemory) {
        let file = try ShrinkableFile(size: size)
        return (file, try file.map(size: size))
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

    /// Ours are sealed (a peer given the fd gets EPERM from ftruncate); a file mapped from elsewhere says whether it is.
    @Test func sizeIsSealedSaysWhetherAPeerCanShrinkTheFile() throws {
        let ours = try VFIOSharedMemory(name: "sealed", size: 0x1000)
        #expect(ours.sizeIsSealed)
        #expect(ftruncate(ours.fd, 0) != 0 && errno == EPERM)
        let (file, theirs) = try Self.shrinkableMapping(size: 0x1000)
        #expect(!theirs.sizeIsSealed)
        let again = try VFIOSharedMemory(mapping: ours.fd, offset: 0, size: 0x1000, writable: true, takeOwnership: false)
        #expect(again.sizeIsSealed)
        #expect(file.shrink(to: 0))
    }

    @Test func copiesOutsideTheMappingAreRefusedNotMade() throws {
        let (_, m) = try Self.shrinkableMapping(size: 0x1000)
        var buffer = [UInt8](repeating: 0, count: 16)
        for (offset, count) in [(0xFF8, 16), (-1, 1), (0x1001, 0), (0, -1), (Int.max, 16)] {
            #expect(throws: VFIOError.self) { try buffer.withUnsafeMutableBytes { try m.copy(at: offset, to: $0.baseAddress!, count: count) } }
            #expect(throws: VFIOError.self) { try buffer.withUnsafeBytes { try m.copy(at: offset, from: $0.baseAddress!, count: count) } }
        }
        try buffer.withUnsafeMutableBytes { try m.copy(at: 0xFF0, to: $0.baseAddress!, count: 16) }
    }

    @Test func copiesFromPagesTheFileNoLongerHasFailWithEFAULT() throws {
        let (file, m) = try Self.shrinkableMapping(size: 0x3000)
        #expect(file.shrink(to: 0x1000))
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
        let (file, m) = try Self.shrinkableMapping(size: 0x2000)
        #expect(m.write(offset: 0xFFC, data: [1, 2, 3, 4]))
        #expect(file.shrink(to: 0x1000))
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
            let (file, m) = try SharedMemoryTests.shrinkableMapping(size: 0x2000)
            var byte: UInt8 = 0
            try m.copy(at: 0, to: &byte, count: 1)   // installs the handler
            _ = file.shrink(to: 0x1000)
            #expect(throws: VFIOError.self) { try m.copy(at: 0x1000, to: &byte, count: 1) }
            m.base.storeBytes(of: 1, toByteOffset: 0x1000, as: UInt8.self)   // unguarded: dies here
        }
    }
}
