#if canImport(Glibc)
import Glibc
#endif
import CSwiftCXLSystem
import Foundation

/// Raw AF_UNIX stream helpers for the baseline: nothing but read/write loops, so
/// the floor they measure is the kernel's and the scheduler's, not ours.
enum RawSocket {
    static func address(_ path: String) -> (sockaddr_un, socklen_t) {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.prefix(raw.count - 1).enumerated() { raw[i] = b }
            raw[min(bytes.count, raw.count - 1)] = 0
        }
        return (addr, socklen_t(MemoryLayout<sockaddr_un>.size))
    }

    static func listen(_ path: String) -> Int32 {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var (addr, len) = address(path)
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        precondition(ok == 0 && Glibc.listen(fd, 1) == 0, "cannot listen on \(path): \(errno)")
        return fd
    }

    static func connect(_ path: String, timeoutSeconds: Double = 10) -> Int32 {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var (addr, len) = address(path)
            let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) } }
            if ok == 0 { return fd }
            close(fd)
            precondition(Date() < deadline, "cannot connect to \(path)")
            usleep(2000)
        }
    }

    @discardableResult
    static func readFully(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        fully(n) { read(fd, buf + $0, n - $0) }
    }

    @discardableResult
    static func writeFully(_ fd: Int32, _ buf: UnsafeRawPointer, _ n: Int) -> Bool {
        fully(n) { write(fd, buf + $0, n - $0) }
    }

    /// Repeats `step` (one read or write of the bytes from offset `done` on, returning what it moved) until `n`
    /// bytes moved, retrying EINTR; false at end of file or on an error.
    private static func fully(_ n: Int, _ step: (_ done: Int) -> Int) -> Bool {
        var done = 0
        while done < n {
            let r = step(done)
            if r <= 0 { if r < 0 && errno == EINTR { continue }; return false }
            done += r
        }
        return true
    }
}

/// The child side of the ping-pong floor: reads (request size, reply size), then
/// answers every request of that size with a reply of that size until EOF.
func runEchoServer(socketPath: String) -> Never {
    let lfd = RawSocket.listen(socketPath)
    let fd = accept(lfd, nil, nil)
    var sizes = [UInt32](repeating: 0, count: 2)
    guard RawSocket.readFully(fd, &sizes, 8) else { exit(1) }
    let req = UnsafeMutableRawPointer.allocate(byteCount: Int(sizes[0]) + 1, alignment: 16)
    let rep = UnsafeMutableRawPointer.allocate(byteCount: Int(sizes[1]) + 1, alignment: 16)
    while RawSocket.readFully(fd, req, Int(sizes[0])) {
        if !RawSocket.writeFully(fd, rep, Int(sizes[1])) { break }
    }
    unlink(socketPath)
    exit(0)
}

/// Starts a child process of this executable with `arguments`; `quiet` sends its
/// stdout to /dev/null (servers log there and must not mix into the JSON).
func spawnSelf(_ arguments: [String], quiet: Bool = false) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    p.arguments = arguments
    if quiet { p.standardOutput = FileHandle.nullDevice }
    try p.run()
    return p
}

/// A live connection to an echo child answering `requestSize` bytes with `replySize`
/// bytes: one raw round trip per `roundTrip()`, for pairing with a vfio-user figure.
final class EchoPeer {
    let child: Process
    let fd: Int32
    let requestSize: Int
    let replySize: Int
    private let req: UnsafeMutableRawPointer
    private let rep: UnsafeMutableRawPointer
    nonisolated(unsafe) private static var counter = 0

    init(requestSize: Int, replySize: Int) throws {
        Self.counter += 1
        let path = NSTemporaryDirectory() + "cxlbench-echo-\(getpid())-\(Self.counter).sock"
        child = try spawnSelf(["--echo-server", path])
        fd = RawSocket.connect(path)
        self.requestSize = requestSize
        self.replySize = replySize
        var sizes: [UInt32] = [UInt32(requestSize), UInt32(replySize)]
        RawSocket.writeFully(fd, &sizes, 8)
        req = UnsafeMutableRawPointer.allocate(byteCount: requestSize, alignment: 16)
        rep = UnsafeMutableRawPointer.allocate(byteCount: replySize, alignment: 16)
        memset(req, 0x5A, requestSize)
    }

    @inline(__always)
    func roundTrip() {
        RawSocket.writeFully(fd, req, requestSize)
        RawSocket.readFully(fd, rep, replySize)
    }

    func close() {
        Glibc.close(fd)
        child.waitUntilExit()
        req.deallocate()
        rep.deallocate()
    }
}

/// Runs `a` and `b` alternately in blocks of `block` calls (after a warm-up of a tenth
/// of `iterations` each), timing every call: the value and its baseline see the same
/// machine conditions, which matters on a shared 2-vCPU VM.
func measurePair(iterations n: Int, block: Int = 500, _ a: () throws -> Void, _ b: () throws -> Void) rethrows
    -> (LatencySamples, LatencySamples) {
    for _ in 0..<max(1, n / 10) { try a(); try b() }
    var sa = LatencySamples(capacity: n), sb = LatencySamples(capacity: n)
    var done = 0
    var cswA = 0, cswB = 0
    while done < n {
        let k = min(block, n - done)
        var c0 = contextSwitches()
        for _ in 0..<k { let t0 = nowNanoseconds(); try a(); sa.append(nowNanoseconds() - t0) }
        var c1 = contextSwitches()
        cswA += c1 - c0
        c0 = c1
        for _ in 0..<k { let t0 = nowNanoseconds(); try b(); sb.append(nowNanoseconds() - t0) }
        c1 = contextSwitches()
        cswB += c1 - c0
        done += k
    }
    sa.contextSwitchesPerCall = Double(cswA) / Double(n)
    sb.contextSwitchesPerCall = Double(cswB) / Double(n)
    return (sa, sb)
}

/// Voluntary + involuntary context switches of this process so far.
func contextSwitches() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return u.ru_nvcsw + u.ru_nivcsw
}

/// Round trips of `requestSize` bytes out and `replySize` bytes back between this
/// process and a child on a UNIX socket.
func rawPingPong(requestSize: Int, replySize: Int, iterations: Int) throws -> LatencySamples {
    let path = NSTemporaryDirectory() + "cxlbench-echo-\(getpid()).sock"
    let child = try spawnSelf(["--echo-server", path])
    defer { child.waitUntilExit() }
    let fd = RawSocket.connect(path)
    defer { close(fd) }
    var sizes: [UInt32] = [UInt32(requestSize), UInt32(replySize)]
    RawSocket.writeFully(fd, &sizes, 8)
    let req = UnsafeMutableRawPointer.allocate(byteCount: requestSize, alignment: 16)
    let rep = UnsafeMutableRawPointer.allocate(byteCount: replySize, alignment: 16)
    defer { req.deallocate(); rep.deallocate() }
    memset(req, 0x5A, requestSize)
    var samples = LatencySamples(capacity: iterations)
    for i in 0..<(iterations + iterations / 10) {
        let t0 = nowNanoseconds()
        RawSocket.writeFully(fd, req, requestSize)
        RawSocket.readFully(fd, rep, replySize)
        if i >= iterations / 10 { samples.append(nowNanoseconds() - t0) }  // first 10% warm up
    }
    return samples
}

/// Runs `body` with this process (and children it starts) pinned to CPU 0, or unpinned.
func withPlacement<T>(pinned: Bool, _ body: () throws -> T) rethrows -> T {
    if pinned { _ = csystem_pin_to_cpu(0) } else { _ = csystem_unpin() }
    defer { _ = csystem_unpin() }
    return try body()
}
