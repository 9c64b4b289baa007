// Standard (conventional) capabilities: Power Management, MSI, MSI-X, PCI Express,
// Vendor-Specific. Offsets are from the capability's header.

/// The two bytes every standard capability starts with (PCI 3.0 §6.7).
public enum StandardCapabilityHeader {
    public static let capabilityID = RegisterLayout("Capability ID", offset: 0x00, width: 1, [.init("Capability ID", 7, 0, .ro)])
    public static let next = RegisterLayout("Next Capability Pointer", offset: 0x01, width: 1, [.init("Next Capability Pointer", 7, 0, .ro)])
    /// A capability pointer's two low bits are reserved: capabilities are DWORD aligned (PCI 3.0 §6.7).
    public static let pointerMask: UInt8 = 0xFC
    /// Standard capability pointers point past the 64-byte header (PCI 3.0 §6.7).
    public static let firstOffset = 0x40
}

/// The two bytes every standard capability starts with (PCI 3.0 §6.7).
public let capabilityHeaderRegisters: [RegisterLayout] = [StandardCapabilityHeader.capabilityID, StandardCapabilityHeader.next]

/// PCI Bus Power Management Interface 1.2 §3.2; PCIe 6.0 §7.5.2.
public enum PowerManagementCapability {
    public static let capabilities = RegisterLayout("Power Management Capabilities", offset: 0x02, width: 2, [
        Capabilities.version,
        Capabilities.pmeClock,
        .init("Immediate_Readiness_on_Return_to_D0", bit: 4, .ro),
        Capabilities.deviceSpecificInitialization,
        Capabilities.auxCurrent,
        Capabilities.d1Support,
        Capabilities.d2Support,
        Capabilities.pmeSupport,
    ])
    /// Power Management Capabilities fields as typed handles.
    public enum Capabilities {
        public static let version = RegisterField("Version", 2, 0, .ro)
        public static let pmeClock = RegisterField("PME Clock", bit: 3, .ro)
        public static let deviceSpecificInitialization = RegisterField("Device Specific Initialization", bit: 5, .ro)
        public static let auxCurrent = RegisterField("Aux_Current", 8, 6, .ro)
        public static let d1Support = RegisterField("D1_Support", bit: 9, .ro)
        public static let d2Support = RegisterField("D2_Support", bit: 10, .ro)
        /// One bit per state PME can be signalled from: bit n of the value is D0, D1, D2, D3hot, D3cold.
        public static let pmeSupport = RegisterField("PME_Support", 15, 11, .ro)
    }
    public static let controlStatus = RegisterLayout("Power Management Control/Status", offset: 0x04, width: 2, [
        ControlStatus.powerState,
        ControlStatus.noSoftReset,
        ControlStatus.pmeEnable,
        ControlStatus.dataSelect,
        ControlStatus.dataScale,
        ControlStatus.pmeStatus,
    ])
    /// Power Management Control/Status fields as typed handles.
    public enum ControlStatus {
        public static let powerState = RegisterField("PowerState", 1, 0, .rw, values: [0: "D0", 1: "D1", 2: "D2", 3: "D3hot"])
        public static let noSoftReset = RegisterField("No_Soft_Reset", bit: 3, .ro)
        public static let pmeEnable = RegisterField("PME_En", bit: 8, .rws)
        public static let dataSelect = RegisterField("Data_Select", 12, 9, .rw)
        public static let dataScale = RegisterField("Data_Scale", 14, 13, .ro)
        public static let pmeStatus = RegisterField("PME_Status", bit: 15, .rw1cs)
    }
    /// PMCSR PCI-to-PCI Bridge Support Extensions (PCI PM 1.2 §3.2.5).
    public static let bridgeExtensions = RegisterLayout("PMCSR_BSE", offset: 0x06, width: 1, [BridgeExtensions.b2B3, BridgeExtensions.bpccEnable])
    public enum BridgeExtensions {
        /// B2_B3#: 1 = the secondary bus clock stops in D3hot (B2), 0 = its power is removed (B3).
        public static let b2B3 = RegisterField("B2_B3#", bit: 6, .ro)
        public static let bpccEnable = RegisterField("BPCC_En", bit: 7, .ro)
    }
    public static let data = RegisterLayout("Data", offset: 0x07, width: 1, [.init("Data", 7, 0, .ro)])
    public static let layout = RegisterBlockLayout(CapabilityID.powerManagement.name, capabilityHeaderRegisters + [capabilities, controlStatus, bridgeExtensions, data])
}

/// MSI capability (PCI 3.0 §6.8.1). Its layout depends on 64-bit addressing and
/// per-vector masking, both read from Message Control.
public enum MSICapability {
    public static let messageControl = RegisterLayout("Message Control", offset: 0x02, width: 2, [
        Control.enable,
        Control.multipleMessageCapable,
        Control.multipleMessageEnable,
        Control.is64Bit,
        Control.perVectorMasking,
        Control.extendedMessageData,
        .init("Extended Message Data Enable", bit: 10, .rw),
    ])

    /// Message Control fields as typed handles.
    public enum Control {
        public static let enable = RegisterField("MSI Enable", bit: 0, .rw)
        public static let multipleMessageCapable = RegisterField("Multiple Message Capable", 3, 1, .ro)
        public static let multipleMessageEnable = RegisterField("Multiple Message Enable", 6, 4, .rw)
        public static let is64Bit = RegisterField("64 bit address capable", bit: 7, .ro)
        public static let perVectorMasking = RegisterField("Per-vector masking capable", bit: 8, .ro)
        public static let extendedMessageData = RegisterField("Extended Message Data Capable", bit: 9, .ro)
    }

