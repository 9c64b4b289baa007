// The backend protocol: anything whose config space and BARs can be accessed.

/// Errors from accessing a PCI function.
public enum PCIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Offset/width outside the config space or BAR, or an unsupported width.
    case outOfRange(String)
    /// An access width or alignment the target does not accept
    /// (e.g. a 1-byte read of a component register).
    case badAccess(String)
    /// The BAR does not exist or is not mapped.
    case noSuchBAR(Int)
    /// The reset method is not offered by this function.
    case resetUnsupported(String)
    /// The operating system refused or failed the access.
    case io(String)

    public var description: String {
        switch self {
        case .outOfRange(let s): return "out of range: \(s)"
        case .badAccess(let s): return "bad access: \(s)"
        case .noSuchBAR(let i): return "no such BAR: \(i)"
        case .resetUnsupported(let s): return "reset method not supported: \(s)"
        case .io(let s): return s
        }
    }
}

/// How a BAR decodes.
public enum BARKind: String, Sendable, Codable, Hashable {
    case memory32, memory64, io
}

/// A BAR as the function implements it.
public struct BARDescription: Sendable, Hashable, Codable {
    public let index: Int
    public let kind: BARKind
    public let prefetchable: Bool
    /// Size in bytes (a power of two).
    public let size: UInt64

    public init(index: Int, kind: BARKind, prefetchable: Bool, size: UInt64) {
        self.index = index
        self.kind = kind
        self.prefetchable = prefetchable
        self.size = size
    }
}

extension BARDescription {
    /// The BARs of a Type 0 function whose sizes come from elsewhere (each BAR's VFIO region, as vfio-pci and
    /// vfio-user report them): a BAR register says I/O or memory, 32- or 64-bit and prefetchable (PCIe 6.0
    /// §7.5.1.2.1), and a 64-bit BAR takes the next slot too. Size 0 is an unimplemented BAR. Called for BAR 0 ... 5
    /// in order, `size` before `register`.
    public static func list<E: Error>(size: (Int) throws(E) -> UInt64, register: (Int) throws(E) -> UInt64) throws(E) -> [BARDescription] {
        var list: [BARDescription] = []
        var i = 0
        while i < 6 {
            let n = try size(i)
            let reg = try register(i)
            let isIO = PCIHeader.BAR.memorySpaceIndicator.extract(reg) == 1
            let is64 = !isIO && PCIHeader.BAR.memoryType.extract(reg) == PCIHeader.BAR.memoryType64Bit
            if n > 0 {
                list.append(BARDescription(index: i, kind: isIO ? .io : (is64 ? .memory64 : .memory32),
                                           prefetchable: !isIO && PCIHeader.BAR.prefetchable.extract(reg) == 1, size: n))
            }
            i += is64 && n > 0 ? 2 : 1
        }
        return list
    }
}

/// A reset a function or its link can undergo. Values are the names Linux uses in
/// `/sys/bus/pci/devices/*/reset_method`, plus `link` for a link-down event.
public struct PCIResetMethod: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// Function Level Reset (PCIe 6.0 §6.6.2).
    public static let flr = PCIResetMethod(rawValue: "flr")
    /// Secondary bus reset at the upstream bridge: a conventional hot reset (§6.6.1).
    public static let bus = PCIResetMethod(rawValue: "bus")
    /// Link down and up (Link Disable, surprise down): a conventional reset.
    public static let link = PCIResetMethod(rawValue: "link")
    /// D3hot -> D0 transition with No_Soft_Reset clear.
    public static let pm = PCIResetMethod(rawValue: "pm")

    /// True for resets PCIe calls conventional (hot, warm, cold; §6.6.1).
    public var isConventional: Bool { self == .bus || self == .link }
    public var description: String { rawValue }
}

/// Receives interrupts a function raises: the MSI/MSI-X vector number, or 0 for INTx.
public typealias PCIInterruptSink = @Sendable (_ vector: Int) -> Void

