// The declarative register catalog.
//
// Every register this toolkit touches is declared once, as data: its offset inside
// the structure that holds it, its width, the spec's name, and its fields with bit
// range, access type, reset value and value encodings. Decoding, emulation write
// masks and the save/restore set are all derived from these declarations, so a
// reader can check a register against the spec in one place.

/// Register attribute as defined by PCI Express Base 6.0 §7.4 ("Configuration
/// Register Types") and reused by CXL 3.1 §8.1 / §8.2 for DVSECs and component
/// registers.
public enum RegisterAccess: String, Sendable, Codable, CaseIterable, Hashable {
    /// Read-only; software writes are ignored.
    case ro = "RO"
    /// Hardware-initialised (by firmware or straps); read-only to software.
    case hwInit = "HwInit"
    /// Read-write.
    case rw = "RW"
    /// Read-write, sticky: survives conventional reset (not power loss).
    case rws = "RWS"
    /// Read-write until a lock (CXL CONFIG_LOCK, or HDM Lock On Commit) freezes it.
    case rwl = "RWL"
    /// Write once: the first write sticks until the next conventional reset.
    case rwo = "RWO"
    /// Write 1 to clear.
    case rw1c = "RW1C"
    /// Write 1 to clear, sticky.
    case rw1cs = "RW1CS"
    /// Reserved and preserved: read as whatever, software must write back what it read.
    case rsvdP = "RsvdP"
    /// Reserved and zero: software must write 0.
    case rsvdZ = "RsvdZ"

    /// Software can change the stored value with an ordinary write (RW/RWS/RWL/RWO;
    /// for RWL and RWO only while unlocked / not yet written).
    public var isWritable: Bool {
        switch self {
        case .rw, .rws, .rwl, .rwo: return true
        default: return false
        }
    }

    /// Write-1-to-clear status bits.
    public var isWriteOneToClear: Bool { self == .rw1c || self == .rw1cs }

    /// Sticky bits keep their value across a conventional reset (PCIe 6.0 §7.4).
    public var isSticky: Bool { self == .rws || self == .rw1cs }

    public var isReserved: Bool { self == .rsvdP || self == .rsvdZ }
}

/// One field of a register: a contiguous bit range with an access type.
public struct RegisterField: Sendable, Hashable {
    public let name: String
    public let lsb: Int
    public let msb: Int
    public let access: RegisterAccess
    /// Reset value of the field (unshifted).
    public let reset: UInt64
    /// Names of encoded values, where the spec gives a table.
    public let values: [UInt64: String]
    /// One-line meaning, for `-vvv` output and doc generation.
    public let summary: String
    /// The name as a JSON key (`JSONKey.snakeCase`), computed once with the catalog.
    public let jsonKey: String

    /// A multi-bit field `[msb:lsb]`, written the way the spec tables write it.
    public init(_ name: String, _ msb: Int, _ lsb: Int, _ access: RegisterAccess,
                reset: UInt64 = 0, values: [UInt64: String] = [:], _ summary: String = "") {
        precondition(msb >= lsb && lsb >= 0 && msb < 64, "bad bit range for \(name)")
        self.name = name
        self.msb = msb
        self.lsb = lsb
        self.access = access
        self.reset = reset
        self.values = values
        self.summary = summary
        jsonKey = JSONKey.snakeCase(name)
    }

    /// A single-bit field.
    public init(_ name: String, bit: Int, _ access: RegisterAccess, reset: UInt64 = 0,
                values: [UInt64: String] = [:], _ summary: String = "") {
        self.init(name, bit, bit, access, reset: reset, values: values, summary)
    }

    @inlinable public var width: Int { msb - lsb + 1 }

    /// The field's bits in place.
    @inlinable public var mask: UInt64 { (width == 64 ? ~0 : ((1 << UInt64(width)) - 1)) << UInt64(lsb) }

    @inlinable public func extract(_ raw: UInt64) -> UInt64 { (raw & mask) >> UInt64(lsb) }

    @inlinable public func insert(_ value: UInt64, into raw: UInt64) -> UInt64 {
        (raw & ~mask) | ((value << UInt64(lsb)) & mask)
    }

    /// The name of an encoded value, if the spec names it.
    public func name(of value: UInt64) -> String? { values[value] }
}

/// A register: offset inside its structure, width in bytes, fields.
///
/// Bits not covered by any field are reserved (RsvdP): never writable, reset 0.
public struct RegisterLayout: Sendable, Hashable {
    public let name: String
    public let offset: Int
    /// Width in bytes: 1, 2, 4 or 8.
    public let width: Int
    public let fields: [RegisterField]

