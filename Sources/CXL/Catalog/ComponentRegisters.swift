import PCI

// CXL component registers (CXL 3.1 §8.2.4): a 64 KiB block in a BAR whose
// CXL.cache/CXL.mem part at +0x1000 starts with a capability array.

public enum ComponentRegisterBlock {
    /// Size of a component register block (§8.2.3, Table 8-21).
    public static let size = 0x1_0000
    /// Offset of the CXL.cachemem registers; capability pointers count from here.
    public static let cacheMemOffset = 0x1000
    public static let cacheMemSize = 0x1000
}

/// CXL.cachemem capability IDs (CXL 3.1 Table 8-22).
public enum CacheMemCapabilityID: UInt16, Sendable, CaseIterable, Codable {
    case null = 0x0
    case capability = 0x1
    case ras = 0x2
    case security = 0x3
    case link = 0x4
    case hdmDecoder = 0x5
    case extendedSecurity = 0x6
    case ide = 0x7
    case snoopFilter = 0x8
    case timeoutAndIsolation = 0x9
    case cacheMemExtendedRegister = 0xA
    case biRouteTable = 0xB
    case biDecoder = 0xC
    case cacheIDRouteTable = 0xD
    case cacheIDDecoder = 0xE
    case extendedHDMDecoder = 0xF
    case extendedMetadata = 0x10

    public var name: String {
        switch self {
        case .null: return "Null"
        case .capability: return "CXL Capability"
        case .ras: return "CXL RAS Capability"
        case .security: return "CXL Security Capability"
        case .link: return "CXL Link Capability"
        case .hdmDecoder: return "CXL HDM Decoder Capability"
        case .extendedSecurity: return "CXL Extended Security Capability"
        case .ide: return "CXL IDE Capability"
        case .snoopFilter: return "CXL Snoop Filter Capability"
        case .timeoutAndIsolation: return "CXL Timeout and Isolation Capability"
        case .cacheMemExtendedRegister: return "CXL.cachemem Extended Register Capability"
        case .biRouteTable: return "CXL BI Route Table Capability"
        case .biDecoder: return "CXL BI Decoder Capability"
        case .cacheIDRouteTable: return "CXL Cache ID Route Table Capability"
        case .cacheIDDecoder: return "CXL Cache ID Decoder Capability"
        case .extendedHDMDecoder: return "CXL Extended HDM Decoder Capability"
        case .extendedMetadata: return "CXL Extended Metadata Capability"
        }
    }
}

/// The CXL capability array at cachemem +0 (§8.2.4.1, §8.2.4.2).
public enum CacheMemCapabilityArray {
    public static let capabilityID = RegisterField("CXL_Capability_ID", 15, 0, .ro, reset: 1)
    public static let arraySize = RegisterField("Array_Size", 31, 24, .ro)
    public static let header = RegisterLayout("CXL Capability Header", offset: 0x0, width: 4, [
        capabilityID,
        .init("CXL_Capability_Version", 19, 16, .ro, reset: 1),
        .init("CXL_Cache_Mem_Version", 23, 20, .ro, reset: 1),
        arraySize,
    ])
    public static let elementID = RegisterField("Capability ID", 15, 0, .ro)
    public static let elementVersion = RegisterField("Capability Version", 19, 16, .ro)
    /// Counts from cachemem +0.
    public static let elementPointer = RegisterField("Pointer", 31, 20, .ro)
    /// Element i (1 ... Array_Size) at cachemem + 4*i. Pointer counts from cachemem +0.
    public static let element = RegisterLayout("CXL Capability Element Header", offset: 0x4, width: 4, [
        elementID, elementVersion, elementPointer,
    ])
}

/// HDM Decoder Capability Structure, CXL.cachemem capability 5 (§8.2.4.20).
public enum HDMDecoderCapability {
    /// Decoder Count encodings (§8.2.4.20.1): not simply 2n beyond 16 decoders.
    public static let decoderCounts: [UInt64: Int] = [
        0x0: 1, 0x1: 2, 0x2: 4, 0x3: 6, 0x4: 8, 0x5: 10, 0x6: 12, 0x7: 14, 0x8: 16, 0x9: 20, 0xA: 24, 0xB: 28, 0xC: 32,
    ]
    public static let maximumDecoders = 32