/// A PCI function whose config space and BARs this process can reach: an emulated
/// device, a real device through sysfs, or a device behind a vfio-user socket.
///
/// Config accesses are 1, 2 or 4 bytes, naturally aligned, as on the wire (PCIe
/// 6.0 §7.2.2). BAR accesses are 1/2/4/8 bytes; a target may refuse widths its
/// registers do not accept.
public protocol PCIFunction: AnyObject, Sendable {
    /// An address or name for messages (`0000:3b:00.0`, `emulated:type2`, ...).
    var address: String { get }
    /// 256 or 4096.
    var configSize: Int { get }
    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError)

    var bars: [BARDescription] { get }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError)

    /// Reset methods this function offers.
    var resetMethods: [PCIResetMethod] { get }
    func reset(_ method: PCIResetMethod) throws(PCIError)

    /// Where interrupts go. Functions that never interrupt ignore it.
    func setInterruptSink(_ sink: PCIInterruptSink?)

    /// `count` bytes of config space from `offset` (both multiples of 4), in as few
    /// accesses as the backend allows: sysfs one pread, vfio-user one REGION_READ of
    /// up to 4 KiB, the emulated device a copy. The default reads DWORD by DWORD.
    /// Config reads have no side effects (PCIe 6.0 §7.4), so the bytes are exactly
    /// what DWORD reads would return.
    func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8]

    /// `count` bytes of BAR `bar` from `offset` (both multiples of 4), as aligned
    /// DWORD reads would return them, in as few accesses as the backend allows. For
    /// register blocks whose reads have no side effects (CXL component registers,
    /// CXL 3.1 §8.2.2); the default reads DWORD by DWORD.
    func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8]

    /// A BAR write that may complete after the call returns (a posted write, PCIe
    /// 6.0 §2.4.1): the next read of the function is ordered after it, and errors may
    /// go unreported, so a caller that must know reads back. The default is
    /// `barWrite`; vfio-user sends REGION_WRITE with NO_REPLY.
    func barWritePosted(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError)

    /// Posted BAR writes performed in order, in as few messages as the backend allows:
    /// vfio-user one REGION_WRITE_MULTI with NO_REPLY (when the server negotiated
    /// `write_multiple`), elsewhere one `barWritePosted` each. Same ordering and error
    /// rules as `barWritePosted`; a batch that fails may have performed a prefix.
    func barWritePosted(_ bar: Int, _ writes: [PostedBARWrite]) throws(PCIError)
}

/// One write of a `barWritePosted(_:_:)` batch.
public struct PostedBARWrite: Sendable, Hashable {
    public var offset: UInt64
    /// 1, 2, 4 or 8 bytes.
    public var width: Int
    public var value: UInt64
    public init(offset: UInt64, width: Int, value: UInt64) {
        self.offset = offset
        self.width = width
        self.value = value
    }
}

/// Little-endian byte order, the order of PCI config space and of CXL registers
/// (PCIe 6.0 §7.2.2): the one helper for turning bytes into register values and back.
public enum LittleEndian {
    /// The `width`-byte value at `offset` of `bytes`, or nil when it does not fit.
    @inlinable
    public static func load(_ bytes: [UInt8], at offset: Int, width: Int) -> UInt64? {
        bytes.withUnsafeBytes { load($0, at: offset, width: width) }
    }

    /// The `width`-byte value at `offset` of `raw`, or nil when it does not fit: for bytes already in hand (a
    /// register file, a block of registers read at once), inlined where every register is loaded.
    @inlinable @inline(__always)
    public static func load(_ raw: UnsafeRawBufferPointer, at offset: Int, width: Int) -> UInt64? {
        guard offset >= 0, width >= 0, width <= 8, offset <= raw.count - width else { return nil }
        // Register widths: one unaligned load (a snapshot of N decoders loads 7N of them).
        switch width {
        case 4: return UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        case 2: return UInt64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
        case 8: return UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
        case 1: return UInt64(raw[offset])
        default:
            var v: UInt64 = 0
            for i in 0..<width { v |= UInt64(raw[offset + i]) << UInt64(8 * i) }
            return v
        }
    }

    /// All of `bytes` (at most eight) as one value: a register read back whole.
    @inlinable
    public static func load(_ bytes: [UInt8]) -> UInt64 { load(bytes, at: 0, width: min(bytes.count, 8)) ?? 0 }

