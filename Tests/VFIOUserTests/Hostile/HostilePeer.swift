import Foundation
import VFIO
@testable import VFIOUser
#if canImport(Glibc)
import Glibc
#endif

// Shared tools for the hostile-client, hostile-server and load suites (issue 9).

/// What came back for something a hostile peer sent.
enum Outcome: Equatable, CustomStringConvertible {
    /// An error reply with this errno.
    case error(Int32)
    /// A success reply (header + payload).
    case reply(VFIOUserHeader, [UInt8])
    /// The peer closed the connection (orderly EOF or reset).
    case closed
    /// Nothing within the timeout.
    case silence

    var description: String {
        switch self {
        case .error(let e): return "error reply errno \(e)"
        case .reply(let h, let p): return "success reply to command \(h.command), \(p.count) bytes"
        case .closed: return "connection closed"
        case .silence: return "no answer"
        }
    }
    var isErrorOrClose: Bool {
        switch self {
        case .error, .closed: return true
        default: return false
        }
    }
}

/// A client that speaks raw bytes: it can send anything, with any fds, and read whatever comes back.
final class RawPeer: @unchecked Sendable {
    let socket: VFIOUserSocket
    var nextID: UInt16 = 0x100

    init(path: String) throws { socket = try VFIOUserSocket.connect(path: path) }
    init(socket: VFIOUserSocket) { self.socket = socket }
    deinit { socket.close() }

    static func frame(id: UInt16, command: UInt16, payload: [UInt8], flags: UInt32 = VFIOUserFlags.typeCommand,
                      size: UInt32? = nil, error: UInt32 = 0) -> [UInt8] {
        VFIOUserHeader(messageID: id, command: command, messageSize: size ?? UInt32(16 + payload.count), flags: flags,
                       errorNumber: error).encode() + payload
    }

    /// Sends a message; returns its id.
    @discardableResult
    func send(_ command: UInt16, _ payload: [UInt8], flags: UInt32 = VFIOUserFlags.typeCommand, size: UInt32? = nil,
              fds: [Int32] = []) throws -> UInt16 {
        let id = nextID; nextID &+= 1
        try socket.send(Self.frame(id: id, command: command, payload: payload, flags: flags, size: size), fds: fds)
        return id
    }

    func sendRaw(_ bytes: [UInt8], fds: [Int32] = []) throws { try socket.send(bytes, fds: fds) }

    /// Reads the next message (nil: closed).
    func receive(timeoutMilliseconds: Int = 3000, maxFDs: Int = 16) -> Outcome {
        do {
            guard try socket.waitReadable(timeoutMilliseconds: Int32(timeoutMilliseconds)) else { return .silence }
            guard let m = try socket.receive(maxFDs: maxFDs, timeoutMilliseconds: timeoutMilliseconds) else { return .closed }
            if m.header.isError { return .error(Int32(bitPattern: m.header.errorNumber)) }
            return .reply(m.header, m.payload)
        } catch {
            if case .timeout = error { return .silence }
            return .closed
        }
    }

    /// Sends and waits for the answer.
    func exchange(_ command: UInt16, _ payload: [UInt8], flags: UInt32 = VFIOUserFlags.typeCommand, size: UInt32? = nil,
                  fds: [Int32] = [], timeoutMilliseconds: Int = 3000) -> Outcome {
        do { try send(command, payload, flags: flags, size: size, fds: fds) } catch { return .closed }
        return receive(timeoutMilliseconds: timeoutMilliseconds)
    }

    /// VERSION with the usual capabilities; returns the outcome.
    @discardableResult
    func negotiate(json: String = #"{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"pgsizes":4096,"write_multiple":true}}"#) -> Outcome {
        exchange(VFIOUserCommand.version.rawValue, VFIOUserVersion(major: 0, minor: 2, capabilities: nil, json: json).encode())
    }
}

/// A listening UNIX socket that plays a hostile server: each accepted connection is handed to `script`.
final class HostileServer: @unchecked Sendable {
    let path: String
    private let listenFD: Int32
    private let done = DispatchSemaphore(value: 0)

