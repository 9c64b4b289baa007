// Standard (conventional) capabilities: Power Management, MSI, MSI-X, PCI Express,
// Vendor-Specific. Offsets are from the capability's header.

/// The two bytes every standard capability starts with (PCI 3.0 §6.7).
public enum StandardCapabilityHeader {
    public static let capabilityID = RegisterLayout("Capability ID", offset: 0x00, width: 1, [.init("Capability ID", 7, 0, .ro)])
    public static let next = RegisterLayout("Next Capability Pointer", offset: 0x01, width: 1, [.init("Next Capability Pointer", 7, 0, .ro)])
    /// A capability pointer's two low bits are reserved: capabilities are DWORD aligned (PCI 3.0 §6.7).
    public static let pointerMask: UInt8 = 0xFC
    /// Standard capabilities live after the 64-byte header.
    public static let firstOffset = 0x40
}

/// The two bytes every standard capability starts with (PCI 3.0 §6.7).
public let capabilityHeaderRegisters: [RegisterLayout] = [StandardCapabilityHeader.capabilityID, StandardCapabilityHeader.next]

/// PCI Bus Power Management Interface 1.2 §3.2; PCIe 6.0 §7.5.2.
public enum PowerManagementCapability {
    public static let capabilities = RegisterLayout("Power Management Capabilities", offset: 0x02, width: 2, [
        .init("Version", 2, 0, .ro),
        .init("PME Clock", bit: 3, .ro),
        .init("Immediate_Readiness_on_Return_to_D0", bit: 4, .ro),
        .init("Device Specific Initialization", bit: 5, .ro),
        .init("Aux_Current", 8, 6, .ro),
        .init("D1_Support", bit: 9, .ro),
        .init("D2_Support", bit: 10, .ro),
        .init("PME_Support", 15, 11, .ro),
    ])
    public static let controlStatus = RegisterLayout("Power Management Control/Status", offset: 0x04, width: 2, [
        .init("PowerState", 1, 0, .rw, values: [0: "D0", 1: "D1", 2: "D2", 3: "D3hot"]),
        .init("No_Soft_Reset", bit: 3, .ro),
        .init("PME_En", bit: 8, .rws),
        .init("Data_Select", 12, 9, .rw),
        .init("Data_Scale", 14, 13, .ro),
        .init("PME_Status", bit: 15, .rw1cs),
    ])
    public static let bridgeExtensions = RegisterLayout("PMCSR_BSE", offset: 0x06, width: 1, [.init("PMCSR_BSE", 7, 0, .ro)])
    public static let data = RegisterLayout("Data", offset: 0x07, width: 1, [.init("Data", 7, 0, .ro)])
    public static let layout = RegisterBlockLayout(CapabilityID.powerManagement.name, capabilityHeaderRegisters + [capabilities, controlStatus, bridgeExtensions, data])
}

/// MSI capability (PCI 3.0 §6.8.1). Its layout depends on 64-bit addressing and
/// per-vector masking, both read from Message Control.
public enum MSICapability {
    public static let messageControl = RegisterLayout("Message Control", offset: 0x02, width: 2, [
        Control.enable,
        Control.multipleMessageCapable,
        .init("Multiple Message Enable", 6, 4, .rw),
        Control.is64Bit,
        Control.perVectorMasking,
        Control.extendedMessageData,
        .init("Extended Message Data Enable", bit: 10, .rw),
    ])

    /// Message Control fields as typed handles.
    public enum Control {
        public static let enable = RegisterField("MSI Enable", bit: 0, .rw)
        public static let multipleMessageCapable = RegisterField("Multiple Message Capable", 3, 1, .ro)
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
    public static let tableOffset = RegisterLayout("Table Offset/Table BIR", offset: 0x04, width: 4, [
        tableBIR, .init("Table Offset", 31, 3, .ro),
    ])
    public static let pbaOffset = RegisterLayout("PBA Offset/PBA BIR", offset: 0x08, width: 4, [
        pbaBIR, .init("PBA Offset", 31, 3, .ro),
    ])
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

