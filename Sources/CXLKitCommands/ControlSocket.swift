import Foundation
import PCI
import CXL
import VFIOUser
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The control socket protocol (`cxlkit serve --control PATH`): a UNIX stream socket;
/// the client sends one request per line, the server answers each with `ok N\n` and
/// N bytes, or `error MESSAGE\n`. Requests:
///
/// | request | answer |
/// |---|---|
/// | `status` | JSON: client attached, resets by method, interrupts raised, memory gate |
/// | `config-read OFF WIDTH`, `bar-read BAR OFF WIDTH` | the value, `0x...` |
/// | `bars` | one `INDEX KIND PREFETCHABLE SIZE` line per BAR |
/// | `decode`, `check`, `check-json`, `save`, `metrics`, `openmetrics` | what the command prints |
///
/// Everything is a read of the served device's live state as its client sees it; nothing
/// is written. Requests are at most 256 bytes, clients at most `maxClients` at once.
public enum ControlProtocol {
    public static let maxRequestBytes = 256
    public static let maxReplyBytes = 16 << 20
}

/// What the control socket serves: the served device and what the server knows.
public struct ControlContext: Sendable {
    public var function: ServedFunction
    public var status: @Sendable () -> ServeStatus
    /// Renders metrics (the exposition lives above this layer); nil: not offered.
    public var metrics: (@Sendable ([TargetHealth], _ openMetrics: Bool) -> String)?
    public var name: String

    public init(function: ServedFunction, name: String, status: @escaping @Sendable () -> ServeStatus,
                metrics: (@Sendable ([TargetHealth], Bool) -> String)? = nil) {
        self.function = function
        self.name = name
        self.status = status
        self.metrics = metrics
    }

    /// The served device's health, with the server's status attached.
    public func health() -> TargetHealth {
        var h = CXLKit.health(of: function, target: name, sysfsRoot: "/nonexistent")
        h.serve = status()
        return h
    }

    /// Answers one request line.
    public func answer(_ line: String) -> Result<[UInt8], CommandError> {
        let words = line.split(separator: " ").map(String.init)
        func num(_ s: String) -> UInt64? { s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s) }
        func text(_ s: String) -> Result<[UInt8], CommandError> { .success(Array(s.utf8)) }
        switch words.first ?? "" {
        case "status":
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys]
            guard let d = try? e.encode(status()) else { return .failure(CommandError("status: cannot encode")) }
            return .success(Array(d) + [0x0A])
        case "config-read":
            guard words.count == 3, let off = num(words[1]), let w = num(words[2]), off < 4096, w <= 4 else {
                return .failure(CommandError("usage: config-read OFFSET WIDTH"))
            }
            do { return text("0x" + String(try function.configRead(Int(off), width: Int(w)), radix: 16)) } catch { return .failure(CommandError("\(error)")) }
        case "bar-read":
            guard words.count == 4, let bar = num(words[1]), bar < 6, let off = num(words[2]), let w = num(words[3]), w <= 8 else {
                return .failure(CommandError("usage: bar-read BAR OFFSET WIDTH"))
            }
            do { return text("0x" + String(try function.barRead(Int(bar), offset: off, width: Int(w)), radix: 16)) } catch { return .failure(CommandError("\(error)")) }
        case "bars":
            return text(function.bars.map { "\($0.index) \($0.kind.rawValue) \($0.prefetchable ? 1 : 0) \($0.size)\n" }.joined())
        case "decode":
            do { return text(CXLKit.decode([try ResolvedTarget(function: function, name: name)], json: false, verbosity: 2)) } catch { return .failure(error) }
        case "check", "check-json":
            return text(CXLKit.checkReport([health()], json: words[0] == "check-json").output)
        case "save":
            do {
                let snapshot = try CXLStateEngine(function: function).save()
                return .success(Array(try CXLStateFile.encode(snapshot)))
            } catch { return .failure(CommandError("save: \(error)")) }
        case "metrics", "openmetrics":
            guard let metrics else { return .failure(CommandError("metrics are not offered by this server")) }
            return text(metrics([health()], words[0] == "openmetrics"))
        default:
            return .failure(CommandError("unknown request '\(line.prefix(40))'; requests: status, config-read, bar-read, bars, decode, check, check-json, save, metrics, openmetrics"))
        }
    }
}

