import PCI

// CXL DVSECs in configuration space (CXL 3.1 §8.1). Offsets are from the DVSEC's
// extended capability header, as the spec's tables give them.

/// The PCI-SIG vendor ID assigned to the CXL Consortium, used in DVSEC Header 1.
public let cxlDVSECVendorID: UInt16 = 0x1E98

/// CXL DVSEC IDs (CXL 3.1 Table 8-2).
public enum CXLDVSECID: UInt16, Sendable, CaseIterable, Codable {
    case device = 0x0
    case nonCXLFunctionMap = 0x2
    case portExtensions = 0x3
    case gpfPort = 0x4
    case gpfDevice = 0x5
    case flexBusPort = 0x7
    case registerLocator = 0x8
    case mld = 0x9
    case testCapability = 0xA

    public var name: String {
        switch self {
        case .device: return "PCIe DVSEC for CXL Devices"
        case .nonCXLFunctionMap: return "Non-CXL Function Map DVSEC"
        case .portExtensions: return "CXL Extensions DVSEC for Ports"
        case .gpfPort: return "GPF DVSEC for CXL Ports"
        case .gpfDevice: return "GPF DVSEC for CXL Devices"
        case .flexBusPort: return "PCIe DVSEC for Flex Bus Port"
        case .registerLocator: return "Register Locator DVSEC"
        case .mld: return "MLD DVSEC"
        case .testCapability: return "PCIe DVSEC for Test Capability"
        }
    }
}

/// PCIe DVSEC for CXL Devices, DVSEC ID 0 (CXL 3.1 §8.1.3).
///
/// Revision 1 (CXL 2.0) is 0x38 bytes long; revision 2 (CXL 3.0) adds Capability3
/// at 0x38 and is 0x3C bytes long.
public enum CXLDeviceDVSEC {
    /// Reset timeout encodings of Capability [10:8] (§8.1.3.1), in milliseconds.
    public static let resetTimeoutMilliseconds: [UInt64: UInt64] = [0: 10, 1: 100, 2: 1_000, 3: 10_000, 4: 100_000]

    /// DVSEC CXL Capability (§8.1.3.1). HwInit: set by the device or its firmware.
    public static let cacheCapable = RegisterField("Cache_Capable", bit: 0, .hwInit)
    public static let memCapable = RegisterField("Mem_Capable", bit: 2, .hwInit)
    public static let hdmCount = RegisterField("HDM_Count", 5, 4, .hwInit, values: [0: "0", 1: "1", 2: "2"])
    public static let writebackInvalidateCapable = RegisterField("Cache Writeback and Invalidate Capable", bit: 6, .hwInit)
    public static let cxlResetCapable = RegisterField("CXL Reset Capable", bit: 7, .hwInit)
    public static let cxlResetTimeout = RegisterField("CXL Reset Timeout", 10, 8, .hwInit, values: [0: "10 ms", 1: "100 ms", 2: "1 s", 3: "10 s", 4: "100 s"])
    public static let memClearCapable = RegisterField("CXL Reset Mem Clr Capable", bit: 11, .hwInit)
    /// Control Mem_Enable (§8.1.3.2).
    public static let memEnable = RegisterField("Mem_Enable", bit: 2, .rwl)
    /// Control fields as typed handles (§8.1.3.2).
    public enum Control {
        public static let cacheEnable = RegisterField("Cache_Enable", bit: 0, .rwl)
        public static let memEnable = CXLDeviceDVSEC.memEnable
    }
    public static let capability = RegisterLayout("DVSEC CXL Capability", offset: 0x0A, width: 2, [
        cacheCapable,
        .init("IO_Capable", bit: 1, .hwInit, reset: 1),
        memCapable,
        .init("Mem_HwInit_Mode", bit: 3, .hwInit),
        hdmCount, writebackInvalidateCapable,
        cxlResetCapable,
        cxlResetTimeout,
        memClearCapable,
        .init("TSP Capable", bit: 12, .hwInit),
        .init("Multiple Logical Device", bit: 13, .hwInit),
        .init("Viral_Capable", bit: 14, .hwInit),
        .init("PM Init Completion Reporting Capable", bit: 15, .hwInit),
    ])

