import VFIO

/// A decoded command (client → server, or DMA_READ/DMA_WRITE server → client).
public enum VFIOUserRequest: Sendable, Equatable {
    case version(VFIOUserVersion)
    case dmaMap(VFIOUserDMAMap)
    case dmaUnmap(VFIODMAUnmap)
    case deviceGetInfo(VFIODeviceInfo)
    case regionInfo(VFIORegionInfo)
    case regionIOFDs(VFIOUserRegionIOFDs)
    case irqInfo(VFIOIRQInfo)
    case setIRQs(VFIOIRQSet)
    case regionRead(VFIOUserRegionAccess)
    case regionWrite(VFIOUserRegionAccess)
    case dmaRead(VFIOUserDMAAccess)
    case dmaWrite(VFIOUserDMAAccess)
    case deviceReset
    case regionWriteMulti(VFIOUserRegionWriteMulti)
    case deviceFeature(VFIOUserDeviceFeature)
    case migDataRead(VFIOUserMigData)
    case migDataWrite(VFIOUserMigData)

    public var command: VFIOUserCommand {
        switch self {
        case .version: .version
        case .dmaMap: .dmaMap
        case .dmaUnmap: .dmaUnmap
        case .deviceGetInfo: .deviceGetInfo
        case .regionInfo: .deviceGetRegionInfo
        case .regionIOFDs: .deviceGetRegionIOFDs
        case .irqInfo: .deviceGetIRQInfo
        case .setIRQs: .deviceSetIRQs
        case .regionRead: .regionRead
        case .regionWrite: .regionWrite
        case .dmaRead: .dmaRead
        case .dmaWrite: .dmaWrite
        case .deviceReset: .deviceReset
        case .regionWriteMulti: .regionWriteMulti
        case .deviceFeature: .deviceFeature
        case .migDataRead: .migDataRead
        case .migDataWrite: .migDataWrite
        }
    }

    /// The payload bytes (after the header).
    public func encodePayload() -> [UInt8] {
        switch self {
        case .version(let v): v.encode()
        case .dmaMap(let m): m.encode()
        case .dmaUnmap(let u): u.encode()
        case .deviceGetInfo(let i): i.encode()
        case .regionInfo(let r): r.encode()
        case .regionIOFDs(let r): r.encode()
        case .irqInfo(let i): i.encode()
        case .setIRQs(let s): s.encode()
        case .regionRead(let a): VFIOUserRegionAccess(offset: a.offset, region: a.region, count: a.count).encode()
        case .regionWrite(let a): a.encode()
        case .dmaRead(let a): VFIOUserDMAAccess(address: a.address, count: a.count).encode()
        case .dmaWrite(let a): a.encode()
        case .deviceReset: []
        case .regionWriteMulti(let m): m.encode()
        case .deviceFeature(let f): f.encode()
        case .migDataRead(let m): VFIOUserMigData(argsz: m.argsz, dataSize: m.dataSize).encode()
        case .migDataWrite(let m): m.encode()
        }
    }
}

/// A whole message as framed on the wire.
public struct VFIOUserFrame: Sendable, Equatable {
    public var header: VFIOUserHeader
    public var payload: [UInt8]
    public init(header: VFIOUserHeader, payload: [UInt8]) { self.header = header; self.payload = payload }
    public func encode() -> [UInt8] { header.encode() + payload }

    /// A command frame with `messageSize` filled in.
    public static func command(_ id: UInt16, _ request: VFIOUserRequest, noReply: Bool = false) -> VFIOUserFrame {
        let p = request.encodePayload()
        return VFIOUserFrame(header: VFIOUserHeader(messageID: id, command: request.command.rawValue,
                                                    messageSize: UInt32(VFIOUserLimits.headerSize + p.count),
                                                    flags: VFIOUserFlags.typeCommand | (noReply ? VFIOUserFlags.noReply : 0)),
                             payload: p)
    }
    /// A success reply echoing `request`'s id and command.
    public static func reply(to request: VFIOUserHeader, payload: [UInt8]) -> VFIOUserFrame {
        VFIOUserFrame(header: VFIOUserHeader(messageID: request.messageID, command: request.command,
                                             messageSize: UInt32(VFIOUserLimits.headerSize + payload.count),
                                             flags: VFIOUserFlags.typeReply), payload: payload)
    }
    /// An error reply: header only, flags = REPLY|ERROR, `error_no` = errno (spec "Header").
    public static func errorReply(to request: VFIOUserHeader, errno: Int32) -> VFIOUserFrame {
        VFIOUserFrame(header: VFIOUserHeader(messageID: request.messageID, command: request.command,
                                             messageSize: UInt32(VFIOUserLimits.headerSize),
                                             flags: VFIOUserFlags.typeReply | VFIOUserFlags.error,
                                             errorNumber: UInt32(bitPattern: errno)), payload: [])
    }
}

