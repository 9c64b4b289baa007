// PCI configuration header, type 0 (endpoints) and type 1 (bridges).
// PCI Local Bus 3.0 §6.2 and PCI Express Base 6.0 §7.5.1.

public enum PCIHeader {
    public static let vendorID = RegisterLayout("Vendor ID", offset: 0x00, width: 2, [.init("Vendor ID", 15, 0, .ro)])
    public static let deviceID = RegisterLayout("Device ID", offset: 0x02, width: 2, [.init("Device ID", 15, 0, .ro)])

    /// Command register (PCIe 6.0 §7.5.1.1.3). Bits cleared by FLR and conventional reset.
    public static let command = RegisterLayout("Command", offset: 0x04, width: 2, [
        Command.ioSpaceEnable,
        Command.memorySpaceEnable,
        Command.busMasterEnable,
        Command.specialCycleEnable,
        Command.memoryWriteAndInvalidate,
        Command.vgaPaletteSnoop,
        Command.parityErrorResponse,
        Command.idselStepping,
        Command.serrEnable,
        Command.fastBackToBackEnable,
        Command.interruptDisable,
    ])

    /// Command fields as typed handles.
    public enum Command {
        public static let ioSpaceEnable = RegisterField("I/O Space Enable", bit: 0, .rw)
        public static let memorySpaceEnable = RegisterField("Memory Space Enable", bit: 1, .rw)
        public static let busMasterEnable = RegisterField("Bus Master Enable", bit: 2, .rw)
        public static let specialCycleEnable = RegisterField("Special Cycle Enable", bit: 3, .ro)
        public static let memoryWriteAndInvalidate = RegisterField("Memory Write and Invalidate", bit: 4, .ro)
        public static let vgaPaletteSnoop = RegisterField("VGA Palette Snoop", bit: 5, .ro)
        public static let parityErrorResponse = RegisterField("Parity Error Response", bit: 6, .rw)
        public static let idselStepping = RegisterField("IDSEL Stepping", bit: 7, .ro)
        public static let serrEnable = RegisterField("SERR# Enable", bit: 8, .rw)
        public static let fastBackToBackEnable = RegisterField("Fast Back-to-Back Enable", bit: 9, .ro)
        public static let interruptDisable = RegisterField("Interrupt Disable", bit: 10, .rw)
    }

    /// Status register (PCIe 6.0 §7.5.1.1.4).
    public static let status = RegisterLayout("Status", offset: 0x06, width: 2, [
        .init("Immediate Readiness", bit: 0, .ro),
        Status.interruptStatus,
        Status.capabilitiesList,
        Status.capable66MHz,
        Status.userDefinableFeatures,
        Status.fastBackToBackCapable,
        Status.masterDataParityError,
        Status.devselTiming,
        Status.signaledTargetAbort,
        Status.receivedTargetAbort,
        Status.receivedMasterAbort,
        Status.signaledSystemError,
        Status.detectedParityError,
    ])

    /// Status fields as typed handles. Secondary Status (type 1, 0x1E) has the same bits from 5 up, bit 14
    /// being Received System Error there.
    public enum Status {
        public static let interruptStatus = RegisterField("Interrupt Status", bit: 3, .ro)
        public static let capabilitiesList = RegisterField("Capabilities List", bit: 4, .ro)
        public static let capable66MHz = RegisterField("66 MHz Capable", bit: 5, .ro)
        /// PCI 2.1's UDF; reserved since PCI 2.2 (lspci still prints it).
        public static let userDefinableFeatures = RegisterField("User Definable Features", bit: 6, .ro, "PCI 2.1; reserved since 2.2")
        public static let fastBackToBackCapable = RegisterField("Fast Back-to-Back Capable", bit: 7, .ro)
        public static let masterDataParityError = RegisterField("Master Data Parity Error", bit: 8, .rw1c)
        public static let devselTiming = RegisterField("DEVSEL Timing", 10, 9, .ro, values: [0: "fast", 1: "medium", 2: "slow"])
        public static let signaledTargetAbort = RegisterField("Signaled Target Abort", bit: 11, .rw1c)
        public static let receivedTargetAbort = RegisterField("Received Target Abort", bit: 12, .rw1c)
        public static let receivedMasterAbort = RegisterField("Received Master Abort", bit: 13, .rw1c)
        public static let signaledSystemError = RegisterField("Signaled System Error", bit: 14, .rw1c)
        public static let detectedParityError = RegisterField("Detected Parity Error", bit: 15, .rw1c)
    }

