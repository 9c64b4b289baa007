import PCI

// The CXL state snapshot: every register a reset can take away, named by the
// register catalog so JSON, diffs and reports read like the spec.

/// Who a snapshot belongs to. Vendor, Device and the Device Serial Number (when the
/// function has the capability) must match for a restore; the address is
/// informational (a device may move between slots, hosts or backends).
public struct CXLDeviceIdentity: Sendable, Hashable, Codable, CustomStringConvertible {
    public var vendorID: UInt16
    public var deviceID: UInt16
    public var serialNumber: UInt64?
    public var address: String

    public init(vendorID: UInt16, deviceID: UInt16, serialNumber: UInt64?, address: String) {
        self.vendorID = vendorID
        self.deviceID = deviceID
        self.serialNumber = serialNumber
        self.address = address
    }

    /// Same device: vendor, device and serial number agree (address ignored).
    public func matches(_ other: CXLDeviceIdentity) -> Bool {
        vendorID == other.vendorID && deviceID == other.deviceID && serialNumber == other.serialNumber
    }

    public var description: String {
        var s = "\(hex(vendorID, digits: 4)):\(hex(deviceID, digits: 4))"
        if let serialNumber { s += " serial \(hex(serialNumber, digits: 16))" }
        return s + " (\(address))"
    }

    enum CodingKeys: String, CodingKey { case vendorID = "vendor", deviceID = "device", serialNumber = "serial", address }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        vendorID = UInt16(try HexCoding.decode(c, .vendorID, bits: 16))
        deviceID = UInt16(try HexCoding.decode(c, .deviceID, bits: 16))
        serialNumber = try c.decodeIfPresent(String.self, forKey: .serialNumber).map { s in
            guard let v = HexCoding.parse(s) else {
                throw DecodingError.dataCorruptedError(forKey: .serialNumber, in: c, debugDescription: "not a hex number: \(s)")
            }
            return v
        }
        address = try c.decode(String.self, forKey: .address)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(HexCoding.format(UInt64(vendorID), width: 2), forKey: .vendorID)
        try c.encode(HexCoding.format(UInt64(deviceID), width: 2), forKey: .deviceID)
        try c.encodeIfPresent(serialNumber.map { HexCoding.format($0, width: 8) }, forKey: .serialNumber)
        try c.encode(address, forKey: .address)
    }
}

/// Where a register lives.
public enum RegisterSpace: Sendable, Hashable, Codable, CustomStringConvertible {
    case config
    case bar(Int)

    public var description: String {
        switch self {
        case .config: return "config"
        case .bar(let i): return "bar\(i)"
        }
    }

    init?(text: String) {
        if text == "config" { self = .config; return }
        guard text.hasPrefix("bar"), let i = Int(text.dropFirst(3)), (0..<6).contains(i) else { return nil }
        self = .bar(i)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let v = RegisterSpace(text: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "unknown register space \(s)")
        }
        self = v
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// What the engine does with a saved register.
public enum SavedRegisterRole: String, Sendable, Hashable, Codable {
    /// Written back on restore.
    case restore
    /// Read-only (size registers, capability): compared after a restore or reset to
    /// prove it is the same device with the same memory.
    case verify
}

/// One saved register: the catalog's structure and register names, where it is,
/// and its value.
public struct SavedRegister: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Which register: a catalog number (names rendered on demand), or names.
    var name: StateRegisterName
    /// The catalog structure (`RegisterBlockLayout.name`), e.g. "PCIe DVSEC for CXL Devices".
    public var block: String { get { name.block } set { name.block = newValue } }
    /// The catalog register name, e.g. "DVSEC CXL Control" or "Decoder 1 Control".
    public var register: String { get { name.register } set { name.register = newValue } }
    public var space: RegisterSpace
    /// Config-space offset, or offset inside the BAR.
    public var offset: UInt64
    /// Bytes: 1, 2 or 4.
    public var width: Int
    public var value: UInt64
    public var role: SavedRegisterRole