    /// DVSEC CXL Control (§8.1.3.2). RWL fields freeze when CONFIG_LOCK is set.
    public static let control = RegisterLayout("DVSEC CXL Control", offset: 0x0C, width: 2, [
        Control.cacheEnable,
        .init("IO_Enable", bit: 1, .ro, reset: 1, "hard-wired to 1"),
        memEnable,
        .init("Cache_SF_Coverage", 7, 3, .rwl),
        .init("Cache_SF_Granularity", 10, 8, .rwl, values: [0: "64B", 1: "128B", 2: "256B", 3: "512B", 4: "1KB", 5: "2KB", 6: "4KB"]),
        .init("Cache_Clean_Eviction", bit: 11, .rwl),
        .init("Direct P2P Mem Enable", bit: 12, .rwl),
        .init("Viral_Enable", bit: 14, .rwl),
    ])

    /// DVSEC CXL Status (§8.1.3.3).
    public static let status = RegisterLayout("DVSEC CXL Status", offset: 0x0E, width: 2, [
        .init("Viral_Status", bit: 14, .rw1cs),
    ])

    /// DVSEC CXL Control2 (§8.1.3.4). Not covered by CONFIG_LOCK. Bits 1 and 2 are
    /// doorbells: a write of 1 starts the action and the bit reads 0.
    public static let control2 = RegisterLayout("DVSEC CXL Control2", offset: 0x10, width: 2, [
        Control2.disableCaching, Control2.initiateWritebackInvalidate, Control2.initiateCXLReset, Control2.memClearEnable,
        Control2.desiredVolatileHDMStateAfterHotReset,
        .init("Modified Completion Enable", bit: 5, .rw),
    ])

    /// Control2's fields as typed handles (§8.1.3.4).
    public enum Control2 {
        public static let disableCaching = RegisterField("Disable Caching", bit: 0, .rw)
        public static let initiateWritebackInvalidate = RegisterField("Initiate Cache Write Back and Invalidation", bit: 1, .rw, "doorbell; reads 0")
        public static let initiateCXLReset = RegisterField("Initiate CXL Reset", bit: 2, .rw, "doorbell; reads 0")
        public static let memClearEnable = RegisterField("CXL Reset Mem Clr Enable", bit: 3, .rw)
        public static let desiredVolatileHDMStateAfterHotReset = RegisterField("Desired Volatile HDM State after Hot Reset", bit: 4, .rws)
    }

    /// Doorbell bits of Control2: written 1 to start an action, always read 0.
    public static let control2Doorbells: UInt64 = Control2.initiateWritebackInvalidate.mask | Control2.initiateCXLReset.mask

    /// DVSEC CXL Status2 (§8.1.3.5).
    public static let status2 = RegisterLayout("DVSEC CXL Status2", offset: 0x12, width: 2, [
        Status2.cacheInvalid, Status2.resetComplete, Status2.resetError, Status2.volatileHDMPreservationError,
        Status2.pmInitializationComplete,
    ])

    /// Status2's fields as typed handles (§8.1.3.5).
    public enum Status2 {
        public static let cacheInvalid = RegisterField("Cache Invalid", bit: 0, .ro)
        public static let resetComplete = RegisterField("CXL Reset Complete", bit: 1, .ro)
        public static let resetError = RegisterField("CXL Reset Error", bit: 2, .ro)
        public static let volatileHDMPreservationError = RegisterField("Volatile HDM Preservation Error", bit: 3, .rw1cs)
        public static let pmInitializationComplete = RegisterField("Power Management Initialization Complete", bit: 15, .ro)
    }

    /// DVSEC CXL Lock (§8.1.3.6). CONFIG_LOCK is write-once and cleared only by a
    /// conventional reset; a CXL Reset leaves it set.
    public static let configLock = RegisterField("CONFIG_LOCK", bit: 0, .rwo)
    public static let lock = RegisterLayout("DVSEC CXL Lock", offset: 0x14, width: 2, [configLock])

    /// DVSEC CXL Capability2 (§8.1.3.7).
    public static let capability2 = RegisterLayout("DVSEC CXL Capability2", offset: 0x16, width: 2, [
        .init("Cache Size Unit", 3, 0, .hwInit, values: [0: "not reported", 1: "64 KB", 2: "1 MB"]),
        .init("Fallback Capability", 5, 4, .hwInit),
        .init("Modified Completion Capable", bit: 6, .hwInit),
        .init("No Clean Writeback", bit: 7, .hwInit),
        .init("Cache Size", 15, 8, .hwInit),
    ])

