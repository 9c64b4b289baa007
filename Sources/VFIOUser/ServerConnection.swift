import CSwiftCXLSystem
import Foundation
import Logging
import Synchronization
import VFIO
#if canImport(Glibc)
import Glibc
#endif

/// One client connection (not public: `VFIOUserServer` drives it).
final class VFIOUserConnection: @unchecked Sendable {
    unowned let server: VFIOUserServer
    let socket: VFIOUserSocket
    var logger: Logger
    // Copied from the server: read on every message, and `server` is unowned (each use would retain it).
    let device: any VFIODevice
    let config: VFIOUserServerConfiguration
    let dma = VFIOUserDMATable()
    @exclusivity(unchecked) var negotiated = false
    var clientCaps = VFIOUserCapabilities()
    var writeMultiple = false
    var dmaLayout: VFIOUserDMALayout = .spec
    @exclusivity(unchecked) var pending: [VFIOUserReceived] = []
    var nextMessageID: UInt16 = 0
    /// IDs of this server's requests still waiting for their replies, innermost last (nested exchanges): a short
    /// list, searched without hashing on the per-DMA path.
    var outstanding: [UInt16] = []
    var stashedReplies: [UInt16: VFIOUserReceived] = [:]
    @exclusivity(unchecked) var nesting = 0
    static let maxNesting = 8
    /// Commands queued beyond `maxNesting` while waiting for a DMA reply: at most this many, and this many bytes.
    static let maxPending = 64
    static let maxPendingBytes = 8 << 20
    @exclusivity(unchecked) var earlyAck: (VFIOUserHeader, VFIOUserRegionAccess.Fields)?
    @exclusivity(unchecked) var earlyAckSent = false
    @exclusivity(unchecked) var alive = true
    /// Receive side: one buffer, one recvmsg for whatever is queued, messages decoded in place.
    let framer = VFIOUserFramer()
    /// Replies on the fast path are built here and sent with one sendmsg.
    let out = VFIOUserSendBuffer()
    /// When the first bytes of a still incomplete message arrived (bounds the message by messageTimeout).
    @exclusivity(unchecked) var partialSince: Int64?
    /// Region index -> size and access flags, taken from the device once per connection (fast-path dispatch).
    @exclusivity(unchecked) var regions: [VFIOUserRegionEntry] = []
    /// The device's direct access (`VFIOUserDirectAccess`); only used when `hasDirect`. Not an optional: binding
    /// one copies the struct, which retains both closure contexts per message.
    let direct: VFIOUserDirectAccess
    let hasDirect: Bool
    /// REGION_READ/WRITE take the in-place path (off while debug logging wants every message logged).
    @exclusivity(unchecked) var fastPath = true
    /// Set twice per message (an atomic store, not a lock: this is the per-message path), read by the accept thread.
    private let idle = Atomic<Bool>(false)
    /// Waiting for the client's next message (not handling one, not sending): a newcomer may be refused at once.
    var isIdle: Bool { idle.load(ordering: .acquiring) }
    private func setIdle(_ v: Bool) { idle.store(v, ordering: .releasing) }

    /// The thread serving the connection (set when `serve()` starts): message-based DMA happens only there.
    private(set) var thread = pthread_self()

    init(server: VFIOUserServer, socket: VFIOUserSocket) {
        self.server = server
        self.device = server.device
        self.config = server.configuration
        self.socket = socket
        self.logger = server.logger
        self.logger[metadataKey: "conn"] = "\(socket.fd)"
        if let d = server.device as? any VFIOUserDirectAccessDevice {
            direct = VFIOUserDirectAccess(d)
            hasDirect = true
        } else {
            direct = VFIOUserDirectAccess()
            hasDirect = false
        }
        self.fastPath = logger.logLevel > .debug
    }

    /// Takes every region's size and flags from the device (regions a device adds later take the general path).
    func buildRegionTable() {
        let n = min(device.deviceInfo().numRegions, 256)
        regions = (0..<n).map { i in
            guard let info = try? device.regionInfo(i) else { return VFIOUserRegionEntry(size: 0, readable: false, writable: false) }
            return VFIOUserRegionEntry(size: info.size, readable: info.flags.contains(.read), writable: info.flags.contains(.write))
        }
    }

    /// How often a bounded wait (a started message, a DMA reply) wakes to look at the stop flag.
    var receiveTick: Int {
        max(10, min(250, min(config.messageTimeoutMilliseconds, config.dmaReplyTimeoutMilliseconds) / 4))
    }

    /// The next message, reading as needed (one recvmsg takes whatever is queued). nil: orderly end of stream, or a
    /// stop request while waiting. A started message must complete within messageTimeout; `deadline` bounds the
    /// whole wait (DMA replies). `idle`: waiting here for a new message counts as idle (`isIdle`).
    ///
    /// Waiting for a new message is one blocking `recvmsg` without a timeout (a timeout arms a kernel timer on every
    /// wait, which costs the message path 2-4%): `stop()` shuts the socket down to end it. A bounded wait (part of a
    /// message is buffered, or `deadline` is set) is a blocking `recvmsg` with SO_RCVTIMEO set to `receiveTick`
    /// (set once, kept until the next idle wait), so the stop flag and the limit are looked at every tick; within a
    /// tick of the limit it polls for exactly the time left, then takes what is queued without blocking.
    func receiveFramed(deadline: Int64? = nil, idle: Bool = false) throws(VFIOUserError) -> VFIOUserFramedMessage? {
        var m = VFIOUserFramedMessage(header: VFIOUserHeader(messageID: 0, command: 0, messageSize: 0, flags: 0),
                                      payload: UnsafeRawBufferPointer(start: nil, count: 0), fds: [])
        return try receive(into: &m, deadline: deadline, idle: idle) ? m : nil
    }

