import PCI

/// The registers a CXL state snapshot holds, taken from the register catalog: which
/// structures, which registers, which role, and how a register is written back.
/// Nothing here names an offset or a mask the catalog does not declare.
public enum StateCatalog {
    public static let headerBlock = PCIHeader.type0.name
    public static let pciExpressBlock = PCIExpressCapability.layout.name
    public static let msiBlock = "MSI"
    public static let msixBlock = MSIXCapability.layout.name
    public static let dvsecBlock = CXLDVSECID.device.name
    public static let hdmBlock = CacheMemCapabilityID.hdmDecoder.name
    /// The structures the PCI core itself saves and restores.
    public static let pciBlocks: Set<String> = [headerBlock, pciExpressBlock, msiBlock, msixBlock]

    /// PCI state a reset also loses and the function needs to be usable again
    /// (PCIe 6.0 §7.5.3): Device/Link Control and Control 2.
    static let pciExpressRegisters: [RegisterLayout] = [
        PCIExpressCapability.deviceControl, PCIExpressCapability.linkControl,
        PCIExpressCapability.deviceControl2, PCIExpressCapability.linkControl2,
    ]

    /// Control2 bits that hold state (Disable Caching, Mem Clr Enable, Desired
    /// Volatile HDM State, Modified Completion Enable): the writable bits minus the
    /// two doorbells, which must never be rung by a restore.
    public static let control2PersistentMask: UInt64 =
        CXLDeviceDVSEC.control2.writableMask & ~CXLDeviceDVSEC.control2Doorbells

    static let decoderControlLayout = HDMDecoderCapability.control
    static func decoderField(_ name: String) -> UInt64 { decoderControlLayout.field(name)!.mask }
    /// Decoder n Control bits, from the catalog.
    public static let commitBit = decoderField("Commit")
    public static let committedBit = decoderField("Committed")
    public static let errorNotCommittedBit = decoderField("Error Not Committed")
    public static let lockOnCommitBit = decoderField("Lock On Commit")

    public static let configLockBit = CXLDeviceDVSEC.configLock.mask
    public static let memorySpaceEnableBit = PCIHeader.Command.memorySpaceEnable.mask

    /// Decoder n's registers in the order the kernel programs them (and we save them):
    /// Base Low/High, Size Low/High, Control, DPA Skip (or Target List) Low/High.
    static func decoderRegisters(_ n: Int, endpoint: Bool) -> [RegisterLayout] {
        HDMDecoderCapability.decoderRegisters(n, endpoint: endpoint)
    }

    /// Every register of the HDM Decoder Capability by catalog name: the capability
    /// and global control, and decoders 0-31 of both kinds (endpoint and port).
    static let hdmRegistersByName: [String: RegisterLayout] = {
        var out: [String: RegisterLayout] = [:]
        let all = [HDMDecoderCapability.capability, HDMDecoderCapability.globalControl]
            + (0..<HDMDecoderCapability.maximumDecoders).flatMap { decoderRegisters($0, endpoint: true) + decoderRegisters($0, endpoint: false) }
        for r in all where out[r.name] == nil { out[r.name] = r }
        return out
    }()

    /// Base Address Register 0-5 names, in BAR order.
    static let barNames = (0..<6).map { PCIHeader.bar($0).name }

    /// The catalog's names of every Decoder n Control.
    static let decoderControlNames = Set((0..<HDMDecoderCapability.maximumDecoders).map { HDMDecoderRegisters($0).control.name })

    /// Blocks whose register names repeat elsewhere get their structure in front.
    public static func displayName(block: String, register: String) -> String {
        switch block {
        case pciExpressBlock, msiBlock, msixBlock: return "\(block) \(register)"
        default: return register
        }
    }

    /// The catalog layout of a saved register (offset relative to its structure), for
    /// decoding fields in diffs and reports.
    public static func layout(for key: RegisterKey) -> RegisterLayout? {
        switch key.block {
        case headerBlock: return PCIHeader.type0.register(named: key.register)
        case pciExpressBlock: return PCIExpressCapability.layout.register(named: key.register)
        case msiBlock:
            return MSICapability.layout(is64Bit: true, perVectorMasking: true).register(named: key.register)
        case msixBlock: return MSIXCapability.layout.register(named: key.register)
        case dvsecBlock: return CXLDeviceDVSEC.layout(revision: 2).register(named: key.register)
        case hdmBlock: return hdmRegistersByName[key.register]
        default: return nil
        }
    }

    /// Whether two values of a register mean the same state. Decoder n Control: a
    /// committed decoder may read Commit 1 (spec) or 0 (QEMU clears it when it sets
    /// Committed, `hw/mem/cxl_type3.c`); with Committed set in both, Commit is ignored.
    public static func equivalent(_ key: RegisterKey, _ a: UInt64, _ b: UInt64) -> Bool {
        if a == b { return true }
        if isDecoderControl(key.name), a & committedBit != 0, b & committedBit != 0 {
            return a & ~commitBit == b & ~commitBit
        }
        return false
    }

    /// Whether a register is a Decoder n Control (by number; by name for a register the state table lacks).
    static func isDecoderControl(_ name: StateRegisterName) -> Bool {
        guard name.catalogID != nil else { return name.block == hdmBlock && decoderControlNames.contains(name.register) }
        if case .decoder(_, let slot)? = name.kind { return slot == HDMDecoderRegisters.controlIndex }
        return false
    }

    /// Whether a register belongs to the HDM Decoder Capability.
    static func isHDM(_ name: StateRegisterName) -> Bool {
        switch name.kind {
        case .hdmCapability?, .hdmGlobalControl?, .decoder?: return true
        case nil: return name.block == hdmBlock
        default: return false
        }
    }

    /// The fields that differ between two values of a register, decoded ("Mem_Enable 1->0").
    public static func changedFields(_ key: RegisterKey, _ a: UInt64, _ b: UInt64) -> [FieldChange] {
        guard let layout = layout(for: key) else { return [] }
        var out: [FieldChange] = []
        var covered: UInt64 = 0
        for f in layout.fields.sorted(by: { $0.lsb < $1.lsb }) {
            covered |= f.mask
            // Fragments of an address or size (Memory Base Low [31:28], a BAR's Base Address) in place:
            // "Memory Size Low 0x40000000->0x20000000", not the shifted "4->2".
            let inPlace = StateQuantities.isInPlace(field: f.name)
            let va = inPlace ? a & f.mask : f.extract(a), vb = inPlace ? b & f.mask : f.extract(b)
            if va != vb { out.append(FieldChange(field: f.name, before: va, after: vb)) }
        }
        let rest = (a ^ b) & ~covered & layout.widthMask
        if rest != 0 { out.append(FieldChange(field: "reserved bits", before: a & rest, after: b & rest)) }
        return out
    }
}

/// One field that changed between two values of a register.
public struct FieldChange: Sendable, Hashable, Codable, CustomStringConvertible {
    public var field: String
    public var before: UInt64
    public var after: UInt64
    public var description: String {
        func v(_ x: UInt64) -> String { x < 10 ? "\(x)" : "0x" + String(x, radix: 16) }
        return "\(field) \(v(before))->\(v(after))"
    }
}