    public init(block: String, register: String, space: RegisterSpace, offset: UInt64, width: Int,
                value: UInt64, role: SavedRegisterRole) {
        self.init(name: StateRegisterName(block: block, register: register), space: space, offset: offset, width: width,
                  value: value, role: role)
    }

    init(name: StateRegisterName, space: RegisterSpace, offset: UInt64, width: Int, value: UInt64, role: SavedRegisterRole) {
        self.name = name
        self.space = space
        self.offset = offset
        self.width = width
        self.value = value
        self.role = role
    }

    /// Identifies the register across snapshots.
    public var key: RegisterKey { RegisterKey(name: name) }

    /// A name that is unique across the snapshot: capability registers whose catalog
    /// names repeat (MSI and MSI-X both have "Message Control") carry their structure.
    public var displayName: String { StateCatalog.displayName(block: block, register: register) }

    public var description: String {
        "\(displayName) [\(space)+\(hex(offset, digits: 3))] = \(HexCoding.format(value, width: width))"
    }

    /// The name's keys (`block`, `register`) come from `StateRegisterName`'s coding.
    enum CodingKeys: String, CodingKey { case space, offset, width, value, role }

    public init(from decoder: Decoder) throws {
        name = try StateRegisterName(from: decoder)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        space = try c.decode(RegisterSpace.self, forKey: .space)
        offset = try HexCoding.decode(c, .offset, bits: 64)
        width = try c.decode(Int.self, forKey: .width)
        guard [1, 2, 4].contains(width) else {
            throw DecodingError.dataCorruptedError(forKey: .width, in: c, debugDescription: "width must be 1, 2 or 4")
        }
        value = try HexCoding.decode(c, .value, bits: width * 8)
        role = try c.decode(SavedRegisterRole.self, forKey: .role)
    }

    public func encode(to encoder: Encoder) throws {
        try name.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(space, forKey: .space)
        try c.encode("0x" + String(offset, radix: 16), forKey: .offset)
        try c.encode(width, forKey: .width)
        try c.encode(HexCoding.format(value, width: width), forKey: .value)
        try c.encode(role, forKey: .role)
    }
}

/// Structure + register name: the identity of a register across snapshots.
public struct RegisterKey: Sendable, Hashable, Codable, CustomStringConvertible {
    var name: StateRegisterName
    public var block: String { get { name.block } set { name.block = newValue } }
    public var register: String { get { name.register } set { name.register = newValue } }
    public init(block: String, register: String) { name = StateRegisterName(block: block, register: register) }
    init(name: StateRegisterName) { self.name = name }
    public var description: String { StateCatalog.displayName(block: block, register: register) }

    /// `{"block": ..., "register": ...}`, as `StateRegisterName` codes it.
    public init(from decoder: any Decoder) throws { name = try StateRegisterName(from: decoder) }
    public func encode(to encoder: any Encoder) throws { try name.encode(to: encoder) }
}

/// Where the HDM decoders are: the component register block found through the
/// Register Locator DVSEC, and the HDM Decoder Capability inside it. Found by the
/// state engine (`CXLDeviceMap`) or read from a state file, never built by hand:
/// no public initialiser.
public struct HDMLocation: Sendable, Hashable, Codable {
    /// BAR index (Register BIR) holding the component register block.
    public var bar: Int
    /// Offset of the component register block inside the BAR.
    public var blockOffset: UInt64
    /// Offset of the HDM Decoder Capability structure inside the BAR.
    public var hdmOffset: UInt64
    /// Decoders implemented (HDM Decoder Capability "Decoder Count", decoded).
    public var decoderCount: Int
    /// Endpoints have DPA Skip at +0x24/+0x28; ports a Target List.
    public var endpoint: Bool
}