    public static let capabilities = RegisterLayout("PCI Express Capabilities", offset: 0x02, width: 2, [
        .init("Capability Version", 3, 0, .ro),
        devicePortType,
        .init("Slot Implemented", bit: 8, .hwInit),
        .init("Interrupt Message Number", 13, 9, .ro),
        .init("Flit Mode Supported", bit: 15, .hwInit),
    ])
    public static let deviceCapabilities = RegisterLayout("Device Capabilities", offset: 0x04, width: 4, [
        .init("Max_Payload_Size Supported", 2, 0, .ro, values: [0: "128 bytes", 1: "256 bytes", 2: "512 bytes", 3: "1024 bytes", 4: "2048 bytes", 5: "4096 bytes"]),
        .init("Phantom Functions Supported", 4, 3, .ro),
        .init("Extended Tag Field Supported", bit: 5, .ro),
        .init("Endpoint L0s Acceptable Latency", 8, 6, .ro),
        .init("Endpoint L1 Acceptable Latency", 11, 9, .ro),
        .init("Role-Based Error Reporting", bit: 15, .ro),
        .init("ERR_COR Subclass Capable", bit: 16, .ro),
        .init("Captured Slot Power Limit Value", 25, 18, .ro),
        .init("Captured Slot Power Limit Scale", 27, 26, .ro),
        flrCapable,
    ])
    /// Device Control. Initiate Function Level Reset (bit 15) always reads 0 on
    /// endpoints; a write of 1 starts an FLR (§6.6.2).
    public static let deviceControl = RegisterLayout("Device Control", offset: 0x08, width: 2, [
        .init("Correctable Error Reporting Enable", bit: 0, .rw),
        .init("Non-Fatal Error Reporting Enable", bit: 1, .rw),
        .init("Fatal Error Reporting Enable", bit: 2, .rw),
        .init("Unsupported Request Reporting Enable", bit: 3, .rw),
        .init("Enable Relaxed Ordering", bit: 4, .rw, reset: 1),
        .init("Max_Payload_Size", 7, 5, .rw),
        .init("Extended Tag Field Enable", bit: 8, .rw),
        .init("Phantom Functions Enable", bit: 9, .rw),
        .init("Aux Power PM Enable", bit: 10, .rws),
        .init("Enable No Snoop", bit: 11, .rw, reset: 1),
        .init("Max_Read_Request_Size", 14, 12, .rw, reset: 2),
        initiateFLR,
    ])
    public static let deviceStatus = RegisterLayout("Device Status", offset: 0x0A, width: 2, [
        .init("Correctable Error Detected", bit: 0, .rw1c),
        .init("Non-Fatal Error Detected", bit: 1, .rw1c),
        .init("Fatal Error Detected", bit: 2, .rw1c),
        .init("Unsupported Request Detected", bit: 3, .rw1c),
        .init("AUX Power Detected", bit: 4, .ro),
        .init("Transactions Pending", bit: 5, .ro),
        .init("Emergency Power Reduction Detected", bit: 6, .rw1c),
    ])
    public static let linkCapabilities = RegisterLayout("Link Capabilities", offset: 0x0C, width: 4, [
        .init("Max Link Speed", 3, 0, .ro, values: linkSpeeds),
        .init("Maximum Link Width", 9, 4, .ro),
        .init("ASPM Support", 11, 10, .ro, values: [0: "not supported", 1: "L0s", 2: "L1", 3: "L0s and L1"]),
        .init("L0s Exit Latency", 14, 12, .ro),
        .init("L1 Exit Latency", 17, 15, .ro),
        .init("Clock Power Management", bit: 18, .ro),
        .init("Surprise Down Error Reporting Capable", bit: 19, .ro),
        .init("Data Link Layer Link Active Reporting Capable", bit: 20, .ro),
        .init("Link Bandwidth Notification Capability", bit: 21, .ro),
        .init("ASPM Optionality Compliance", bit: 22, .ro),
        .init("Port Number", 31, 24, .hwInit),
    ])
    /// Link Control; Link Disable (bit 4) on a downstream port takes the link down,
    /// a conventional reset of everything below it.
    public static let linkControl = RegisterLayout("Link Control", offset: 0x10, width: 2, [
        .init("ASPM Control", 1, 0, .rw),
        .init("PTM Propagation Delay Adaptation Interpretation B", bit: 2, .rw),
        .init("Read Completion Boundary", bit: 3, .rw),
        .init("Link Disable", bit: 4, .rw),
        .init("Retrain Link", bit: 5, .rw),
        .init("Common Clock Configuration", bit: 6, .rw),
        .init("Extended Synch", bit: 7, .rw),
        .init("Enable Clock Power Management", bit: 8, .rw),
        .init("Hardware Autonomous Width Disable", bit: 9, .rw),
        .init("Link Bandwidth Management Interrupt Enable", bit: 10, .rw),
        .init("Link Autonomous Bandwidth Interrupt Enable", bit: 11, .rw),
        .init("Flit Mode Disable", bit: 13, .rw),
        .init("DRS Signaling Control", 15, 14, .rw),
    ])
    public static let linkStatus = RegisterLayout("Link Status", offset: 0x12, width: 2, [
        .init("Current Link Speed", 3, 0, .ro, values: linkSpeeds),
        .init("Negotiated Link Width", 9, 4, .ro),
        .init("Link Training", bit: 11, .ro),
        .init("Slot Clock Configuration", bit: 12, .hwInit),
        .init("Data Link Layer Link Active", bit: 13, .ro),
        .init("Link Bandwidth Management Status", bit: 14, .rw1c),
        .init("Link Autonomous Bandwidth Status", bit: 15, .rw1c),
    ])
    public static let slotCapabilities = RegisterLayout("Slot Capabilities", offset: 0x14, width: 4, [
        .init("Attention Button Present", bit: 0, .hwInit), .init("Power Controller Present", bit: 1, .hwInit),
        .init("MRL Sensor Present", bit: 2, .hwInit), .init("Attention Indicator Present", bit: 3, .hwInit),
        .init("Power Indicator Present", bit: 4, .hwInit), .init("Hot-Plug Surprise", bit: 5, .hwInit),
        .init("Hot-Plug Capable", bit: 6, .hwInit), .init("Slot Power Limit Value", 14, 7, .hwInit),
        .init("Slot Power Limit Scale", 16, 15, .hwInit), .init("Electromechanical Interlock Present", bit: 17, .hwInit),
        .init("No Command Completed Support", bit: 18, .hwInit), .init("Physical Slot Number", 31, 19, .hwInit),
    ])
    public static let slotControl = RegisterLayout("Slot Control", offset: 0x18, width: 2, [
        .init("Attention Button Pressed Enable", bit: 0, .rw), .init("Power Fault Detected Enable", bit: 1, .rw),
        .init("MRL Sensor Changed Enable", bit: 2, .rw), .init("Presence Detect Changed Enable", bit: 3, .rw),
        .init("Command Completed Interrupt Enable", bit: 4, .rw), .init("Hot-Plug Interrupt Enable", bit: 5, .rw),
        .init("Attention Indicator Control", 7, 6, .rw), .init("Power Indicator Control", 9, 8, .rw),
        .init("Power Controller Control", bit: 10, .rw), .init("Electromechanical Interlock Control", bit: 11, .rw),
        .init("Data Link Layer State Changed Enable", bit: 12, .rw),
    ])
    public static let slotStatus = RegisterLayout("Slot Status", offset: 0x1A, width: 2, [
        .init("Attention Button Pressed", bit: 0, .rw1c), .init("Power Fault Detected", bit: 1, .rw1c),
        .init("MRL Sensor Changed", bit: 2, .rw1c), .init("Presence Detect Changed", bit: 3, .rw1c),
        .init("Command Completed", bit: 4, .rw1c), .init("MRL Sensor State", bit: 5, .ro),
        .init("Presence Detect State", bit: 6, .ro), .init("Electromechanical Interlock Status", bit: 7, .ro),
        .init("Data Link Layer State Changed", bit: 8, .rw1c),
    ])
    public static let rootControl = RegisterLayout("Root Control", offset: 0x1C, width: 2, [
        .init("System Error on Correctable Error Enable", bit: 0, .rw), .init("System Error on Non-Fatal Error Enable", bit: 1, .rw),
        .init("System Error on Fatal Error Enable", bit: 2, .rw), .init("PME Interrupt Enable", bit: 3, .rw),
        .init("CRS Software Visibility Enable", bit: 4, .rw),
    ])
    public static let rootCapabilities = RegisterLayout("Root Capabilities", offset: 0x1E, width: 2, [
        .init("CRS Software Visibility", bit: 0, .ro),
    ])
    public static let rootStatus = RegisterLayout("Root Status", offset: 0x20, width: 4, [
        .init("PME Requester ID", 15, 0, .ro), .init("PME Status", bit: 16, .rw1c), .init("PME Pending", bit: 17, .ro),
    ])
    public static let deviceCapabilities2 = RegisterLayout("Device Capabilities 2", offset: 0x24, width: 4, [
        .init("Completion Timeout Ranges Supported", 3, 0, .ro),
        .init("Completion Timeout Disable Supported", bit: 4, .ro),
        .init("ARI Forwarding Supported", bit: 5, .ro),
        .init("AtomicOp Routing Supported", bit: 6, .ro),
        .init("32-bit AtomicOp Completer Supported", bit: 7, .ro),
        .init("64-bit AtomicOp Completer Supported", bit: 8, .ro),
        .init("128-bit CAS Completer Supported", bit: 9, .ro),
        .init("No RO-enabled PR-PR Passing", bit: 10, .ro),
        .init("LTR Mechanism Supported", bit: 11, .ro),
        .init("TPH Completer Supported", 13, 12, .ro),
        .init("10-Bit Tag Completer Supported", bit: 16, .hwInit),
        .init("10-Bit Tag Requester Supported", bit: 17, .hwInit),
        .init("OBFF Supported", 19, 18, .hwInit),
        .init("Extended Fmt Field Supported", bit: 20, .ro),
        .init("End-End TLP Prefix Supported", bit: 21, .ro),
        .init("Max End-End TLP Prefixes", 23, 22, .hwInit),
        .init("Emergency Power Reduction Supported", 25, 24, .hwInit),
        .init("Emergency Power Reduction Initialization Required", bit: 26, .hwInit),
        .init("FRS Supported", bit: 31, .hwInit),
    ])
    public static let deviceControl2 = RegisterLayout("Device Control 2", offset: 0x28, width: 2, [
        .init("Completion Timeout Value", 3, 0, .rw),
        .init("Completion Timeout Disable", bit: 4, .rw),
        .init("ARI Forwarding Enable", bit: 5, .rw),
        .init("AtomicOp Requester Enable", bit: 6, .rw),
        .init("AtomicOp Egress Blocking", bit: 7, .rw),
        .init("IDO Request Enable", bit: 8, .rw),
        .init("IDO Completion Enable", bit: 9, .rw),
        .init("LTR Mechanism Enable", bit: 10, .rw),
        .init("Emergency Power Reduction Request", bit: 11, .rw),
        .init("10-Bit Tag Requester Enable", bit: 12, .rw),
        .init("OBFF Enable", 14, 13, .rw),
        .init("End-End TLP Prefix Blocking", bit: 15, .rw),
    ])
    public static let deviceStatus2 = RegisterLayout("Device Status 2", offset: 0x2A, width: 2, [])
    public static let linkCapabilities2 = RegisterLayout("Link Capabilities 2", offset: 0x2C, width: 4, [
        .init("Supported Link Speeds Vector", 7, 1, .ro),
        .init("Crosslink Supported", bit: 8, .ro),
        .init("Lower SKP OS Generation Supported Speeds Vector", 15, 9, .hwInit),
        .init("Lower SKP OS Reception Supported Speeds Vector", 22, 16, .hwInit),
        .init("Retimer Presence Detect Supported", bit: 23, .hwInit),
        .init("Two Retimers Presence Detect Supported", bit: 24, .hwInit),
        .init("DRS Supported", bit: 31, .hwInit),
    ])
    public static let linkControl2 = RegisterLayout("Link Control 2", offset: 0x30, width: 2, [
        .init("Target Link Speed", 3, 0, .rws, values: linkSpeeds),
        .init("Enter Compliance", bit: 4, .rws),
        .init("Hardware Autonomous Speed Disable", bit: 5, .rws),
        .init("Selectable De-emphasis", bit: 6, .hwInit),
        .init("Transmit Margin", 9, 7, .rws),
        .init("Enter Modified Compliance", bit: 10, .rws),
        .init("Compliance SOS", bit: 11, .rws),
        .init("Compliance Preset/De-emphasis", 15, 12, .rws),
    ])
    public static let linkStatus2 = RegisterLayout("Link Status 2", offset: 0x32, width: 2, [
        .init("Current De-emphasis Level", bit: 0, .ro),
        .init("Equalization 8.0 GT/s Complete", bit: 1, .ro),
        .init("Equalization 8.0 GT/s Phase 1 Successful", bit: 2, .ro),
        .init("Equalization 8.0 GT/s Phase 2 Successful", bit: 3, .ro),
        .init("Equalization 8.0 GT/s Phase 3 Successful", bit: 4, .ro),
        .init("Link Equalization Request 8.0 GT/s", bit: 5, .rw1c),
        .init("Retimer Presence Detected", bit: 6, .ro),
        .init("Two Retimers Presence Detected", bit: 7, .ro),
        .init("Crosslink Resolution", 9, 8, .ro),
        .init("Downstream Component Presence", 14, 12, .ro),
        .init("DRS Message Received", bit: 15, .rw1c),
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