    public static let messageAddress = RegisterLayout("Message Address", offset: 0x04, width: 4, [.init("Message Address", 31, 2, .rw)])
    /// 64-bit capable functions only.
    public static let messageUpperAddress = RegisterLayout("Message Upper Address", offset: 0x08, width: 4, [.init("Message Upper Address", 31, 0, .rw)])
    /// Message Data and the registers after it: at 0x08, or 0x0C with 64-bit addressing.
    public struct DataRegisters: Sendable {
        public let messageData: RegisterLayout
        public let extendedMessageData: RegisterLayout
        /// With per-vector masking only.
        public let maskBits: RegisterLayout
        /// With per-vector masking only.
        public let pendingBits: RegisterLayout

        init(at offset: Int) {
            messageData = RegisterLayout("Message Data", offset: offset, width: 2, [.init("Message Data", 15, 0, .rw)])
            extendedMessageData = RegisterLayout("Extended Message Data", offset: offset + 2, width: 2, [.init("Extended Message Data", 15, 0, .rw)])
            maskBits = RegisterLayout("Mask Bits", offset: offset + 4, width: 4, [.init("Mask Bits", 31, 0, .rw)])
            pendingBits = RegisterLayout("Pending Bits", offset: offset + 8, width: 4, [.init("Pending Bits", 31, 0, .ro)])
        }
    }
    static let dataRegisters32 = DataRegisters(at: 0x08)
    static let dataRegisters64 = DataRegisters(at: 0x0C)
    /// The data registers for 32-bit or 64-bit addressing (declared once each, not built per call).
    public static func dataRegisters(is64Bit: Bool) -> DataRegisters { is64Bit ? dataRegisters64 : dataRegisters32 }

    public static func layout(is64Bit: Bool, perVectorMasking: Bool) -> RegisterBlockLayout {
        let data = dataRegisters(is64Bit: is64Bit)
        return RegisterBlockLayout(CapabilityID.msi.name, capabilityHeaderRegisters + [messageControl, messageAddress]
            + (is64Bit ? [messageUpperAddress] : []) + [data.messageData, data.extendedMessageData]
            + (perVectorMasking ? [data.maskBits, data.pendingBits] : []))
    }
}

/// MSI-X capability and table (PCI 3.0 §6.8.2).
public enum MSIXCapability {
    public static let messageControl = RegisterLayout("Message Control", offset: 0x02, width: 2, [
        Control.tableSize, Control.functionMask, Control.enable,
    ])
    /// Table BIR / PBA BIR (2:0); the offset is the rest of the DWORD, in place.
    public static let tableBIR = RegisterField("Table BIR", 2, 0, .ro)
    public static let pbaBIR = RegisterField("PBA BIR", 2, 0, .ro)
    /// Message Control fields as typed handles.
    public enum Control {
        public static let tableSize = RegisterField("Table Size", 10, 0, .ro, "N-1 encoded")
        public static let functionMask = RegisterField("Function Mask", bit: 14, .rw)
        public static let enable = RegisterField("MSI-X Enable", bit: 15, .rw)
    }
    /// Table Offset / PBA Offset (31:3), QWORD-aligned offsets into the BAR, in place.
    public static let tableOffsetField = RegisterField("Table Offset", 31, 3, .ro)
    public static let pbaOffsetField = RegisterField("PBA Offset", 31, 3, .ro)
    public static let tableOffset = RegisterLayout("Table Offset/Table BIR", offset: 0x04, width: 4, [tableBIR, tableOffsetField])
    public static let pbaOffset = RegisterLayout("PBA Offset/PBA BIR", offset: 0x08, width: 4, [pbaBIR, pbaOffsetField])
    public static let layout = RegisterBlockLayout(CapabilityID.msix.name, capabilityHeaderRegisters + [messageControl, tableOffset, pbaOffset])

    /// One 16-byte MSI-X table entry; Vector Control's Mask Bit resets to 1.
    public static let tableEntry = RegisterBlockLayout("MSI-X Table Entry", [
        RegisterLayout("Message Address", offset: 0x0, width: 4, [.init("Message Address", 31, 2, .rw)]),
        RegisterLayout("Message Upper Address", offset: 0x4, width: 4, [.init("Message Upper Address", 31, 0, .rw)]),
        RegisterLayout("Message Data", offset: 0x8, width: 4, [.init("Message Data", 31, 0, .rw)]),
        vectorControl,
    ])
    /// Vector Control (entry + 0xC) and its Mask Bit, as typed handles.
    public static let maskBit = RegisterField("Mask Bit", bit: 0, .rw, reset: 1)
    public static let vectorControl = RegisterLayout("Vector Control", offset: 0xC, width: 4, [maskBit])
    public static let tableEntrySize = 16
}

/// Vendor-Specific capability (PCI 3.0 §6.8.4): a length byte, then vendor data.
public enum VendorSpecificCapability {
    public static let length = RegisterLayout("Capability Length", offset: 0x02, width: 1, [.init("Capability Length", 7, 0, .ro)])
    public static let layout = RegisterBlockLayout(CapabilityID.vendorSpecific.name, capabilityHeaderRegisters + [length])

    /// A virtio PCI capability (Virtio 1.2 §4.1.4, `struct virtio_pci_cap`) in a vendor-specific capability of a
    /// virtio function: which configuration structure, in which BAR, where; notification capabilities add a multiplier.
    public enum Virtio {
        public static let configType = RegisterLayout("cfg_type", offset: 0x03, width: 1, [.init("cfg_type", 7, 0, .ro)])
        public static let bar = RegisterLayout("bar", offset: 0x04, width: 1, [.init("bar", 7, 0, .ro)])
        public static let offset = RegisterLayout("offset", offset: 0x08, width: 4, [.init("offset", 31, 0, .ro)])
        public static let length = RegisterLayout("length", offset: 0x0C, width: 4, [.init("length", 31, 0, .ro)])
        /// VIRTIO_PCI_CAP_NOTIFY_CFG only.
        public static let notifyOffsetMultiplier = RegisterLayout("notify_off_multiplier", offset: 0x10, width: 4, [.init("notify_off_multiplier", 31, 0, .ro)])
        /// cfg_type of the notification structure (VIRTIO_PCI_CAP_NOTIFY_CFG).
        public static let notifyConfigType: UInt64 = 2
    }
}

