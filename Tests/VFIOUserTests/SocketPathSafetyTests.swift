import Foundation
import Logging
import Testing
import PCI
import VFIO
import VFIOTestSupport
@testable import VFIOUser

/// The socket path a server listens on is shared with everything else on a host running VMs: a second server
/// must never take over a live path, stopping a server must never remove another's socket, and a second client
/// is told at once that the device is busy (issue 17, items 1 and 5).
@Suite(.serialized) struct SocketPathSafetyTests {
    private func tempPath(_ tag: String) -> String {
        NSTemporaryDirectory() + "vfu-safety-\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    private func makeServer(_ path: String, permissions: VFIOUserSocketPermissions = .init()) throws(VFIOUserError) -> VFIOUserServer {
        let device: VFIOPCIDevice
        do { device = try VFIOPCIDevice(function: try TestPCIFunction()) } catch { throw .state("test device: \(error)") }
        var logger = Logger(label: "test.safety")
        logger.logLevel = .critical
        return try VFIOUserServer(device: device, socketPath: path, logger: logger, permissions: permissions)
    }

    private func fileInode(_ path: String) -> UInt64? {
        var st = stat()
        return lstat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    @Test func aSecondServerOnALivePathIsRefusedAndTheFirstStaysReachable() throws {
        let path = tempPath("live")
        let first = try ServerHarness(path: path)
        let inode = fileInode(path)
        #expect(throws: VFIOUserError.self) { _ = try makeServer(path) }
        do throws(VFIOUserError) {
            _ = try makeServer(path)
        } catch {
            #expect(error.description.contains("a server is already listening"))
        }
        // Nothing was renamed over the first server's socket, and it still answers.
        #expect(fileInode(path) == inode)
        let c = try first.client()
        #expect(try c.deviceInfo().numRegions == 9)
        c.close()
        #expect(first.stop())
        #expect(fileInode(path) == nil)
    }

    @Test func aStaleSocketIsReplaced() throws {
        let path = tempPath("stale")
        // A socket file nobody listens on, as a crashed server leaves behind.
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = try VFIOUserSocket.unixAddress(path)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        #expect(r == 0)
        close(fd)
        #expect(try UNIXListener.probe(path) == .stale)
        let h = try ServerHarness(path: path)
        #expect(try UNIXListener.probe(path) == .live)
        let c = try h.client()
        #expect(try c.deviceInfo().numRegions == 9)
        c.close()
        #expect(h.stop())
    }

    @Test func aPathThatIsNotASocketIsLeftAlone() throws {
        let path = tempPath("regular")
        #expect(FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8)))
        defer { unlink(path) }
        #expect(throws: VFIOUserError.self) { _ = try makeServer(path) }
        #expect(FileManager.default.contents(atPath: path) == Data("keep me".utf8))
    }

    @Test func stoppingAServerRemovesOnlyTheSocketItCreated() throws {
        let path = tempPath("own")
        let moved = path + ".moved"
        let first = try ServerHarness(path: path)
        // Someone moves the first server's socket away and a second server takes the path.
        #expect(rename(path, moved) == 0)
        defer { unlink(moved) }
        let second = try ServerHarness(path: path)
        let secondInode = fileInode(path)
        #expect(first.stop())
        // The first server's exit left the second server's socket in place, and it still answers.
        #expect(fileInode(path) == secondInode)
        let c = try second.client()
        #expect(try c.deviceInfo().numRegions == 9)
        c.close()
        #expect(second.stop())
        #expect(fileInode(path) == nil)
    }

    @Test func socketModeAndGroupAreApplied() throws {
        let path = tempPath("mode")
        let server = try makeServer(path, permissions: VFIOUserSocketPermissions(mode: 0o660, group: getgid()))
        var st = stat()
        #expect(lstat(path, &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o660)
        #expect(st.st_gid == getgid())
        #expect((st.st_mode & S_IFMT) == S_IFSOCK)
        _ = server   // the listener closes (and removes its socket) with the server
    }

    @Test func aSecondClientIsToldAtOnceThatTheDeviceIsBusy() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let first = try h.client()
        #expect(h.server.clientAttached)
        // A long reply timeout: the refusal must come from the server's EBUSY, not from the timeout.
        do throws(VFIOUserError) {
            _ = try VFIOUserClient(socketPath: h.path, configuration: { var c = VFIOUserClientConfiguration(); c.timeoutMilliseconds = 60_000; return c }())
            Issue.record("the second client connected while the first was attached")
        } catch {
            #expect(error == .busy("another vfio-user client is attached to \(h.path)"))
            #expect(error.description == "busy: another vfio-user client is attached to \(h.path)")
        }
        #expect(h.server.clientsRefusedBusy == 1)
        // The attached client is undisturbed.
        #expect(try first.deviceInfo().numRegions == 9)
        first.close()
        #expect(h.waitClientsServed(1))
        // Once it has gone, the next client is served.
        let next = try h.client()
        #expect(try next.deviceInfo().numRegions == 9)
        next.close()
    }

    @Test func systemErrorsSayWhatWentWrongInWords() {
        #expect(VFIOUserError.system(errno: ENOENT, "connect /x").description == "connect /x: No such file or directory")
    }
}
