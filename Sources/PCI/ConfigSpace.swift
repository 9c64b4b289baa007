// A function's configuration space as bytes.

/// Size of conventional PCI configuration space (PCI 3.0 §6.1).
public let pciConfigSpaceSize = 256
/// Size of PCI Express extended configuration space (PCIe 6.0 §7.2.2).
public let pcieConfigSpaceSize = 4096

/// An immutable image of a function's configuration space: 64 bytes (a header-only
/// dump), 256 bytes (conventional) or 4096 bytes (PCI Express extended). All reads
/// are bounds-checked and return `nil` past the end, so decoders built on it cannot
/// trap on short or hostile input.
public struct ConfigSpace: Sendable, Hashable {
    public private(set) var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public var count: Int { bytes.count }
    /// True when the image holds the extended (0x100..0xFFF) region.
    public var hasExtendedSpace: Bool { bytes.count >= pcieConfigSpaceSize }

    public func read8(_ offset: Int) -> UInt8? {
        offset >= 0 && offset < bytes.count ? bytes[offset] : nil
    }

    public func read16(_ offset: Int) -> UInt16? { read(offset, width: 2).map { UInt16($0) } }
    public func read32(_ offset: Int) -> UInt32? { read(offset, width: 4).map { UInt32($0) } }
    public func read64(_ offset: Int) -> UInt64? { read(offset, width: 8) }

    /// Little-endian read of `width` bytes; `nil` if any byte is past the end.
    public func read(_ offset: Int, width: Int) -> UInt64? {
        guard offset >= 0, width > 0, width <= 8, offset <= bytes.count - width else { return nil }
        var v: UInt64 = 0
        for i in 0..<width { v |= UInt64(bytes[offset + i]) << UInt64(8 * i) }
        return v
    }

    /// Read a catalog register at `base + register.offset`.
    public func read(_ register: RegisterLayout, base: Int = 0) -> UInt64? {
        read(base + register.offset, width: register.width)
    }

    public mutating func write(_ offset: Int, width: Int, value: UInt64) {
        guard offset >= 0, width > 0, width <= 8, offset <= bytes.count - width else { return }
        for i in 0..<width { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i)) }
    }

    public mutating func write(_ register: RegisterLayout, base: Int = 0, value: UInt64) {
        write(base + register.offset, width: register.width, value: value)
    }

    // MARK: Header shortcuts (PCI 3.0 §6.2.1)

    public var vendorID: UInt16? { read16(PCIHeader.vendorID.offset) }
    public var deviceID: UInt16? { read16(PCIHeader.deviceID.offset) }
    public var headerType: UInt8? { read(PCIHeader.headerType).map { UInt8(PCIHeader.HeaderType.layout.extract($0)) } }
    public var isMultiFunction: Bool { read(PCIHeader.headerType).map { PCIHeader.HeaderType.multiFunction.extract($0) == 1 } ?? false }
    /// Class code as the 24-bit value base:sub:prog-if.
    public var classCode: UInt32? {
        guard let v = read32(PCIHeader.revisionID.offset) else { return nil }
        return v >> 8
    }
}
