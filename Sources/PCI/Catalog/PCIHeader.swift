// PCI configuration header, type 0 (endpoints) and type 1 (bridges).
// PCI Local Bus 3.0 §6.2 and PCI Express Base 6.0 §7.5.1.

public enum PCIHeader {
    public static let vendorID = RegisterLayout("Vendor ID", offset: 0x00, width: 2, [.init("Vendor ID", 15, 0, .ro)])
    public static let deviceID = RegisterLayout("Device ID", offset: 0x02, width: 2, [.init("Device ID", 15, 0, .ro)])

    /// Command register (PCIe 6.0 §7.5.1.1.3). Bits cleared by FLR and conventional reset.
    public static let command = RegisterLayout("Command", offset: 0x04, width: 2, [
        .init("I/O Space Enable", bit: 0, .rw),
        Command.memorySpaceEnable,
        Command.busMasterEnable,
        .init("Special Cycle Enable", bit: 3, .ro),
        .init("Memory Write and Invalidate", bit: 4, .ro),
        .init("VGA Palette Snoop", bit: 5, .ro),
        .init("Parity Error Response", bit: 6, .rw),
        .init("IDSEL Stepping", bit: 7, .ro),
        .init("SERR# Enable", bit: 8, .rw),
        .init("Fast Back-to-Back Enable", bit: 9, .ro),
        Command.interruptDisable,
    ])

    /// Command fields as typed handles.
    public enum Command {
        public static let memorySpaceEnable = RegisterField("Memory Space Enable", bit: 1, .rw)
        public static let busMasterEnable = RegisterField("Bus Master Enable", bit: 2, .rw)
        public static let interruptDisable = RegisterField("Interrupt Disable", bit: 10, .rw)
    }

    /// Status register (PCIe 6.0 §7.5.1.1.4).
    public static let status = RegisterLayout("Status", offset: 0x06, width: 2, [
        .init("Immediate Readiness", bit: 0, .ro),
        Status.interruptStatus,
        Status.capabilitiesList,
        .init("66 MHz Capable", bit: 5, .ro),
        .init("Fast Back-to-Back Capable", bit: 7, .ro),
        .init("Master Data Parity Error", bit: 8, .rw1c),
        .init("DEVSEL Timing", 10, 9, .ro, values: [0: "fast", 1: "medium", 2: "slow"]),
        .init("Signaled Target Abort", bit: 11, .rw1c),
        .init("Received Target Abort", bit: 12, .rw1c),
        .init("Received Master Abort", bit: 13, .rw1c),
        .init("Signaled System Error", bit: 14, .rw1c),
        .init("Detected Parity Error", bit: 15, .rw1c),
    ])

    /// Status fields as typed handles.
    public enum Status {
        public static let interruptStatus = RegisterField("Interrupt Status", bit: 3, .ro)
        public static let capabilitiesList = RegisterField("Capabilities List", bit: 4, .ro)
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
    public static let bist = RegisterLayout("BIST", offset: 0x0F, width: 1, [
        .init("Completion Code", 3, 0, .ro), .init("Start BIST", bit: 6, .rw), .init("BIST Capable", bit: 7, .ro),
    ])

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
    public static func expansionROM(offset: Int) -> RegisterLayout {
        RegisterLayout("Expansion ROM Base Address", offset: offset, width: 4, [
            .init("Expansion ROM Enable", bit: 0, .rw), .init("Expansion ROM Base Address", 31, 11, .rw),
        ])
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
        RegisterLayout("Min_Gnt", offset: 0x3E, width: 1, [.init("Min_Gnt", 7, 0, .ro)]),
        RegisterLayout("Max_Lat", offset: 0x3F, width: 1, [.init("Max_Lat", 7, 0, .ro)]),
    ])

    /// Bridge Control (PCIe 6.0 §7.5.1.3.13); Secondary Bus Reset is bit 6.
    public static let bridgeControl = RegisterLayout("Bridge Control", offset: 0x3E, width: 2, [
        .init("Parity Error Response Enable", bit: 0, .rw),
        .init("SERR# Enable", bit: 1, .rw),
        .init("ISA Enable", bit: 2, .rw),
        .init("VGA Enable", bit: 3, .rw),
        .init("VGA 16-bit Decode", bit: 4, .rw),
        .init("Master Abort Mode", bit: 5, .ro),
        .init("Secondary Bus Reset", bit: 6, .rw),
        .init("Fast Back-to-Back Transactions Enable", bit: 7, .ro),
    ])