    public static let decoderCount = RegisterField("Decoder Count", 3, 0, .hwInit, values: decoderCounts.mapValues { "\($0)" })
    /// The HDM Decoder Capability fields that constrain what a decoder may be
    /// programmed to (§8.2.4.20.1), as typed handles.
    public static let a11to8Capable = RegisterField("A11to8 Interleave Capable", bit: 8, .hwInit)
    public static let a14to12Capable = RegisterField("A14to12 Interleave Capable", bit: 9, .hwInit)
    public static let poisonOnDecodeErrorCapable = RegisterField("Poison On Decode Error Capability", bit: 10, .hwInit)
    public static let threeSixTwelveWayCapable = RegisterField("3, 6, 12 Way Interleave Capable", bit: 11, .hwInit)
    public static let sixteenWayCapable = RegisterField("16 Way Interleave Capable", bit: 12, .hwInit)
    public static let uioCapable = RegisterField("UIO Capable", bit: 13, .hwInit)
    public static let capability = RegisterLayout("HDM Decoder Capability", offset: 0x00, width: 4, [
        decoderCount,
        .init("Target Count", 7, 4, .hwInit, values: [1: "1", 2: "2", 4: "4", 8: "8"]),
        a11to8Capable, a14to12Capable, poisonOnDecodeErrorCapable, threeSixTwelveWayCapable, sixteenWayCapable, uioCapable,
        .init("UIO Capable Decoder Count", 19, 16, .hwInit),
        .init("MemData-NXM Capable", bit: 20, .hwInit),
        .init("Supported Coherency Models", 22, 21, .hwInit, values: [0: "unknown", 1: "device-coherent", 2: "host-only", 3: "both"]),
    ])

    /// HDM Decoder Global Control (§8.2.4.20.2).
    public static let poisonOnDecodeErrorEnable = RegisterField("Poison On Decode Error Enable", bit: 0, .rw)
    public static let hdmDecoderEnable = RegisterField("HDM Decoder Enable", bit: 1, .rw, "decode CXL.mem through HDM decoders instead of DVSEC ranges")
    public static let globalControl = RegisterLayout("HDM Decoder Global Control", offset: 0x04, width: 4, [
        poisonOnDecodeErrorEnable, hdmDecoderEnable,
    ])

    /// Per-decoder stride and the first decoder's offset.
    public static let decoderStride = 0x20
    public static let firstDecoderOffset = 0x10

    public static let interleaveGranularities: [UInt64: String] = [0: "256 B", 1: "512 B", 2: "1 KB", 3: "2 KB", 4: "4 KB", 5: "8 KB", 6: "16 KB"]
    public static let interleaveWays: [UInt64: String] = [0: "1", 1: "2", 2: "4", 3: "8", 4: "16", 8: "3", 9: "6", 0xA: "12"]

    /// Decoder n Control (§8.2.4.20.7). RWL fields freeze once committed with Lock
    /// On Commit set, until a conventional reset or CXL Reset.
    public static let control = RegisterLayout("Decoder Control", offset: 0x20, width: 4, [
        Control.ig, Control.iw, Control.lockOnCommit, Control.commit, Control.committed, Control.errorNotCommitted,
        .init("Target Range Type", bit: 12, .rwl, values: [0: "device-coherent (HDM-D/HDM-DB)", 1: "host-only coherent (HDM-H)"]),
        .init("BI", bit: 13, .rwl, "HDM-DB when set"),
        Control.uio, Control.upstreamInterleaveGranularity, Control.upstreamInterleaveWays, Control.interleaveSetPosition,
    ])

    /// Decoder n Control's fields as typed handles (§8.2.4.20.7): named once here.
    public enum Control {
        public static let ig = RegisterField("IG", 3, 0, .rwl, values: interleaveGranularities, "Interleave Granularity")
        public static let iw = RegisterField("IW", 7, 4, .rwl, values: interleaveWays, "Interleave Ways")
        public static let lockOnCommit = RegisterField("Lock On Commit", bit: 8, .rwl)
        public static let commit = RegisterField("Commit", bit: 9, .rwl)
        public static let committed = RegisterField("Committed", bit: 10, .ro)
        public static let errorNotCommitted = RegisterField("Error Not Committed", bit: 11, .ro)
        public static let uio = RegisterField("UIO", bit: 14, .rwl)
        public static let upstreamInterleaveGranularity = RegisterField("Upstream Interleave Granularity", 19, 16, .rwl)
        public static let upstreamInterleaveWays = RegisterField("Upstream Interleave Ways", 23, 20, .rwl)
        public static let interleaveSetPosition = RegisterField("Interleave Set Position", 27, 24, .rwl)
        /// The UIO fields, writable only when UIO Capable (§8.2.4.20.7).
        public static var uioFields: UInt64 { uio.mask | upstreamInterleaveGranularity.mask | upstreamInterleaveWays.mask }
    }