    public init(_ name: String, offset: Int, width: Int, _ fields: [RegisterField] = []) {
        precondition([1, 2, 4, 8].contains(width), "bad width for \(name)")
        self.name = name
        self.offset = offset
        self.width = width
        self.fields = fields
        var seen: UInt64 = 0
        for f in fields {
            precondition(f.msb < width * 8, "\(name).\(f.name) past register width")
            precondition(seen & f.mask == 0, "\(name).\(f.name) overlaps another field")
            seen |= f.mask
        }
    }

    /// All bits of the register.
    public var widthMask: UInt64 { width == 8 ? ~0 : (1 << UInt64(width * 8)) - 1 }

    /// Union of the masks of fields with one of the given access types.
    public func mask(_ accesses: Set<RegisterAccess>) -> UInt64 {
        fields.reduce(0) { accesses.contains($1.access) ? $0 | $1.mask : $0 }
    }

    public func mask(where predicate: (RegisterField) -> Bool) -> UInt64 {
        fields.reduce(0) { predicate($1) ? $0 | $1.mask : $0 }
    }

    /// Bits an ordinary write may change while nothing is locked.
    public var writableMask: UInt64 { mask(where: { $0.access.isWritable }) }
    /// Bits that a lock (CONFIG_LOCK, Lock On Commit) freezes.
    public var lockableMask: UInt64 { mask([.rwl]) }
    /// Write-once bits.
    public var writeOnceMask: UInt64 { mask([.rwo]) }
    /// Write-1-to-clear bits.
    public var writeOneToClearMask: UInt64 { mask(where: { $0.access.isWriteOneToClear }) }
    /// Bits that survive a conventional reset.
    public var stickyMask: UInt64 { mask(where: { $0.access.isSticky }) }
    /// Value after reset, assembled from the fields' reset values.
    public var resetValue: UInt64 { fields.reduce(0) { $1.insert($1.reset, into: $0) } }

    public func field(_ name: String) -> RegisterField? { fields.first { $0.name == name } }

    /// The same register at another offset (for repeated structures such as HDM decoder n).
    public func at(offset: Int, name: String? = nil) -> RegisterLayout {
        RegisterLayout(name ?? self.name, offset: offset, width: width, fields)
    }

    /// The fields of a raw value, in bit order.
    public func decode(_ raw: UInt64) -> [DecodedField] {
        fields.sorted { $0.lsb < $1.lsb }.map { DecodedField(field: $0, value: $0.extract(raw)) }
    }
}

/// A field's value inside a decoded register.
public struct DecodedField: Sendable, Hashable {
    public let field: RegisterField
    public let value: UInt64
    public var name: String { field.name }
    public var meaning: String? { field.values[value] }
}

/// A structure made of registers: a header, a capability, a DVSEC body, a component
/// register block. Offsets of its registers are relative to the structure's start.
public struct RegisterBlockLayout: Sendable {
    public let name: String
    public let registers: [RegisterLayout]

    public init(_ name: String, _ registers: [RegisterLayout]) {
        self.name = name
        self.registers = registers.sorted { $0.offset < $1.offset }
        for (a, b) in zip(self.registers, self.registers.dropFirst()) {
            precondition(a.offset + a.width <= b.offset, "\(name): \(a.name) overlaps \(b.name)")
        }
    }

    /// Bytes covered, from offset 0 to the end of the last register.
    public var length: Int { registers.last.map { $0.offset + $0.width } ?? 0 }

    public subscript(name: String) -> RegisterLayout {
        guard let r = registers.first(where: { $0.name == name }) else {
            preconditionFailure("\(self.name) has no register \(name)")
        }
        return r
    }

    public func register(named name: String) -> RegisterLayout? { registers.first { $0.name == name } }

    /// The register that contains byte `offset`, if any.
    public func register(containing offset: Int) -> RegisterLayout? {
        registers.first { offset >= $0.offset && offset < $0.offset + $0.width }
    }

    /// Per-byte masks over the block, for byte-lane-exact emulation of 1/2/4-byte
    /// config accesses: the mask of byte i is bits [8i+7:8i] of the covering register.
    public func byteMasks(_ pick: (RegisterLayout) -> UInt64) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        for r in registers {
            let m = pick(r)
            for i in 0..<r.width { out[r.offset + i] = UInt8(truncatingIfNeeded: m >> UInt64(8 * i)) }
        }
        return out
    }

    /// Reset image of the block (bytes, little-endian).
    public var resetImage: [UInt8] {
        byteMasks { $0.resetValue }
    }

    public func appending(_ more: [RegisterLayout], name: String? = nil) -> RegisterBlockLayout {
        RegisterBlockLayout(name ?? self.name, registers + more)
    }
}
