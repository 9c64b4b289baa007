import Foundation
import Logging
import VFIO
#if canImport(Glibc)
import Glibc
#endif

/// Client settings (what we advertise in VERSION and how long we wait). The fields of `peer` read as its own.
@dynamicMemberLookup
public struct VFIOUserClientConfiguration: Sendable {
    /// Per-request reply timeout (QEMU's `x-msg-timeout` default is 5000 ms).
    public var timeoutMilliseconds: Int = 5000
    public var major: UInt16 = VFIOUserLimits.protocolMajor
    public var minor: UInt16 = VFIOUserLimits.protocolMinor
    /// What we advertise (we accept 16 fds per message) and the layout of the server's DMA_READ/DMA_WRITE.
    public var peer = VFIOUserPeerSettings(maxMsgFDs: 16)
    public init() {}
    public subscript<T>(dynamicMember field: WritableKeyPath<VFIOUserPeerSettings, T>) -> T {
        get { peer[keyPath: field] }
        set { peer[keyPath: field] = newValue }
    }
}

/// A region as described by the server: the decoded `vfio_region_info`, the mmap fd (owned by this object) and
/// the validated sparse-mmap areas.
public final class VFIOUserClientRegion: @unchecked Sendable {
    public let info: VFIORegionInfo
    /// The fd sent with the reply (when FLAG_MMAP), owned; closed on deinit.
    public let fd: Int32?
    /// Sparse areas from a SPARSE_MMAP capability (validated against the region size), or nil if none.
    public let sparseAreas: [VFIOSparseArea]?
    public var flags: VFIORegionFlags { info.flags }
    public var size: UInt64 { info.size }
    init(info: VFIORegionInfo, fd: Int32?, sparseAreas: [VFIOSparseArea]?) { self.info = info; self.fd = fd; self.sparseAreas = sparseAreas }
    deinit { if let fd { close(fd) } }

    /// The region type capability, if any.
    public var type: VFIORegionTypeCapability? {
        info.capabilities.first { $0.id == VFIORegionCapabilityID.type }.flatMap { try? VFIORegionTypeCapability(parsing: $0) }
    }
}

/// One mmap of (part of) a region: `regionOffset` is where `memory` starts within the region.
public struct VFIOUserRegionMapping: Sendable {
    public var regionOffset: UInt64
    public var memory: VFIOSharedMemory
}

/// The ioeventfds of a region (DEVICE_GET_REGION_IO_FDS), fds owned.
public struct VFIOUserClientIOFDs: Sendable {
    public var entries: [VFIOUserRegionIOFDs.Entry]
    public var fds: VFIOUserFDs
}

/// A vfio-user client with a typed call for every command (vfio-user spec). The server is untrusted: every reply
/// is checked (id, command, type, sizes, capability chains, fd counts), the stream is dropped on any framing
/// violation, and each request has a timeout. While waiting for a reply the client answers the server's
/// DMA_READ/DMA_WRITE from the memory registered with `dmaMap`.
///
/// Calls are serialised by an internal lock; the client can be shared between threads.
public final class VFIOUserClient: @unchecked Sendable {
    public let configuration: VFIOUserClientConfiguration
    private let socket: VFIOUserSocket
    private let lock = VFIORecursiveLock()
    @exclusivity(unchecked) private var nextID: UInt16 = 0
    @exclusivity(unchecked) private var broken: VFIOUserError?
    private var logger: Logger
    private let dma = VFIOUserDMATable()
    /// The server's VERSION reply.
    public private(set) var serverVersion = VFIOUserVersion(major: 0, minor: 0, capabilities: nil)
    public var serverCapabilities: VFIOUserCapabilities { serverVersion.capabilities ?? VFIOUserCapabilities() }
    /// Counts of DMA requests served for the server.
    public private(set) var dmaRequestsServed = 0
    /// Receive side: one buffer, one recvmsg for whatever is queued (a reply and any server requests behind it).
    private let framer = VFIOUserFramer()
    /// REGION_READ/WRITE requests and DMA replies are built here and sent with one sendmsg.
    private let out = VFIOUserSendBuffer(capacity: 8 << 10)

    /// Connects to `socketPath` and negotiates the version.
    public init(socketPath: String, configuration: VFIOUserClientConfiguration = .init(),
                logger: Logger = Logger(label: "vfio-user.client")) throws(VFIOUserError) {
        self.configuration = configuration
        self.logger = logger
        self.socket = try VFIOUserSocket.connect(path: socketPath)
        // A server that stops reading must not block a request forever in sendmsg (issue 9).
        socket.setSendTimeout(milliseconds: configuration.timeoutMilliseconds)
        // Replies are read with a blocking recvmsg (no poll first); the request deadline is checked whenever it
        // returns, so a silent server is noticed after at most two timeouts' worth of waiting.
        socket.setReceiveTimeout(milliseconds: configuration.timeoutMilliseconds)
        do { try negotiate() } catch .peer(errno: VFIOErrno.EBUSY, command: VFIOUserCommand.version.rawValue) {
            socket.close()
            throw .busy("another vfio-user client is attached to \(socketPath)")
        }
    }

