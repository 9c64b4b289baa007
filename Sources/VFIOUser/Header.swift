import PCI
import VFIO
#if canImport(Glibc)
import Glibc
#endif

/// vfio-user command numbers (vfio-user spec, "Commands"; QEMU docs/interop/vfio-user.rst).
public enum VFIOUserCommand: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case version = 1
    case dmaMap = 2
    case dmaUnmap = 3
    case deviceGetInfo = 4
    case deviceGetRegionInfo = 5
    case deviceGetRegionIOFDs = 6
    case deviceGetIRQInfo = 7
    case deviceSetIRQs = 8
    case regionRead = 9
    case regionWrite = 10
    case dmaRead = 11
    case dmaWrite = 12
    case deviceReset = 13
    // 14 is unused (was VFIO_USER_DIRTY_PAGES).
    case regionWriteMulti = 15
    case deviceFeature = 16
    case migDataRead = 17
    case migDataWrite = 18

    public var description: String {
        switch self {
        case .version: "VERSION"
        case .dmaMap: "DMA_MAP"
        case .dmaUnmap: "DMA_UNMAP"
        case .deviceGetInfo: "DEVICE_GET_INFO"
        case .deviceGetRegionInfo: "DEVICE_GET_REGION_INFO"
        case .deviceGetRegionIOFDs: "DEVICE_GET_REGION_IO_FDS"
        case .deviceGetIRQInfo: "DEVICE_GET_IRQ_INFO"
        case .deviceSetIRQs: "DEVICE_SET_IRQS"
        case .regionRead: "REGION_READ"
        case .regionWrite: "REGION_WRITE"
        case .dmaRead: "DMA_READ"
        case .dmaWrite: "DMA_WRITE"
        case .deviceReset: "DEVICE_RESET"
        case .regionWriteMulti: "REGION_WRITE_MULTI"
        case .deviceFeature: "DEVICE_FEATURE"
        case .migDataRead: "MIG_DATA_READ"
        case .migDataWrite: "MIG_DATA_WRITE"
        }
    }
}

/// Header flags (vfio-user spec, "Header": Type in bits 0-3, No_reply bit 4, Error bit 5).
public enum VFIOUserFlags {
    public static let typeMask: UInt32 = 0xf
    public static let typeCommand: UInt32 = 0
    public static let typeReply: UInt32 = 1
    public static let noReply: UInt32 = 1 << 4
    public static let error: UInt32 = 1 << 5
    /// Every bit the spec defines.
    public static let known: UInt32 = typeMask | noReply | error
}

/// Protocol limits and defaults (vfio-user spec, "Version" capabilities table; libvfio-user limits).
public enum VFIOUserLimits {
    public static let headerSize = 16
    public static let protocolMajor: UInt16 = 0
    /// Our protocol minor (libvfio-user speaks 0.2).
    public static let protocolMinor: UInt16 = 2
    public static let defaultMaxMsgFDs: UInt32 = 1
    public static let defaultMaxDataXferSize: UInt64 = 1 << 20
    public static let defaultMaxDMAMaps: UInt32 = 65535
    public static let defaultPageSizes: UInt64 = 4096
    /// Largest `max_msg_fds` a peer may claim (libvfio-user rejects more than 1024).
    public static let maxMsgFDsLimit: UInt64 = 1024
    /// Largest fd count we ever accept or send in one message (kernel SCM_MAX_FD is 253).
    public static let fdsPerMessageHardLimit = 253
    /// Largest message accepted: max data transfer plus the largest fixed part (libvfio-user: 1 MiB + 32). Region
    /// info and IO-fd replies are bounded by `maxInfoArgsz`.
    public static let maxMessageSize = Int(defaultMaxDataXferSize) + 64
    /// Upper bound on an `argsz` we honour for variable-size info replies.
    public static let maxInfoArgsz: UInt32 = 64 * 1024
    /// Largest JSON capabilities string accepted in VERSION.
    public static let maxVersionJSON = 4096
}

/// The 16-byte message header (vfio-user spec, "Header").
public struct VFIOUserHeader: Sendable, Equatable {
    public var messageID: UInt16
    /// Raw command number (validated separately: replies echo whatever the request carried).
    public var command: UInt16
    /// Size of the whole message, header included.
    public var messageSize: UInt32
    public var flags: UInt32
    public var errorNumber: UInt32

    public init(messageID: UInt16, command: UInt16, messageSize: UInt32, flags: UInt32, errorNumber: UInt32 = 0) {
        self.messageID = messageID; self.command = command; self.messageSize = messageSize
        self.flags = flags; self.errorNumber = errorNumber
    }

    public var isReply: Bool { flags & VFIOUserFlags.typeMask == VFIOUserFlags.typeReply }
    public var isCommand: Bool { flags & VFIOUserFlags.typeMask == VFIOUserFlags.typeCommand }
    public var noReply: Bool { flags & VFIOUserFlags.noReply != 0 }
    public var isError: Bool { flags & VFIOUserFlags.error != 0 }
    public var typedCommand: VFIOUserCommand? { VFIOUserCommand(rawValue: command) }

