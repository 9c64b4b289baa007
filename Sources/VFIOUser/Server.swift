import CSwiftCXLSystem
import Foundation
import Logging
import Synchronization
import VFIO
#if canImport(Glibc)
import Glibc
#endif

/// Server settings; the defaults are what libvfio-user advertises (vfio-user spec "Version" capabilities). The fields
/// of `peer` read as its own.
@dynamicMemberLookup
public struct VFIOUserServerConfiguration: Sendable {
    /// What we advertise (8 fds per message) and the layout of the DMA_READ/DMA_WRITE messages we send.
    public var peer = VFIOUserPeerSettings(maxMsgFDs: 8)
    /// How long the server waits for the client's reply to a DMA_READ/DMA_WRITE it sent.
    public var dmaReplyTimeoutMilliseconds: Int = 5000
    /// How long a started message may take to arrive completely.
    public var messageTimeoutMilliseconds: Int = 10000
    public init() {}
    public subscript<T>(dynamicMember field: WritableKeyPath<VFIOUserPeerSettings, T>) -> T {
        get { peer[keyPath: field] }
        set { peer[keyPath: field] = newValue }
    }
}

/// A vfio-user server: serves one `VFIODevice` on a UNIX socket, one client at a time (vfio-user spec; interop
/// notes in the README). The socket is bound in `init`, so clients may connect before `run()` is entered.
///
/// `run()` blocks, serving clients until `stop()` is called from any thread (or a signal handler through
/// `stopFD`); it then removes the socket file. Client disconnect unmaps all DMA, releases IRQ eventfds
/// (`VFIODevice.clientDisconnected`) and keeps device state for the next client.
public final class VFIOUserServer: @unchecked Sendable {
    public let device: any VFIODevice
    public let socketPath: String
    public let configuration: VFIOUserServerConfiguration
    let logger: Logger
    private let listener: UNIXListener
    /// An eventfd; writing to it (async-signal-safe) stops the server.
    public let stopFD: Int32
    /// An eventfd the connection thread writes when its client has gone.
    private let doneFD: Int32
    private let lock = NSLock()
    private var _clientsServed = 0
    private var _refusedBusy = 0
    private var attached = false
    private var finished = false
    /// The attached connection's socket (shut down by `stop()` so its blocked receive returns at once), or -1.
    private var activeFD: Int32 = -1

    /// Number of client connections that have ended.
    public var clientsServed: Int { lock.lock(); defer { lock.unlock() }; return _clientsServed }

    public init(device: any VFIODevice, socketPath: String, logger: Logger = Logger(label: "vfio-user.server"),
                configuration: VFIOUserServerConfiguration = .init(),
                permissions: VFIOUserSocketPermissions = .init()) throws(VFIOUserError) {
        self.device = device
        self.socketPath = socketPath
        self.logger = logger
        self.configuration = configuration
        let efd = csystem_eventfd(0, csystem_efd_cloexec() | csystem_efd_nonblock())
        guard efd >= 0 else { throw .system(errno: errno, "eventfd") }
        let dfd = csystem_eventfd(0, csystem_efd_cloexec() | csystem_efd_nonblock())
        guard dfd >= 0 else { let e = errno; Glibc.close(efd); throw .system(errno: e, "eventfd") }
        do { listener = try UNIXListener.bind(path: socketPath, permissions: permissions) } catch {
            Glibc.close(efd); Glibc.close(dfd); throw error
        }
        stopFD = efd
        doneFD = dfd
    }

    deinit {
        closeListener()
        Glibc.close(stopFD)
        Glibc.close(doneFD)
    }

    private func closeListener() {
        lock.lock(); defer { lock.unlock() }
        guard !finished else { return }
        finished = true
        listener.close()
    }