    public static let revisionID = RegisterLayout("Revision ID", offset: 0x08, width: 1, [.init("Revision ID", 7, 0, .ro)])
    public static let programmingInterface = RegisterLayout("Programming Interface", offset: 0x09, width: 1, [.init("Programming Interface", 7, 0, .ro)])
    public static let subClass = RegisterLayout("Sub Class Code", offset: 0x0A, width: 1, [.init("Sub Class Code", 7, 0, .ro)])
    public static let baseClass = RegisterLayout("Base Class Code", offset: 0x0B, width: 1, [.init("Base Class Code", 7, 0, .ro)])
    public static let cacheLineSize = RegisterLayout("Cache Line Size", offset: 0x0C, width: 1, [.init("Cache Line Size", 7, 0, .rw)])
    public static let latencyTimer = RegisterLayout("Latency Timer", offset: 0x0D, width: 1, [.init("Latency Timer", 7, 0, .ro)])
    public static let headerType = RegisterLayout("Header Type", offset: 0x0E, width: 1, [HeaderType.layout, HeaderType.multiFunction])

    /// Header Type fields as typed handles (PCIe 6.0 §7.5.1.1.9).
    public enum HeaderType {
        public static let layout = RegisterField("Header Layout", 6, 0, .ro, values: [0: "Type 0", 1: "Type 1", 2: "Type 2"])
        public static let multiFunction = RegisterField("Multi-Function Device", bit: 7, .ro)
        /// Header Layout of a CardBus bridge, which keeps its Capabilities Pointer at 0x14 (PCI 3.0 §6.2.1).
        public static let cardBus: UInt64 = 2
    }
    /// A CardBus bridge's (Type 2 header's) Capabilities Pointer.
    public static let cardBusCapabilitiesPointer = RegisterLayout("Capabilities Pointer", offset: 0x14, width: 1, [.init("Capabilities Pointer", 7, 0, .ro)])
    public static let bist = RegisterLayout("BIST", offset: 0x0F, width: 1, [BIST.completionCode, BIST.startBIST, BIST.bistCapable])
    /// BIST fields as typed handles (PCIe 6.0 §7.5.1.1.11).
    public enum BIST {
        public static let completionCode = RegisterField("Completion Code", 3, 0, .ro)
        public static let startBIST = RegisterField("Start BIST", bit: 6, .rw)
        public static let bistCapable = RegisterField("BIST Capable", bit: 7, .ro)
    }

    /// A Base Address Register (PCIe 6.0 §7.5.1.2.1). Which Base Address bits are
    /// writable depends on the BAR's size (sizing returns the size mask), so the
    /// emulator narrows `Base Address` to the implemented bits.
    public static func bar(_ index: Int, offset: Int? = nil) -> RegisterLayout {
        RegisterLayout("Base Address Register \(index)", offset: offset ?? (0x10 + 4 * index), width: 4, [
            BAR.memorySpaceIndicator, BAR.memoryType, BAR.prefetchable, BAR.baseAddress,
        ])
    }

    /// Base Address Register fields as typed handles (PCIe 6.0 §7.5.1.2.1).
    public enum BAR {
        public static let memorySpaceIndicator = RegisterField("Memory Space Indicator", bit: 0, .ro, "0 = memory, 1 = I/O")
        public static let memoryType = RegisterField("Memory Type", 2, 1, .ro, values: [0: "32-bit", 2: "64-bit"])
        /// Memory Type's 64-bit encoding.
        public static let memoryType64Bit: UInt64 = 2
        public static let prefetchable = RegisterField("Prefetchable", bit: 3, .ro)
        public static let baseAddress = RegisterField("Base Address", 31, 4, .rw)
        /// The base address bits of a memory BAR (31:4) and of an I/O BAR (31:2).
        public static let memoryBaseMask: UInt64 = baseAddress.mask
        public static let ioBaseMask: UInt64 = 0xFFFF_FFFC
        /// The sizing mask a BAR of `size` bytes answers with in its low DWORD (its
        /// writable base bits) and, for a 64-bit BAR, in the high DWORD.
        public static func sizingMask(size: UInt64, io: Bool = false) -> (low: UInt64, high: UInt64) {
            let m = ~(size &- 1)
            return (UInt64(UInt32(truncatingIfNeeded: m)) & (io ? ioBaseMask : memoryBaseMask), UInt64(UInt32(truncatingIfNeeded: m >> 32)))
        }
    }