    /// Writes the 16 header bytes at `p` (little-endian), without allocating.
    @inline(__always)
    public func store(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: messageID.littleEndian, toByteOffset: 0, as: UInt16.self)
        p.storeBytes(of: command.littleEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: messageSize.littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: errorNumber.littleEndian, toByteOffset: 12, as: UInt32.self)
    }

    /// The 16 header bytes, as `store(to:)` writes them.
    public func encode() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: VFIOUserLimits.headerSize) { bytes, n in
            store(to: bytes.baseAddress!)
            n = VFIOUserLimits.headerSize
        }
    }

    /// Decodes and validates a header: at least 16 bytes, `messageSize` in [16, maxMessageSize], a defined type
    /// (command or reply), no undefined flag bits, NO_REPLY only on commands, ERROR only on replies.
    /// Any failure means the stream cannot be trusted (the body length is unknown).
    public static func decode(_ bytes: [UInt8], maxMessageSize: Int = VFIOUserLimits.maxMessageSize) throws(VFIOUserError) -> VFIOUserHeader {
        try bytes.withUnsafeBytes { raw in
            Result { () throws(VFIOUserError) -> VFIOUserHeader in try decode(raw, maxMessageSize: maxMessageSize) }
        }.get()
    }

    /// The same checks on bytes in place (the framers' receive buffers); nothing is allocated unless it throws.
    public static func decode(_ raw: UnsafeRawBufferPointer, maxMessageSize: Int = VFIOUserLimits.maxMessageSize) throws(VFIOUserError) -> VFIOUserHeader {
        guard raw.count >= VFIOUserLimits.headerSize else { throw .fatal("short header (\(raw.count) bytes)") }
        let h = VFIOUserHeader(messageID: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt16.self)),
                               command: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2, as: UInt16.self)),
                               messageSize: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
                               flags: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)),
                               errorNumber: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        let size = h.messageSize, flags = h.flags
        // Every valid header in one test (a command, posted or not; a reply, an error or not); the checks below
        // name what is wrong with any other.
        let validFlags = flags == VFIOUserFlags.typeCommand || flags == VFIOUserFlags.typeCommand | VFIOUserFlags.noReply
            || flags == VFIOUserFlags.typeReply || flags == VFIOUserFlags.typeReply | VFIOUserFlags.error
        if validFlags, Int(size) >= VFIOUserLimits.headerSize, Int(size) <= maxMessageSize { return h }
        try invalid(h, maxMessageSize: maxMessageSize)
        return h
    }

    @inline(never)
    private static func invalid(_ h: VFIOUserHeader, maxMessageSize: Int) throws(VFIOUserError) {
        let size = h.messageSize, flags = h.flags
        guard Int(size) >= VFIOUserLimits.headerSize else { throw .fatal("message size \(size) smaller than the header") }
        guard Int(size) <= maxMessageSize else { throw .fatal("message size \(size) exceeds \(maxMessageSize)") }
        guard flags & ~VFIOUserFlags.known == 0 else { throw .fatal("undefined header flags 0x\(String(flags, radix: 16))") }
        guard h.isCommand || h.isReply else { throw .fatal("undefined message type \(flags & VFIOUserFlags.typeMask)") }
        if h.noReply && !h.isCommand { throw .fatal("NO_REPLY on a reply") }
        if h.isError && !h.isReply { throw .fatal("ERROR flag on a command") }
    }
}

/// A typed vfio-user error.
public enum VFIOUserError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A message that could be skipped but not decoded (answered with EINVAL).
    case malformed(String)
    /// The byte stream can no longer be trusted; the connection must be closed.
    case fatal(String)
    /// The peer answered with an error reply carrying `errno`.
    case peer(errno: Int32, command: UInt16)
    /// A device operation failed.
    case device(VFIOError)
    /// No reply within the per-request timeout.
    case timeout(command: UInt16)
    /// The peer closed the connection.
    case disconnected
    /// A system call failed.
    case system(errno: Int32, String)
    /// The operation is not allowed in the current state (e.g. before VERSION).
    case state(String)
    /// The server serves another client (it answered our VERSION with EBUSY): a vfio-user socket takes one
    /// client at a time.
    case busy(String)

    /// The errno reported in an error reply for this error.
    public var errno: Int32 {
        switch self {
        case .malformed, .fatal, .state: return VFIOErrno.EINVAL
        case .busy: return VFIOErrno.EBUSY
        case .peer(let e, _): return e
        case .device(let e): return e.errno
        case .timeout: return VFIOErrno.ETIMEDOUT
        case .disconnected: return VFIOErrno.ENOTCONN
        case .system(let e, _): return e
        }
    }

    public var description: String {
        switch self {
        case .malformed(let s): return "malformed message: \(s)"
        case .fatal(let s): return "protocol violation: \(s)"
        case .peer(let e, let c): return "peer error \(e) for command \(VFIOUserCommand(rawValue: c)?.description ?? String(c))"
        case .device(let e): return "device: \(e)"
        case .timeout(let c): return "timeout waiting for \(VFIOUserCommand(rawValue: c)?.description ?? String(c))"
        case .disconnected: return "peer disconnected"
        case .system(let e, let s): return "\(s): \(systemErrorText(e))"
        case .state(let s): return "invalid state: \(s)"
        case .busy(let s): return "busy: \(s)"
        }
    }
}
