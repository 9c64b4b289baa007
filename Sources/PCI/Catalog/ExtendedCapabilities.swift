// Extended capabilities (PCIe 6.0 §7.6 onwards). Offsets are from the capability's
// header at 0x100 or above.

extension DVSECInstance {
    /// Reads the header of the DVSEC whose extended capability header is at `offset`;
    /// nil if the ten header bytes are not all inside `config`.
    public init?(config: ConfigSpace, offset: Int) {
        guard config.read(ExtendedCapabilityHeader.header, base: offset) != nil,
              let h1 = config.read(DVSECHeader.header1, base: offset),
              let h2 = config.read(DVSECHeader.header2, base: offset) else { return nil }
        let length = Int(DVSECHeader.length.extract(h1))
        self.init(offset: offset,
                  vendorID: UInt16(DVSECHeader.vendorID.extract(h1)),
                  revision: UInt8(DVSECHeader.revision.extract(h1)),
                  length: length,
                  dvsecID: UInt16(DVSECHeader.dvsecID.extract(h2)),
                  fitsInConfigSpace: offset + length <= config.count)
    }
}

/// Device Serial Number (PCIe 6.0 §7.9.3).
public enum DeviceSerialNumberCapability {
    public static let lower = RegisterLayout("Serial Number Register (Lower DW)", offset: 0x04, width: 4, [.init("Serial Number Lower", 31, 0, .ro)])
    public static let upper = RegisterLayout("Serial Number Register (Upper DW)", offset: 0x08, width: 4, [.init("Serial Number Upper", 31, 0, .ro)])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.deviceSerialNumber.name, [ExtendedCapabilityHeader.header, lower, upper])
}

/// Advanced Error Reporting (PCIe 6.0 §7.8.4).
public enum AERCapability {
    static let uncorrectableFields: [RegisterField] = [
        .init("Data Link Protocol Error", bit: 4, .rw1cs), .init("Surprise Down Error", bit: 5, .rw1cs),
        .init("Poisoned TLP Received", bit: 12, .rw1cs), .init("Flow Control Protocol Error", bit: 13, .rw1cs),
        .init("Completion Timeout", bit: 14, .rw1cs), .init("Completer Abort", bit: 15, .rw1cs),
        .init("Unexpected Completion", bit: 16, .rw1cs), .init("Receiver Overflow", bit: 17, .rw1cs),
        .init("Malformed TLP", bit: 18, .rw1cs), .init("ECRC Error", bit: 19, .rw1cs),
        .init("Unsupported Request Error", bit: 20, .rw1cs), .init("ACS Violation", bit: 21, .rw1cs),
        .init("Uncorrectable Internal Error", bit: 22, .rw1cs), .init("MC Blocked TLP", bit: 23, .rw1cs),
        .init("AtomicOp Egress Blocked", bit: 24, .rw1cs), .init("TLP Prefix Blocked Error", bit: 25, .rw1cs),
        .init("Poisoned TLP Egress Blocked", bit: 26, .rw1cs),
    ]
    static func retyped(_ fields: [RegisterField], _ access: RegisterAccess) -> [RegisterField] {
        fields.map { RegisterField($0.name, $0.msb, $0.lsb, access) }
    }
    static let correctableFields: [RegisterField] = [
        .init("Receiver Error", bit: 0, .rw1cs), .init("Bad TLP", bit: 6, .rw1cs), .init("Bad DLLP", bit: 7, .rw1cs),
        .init("REPLAY_NUM Rollover", bit: 8, .rw1cs), .init("Replay Timer Timeout", bit: 12, .rw1cs),
        .init("Advisory Non-Fatal Error", bit: 13, .rw1cs), .init("Corrected Internal Error", bit: 14, .rw1cs),
        .init("Header Log Overflow", bit: 15, .rw1cs),
    ]
    public static let uncorrectableStatus = RegisterLayout("Uncorrectable Error Status", offset: 0x04, width: 4, uncorrectableFields)
    public static let uncorrectableMask = RegisterLayout("Uncorrectable Error Mask", offset: 0x08, width: 4, retyped(uncorrectableFields, .rws))
    public static let uncorrectableSeverity = RegisterLayout("Uncorrectable Error Severity", offset: 0x0C, width: 4, retyped(uncorrectableFields, .rws))
    public static let correctableStatus = RegisterLayout("Correctable Error Status", offset: 0x10, width: 4, correctableFields)
    public static let correctableMask = RegisterLayout("Correctable Error Mask", offset: 0x14, width: 4, retyped(correctableFields, .rws))
    public static let capabilitiesAndControl = RegisterLayout("Advanced Error Capabilities and Control", offset: 0x18, width: 4, [
        .init("First Error Pointer", 4, 0, .rws), .init("ECRC Generation Capable", bit: 5, .ro),
        .init("ECRC Generation Enable", bit: 6, .rws), .init("ECRC Check Capable", bit: 7, .ro),
        .init("ECRC Check Enable", bit: 8, .rws), .init("Multiple Header Recording Capable", bit: 9, .ro),
        .init("Multiple Header Recording Enable", bit: 10, .rws), .init("TLP Prefix Log Present", bit: 11, .ro),
        .init("Completion Timeout Prefix/Header Log Capable", bit: 12, .ro),
    ])
    public static let headerLog = (0..<4).map { RegisterLayout("Header Log \($0)", offset: 0x1C + 4 * $0, width: 4, [.init("Header Log", 31, 0, .ro)]) }
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.advancedErrorReporting.name, [ExtendedCapabilityHeader.header, uncorrectableStatus,
        uncorrectableMask, uncorrectableSeverity, correctableStatus, correctableMask, capabilitiesAndControl] + headerLog)
}