    /// Requests `run()` to return. Safe from any thread; the connection being served is closed.
    public func stop() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(stopFD, $0.baseAddress, 8) }
        lock.lock(); defer { lock.unlock() }
        if activeFD >= 0 { shutdown(activeFD, Int32(SHUT_RDWR)) }
    }

    /// The connection's socket is about to be closed: `stop()` must not touch its fd any more.
    func connectionEnding() { lock.lock(); activeFD = -1; lock.unlock() }

    var stopRequested: Bool {
        var p = pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) > 0
    }

    /// Whether a client is attached now.
    public var clientAttached: Bool { lock.lock(); defer { lock.unlock() }; return attached }

    /// Connections refused because another client was attached.
    public var clientsRefusedBusy: Int { lock.lock(); defer { lock.unlock() }; return _refusedBusy }

    /// Serves clients one at a time until `stop()`. The attached client is served on its own thread while this
    /// one keeps accepting, so a second client is told at once that the device is busy (its VERSION is answered
    /// with EBUSY) instead of waiting in the backlog for a reply that never comes.
    public func run() throws(VFIOUserError) {
        defer { closeListener() }
        logger.info("vfio-user server listening", metadata: ["socket": "\(socketPath)"])
        var worker: Thread?
        var current: VFIOUserConnection?
        let workerDone = DispatchSemaphore(value: 0)
        defer {
            if worker != nil { stop(); workerDone.wait() }
        }
        while true {
            var p = [pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0),
                     pollfd(fd: doneFD, events: Int16(POLLIN), revents: 0)]
            let r = poll(&p, 3, -1)
            if r < 0 { if errno == EINTR { continue }; throw .system(errno: errno, "poll") }
            if p[2].revents != 0 {
                var v: UInt64 = 0
                _ = withUnsafeMutableBytes(of: &v) { Glibc.read(doneFD, $0.baseAddress, 8) }
                workerDone.wait()
                worker = nil
                current = nil
                if stopRequested { break }
            }
            if p[1].revents != 0 { break }
            guard p[0].revents != 0 else { continue }
            let cfd = csystem_accept_cloexec(listener.fd)
            if cfd < 0 { if errno == EINTR || errno == EAGAIN || errno == ECONNABORTED { continue }; throw .system(errno: errno, "accept") }
            let socket = VFIOUserSocket(owning: cfd)
            if worker != nil {
                // A client that is leaving (another server's probe of this path connects and closes at once; a
                // client that stopped reading is being dropped by the send timeout) is given time to finish
                // before the newcomer is refused: a moment when the attached connection is idle (a VM that is
                // simply attached), up to a few message timeouts while the server is busy with it.
                if waitForWorker(current) {
                    var v: UInt64 = 0
                    _ = withUnsafeMutableBytes(of: &v) { Glibc.read(doneFD, $0.baseAddress, 8) }
                    workerDone.wait()
                    worker = nil
                    current = nil
                } else {
                    refuseBusy(socket)
                    continue
                }
            }
            let conn = VFIOUserConnection(server: self, socket: socket)
            // A client that stops reading must not block the server forever in sendmsg (issue 9).
            conn.socket.setSendTimeout(milliseconds: configuration.messageTimeoutMilliseconds)
            logger.info("vfio-user client connected", metadata: ["fd": "\(cfd)"])
            lock.lock(); attached = true; activeFD = cfd; lock.unlock()
            current = conn
            let t = Thread { [doneFD] in
                conn.serve()
                self.lock.lock(); self._clientsServed += 1; self.attached = false; self.lock.unlock()
                workerDone.signal()
                var one: UInt64 = 1
                _ = withUnsafeBytes(of: &one) { Glibc.write(doneFD, $0.baseAddress, 8) }
            }
            t.name = "vfio-user-client"
            t.stackSize = 8 << 20
            worker = t
            t.start()
        }
        logger.info("vfio-user server stopped", metadata: ["socket": "\(socketPath)"])
    }

    /// Whether the attached connection ends within its grace (true: it has, and `doneFD` is readable): 100 ms
    /// once it is idle, waiting for its client's next message; while the server is busy with it (e.g. blocked
    /// sending to a client that stopped reading), up to twice the message timeout, capped at 10 s.
    private func waitForWorker(_ conn: VFIOUserConnection?) -> Bool {
        let busyCap = Int64(min(2 * configuration.messageTimeoutMilliseconds, 10_000))
        let start = monotonicMilliseconds()
        var idleSince: Int64?
        while true {
            var d = [pollfd(fd: doneFD, events: Int16(POLLIN), revents: 0), pollfd(fd: stopFD, events: Int16(POLLIN), revents: 0)]
            _ = poll(&d, 2, 20)
            if d[0].revents != 0 { return true }
            if d[1].revents != 0 { return false }
            let now = monotonicMilliseconds()
            if conn?.isIdle ?? true {
                idleSince = idleSince ?? now
                if now - idleSince! >= 100 { return false }
            } else {
                idleSince = nil
            }
            if now - start >= busyCap { return false }
        }
    }

    /// A second client while one is attached: its first message (VERSION) is answered with EBUSY and the
    /// connection closed. Bounded: a client that sends nothing within a short time is just closed.
    private func refuseBusy(_ socket: VFIOUserSocket) {
        defer { socket.close() }
        lock.lock(); _refusedBusy += 1; lock.unlock()
        logger.warning("vfio-user client refused: another client is attached")
        socket.setSendTimeout(milliseconds: 200)
        guard (try? socket.waitReadable(timeoutMilliseconds: 200)) == true,
              let msg = try? socket.receive(maxFDs: 0, maxMessageSize: VFIOUserLimits.headerSize + VFIOUserLimits.maxVersionJSON + 4,
                                            timeoutMilliseconds: 200),
              msg.header.isCommand, !msg.header.noReply else { return }
        try? socket.send(VFIOUserFrame.errorReply(to: msg.header, errno: VFIOErrno.EBUSY).encode())
    }
}

/// A device that reads into and writes from the server's message buffers directly, so REGION_READ and
/// REGION_WRITE allocate nothing on their way through the server: `VFIODirectAccessDevice` (module `VFIO`), which
/// `VFIOPCIDevice` and so `VFIOCXLDevice` adopt. Optional: other devices get the `[UInt8]`-based
/// `VFIODevice.read`/`write` (one array per access).
public typealias VFIOUserDirectAccessDevice = VFIODirectAccessDevice