    public static let mediaTypes: [UInt64: String] = [0: "Volatile", 1: "Non-volatile", 2: "CDAT"]
    public static let memoryClasses: [UInt64: String] = [0: "DRAM", 1: "Storage", 2: "CDAT"]
    /// Desired_Interleave encodings in bytes (§8.1.3.8.2); 0 = no interleave.
    public static let desiredInterleaveBytes: [UInt64: UInt64] = [0: 0, 1: 256, 2: 4096, 3: 512, 4: 1024, 5: 2048, 6: 8192, 7: 16384]

    /// Range Size Low / Base Low address bits 31:28 (§8.1.3.8): the 256 MB granule.
    public static let rangeSizeLow = RegisterField("Memory_Size_Low", 31, 28, .hwInit)
    public static let rangeBaseLow = RegisterField("Memory_Base_Low", 31, 28, .rwl)

    /// Range n (1 or 2) Size High, Size Low, Base High, Base Low (§8.1.3.8).
    public static func rangeRegisters(_ n: Int) -> (sizeHigh: RegisterLayout, sizeLow: RegisterLayout, baseHigh: RegisterLayout, baseLow: RegisterLayout) {
        precondition(n == 1 || n == 2)
        let base = 0x18 + 0x10 * (n - 1)
        return (
            RegisterLayout("DVSEC CXL Range \(n) Size High", offset: base, width: 4, [
                .init("Memory_Size_High", 31, 0, .hwInit),
            ]),
            RegisterLayout("DVSEC CXL Range \(n) Size Low", offset: base + 4, width: 4, [
                .init("Memory_Info_Valid", bit: 0, .ro),
                .init("Memory_Active", bit: 1, .ro),
                .init("Media_Type", 4, 2, .hwInit, values: mediaTypes),
                .init("Memory_Class", 7, 5, .hwInit, values: memoryClasses),
                .init("Desired_Interleave", 12, 8, .hwInit, values: [0: "none", 1: "256 B", 2: "4 KB", 3: "512 B", 4: "1 KB", 5: "2 KB", 6: "8 KB", 7: "16 KB"]),
                .init("Memory_Active_Timeout", 15, 13, .hwInit, values: [0: "1 s", 1: "4 s", 2: "16 s", 3: "64 s", 4: "256 s"]),
                .init("Memory_Active_Degraded", bit: 16, .ro),
                rangeSizeLow,
            ]),
            RegisterLayout("DVSEC CXL Range \(n) Base High", offset: base + 8, width: 4, [
                .init("Memory_Base_High", 31, 0, .rwl),
            ]),
            RegisterLayout("DVSEC CXL Range \(n) Base Low", offset: base + 12, width: 4, [
                rangeBaseLow,
            ])
        )
    }

    /// DVSEC CXL Capability3 (§8.1.3.9; revision 2 and later).
    public static let capability3 = RegisterLayout("DVSEC CXL Capability3", offset: 0x38, width: 2, [
        .init("Default Volatile HDM State after Cold Reset", bit: 0, .hwInit),
        .init("Default Volatile HDM State after Warm Reset", bit: 1, .hwInit),
        .init("Default Volatile HDM State after Hot Reset", bit: 2, .hwInit),
        .init("Volatile HDM State after Hot Reset - Configurability", bit: 3, .hwInit),
        .init("Direct P2P Mem Capable", bit: 4, .hwInit),
    ])

    public static let range1 = rangeRegisters(1)
    public static let range2 = rangeRegisters(2)

    /// Length of the structure for a revision (§8.1.3): 0x38 before revision 2.
    public static func length(revision: UInt8) -> Int { revision >= 2 ? 0x3C : 0x38 }

    /// The structure for a revision, headers included.
    public static func layout(revision: UInt8) -> RegisterBlockLayout {
        var regs = DVSECHeader.registers + [capability, control, status, control2, status2, lock, capability2]
        for r in [range1, range2] { regs += [r.sizeHigh, r.sizeLow, r.baseHigh, r.baseLow] }
        if revision >= 2 { regs.append(capability3) }
        return RegisterBlockLayout(CXLDVSECID.device.name, regs)
    }
}