/// Where the saved structures are in config space. Found by the state engine or read
/// from a state file, never built by hand: no public initialiser.
public struct CXLStateLayout: Sendable, Hashable, Codable {
    /// Config offset of the PCIe DVSEC for CXL Devices (its extended capability header).
    public var dvsecOffset: Int
    public var dvsecRevision: UInt8
    public var pciExpressOffset: Int?
    public var msiOffset: Int?
    public var msixOffset: Int?
    public var serialNumberOffset: Int?
    /// The HDM decoders, if the device has a component register block with an HDM
    /// Decoder Capability.
    public var hdm: HDMLocation?
}

/// A register a read-back could not reach, and why.
public struct UnreadRegister: Sendable, Hashable, Codable {
    public var block: String
    public var register: String
    public var reason: String
    public var key: RegisterKey { RegisterKey(block: block, register: register) }
}

extension UnreadRegister {
    private enum ReasonKey: String, CodingKey { case reason }
    /// `block` and `register` as `StateRegisterName` decodes them (a name the catalog lacks counts against
    /// `ForeignRegisterNames.decodingLimit`, here and not at the first `key`), then `reason`.
    public init(from decoder: any Decoder) throws {
        let name = try StateRegisterName(from: decoder)
        self.init(block: name.block, register: name.register,
                  reason: try decoder.container(keyedBy: ReasonKey.self).decode(String.self, forKey: .reason))
    }
}

/// The state of one CXL function at one moment: identity, layout and registers in
/// save order.
public struct CXLStateSnapshot: Sendable, Hashable, Codable {
    public var identity: CXLDeviceIdentity
    public var layout: CXLStateLayout
    public var registers: [SavedRegister]
    /// Registers a read-back could not reach (for example HDM decoders behind a BAR
    /// the reset cleared). Always empty for a snapshot taken by `save()`.
    public var unread: [UnreadRegister]

    public init(identity: CXLDeviceIdentity, layout: CXLStateLayout, registers: [SavedRegister],
                unread: [UnreadRegister] = []) {
        self.identity = identity
        self.layout = layout
        self.registers = registers
        self.unread = unread
    }