    public func close() { lock.lock(); defer { lock.unlock() }; broken = broken ?? .disconnected; socket.close() }

    // MARK: Core exchange

    private func fail(_ e: VFIOUserError) -> VFIOUserError {
        if case .peer = e { return e }
        if case .malformed = e { return e }
        broken = e
        socket.shutdownBoth()
        return e
    }

    /// The next message from the server, reading as needed (one blocking recvmsg takes whatever is queued, no
    /// poll first). The message's payload is valid until the next read.
    private func receiveFramed(deadline: Int64, maxMessageSize: Int, maxFDs: Int, command: UInt16) throws(VFIOUserError) -> VFIOUserFramedMessage {
        while true {
            if framer.buffered >= VFIOUserLimits.headerSize, let m = try framer.next(maxMessageSize: maxMessageSize) { return m }
            switch try framer.fill(fd: socket.fd, maxFDs: maxFDs) {
            case .bytes: break
            case .endOfStream: throw framer.buffered > 0 ? .fatal("connection closed mid-message") : .disconnected
            case .wouldBlock: break
            }
            if coarseMonotonicMilliseconds() >= deadline { throw .timeout(command: command) }
        }
    }

    /// Serves the server's requests that are already buffered (they came with the previous reply, e.g. the DMA a
    /// doorbell write started), without reading: their replies go out before our next request, so the server can
    /// finish that DMA while the request is on its way.
    private func serveBufferedServerRequests() throws(VFIOUserError) {
        let limit = VFIOUserLimits.headerSize + VFIOUserDMAAccess.size + Int(configuration.maxDataXferSize)
        deferReplies = true
        defer { deferReplies = false }
        // A server request that has begun to arrive (a large DMA_WRITE behind the reply we took) is completed
        // first, so that it is answered before our next request rather than while the server handles it.
        if let h = framer.peekHeader(maxMessageSize: limit), h.isCommand, framer.peekComplete(maxMessageSize: limit) == nil {
            let deadline = coarseMonotonicMilliseconds() + Int64(configuration.timeoutMilliseconds)
            while framer.peekComplete(maxMessageSize: limit) == nil {
                let got: VFIOUserFill
                do { got = try framer.fill(fd: socket.fd, maxFDs: 0) } catch {
                    if case .malformed = error { throw fail(.fatal("\(error)")) }
                    throw fail(error)
                }
                if got == .endOfStream { throw fail(.fatal("connection closed mid-message")) }
                if coarseMonotonicMilliseconds() >= deadline { throw fail(.timeout(command: h.command)) }
            }
        }
        while let h = framer.peekComplete(maxMessageSize: limit), h.isCommand {
            let m: VFIOUserFramedMessage
            do throws(VFIOUserError) {
                guard let mm = try framer.next(maxMessageSize: limit) else { return }
                m = mm
            } catch { throw fail(.fatal("\(error)")) }
            do { try serveServerRequest(m) } catch { throw fail(error) }
        }
    }

    /// While set, replies to server requests are collected in `deferred` and leave with our next request.
    @exclusivity(unchecked) private var deferReplies = false
    private let deferred = VFIOUserByteAccumulator()

    /// A reply to a server request: `count` bytes written by `fill` where they will be sent from, then `data`
    /// (sent from where it lies: a DMA_READ reply's data, from guest memory, no copy in user space), then
    /// `trailer` zero bytes. Collected in `deferred` while replies are deferred, else sent at once.
    private func sendServerReply(count: Int, data: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                                 trailer: Int = 0, _ fill: (UnsafeMutableRawPointer) -> Void) throws(VFIOUserError) {
        if deferReplies {
            fill(deferred.extend(by: count))
            if let d = data.baseAddress { deferred.append(external: d, length: data.count) }
            if trailer > 0 { deferred.extend(by: trailer).initializeMemory(as: UInt8.self, repeating: 0, count: trailer) }
            return
        }
        out.reserve(count + trailer)
        fill(out.pointer)
        if trailer > 0 { (out.pointer + count).initializeMemory(as: UInt8.self, repeating: 0, count: trailer) }
        if data.count == 0 && trailer == 0 { return try socket.send(out.pointer, count: count) }
        try socket.send(UnsafeRawBufferPointer(start: out.pointer, count: count), data,
                        UnsafeRawBufferPointer(start: out.pointer + count, count: trailer))
    }

    /// Sends a request, with any deferred replies to server requests in front of it (one sendmsg, the two
    /// gathered where they lie).
    private func sendRequest(_ p: UnsafeRawPointer, count: Int, fds: [Int32] = []) throws(VFIOUserError) {
        if deferred.count == 0 && fds.isEmpty { return try socket.send(p, count: count) }
        if deferred.count > 0 {
            defer { deferred.removeAll() }
            // The replies carry no fds; they go first, alone when the request has fds of its own.
            if fds.isEmpty { return try deferred.send(on: socket, then: UnsafeRawBufferPointer(start: p, count: count)) }
            try deferred.send(on: socket)
        }
        let bytes = [UInt8](UnsafeRawBufferPointer(start: p, count: count))
        try socket.send(bytes, fds: fds)
    }

