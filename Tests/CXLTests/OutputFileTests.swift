import Foundation
import Testing
@testable import CXL

/// Files a command writes never replace what the command did not create as a regular file (issue 17, item 2):
/// as root, `save -o /dev/stdout` used to turn /dev/stdout into a regular file.
@Suite("Output files", .serialized)
struct OutputFileTests {
    final class Dir {
        let path: String
        init() throws {
            path = FileManager.default.temporaryDirectory.appendingPathComponent("cxl-output-\(getpid())-\(UUID().uuidString)").path
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(atPath: path) }
        func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: path).sorted() }
    }

    private func mode(_ path: String, follow: Bool = false) -> mode_t {
        var st = stat()
        _ = follow ? stat(path, &st) : lstat(path, &st)
        return st.st_mode
    }

    @Test func aNewFileIsCreatedWithNothingLeftBeside() throws {
        let d = try Dir()
        #expect(try OutputFile.write(Data("new".utf8), to: d.path + "/state.json") == .created)
        #expect(try String(contentsOfFile: d.path + "/state.json", encoding: .utf8) == "new")
        #expect(try d.entries() == ["state.json"])
    }

    @Test func aRegularFileIsReplacedKeepingItsMode() throws {
        let d = try Dir()
        let p = d.path + "/state.json"
        try Data("old".utf8).write(to: URL(fileURLWithPath: p))
        chmod(p, 0o600)
        #expect(try OutputFile.write(Data("new".utf8), to: p) == .replaced)
        #expect(try String(contentsOfFile: p, encoding: .utf8) == "new")
        #expect(mode(p) & 0o7777 == 0o600)
        #expect(try d.entries() == ["state.json"])
    }

    @Test func aSymlinkIsFollowedAndStaysASymlink() throws {
        let d = try Dir()
        try FileManager.default.createDirectory(atPath: d.path + "/real", withIntermediateDirectories: false)
        let target = d.path + "/real/state.json"
        try Data("old".utf8).write(to: URL(fileURLWithPath: target))
        #expect(symlink("real/state.json", d.path + "/link.json") == 0)
        #expect(try OutputFile.write(Data("new".utf8), to: d.path + "/link.json") == .replaced)
        #expect(mode(d.path + "/link.json") & S_IFMT == S_IFLNK)
        #expect(try String(contentsOfFile: target, encoding: .utf8) == "new")
        #expect(try FileManager.default.contentsOfDirectory(atPath: d.path + "/real") == ["state.json"])
    }

    @Test func aDanglingSymlinkIsRefused() throws {
        let d = try Dir()
        #expect(symlink(d.path + "/nowhere/state.json", d.path + "/link.json") == 0)
        #expect(throws: CXLStateError.self) { try OutputFile.write(Data("x".utf8), to: d.path + "/link.json") }
        #expect(mode(d.path + "/link.json") & S_IFMT == S_IFLNK)
    }

    @Test func aCharacterDeviceIsWrittenThroughNotReplaced() throws {
        #expect(try OutputFile.write(Data("discarded".utf8), to: "/dev/null") == .wroteThrough)
        #expect(mode("/dev/null") & S_IFMT == S_IFCHR)
    }

    @Test func aFIFOIsWrittenThroughNotReplaced() throws {
        let d = try Dir()
        let fifo = d.path + "/pipe"
        #expect(mkfifo(fifo, 0o600) == 0)
        let received = ReceivedBox()
        let reader = Thread {
            let h = FileHandle(forReadingAtPath: fifo)
            received.data = h?.readDataToEndOfFile()
            try? h?.close()
            received.done.signal()
        }
        reader.start()
        #expect(try OutputFile.write(Data("through the pipe".utf8), to: fifo) == .wroteThrough)
        received.done.wait()
        #expect(received.data == Data("through the pipe".utf8))
        #expect(mode(fifo) & S_IFMT == S_IFIFO)
    }

    final class ReceivedBox: @unchecked Sendable {
        var data: Data?
        let done = DispatchSemaphore(value: 0)
    }

    @Test func aDirectoryIsRefused() throws {
        let d = try Dir()
        #expect(throws: CXLStateError.fileIO("\(d.path): is a directory")) { try OutputFile.write(Data(), to: d.path) }
    }

    @Test func aSocketIsRefusedAndLeftInPlace() throws {
        let d = try Dir()
        let path = d.path + "/s.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(r == 0)
        #expect(throws: CXLStateError.self) { try OutputFile.write(Data("x".utf8), to: path) }
        #expect(mode(path) & S_IFMT == S_IFSOCK)
    }

    @Test func aStateFileThroughASymlinkRoundTrips() throws {
        let d = try Dir()
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let s = try CXLStateEngine(function: dev, options: CXLStateOptions(clock: VirtualCXLClock())).save()
        try Data().write(to: URL(fileURLWithPath: d.path + "/target.json"))
        #expect(symlink("target.json", d.path + "/current.json") == 0)
        try CXLStateFile.write(s, to: d.path + "/current.json")
        #expect(try CXLStateFile.read(from: d.path + "/target.json") == s)
        #expect(mode(d.path + "/current.json") & S_IFMT == S_IFLNK)
    }
}