    /// Offset of Decoder n Control inside decoder n's registers.
    public static let controlSlot = 0x10

    private static let endpointDecoders = (0..<maximumDecoders).map { buildDecoderRegisters($0, endpoint: true) }
    private static let portDecoders = (0..<maximumDecoders).map { buildDecoderRegisters($0, endpoint: false) }

    /// The eight DWORDs of decoder n, offsets relative to the HDM capability start.
    /// Endpoints (devices) have DPA Skip at +0x24/+0x28; ports have a Target List.
    /// Built once per decoder (the names are not formatted again on every use).
    public static func decoderRegisters(_ n: Int, endpoint: Bool) -> [RegisterLayout] {
        guard (0..<maximumDecoders).contains(n) else { return buildDecoderRegisters(n, endpoint: endpoint) }
        return endpoint ? endpointDecoders[n] : portDecoders[n]
    }

    private static func buildDecoderRegisters(_ n: Int, endpoint: Bool) -> [RegisterLayout] {
        let b = firstDecoderOffset + decoderStride * n
        var regs = [
            RegisterLayout("Decoder \(n) Base Low", offset: b, width: 4, [.init("Memory Base Low", 31, 28, .rwl)]),
            RegisterLayout("Decoder \(n) Base High", offset: b + 0x4, width: 4, [.init("Memory Base High", 31, 0, .rwl)]),
            RegisterLayout("Decoder \(n) Size Low", offset: b + 0x8, width: 4, [.init("Memory Size Low", 31, 28, .rwl)]),
            RegisterLayout("Decoder \(n) Size High", offset: b + 0xC, width: 4, [.init("Memory Size High", 31, 0, .rwl)]),
            control.at(offset: b + 0x10, name: "Decoder \(n) Control"),
        ]
        if endpoint {
            regs += [
                RegisterLayout("Decoder \(n) DPA Skip Low", offset: b + 0x14, width: 4, [.init("DPA Skip Low", 31, 28, .rwl)]),
                RegisterLayout("Decoder \(n) DPA Skip High", offset: b + 0x18, width: 4, [.init("DPA Skip High", 31, 0, .rwl)]),
            ]
        } else {
            regs += [
                RegisterLayout("Decoder \(n) Target List Low", offset: b + 0x14, width: 4, (0..<4).map {
                    .init("Target Port Identifier Way \($0)", 8 * $0 + 7, 8 * $0, .rwl)
                }),
                RegisterLayout("Decoder \(n) Target List High", offset: b + 0x18, width: 4, (0..<4).map {
                    .init("Target Port Identifier Way \($0 + 4)", 8 * $0 + 7, 8 * $0, .rwl)
                }),
            ]
        }
        return regs
    }

    /// Bytes the structure spans for `count` decoders.
    public static func length(decoders count: Int) -> Int { firstDecoderOffset + decoderStride * count }

    public static func layout(decoders count: Int, endpoint: Bool) -> RegisterBlockLayout {
        RegisterBlockLayout(CacheMemCapabilityID.hdmDecoder.name,
                            [capability, globalControl] + (0..<count).flatMap { decoderRegisters($0, endpoint: endpoint) })
    }
}

/// CXL RAS Capability Structure, CXL.cachemem capability 2 (§8.2.4.17).
public enum RASCapability {
    public static let length = 0x58
    static let uncorrectableBits: [(Int, String)] = [
        (0, "Cache_Data_Parity"), (1, "Cache_Address_Parity"), (2, "Cache_BE_Parity"), (3, "Cache_Data_ECC"),
        (4, "Mem_Data_Parity"), (5, "Mem_Address_Parity"), (6, "Mem_BE_Parity"), (7, "Mem_Data_ECC"),
        (8, "REINIT_Threshold"), (9, "Rsvd_Encoding_Violation"), (10, "Poison_Received"), (11, "Receiver_Overflow"),
        (14, "Internal_Error"), (15, "CXL_IDE_Tx_Error"), (16, "CXL_IDE_Rx_Error"),
    ]
    static let correctableBits: [(Int, String)] = [
        (0, "Cache_Data_ECC"), (1, "Mem_Data_ECC"), (2, "CRC_Threshold"), (3, "Retry_Threshold"),
        (4, "Cache_Poison_Received"), (5, "Mem_Poison_Received"), (6, "Physical_Layer_Error"),
    ]
    static func bits(_ list: [(Int, String)], _ access: RegisterAccess, reset: UInt64 = 0) -> [RegisterField] {
        list.map { .init($0.1, bit: $0.0, access, reset: reset) }
    }

