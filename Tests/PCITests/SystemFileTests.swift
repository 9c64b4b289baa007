import Foundation
import Testing
import SystemPackage
import TestSupport
@testable import PCI

/// The file helpers every backend uses (PCI/SystemFile.swift): O_CLOEXEC on every open, the descriptor closed on
/// every path, short reads and writes completed.
@Suite("System files")
struct SystemFileTests {
    struct Failed: Error { let why: String }

    /// The file (device, inode) an fd refers to, or nil when it is not open.
    private func identity(_ fd: Int32) -> [UInt64]? {
        var st = stat()
        return fstat(fd, &st) == 0 ? [UInt64(st.st_dev), UInt64(st.st_ino)] : nil
    }

    /// True when `fd` no longer refers to `file`: closed, or (other suites run in parallel in this process and
    /// open files all the time) already reused for something else.
    private func released(_ fd: Int32, from file: [UInt64]?) -> Bool { file != nil && identity(fd) != file }

    @Test func anOpenedFileIsCloseOnExecAndClosedAfterTheBody() throws {
        let path = try TestScratch.directory("systemfile") + "/a"
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        var seen: Int32 = -1
        var file: [UInt64]?
        let flags = try FileDescriptor.withOpened(path, .readOnly, onOpenFailure: { Failed(why: "\($0)") }) { (fd) throws(Failed) in
            seen = fd.rawValue
            file = identity(fd.rawValue)
            return fcntl(fd.rawValue, F_GETFD)
        }
        #expect(flags & FD_CLOEXEC != 0)
        #expect(released(seen, from: file))
    }

    @Test func theDescriptorIsClosedWhenTheBodyThrows() throws {
        let path = try TestScratch.directory("systemfile") + "/b"
        try Data("abc".utf8).write(to: URL(fileURLWithPath: path))
        var seen: Int32 = -1
        var file: [UInt64]?
        #expect(throws: Failed.self) {
            try FileDescriptor.withOpened(path, .readOnly, onOpenFailure: { Failed(why: "\($0)") }) { (fd) throws(Failed) in
                seen = fd.rawValue
                file = identity(fd.rawValue)
                throw Failed(why: "body")
            }
        }
        #expect(released(seen, from: file))
    }

    @Test func anOpenFailureSaysWhyInWords() throws {
        let path = try TestScratch.directory("systemfile") + "/missing"
        let e = #expect(throws: Failed.self) {
            try FileDescriptor.withOpened(path, .readOnly, onOpenFailure: { Failed(why: "\($0)") }) { (_) throws(Failed) in 0 }
        }
        #expect(e?.why == "No such file or directory")
    }

    @Test func readsFillTheBufferUntilEndOfFileAndWritesAreComplete() throws {
        let path = try TestScratch.directory("systemfile") + "/c"
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try FileDescriptor.withOpened(path, .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite],
                                      onOpenFailure: { Failed(why: "\($0)") }) { (fd) throws(Failed) in
            if case .failure(let e) = bytes.withUnsafeBytes({ fd.writeFully($0) }) { throw Failed(why: "\(e)") }
            if case .failure(let e) = ([0xAA, 0xBB] as [UInt8]).withUnsafeBytes({ fd.writeFully($0, at: 100) }) { throw Failed(why: "\(e)") }
        }
        var expected = bytes
        expected[100] = 0xAA; expected[101] = 0xBB
        let whole = readWholeFile(path), head = readWholeFile(path, limit: 70_000)
        #expect(whole?.count == expected.count)
        #expect(whole == expected, "the file differs from what was written")
        #expect(head == Array(expected[0..<70_000]), "the first 70,000 bytes differ")
        try FileDescriptor.withOpened(path, .readOnly, onOpenFailure: { Failed(why: "\($0)") }) { (fd) throws(Failed) in
            var buf = [UInt8](repeating: 0, count: 1000)
            // 1000 asked, 200 left before end of file: 200 read, no error.
            let n = buf.withUnsafeMutableBytes { fd.read(fromAbsoluteOffset: 199_800, filling: $0) }
            #expect((try? n.get()) == 200)
            #expect(Array(buf[0..<200]) == Array(expected[199_800...]), "the last 200 bytes differ")
        }
    }

    @Test func aMissingFileReadsAsNilWithErrnoSet() throws {
        let path = try TestScratch.directory("systemfile") + "/none"
        #expect(readWholeFile(path) == nil)
        #expect(errno == ENOENT)
    }
}