    /// `value` as `width` bytes, least significant first.
    @inlinable
    public static func bytes(_ value: UInt64, width: Int) -> [UInt8] {
        (0..<width).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * $0)) }
    }

    /// Store `value` as `width` bytes at `offset` of `bytes` (which must hold them).
    @inlinable
    public static func store(_ value: UInt64, width: Int, into bytes: inout [UInt8], at offset: Int) {
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }
}

/// A 64-bit address split across a Low and a High register, as the CXL DVSEC ranges
/// and HDM decoders hold Base, Size and DPA Skip (CXL 3.1 §8.1.3.8, §8.2.4.20.5-.9):
/// the one helper for splitting and joining them.
public struct SplitAddress: Sendable, Hashable {
    public var low: UInt32
    public var high: UInt32
    public init(low: UInt32, high: UInt32) {
        self.low = low
        self.high = high
    }
    /// `value` split into its low and high halves.
    public init(_ value: UInt64) {
        low = UInt32(truncatingIfNeeded: value)
        high = UInt32(truncatingIfNeeded: value >> 32)
    }
    /// High << 32 | (Low masked by `lowMask`, the bits the Low register implements).
    public func value(lowMask: UInt64 = 0xFFFF_FFFF) -> UInt64 { UInt64(high) << 32 | (UInt64(low) & lowMask) }
}

extension PCIFunction {
    public func setInterruptSink(_ sink: PCIInterruptSink?) {}

    /// A snapshot of the whole config space, in one bulk read where the backend has one.
    public func configSnapshot() throws(PCIError) -> ConfigSpace {
        ConfigSpace(bytes: try configReadBytes(0, count: configSize))
    }

    public func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        guard offset >= 0 else { throw .outOfRange("config offset \(offset)") }
        try Self.checkBulk(UInt64(offset), count, limit: configSize)
        var bytes = [UInt8](repeating: 0, count: count)
        var off = 0
        while off < count {
            LittleEndian.store(UInt64(try configRead(offset + off, width: 4)), width: 4, into: &bytes, at: off)
            off += 4
        }
        return bytes
    }

    public func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        try Self.checkBulk(offset, count)
        var bytes = [UInt8](repeating: 0, count: count)
        var off = 0
        while off < count {
            LittleEndian.store(try barRead(bar, offset: offset + UInt64(off), width: 4), width: 4, into: &bytes, at: off)
            off += 4
        }
        return bytes
    }

    public func barWritePosted(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        try barWrite(bar, offset: offset, width: width, value: value)
    }

    public func barWritePosted(_ bar: Int, _ writes: [PostedBARWrite]) throws(PCIError) {
        for w in writes { try barWritePosted(bar, offset: w.offset, width: w.width, value: w.value) }
    }

    /// Bulk reads are DWORD-aligned and a whole number of DWORDs, inside `limit` when given.
    public static func checkBulk(_ offset: UInt64, _ count: Int, limit: Int? = nil) throws(PCIError) {
        guard offset % 4 == 0, count >= 0, count % 4 == 0 else {
            throw .badAccess("bulk read of \(count) bytes at 0x\(String(offset, radix: 16)): DWORD-aligned DWORDs only")
        }
        if let limit, limit < count || offset > UInt64(limit - count) {
            throw .outOfRange("bulk read of \(count) bytes at 0x\(String(offset, radix: 16)) past \(limit)")
        }
    }

    /// Read a catalog register at `base + register.offset`, in one access of its width.
    public func read(_ register: RegisterLayout, base: Int) throws(PCIError) -> UInt64 {
        guard register.width <= 4 else {
            let lo = try configRead(base + register.offset, width: 4)
            let hi = try configRead(base + register.offset + 4, width: 4)
            return UInt64(lo) | UInt64(hi) << 32
        }
        return UInt64(try configRead(base + register.offset, width: register.width))
    }

    public func write(_ register: RegisterLayout, base: Int, value: UInt64) throws(PCIError) {
        guard register.width <= 4 else {
            try configWrite(base + register.offset, width: 4, value: UInt32(truncatingIfNeeded: value))
            try configWrite(base + register.offset + 4, width: 4, value: UInt32(truncatingIfNeeded: value >> 32))
            return
        }
        try configWrite(base + register.offset, width: register.width, value: UInt32(truncatingIfNeeded: value))
    }
}