/// Pure decoding entry points (bytes in, typed message or typed error out) for the server and the client, with no
/// I/O: the server and client use them, and fuzz harnesses can call them directly.
public enum VFIOUserDecoder {
    /// Decodes a command payload. `fdCount` is the number of fds that arrived with the message; commands that
    /// carry no fds reject any. Commands a server does not accept from a client (DMA_READ/WRITE) are decoded too;
    /// the caller decides.
    public static func decodeCommand(header: VFIOUserHeader, payload: [UInt8], fdCount: Int = 0) throws(VFIOUserError) -> VFIOUserRequest {
        guard header.isCommand else { throw .malformed("not a command") }
        guard Int(header.messageSize) == VFIOUserLimits.headerSize + payload.count else {
            throw .malformed("message size \(header.messageSize) but \(payload.count) payload bytes")
        }
        guard let cmd = header.typedCommand else { throw .malformed("unknown command \(header.command)") }
        // libvfio-user rejects a header-only message for everything but DEVICE_RESET.
        if cmd != .deviceReset && payload.isEmpty { throw .malformed("\(cmd) without payload") }
        let fdsAllowed: Bool
        switch cmd {
        case .dmaMap, .deviceSetIRQs: fdsAllowed = true
        default: fdsAllowed = false
        }
        if fdCount > 0 && !fdsAllowed { throw .malformed("\(cmd) carries \(fdCount) unexpected fds") }
        switch cmd {
        case .version: return .version(try VFIOUserVersion.decode(payload))
        case .dmaMap:
            guard fdCount <= 1 else { throw .malformed("DMA_MAP with \(fdCount) fds") }
            return .dmaMap(try VFIOUserDMAMap.decode(payload))
        case .dmaUnmap: return .dmaUnmap(try VFIODMAUnmap.decode(payload, "DMA_UNMAP"))
        case .deviceGetInfo: return .deviceGetInfo(try VFIODeviceInfo.decodeRequest(payload))
        case .deviceGetRegionInfo: return .regionInfo(try VFIORegionInfo.decodeRequest(payload))
        case .deviceGetRegionIOFDs: return .regionIOFDs(try VFIOUserRegionIOFDs.decodeRequest(payload))
        case .deviceGetIRQInfo: return .irqInfo(try VFIOIRQInfo.decode(payload, "DEVICE_GET_IRQ_INFO"))
        case .deviceSetIRQs:
            let s = try VFIOIRQSet.decode(payload)
            if fdCount > 0 {
                guard s.flags.contains(.dataEventFD), fdCount == Int(s.count) else {
                    throw .malformed("DEVICE_SET_IRQS: \(fdCount) fds for count \(s.count)")
                }
            }
            return .setIRQs(s)
        case .regionRead: return .regionRead(try VFIOUserRegionAccess.decode(payload, withData: false, what: "REGION_READ"))
        case .regionWrite: return .regionWrite(try VFIOUserRegionAccess.decode(payload, withData: true, what: "REGION_WRITE"))
        case .dmaRead:
            let a = try VFIOUserDMAAccess.decode(payload, withData: false, what: "DMA_READ")
            guard payload.count == VFIOUserDMAAccess.size else { throw .malformed("DMA_READ trailing bytes") }
            return .dmaRead(a)
        case .dmaWrite: return .dmaWrite(try VFIOUserDMAAccess.decode(payload, withData: true, what: "DMA_WRITE"))
        case .deviceReset:
            guard payload.isEmpty else { throw .malformed("DEVICE_RESET with payload") }
            return .deviceReset
        case .regionWriteMulti: return .regionWriteMulti(try VFIOUserRegionWriteMulti.decode(payload))
        case .deviceFeature: return .deviceFeature(try VFIOUserDeviceFeature.decode(payload))
        case .migDataRead: return .migDataRead(try VFIOUserMigData.decode(payload))
        case .migDataWrite: return .migDataWrite(try VFIOUserMigData.decode(payload))
        }
    }

    /// Splits a byte stream into messages the way the server does and decodes each command. Stops at the first
    /// fatal (header-level) error, after which the stream cannot be trusted. Intended for fuzzing the server's
    /// message decoding.
    public static func decodeStream(_ bytes: [UInt8]) -> (messages: [Result<VFIOUserRequest, VFIOUserError>], fatal: VFIOUserError?) {
        var out: [Result<VFIOUserRequest, VFIOUserError>] = []
        var pos = 0
        while pos < bytes.count {
            guard bytes.count - pos >= VFIOUserLimits.headerSize else { return (out, .fatal("truncated header")) }
            let header: VFIOUserHeader
            do { header = try VFIOUserHeader.decode(Array(bytes[pos..<(pos + VFIOUserLimits.headerSize)])) }
            catch { return (out, error) }
            let size = Int(header.messageSize)
            guard bytes.count - pos >= size else { return (out, .fatal("truncated body")) }
            let payload = Array(bytes[(pos + VFIOUserLimits.headerSize)..<(pos + size)])
            pos += size
            if !header.isCommand { out.append(.failure(.malformed("reply where a command was expected"))); continue }
            do { out.append(.success(try decodeCommand(header: header, payload: payload))) }
            catch { out.append(.failure(error)) }
        }
        return (out, nil)
    }