    /// Waits for the reply to `request` (sent already), serving server DMA requests meanwhile, and checks its
    /// header, size and fds. The reply's payload is valid until the next read.
    private func awaitReply(to request: VFIOUserHeader, maxReplyPayload: Int, maxFDs: Int) throws(VFIOUserError) -> VFIOUserFramedMessage {
        let deadline = coarseMonotonicMilliseconds() + Int64(configuration.timeoutMilliseconds)
        let limit = VFIOUserLimits.headerSize + max(maxReplyPayload, VFIOUserDMAAccess.size + Int(configuration.maxDataXferSize))
        while true {
            let msg: VFIOUserFramedMessage
            do throws(VFIOUserError) {
                if coarseMonotonicMilliseconds() >= deadline { throw VFIOUserError.timeout(command: request.command) }
                msg = try receiveFramed(deadline: deadline, maxMessageSize: limit, maxFDs: max(maxFDs, 0), command: request.command)
            } catch {
                if case .malformed = error { throw fail(.fatal("\(error)")) }   // unexpected fds: stream untrusted
                throw fail(error)
            }
            if msg.header.isCommand {
                // Server requests that came together (a pipelined DMA window) are answered together: the replies
                // are collected while more requests are buffered and leave in one sendmsg.
                deferReplies = true
                do { try serveServerRequest(msg) } catch { deferReplies = false; deferred.removeAll(); throw fail(error) }
                if let next = framer.peekComplete(maxMessageSize: limit), next.isCommand { continue }
                deferReplies = false
                if deferred.count > 0 {
                    defer { deferred.removeAll() }
                    do { try deferred.send(on: socket) } catch { throw fail(error) }
                }
                continue
            }
            do throws(VFIOUserError) {
                try VFIOUserDecoder.checkReply(msg.header, for: request)
                guard msg.payload.count <= maxReplyPayload else { throw VFIOUserError.fatal("reply of \(msg.payload.count) bytes, expected at most \(maxReplyPayload)") }
                if msg.fds.count > maxFDs { throw VFIOUserError.fatal("unexpected fds in reply") }
                return msg
            } catch {
                for fd in msg.fds { Glibc.close(fd) }
                if case .peer = error { throw error }
                throw fail(error)
            }
        }
    }

    /// Sends `request` and waits for the reply, serving server DMA meanwhile. `maxReplyPayload` bounds what the
    /// server may send back; `maxFDs` the fds it may attach.
    private func call(_ request: VFIOUserRequest, fds: [Int32] = [], maxReplyPayload: Int, maxFDs: Int = 0,
                      requestedCount: UInt64? = nil) throws(VFIOUserError) -> (VFIOUserReply, VFIOUserFDs) {
        lock.lock(); defer { lock.unlock() }
        if let b = broken { throw b }
        let id = nextID; nextID &+= 1
        let frame = VFIOUserFrame.command(id, request)
        let start = logger.logLevel <= .debug ? monotonicNanoseconds() : 0
        try serveBufferedServerRequests()
        let bytes = frame.encode()
        do { try bytes.withUnsafeBytes { raw in Result { () throws(VFIOUserError) in try sendRequest(raw.baseAddress!, count: raw.count, fds: fds) } }.get() }
        catch { throw fail(error) }
        let msg = try awaitReply(to: frame.header, maxReplyPayload: maxReplyPayload, maxFDs: maxFDs)
        let replyFDs = VFIOUserFDs(msg.fds)
        do throws(VFIOUserError) {
            let reply = try VFIOUserDecoder.decodeReply(command: request.command, payload: Array(msg.payload), fdCount: msg.fds.count,
                                                        requestedCount: requestedCount)
            logger.debug("vfio-user call", metadata: ["msg_id": "\(id)", "command": "\(request.command)",
                                                     "duration_us": "\((monotonicNanoseconds() - start) / 1000)"])
            return (reply, replyFDs)
        } catch {
            throw fail(error)
        }
    }

