import PCI

/// One quantity the spec defines across a Low/High register pair: an address or a byte count whose Low
/// register implements only the upper bits ([31:28], 256 MiB granules). Reports show these as the spec
/// means them ("Decoder 0 Size 1 GiB -> 512 MiB"), not as the shifted field values a register diff
/// would print ("Memory Size Low 4->2").
///
/// - HDM Decoder n Base, Size, DPA Skip: CXL r3.1 §8.2.4.20.5-8 and §8.2.4.20.12-13.
/// - DVSEC CXL Range n Base, Size: CXL r3.1 §8.1.3.8.1-8.
public struct CXLStateQuantity: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// A host physical (or device physical) address.
        case address
        /// A byte count.
        case size
    }

    /// "Decoder 0 Base", "DVSEC CXL Range 1 Size".
    public var name: String
    public var kind: Kind
    /// The value on side A (before, saved), nil when a half is missing there.
    public var a: UInt64?
    /// The value on side B (after, read back).
    public var b: UInt64?

    public init(name: String, kind: Kind, a: UInt64?, b: UInt64?) {
        self.name = name
        self.kind = kind
        self.a = a
        self.b = b
    }

    public var changed: Bool { a != b }

    /// "0x4000000000" for an address, "1073741824 (1 GiB)" for a size; "-" when absent.
    public static func text(_ v: UInt64?, _ kind: Kind) -> String {
        guard let v else { return "-" }
        switch kind {
        case .address: return "0x" + String(v, radix: 16)
        case .size: return v == 0 ? "0" : "\(v) (\(ByteCount.exact(v)))"
        }
    }

    public var description: String {
        "\(name) \(Self.text(a, kind)) -> \(Self.text(b, kind))"
    }

    /// JSON under the project's convention: an address as `a`/`b` (printed `"0x..."`), a size as
    /// `a_bytes`/`b_bytes` integers (strings with `-u/--human`).
    enum CodingKeys: String, CodingKey { case name, kind, changed, a, b, aBytes = "a_bytes", bBytes = "b_bytes" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        kind = try c.decode(Kind.self, forKey: .kind)
        let (ka, kb): (CodingKeys, CodingKeys) = kind == .address ? (.a, .b) : (.aBytes, .bBytes)
        a = try c.decodeIfPresent(UInt64.self, forKey: ka)
        b = try c.decodeIfPresent(UInt64.self, forKey: kb)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(kind, forKey: .kind)
        try c.encode(changed, forKey: .changed)
        let (ka, kb): (CodingKeys, CodingKeys) = kind == .address ? (.a, .b) : (.aBytes, .bBytes)
        try c.encode(a, forKey: ka)
        try c.encode(b, forKey: kb)
    }
}

/// Where each quantity lives: the block, the Low and High register names and the Low field that holds
/// the implemented bits, all taken from the catalog.
public enum StateQuantities {
    struct Definition: Sendable {
        var name: String
        var kind: CXLStateQuantity.Kind
        var block: String
        var low: RegisterLayout
        var high: RegisterLayout

        /// The bits of Low that carry the quantity: its field(s), from the catalog.
        var lowMask: UInt64 { low.fields.reduce(0) { $0 | $1.mask } }

        func value(_ read: (RegisterKey) -> UInt64?) -> UInt64? {
            guard let l = read(RegisterKey(block: block, register: low.name)),
                  let h = read(RegisterKey(block: block, register: high.name)) else { return nil }
            return SplitAddress(low: UInt32(truncatingIfNeeded: l), high: UInt32(truncatingIfNeeded: h)).value(lowMask: lowMask)
        }
    }

    /// DVSEC Range 1-2 Base and Size; Memory_Size_Low/Memory_Base_Low are the fields at [31:28].
    static let dvsecDefinitions: [Definition] = [(1, CXLDeviceDVSEC.range1), (2, CXLDeviceDVSEC.range2)].flatMap { n, r in
        [Definition(name: "DVSEC CXL Range \(n) Base", kind: .address, block: StateCatalog.dvsecBlock, low: r.baseLow, high: r.baseHigh),
         Definition(name: "DVSEC CXL Range \(n) Size", kind: .size, block: StateCatalog.dvsecBlock, low: rangeSizeLow(r.sizeLow), high: r.sizeHigh)]
    }

    /// Range n Size Low also holds Memory_Info_Valid, Media_Type and the rest: only Memory_Size_Low counts.
    static func rangeSizeLow(_ layout: RegisterLayout) -> RegisterLayout {
        RegisterLayout(layout.name, offset: layout.offset, width: layout.width, layout.fields.filter { $0 == CXLDeviceDVSEC.rangeSizeLow })
    }

    /// Decoder n Base, Size and (endpoint decoders) DPA Skip.
    static func decoderDefinitions(_ n: Int) -> [Definition] {
        let r = HDMDecoderRegisters(n, endpoint: true)
        return [Definition(name: "Decoder \(n) Base", kind: .address, block: StateCatalog.hdmBlock, low: r.baseLow, high: r.baseHigh),
                Definition(name: "Decoder \(n) Size", kind: .size, block: StateCatalog.hdmBlock, low: r.sizeLow, high: r.sizeHigh),
                Definition(name: "Decoder \(n) DPA Skip", kind: .size, block: StateCatalog.hdmBlock,
                           low: r.skipOrTargetLow, high: r.skipOrTargetHigh)]
    }

    /// Every quantity either side holds, A's value against B's, in catalog order (DVSEC ranges, then
    /// decoders in ascending order).
    public static func compare(_ a: (RegisterKey) -> UInt64?, _ b: (RegisterKey) -> UInt64?, decoderCount: Int) -> [CXLStateQuantity] {
        let defs = dvsecDefinitions + (0..<max(0, min(decoderCount, HDMDecoderCapability.maximumDecoders))).flatMap(decoderDefinitions)
        return defs.compactMap { d in
            let va = d.value(a), vb = d.value(b)
            if va == nil && vb == nil { return nil }
            return CXLStateQuantity(name: d.name, kind: d.kind, a: va, b: vb)
        }
    }

    /// The Low fields whose values are bits of an address or size in place (Memory Base Low [31:28], ...):
    /// a register diff shows them unshifted ("Memory Size Low 0x40000000->0x20000000"), and the BARs'
    /// Base Address likewise (PCI r6.0 §7.5.1.2.1).
    static let inPlaceFields: Set<String> = {
        var names: Set<String> = ["Base Address"]
        for d in dvsecDefinitions + decoderDefinitions(0) { for f in d.low.fields where f.lsb > 0 { names.insert(f.name) } }
        return names
    }()

    public static func isInPlace(field: String) -> Bool { inPlaceFields.contains(field) }
}