    /// Validates a reply header against the request it answers. Error replies are turned into `.peer`.
    public static func checkReply(_ header: VFIOUserHeader, for request: VFIOUserHeader) throws(VFIOUserError) {
        guard header.isReply else { throw .fatal("expected a reply") }
        guard header.messageID == request.messageID else { throw .fatal("reply id \(header.messageID), expected \(request.messageID)") }
        guard header.command == request.command else { throw .fatal("reply command \(header.command), expected \(request.command)") }
        if header.isError {
            // The spec allows 0; libvfio-user maps 0 or > 4096 to EINVAL. So do we.
            let e = header.errorNumber
            throw .peer(errno: (e == 0 || e > 4096) ? VFIOErrno.EINVAL : Int32(e), command: header.command)
        }
    }

    /// Decodes a reply to `command` (client side). Every reply type is bounds- and consistency-checked against the
    /// request where that matters (`requested`: the count asked for in reads).
    public static func decodeReply(command: VFIOUserCommand, payload: [UInt8], fdCount: Int = 0, requestedCount: UInt64? = nil) throws(VFIOUserError) -> VFIOUserReply {
        switch command {
        case .version:
            let v = try VFIOUserVersion.decode(payload)
            return .version(v)
        case .regionWriteMulti:
            guard payload.count == 8, let n = ByteReader.le(payload, at: 0, size: 8) else { throw .malformed("REGION_WRITE_MULTI reply") }
            return .writeCount(n)
        case .dmaMap, .deviceSetIRQs, .deviceReset:
            return .empty   // header-only replies; any payload is ignored (bounded by the message size limit)
        case .dmaUnmap: return .dmaUnmap(try VFIODMAUnmap.decode(payload, "DMA_UNMAP"))
        case .deviceGetInfo: return .deviceInfo(try VFIODeviceInfo.decodeReply(payload))
        case .deviceGetRegionInfo: return .regionInfo(try VFIORegionInfo.decodeReply(payload))
        case .deviceGetRegionIOFDs: return .regionIOFDs(try VFIOUserRegionIOFDs.decodeReply(payload, fdCount: fdCount))
        case .deviceGetIRQInfo: return .irqInfo(try VFIOIRQInfo.decode(payload, "DEVICE_GET_IRQ_INFO"))
        case .regionRead:
            let a = try VFIOUserRegionAccess.decode(payload, withData: true, what: "REGION_READ reply")
            if let want = requestedCount, UInt64(a.count) != want { throw .malformed("REGION_READ reply count \(a.count), asked \(want)") }
            return .regionRead(a)
        case .regionWrite:
            let a = try VFIOUserRegionAccess.decode(payload, withData: false, what: "REGION_WRITE reply")
            return .regionWrite(a)
        case .dmaRead:
            let a = try VFIOUserDMAAccess.decode(payload, withData: true, what: "DMA_READ reply")
            if let want = requestedCount, a.count != want { throw .malformed("DMA_READ reply count \(a.count), asked \(want)") }
            return .dmaRead(a)
        case .dmaWrite:
            // QEMU 10.2 answers DMA_WRITE with the header only; libvfio-user echoes `addr, count`.
            if payload.isEmpty { return .empty }
            return .dmaWrite(try VFIOUserDMAAccess.decode(payload, withData: false, what: "DMA_WRITE reply"))
        case .deviceFeature: return .deviceFeature(try VFIOUserDeviceFeature.decode(payload))
        case .migDataRead, .migDataWrite: return .migData(try VFIOUserMigData.decode(payload))
        }
    }
}

/// A decoded reply.
public enum VFIOUserReply: Sendable, Equatable {
    case empty
    case version(VFIOUserVersion)
    case dmaUnmap(VFIODMAUnmap)
    case deviceInfo(VFIODeviceInfo)
    case regionInfo(VFIORegionInfo)
    case regionIOFDs(VFIOUserRegionIOFDs)
    case irqInfo(VFIOIRQInfo)
    case regionRead(VFIOUserRegionAccess)
    case regionWrite(VFIOUserRegionAccess)
    case dmaRead(VFIOUserDMAAccess)
    case dmaWrite(VFIOUserDMAAccess)
    case writeCount(UInt64)
    case deviceFeature(VFIOUserDeviceFeature)
    case migData(VFIOUserMigData)
}