    enum CodingKeys: String, CodingKey { case identity, layout, registers, unread }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        identity = try c.decode(CXLDeviceIdentity.self, forKey: .identity)
        layout = try c.decode(CXLStateLayout.self, forKey: .layout)
        registers = try c.decode([SavedRegister].self, forKey: .registers)
        unread = try c.decodeIfPresent([UnreadRegister].self, forKey: .unread) ?? []
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(identity, forKey: .identity)
        try c.encode(layout, forKey: .layout)
        try c.encode(registers, forKey: .registers)
        if !unread.isEmpty { try c.encode(unread, forKey: .unread) }
    }

    /// Check that every location is one a function can have, so a crafted or
    /// corrupted snapshot (the checksum is no defence against a deliberate edit)
    /// cannot make the engine access config space out of range or overflow an offset.
    public func validate() throws(CXLStateError) {
        func bad(_ s: String) -> CXLStateError { .invalidSnapshot(s) }
        let l = layout
        let dvsecEnd = pcieConfigSpaceSize - CXLDeviceDVSEC.length(revision: 1)
        // Capability pointers are DWORD aligned (PCI 3.0 §6.7, PCIe 6.0 §7.6.3).
        guard (0x100...dvsecEnd).contains(l.dvsecOffset), l.dvsecOffset % 4 == 0 else {
            throw bad("DVSEC offset \(l.dvsecOffset) is not an extended capability offset")
        }
        for (name, off) in [("PCI Express", l.pciExpressOffset), ("MSI", l.msiOffset), ("MSI-X", l.msixOffset)] {
            if let off, !(0x40..<pciConfigSpaceSize).contains(off) || off % 4 != 0 {
                throw bad("\(name) capability offset \(off) is not a capability offset")
            }
        }
        if let dsn = l.serialNumberOffset, !(0x100...(pcieConfigSpaceSize - 12)).contains(dsn) || dsn % 4 != 0 {
            throw bad("serial number capability offset \(dsn) is not an extended capability offset")
        }
        if let h = l.hdm {
            guard (0..<6).contains(h.bar) else { throw bad("component register BAR \(h.bar)") }
            guard (0...HDMDecoderCapability.maximumDecoders).contains(h.decoderCount) else { throw bad("\(h.decoderCount) decoders") }
            let limit = UInt64.max - UInt64(2 * ComponentRegisterBlock.size)
            guard h.blockOffset <= limit, h.hdmOffset <= limit else { throw bad("component register offset out of range") }
        }
        // Catalog registers by number in a bit set; names the catalog lacks by name.
        // The bit set in one buffer, set through its pointer (no uniqueness check per register).
        let words = (StateRegisterTable.count + 63) / 64
        let seenIDs = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: words)
        seenIDs.initialize(repeating: 0)
        defer { seenIDs.deallocate() }
        var seenOther = Set<StateRegisterName>()
        for r in registers {
            let inserted: Bool
            if let id = r.name.catalogID {
                let (word, bit) = (id &>> 6, UInt64(1) &<< UInt64(id & 63))
                inserted = seenIDs[word] & bit == 0
                seenIDs[word] |= bit
            } else {
                inserted = seenOther.insert(r.name).inserted
            }
            guard inserted else { throw bad("\(r.displayName) appears twice") }
            // Widths are powers of two once the first test passes: alignment is a mask, not a division.
            guard r.width == 1 || r.width == 2 || r.width == 4, r.offset & UInt64(r.width - 1) == 0 else { throw bad("\(r.displayName): misaligned") }
            switch r.space {
            case .config:
                guard r.offset + UInt64(r.width) <= UInt64(pcieConfigSpaceSize) else { throw bad("\(r.displayName): past config space") }
            case .bar(let b):
                guard (0..<6).contains(b), r.offset <= UInt64.max - 8 else { throw bad("\(r.displayName): bad BAR location") }
            }
            // Widths are 1, 2 or 4 here (checked above).
            guard r.value >> UInt64(8 * r.width) == 0 else { throw bad("\(r.displayName): value wider than the register") }
        }
    }

    /// The PCI part alone (Command, BARs, PCI Express control, MSI/MSI-X): what the
    /// PCI core saves and restores around every reset.
    public var pciOnly: CXLStateSnapshot {
        var s = self
        s.registers = registers.filter { StateCatalog.pciBlocks.contains($0.block) }
        s.unread = unread.filter { StateCatalog.pciBlocks.contains($0.block) }
        s.layout.hdm = nil
        return s
    }

    public subscript(key: RegisterKey) -> SavedRegister? { registers.first { $0.name == key.name } }

    public subscript(block: String, register: String) -> SavedRegister? {
        self[RegisterKey(block: block, register: register)]
    }

    /// The saved value of a catalog register of the DVSEC.
    public func dvsec(_ layout: RegisterLayout) -> SavedRegister? { self[StateCatalog.dvsecBlock, layout.name] }

    /// The saved registers of HDM decoder n, keyed by catalog name.
    public func decoder(_ n: Int) -> [SavedRegister] {
        let prefix = "Decoder \(n) "    // built once, not once per register
        return registers.filter { $0.block == StateCatalog.hdmBlock && $0.register.hasPrefix(prefix) }
    }
}

/// Values in the state file are hex strings ("0x0006"): exact for 64-bit values and
/// readable next to the spec's tables.
enum HexCoding {
    static func format(_ value: UInt64, width: Int) -> String { "0x" + hex(value, digits: width * 2) }

    static func parse(_ s: String) -> UInt64? {
        guard s.hasPrefix("0x") || s.hasPrefix("0X"), s.count > 2, s.count <= 18 else { return nil }
        return UInt64(s.dropFirst(2), radix: 16)
    }

    static func decode<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K, bits: Int) throws -> UInt64 {
        let s = try c.decode(String.self, forKey: key)
        guard let v = parse(s) else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "not a hex number: \(s)")
        }
        guard bits >= 64 || v >> UInt64(bits) == 0 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "\(s) does not fit in \(bits) bits")
        }
        return v
    }
}