/// AGP capability (AGP 3.0 §2.5.1): its revision byte.
public enum AGPCapability {
    public static let minorRevision = RegisterField("Minor Revision", 3, 0, .ro)
    public static let majorRevision = RegisterField("Major Revision", 7, 4, .ro)
    public static let revision = RegisterLayout("Revision", offset: 0x02, width: 1, [minorRevision, majorRevision])
}

/// Subsystem ID and Subsystem Vendor ID capability of a bridge (PCI-to-PCI Bridge Architecture 1.2 §3.2.5.13 note;
/// PCI 3.0 §H): the IDs a type 1 header has no room for.
public enum BridgeSubsystemVendorIDCapability {
    public static let subsystemVendorID = RegisterLayout("Subsystem Vendor ID", offset: 0x04, width: 2, [.init("Subsystem Vendor ID", 15, 0, .hwInit)])
    public static let subsystemID = RegisterLayout("Subsystem ID", offset: 0x06, width: 2, [.init("Subsystem ID", 15, 0, .hwInit)])
}

/// Enhanced Allocation capability (PCI Enhanced Allocation ECN §6.9.1.1): its entry count.
public enum EnhancedAllocationCapability {
    public static let numEntries = RegisterField("Num Entries", 5, 0, .hwInit)
    public static let entries = RegisterLayout("Num Entries", offset: 0x02, width: 2, [numEntries])
    /// Type 1 functions only: the bus numbers behind the bridge that EA fixes (§6.9.1.1, the DWORD after the first).
    public static let fixedSecondaryBusNumber = RegisterField("Fixed Secondary Bus Number", 7, 0, .hwInit)
    public static let fixedSubordinateBusNumber = RegisterField("Fixed Subordinate Bus Number", 15, 8, .hwInit)
    public static let bridgeBusNumbers = RegisterLayout("Fixed Bus Numbers", offset: 0x04, width: 2, [fixedSecondaryBusNumber, fixedSubordinateBusNumber])
}

