import PCI

/// Two snapshots compared register by register, with the changed fields decoded from
/// the catalog ("Mem_Enable 1->0").
public struct CXLStateDiff: Sendable, Hashable, Codable {
    public struct Entry: Sendable, Hashable, Codable {
        public var block: String
        public var register: String
        public var width: Int
        public var a: UInt64?
        public var b: UInt64?
        /// Why a side has no value (register unread after a reset, or absent).
        public var note: String?
        public var fields: [FieldChange]

        public var key: RegisterKey { RegisterKey(block: block, register: register) }
        public var displayName: String { StateCatalog.displayName(block: block, register: register) }
        public var changed: Bool {
            guard let a, let b else { return a != b }
            return !StateCatalog.equivalent(key, a, b)
        }
    }

    public var a: CXLDeviceIdentity
    public var b: CXLDeviceIdentity
    /// Every register of either side, in A's order then B's extras.
    public var entries: [Entry]

    public var changes: [Entry] { entries.filter(\.changed) }

    /// The addresses and sizes both sides hold, as the spec means them (decoder and DVSEC range bases,
    /// sizes, DPA skips), A against B.
    public var quantities: [CXLStateQuantity] {
        let a = Dictionary(entries.compactMap { e in e.a.map { (e.key, $0) } }, uniquingKeysWith: { x, _ in x })
        let b = Dictionary(entries.compactMap { e in e.b.map { (e.key, $0) } }, uniquingKeysWith: { x, _ in x })
        return StateQuantities.compare({ a[$0] }, { b[$0] }, decoderCount: HDMDecoderCapability.maximumDecoders)
    }
    public var isEmpty: Bool { changes.isEmpty }
    public var sameDevice: Bool { a.matches(b) }

    public init(_ a: CXLStateSnapshot, _ b: CXLStateSnapshot) {
        self.a = a.identity
        self.b = b.identity
        var entries: [Entry] = []
        var seen = Set<RegisterKey>()
        let unreadA = Dictionary(a.unread.map { ($0.key, $0.reason) }, uniquingKeysWith: { x, _ in x })
        let unreadB = Dictionary(b.unread.map { ($0.key, $0.reason) }, uniquingKeysWith: { x, _ in x })
        let order = a.registers.map(\.key) + a.unread.map(\.key) + b.registers.map(\.key) + b.unread.map(\.key)
        for key in order where seen.insert(key).inserted {
            let ra = a[key], rb = b[key]
            let width = ra?.width ?? rb?.width ?? 4
            var note: String?
            if ra == nil { note = "A: " + (unreadA[key] ?? "not in this snapshot") }
            if rb == nil { note = (note.map { $0 + "; " } ?? "") + "B: " + (unreadB[key] ?? "not in this snapshot") }
            let fields = (ra != nil && rb != nil && ra!.value != rb!.value)
                ? StateCatalog.changedFields(key, ra!.value, rb!.value) : []
            entries.append(Entry(block: key.block, register: key.register, width: width, a: ra?.value, b: rb?.value,
                                 note: note, fields: fields))
        }
        self.entries = entries
    }

    enum CodingKeys: String, CodingKey { case a, b, entries, quantities }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        a = try c.decode(CXLDeviceIdentity.self, forKey: .a)
        b = try c.decode(CXLDeviceIdentity.self, forKey: .b)
        entries = try c.decode([Entry].self, forKey: .entries)
    }

    /// The stored fields, and the quantities (derived, for readers of the JSON).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(a, forKey: .a)
        try c.encode(b, forKey: .b)
        try c.encode(entries, forKey: .entries)
        try c.encode(quantities, forKey: .quantities)
    }
}

extension CXLStateDiff.Entry {
    private enum Keys: String, CodingKey { case width, a, b, note, fields }
    /// `block` and `register` as `StateRegisterName` decodes them (a name the catalog lacks counts against
    /// `ForeignRegisterNames.decodingLimit`, here and not at the first `key`), then the other fields.
    public init(from decoder: any Decoder) throws {
        let name = try StateRegisterName(from: decoder)
        let c = try decoder.container(keyedBy: Keys.self)
        self.init(block: name.block, register: name.register, width: try c.decode(Int.self, forKey: .width),
                  a: try c.decodeIfPresent(UInt64.self, forKey: .a), b: try c.decodeIfPresent(UInt64.self, forKey: .b),
                  note: try c.decodeIfPresent(String.self, forKey: .note), fields: try c.decode([FieldChange].self, forKey: .fields))
    }
}