/// Access Control Services (PCIe 6.0 §7.7.11).
public enum ACSCapability {
    static let bits = ["Source Validation", "Translation Blocking", "P2P Request Redirect", "P2P Completion Redirect",
                       "Upstream Forwarding", "P2P Egress Control", "Direct Translated P2P"]
    public static let capability = RegisterLayout("ACS Capability", offset: 0x04, width: 2,
        bits.enumerated().map { RegisterField($0.element, bit: $0.offset, .ro) } + [.init("Egress Control Vector Size", 15, 8, .hwInit)])
    public static let control = RegisterLayout("ACS Control", offset: 0x06, width: 2,
        bits.enumerated().map { RegisterField($0.element + " Enable", bit: $0.offset, .rw) })
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.accessControlServices.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// Alternative Routing-ID Interpretation (PCIe 6.0 §7.8.7).
public enum ARICapability {
    public static let capability = RegisterLayout("ARI Capability", offset: 0x04, width: 2, [
        .init("MFVC Function Groups Capability", bit: 0, .ro), .init("ACS Function Groups Capability", bit: 1, .ro),
        .init("Next Function Number", 15, 8, .ro),
    ])
    public static let control = RegisterLayout("ARI Control", offset: 0x06, width: 2, [
        .init("MFVC Function Groups Enable", bit: 0, .rw), .init("ACS Function Groups Enable", bit: 1, .rw),
        .init("Function Group", 6, 4, .rw),
    ])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.alternativeRoutingIDInterpretation.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// Latency Tolerance Reporting (PCIe 6.0 §7.8.2).
public enum LTRCapability {
    public static let maxSnoop = RegisterLayout("Max Snoop Latency", offset: 0x04, width: 2, [
        .init("Max Snoop LatencyValue", 9, 0, .rw), .init("Max Snoop LatencyScale", 12, 10, .rw),
    ])
    public static let maxNoSnoop = RegisterLayout("Max No-Snoop Latency", offset: 0x06, width: 2, [
        .init("Max No-Snoop LatencyValue", 9, 0, .rw), .init("Max No-Snoop LatencyScale", 12, 10, .rw),
    ])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.latencyToleranceReporting.name, [ExtendedCapabilityHeader.header, maxSnoop, maxNoSnoop])
}

/// The catalog layout for a capability, where one is declared.
public enum CapabilityCatalog {
    public static func layout(for header: CapabilityHeader, config: ConfigSpace) -> RegisterBlockLayout? {
        switch header.space {
        case .standard:
            switch CapabilityID(rawValue: UInt8(truncatingIfNeeded: header.id)) {
            case .powerManagement: return PowerManagementCapability.layout
            case .msi:
                let mc = config.read(MSICapability.messageControl, base: header.offset) ?? 0
                return MSICapability.layout(is64Bit: MSICapability.Control.is64Bit.extract(mc) == 1,
                                            perVectorMasking: MSICapability.Control.perVectorMasking.extract(mc) == 1)
            case .msix: return MSIXCapability.layout
            case .pciExpress: return PCIExpressCapability.layout
            case .vendorSpecific: return VendorSpecificCapability.layout
            default: return nil
            }
        case .extended:
            switch ExtendedCapabilityID(rawValue: header.id) {
            case .advancedErrorReporting: return AERCapability.layout
            case .deviceSerialNumber: return DeviceSerialNumberCapability.layout
            case .accessControlServices: return ACSCapability.layout
            case .alternativeRoutingIDInterpretation: return ARICapability.layout
            case .latencyToleranceReporting: return LTRCapability.layout
            case .designatedVendorSpecific: return RegisterBlockLayout(ExtendedCapabilityID.designatedVendorSpecific.name, DVSECHeader.registers)
            default: return RegisterBlockLayout("Extended Capability", [ExtendedCapabilityHeader.header])
            }
        }
    }
}