    /// `receiveFramed` into `m` (false: end of stream or stop): the serve loop's form, no optional per message.
    func receive(into m: inout VFIOUserFramedMessage, deadline: Int64? = nil, idle: Bool = false) throws(VFIOUserError) -> Bool {
        while true {
            // (A header's worth buffered first: the common empty buffer costs no call.)
            if framer.buffered >= VFIOUserLimits.headerSize, try framer.next(into: &m) { partialSince = nil; return true }
            if framer.buffered > 0 { if partialSince == nil { partialSince = coarseMonotonicMilliseconds() } } else { partialSince = nil }
            let bounded = partialSince != nil || deadline != nil
            var nonblocking = false
            if bounded {
                var limit = Int64.max
                if let p = partialSince { limit = p + Int64(config.messageTimeoutMilliseconds) }
                if let deadline { limit = min(limit, deadline) }
                let left = limit - coarseMonotonicMilliseconds()
                if left <= 0 { throw .timeout(command: 0) }
                if left >= Int64(receiveTick) {
                    // A blocking recvmsg that SO_RCVTIMEO ends after one tick: one system call where poll and a
                    // recvmsg were two (a DMA reply is waited for once per DMA message).
                    armReceiveTimeout(true)
                } else {
                    // The last stretch before the limit: poll for exactly what is left.
                    var p = pollfd(fd: socket.fd, events: Int16(POLLIN), revents: 0)
                    let r = poll(&p, 1, Int32(clamping: left))
                    if r <= 0 {
                        if r < 0 && errno != EINTR { throw .system(errno: errno, "poll") }
                        if server.stopRequested { return false }
                        continue
                    }
                    nonblocking = true
                }
            } else {
                // Waiting for a new message blocks without a timeout (stop() shuts the socket down).
                armReceiveTimeout(false)
            }
            let waiting = idle && !bounded
            if waiting { setIdle(true) }
            let got: VFIOUserFill
            do { got = try framer.fill(fd: socket.fd, maxFDs: Int(config.maxMsgFDs), nonblocking: nonblocking) } catch {
                if waiting { setIdle(false) }
                throw error
            }
            if waiting { setIdle(false) }
            switch got {
            case .bytes: break
            case .endOfStream:
                if framer.buffered > 0 { throw .fatal("connection closed mid-message") }
                return false
            case .wouldBlock:
                if server.stopRequested { return false }
            }
        }
    }

    /// Whether SO_RCVTIMEO (`receiveTick`) is set on the socket: set for bounded waits, cleared before an idle
    /// one, each only when it changes (a doorbell whose DMA reply comes with the next request never waits idle).
    @exclusivity(unchecked) private var receiveTimeoutArmed = false

    private func armReceiveTimeout(_ on: Bool) {
        guard on != receiveTimeoutArmed else { return }
        receiveTimeoutArmed = on
        socket.setReceiveTimeout(milliseconds: on ? receiveTick : 0)
    }

    /// Largest count per DMA message we send: both sides' limits.
    var dmaChunk: Int { Int(min(clientCaps.effectiveMaxDataXferSize, config.maxDataXferSize)) }

    func serve() {
        thread = pthread_self()
        let dmaAccess = VFIOUserServerDMA(self)
        device.attachDMA(dmaAccess)
        defer {
            releaseDMA(dma.takeAll())
            device.attachDMA(nil)
            device.clientDisconnected()
            framer.discardFDs()
            server.connectionEnding()
            socket.close()
            logger.info("vfio-user client disconnected")
        }
        buildRegionTable()
        // One message variable for the connection, overwritten in place: an optional per message was destroyed
        // through the runtime's generic value witness (about ninety instructions a message).
        var m = VFIOUserFramedMessage(header: VFIOUserHeader(messageID: 0, command: 0, messageSize: 16, flags: 0),
                                      payload: UnsafeRawBufferPointer(start: nil, count: 0), fds: [])
        while alive {
            if !pending.isEmpty {
                handle(pending.removeFirst())
                continue
            }
            guard nextMessage(&m) else { return }
            handleFramed(m)
        }
    }

    /// The client's next message into `m`; false when the connection ends (end of stream, stop, or an error, logged).
    private func nextMessage(_ m: inout VFIOUserFramedMessage) -> Bool {
        do throws(VFIOUserError) {
            return try receive(into: &m, idle: true)
        } catch {
            dropped(error)
            return false
        }
    }

    @inline(never)
    private func dropped(_ error: VFIOUserError) {
        if case .malformed(let why) = error {
            // Too many fds: we cannot know which command; close.
            logger.warning("dropping connection", metadata: ["reason": "\(why)"])
        } else if error != .disconnected {
            logger.warning("dropping connection", metadata: ["error": "\(error)"])
        }
    }

    /// A framed message: REGION_READ/WRITE that need nothing special are served in place; everything else (and
    /// anything the fast path does not accept, errors included) goes through the general decoder and `handle`.
    func handleFramed(_ m: VFIOUserFramedMessage) {
        let h = m.header
        if fastPath && negotiated && m.fds.isEmpty {
            if h.command == VFIOUserCommand.regionRead.rawValue && h.flags == VFIOUserFlags.typeCommand {
                if fastRead(h, m.payload) { return }
            } else if h.command == VFIOUserCommand.regionWrite.rawValue && h.flags & ~VFIOUserFlags.noReply == VFIOUserFlags.typeCommand {
                if fastWrite(h, m.payload) { return }
            }
        }
        handle(VFIOUserReceived(header: h, payload: Array(m.payload), fds: VFIOUserFDs(m.fds)))
    }

    /// The one bounds check of the fast path, against the precomputed region table.
    @inline(__always)
    private func fastCheck(_ region: UInt32, _ offset: UInt64, _ count: UInt32, write: Bool) -> Bool {
        guard UInt64(count) <= config.maxDataXferSize, Int(region) < regions.count else { return false }
        let r = regions[Int(region)]
        return (write ? r.writable : r.readable) && offset <= r.size && UInt64(count) <= r.size - offset
    }

    /// REGION_READ in place: the reply (header, access, data) is built in the send buffer, the device reads
    /// straight into it when it can, one sendmsg. Returns false to leave the message to the general path.
    private func fastRead(_ h: VFIOUserHeader, _ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count == VFIOUserRegionAccess.size else { return false }
        let f = VFIOUserRegionAccess.Fields(loading: p), offset = f.offset, region = f.region, count = f.count
        guard fastCheck(region, offset, count, write: false) else { return false }
        // A read nested in a DMA wait while an outer reply is being built gets a buffer of its own.
        if out.busy { readReply(h, offset, region, count, in: VFIOUserSendBuffer(capacity: 256)) }
        else { readReply(h, offset, region, count, in: out) }
        return true
    }