/// Register Locator DVSEC, DVSEC ID 8 (CXL 3.1 §8.1.9): where each register block
/// lives, as (BAR, offset) pairs.
public enum RegisterLocatorDVSEC {
    /// Register Block Identifier values (§8.1.9.1).
    public enum BlockIdentifier: UInt8, Sendable, Codable, CaseIterable {
        case empty = 0x00
        case componentRegisters = 0x01
        case barVirtualizationACL = 0x02
        case memoryDeviceRegisters = 0x03
        case cpmuRegisters = 0x04
        case vendorSpecific = 0xFF

        public var name: String {
            switch self {
            case .empty: return "empty"
            case .componentRegisters: return "component registers"
            case .barVirtualizationACL: return "BAR virtualization"
            case .memoryDeviceRegisters: return "CXL device registers"
            case .cpmuRegisters: return "CPMU registers"
            case .vendorSpecific: return "vendor-specific"
            }
        }
    }

    /// First entry at 0x0C; each entry is 8 bytes.
    public static let firstEntryOffset = 0x0C
    public static let entrySize = 8

    public static let offsetLow = RegisterLayout("Register Offset Low", offset: 0x00, width: 4, [
        registerBIR, blockIdentifier, blockOffsetLow,
    ])
    public static let registerBIR = RegisterField("Register BIR", 2, 0, .hwInit, values: [0: "BAR 10h", 1: "BAR 14h", 2: "BAR 18h", 3: "BAR 1Ch", 4: "BAR 20h", 5: "BAR 24h"])
    public static let blockIdentifier = RegisterField("Register Block Identifier", 15, 8, .hwInit)
    public static let blockOffsetLow = RegisterField("Register Block Offset Low", 31, 16, .hwInit, "offset bits 31:16 in place (64 KiB aligned)")
    public static let offsetHigh = RegisterLayout("Register Offset High", offset: 0x04, width: 4, [
        .init("Register Block Offset High", 31, 0, .hwInit),
    ])

    /// Number of entries a DVSEC of `length` bytes holds.
    public static func entryCount(length: Int) -> Int { max(0, (length - firstEntryOffset) / entrySize) }

    public static func layout(entries: Int) -> RegisterBlockLayout {
        var regs = DVSECHeader.registers + [RegisterLayout("Reserved", offset: 0x0A, width: 2)]
        for i in 0..<entries {
            let base = firstEntryOffset + entrySize * i
            regs.append(offsetLow.at(offset: base, name: "Register Block \(i + 1) Offset Low"))
            regs.append(offsetHigh.at(offset: base + 4, name: "Register Block \(i + 1) Offset High"))
        }
        return RegisterBlockLayout(CXLDVSECID.registerLocator.name, regs)
    }
}

/// Non-CXL Function Map DVSEC, ID 2 (§8.1.4): eight 32-bit function bitmaps.
public enum NonCXLFunctionMapDVSEC {
    public static let length = 0x2C
    public static let layout = RegisterBlockLayout(CXLDVSECID.nonCXLFunctionMap.name,
        DVSECHeader.registers + [RegisterLayout("Reserved", offset: 0x0A, width: 2)] + (0..<8).map {
            RegisterLayout("Non-CXL Function Map Register \($0)", offset: 0x0C + 4 * $0, width: 4, [
                .init("Non CXL Function", 31, 0, .hwInit),
            ])
        })
}