/// `cxlkit serve --control PATH`: accepts control clients on a UNIX socket, each on
/// its own thread, at most `maxClients` at once; the next one gets
/// `error too many control clients (limit N)` and is closed. A client idle for
/// `idleTimeoutMilliseconds` is closed. The socket is claimed exactly as the vfio-user
/// socket is (`UNIXListener`: a live server's path refused, a stale socket replaced,
/// renamed into place once listening, with the same `--socket-mode` / `--socket-group`).
public final class ControlServer: @unchecked Sendable {
    public let path: String
    public let maxClients: Int
    public let idleTimeoutMilliseconds: Int
    let context: ControlContext
    private let listener: UNIXListener
    private let listenFD: Int32
    private var stopPipe: [Int32] = [-1, -1]
    private let lock = NSLock()
    private var active = 0
    private var _refused = 0
    private var thread: Thread?
    private var stopped = false

    /// Clients turned away for being over the bound.
    public var refused: Int { lock.lock(); defer { lock.unlock() }; return _refused }
    public var activeClients: Int { lock.lock(); defer { lock.unlock() }; return active }

    public init(path: String, context: ControlContext, maxClients: Int = 4, idleTimeoutMilliseconds: Int = 10_000,
                permissions: VFIOUserSocketPermissions = .init()) throws(CommandError) {
        self.path = path
        self.context = context
        self.maxClients = max(1, maxClients)
        self.idleTimeoutMilliseconds = idleTimeoutMilliseconds
        do { listener = try UNIXListener.bind(path: path, permissions: permissions, backlog: 16) } catch { throw CommandError(error.description) }
        listenFD = listener.fd
        guard pipe(&stopPipe) == 0 else { listener.close(); throw CommandError("pipe: \(systemErrorText(errno))") }
    }

    deinit {
        stop()
        close(stopPipe[0])
        close(stopPipe[1])
    }

    /// Starts accepting on a background thread.
    public func start() {
        let t = Thread { [self] in acceptLoop() }
        t.name = "cxlkit-control"
        thread = t
        t.start()
    }

    /// Stops accepting and removes the socket file (clients being served finish their request).
    public func stop() {
        lock.lock()
        guard !stopped else { lock.unlock(); return }
        stopped = true
        lock.unlock()
        var b: UInt8 = 1
        _ = write(stopPipe[1], &b, 1)
        listener.close()
    }