    init(connections: Int = 1, _ script: @escaping @Sendable (RawPeer) -> Void) throws {
        path = NSTemporaryDirectory() + "vfu-hostile-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        precondition(fd >= 0)
        var addr = try VFIOUserSocket.unixAddress(path)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        precondition(r == 0 && listen(fd, 4) == 0)
        listenFD = fd
        let lfd = fd
        let t = Thread { [done] in
            for _ in 0..<connections {
                let c = accept(lfd, nil, nil)
                if c < 0 { break }
                script(RawPeer(socket: VFIOUserSocket(owning: c)))
            }
            done.signal()
        }
        t.start()
    }

    /// Waits for the script to finish every connection.
    func wait(seconds: Double = 10) -> Bool { done.wait(timeout: .now() + seconds) == .success }

    deinit { Glibc.close(listenFD); unlink(path) }
}

/// A server-side script step: read one command from the client, returning header and payload (nil on close).
extension RawPeer {
    func readCommand(timeoutMilliseconds: Int = 5000) -> (VFIOUserHeader, [UInt8])? {
        guard case .reply(let h, let p) = receive(timeoutMilliseconds: timeoutMilliseconds) else { return nil }
        return (h, p)
    }

    /// Answers the client's VERSION like a well-behaved server.
    func acceptVersion() -> Bool {
        guard let (h, _) = readCommand(), h.command == VFIOUserCommand.version.rawValue else { return false }
        let v = VFIOUserVersion(major: 0, minor: 2, capabilities: VFIOUserCapabilities(maxMsgFDs: 8, maxDataXferSize: 1 << 20))
        return (try? socket.send(VFIOUserFrame.reply(to: h, payload: v.encode()).encode())) != nil
    }

    func reply(to h: VFIOUserHeader, _ payload: [UInt8], fds: [Int32] = [], id: UInt16? = nil, command: UInt16? = nil,
               flags: UInt32 = VFIOUserFlags.typeReply, size: UInt32? = nil) {
        let bytes = Self.frame(id: id ?? h.messageID, command: command ?? h.command, payload: payload, flags: flags, size: size)
        try? socket.send(bytes, fds: fds)
    }
}

/// Open file descriptors of this process.
func openFDCount() -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
}

/// This process's open sockets (`/proc/self/fd` links to `socket:[inode]`): what a connection leaks. The runtime
/// may open other fds lazily (an eventfd, an epoll instance, a random source) at any moment under load; those are
/// not the client's to close.
func openSocketCount() -> Int {
    guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return -1 }
    return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0))?.hasPrefix("socket:") == true }.count
}

/// This process's sockets and memfds, as "fd -> target" (`/proc/self/fd`): what a vfio-user connection can leak.
func openConnectionFDs() -> Set<String> {
    guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return [] }
    var open = Set<String>()
    for fd in fds {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd),
              target.hasPrefix("socket:") || target.hasPrefix("/memfd:") else { continue }
        open.insert(fd + " -> " + target)
    }
    return open
}

/// The process-wide fd count is only meaningful when nothing else runs in parallel: `swift test` runs every suite
/// of every target in one process. Enable with `VFU_FD_LEAK_CHECK=1 swift test --filter Hostile`; the exact memfd
/// probes are always checked.
let strictFDLeakCheck = ProcessInfo.processInfo.environment["VFU_FD_LEAK_CHECK"] != nil

/// Growth of this process's fd count since `base`. Other suites run in parallel in the same process and hold fds
/// for a while, so the smallest of a few samples is taken: a real leak persists, a neighbour's sockets do not.
func fdGrowth(since base: Int) -> Int {
    var best = openFDCount() - base
    for _ in 0..<10 where best > 0 {
        usleep(100_000)
        best = min(best, openFDCount() - base)
    }
    return best
}

/// How many open fds of this process point at a memfd named `name` (memfds show as "/memfd:NAME (deleted)").
func openMemfdCount(named name: String) -> Int {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return -1 }
    return entries.filter { e in
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + e))?.hasPrefix("/memfd:" + name + " ") == true
    }.count
}

/// Resident set size in bytes (/proc/self/statm, second field, in pages).
func residentBytes() -> Int {
    guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
    let f = s.split(separator: " ")
    guard f.count > 1, let pages = Int(f[1]) else { return -1 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// A memfd of `size` bytes with a recognisable name, for fd-leak probes.
func probeMemfd(_ name: String, size: Int = 4096) throws -> VFIOSharedMemory {
    try VFIOSharedMemory(name: name, size: size)
}