/// CXL Extensions DVSEC for Ports, ID 3 (§8.1.5).
public enum PortExtensionsDVSEC {
    public static let length = 0x28
    public static let status = RegisterLayout("CXL Port Extension Status", offset: 0x0A, width: 2, [
        .init("Port Power Management Initialization Complete", bit: 0, .ro),
        .init("Viral Status", bit: 14, .rw1cs),
    ])
    /// Port Control Extensions: CXL ports ignore SBR and Link Disable unless unmasked.
    public static let control = RegisterLayout("Port Control Extensions", offset: 0x0C, width: 2, [
        .init("Unmask SBR", bit: 0, .rw),
        .init("Unmask Link Disable", bit: 1, .rw),
        .init("Alt Memory and ID Space Enable", bit: 2, .rw),
        .init("Alt BME", bit: 3, .rw),
        .init("Viral Enable", bit: 14, .rw),
    ])
    public static let layout = RegisterBlockLayout(CXLDVSECID.portExtensions.name, DVSECHeader.registers + [
        status, control,
        RegisterLayout("Alternate Bus Base", offset: 0x0E, width: 1, [.init("Alt Bus Base", 7, 0, .rw)]),
        RegisterLayout("Alternate Bus Limit", offset: 0x0F, width: 1, [.init("Alt Bus Limit", 7, 0, .rw)]),
        RegisterLayout("Alternate Memory Base", offset: 0x10, width: 2, [.init("Alt Mem Base", 15, 4, .rw)]),
        RegisterLayout("Alternate Memory Limit", offset: 0x12, width: 2, [.init("Alt Mem Limit", 15, 4, .rw)]),
        RegisterLayout("Alternate Prefetchable Memory Base", offset: 0x14, width: 2, [.init("Alt Prefetch Mem Base", 15, 4, .rw)]),
        RegisterLayout("Alternate Prefetchable Memory Limit", offset: 0x16, width: 2, [.init("Alt Prefetch Mem Limit", 15, 4, .rw)]),
        RegisterLayout("Alternate Prefetchable Memory Base High", offset: 0x18, width: 4, [.init("Alt Prefetch Base High", 31, 0, .rw)]),
        RegisterLayout("Alternate Prefetchable Memory Limit High", offset: 0x1C, width: 4, [.init("Alt Prefetch Limit High", 31, 0, .rw)]),
        RegisterLayout("CXL RCRB Base", offset: 0x20, width: 4, [.init("CXL RCRB Enable", bit: 0, .rw), .init("CXL RCRB Base Address Low", 31, 13, .rw)]),
        RegisterLayout("CXL RCRB Base High", offset: 0x24, width: 4, [.init("CXL RCRB Base Address High", 31, 0, .rw)]),
    ])
}

/// GPF time fields: base [3:0], scale [11:8] (§8.1.6).
public let gpfTimeScales: [UInt64: String] = [0: "1 us", 1: "10 us", 2: "100 us", 3: "1 ms", 4: "10 ms", 5: "100 ms", 6: "1 s", 7: "10 s"]

/// GPF DVSEC for CXL Ports, ID 4 (§8.1.6).
public enum GPFPortDVSEC {
    public static let length = 0x10
    public static let layout = RegisterBlockLayout(CXLDVSECID.gpfPort.name, DVSECHeader.registers + [
        RegisterLayout("Reserved", offset: 0x0A, width: 2),
        RegisterLayout("GPF Phase 1 Control", offset: 0x0C, width: 2, [
            .init("Port GPF Phase 1 Timeout Base", 3, 0, .rw), .init("Port GPF Phase 1 Timeout Scale", 11, 8, .rw, values: gpfTimeScales),
        ]),
        RegisterLayout("GPF Phase 2 Control", offset: 0x0E, width: 2, [
            .init("Port GPF Phase 2 Timeout Base", 3, 0, .rw), .init("Port GPF Phase 2 Timeout Scale", 11, 8, .rw, values: gpfTimeScales),
        ]),
    ])
}

/// GPF DVSEC for CXL Devices, ID 5 (§8.1.7).
public enum GPFDeviceDVSEC {
    public static let length = 0x10
    public static let phase2Duration = RegisterLayout("GPF Phase 2 Duration", offset: 0x0A, width: 2, [
        .init("Device GPF Phase 2 Time Base", 3, 0, .hwInit), .init("Device GPF Phase 2 Time Scale", 11, 8, .hwInit, values: gpfTimeScales),
    ])
    public static let phase2Power = RegisterLayout("GPF Phase 2 Power", offset: 0x0C, width: 4, [
        .init("GPF Phase 2 active power", 31, 0, .hwInit, "milliwatts"),
    ])
    public static let layout = RegisterBlockLayout(CXLDVSECID.gpfDevice.name, DVSECHeader.registers + [phase2Duration, phase2Power])
}

/// PCIe DVSEC for Flex Bus Port, ID 7 (§8.2.1.3). Revision 0: 0x10 bytes, 1: 0x14, 2: 0x20.
public enum FlexBusPortDVSEC {
    public static func length(revision: UInt8) -> Int { revision >= 2 ? 0x20 : (revision == 1 ? 0x14 : 0x10) }