    /// REGION_READ or REGION_WRITE of one chunk without building messages as values: the request (header,
    /// `offset, region, count`, write data) is encoded into the send buffer and sent with one sendmsg, the reply
    /// is checked in the receive buffer and read data copied straight to `readInto`. Checks as `decodeReply`.
    private func regionAccess(write: Bool, region: UInt32, offset: UInt64, count: Int, data: UnsafeRawPointer?,
                              readInto: UnsafeMutableRawPointer?, posted: Bool = false) throws(VFIOUserError) {
        lock.lock(); defer { lock.unlock() }
        if let b = broken { throw b }
        let id = nextID; nextID &+= 1
        let command = write ? VFIOUserCommand.regionWrite : VFIOUserCommand.regionRead
        let size = VFIOUserLimits.headerSize + VFIOUserRegionAccess.size + (write ? count : 0)
        let header = VFIOUserHeader(messageID: id, command: command.rawValue, messageSize: UInt32(size),
                                    flags: VFIOUserFlags.typeCommand | (posted ? VFIOUserFlags.noReply : 0))
        out.reserve(size)
        header.store(to: out.pointer)
        let fields = VFIOUserRegionAccess.Fields(offset: offset, region: region, count: UInt32(count))
        fields.store(to: out.pointer + 16)
        if write, count > 0, let data { (out.pointer + 32).copyMemory(from: data, byteCount: count) }
        if framer.buffered > 0 {
            // Server requests to answer first; their replies use the send buffer, so build the request again after.
            try serveBufferedServerRequests()
            out.reserve(size)
            header.store(to: out.pointer)
            fields.store(to: out.pointer + 16)
            if write, count > 0, let data { (out.pointer + 32).copyMemory(from: data, byteCount: count) }
        }
        do { try sendRequest(out.pointer, count: size) } catch { throw fail(error) }
        if posted { return }
        let replyData = write ? 0 : count
        let msg = try awaitReply(to: header, maxReplyPayload: VFIOUserRegionAccess.size + replyData, maxFDs: 0)
        let p = msg.payload
        let r: VFIOUserRegionAccess.Fields
        do { r = try .checked(p, withData: !write, write ? "REGION_WRITE reply" : "REGION_READ reply") } catch { throw fail(error) }
        if write { return }
        let rOffset = r.offset, rRegion = r.region, rCount = r.count
        guard Int(rCount) == count else { throw fail(.malformed("REGION_READ reply count \(rCount), asked \(count)")) }
        guard rRegion == region, rOffset == offset else {
            throw fail(.fatal("unexpected REGION_READ reply for region \(rRegion) offset 0x\(String(rOffset, radix: 16))"))
        }
        if count > 0, let readInto { readInto.copyMemory(from: p.baseAddress! + VFIOUserRegionAccess.size, byteCount: count) }
    }

    /// Sends a command without waiting (NO_REPLY), as QEMU posts BAR writes.
    private func post(_ request: VFIOUserRequest) throws(VFIOUserError) {
        lock.lock(); defer { lock.unlock() }
        if let b = broken { throw b }
        let id = nextID; nextID &+= 1
        do { try socket.send(VFIOUserFrame.command(id, request, noReply: true).encode()) } catch { throw fail(error) }
    }

    /// Answers a DMA_READ/DMA_WRITE from the server out of the registered DMA memory.
    /// The DMA message layout this client expects from the server (see `VFIOUserDMALayout`).
    public var dmaLayout: VFIOUserDMALayout {
        configuration.peer.dmaLayout(negotiatedMinor: serverVersion.minor)
    }