    /// The REGION_READ reply built in `buf` and sent (the access is checked).
    @inline(__always)
    private func readReply(_ h: VFIOUserHeader, _ offset: UInt64, _ region: UInt32, _ count: UInt32, in buf: VFIOUserSendBuffer) {
        let total = VFIOUserLimits.headerSize + VFIOUserRegionAccess.size + Int(count)
        buf.reserve(total)
        buf.busy = true
        defer { buf.busy = false }
        let dst = buf.pointer
        do throws(VFIOError) {
            let data = UnsafeMutableRawBufferPointer(start: dst + 32, count: Int(count))
            if hasDirect {
                try direct.read(region, offset, data)
            } else {
                let bytes = try device.read(region: region, offset: offset, count: Int(count))
                guard bytes.count == Int(count) else { throw VFIOError.system(errno: VFIOErrno.EIO, "short device read") }
                bytes.withUnsafeBytes { if $0.count > 0 { data.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
            }
        } catch {
            errorReply(h, VFIOUserError.device(error).errno)
            return
        }
        VFIOUserHeader(messageID: h.messageID, command: h.command, messageSize: UInt32(total), flags: VFIOUserFlags.typeReply).store(to: dst)
        VFIOUserRegionAccess.Fields(offset: offset, region: region, count: count).store(to: dst + 16)
        do { try socket.send(dst, count: total) } catch { alive = false }
    }

    /// REGION_WRITE in place: the device writes from the receive buffer (pinned meanwhile: a handler doing DMA
    /// by message makes the connection read on), the 32-byte acknowledgement is one sendmsg.
    private func fastWrite(_ h: VFIOUserHeader, _ p: UnsafeRawBufferPointer) -> Bool {
        guard p.count >= VFIOUserRegionAccess.size else { return false }
        let f = VFIOUserRegionAccess.Fields(loading: p), offset = f.offset, region = f.region, count = f.count
        guard Int(count) == p.count - VFIOUserRegionAccess.size, fastCheck(region, offset, count, write: true) else { return false }
        let data = UnsafeRawBufferPointer(rebasing: p[VFIOUserRegionAccess.size...])
        framer.pin()
        defer { framer.unpin() }
        do throws(VFIOUserError) {
            try withEarlyAck(h, f) { () throws(VFIOUserError) in
                try device { () throws(VFIOError) in
                    if hasDirect { try direct.write(region, offset, data) }
                    else { try device.write(region: region, offset: offset, data: Array(data)) }
                }
            }
        } catch {
            if case .fatal = error { alive = false; return true }
            errorReply(h, error.errno)
        }
        return true
    }

    // MARK: Sending

    func send(_ frame: VFIOUserFrame, fds: [Int32] = []) throws(VFIOUserError) {
        try socket.send(frame.encode(), fds: fds)
    }

    private func reply(_ req: VFIOUserHeader, _ payload: [UInt8], fds: [Int32] = []) {
        guard !req.noReply else { return }
        do { try send(.reply(to: req, payload: payload), fds: fds) } catch { alive = false }
    }

    private func errorReply(_ req: VFIOUserHeader, _ errno: Int32) {
        guard !req.noReply else { return }
        do { try send(.errorReply(to: req, errno: errno)) } catch { alive = false }
    }

    // MARK: Dispatch

    func handle(_ msg: VFIOUserReceived) {
        let start = monotonicNanoseconds()
        let h = msg.header
        var result = "ok"
        defer {
            let us = (monotonicNanoseconds() - start) / 1000
            logger.debug("vfio-user message", metadata: [
                "msg_id": "\(h.messageID)", "command": "\(h.typedCommand?.description ?? String(h.command))",
                "size": "\(h.messageSize)", "flags": "0x\(String(h.flags, radix: 16))", "fds": "\(msg.fds.count)",
                "result": "\(result)", "duration_us": "\(us)",
            ])
        }
        guard h.isCommand else {
            result = "unexpected reply"
            errorReply(VFIOUserHeader(messageID: h.messageID, command: h.command, messageSize: 16, flags: 0), VFIOErrno.EINVAL)
            return
        }
        let request: VFIOUserRequest
        do { request = try VFIOUserDecoder.decodeCommand(header: h, payload: msg.payload, fdCount: msg.fds.count) } catch {
            result = "\(error)"
            errorReply(h, error.errno)
            return
        }
        if !negotiated {
            guard case .version = request else {
                result = "command before VERSION"
                errorReply(h, VFIOErrno.EINVAL)
                return
            }
        }
        do throws(VFIOUserError) {
            try dispatch(h, request, msg.fds)
        } catch {
            result = "\(error)"
            if case .fatal = error { alive = false; return }
            errorReply(h, error.errno)
        }
    }

    private func device<T>(_ body: () throws(VFIOError) -> T) throws(VFIOUserError) -> T {
        do { return try body() } catch { throw .device(error) }
    }

    private func dispatch(_ h: VFIOUserHeader, _ request: VFIOUserRequest, _ fds: VFIOUserFDs) throws(VFIOUserError) {
        switch request {
        case .version(let v): try handleVersion(h, v)
        case .dmaMap(let m): try handleDMAMap(h, m, fds)
        case .dmaUnmap(let u): try handleDMAUnmap(h, u)
        case .deviceGetInfo(let req):
            let info = device.deviceInfo()
            var out = VFIODeviceInfo(argsz: UInt32(VFIODeviceInfo.size), flags: info.flags, numRegions: info.numRegions,
                                     numIRQs: info.numIRQs)
            if !info.capabilities.isEmpty {
                let chain = VFIOCapabilityChain.encode(info.capabilities, baseOffset: VFIODeviceInfo.sizeWithCaps)
                let needed = UInt32(VFIODeviceInfo.sizeWithCaps + chain.count)
                out.flags.insert(.caps)
                out.argsz = needed
                if req.argsz >= needed {
                    out.capOffset = UInt32(VFIODeviceInfo.sizeWithCaps)
                    out.capabilities = info.capabilities
                }
            }
            reply(h, out.encode())
        case .regionInfo(let req): try handleRegionInfo(h, req)
        case .regionIOFDs(let req): try handleRegionIOFDs(h, req)
        case .irqInfo(let req):
            let info = try device { () throws(VFIOError) in try device.irqInfo(req.index) }
            reply(h, VFIOIRQInfo(flags: info.flags, index: info.index, count: info.count).encode())
        case .setIRQs(let s): try handleSetIRQs(h, s, fds)
        case .regionRead(let a):
            try checkAccess(a.region, a.offset, Int(a.count), write: false)
            let data = try device { () throws(VFIOError) in try device.read(region: a.region, offset: a.offset, count: Int(a.count)) }
            guard data.count == Int(a.count) else { throw .device(.system(errno: VFIOErrno.EIO, "short device read")) }
            reply(h, VFIOUserRegionAccess(offset: a.offset, region: a.region, count: a.count, data: data).encode())
        case .regionWrite(let a):
            try checkAccess(a.region, a.offset, a.data.count, write: true)
            try withEarlyAck(h, VFIOUserRegionAccess.Fields(offset: a.offset, region: a.region, count: a.count)) { () throws(VFIOUserError) in
                try device { () throws(VFIOError) in try device.write(region: a.region, offset: a.offset, data: a.data) }
            }
        case .regionWriteMulti(let m):
            guard writeMultiple else { throw .malformed("REGION_WRITE_MULTI not negotiated") }
            for w in m.writes {
                try checkAccess(w.region, w.offset, w.data.count, write: true)
                try device { () throws(VFIOError) in try device.write(region: w.region, offset: w.offset, data: w.data) }
            }
            var wr = ByteWriter(); wr.u64(UInt64(m.writes.count))
            reply(h, wr.bytes)
        case .deviceReset:
            try device { () throws(VFIOError) in try device.reset() }
            reply(h, [])
        case .deviceFeature(let f):
            let data: [UInt8]
            do { data = try device.feature(flags: f.flags, data: f.data) } catch {
                if case .notSupported = error { throw .peer(errno: VFIOErrno.ENOTTY, command: h.command) }
                throw .device(error)
            }
            reply(h, VFIOUserDeviceFeature(flags: f.flags, data: data).encode())
        case .migDataRead, .migDataWrite:
            throw .device(.notSupported("migration"))
        case .dmaRead, .dmaWrite:
            throw .malformed("\(request.command) is server-to-client only")
        }
    }

    /// A write whose handler starts message-based DMA is acknowledged before the first DMA message goes out:
    /// QEMU holds its big lock while waiting for the write's reply and only serves DMA_READ/WRITE under that lock,
    /// so waiting for the DMA reply first would deadlock until both sides time out. Errors after the early
    /// acknowledgement are logged, not reported.
    private func withEarlyAck(_ h: VFIOUserHeader, _ ack: VFIOUserRegionAccess.Fields, _ body: () throws(VFIOUserError) -> Void) throws(VFIOUserError) {
        // Saved and restored: commands handled while this one waits for DMA replies nest.
        let saved = (earlyAck, earlyAckSent)
        earlyAck = h.noReply ? nil : (h, ack)
        earlyAckSent = false
        defer { (earlyAck, earlyAckSent) = saved }
        do {
            try body()
        } catch {
            if earlyAckSent {
                logger.warning("write failed after early acknowledgement", metadata: ["msg_id": "\(h.messageID)", "error": "\(error)"])
                return
            }
            throw error
        }
        if !earlyAckSent { sendAck(h, ack) }
    }

    private func flushEarlyAck() {
        guard let (h, ack) = earlyAck, !earlyAckSent else { return }
        sendAck(h, ack)
        earlyAckSent = true
    }

    /// The REGION_WRITE reply (header + offset, region, count: 32 bytes), built on the stack, one sendmsg.
    private func sendAck(_ h: VFIOUserHeader, _ ack: VFIOUserRegionAccess.Fields) {
        guard !h.noReply else { return }
        withUnsafeTemporaryAllocation(byteCount: 32, alignment: 8) { buf in
            let p = buf.baseAddress!
            VFIOUserHeader(messageID: h.messageID, command: h.command, messageSize: 32, flags: VFIOUserFlags.typeReply).store(to: p)
            ack.store(to: p + 16)
            do { try socket.send(p, count: 32) } catch { alive = false }
        }
    }

    private func checkAccess(_ region: UInt32, _ offset: UInt64, _ count: Int, write: Bool) throws(VFIOUserError) {
        guard UInt64(count) <= config.maxDataXferSize else { throw .malformed("access count \(count) exceeds max_data_xfer_size") }
        let info = try device { () throws(VFIOError) in try device.regionInfo(region) }
        let (end, o) = offset.addingReportingOverflow(UInt64(count))
        guard !o, end <= info.size else {
            throw .device(.invalidArgument("region \(region) access 0x\(String(offset, radix: 16))+\(count) beyond size 0x\(String(info.size, radix: 16))"))
        }
        guard info.flags.contains(write ? .write : .read) else { throw .device(.invalidArgument("region \(region) not \(write ? "writable" : "readable")")) }
    }

    private func handleVersion(_ h: VFIOUserHeader, _ v: VFIOUserVersion) throws(VFIOUserError) {
        guard !negotiated else { throw .malformed("repeated VERSION") }
        guard v.major == VFIOUserLimits.protocolMajor else {
            errorReply(h, VFIOErrno.ENOTSUP)
            throw .fatal("major version \(v.major)")
        }
        let c = v.capabilities ?? VFIOUserCapabilities()
        if let problem = config.peer.problem(withPeer: c, minimumMsgFDs: 0) { throw .malformed(problem) }
        if let t = c.twinSocket, t.fdIndex != nil { throw .malformed("twin_socket fd_index in a request") }
        // Our reply: a subset of the client's keys (spec "Version": the reply's capabilities must be a subset).
        var ours = VFIOUserCapabilities()
        if c.maxMsgFDs != nil { ours.maxMsgFDs = config.maxMsgFDs }
        if c.maxDataXferSize != nil { ours.maxDataXferSize = config.maxDataXferSize }
        if c.pgsizes != nil { ours.pgsizes = config.pageSizes & c.effectivePageSizes }
        if c.maxDMAMaps != nil { ours.maxDMAMaps = min(config.maxDMAMaps, c.effectiveMaxDMAMaps) }
        writeMultiple = config.writeMultiple && c.writeMultiple == true
        if writeMultiple { ours.writeMultiple = true }
        clientCaps = c
        negotiated = true
        dmaLayout = config.peer.dmaLayout(negotiatedMinor: v.minor)
        let minor = min(v.minor, VFIOUserLimits.protocolMinor)
        let hasKeys = ours != VFIOUserCapabilities()
        let out = VFIOUserVersion(major: VFIOUserLimits.protocolMajor, minor: minor, capabilities: hasKeys || v.capabilities != nil ? ours : nil)
        logger.debug("vfio-user negotiated", metadata: ["minor": "\(minor)", "client": "\(v.json ?? "")", "server": "\(ours.json())"])
        reply(h, out.encode())
    }

    private var maxDMAMaps: UInt64 { min(config.maxDMAMaps, clientCaps.effectiveMaxDMAMaps) }

    private func handleDMAMap(_ h: VFIOUserHeader, _ m: VFIOUserDMAMap, _ fds: VFIOUserFDs) throws(VFIOUserError) {
        let (_, overflow) = m.address.addingReportingOverflow(m.size)
        guard m.size > 0, !overflow else { throw .malformed("DMA_MAP range 0x\(String(m.address, radix: 16))+0x\(String(m.size, radix: 16))") }
        guard m.size <= UInt64(Int.max) else { throw .malformed("DMA_MAP size") }
        // pgsizes honoured: address and size are multiples of the smallest negotiated page size.
        let pages = config.pageSizes & clientCaps.effectivePageSizes
        let minPage = pages == 0 ? config.pageSizes : pages & (~pages &+ 1)
        guard m.address % minPage == 0, m.size % minPage == 0 else {
            throw .malformed("DMA_MAP 0x\(String(m.address, radix: 16))+0x\(String(m.size, radix: 16)) not aligned to 0x\(String(minPage, radix: 16))")
        }
        var memory: VFIOSharedMemory? = nil
        var memOffset = 0
        if let fd = fds.take(0) {
            let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
            let aligned = m.offset & ~(page - 1)
            memOffset = Int(m.offset - aligned)
            let (len, o) = m.size.addingReportingOverflow(UInt64(memOffset))
            guard !o, len <= UInt64(Int.max) else { Glibc.close(fd); throw .malformed("DMA_MAP size") }
            // A mapping past the end of a file maps fine but SIGBUSes the server on access (issue 9, hostile client).
            var st = stat()
            if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG {
                let (end, o2) = aligned.addingReportingOverflow(len)
                guard !o2, end <= UInt64(max(0, st.st_size)) else { Glibc.close(fd); throw .malformed("DMA_MAP range beyond the end of the fd") }
            }
            do {
                memory = try VFIOSharedMemory(mapping: fd, offset: aligned, size: Int(len), writable: m.flags.contains(.write), takeOwnership: true)
            } catch {
                Glibc.close(fd)
                throw .device(error)
            }
        }
        let region = VFIOUserDMARegion(address: m.address, size: m.size, flags: m.flags, memory: memory, memoryOffset: memOffset)
        let r = try device { () throws(VFIOError) in try dma.add(region, maxMaps: maxDMAMaps) }
        if r == .added {
            // A device behind a real IOMMU maps the client's memory at the client's IOVA (kernel VFIO backend).
            do {
                try device { () throws(VFIOError) in
                    try device.dmaMapped(iova: m.address, size: m.size, address: memory.map { $0.base + memOffset },
                                         writable: m.flags.contains(.write))
                }
            } catch {
                _ = try? dma.removeInside(address: m.address, size: m.size)
                throw error
            }
        }
        logger.debug("DMA map", metadata: ["addr": "0x\(String(m.address, radix: 16))", "size": "0x\(String(m.size, radix: 16))", "prot": "\(m.flags.rawValue)",
                                          "fd": "\(memory != nil)", "result": "\(r)"])
        reply(h, [])
    }

    /// Takes removed mappings out of the device's IOMMU (if it has one) before their memory is unmapped.
    private func releaseDMA(_ regions: [VFIOUserDMARegion]) {
        for r in regions { device.dmaUnmapped(iova: r.address, size: r.size) }
    }

    private func handleDMAUnmap(_ h: VFIOUserHeader, _ u: VFIODMAUnmap) throws(VFIOUserError) {
        if u.flags == .all {
            guard u.address == 0 && u.size == 0 else { throw .malformed("DMA_UNMAP all with a range") }
            releaseDMA(dma.takeAll())
        } else {
            guard u.flags.isEmpty else { throw .malformed("DMA_UNMAP flags 0x\(String(u.flags.rawValue, radix: 16))") }
            let gone = try device { () throws(VFIOError) in try dma.removeInside(address: u.address, size: u.size) }
            if gone.isEmpty { logger.debug("DMA unmap of an unmapped range: nothing unmapped (as the kernel's type1 IOMMU)") }
            releaseDMA(gone)
        }
        reply(h, VFIODMAUnmap(flags: u.flags, address: u.address, size: u.size).encode())
    }

    private func handleRegionInfo(_ h: VFIOUserHeader, _ req: VFIORegionInfo) throws(VFIOUserError) {
        let info = try device { () throws(VFIOError) in try device.regionInfo(req.index) }
        var out = VFIORegionInfo(argsz: UInt32(VFIORegionInfo.size), flags: info.flags.subtracting(.caps), index: req.index,
                                 size: info.size, offset: info.mapping?.fileOffset ?? 0)
        if !info.capabilities.isEmpty {
            let chain = VFIOCapabilityChain.encode(info.capabilities, baseOffset: VFIORegionInfo.size)
            let needed = UInt32(VFIORegionInfo.size + chain.count)
            out.argsz = needed
            // The argsz two-step: only include the chain when the client's buffer holds it (libvfio-user #185).
            if req.argsz >= needed {
                out.flags.insert(.caps)
                out.capOffset = UInt32(VFIORegionInfo.size)
                out.capabilities = info.capabilities
            }
        }
        // The mmap fd goes with the complete reply only, so a client doing the two-step receives it once.
        var fds: [Int32] = []
        if info.flags.contains(.mmap), let m = info.mapping, req.argsz >= out.argsz { fds = [m.fd] }
        reply(h, out.encode(), fds: fds)
    }

    private func handleRegionIOFDs(_ h: VFIOUserHeader, _ req: VFIOUserRegionIOFDs) throws(VFIOUserError) {
        let n = device.deviceInfo().numRegions
        guard req.index < n else { throw .device(.invalidArgument("region index \(req.index)")) }
        let list = try device { () throws(VFIOError) in try device.regionIOFDs(req.index) }
        let needed = UInt32(VFIOUserRegionIOFDs.size + list.count * VFIOUserRegionIOFDs.entrySize)
        var out = VFIOUserRegionIOFDs(argsz: needed, index: req.index, count: UInt32(list.count))
        var fds: [Int32] = []
        if req.argsz >= needed && !list.isEmpty {
            guard UInt64(list.count) <= clientCaps.effectiveMaxMsgFDs else { throw .device(.invalidArgument("too many io fds for client")) }
            for (i, e) in list.enumerated() {
                out.entries.append(.init(offset: e.offset, size: e.size, fdIndex: UInt32(i), type: e.type.rawValue, flags: e.flags, datamatch: e.datamatch))
                fds.append(e.fd)
            }
        }
        reply(h, out.encode(), fds: fds)
    }

    private func handleSetIRQs(_ h: VFIOUserHeader, _ request: VFIOIRQSet, _ fds: VFIOUserFDs) throws(VFIOUserError) {
        var s = request
        // DATA_EVENTFD's eventfds came with the message (SCM_RIGHTS); the device owns them from here.
        if s.flags.contains(.dataEventFD) { s.eventfds = fds.takeAll().map { VFIOEventFD(owning: $0) } }
        try device { () throws(VFIOError) in try device.setIRQs(s) }
        reply(h, [])
    }

    // MARK: Server-initiated DMA

    private func checkThread() throws(VFIOError) {
        guard pthread_equal(pthread_self(), thread) != 0 else {
            throw .notSupported("message-based DMA outside the server thread")
        }
        guard alive else { throw .system(errno: VFIOErrno.ENOTCONN, "client gone") }
    }

    /// Reads guest memory into `buffer`: straight from a shared-fd mapping, else with DMA_READ messages whose replies'
    /// data go from the receive buffer straight into `buffer` (one copy, no array).
    func dmaRead(address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        let count = buffer.count
        guard let r = dma.lookup(address: address, count: count) else { throw .badAddress(address, count) }
        guard r.flags.contains(.read) else { throw .system(errno: VFIOErrno.EPERM, "DMA region not readable") }
        guard count > 0, let dst = buffer.baseAddress else { return }
        if let mem = r.memory {
            let at = r.memoryOffset + Int(address - r.address)
            guard at >= 0, at <= mem.size - count else { throw .badAddress(address, count) }
            // Guarded: the client may have shrunk the file since DMA_MAP (QEMU does not seal guest RAM).
            try mem.copy(at: at, to: dst, count: count)
            return
        }
        try checkThread()
        var done = 0
        let layout = dmaLayout
        while done < count {
            let n = min(dmaChunk, count - done)
            let a = address + UInt64(done)
            let reply = try exchange(.dmaRead, fieldsSize: layout.requestFieldsSize, trailerSize: layout.requestTrailerSize) { p in
                layout.storeRequestFields(to: p, address: a, count: UInt64(n))
            }
            do throws(VFIOUserError) {
                let at = try layout.checkReadReply(reply, address: a, count: UInt64(n))
                (dst + done).copyMemory(from: reply.baseAddress! + at, byteCount: n)
            } catch {
                alive = false
                throw .system(errno: VFIOErrno.EPROTO, "DMA_READ reply: \(error)")
            }
            done += n
        }
    }

    /// Writes `data` to guest memory: straight into a shared-fd mapping, else with DMA_WRITE messages whose data
    /// leaves from `data` itself (the request's header and fields are built in the send buffer and the three go
    /// out with one sendmsg: no copy in user space).
    func dmaWrite(address: UInt64, from data: UnsafeRawBufferPointer) throws(VFIOError) {
        guard let r = dma.lookup(address: address, count: data.count) else { throw .badAddress(address, data.count) }
        guard r.flags.contains(.write) else { throw .system(errno: VFIOErrno.EPERM, "DMA region not writable") }
        guard data.count > 0, let src = data.baseAddress else { return }
        if let mem = r.memory {
            let at = r.memoryOffset + Int(address - r.address)
            guard at >= 0, at <= mem.size - data.count else { throw .badAddress(address, data.count) }
            try mem.copy(at: at, from: src, count: data.count)
            return
        }
        try checkThread()
        var done = 0
        let layout = dmaLayout
        while done < data.count {
            let n = min(dmaChunk, data.count - done)
            let a = address + UInt64(done)
            // The reply's payload is not checked: QEMU sends none, libvfio-user echoes addr and count.
            _ = try exchange(.dmaWrite, fieldsSize: layout.requestFieldsSize, data: UnsafeRawBufferPointer(start: src + done, count: n),
                             trailerSize: layout.requestTrailerSize) { p in
                layout.storeRequestFields(to: p, address: a, count: UInt64(n))
            }
            done += n
        }
    }

    // MARK: Scatter-gather DMA by message, pipelined

    /// At most this many DMA messages in flight at once (one window), and about this many data bytes.
    static let dmaWindowMessages = 64
    static let dmaWindowBytes = 128 << 10

    /// A piece of a scatter-gather DMA that goes as one DMA_READ/DMA_WRITE message.
    struct DMAPiece {
        var address: UInt64
        var pointer: UnsafeMutableRawPointer
        var count: Int
    }
    /// Reused per transfer (no array per doorbell once warm).
    @exclusivity(unchecked) private var dmaPieces: [DMAPiece] = []
    private let iovBases = UnsafeMutablePointer<UnsafeRawPointer?>.allocate(capacity: 1024)
    private let iovLens = UnsafeMutablePointer<Int>.allocate(capacity: 1024)
    deinit {
        iovBases.deallocate()
        iovLens.deallocate()
    }

    /// Scatter-gather DMA (`VFIODMAMemory.read(segments:)` / `write(segments:)`): when every segment lies in
    /// guest memory registered without an fd, the DMA_READ/DMA_WRITE messages of a window (up to
    /// `dmaWindowMessages` messages and about `dmaWindowBytes` of data) leave in one `sendmsg` before any reply
    /// is awaited, so a window costs one round trip where one message each cost one; the client answers them in
    /// order (ours with one `sendmsg` for all that one `recvmsg` brought). The vfio-user protocol allows a
    /// server's requests to be outstanding together: each reply carries its request's message ID. Anything else
    /// (a shared-fd segment, a single message) goes one segment at a time as `dmaRead`/`dmaWrite` do.
    func dmaTransfer(_ segments: [VFIODMASegment], toGuest: Bool) throws(VFIOError) {
        dmaPieces.removeAll(keepingCapacity: true)
        var viaMessages = true
        for s in segments where s.buffer.count > 0 {
            let count = s.buffer.count
            guard let r = dma.lookup(address: s.address, count: count) else { throw .badAddress(s.address, count) }
            guard r.flags.contains(toGuest ? .write : .read) else {
                throw .system(errno: VFIOErrno.EPERM, toGuest ? "DMA region not writable" : "DMA region not readable")
            }
            if r.memory != nil { viaMessages = false; break }
            var done = 0
            while done < count {
                let n = min(dmaChunk, count - done)
                dmaPieces.append(DMAPiece(address: s.address + UInt64(done), pointer: s.buffer.baseAddress! + done, count: n))
                done += n
            }
        }
        guard viaMessages, dmaPieces.count > 1 else {
            for s in segments {
                if toGuest { try dmaWrite(address: s.address, from: UnsafeRawBufferPointer(s.buffer)) }
                else { try dmaRead(address: s.address, into: s.buffer) }
            }
            return
        }
        try checkThread()
        // A copy: a client command handled while a window waits may start a transfer of its own (nested).
        let pieces = dmaPieces
        var i = 0
        while i < pieces.count {
            var j = i
            var bytes = 0
            while j < pieces.count, j - i < Self.dmaWindowMessages, j == i || bytes + pieces[j].count <= Self.dmaWindowBytes {
                bytes += pieces[j].count
                j += 1
            }
            try exchangeWindow(pieces[i..<j], toGuest: toGuest)
            i = j
        }
    }

    /// Sends the DMA messages of `pieces` (after any pending early acknowledgement) with one `sendmsg`, then takes
    /// their replies as they come (any order; client commands arriving meanwhile are handled nested or queued, as
    /// in `exchange`). A refusal of one message is reported after the replies of all of them are in, so none is
    /// left to arrive later.
    private func exchangeWindow(_ pieces: ArraySlice<DMAPiece>, toGuest: Bool) throws(VFIOError) {
        let layout = dmaLayout
        let command: VFIOUserCommand = toGuest ? .dmaWrite : .dmaRead
        let k = pieces.count
        let firstID = nextMessageID
        nextMessageID &+= UInt16(k)
        let fields = layout.requestFieldsSize, trailer = layout.requestTrailerSize
        let block = VFIOUserLimits.headerSize + fields + trailer
        do {
            let buf = requestBuffer(k * block)
            defer { buf.busy = false }
            let p = buf.pointer
            let ackBytes = storeEarlyAck(in: buf)
            var n = 0
            if ackBytes > 0 { iovBases[0] = UnsafeRawPointer(p); iovLens[0] = ackBytes; n = 1 }
            for (idx, piece) in pieces.enumerated() {
                let b = p + ackBytes + idx * block
                let payload = fields + (toGuest ? piece.count : 0) + trailer
                VFIOUserHeader(messageID: firstID &+ UInt16(idx), command: command.rawValue,
                               messageSize: UInt32(VFIOUserLimits.headerSize + payload), flags: VFIOUserFlags.typeCommand).store(to: b)
                layout.storeRequestFields(to: b + VFIOUserLimits.headerSize, address: piece.address, count: UInt64(piece.count))
                if trailer > 0 { (b + VFIOUserLimits.headerSize + fields).initializeMemory(as: UInt8.self, repeating: 0, count: trailer) }
                if toGuest {
                    // Header and fields, the data where it lies, the trailer.
                    iovBases[n] = UnsafeRawPointer(b); iovLens[n] = VFIOUserLimits.headerSize + fields
                    iovBases[n + 1] = UnsafeRawPointer(piece.pointer); iovLens[n + 1] = piece.count
                    iovBases[n + 2] = UnsafeRawPointer(b + VFIOUserLimits.headerSize + fields); iovLens[n + 2] = trailer
                    n += 3
                } else {
                    iovBases[n] = UnsafeRawPointer(b); iovLens[n] = block
                    n += 1
                }
            }
            do { try socket.send(ranges: iovBases, iovLens, count: n) }
            catch { alive = false; throw VFIOError.system(errno: error.errno, "send \(command)") }
        }
        let base = outstanding.count
        for idx in 0..<k { outstanding.append(firstID &+ UInt16(idx)) }
        defer { outstanding.removeSubrange(base..<min(base + k, outstanding.count)) }
        // Which replies are in, one bit each (k <= dmaWindowMessages = 64; their count is the bits set): local, as a
        // client command handled while we wait may start DMA of its own (nested), with a window of its own.
        var answeredMask: UInt64 = 0
        var refusal: VFIOError?
        let deadline = coarseMonotonicMilliseconds() + Int64(config.dmaReplyTimeoutMilliseconds)
        let start = pieces.startIndex

        /// One reply: checked against its request, DMA_READ data copied to the piece.
        func take(_ header: VFIOUserHeader, _ payload: UnsafeRawBufferPointer, fdCount: Int, _ idx: Int) throws(VFIOError) {
            answeredMask |= 1 << UInt64(idx)
            let piece = pieces[start + idx]
            let refused = try checkDMAReply(header, id: firstID &+ UInt16(idx), command, fdCount: fdCount) { () throws(VFIOUserError) in
                if !toGuest {
                    let at = try layout.checkReadReply(payload, address: piece.address, count: UInt64(piece.count))
                    piece.pointer.copyMemory(from: payload.baseAddress! + at, byteCount: piece.count)
                }
            }
            if let e = refused, refusal == nil { refusal = .system(errno: e, "client refused \(command)") }
        }

        while answeredMask.nonzeroBitCount < k {
            guard alive else { throw .system(errno: VFIOErrno.ENOTCONN, "connection closed during \(command)") }
            if !stashedReplies.isEmpty {
                var found = false
                for idx in 0..<k where answeredMask & (1 << UInt64(idx)) == 0 {
                    if let st = stashedReplies.removeValue(forKey: firstID &+ UInt16(idx)) {
                        heldReply = st.payload
                        let raw = heldReply.withUnsafeBytes { $0 }   // valid while heldReply is not changed
                        try take(st.header, raw, fdCount: st.fds.count, idx)
                        found = true
                    }
                }
                if found { continue }
            }
            let m = try receiveDuringWait(deadline: deadline, waitingFor: command, id: firstID)
            if m.header.isCommand {
                try commandDuringWait(m, waitingFor: command)
                continue
            }
            let idx = Int(m.header.messageID &- firstID)
            if idx < k && answeredMask & (1 << UInt64(idx)) == 0 {
                for fd in m.fds { Glibc.close(fd) }
                try take(m.header, m.payload, fdCount: m.fds.count, idx)
                continue
            }
            if outstanding.contains(m.header.messageID) && !(idx < k) {
                stashedReplies[m.header.messageID] = VFIOUserReceived(header: m.header, payload: Array(m.payload), fds: VFIOUserFDs(m.fds))
                continue
            }
            // A reply to nothing outstanding (or a second reply to one of ours).
            for fd in m.fds { Glibc.close(fd) }
            alive = false
            throw .system(errno: VFIOErrno.EPROTO, "\(command) reply: unexpected reply id \(m.header.messageID)")
        }
        if let refusal { throw refusal }
    }

    /// A send buffer for server requests of `bytes` (after room for a pending early acknowledgement), marked busy
    /// (the caller clears it): `out`, or a buffer of its own when a nested reply is being built in `out`.
    private func requestBuffer(_ bytes: Int) -> VFIOUserSendBuffer {
        let buf = out.busy ? VFIOUserSendBuffer(capacity: 32 + bytes) : out
        buf.reserve(32 + bytes)
        buf.busy = true
        return buf
    }

    /// A pending early acknowledgement, stored at the start of `buf` to leave in the same sendmsg as the request
    /// behind it (the client reads both with one recvmsg, returns from its write, and finds the request already
    /// buffered when it next calls). Returns its size (0: none, or the write was posted).
    private func storeEarlyAck(in buf: VFIOUserSendBuffer) -> Int {
        guard let (h, a) = earlyAck, !earlyAckSent else { return 0 }
        earlyAckSent = true
        guard !h.noReply else { return 0 }
        VFIOUserHeader(messageID: h.messageID, command: h.command, messageSize: 32, flags: VFIOUserFlags.typeReply).store(to: buf.pointer)
        a.store(to: buf.pointer + 16)
        return 32
    }

    /// The next message while this server waits for replies to its own requests (by `deadline`); a timeout, the end
    /// of the stream or a receive error ends the connection.
    private func receiveDuringWait(deadline: Int64, waitingFor command: VFIOUserCommand, id: UInt16) throws(VFIOError) -> VFIOUserFramedMessage {
        do throws(VFIOUserError) {
            guard let m = try receiveFramed(deadline: deadline) else { throw VFIOUserError.disconnected }
            return m
        } catch {
            alive = false
            let e: VFIOUserError = error == .timeout(command: 0) ? .timeout(command: command.rawValue) : error
            logger.debug("vfio-user server request", metadata: ["msg_id": "\(id)", "command": "\(command)", "result": "\(e)"])
            throw .system(errno: e.errno, "\(command): \(e)")
        }
    }

    /// A client command that arrived while this server waits for replies to its own requests: handled right away,
    /// nested (QEMU may be blocked waiting for its reply before it serves our request), or beyond `maxNesting`
    /// queued, boundedly: a client that never answers must not make us buffer all it sends (issue 9).
    private func commandDuringWait(_ m: VFIOUserFramedMessage, waitingFor command: VFIOUserCommand) throws(VFIOError) {
        if nesting < Self.maxNesting {
            nesting += 1
            handleFramed(m)
            nesting -= 1
            return
        }
        let queued = pending.reduce(m.payload.count) { $0 + $1.payload.count }
        guard pending.count < Self.maxPending, queued <= Self.maxPendingBytes else {
            for fd in m.fds { Glibc.close(fd) }
            alive = false
            throw .system(errno: VFIOErrno.ENOMEM, "\(pending.count) commands queued during \(command)")
        }
        pending.append(VFIOUserReceived(header: m.header, payload: Array(m.payload), fds: VFIOUserFDs(m.fds)))
    }

    /// A reply to a request this server sent, kept when it arrived while an outer request was being waited for.
    private var heldReply: [UInt8] = []

    /// Sends a server→client command and waits for its reply; returns the reply's payload, valid until the
    /// connection reads again (the caller uses it at once). The request (header and the `payloadSize` bytes `fill`
    /// writes) is built in the send buffer; a pending early acknowledgement goes in front of it, in the same sendmsg.
    /// There is no twin socket (QEMU has none), so client commands arriving meanwhile are handled right away,
    /// nested (QEMU may be blocked waiting for their replies before it serves our request); beyond `maxNesting`
    /// they are queued. Replies to outer, still outstanding requests are set aside for them.
    private func exchange(_ command: VFIOUserCommand, fieldsSize: Int, data: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0),
                          trailerSize: Int = 0, _ fill: (UnsafeMutableRawPointer) -> Void) throws(VFIOError) -> UnsafeRawBufferPointer {
        let id = nextMessageID
        nextMessageID &+= 1
        let payloadSize = fieldsSize + data.count + trailerSize
        let requestHeader = VFIOUserHeader(messageID: id, command: command.rawValue,
                                           messageSize: UInt32(VFIOUserLimits.headerSize + payloadSize), flags: VFIOUserFlags.typeCommand)
        do {
            let buf = requestBuffer(VFIOUserLimits.headerSize + fieldsSize + trailerSize)
            defer { buf.busy = false }
            let p = buf.pointer
            let ackBytes = storeEarlyAck(in: buf)
            let head = ackBytes + VFIOUserLimits.headerSize + fieldsSize
            requestHeader.store(to: p + ackBytes)
            fill(p + ackBytes + VFIOUserLimits.headerSize)
            // The trailer (QEMU's struct padding) is zeros, kept after the head in the same buffer.
            if trailerSize > 0 { (p + head).initializeMemory(as: UInt8.self, repeating: 0, count: trailerSize) }
            do { try socket.send(UnsafeRawBufferPointer(start: p, count: head), data, UnsafeRawBufferPointer(start: p + head, count: trailerSize)) }
            catch { alive = false; throw VFIOError.system(errno: error.errno, "send \(command)") }
        }
        outstanding.append(id)
        defer { if let i = outstanding.lastIndex(of: id) { outstanding.remove(at: i) } }
        let start = logger.logLevel <= .debug ? monotonicNanoseconds() : 0
        let deadline = coarseMonotonicMilliseconds() + Int64(config.dmaReplyTimeoutMilliseconds)
        while true {
            guard alive else { throw .system(errno: VFIOErrno.ENOTCONN, "connection closed during \(command)") }
            let header: VFIOUserHeader
            let payload: UnsafeRawBufferPointer
            let fdCount: Int
            if !stashedReplies.isEmpty, let stashed = stashedReplies.removeValue(forKey: id) {
                heldReply = stashed.payload
                header = stashed.header
                fdCount = stashed.fds.count
                payload = heldReply.withUnsafeBytes { $0 }   // valid while heldReply is not changed: until the next exchange
            } else {
                let m = try receiveDuringWait(deadline: deadline, waitingFor: command, id: id)
                if m.header.isCommand {
                    try commandDuringWait(m, waitingFor: command)
                    continue
                }
                if m.header.messageID != id && outstanding.contains(m.header.messageID) {
                    stashedReplies[m.header.messageID] = VFIOUserReceived(header: m.header, payload: Array(m.payload), fds: VFIOUserFDs(m.fds))
                    continue
                }
                for fd in m.fds { Glibc.close(fd) }
                header = m.header
                payload = m.payload
                fdCount = m.fds.count
            }
            let refused = try checkDMAReply(header, id: id, command, fdCount: fdCount)
            logger.debug("vfio-user server request", metadata: ["msg_id": "\(id)", "command": "\(command)",
                                                               "result": "\(refused.map { "refused, errno \($0)" } ?? "ok")",
                                                               "nesting": "\(nesting)", "duration_us": "\((monotonicNanoseconds() - start) / 1000)"])
            if let e = refused { throw .system(errno: e, "client refused \(command)") }
            return payload
        }
    }

    /// Checks the reply `header` to this server's request `id` (`command`): a reply to it, without fds, then what
    /// `body` checks of the payload. Returns nil when it is good and the client's errno when it refused the request
    /// (an error reply: the connection goes on); anything else is a protocol error that ends the connection.
    private func checkDMAReply(_ header: VFIOUserHeader, id: UInt16, _ command: VFIOUserCommand, fdCount: Int,
                               _ body: () throws(VFIOUserError) -> Void = {}) throws(VFIOError) -> Int32? {
        let request = VFIOUserHeader(messageID: id, command: command.rawValue, messageSize: 0, flags: VFIOUserFlags.typeCommand)
        do throws(VFIOUserError) {
            try VFIOUserDecoder.checkReply(header, for: request)
            guard fdCount == 0 else { throw VFIOUserError.fatal("fds in a DMA reply") }
            try body()
            return nil
        } catch {
            if case .peer(let e, _) = error { return e }
            logger.debug("vfio-user server request", metadata: ["msg_id": "\(id)", "command": "\(command)", "result": "\(error)"])
            alive = false
            throw .system(errno: VFIOErrno.EPROTO, "\(command) reply: \(error)")
        }
    }
}

/// A direct-access device's `read(region:offset:into:)` and `write(region:offset:from:)`, called without a retain
/// and a release of the device per message: the server holds the device for longer than any of its connections
/// lives, and those two atomic operations are slow ones on a device that has weak references to it (its counts
/// then live in a side table, as `VFIOPCIDevice`'s do): about a tenth of the server's user time per message.
struct VFIOUserDirectAccess {
    let read: (UInt32, UInt64, UnsafeMutableRawBufferPointer) throws(VFIOError) -> Void
    let write: (UInt32, UInt64, UnsafeRawBufferPointer) throws(VFIOError) -> Void

    /// None: both calls fail (a device without direct access; the connection does not call them).
    init() {
        read = { _, _, _ throws(VFIOError) in throw .notSupported("direct access") }
        write = { _, _, _ throws(VFIOError) in throw .notSupported("direct access") }
    }

    init<D: VFIOUserDirectAccessDevice>(_ device: D) {
        let d = Unmanaged.passUnretained(device)
        read = { region, offset, buffer throws(VFIOError) in
            var failure: VFIOError?
            d._withUnsafeGuaranteedRef { dev in
                do throws(VFIOError) { try dev.read(region: region, offset: offset, into: buffer) } catch { failure = error }
            }
            if let failure { throw failure }
        }
        write = { region, offset, buffer throws(VFIOError) in
            var failure: VFIOError?
            d._withUnsafeGuaranteedRef { dev in
                do throws(VFIOError) { try dev.write(region: region, offset: offset, from: buffer) } catch { failure = error }
            }
            if let failure { throw failure }
        }
    }
}

/// A region's size and access as the server's fast path checks them.
struct VFIOUserRegionEntry {
    var size: UInt64
    var readable: Bool
    var writable: Bool
}