/// PCI Express Capability structure (PCIe 6.0 §7.5.3).
public enum PCIExpressCapability {
    public static let devicePortTypes: [UInt64: String] = [
        0x0: "Endpoint", 0x1: "Legacy Endpoint", 0x4: "Root Port", 0x5: "Upstream Port", 0x6: "Downstream Port",
        0x7: "PCI-Express to PCI/PCI-X Bridge", 0x8: "PCI/PCI-X to PCI-Express Bridge",
        0x9: "Root Complex Integrated Endpoint", 0xA: "Root Complex Event Collector",
    ]
    /// Device/Port Type encodings (PCIe 6.0 §7.5.3.2), by name.
    public enum DevicePortType: UInt64, Sendable, CaseIterable {
        case endpoint = 0x0, legacyEndpoint = 0x1, rootPort = 0x4, upstreamPort = 0x5, downstreamPort = 0x6
        case pcieToPCIBridge = 0x7, pciToPCIeBridge = 0x8, rootComplexIntegratedEndpoint = 0x9, rootComplexEventCollector = 0xA
    }
    public static let devicePortType = RegisterField("Device/Port Type", 7, 4, .ro, values: devicePortTypes)
    public static let flrCapable = RegisterField("Function Level Reset Capability", bit: 28, .ro)
    public static let initiateFLR = RegisterField("Initiate Function Level Reset", bit: 15, .rw, "write 1 starts an FLR; reads 0")
    public static let linkSpeeds: [UInt64: String] = [1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"]

    /// PCI Express Capabilities register fields (§7.5.3.2).
    public enum Capabilities {
        public static let capabilityVersion = RegisterField("Capability Version", 3, 0, .ro)
        public static let slotImplemented = RegisterField("Slot Implemented", bit: 8, .hwInit)
        public static let interruptMessageNumber = RegisterField("Interrupt Message Number", 13, 9, .ro)
    }
    public static let capabilities = RegisterLayout("PCI Express Capabilities", offset: 0x02, width: 2, [
        Capabilities.capabilityVersion,
        devicePortType,
        Capabilities.slotImplemented,
        Capabilities.interruptMessageNumber,
        .init("Flit Mode Supported", bit: 15, .hwInit),
    ])
    /// Device Capabilities fields (§7.5.3.3).
    public enum DeviceCapabilities {
        public static let maxPayloadSizeSupported = RegisterField("Max_Payload_Size Supported", 2, 0, .ro,
                                                                  values: [0: "128 bytes", 1: "256 bytes", 2: "512 bytes", 3: "1024 bytes", 4: "2048 bytes", 5: "4096 bytes"])
        public static let phantomFunctionsSupported = RegisterField("Phantom Functions Supported", 4, 3, .ro)
        public static let extendedTagFieldSupported = RegisterField("Extended Tag Field Supported", bit: 5, .ro)
        public static let endpointL0sAcceptableLatency = RegisterField("Endpoint L0s Acceptable Latency", 8, 6, .ro)
        public static let endpointL1AcceptableLatency = RegisterField("Endpoint L1 Acceptable Latency", 11, 9, .ro)
        /// Bits 12-14 are the PCIe 1.1 indicator bits, reserved since 2.0 (lspci still prints them).
        public static let attentionButtonPresent = RegisterField("Attention Button Present", bit: 12, .ro, "PCIe 1.1; reserved since 2.0")
        public static let attentionIndicatorPresent = RegisterField("Attention Indicator Present", bit: 13, .ro, "PCIe 1.1; reserved since 2.0")
        public static let powerIndicatorPresent = RegisterField("Power Indicator Present", bit: 14, .ro, "PCIe 1.1; reserved since 2.0")
        public static let roleBasedErrorReporting = RegisterField("Role-Based Error Reporting", bit: 15, .ro)
        public static let capturedSlotPowerLimitValue = RegisterField("Captured Slot Power Limit Value", 25, 18, .ro)
        public static let capturedSlotPowerLimitScale = RegisterField("Captured Slot Power Limit Scale", 27, 26, .ro)
    }
    public static let deviceCapabilities = RegisterLayout("Device Capabilities", offset: 0x04, width: 4, [
        DeviceCapabilities.maxPayloadSizeSupported,
        DeviceCapabilities.phantomFunctionsSupported,
        DeviceCapabilities.extendedTagFieldSupported,
        DeviceCapabilities.endpointL0sAcceptableLatency,
        DeviceCapabilities.endpointL1AcceptableLatency,
        DeviceCapabilities.attentionButtonPresent,
        DeviceCapabilities.attentionIndicatorPresent,
        DeviceCapabilities.powerIndicatorPresent,
        DeviceCapabilities.roleBasedErrorReporting,
        .init("ERR_COR Subclass Capable", bit: 16, .ro),
        DeviceCapabilities.capturedSlotPowerLimitValue,
        DeviceCapabilities.capturedSlotPowerLimitScale,
        flrCapable,
    ])
    /// Device Control fields (§7.5.3.4).
    public enum DeviceControl {
        public static let correctableErrorReportingEnable = RegisterField("Correctable Error Reporting Enable", bit: 0, .rw)
        public static let nonFatalErrorReportingEnable = RegisterField("Non-Fatal Error Reporting Enable", bit: 1, .rw)
        public static let fatalErrorReportingEnable = RegisterField("Fatal Error Reporting Enable", bit: 2, .rw)
        public static let unsupportedRequestReportingEnable = RegisterField("Unsupported Request Reporting Enable", bit: 3, .rw)
        public static let enableRelaxedOrdering = RegisterField("Enable Relaxed Ordering", bit: 4, .rw, reset: 1)
        public static let maxPayloadSize = RegisterField("Max_Payload_Size", 7, 5, .rw)
        public static let extendedTagFieldEnable = RegisterField("Extended Tag Field Enable", bit: 8, .rw)
        public static let phantomFunctionsEnable = RegisterField("Phantom Functions Enable", bit: 9, .rw)
        public static let auxPowerPMEnable = RegisterField("Aux Power PM Enable", bit: 10, .rws)
        public static let enableNoSnoop = RegisterField("Enable No Snoop", bit: 11, .rw, reset: 1)
        public static let maxReadRequestSize = RegisterField("Max_Read_Request_Size", 14, 12, .rw, reset: 2)
        /// Bit 15 on a PCI Express to PCI/PCI-X Bridge, where Initiate Function Level Reset is on
        /// other functions (PCIe to PCI/PCI-X Bridge 1.0 §5.2.3); not in the layout, whose bit 15 is `initiateFLR`.
        public static let bridgeConfigurationRetryEnable = RegisterField("Bridge Configuration Retry Enable", bit: 15, .rw)
    }
    /// Device Control. Initiate Function Level Reset (bit 15) always reads 0 on
    /// endpoints; a write of 1 starts an FLR (§6.6.2).
    public static let deviceControl = RegisterLayout("Device Control", offset: 0x08, width: 2, [
        DeviceControl.correctableErrorReportingEnable,
        DeviceControl.nonFatalErrorReportingEnable,
        DeviceControl.fatalErrorReportingEnable,
        DeviceControl.unsupportedRequestReportingEnable,
        DeviceControl.enableRelaxedOrdering,
        DeviceControl.maxPayloadSize,
        DeviceControl.extendedTagFieldEnable,
        DeviceControl.phantomFunctionsEnable,
        DeviceControl.auxPowerPMEnable,
        DeviceControl.enableNoSnoop,
        DeviceControl.maxReadRequestSize,
        initiateFLR,
    ])
    /// Device Status fields (§7.5.3.5).
    public enum DeviceStatus {
        public static let correctableErrorDetected = RegisterField("Correctable Error Detected", bit: 0, .rw1c)
        public static let nonFatalErrorDetected = RegisterField("Non-Fatal Error Detected", bit: 1, .rw1c)
        public static let fatalErrorDetected = RegisterField("Fatal Error Detected", bit: 2, .rw1c)
        public static let unsupportedRequestDetected = RegisterField("Unsupported Request Detected", bit: 3, .rw1c)
        public static let auxPowerDetected = RegisterField("AUX Power Detected", bit: 4, .ro)
        public static let transactionsPending = RegisterField("Transactions Pending", bit: 5, .ro)
    }
    public static let deviceStatus = RegisterLayout("Device Status", offset: 0x0A, width: 2, [
        DeviceStatus.correctableErrorDetected,
        DeviceStatus.nonFatalErrorDetected,
        DeviceStatus.fatalErrorDetected,
        DeviceStatus.unsupportedRequestDetected,
        DeviceStatus.auxPowerDetected,
        DeviceStatus.transactionsPending,
        .init("Emergency Power Reduction Detected", bit: 6, .rw1c),
    ])
    /// Link Capabilities fields (§7.5.3.6).
    public enum LinkCapabilities {
        public static let maxLinkSpeed = RegisterField("Max Link Speed", 3, 0, .ro, values: PCIExpressCapability.linkSpeeds)
        public static let maximumLinkWidth = RegisterField("Maximum Link Width", 9, 4, .ro)
        public static let aspmSupport = RegisterField("ASPM Support", 11, 10, .ro, values: [0: "not supported", 1: "L0s", 2: "L1", 3: "L0s and L1"])
        public static let l0sExitLatency = RegisterField("L0s Exit Latency", 14, 12, .ro)
        public static let l1ExitLatency = RegisterField("L1 Exit Latency", 17, 15, .ro)
        public static let clockPowerManagement = RegisterField("Clock Power Management", bit: 18, .ro)
        public static let surpriseDownErrorReportingCapable = RegisterField("Surprise Down Error Reporting Capable", bit: 19, .ro)
        public static let dataLinkLayerLinkActiveReportingCapable = RegisterField("Data Link Layer Link Active Reporting Capable", bit: 20, .ro)
        public static let linkBandwidthNotificationCapability = RegisterField("Link Bandwidth Notification Capability", bit: 21, .ro)
        public static let aspmOptionalityCompliance = RegisterField("ASPM Optionality Compliance", bit: 22, .ro)
        public static let portNumber = RegisterField("Port Number", 31, 24, .hwInit)
    }
    public static let linkCapabilities = RegisterLayout("Link Capabilities", offset: 0x0C, width: 4, [
        LinkCapabilities.maxLinkSpeed,
        LinkCapabilities.maximumLinkWidth,
        LinkCapabilities.aspmSupport,
        LinkCapabilities.l0sExitLatency,
        LinkCapabilities.l1ExitLatency,
        LinkCapabilities.clockPowerManagement,
        LinkCapabilities.surpriseDownErrorReportingCapable,
        LinkCapabilities.dataLinkLayerLinkActiveReportingCapable,
        LinkCapabilities.linkBandwidthNotificationCapability,
        LinkCapabilities.aspmOptionalityCompliance,
        LinkCapabilities.portNumber,
    ])
    /// Link Control fields (§7.5.3.7).
    public enum LinkControl {
        public static let aspmControl = RegisterField("ASPM Control", 1, 0, .rw)
        public static let readCompletionBoundary = RegisterField("Read Completion Boundary", bit: 3, .rw)
        public static let linkDisable = RegisterField("Link Disable", bit: 4, .rw)
        public static let commonClockConfiguration = RegisterField("Common Clock Configuration", bit: 6, .rw)
        public static let extendedSynch = RegisterField("Extended Synch", bit: 7, .rw)
        public static let enableClockPowerManagement = RegisterField("Enable Clock Power Management", bit: 8, .rw)
        public static let hardwareAutonomousWidthDisable = RegisterField("Hardware Autonomous Width Disable", bit: 9, .rw)
        public static let linkBandwidthManagementInterruptEnable = RegisterField("Link Bandwidth Management Interrupt Enable", bit: 10, .rw)
        public static let linkAutonomousBandwidthInterruptEnable = RegisterField("Link Autonomous Bandwidth Interrupt Enable", bit: 11, .rw)
    }
    /// Link Control; Link Disable (bit 4) on a downstream port takes the link down,
    /// a conventional reset of everything below it.
    public static let linkControl = RegisterLayout("Link Control", offset: 0x10, width: 2, [
        LinkControl.aspmControl,
        .init("PTM Propagation Delay Adaptation Interpretation B", bit: 2, .rw),
        LinkControl.readCompletionBoundary,
        LinkControl.linkDisable,
        .init("Retrain Link", bit: 5, .rw),
        LinkControl.commonClockConfiguration,
        LinkControl.extendedSynch,
        LinkControl.enableClockPowerManagement,
        LinkControl.hardwareAutonomousWidthDisable,
        LinkControl.linkBandwidthManagementInterruptEnable,
        LinkControl.linkAutonomousBandwidthInterruptEnable,
        .init("Flit Mode Disable", bit: 13, .rw),
        .init("DRS Signaling Control", 15, 14, .rw),
    ])
    /// Link Status fields (§7.5.3.8).
    public enum LinkStatus {
        public static let currentLinkSpeed = RegisterField("Current Link Speed", 3, 0, .ro, values: PCIExpressCapability.linkSpeeds)
        public static let negotiatedLinkWidth = RegisterField("Negotiated Link Width", 9, 4, .ro)
        /// PCIe 1.1's Link Training Error; Undefined since 2.0 (lspci still prints it).
        public static let linkTrainingError = RegisterField("Link Training Error", bit: 10, .ro, "PCIe 1.1; Undefined since 2.0")
        public static let linkTraining = RegisterField("Link Training", bit: 11, .ro)
        public static let slotClockConfiguration = RegisterField("Slot Clock Configuration", bit: 12, .hwInit)
        public static let dataLinkLayerLinkActive = RegisterField("Data Link Layer Link Active", bit: 13, .ro)
        public static let linkBandwidthManagementStatus = RegisterField("Link Bandwidth Management Status", bit: 14, .rw1c)
        public static let linkAutonomousBandwidthStatus = RegisterField("Link Autonomous Bandwidth Status", bit: 15, .rw1c)
    }
    public static let linkStatus = RegisterLayout("Link Status", offset: 0x12, width: 2, [
        LinkStatus.currentLinkSpeed,
        LinkStatus.negotiatedLinkWidth,
        LinkStatus.linkTrainingError,
        LinkStatus.linkTraining,
        LinkStatus.slotClockConfiguration,
        LinkStatus.dataLinkLayerLinkActive,
        LinkStatus.linkBandwidthManagementStatus,
        LinkStatus.linkAutonomousBandwidthStatus,
    ])
    /// Slot Capabilities fields (§7.5.3.9).
    public enum SlotCapabilities {
        public static let attentionButtonPresent = RegisterField("Attention Button Present", bit: 0, .hwInit)
        public static let powerControllerPresent = RegisterField("Power Controller Present", bit: 1, .hwInit)
        public static let mrlSensorPresent = RegisterField("MRL Sensor Present", bit: 2, .hwInit)
        public static let attentionIndicatorPresent = RegisterField("Attention Indicator Present", bit: 3, .hwInit)
        public static let powerIndicatorPresent = RegisterField("Power Indicator Present", bit: 4, .hwInit)
        public static let hotPlugSurprise = RegisterField("Hot-Plug Surprise", bit: 5, .hwInit)
        public static let hotPlugCapable = RegisterField("Hot-Plug Capable", bit: 6, .hwInit)
        public static let slotPowerLimitValue = RegisterField("Slot Power Limit Value", 14, 7, .hwInit)
        public static let slotPowerLimitScale = RegisterField("Slot Power Limit Scale", 16, 15, .hwInit)
        public static let electromechanicalInterlockPresent = RegisterField("Electromechanical Interlock Present", bit: 17, .hwInit)
        public static let noCommandCompletedSupport = RegisterField("No Command Completed Support", bit: 18, .hwInit)
        public static let physicalSlotNumber = RegisterField("Physical Slot Number", 31, 19, .hwInit)
    }
    public static let slotCapabilities = RegisterLayout("Slot Capabilities", offset: 0x14, width: 4, [
        SlotCapabilities.attentionButtonPresent, SlotCapabilities.powerControllerPresent,
        SlotCapabilities.mrlSensorPresent, SlotCapabilities.attentionIndicatorPresent,
        SlotCapabilities.powerIndicatorPresent, SlotCapabilities.hotPlugSurprise,
        SlotCapabilities.hotPlugCapable, SlotCapabilities.slotPowerLimitValue,
        SlotCapabilities.slotPowerLimitScale, SlotCapabilities.electromechanicalInterlockPresent,
        SlotCapabilities.noCommandCompletedSupport, SlotCapabilities.physicalSlotNumber,
    ])
    /// Slot Control fields (§7.5.3.10).
    public enum SlotControl {
        public static let attentionButtonPressedEnable = RegisterField("Attention Button Pressed Enable", bit: 0, .rw)
        public static let powerFaultDetectedEnable = RegisterField("Power Fault Detected Enable", bit: 1, .rw)
        public static let mrlSensorChangedEnable = RegisterField("MRL Sensor Changed Enable", bit: 2, .rw)
        public static let presenceDetectChangedEnable = RegisterField("Presence Detect Changed Enable", bit: 3, .rw)
        public static let commandCompletedInterruptEnable = RegisterField("Command Completed Interrupt Enable", bit: 4, .rw)
        public static let hotPlugInterruptEnable = RegisterField("Hot-Plug Interrupt Enable", bit: 5, .rw)
        public static let attentionIndicatorControl = RegisterField("Attention Indicator Control", 7, 6, .rw)
        public static let powerIndicatorControl = RegisterField("Power Indicator Control", 9, 8, .rw)
        public static let powerControllerControl = RegisterField("Power Controller Control", bit: 10, .rw)
        public static let electromechanicalInterlockControl = RegisterField("Electromechanical Interlock Control", bit: 11, .rw)
        public static let dataLinkLayerStateChangedEnable = RegisterField("Data Link Layer State Changed Enable", bit: 12, .rw)
    }
    public static let slotControl = RegisterLayout("Slot Control", offset: 0x18, width: 2, [
        SlotControl.attentionButtonPressedEnable, SlotControl.powerFaultDetectedEnable,
        SlotControl.mrlSensorChangedEnable, SlotControl.presenceDetectChangedEnable,
        SlotControl.commandCompletedInterruptEnable, SlotControl.hotPlugInterruptEnable,
        SlotControl.attentionIndicatorControl, SlotControl.powerIndicatorControl,
        SlotControl.powerControllerControl, SlotControl.electromechanicalInterlockControl,
        SlotControl.dataLinkLayerStateChangedEnable,
    ])
    /// Slot Status fields (§7.5.3.11).
    public enum SlotStatus {
        public static let attentionButtonPressed = RegisterField("Attention Button Pressed", bit: 0, .rw1c)
        public static let powerFaultDetected = RegisterField("Power Fault Detected", bit: 1, .rw1c)
        public static let mrlSensorChanged = RegisterField("MRL Sensor Changed", bit: 2, .rw1c)
        public static let presenceDetectChanged = RegisterField("Presence Detect Changed", bit: 3, .rw1c)
        public static let commandCompleted = RegisterField("Command Completed", bit: 4, .rw1c)
        public static let mrlSensorState = RegisterField("MRL Sensor State", bit: 5, .ro)
        public static let presenceDetectState = RegisterField("Presence Detect State", bit: 6, .ro)
        public static let electromechanicalInterlockStatus = RegisterField("Electromechanical Interlock Status", bit: 7, .ro)
        public static let dataLinkLayerStateChanged = RegisterField("Data Link Layer State Changed", bit: 8, .rw1c)
    }
    public static let slotStatus = RegisterLayout("Slot Status", offset: 0x1A, width: 2, [
        SlotStatus.attentionButtonPressed, SlotStatus.powerFaultDetected,
        SlotStatus.mrlSensorChanged, SlotStatus.presenceDetectChanged,
        SlotStatus.commandCompleted, SlotStatus.mrlSensorState,
        SlotStatus.presenceDetectState, SlotStatus.electromechanicalInterlockStatus,
        SlotStatus.dataLinkLayerStateChanged,
    ])
    /// Root Control, Root Capabilities and Root Status fields (§7.5.3.12-14), in bit order.
    public static let rootControlFlags = [
        RegisterField("System Error on Correctable Error Enable", bit: 0, .rw), RegisterField("System Error on Non-Fatal Error Enable", bit: 1, .rw),
        RegisterField("System Error on Fatal Error Enable", bit: 2, .rw), RegisterField("PME Interrupt Enable", bit: 3, .rw),
        RegisterField("CRS Software Visibility Enable", bit: 4, .rw),
    ]
    public static let rootControl = RegisterLayout("Root Control", offset: 0x1C, width: 2, rootControlFlags)
    public static let crsSoftwareVisibility = RegisterField("CRS Software Visibility", bit: 0, .ro)
    public static let rootCapabilities = RegisterLayout("Root Capabilities", offset: 0x1E, width: 2, [crsSoftwareVisibility])
    public enum RootStatus {
        public static let pmeRequesterID = RegisterField("PME Requester ID", 15, 0, .ro)
        public static let pmeStatus = RegisterField("PME Status", bit: 16, .rw1c)
        public static let pmePending = RegisterField("PME Pending", bit: 17, .ro)
    }
    public static let rootStatus = RegisterLayout("Root Status", offset: 0x20, width: 4, [RootStatus.pmeRequesterID, RootStatus.pmeStatus, RootStatus.pmePending])
    /// Device Capabilities 2 fields (§7.5.3.15).
    public enum DeviceCapabilities2 {
        public static let completionTimeoutRangesSupported = RegisterField("Completion Timeout Ranges Supported", 3, 0, .ro)
        public static let completionTimeoutDisableSupported = RegisterField("Completion Timeout Disable Supported", bit: 4, .ro)
        public static let ariForwardingSupported = RegisterField("ARI Forwarding Supported", bit: 5, .ro)
        public static let atomicOpRoutingSupported = RegisterField("AtomicOp Routing Supported", bit: 6, .ro)
        public static let atomicOp32BitCompleterSupported = RegisterField("32-bit AtomicOp Completer Supported", bit: 7, .ro)
        public static let atomicOp64BitCompleterSupported = RegisterField("64-bit AtomicOp Completer Supported", bit: 8, .ro)
        public static let cas128BitCompleterSupported = RegisterField("128-bit CAS Completer Supported", bit: 9, .ro)
        public static let noROEnabledPRPRPassing = RegisterField("No RO-enabled PR-PR Passing", bit: 10, .ro)
        public static let ltrMechanismSupported = RegisterField("LTR Mechanism Supported", bit: 11, .ro)
        public static let tphCompleterSupported = RegisterField("TPH Completer Supported", 13, 12, .ro)
        /// PCIe 4.0's LN System CLS; reserved in 6.0 (lspci still prints it for root ports).
        public static let lnSystemCLS = RegisterField("LN System CLS", 15, 14, .ro, "PCIe 4.0; reserved in 6.0")
        public static let tenBitTagCompleterSupported = RegisterField("10-Bit Tag Completer Supported", bit: 16, .hwInit)
        public static let tenBitTagRequesterSupported = RegisterField("10-Bit Tag Requester Supported", bit: 17, .hwInit)
        public static let obffSupported = RegisterField("OBFF Supported", 19, 18, .hwInit)
        public static let extendedFmtFieldSupported = RegisterField("Extended Fmt Field Supported", bit: 20, .ro)
        public static let endEndTLPPrefixSupported = RegisterField("End-End TLP Prefix Supported", bit: 21, .ro)
        public static let maxEndEndTLPPrefixes = RegisterField("Max End-End TLP Prefixes", 23, 22, .hwInit)
        public static let emergencyPowerReductionSupported = RegisterField("Emergency Power Reduction Supported", 25, 24, .hwInit)
        public static let emergencyPowerReductionInitializationRequired = RegisterField("Emergency Power Reduction Initialization Required", bit: 26, .hwInit)
        public static let frsSupported = RegisterField("FRS Supported", bit: 31, .hwInit)
    }
    public static let deviceCapabilities2 = RegisterLayout("Device Capabilities 2", offset: 0x24, width: 4, [
        DeviceCapabilities2.completionTimeoutRangesSupported,
        DeviceCapabilities2.completionTimeoutDisableSupported,
        DeviceCapabilities2.ariForwardingSupported,
        DeviceCapabilities2.atomicOpRoutingSupported,
        DeviceCapabilities2.atomicOp32BitCompleterSupported,
        DeviceCapabilities2.atomicOp64BitCompleterSupported,
        DeviceCapabilities2.cas128BitCompleterSupported,
        DeviceCapabilities2.noROEnabledPRPRPassing,
        DeviceCapabilities2.ltrMechanismSupported,
        DeviceCapabilities2.tphCompleterSupported,
        DeviceCapabilities2.lnSystemCLS,
        DeviceCapabilities2.tenBitTagCompleterSupported,
        DeviceCapabilities2.tenBitTagRequesterSupported,
        DeviceCapabilities2.obffSupported,
        DeviceCapabilities2.extendedFmtFieldSupported,
        DeviceCapabilities2.endEndTLPPrefixSupported,
        DeviceCapabilities2.maxEndEndTLPPrefixes,
        DeviceCapabilities2.emergencyPowerReductionSupported,
        DeviceCapabilities2.emergencyPowerReductionInitializationRequired,
        DeviceCapabilities2.frsSupported,
    ])
    /// Device Control 2 fields (§7.5.3.16).
    public enum DeviceControl2 {
        public static let completionTimeoutValue = RegisterField("Completion Timeout Value", 3, 0, .rw)
        public static let completionTimeoutDisable = RegisterField("Completion Timeout Disable", bit: 4, .rw)
        public static let ariForwardingEnable = RegisterField("ARI Forwarding Enable", bit: 5, .rw)
        public static let atomicOpRequesterEnable = RegisterField("AtomicOp Requester Enable", bit: 6, .rw)
        public static let atomicOpEgressBlocking = RegisterField("AtomicOp Egress Blocking", bit: 7, .rw)
        public static let ltrMechanismEnable = RegisterField("LTR Mechanism Enable", bit: 10, .rw)
        public static let tenBitTagRequesterEnable = RegisterField("10-Bit Tag Requester Enable", bit: 12, .rw)
        public static let obffEnable = RegisterField("OBFF Enable", 14, 13, .rw)
    }
    public static let deviceControl2 = RegisterLayout("Device Control 2", offset: 0x28, width: 2, [
        DeviceControl2.completionTimeoutValue,
        DeviceControl2.completionTimeoutDisable,
        DeviceControl2.ariForwardingEnable,
        DeviceControl2.atomicOpRequesterEnable,
        DeviceControl2.atomicOpEgressBlocking,
        .init("IDO Request Enable", bit: 8, .rw),
        .init("IDO Completion Enable", bit: 9, .rw),
        DeviceControl2.ltrMechanismEnable,
        .init("Emergency Power Reduction Request", bit: 11, .rw),
        DeviceControl2.tenBitTagRequesterEnable,
        DeviceControl2.obffEnable,
        .init("End-End TLP Prefix Blocking", bit: 15, .rw),
    ])
    public static let deviceStatus2 = RegisterLayout("Device Status 2", offset: 0x2A, width: 2, [])
    /// Link Capabilities 2 fields (§7.5.3.18).
    public enum LinkCapabilities2 {
        /// Bit n-1 of the vector (register bit n) is link speed n of `linkSpeeds` (2.5, 5, 8, ... GT/s).
        public static let supportedLinkSpeedsVector = RegisterField("Supported Link Speeds Vector", 7, 1, .ro)
        public static let crosslinkSupported = RegisterField("Crosslink Supported", bit: 8, .ro)
        public static let retimerPresenceDetectSupported = RegisterField("Retimer Presence Detect Supported", bit: 23, .hwInit)
        public static let twoRetimersPresenceDetectSupported = RegisterField("Two Retimers Presence Detect Supported", bit: 24, .hwInit)
        public static let drsSupported = RegisterField("DRS Supported", bit: 31, .hwInit)
    }
    public static let linkCapabilities2 = RegisterLayout("Link Capabilities 2", offset: 0x2C, width: 4, [
        LinkCapabilities2.supportedLinkSpeedsVector,
        LinkCapabilities2.crosslinkSupported,
        .init("Lower SKP OS Generation Supported Speeds Vector", 15, 9, .hwInit),
        .init("Lower SKP OS Reception Supported Speeds Vector", 22, 16, .hwInit),
        LinkCapabilities2.retimerPresenceDetectSupported,
        LinkCapabilities2.twoRetimersPresenceDetectSupported,
        LinkCapabilities2.drsSupported,
    ])
    /// Link Control 2 fields (§7.5.3.19).
    public enum LinkControl2 {
        public static let targetLinkSpeed = RegisterField("Target Link Speed", 3, 0, .rws, values: PCIExpressCapability.linkSpeeds)
        public static let enterCompliance = RegisterField("Enter Compliance", bit: 4, .rws)
        public static let hardwareAutonomousSpeedDisable = RegisterField("Hardware Autonomous Speed Disable", bit: 5, .rws)
        public static let selectableDeEmphasis = RegisterField("Selectable De-emphasis", bit: 6, .hwInit)
        public static let transmitMargin = RegisterField("Transmit Margin", 9, 7, .rws)
        public static let enterModifiedCompliance = RegisterField("Enter Modified Compliance", bit: 10, .rws)
        public static let complianceSOS = RegisterField("Compliance SOS", bit: 11, .rws)
        public static let compliancePresetDeEmphasis = RegisterField("Compliance Preset/De-emphasis", 15, 12, .rws)
    }
    public static let linkControl2 = RegisterLayout("Link Control 2", offset: 0x30, width: 2, [
        LinkControl2.targetLinkSpeed,
        LinkControl2.enterCompliance,
        LinkControl2.hardwareAutonomousSpeedDisable,
        LinkControl2.selectableDeEmphasis,
        LinkControl2.transmitMargin,
        LinkControl2.enterModifiedCompliance,
        LinkControl2.complianceSOS,
        LinkControl2.compliancePresetDeEmphasis,
    ])
    /// Link Status 2 fields (§7.5.3.20).
    public enum LinkStatus2 {
        public static let currentDeEmphasisLevel = RegisterField("Current De-emphasis Level", bit: 0, .ro)
        public static let equalizationComplete = RegisterField("Equalization 8.0 GT/s Complete", bit: 1, .ro)
        public static let equalizationPhase1Successful = RegisterField("Equalization 8.0 GT/s Phase 1 Successful", bit: 2, .ro)
        public static let equalizationPhase2Successful = RegisterField("Equalization 8.0 GT/s Phase 2 Successful", bit: 3, .ro)
        public static let equalizationPhase3Successful = RegisterField("Equalization 8.0 GT/s Phase 3 Successful", bit: 4, .ro)
        public static let linkEqualizationRequest = RegisterField("Link Equalization Request 8.0 GT/s", bit: 5, .rw1c)
        public static let retimerPresenceDetected = RegisterField("Retimer Presence Detected", bit: 6, .ro)
        public static let twoRetimersPresenceDetected = RegisterField("Two Retimers Presence Detected", bit: 7, .ro)
        public static let crosslinkResolution = RegisterField("Crosslink Resolution", 9, 8, .ro)
        public static let downstreamComponentPresence = RegisterField("Downstream Component Presence", 14, 12, .ro)
        public static let drsMessageReceived = RegisterField("DRS Message Received", bit: 15, .rw1c)
    }
    public static let linkStatus2 = RegisterLayout("Link Status 2", offset: 0x32, width: 2, [
        LinkStatus2.currentDeEmphasisLevel,
        LinkStatus2.equalizationComplete,
        LinkStatus2.equalizationPhase1Successful,
        LinkStatus2.equalizationPhase2Successful,
        LinkStatus2.equalizationPhase3Successful,
        LinkStatus2.linkEqualizationRequest,
        LinkStatus2.retimerPresenceDetected,
        LinkStatus2.twoRetimersPresenceDetected,
        LinkStatus2.crosslinkResolution,
        LinkStatus2.downstreamComponentPresence,
        LinkStatus2.drsMessageReceived,
    ])
    public static let slotCapabilities2 = RegisterLayout("Slot Capabilities 2", offset: 0x34, width: 4, [])
    public static let slotControl2 = RegisterLayout("Slot Control 2", offset: 0x38, width: 2, [])
    public static let slotStatus2 = RegisterLayout("Slot Status 2", offset: 0x3A, width: 2, [])

    /// The full structure (version 2, 0x3C bytes).
    public static let layout = RegisterBlockLayout(CapabilityID.pciExpress.name, capabilityHeaderRegisters + [
        capabilities, deviceCapabilities, deviceControl, deviceStatus, linkCapabilities, linkControl, linkStatus,
        slotCapabilities, slotControl, slotStatus, rootControl, rootCapabilities, rootStatus,
        deviceCapabilities2, deviceControl2, deviceStatus2, linkCapabilities2, linkControl2, linkStatus2,
        slotCapabilities2, slotControl2, slotStatus2,
    ])
}