    public static let cardbusCISPointer = RegisterLayout("Cardbus CIS Pointer", offset: 0x28, width: 4, [.init("Cardbus CIS Pointer", 31, 0, .ro)])
    public static let subsystemVendorID = RegisterLayout("Subsystem Vendor ID", offset: 0x2C, width: 2, [.init("Subsystem Vendor ID", 15, 0, .hwInit)])
    public static let subsystemID = RegisterLayout("Subsystem ID", offset: 0x2E, width: 2, [.init("Subsystem ID", 15, 0, .hwInit)])
    /// Where a type 0 header keeps its Expansion ROM Base Address (a type 1 header: 0x38).
    public static let type0ExpansionROMOffset = 0x30
    /// Where a type 1 header keeps it.
    public static let type1ExpansionROMOffset = 0x38
    public static func expansionROM(offset: Int) -> RegisterLayout {
        RegisterLayout("Expansion ROM Base Address", offset: offset, width: 4, [ExpansionROM.enable, ExpansionROM.baseAddress])
    }
    /// Expansion ROM Base Address fields as typed handles (PCIe 6.0 §7.5.1.2.4).
    public enum ExpansionROM {
        public static let enable = RegisterField("Expansion ROM Enable", bit: 0, .rw)
        public static let baseAddress = RegisterField("Expansion ROM Base Address", 31, 11, .rw)
    }
    public static let capabilitiesPointer = RegisterLayout("Capabilities Pointer", offset: 0x34, width: 1, [.init("Capabilities Pointer", 7, 0, .ro)])
    public static let interruptLine = RegisterLayout("Interrupt Line", offset: 0x3C, width: 1, [.init("Interrupt Line", 7, 0, .rw)])
    public static let interruptPin = RegisterLayout("Interrupt Pin", offset: 0x3D, width: 1, [
        .init("Interrupt Pin", 7, 0, .ro, values: [0: "none", 1: "INTA", 2: "INTB", 3: "INTC", 4: "INTD"]),
    ])

    static let common: [RegisterLayout] = [
        vendorID, deviceID, command, status, revisionID, programmingInterface, subClass, baseClass,
        cacheLineSize, latencyTimer, headerType, bist,
    ]

    /// Type 0 header (endpoints).
    public static let type0 = RegisterBlockLayout("Type 0 Configuration Space Header", common + (0..<6).map { bar($0) } + [
        cardbusCISPointer, subsystemVendorID, subsystemID, expansionROM(offset: type0ExpansionROMOffset), capabilitiesPointer,
        interruptLine, interruptPin,
        minGnt, maxLat,
    ])
    public static let minGnt = RegisterLayout("Min_Gnt", offset: 0x3E, width: 1, [.init("Min_Gnt", 7, 0, .ro)])
    public static let maxLat = RegisterLayout("Max_Lat", offset: 0x3F, width: 1, [.init("Max_Lat", 7, 0, .ro)])

    /// Bridge Control (PCIe 6.0 §7.5.1.3.13); Secondary Bus Reset is bit 6.
    public static let bridgeControl = RegisterLayout("Bridge Control", offset: 0x3E, width: 2, BridgeControl.flags)
    /// Bridge Control fields in bit order: PCIe 6.0 §7.5.1.3.13 names bits 0-7; bits 8-11 are the PCI-to-PCI
    /// Bridge Architecture 1.2 §3.2.5.18 discard timer bits, RO 0 on PCI Express (lspci still prints them).
    public enum BridgeControl {
        public static let flags = [
            RegisterField("Parity Error Response Enable", bit: 0, .rw), RegisterField("SERR# Enable", bit: 1, .rw),
            RegisterField("ISA Enable", bit: 2, .rw), RegisterField("VGA Enable", bit: 3, .rw),
            RegisterField("VGA 16-bit Decode", bit: 4, .rw), RegisterField("Master Abort Mode", bit: 5, .ro),
            RegisterField("Secondary Bus Reset", bit: 6, .rw), RegisterField("Fast Back-to-Back Transactions Enable", bit: 7, .ro),
            RegisterField("Primary Discard Timeout", bit: 8, .ro), RegisterField("Secondary Discard Timeout", bit: 9, .ro),
            RegisterField("Discard Timer Status", bit: 10, .ro), RegisterField("Discard Timer SERR# Enable", bit: 11, .ro),
        ]
    }

    /// Type 1 header (bridges, root ports, switch ports).
    public static let type1 = RegisterBlockLayout("Type 1 Configuration Space Header", common + [
        bar(0), bar(1),
        Type1.primaryBusNumber, Type1.secondaryBusNumber, Type1.subordinateBusNumber, Type1.secondaryLatencyTimer,
        Type1.ioBase, Type1.ioLimit, Type1.secondaryStatus,
        Type1.memoryBase, Type1.memoryLimit, Type1.prefetchableMemoryBase, Type1.prefetchableMemoryLimit,
        Type1.prefetchableBaseUpper32Bits, Type1.prefetchableLimitUpper32Bits, Type1.ioBaseUpper16Bits, Type1.ioLimitUpper16Bits,
        capabilitiesPointer,
        expansionROM(offset: type1ExpansionROMOffset),
        interruptLine, interruptPin, bridgeControl,
    ])