    private static func modeBits(_ access: RegisterAccess, control: Bool) -> [RegisterField] {
        var f: [RegisterField] = [
            .init("Cache", bit: 0, access), .init("IO", bit: 1, access), .init("Mem", bit: 2, access),
        ]
        if control {
            f += [.init("CXL Sync Hdr Bypass", bit: 3, access), .init("Drift Buffer", bit: 4, access)]
        }
        f += [.init("CXL 68B Flit and VH", bit: 5, access), .init("CXL Multi-Logical Device", bit: 6, access)]
        if control {
            f += [.init("Disable RCD Training", bit: 7, access), .init("Retimer1 Present", bit: 8, access), .init("Retimer2 Present", bit: 9, access)]
        }
        f += [.init("Latency Optimized 256B Flit", bit: 13, access), .init("PBR Flit", bit: 14, access)]
        return f
    }

    public static let capability = RegisterLayout("DVSEC Flex Bus Port Capability", offset: 0x0A, width: 2, modeBits(.hwInit, control: false))
    public static let control = RegisterLayout("DVSEC Flex Bus Port Control", offset: 0x0C, width: 2, modeBits(.rw, control: true))
    public static let status = RegisterLayout("DVSEC Flex Bus Port Status", offset: 0x0E, width: 2, modeBits(.ro, control: true))
    public static let receivedModifiedTS = RegisterLayout("DVSEC Flex Bus Port Received Modified TS Data Phase1", offset: 0x10, width: 4, [
        .init("Received Flex Bus Data Phase1", 23, 0, .ro),
    ])
    public static let capability2 = RegisterLayout("DVSEC Flex Bus Port Capability2", offset: 0x14, width: 4, [.init("NOP Hint Capable", bit: 0, .hwInit)])
    public static let control2 = RegisterLayout("DVSEC Flex Bus Port Control2", offset: 0x18, width: 4, [.init("NOP Hint Enable", bit: 0, .rw)])
    public static let status2 = RegisterLayout("DVSEC Flex Bus Port Status2", offset: 0x1C, width: 4, [.init("NOP Hint Info", 1, 0, .ro)])

    public static func layout(revision: UInt8) -> RegisterBlockLayout {
        var regs = DVSECHeader.registers + [capability, control, status]
        if revision >= 1 { regs.append(receivedModifiedTS) }
        if revision >= 2 { regs += [capability2, control2, status2] }
        return RegisterBlockLayout(CXLDVSECID.flexBusPort.name, regs)
    }
}

/// MLD DVSEC, ID 9 (§8.1.10).
public enum MLDDVSEC {
    public static let length = 0x10
    public static let layout = RegisterBlockLayout(CXLDVSECID.mld.name, DVSECHeader.registers + [
        RegisterLayout("Number of LD Supported", offset: 0x0A, width: 2, [.init("Number of LDs Supported", 15, 0, .hwInit)]),
        RegisterLayout("LD-ID Hot Reset Vector", offset: 0x0C, width: 2, [.init("LD-ID Hot Reset Vector", 15, 0, .rw)]),
    ])
}

/// PCIe DVSEC for Test Capability, ID 0xA (§14.16). Only the headers are decoded.
public enum TestCapabilityDVSEC {
    public static let layout = RegisterBlockLayout(CXLDVSECID.testCapability.name, DVSECHeader.registers)
}

extension CXLDVSECID {
    /// The catalog layout for a DVSEC of this ID, revision and length.
    public func layout(revision: UInt8, length: Int) -> RegisterBlockLayout {
        switch self {
        case .device: return CXLDeviceDVSEC.layout(revision: revision)
        case .nonCXLFunctionMap: return NonCXLFunctionMapDVSEC.layout
        case .portExtensions: return PortExtensionsDVSEC.layout
        case .gpfPort: return GPFPortDVSEC.layout
        case .gpfDevice: return GPFDeviceDVSEC.layout
        case .flexBusPort: return FlexBusPortDVSEC.layout(revision: revision)
        case .registerLocator: return RegisterLocatorDVSEC.layout(entries: RegisterLocatorDVSEC.entryCount(length: length))
        case .mld: return MLDDVSEC.layout
        case .testCapability: return TestCapabilityDVSEC.layout
        }
    }
}