    /// Answers a DMA_READ/DMA_WRITE from the server out of the registered DMA memory, in place: the request is
    /// decoded in the receive buffer, the reply built in the send buffer (DMA_READ data copied there straight from
    /// the mapping), one sendmsg.
    private func serveServerRequest(_ msg: VFIOUserFramedMessage) throws(VFIOUserError) {
        let h = msg.header
        dmaRequestsServed += 1
        if !msg.fds.isEmpty { for fd in msg.fds { Glibc.close(fd) } }
        func refuse(_ e: Int32) throws(VFIOUserError) {
            if !h.noReply {
                let bytes = VFIOUserFrame.errorReply(to: h, errno: e).encode()
                try sendServerReply(count: bytes.count) { o in
                    bytes.withUnsafeBytes { o.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                }
            }
        }
        guard h.isCommand, msg.fds.count == 0, let cmd = h.typedCommand, cmd == .dmaRead || cmd == .dmaWrite,
              Int(h.messageSize) == VFIOUserLimits.headerSize + msg.payload.count else {
            return try refuse(VFIOErrno.EINVAL)
        }
        let layout = dmaLayout
        let p = msg.payload
        // Spec: `addr u64, count u64`, data at 16, exactly `count` data bytes. QEMU: `offset u64, count u32`, data
        // at 12, followed by the padded struct's 4 bytes (as `VFIOUserDMALayout.decodeRequest`).
        guard p.count >= 16, let (address, count64) = layout.loadRequestFields(from: p) else { return try refuse(VFIOErrno.EINVAL) }
        let dataAt = layout.requestFieldsSize
        if cmd == .dmaWrite {
            let avail = UInt64(p.count - dataAt)
            guard layout == .spec ? avail == count64 : avail >= count64 else { return try refuse(VFIOErrno.EINVAL) }
        }
        guard count64 <= configuration.maxDataXferSize else { return try refuse(VFIOErrno.E2BIG) }
        let count = Int(count64)
        guard let r = dma.lookup(address: address, count: count), let mem = r.memory,
              r.flags.contains(cmd == .dmaRead ? .read : .write) else {
            return try refuse(VFIOErrno.EFAULT)
        }
        let at = r.memoryOffset + Int(address - r.address)
        guard at >= 0, at <= mem.size, count <= mem.size - at else { return try refuse(VFIOErrno.EFAULT) }
        if cmd == .dmaRead {
            guard !h.noReply else { return }
            // The reply echoes the request's fields, then the data (sent from guest memory), then the trailer (QEMU's
            // 4 padding bytes): spec `addr, count u64, data`; QEMU `offset, count u32, data, pad`.
            let trailer = layout.requestTrailerSize
            let total = VFIOUserLimits.headerSize + dataAt + count + trailer
            func header(_ o: UnsafeMutableRawPointer) {
                VFIOUserHeader(messageID: h.messageID, command: h.command, messageSize: UInt32(total), flags: VFIOUserFlags.typeReply).store(to: o)
                layout.storeRequestFields(to: o + VFIOUserLimits.headerSize, address: address, count: count64)
            }
            if mem.sizeIsSealed || count == 0 {
                try sendServerReply(count: VFIOUserLimits.headerSize + dataAt, data: UnsafeRawBufferPointer(start: mem.base + at, count: count),
                                    trailer: trailer, header)
            } else {
                // The server may hold this file unsealed (DMA_MAP sent it the fd) and shrink it under the send, which
                // would then fail part way through the reply: copy through the guard first (EFAULT for lost pages),
                // and send the copy inside the reply (a deferred reply must not point at it).
                var copy = [UInt8](repeating: 0, count: count)
                let copied = copy.withUnsafeMutableBytes { b in (try? mem.copy(at: at, to: b.baseAddress!, count: count)) != nil }
                guard copied else { return try refuse(VFIOErrno.EFAULT) }
                try sendServerReply(count: VFIOUserLimits.headerSize + dataAt + count, trailer: trailer) { o in
                    header(o)
                    copy.withUnsafeBytes { (o + VFIOUserLimits.headerSize + dataAt).copyMemory(from: $0.baseAddress!, byteCount: count) }
                }
            }
        } else {
            if count > 0 {
                do { try mem.copy(at: at, from: p.baseAddress! + dataAt, count: count) } catch { return try refuse(VFIOErrno.EFAULT) }
            }
            guard !h.noReply else { return }
            // The reply (as `VFIOUserDMALayout.encodeReply`): spec the request's `addr, count u64`; QEMU nothing.
            let fields = layout == .spec ? dataAt : 0
            let total = VFIOUserLimits.headerSize + fields
            try sendServerReply(count: total) { o in
                VFIOUserHeader(messageID: h.messageID, command: h.command, messageSize: UInt32(total), flags: VFIOUserFlags.typeReply).store(to: o)
                if fields > 0 { layout.storeRequestFields(to: o + VFIOUserLimits.headerSize, address: address, count: count64) }
            }
        }
    }

    private func unexpected(_ r: VFIOUserReply, _ c: VFIOUserCommand) -> VFIOUserError {
        fail(.fatal("unexpected reply \(r) to \(c)"))
    }

    // MARK: Commands

    private func negotiate() throws(VFIOUserError) {
        let (r, _) = try call(.version(VFIOUserVersion(major: configuration.major, minor: configuration.minor,
                                                       capabilities: configuration.peer.advertised)),
                              maxReplyPayload: 4 + VFIOUserLimits.maxVersionJSON)
        guard case .version(let v) = r else { throw unexpected(r, .version) }
        guard v.major == configuration.major else { throw fail(.fatal("server major \(v.major)")) }
        guard v.minor <= configuration.minor else { throw fail(.fatal("server minor \(v.minor) above ours \(configuration.minor)")) }
        let sc = v.capabilities ?? VFIOUserCapabilities()
        if let problem = configuration.peer.problem(withPeer: sc, minimumMsgFDs: 1) { throw fail(.fatal("server \(problem)")) }
        if sc.writeMultiple == true && !configuration.writeMultiple { throw fail(.fatal("server capabilities not a subset of ours")) }
        serverVersion = v
    }

    /// Server's limit for REGION_READ/WRITE counts, capped by ours.
    private var xferChunk: Int { Int(min(serverCapabilities.effectiveMaxDataXferSize, configuration.maxDataXferSize, 1 << 24)) }
    private var fdsPerMessage: Int { Int(min(serverCapabilities.effectiveMaxMsgFDs, UInt64(VFIOUserLimits.fdsPerMessageHardLimit))) }

    /// The argsz two-step of the info commands: `ask(argsz)` with the fixed part's size, and again with the argsz a
    /// reply asks for when the answer did not fit (`ask` returns it; nil: the answer is complete), up to
    /// `VFIOUserLimits.maxInfoArgsz` and three requests.
    private func argszTwoStep<T>(_ what: String, from size: Int,
                                 _ ask: (UInt32) throws(VFIOUserError) -> (T, moreArgsz: UInt32?)) throws(VFIOUserError) -> T {
        var argsz = UInt32(size)
        for _ in 0..<3 {
            let (answer, more) = try ask(argsz)
            guard let more else { return answer }
            guard more <= VFIOUserLimits.maxInfoArgsz else { throw fail(.fatal("\(what) argsz \(more)")) }
            argsz = more
        }
        throw fail(.fatal("\(what) argsz keeps growing"))
    }

    /// DEVICE_GET_INFO, following the argsz re-query when the device reports capabilities.
    public func deviceInfo() throws(VFIOUserError) -> VFIODeviceInfo {
        try argszTwoStep("device info", from: VFIODeviceInfo.size) { argsz throws(VFIOUserError) in
            let (r, _) = try call(.deviceGetInfo(VFIODeviceInfo(argsz: argsz)), maxReplyPayload: Int(argsz))
            guard case .deviceInfo(let i) = r else { throw unexpected(r, .deviceGetInfo) }
            return (i, i.flags.contains(.caps) && i.argsz > argsz && i.capOffset == 0 ? i.argsz : nil)
        }
    }

    /// DEVICE_GET_REGION_INFO with the argsz two-step; validates the capability chain and sparse areas.
    public func regionInfo(_ index: UInt32) throws(VFIOUserError) -> VFIOUserClientRegion {
        let (info, fds) = try argszTwoStep("region info", from: VFIORegionInfo.size) { argsz throws(VFIOUserError) in
            let (r, fds) = try call(.regionInfo(VFIORegionInfo(argsz: argsz, index: index)), maxReplyPayload: Int(argsz), maxFDs: 1)
            guard case .regionInfo(let info) = r else { throw unexpected(r, .deviceGetRegionInfo) }
            guard info.index == index else { throw fail(.fatal("region info for \(info.index), asked \(index)")) }
            // The two-step: libvfio-user leaves FLAG_CAPS clear, the kernel sets it with cap_offset 0 (issue 9).
            return ((info, fds), info.argsz > argsz && (!info.flags.contains(.caps) || info.capOffset == 0) ? info.argsz : nil)
        }
        // FLAG_CAPS without a chain we could read must not make the region "all mappable" (rust-vmm #172).
        if info.flags.contains(.caps) && info.capOffset == 0 { throw .malformed("region \(index): FLAG_CAPS without a capability chain") }
        var sparse: [VFIOSparseArea]? = nil
        for cap in info.capabilities where cap.id == VFIORegionCapabilityID.sparseMMap {
            do { sparse = try VFIOSparseMMapCapability(parsing: cap, regionSize: info.size).areas } catch {
                throw .malformed("sparse mmap capability: \(error)")
            }
        }
        return VFIOUserClientRegion(info: info, fd: fds.take(0), sparseAreas: sparse)
    }

    /// Maps a region through its fd: each sparse area, or the whole region when there is no sparse capability.
    public func mapRegion(_ region: VFIOUserClientRegion) throws(VFIOUserError) -> [VFIOUserRegionMapping] {
        guard region.flags.contains(.mmap), let fd = region.fd else { throw .state("region \(region.info.index) is not mmap-able") }
        let areas = region.sparseAreas ?? [VFIOSparseArea(offset: 0, size: region.size)]
        var out: [VFIOUserRegionMapping] = []
        for a in areas where a.size > 0 {
            let (fileOffset, o) = region.info.offset.addingReportingOverflow(a.offset)
            guard !o, a.size <= UInt64(Int.max) else { throw .malformed("mapping offset overflow") }
            do {
                let m = try VFIOSharedMemory(mapping: fd, offset: fileOffset, size: Int(a.size), writable: region.flags.contains(.write), takeOwnership: false)
                out.append(VFIOUserRegionMapping(regionOffset: a.offset, memory: m))
            } catch { throw .device(error) }
        }
        return out
    }

    /// DEVICE_GET_REGION_IO_FDS with the argsz two-step (may report none).
    public func regionIOFDs(_ index: UInt32) throws(VFIOUserError) -> VFIOUserClientIOFDs {
        try argszTwoStep("io fds", from: VFIOUserRegionIOFDs.size) { argsz throws(VFIOUserError) in
            let (r, fds) = try call(.regionIOFDs(VFIOUserRegionIOFDs(argsz: argsz, index: index)), maxReplyPayload: Int(argsz),
                                    maxFDs: fdsPerMessage)
            guard case .regionIOFDs(let info) = r else { throw unexpected(r, .deviceGetRegionIOFDs) }
            return (VFIOUserClientIOFDs(entries: info.entries, fds: fds),
                    info.count > 0 && info.entries.isEmpty && info.argsz > argsz ? info.argsz : nil)
        }
    }

    public func irqInfo(_ index: UInt32) throws(VFIOUserError) -> VFIOIRQInfo {
        let (r, _) = try call(.irqInfo(VFIOIRQInfo(index: index)), maxReplyPayload: VFIOIRQInfo.size)
        guard case .irqInfo(let i) = r, i.index == index else { throw unexpected(r, .deviceGetIRQInfo) }
        return i
    }

    /// Wires eventfds to vectors `start...`; nil entries de-assign. Sent in batches of at most the server's
    /// `max_msg_fds`, each batch all-assign or all-de-assign (as QEMU does).
    public func setIRQEventFDs(index: UInt32, start: UInt32 = 0, _ fds: [VFIOEventFD?]) throws(VFIOUserError) {
        var i = 0
        while i < fds.count {
            let assign = fds[i] != nil
            var n = 0
            while i + n < fds.count && n < fdsPerMessage && (fds[i + n] != nil) == assign { n += 1 }
            let batch = assign ? fds[i..<(i + n)].map { $0!.fd } : []
            let s = VFIOIRQSet(flags: [.dataEventFD, .actionTrigger], index: index, start: start + UInt32(i), count: UInt32(n))
            _ = try call(.setIRQs(s), fds: batch, maxReplyPayload: 64)
            i += n
        }
    }

    /// DATA_NONE with count 0: disables every vector of `index`.
    public func disableIRQs(index: UInt32) throws(VFIOUserError) {
        _ = try call(.setIRQs(VFIOIRQSet(flags: [.dataNone, .actionTrigger], index: index, start: 0, count: 0)), maxReplyPayload: 64)
    }

    /// A SET_IRQS with DATA_NONE or DATA_BOOL (mask, unmask, trigger).
    public func setIRQs(index: UInt32, start: UInt32, count: UInt32, action: VFIOIRQAction, bools: [Bool]? = nil) throws(VFIOUserError) {
        let flags: VFIOIRQSetFlags = [bools == nil ? .dataNone : .dataBool, action.setFlag]
        _ = try call(.setIRQs(VFIOIRQSet(flags: flags, index: index, start: start, count: count, bools: bools ?? [])), maxReplyPayload: 64)
    }

    /// REGION_READ, split into chunks of the server's max_data_xfer_size.
    public func read(region: UInt32, offset: UInt64, count: Int) throws(VFIOUserError) -> [UInt8] {
        guard count > 0 else { return [] }
        var failure: VFIOUserError? = nil
        let out = [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            var done = 0
            do throws(VFIOUserError) {
                while done < count {
                    let n = min(xferChunk, count - done)
                    try regionAccess(write: false, region: region, offset: offset + UInt64(done), count: n, data: nil,
                                     readInto: UnsafeMutableRawPointer(buf.baseAddress!) + done)
                    done += n
                }
                initialized = count
            } catch {
                failure = error
                buf.initialize(repeating: 0)
                initialized = count
            }
        }
        if let failure { throw failure }
        return out
    }

    /// REGION_READ into caller-owned memory (no array): `buffer.count` bytes at `offset`.
    public func read(region: UInt32, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOUserError) {
        var done = 0
        while done < buffer.count {
            let n = min(xferChunk, buffer.count - done)
            try regionAccess(write: false, region: region, offset: offset + UInt64(done), count: n, data: nil, readInto: buffer.baseAddress! + done)
            done += n
        }
    }

    /// REGION_WRITE; `posted` sends NO_REPLY (errors are then not reported, as with QEMU's posted BAR writes).
    public func write(region: UInt32, offset: UInt64, data: [UInt8], posted: Bool = false) throws(VFIOUserError) {
        try data.withUnsafeBytes { raw in
            Result { () throws(VFIOUserError) in try write(region: region, offset: offset, from: raw, posted: posted) }
        }.get()
    }

    /// REGION_WRITE from caller-owned memory; `posted` as for `write(region:offset:data:posted:)`.
    public func write(region: UInt32, offset: UInt64, from data: UnsafeRawBufferPointer, posted: Bool = false) throws(VFIOUserError) {
        var done = 0
        while done < data.count {
            let n = min(xferChunk, data.count - done)
            try regionAccess(write: true, region: region, offset: offset + UInt64(done), count: n, data: data.baseAddress! + done,
                             readInto: nil, posted: posted)
            done += n
        }
    }

    /// REGION_WRITE_MULTI (only when the server advertised `write_multiple`); each write ≤ 8 bytes, at most
    /// `VFIOUserRegionWriteMulti.maxEntries`. `posted` sends NO_REPLY: the server performs the writes in order
    /// before it handles the next message, and errors are not reported (as for a posted REGION_WRITE).
    public func writeMultiple(_ writes: [(region: UInt32, offset: UInt64, data: [UInt8])], posted: Bool = false) throws(VFIOUserError) {
        guard serverCapabilities.effectiveWriteMultiple else { throw .state("server did not advertise write_multiple") }
        guard writes.allSatisfy({ $0.data.count <= VFIOUserRegionWriteMulti.maxEntryData }) else { throw .state("write_multiple entries are at most 8 bytes") }
        guard writes.count <= VFIOUserRegionWriteMulti.maxEntries else { throw .state("write_multiple takes at most \(VFIOUserRegionWriteMulti.maxEntries) writes") }
        let m = VFIOUserRegionWriteMulti(writes: writes.map { VFIOUserRegionAccess(offset: $0.offset, region: $0.region, count: UInt32($0.data.count), data: $0.data) })
        if posted { return try post(.regionWriteMulti(m)) }
        let (r, _) = try call(.regionWriteMulti(m), maxReplyPayload: 8)
        guard case .writeCount(let n) = r, n == UInt64(writes.count) else { throw unexpected(r, .regionWriteMulti) }
    }

    /// Registers `memory[memoryOffset ..< memoryOffset+size]` as guest memory at `address`. With `shareFD` the fd
    /// is passed so the server mmaps it; without, the server reaches it with DMA_READ/DMA_WRITE which this client
    /// answers.
    public func dmaMap(address: UInt64, size: UInt64, memory: VFIOSharedMemory, memoryOffset: Int = 0,
                       flags: VFIOUserDMAFlags = [.read, .write], shareFD: Bool = true) throws(VFIOUserError) {
        guard memoryOffset >= 0, size <= UInt64(memory.size), memoryOffset <= memory.size - Int(size) else {
            throw .state("DMA map outside the memory object")
        }
        let region = VFIOUserDMARegion(address: address, size: size, flags: flags, memory: memory, memoryOffset: memoryOffset)
        let m = VFIOUserDMAMap(flags: flags, offset: shareFD ? UInt64(memoryOffset) : 0, address: address, size: size)
        // The server is the authority on overlaps; record locally once it accepted.
        _ = try call(.dmaMap(m), fds: shareFD ? [memory.fd] : [], maxReplyPayload: 64)
        _ = try? dma.add(region, maxMaps: .max)
    }

    public func dmaUnmap(address: UInt64, size: UInt64) throws(VFIOUserError) {
        let (r, _) = try call(.dmaUnmap(VFIODMAUnmap(address: address, size: size)), maxReplyPayload: VFIODMAUnmap.size)
        guard case .dmaUnmap = r else { throw unexpected(r, .dmaUnmap) }
        try? dma.remove(address: address, size: size)
    }

    /// DMA_UNMAP with the ALL flag.
    public func dmaUnmapAll() throws(VFIOUserError) {
        let (r, _) = try call(.dmaUnmap(VFIODMAUnmap(flags: .all, address: 0, size: 0)), maxReplyPayload: VFIODMAUnmap.size)
        guard case .dmaUnmap = r else { throw unexpected(r, .dmaUnmap) }
        dma.removeAll()
    }

    public func reset() throws(VFIOUserError) {
        _ = try call(.deviceReset, maxReplyPayload: 64)
    }

    /// DEVICE_FEATURE; returns the reply data.
    public func feature(flags: UInt32, data: [UInt8] = [], maxReply: Int = 4096) throws(VFIOUserError) -> [UInt8] {
        let (r, _) = try call(.deviceFeature(VFIOUserDeviceFeature(flags: flags, data: data)), maxReplyPayload: maxReply)
        guard case .deviceFeature(let f) = r else { throw unexpected(r, .deviceFeature) }
        return f.data
    }

    /// Serves DMA_READ/DMA_WRITE requests the server sent while no call was in progress, waiting up to
    /// `timeoutMilliseconds` for the first one. (Calls serve them too while they wait for their replies.)
    public func serviceServerRequests(timeoutMilliseconds: Int32 = 0) throws(VFIOUserError) {
        lock.lock(); defer { lock.unlock() }
        if let b = broken { throw b }
        var wait = timeoutMilliseconds
        while true {
            let msg: VFIOUserFramedMessage
            do throws(VFIOUserError) {
                guard let m = try framer.next(maxMessageSize: VFIOUserLimits.headerSize + VFIOUserDMAAccess.size + Int(configuration.maxDataXferSize)) else {
                    guard try socket.waitReadable(timeoutMilliseconds: wait) else { return }
                    wait = 0
                    // Readable: take what is queued; a message begun here is completed by the next call.
                    if case .endOfStream = try framer.fill(fd: socket.fd, maxFDs: 0, nonblocking: true) { throw VFIOUserError.disconnected }
                    continue
                }
                msg = m
            } catch {
                if case .malformed = error { throw fail(.fatal("\(error)")) }
                throw fail(error)
            }
            guard msg.header.isCommand else {
                for fd in msg.fds { Glibc.close(fd) }
                throw fail(.fatal("unsolicited reply \(msg.header.messageID)"))
            }
            do { try serveServerRequest(msg) } catch { throw fail(error) }
        }
    }

    /// Sends raw bytes (for conformance tests) and waits for whatever single message comes back.
    public func rawExchange(_ bytes: [UInt8], fds: [Int32] = []) throws(VFIOUserError) -> VFIOUserReceived? {
        lock.lock(); defer { lock.unlock() }
        try socket.send(bytes, fds: fds)
        let deadline = coarseMonotonicMilliseconds() + Int64(configuration.timeoutMilliseconds)
        let m: VFIOUserFramedMessage
        do { m = try receiveFramed(deadline: deadline, maxMessageSize: VFIOUserLimits.maxMessageSize, maxFDs: 16, command: 0) } catch {
            if case .timeout = error { return nil }
            throw error
        }
        return VFIOUserReceived(header: m.header, payload: Array(m.payload), fds: VFIOUserFDs(m.fds))
    }
}