    private func acceptLoop() {
        while true {
            var p = [pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0), pollfd(fd: stopPipe[0], events: Int16(POLLIN), revents: 0)]
            let n = poll(&p, 2, -1)
            if n < 0 { if errno == EINTR { continue }; return }
            if p[1].revents != 0 { return }
            guard p[0].revents & Int16(POLLIN) != 0 else { if p[0].revents != 0 { return }; continue }
            let cfd = accept(listenFD, nil, nil)
            if cfd < 0 { if errno == EINTR || errno == EAGAIN || errno == ECONNABORTED { continue }; return }
            _ = fcntl(cfd, F_SETFD, FD_CLOEXEC)
            var tv = timeval(tv_sec: idleTimeoutMilliseconds / 1000, tv_usec: (idleTimeoutMilliseconds % 1000) * 1000)
            setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            lock.lock()
            let admitted = active < maxClients
            if admitted { active += 1 } else { _refused += 1 }
            lock.unlock()
            guard admitted else {
                Self.send(cfd, Array("error too many control clients (limit \(maxClients))\n".utf8))
                close(cfd)
                continue
            }
            let t = Thread { [self] in
                serve(cfd)
                close(cfd)
                lock.lock(); active -= 1; lock.unlock()
            }
            t.name = "cxlkit-control-client"
            t.start()
        }
    }

    private func serve(_ fd: Int32) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 512)
        while true {
            if let nl = pending.firstIndex(of: 0x0A) {
                guard nl <= ControlProtocol.maxRequestBytes else {
                    _ = Self.send(fd, Array("error request longer than \(ControlProtocol.maxRequestBytes) bytes\n".utf8))
                    return
                }
                let line = String(decoding: pending[..<nl], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                pending.removeSubrange(...nl)
                if line.isEmpty { continue }
                switch context.answer(line) {
                case .success(let payload):
                    guard payload.count <= ControlProtocol.maxReplyBytes else {
                        if !Self.send(fd, Array("error reply too large\n".utf8)) { return }
                        continue
                    }
                    if !Self.send(fd, Array("ok \(payload.count)\n".utf8) + payload) { return }
                case .failure(let e):
                    if !Self.send(fd, Array("error \(e.message.replacingOccurrences(of: "\n", with: " "))\n".utf8)) { return }
                }
                continue
            }
            guard pending.count <= ControlProtocol.maxRequestBytes else {
                _ = Self.send(fd, Array("error request longer than \(ControlProtocol.maxRequestBytes) bytes\n".utf8))
                return
            }
            // EINTR is retried by swift-system; EOF, an error or the idle timeout (SO_RCVTIMEO) ends the session.
            let n = (try? chunk.withUnsafeMutableBytes { try FileDescriptor(rawValue: fd).read(into: $0) }) ?? 0
            guard n > 0 else { return }
            pending += chunk[0..<n]
        }
    }

    @discardableResult
    static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; return false }
            off += n
        }
        return true
    }
}

extension ControlServer {
    /// The control socket `options.controlPath` names (nil without it) for a device served behind `monitor`, by
    /// `cxlkit serve` whatever it serves (the emulator or `--device`): accepting when this returns, with
    /// `options.maxControlClients`, `options.controlMetrics` and the vfio-user socket's permissions. `status` is the
    /// session's (nil once it is gone: an empty status). `onlyComponentRegisters`: BAR reads only inside the CXL
    /// component register blocks (a real device; see `ServedFunction.readableBARs`).
    public static func start(options: ServeOptions, monitor: ServedDeviceMonitor, onlyComponentRegisters: Bool = false,
                             status: @escaping @Sendable () -> ServeStatus?) throws(CommandError) -> ControlServer? {
        guard let path = options.controlPath else { return nil }
        let name = "control:" + path
        let function = ServedFunction(device: monitor, name: name)
        if onlyComponentRegisters { function.readableBARs = ControlBARWindow.componentBlocks(of: function) }
        let context = ControlContext(function: function, name: name,
                                     status: { status() ?? ServeStatus(profile: "", device: "", clientAttached: false, clientsServed: 0,
                                                                       resets: [:], interruptsRaised: 0, memoryGated: nil) },
                                     metrics: options.controlMetrics)
        let c = try ControlServer(path: path, context: context, maxClients: options.maxControlClients, permissions: options.socketPermissions)
        c.start()
        return c
    }
}

/// A control-socket client: one connection, requests answered in order.
public final class ControlClient: @unchecked Sendable {
    let fd: Int32
    let path: String
    private let lock = NSLock()
    private var buffer: [UInt8] = []