    /// The type 1 header's own registers (PCIe 6.0 §7.5.1.3).
    public enum Type1 {
        public static let primaryBusNumber = RegisterLayout("Primary Bus Number", offset: 0x18, width: 1, [.init("Primary Bus Number", 7, 0, .rw)])
        public static let secondaryBusNumber = RegisterLayout("Secondary Bus Number", offset: 0x19, width: 1, [.init("Secondary Bus Number", 7, 0, .rw)])
        public static let subordinateBusNumber = RegisterLayout("Subordinate Bus Number", offset: 0x1A, width: 1, [.init("Subordinate Bus Number", 7, 0, .rw)])
        public static let secondaryLatencyTimer = RegisterLayout("Secondary Latency Timer", offset: 0x1B, width: 1, [.init("Secondary Latency Timer", 7, 0, .ro)])
        /// The window registers' low nibble: 0 for the narrow (16-bit I/O, 32-bit memory) form, 1 for the wide one.
        public static let ioAddressingCapability = RegisterField("I/O Addressing Capability", 3, 0, .ro)
        public static let narrowAddressing: UInt64 = 0
        public static let wideAddressing: UInt64 = 1
        public static let ioBase = RegisterLayout("I/O Base", offset: 0x1C, width: 1, [ioAddressingCapability, .init("I/O Base", 7, 4, .rw)])
        public static let ioLimit = RegisterLayout("I/O Limit", offset: 0x1D, width: 1, [ioAddressingCapability, .init("I/O Limit", 7, 4, .rw)])
        /// Secondary Status: Status's bits from 5 up, bit 14 Received System Error (§7.5.1.3.7).
        public static let secondaryStatus = RegisterLayout("Secondary Status", offset: 0x1E, width: 2, [
            Status.capable66MHz, Status.fastBackToBackCapable, Status.masterDataParityError, .init("DEVSEL Timing", 10, 9, .ro),
            Status.signaledTargetAbort, Status.receivedTargetAbort, Status.receivedMasterAbort, receivedSystemError,
            Status.detectedParityError,
        ])
        public static let receivedSystemError = RegisterField("Received System Error", bit: 14, .rw1c)
        /// Memory Base and Limit bits 3:0 are reserved (read 0): lspci reads them as the window's type all the same.
        public static let memoryBase = RegisterLayout("Memory Base", offset: 0x20, width: 2, [.init("Memory Base", 15, 4, .rw)])
        public static let memoryLimit = RegisterLayout("Memory Limit", offset: 0x22, width: 2, [.init("Memory Limit", 15, 4, .rw)])
        public static let prefetchableAddressingCapability = RegisterField("Addressing Capability", 3, 0, .ro, values: [0: "32-bit", 1: "64-bit"])
        public static let prefetchableMemoryBase = RegisterLayout("Prefetchable Memory Base", offset: 0x24, width: 2, [
            prefetchableAddressingCapability, .init("Prefetchable Memory Base", 15, 4, .rw),
        ])
        public static let prefetchableMemoryLimit = RegisterLayout("Prefetchable Memory Limit", offset: 0x26, width: 2, [
            prefetchableAddressingCapability, .init("Prefetchable Memory Limit", 15, 4, .rw),
        ])
        public static let prefetchableBaseUpper32Bits = RegisterLayout("Prefetchable Base Upper 32 Bits", offset: 0x28, width: 4, [
            .init("Prefetchable Base Upper 32 Bits", 31, 0, .rw),
        ])
        public static let prefetchableLimitUpper32Bits = RegisterLayout("Prefetchable Limit Upper 32 Bits", offset: 0x2C, width: 4, [
            .init("Prefetchable Limit Upper 32 Bits", 31, 0, .rw),
        ])
        public static let ioBaseUpper16Bits = RegisterLayout("I/O Base Upper 16 Bits", offset: 0x30, width: 2, [.init("I/O Base Upper 16 Bits", 15, 0, .rw)])
        public static let ioLimitUpper16Bits = RegisterLayout("I/O Limit Upper 16 Bits", offset: 0x32, width: 2, [.init("I/O Limit Upper 16 Bits", 15, 0, .rw)])
    }

    /// The header layout for a header type value (low 7 bits of 0x0E).
    public static func layout(forHeaderType type: UInt8) -> RegisterBlockLayout? {
        switch type & 0x7F {
        case 0: return type0
        case 1: return type1
        default: return nil
        }
    }
}