    /// Type 1 header (bridges, root ports, switch ports).
    public static let type1 = RegisterBlockLayout("Type 1 Configuration Space Header", common + [
        bar(0), bar(1),
        RegisterLayout("Primary Bus Number", offset: 0x18, width: 1, [.init("Primary Bus Number", 7, 0, .rw)]),
        RegisterLayout("Secondary Bus Number", offset: 0x19, width: 1, [.init("Secondary Bus Number", 7, 0, .rw)]),
        RegisterLayout("Subordinate Bus Number", offset: 0x1A, width: 1, [.init("Subordinate Bus Number", 7, 0, .rw)]),
        RegisterLayout("Secondary Latency Timer", offset: 0x1B, width: 1, [.init("Secondary Latency Timer", 7, 0, .ro)]),
        RegisterLayout("I/O Base", offset: 0x1C, width: 1, [.init("I/O Addressing Capability", 3, 0, .ro), .init("I/O Base", 7, 4, .rw)]),
        RegisterLayout("I/O Limit", offset: 0x1D, width: 1, [.init("I/O Addressing Capability", 3, 0, .ro), .init("I/O Limit", 7, 4, .rw)]),
        RegisterLayout("Secondary Status", offset: 0x1E, width: 2, [
            .init("66 MHz Capable", bit: 5, .ro), .init("Fast Back-to-Back Capable", bit: 7, .ro),
            .init("Master Data Parity Error", bit: 8, .rw1c), .init("DEVSEL Timing", 10, 9, .ro),
            .init("Signaled Target Abort", bit: 11, .rw1c), .init("Received Target Abort", bit: 12, .rw1c),
            .init("Received Master Abort", bit: 13, .rw1c), .init("Received System Error", bit: 14, .rw1c),
            .init("Detected Parity Error", bit: 15, .rw1c),
        ]),
        RegisterLayout("Memory Base", offset: 0x20, width: 2, [.init("Memory Base", 15, 4, .rw)]),
        RegisterLayout("Memory Limit", offset: 0x22, width: 2, [.init("Memory Limit", 15, 4, .rw)]),
        RegisterLayout("Prefetchable Memory Base", offset: 0x24, width: 2, [
            .init("Addressing Capability", 3, 0, .ro, values: [0: "32-bit", 1: "64-bit"]), .init("Prefetchable Memory Base", 15, 4, .rw),
        ]),
        RegisterLayout("Prefetchable Memory Limit", offset: 0x26, width: 2, [
            .init("Addressing Capability", 3, 0, .ro, values: [0: "32-bit", 1: "64-bit"]), .init("Prefetchable Memory Limit", 15, 4, .rw),
        ]),
        RegisterLayout("Prefetchable Base Upper 32 Bits", offset: 0x28, width: 4, [.init("Prefetchable Base Upper 32 Bits", 31, 0, .rw)]),
        RegisterLayout("Prefetchable Limit Upper 32 Bits", offset: 0x2C, width: 4, [.init("Prefetchable Limit Upper 32 Bits", 31, 0, .rw)]),
        RegisterLayout("I/O Base Upper 16 Bits", offset: 0x30, width: 2, [.init("I/O Base Upper 16 Bits", 15, 0, .rw)]),
        RegisterLayout("I/O Limit Upper 16 Bits", offset: 0x32, width: 2, [.init("I/O Limit Upper 16 Bits", 15, 0, .rw)]),
        capabilitiesPointer,
        expansionROM(offset: 0x38),
        interruptLine, interruptPin, bridgeControl,
    ])

    /// The header layout for a header type value (low 7 bits of 0x0E).
    public static func layout(forHeaderType type: UInt8) -> RegisterBlockLayout? {
        switch type & 0x7F {
        case 0: return type0
        case 1: return type1
        default: return nil
        }
    }
}
