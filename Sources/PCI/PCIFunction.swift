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
}

extension PCIFunction {
    public func setInterruptSink(_ sink: PCIInterruptSink?) {}

    /// A snapshot of the whole config space (reads are 4 bytes wide).
    public func configSnapshot() throws(PCIError) -> ConfigSpace {
        var bytes = [UInt8](repeating: 0, count: configSize)
        var off = 0
        while off < configSize {
            let v = try configRead(off, width: 4)
            bytes[off] = UInt8(v & 0xFF)
            bytes[off + 1] = UInt8((v >> 8) & 0xFF)
            bytes[off + 2] = UInt8((v >> 16) & 0xFF)
            bytes[off + 3] = UInt8(v >> 24)
            off += 4
        }
        return ConfigSpace(bytes: bytes)
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