    public static let uncorrectableStatus = RegisterLayout("Uncorrectable Error Status", offset: 0x00, width: 4, bits(uncorrectableBits, .rw1cs))
    public static let uncorrectableMask = RegisterLayout("Uncorrectable Error Mask", offset: 0x04, width: 4, bits(uncorrectableBits, .rws, reset: 1))
    public static let uncorrectableSeverity = RegisterLayout("Uncorrectable Error Severity", offset: 0x08, width: 4, bits(uncorrectableBits, .rws, reset: 1))
    public static let correctableStatus = RegisterLayout("Correctable Error Status", offset: 0x0C, width: 4, bits(correctableBits, .rw1cs))
    public static let correctableMask = RegisterLayout("Correctable Error Mask", offset: 0x10, width: 4, bits(correctableBits, .rws, reset: 1))
    public static let errorCapabilityControl = RegisterLayout("Error Capabilities and Control", offset: 0x14, width: 4, [
        .init("First Error Pointer", 5, 0, .ro),
        .init("Multiple Header Recording Capability", bit: 9, .hwInit),
        .init("Poison Enabled", bit: 13, .rws),
    ])
    public static let layout = RegisterBlockLayout(CacheMemCapabilityID.ras.name,
        [uncorrectableStatus, uncorrectableMask, uncorrectableSeverity, correctableStatus, correctableMask, errorCapabilityControl]
        + (0..<16).map { RegisterLayout("Header Log \($0)", offset: 0x18 + 4 * $0, width: 4, [.init("Header Log", 31, 0, .ro)]) })
}

/// CXL Link Capability Structure, CXL.cachemem capability 4 (§8.2.4.19).
public enum LinkCapability {
    public static let length = 0x38
    public static let layout = RegisterBlockLayout(CacheMemCapabilityID.link.name, [
        RegisterLayout("CXL Link Layer Capability", offset: 0x00, width: 8, [
            .init("CXL Link Version Supported", 3, 0, .hwInit), .init("CXL Link Version Received", 7, 4, .ro),
            .init("LLR Wrap Value Supported", 15, 8, .hwInit), .init("LLR Wrap Value Received", 23, 16, .ro),
            .init("NUM_Retry Received", 28, 24, .ro), .init("NUM_Phy_Reinit Received", 33, 29, .ro),
            .init("Wr_Ptr Received", 41, 34, .ro), .init("Echo_Eseq Received", 49, 42, .ro),
            .init("Num_Free_Buf Received", 57, 50, .ro),
        ]),
        RegisterLayout("CXL Link Layer Control and Status", offset: 0x08, width: 8, [
            .init("LL_Reset", bit: 0, .rw), .init("LL_Init_Stall", bit: 1, .rws), .init("LL_Crd_Stall", bit: 2, .rws),
            .init("INIT_State", 4, 3, .ro), .init("LL_Retry_Buffer_Consumed", 12, 5, .ro),
        ]),
        RegisterLayout("CXL Link Layer Rx Credit Control", offset: 0x10, width: 8, [.init("Rx Credit Control", 63, 0, .rws)]),
        RegisterLayout("CXL Link Layer Rx Credit Return Status", offset: 0x18, width: 8, [.init("Rx Credit Return Status", 63, 0, .ro)]),
        RegisterLayout("CXL Link Layer Tx Credit Status", offset: 0x20, width: 8, [.init("Tx Credit Status", 63, 0, .ro)]),
        RegisterLayout("CXL Link Layer Ack Timer Control", offset: 0x28, width: 8, [
            .init("Ack_Force_Threshold", 7, 0, .rws, reset: 0x10), .init("Ack_Flush_Retimer", 17, 8, .rws, reset: 0x20),
        ]),
        RegisterLayout("CXL Link Layer Defeature", offset: 0x30, width: 8, [.init("MDH Disable", bit: 0, .rws)]),
    ])
}