    public init(path: String, timeoutMilliseconds: Int = 10_000) throws(CommandError) {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError("\(path): socket: \(systemErrorText(errno))") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        guard path.utf8.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(fd); throw CommandError("\(path): socket path too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.enumerated() { p[i] = b } }
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard r == 0 else { let e = errno; close(fd); throw CommandError("\(path): connect: \(systemErrorText(e))") }
        var tv = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: (timeoutMilliseconds % 1000) * 1000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// Sends one request, returns the payload of `ok`, throws the message of `error`.
    public func request(_ line: String) throws(CommandError) -> [UInt8] {
        lock.lock(); defer { lock.unlock() }
        guard ControlServer.send(fd, Array((line + "\n").utf8)) else {
            let sendError = CommandError("\(path): send: \(systemErrorText(errno))")
            // A server that refused us (too many clients) wrote one error line and closed before our request
            // arrived: report its reason rather than the broken pipe.
            if let reply = try? readLine(), reply.hasPrefix("error ") { throw CommandError("\(path): \(reply.dropFirst(6))") }
            throw sendError
        }
        let header = try readLine()
        if header.hasPrefix("error ") { throw CommandError("\(path): \(header.dropFirst(6))") }
        guard header.hasPrefix("ok "), let n = Int(header.dropFirst(3)), n >= 0, n <= ControlProtocol.maxReplyBytes else {
            throw CommandError("\(path): bad reply '\(header.prefix(60))'")
        }
        while buffer.count < n { try fill() }
        let payload = Array(buffer[0..<n])
        buffer.removeSubrange(0..<n)
        return payload
    }

    public func text(_ line: String) throws(CommandError) -> String { String(decoding: try request(line), as: UTF8.self) }

    private func readLine() throws(CommandError) -> String {
        while true {
            if let nl = buffer.firstIndex(of: 0x0A) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            guard buffer.count <= 4096 else { throw CommandError("\(path): reply header too long") }
            try fill()
        }
    }

    private func fill() throws(CommandError) {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n: Int
        do { n = try chunk.withUnsafeMutableBytes { try FileDescriptor(rawValue: fd).read(into: $0) } }
        catch { throw CommandError("\(path): read: \(error)") }
        if n == 0 { throw CommandError("\(path): the server closed the connection") }
        buffer += chunk[0..<n]
    }
}

/// `control:PATH`: the device `cxlkit serve --control PATH` serves, read-only, through
/// its control socket: config space and BARs by `config-read` / `bar-read`, so every
/// reading command (decode, dump, save, diff, check, metrics) works while a VM is
/// attached to the vfio-user socket. Writes and resets are refused.
public final class ControlPCIFunction: PCIFunction, @unchecked Sendable {
    public let client: ControlClient
    public let address: String
    public let configSize = pcieConfigSpaceSize
    public let bars: [BARDescription]

    public init(path: String) throws(CommandError) {
        client = try ControlClient(path: path)
        address = "control:" + path
        var list: [BARDescription] = []
        for line in try client.text("bars").split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count == 4, let i = Int(f[0]), (0..<6).contains(i), let kind = BARKind(rawValue: String(f[1])), let size = UInt64(f[3]) else {
                throw CommandError("\(path): bad bars line '\(line)'")
            }
            list.append(BARDescription(index: i, kind: kind, prefetchable: f[2] == "1", size: size))
        }
        bars = list
    }

    static func value(_ s: String) -> UInt64? { s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : nil }

    public func status() throws(CommandError) -> ServeStatus {
        let bytes = try client.request("status")
        do { return try JSONDecoder().decode(ServeStatus.self, from: Data(bytes)) } catch { throw CommandError("\(address): status: \(error)") }
    }

    public func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        do throws(CommandError) {
            guard let v = Self.value(try client.text("config-read \(offset) \(width)")), v <= UInt32.max else { throw CommandError("bad value") }
            return UInt32(v)
        } catch { throw .io(error.message) }
    }
    public func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        throw .badAccess("\(address) is read-only: config write at 0x\(String(offset, radix: 16)) refused")
    }
    public func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        do throws(CommandError) {
            guard let v = Self.value(try client.text("bar-read \(bar) \(offset) \(width)")) else { throw CommandError("bad value") }
            return v
        } catch { throw .io(error.message) }
    }
    public func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        throw .badAccess("\(address) is read-only: BAR \(bar) write refused")
    }
    public var resetMethods: [PCIResetMethod] { [] }
    public func reset(_ method: PCIResetMethod) throws(PCIError) { throw .resetUnsupported("\(address) is read-only: no resets") }
}

extension OpeningScheme {
    /// `control:PATH` as a target: the device `cxlkit serve --control PATH` serves, read-only.
    public static let control = OpeningScheme("control", summary: "a device served by cxlkit serve --control PATH, read-only through its control socket",
                                              restForm: "a socket path (control:/run/cxl.ctl)") { rest, _ throws(CommandError) in
        try ControlPCIFunction(path: rest)
    }
}
