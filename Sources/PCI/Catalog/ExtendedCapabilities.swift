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
    /// The uncorrectable error bits, in bit order: Status, Mask and Severity have them at the same bits.
    public static let uncorrectableFields: [RegisterField] = [
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
    /// The correctable error bits, in bit order: Status and Mask have them at the same bits.
    public static let correctableFields: [RegisterField] = [
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
    public static let firstErrorPointer = RegisterField("First Error Pointer", 4, 0, .rws)
    /// Capabilities and Control bits 5-12, in bit order.
    public static let capabilityFlags: [RegisterField] = [
        .init("ECRC Generation Capable", bit: 5, .ro), .init("ECRC Generation Enable", bit: 6, .rws),
        .init("ECRC Check Capable", bit: 7, .ro), .init("ECRC Check Enable", bit: 8, .rws),
        .init("Multiple Header Recording Capable", bit: 9, .ro), .init("Multiple Header Recording Enable", bit: 10, .rws),
        .init("TLP Prefix Log Present", bit: 11, .ro), .init("Completion Timeout Prefix/Header Log Capable", bit: 12, .ro),
    ]
    public static let capabilitiesAndControl = RegisterLayout("Advanced Error Capabilities and Control", offset: 0x18, width: 4,
                                                              [firstErrorPointer] + capabilityFlags)
    /// Root Ports and Root Complex Event Collectors only (§7.8.4.9-11), so not in `layout`.
    public static let rootCommandFlags: [RegisterField] = [
        .init("Correctable Error Reporting Enable", bit: 0, .rw), .init("Non-Fatal Error Reporting Enable", bit: 1, .rw),
        .init("Fatal Error Reporting Enable", bit: 2, .rw),
    ]
    public static let rootErrorCommand = RegisterLayout("Root Error Command", offset: 0x2C, width: 4, rootCommandFlags)
    /// Root Error Status bits 0-6, in bit order.
    public static let rootStatusFlags: [RegisterField] = [
        .init("ERR_COR Received", bit: 0, .rw1cs), .init("Multiple ERR_COR Received", bit: 1, .rw1cs),
        .init("ERR_FATAL/NONFATAL Received", bit: 2, .rw1cs), .init("Multiple ERR_FATAL/NONFATAL Received", bit: 3, .rw1cs),
        .init("First Uncorrectable Fatal", bit: 4, .rw1cs), .init("Non-Fatal Error Messages Received", bit: 5, .rw1cs),
        .init("Fatal Error Messages Received", bit: 6, .rw1cs),
    ]
    public static let advancedErrorInterruptMessageNumber = RegisterField("Advanced Error Interrupt Message Number", 31, 27, .ro)
    public static let rootErrorStatus = RegisterLayout("Root Error Status", offset: 0x30, width: 4, rootStatusFlags + [advancedErrorInterruptMessageNumber])
    public static let errCorSource = RegisterField("ERR_COR Source Identification", 15, 0, .ro)
    public static let errFatalNonFatalSource = RegisterField("ERR_FATAL/NONFATAL Source Identification", 31, 16, .ro)
    public static let errorSourceIdentification = RegisterLayout("Error Source Identification", offset: 0x34, width: 4, [errCorSource, errFatalNonFatalSource])
    public static let headerLog = (0..<4).map { RegisterLayout("Header Log \($0)", offset: 0x1C + 4 * $0, width: 4, [.init("Header Log", 31, 0, .ro)]) }
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.advancedErrorReporting.name, [ExtendedCapabilityHeader.header, uncorrectableStatus,
        uncorrectableMask, uncorrectableSeverity, correctableStatus, correctableMask, capabilitiesAndControl] + headerLog)
}

/// Access Control Services (PCIe 6.0 §7.7.11).
public enum ACSCapability {
    static let bits = ["Source Validation", "Translation Blocking", "P2P Request Redirect", "P2P Completion Redirect",
                       "Upstream Forwarding", "P2P Egress Control", "Direct Translated P2P"]
    /// The seven features' bits 0-6 in Capability, and their enables at the same bits in Control.
    public static let capabilityFlags = bits.enumerated().map { RegisterField($0.element, bit: $0.offset, .ro) }
    public static let controlFlags = bits.enumerated().map { RegisterField($0.element + " Enable", bit: $0.offset, .rw) }
    public static let capability = RegisterLayout("ACS Capability", offset: 0x04, width: 2,
                                                  capabilityFlags + [.init("Egress Control Vector Size", 15, 8, .hwInit)])
    public static let control = RegisterLayout("ACS Control", offset: 0x06, width: 2, controlFlags)
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.accessControlServices.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// Alternative Routing-ID Interpretation (PCIe 6.0 §7.8.7).
public enum ARICapability {
    /// MFVC and ACS Function Groups: Capability bits 0-1, and their enables at the same bits in Control.
    public static let capabilityFlags: [RegisterField] = [.init("MFVC Function Groups Capability", bit: 0, .ro), .init("ACS Function Groups Capability", bit: 1, .ro)]
    public static let controlFlags: [RegisterField] = [.init("MFVC Function Groups Enable", bit: 0, .rw), .init("ACS Function Groups Enable", bit: 1, .rw)]
    public static let nextFunctionNumber = RegisterField("Next Function Number", 15, 8, .ro)
    public static let functionGroup = RegisterField("Function Group", 6, 4, .rw)
    public static let capability = RegisterLayout("ARI Capability", offset: 0x04, width: 2, capabilityFlags + [nextFunctionNumber])
    public static let control = RegisterLayout("ARI Control", offset: 0x06, width: 2, controlFlags + [functionGroup])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.alternativeRoutingIDInterpretation.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// Latency Tolerance Reporting (PCIe 6.0 §7.8.2).
public enum LTRCapability {
    /// The two fields both latency registers have (§7.8.2.2, §7.8.2.3): the latency is Value × 32^Scale ns.
    public enum Latency {
        public static let value = RegisterField("LatencyValue", 9, 0, .rw)
        public static let scale = RegisterField("LatencyScale", 12, 10, .rw)
    }
    /// A latency register, its fields named after it ("Max Snoop LatencyValue").
    static func latency(_ kind: String, offset: Int) -> RegisterLayout {
        RegisterLayout("\(kind) Latency", offset: offset, width: 2,
                       [Latency.value, Latency.scale].map { RegisterField("\(kind) \($0.name)", $0.msb, $0.lsb, $0.access) })
    }
    public static let maxSnoop = latency("Max Snoop", offset: 0x04)
    public static let maxNoSnoop = latency("Max No-Snoop", offset: 0x06)
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.latencyToleranceReporting.name, [ExtendedCapabilityHeader.header, maxSnoop, maxNoSnoop])
}

/// Secondary PCI Express (PCIe 6.0 §7.7.3).
public enum SecondaryPCIeCapability {
    public enum LinkControl3 {
        public static let performEqualization = RegisterField("Perform Equalization", bit: 0, .rw)
        public static let equalizationRequestInterruptEnable = RegisterField("Link Equalization Request Interrupt Enable", bit: 1, .rw)
    }
    public static let linkControl3 = RegisterLayout("Link Control 3", offset: 0x04, width: 4, [
        LinkControl3.performEqualization, LinkControl3.equalizationRequestInterruptEnable,
        .init("Enable Lower SKP OS Generation Vector", 15, 9, .rw),
    ])
    /// One bit per lane: an error was detected on that lane.
    public static let laneErrorStatus = RegisterLayout("Lane Error Status", offset: 0x08, width: 4, [.init("Lane Error Status", 31, 0, .rw1cs)])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.secondaryPCIExpress.name, [ExtendedCapabilityHeader.header, linkControl3, laneErrorStatus])
}

/// Address Translation Services (PCIe 6.0 §10.5.1).
public enum ATSCapability {
    public static let invalidateQueueDepth = RegisterField("Invalidate Queue Depth", 4, 0, .ro)
    public static let capability = RegisterLayout("ATS Capability", offset: 0x04, width: 2, [
        invalidateQueueDepth, .init("Page Aligned Request", bit: 5, .ro), .init("Global Invalidate Supported", bit: 6, .ro),
        .init("Relaxed Ordering Supported", bit: 7, .ro),
    ])
    public enum Control {
        public static let smallestTranslationUnit = RegisterField("Smallest Translation Unit (STU)", 4, 0, .rw)
        public static let enable = RegisterField("Enable", bit: 15, .rw)
    }
    public static let control = RegisterLayout("ATS Control", offset: 0x06, width: 2, [Control.smallestTranslationUnit, Control.enable])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.addressTranslationServices.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// Page Request Interface (PCIe 6.0 §10.5.2).
public enum PRICapability {
    public enum Control {
        public static let enable = RegisterField("Enable", bit: 0, .rw)
        public static let reset = RegisterField("Reset", bit: 1, .rw)
    }
    public static let control = RegisterLayout("Page Request Control", offset: 0x04, width: 2, [Control.enable, Control.reset])
    public enum Status {
        public static let responseFailure = RegisterField("Response Failure", bit: 0, .rw1c)
        public static let unexpectedGroupIndex = RegisterField("Unexpected Page Request Group Index", bit: 1, .rw1c)
        public static let stopped = RegisterField("Stopped", bit: 8, .ro)
    }
    public static let status = RegisterLayout("Page Request Status", offset: 0x06, width: 2, [
        Status.responseFailure, Status.unexpectedGroupIndex, Status.stopped, .init("PRG Response PASID Required", bit: 15, .ro),
    ])
    public static let capacity = RegisterLayout("Outstanding Page Request Capacity", offset: 0x08, width: 4,
                                                [.init("Outstanding Page Request Capacity", 31, 0, .ro)])
    public static let allocation = RegisterLayout("Outstanding Page Request Allocation", offset: 0x0C, width: 4,
                                                  [.init("Outstanding Page Request Allocation", 31, 0, .rw)])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.pageRequestInterface.name, [ExtendedCapabilityHeader.header, control, status, capacity, allocation])
}

/// Process Address Space ID (PCIe 6.0 §7.8.8).
public enum PASIDCapability {
    public enum Capability {
        public static let executePermission = RegisterField("Execute Permission Supported", bit: 1, .ro)
        public static let privilegedMode = RegisterField("Privileged Mode Supported", bit: 2, .ro)
        public static let maxPASIDWidth = RegisterField("Max PASID Width", 12, 8, .ro)
    }
    public static let capability = RegisterLayout("PASID Capability", offset: 0x04, width: 2,
                                                  [Capability.executePermission, Capability.privilegedMode, Capability.maxPASIDWidth])
    public enum Control {
        public static let enable = RegisterField("PASID Enable", bit: 0, .rw)
        public static let executePermission = RegisterField("Execute Permission Enable", bit: 1, .rw)
        public static let privilegedMode = RegisterField("Privileged Mode Enable", bit: 2, .rw)
    }
    public static let control = RegisterLayout("PASID Control", offset: 0x06, width: 2,
                                               [Control.enable, Control.executePermission, Control.privilegedMode])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.processAddressSpaceID.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// L1 PM Substates (PCIe 6.0 §7.8.3). Control 1's four enables sit at the bits of Capability's four "Supported" bits.
public enum L1PMSubstatesCapability {
    public enum Capability {
        public static let pciPML12 = RegisterField("PCI-PM L1.2 Supported", bit: 0, .hwInit)
        public static let pciPML11 = RegisterField("PCI-PM L1.1 Supported", bit: 1, .hwInit)
        public static let aspmL12 = RegisterField("ASPM L1.2 Supported", bit: 2, .hwInit)
        public static let aspmL11 = RegisterField("ASPM L1.1 Supported", bit: 3, .hwInit)
        /// PCI-PM L1.2, PCI-PM L1.1, ASPM L1.2, ASPM L1.1.
        public static let substates = [pciPML12, pciPML11, aspmL12, aspmL11]
        public static let l1PMSubstates = RegisterField("L1 PM Substates Supported", bit: 4, .hwInit)
        public static let commonModeRestoreTime = RegisterField("Port Common_Mode_Restore_Time", 15, 8, .hwInit)
        public static let powerOnScale = RegisterField("Port T_POWER_ON Scale", 17, 16, .hwInit)
        public static let powerOnValue = RegisterField("Port T_POWER_ON Value", 23, 19, .hwInit)
    }
    public static let capability = RegisterLayout("L1 PM Substates Capability", offset: 0x04, width: 4, Capability.substates + [
        Capability.l1PMSubstates, .init("Link Activation Supported", bit: 5, .hwInit),
        Capability.commonModeRestoreTime, Capability.powerOnScale, Capability.powerOnValue,
    ])
    public enum Control1 {
        /// PCI-PM L1.2, PCI-PM L1.1, ASPM L1.2, ASPM L1.1 Enable, at the bits of their "Supported" bits.
        public static let substates = Capability.substates.map {
            RegisterField($0.name.dropLast(" Supported".count) + " Enable", $0.msb, $0.lsb, .rw)
        }
        public static let commonModeRestoreTime = RegisterField("Common_Mode_Restore_Time", 15, 8, .rw)
        public static let ltrThresholdValue = RegisterField("LTR_L1.2_THRESHOLD_Value", 25, 16, .rw)
        public static let ltrThresholdScale = RegisterField("LTR_L1.2_THRESHOLD_Scale", 31, 29, .rw)
    }
    public static let control1 = RegisterLayout("L1 PM Substates Control 1", offset: 0x08, width: 4, Control1.substates + [
        .init("Link Activation Interrupt Enable", bit: 4, .rw), .init("Link Activation Control", bit: 5, .rw),
        Control1.commonModeRestoreTime, Control1.ltrThresholdValue, Control1.ltrThresholdScale,
    ])
    public enum Control2 {
        public static let powerOnScale = RegisterField("T_POWER_ON Scale", 1, 0, .rw)
        public static let powerOnValue = RegisterField("T_POWER_ON Value", 7, 3, .rw)
    }
    public static let control2 = RegisterLayout("L1 PM Substates Control 2", offset: 0x0C, width: 4, [Control2.powerOnScale, Control2.powerOnValue])
    public static let status = RegisterLayout("L1 PM Substates Status", offset: 0x10, width: 4, [.init("Link Activation Status", bit: 0, .rw1c)])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.l1PMSubstates.name, [ExtendedCapabilityHeader.header, capability, control1, control2, status])
}

/// Precision Time Measurement (PCIe 6.0 §7.9.15).
public enum PTMCapability {
    public enum Capability {
        public static let requester = RegisterField("PTM Requester Capable", bit: 0, .ro)
        public static let responder = RegisterField("PTM Responder Capable", bit: 1, .ro)
        public static let root = RegisterField("PTM Root Capable", bit: 2, .ro)
        /// 0: not implemented; 0xFF: greater than 254 ns; else the period in ns.
        public static let localClockGranularity = RegisterField("Local Clock Granularity", 15, 8, .ro)
    }
    public static let capability = RegisterLayout("PTM Capability", offset: 0x04, width: 4, [
        Capability.requester, Capability.responder, Capability.root, .init("ePTM Capable", bit: 3, .ro),
        Capability.localClockGranularity,
    ])
    public enum Control {
        public static let enable = RegisterField("PTM Enable", bit: 0, .rw)
        public static let rootSelect = RegisterField("Root Select", bit: 1, .rw)
        /// 0: unknown; 0xFF: greater than 254 ns; else the period in ns.
        public static let effectiveGranularity = RegisterField("Effective Granularity", 15, 8, .rw)
    }
    public static let control = RegisterLayout("PTM Control", offset: 0x08, width: 4, [Control.enable, Control.rootSelect, Control.effectiveGranularity])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.precisionTimeMeasurement.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// Downstream Port Containment (PCIe 6.0 §7.9.14).
public enum DPCCapability {
    public enum Capability {
        public static let interruptMessageNumber = RegisterField("DPC Interrupt Message Number", 4, 0, .ro)
        public static let rpExtensions = RegisterField("RP Extensions for DPC", bit: 5, .ro)
        public static let poisonedTLPEgressBlocking = RegisterField("Poisoned TLP Egress Blocking Supported", bit: 6, .ro)
        public static let softwareTriggering = RegisterField("DPC Software Triggering Supported", bit: 7, .ro)
        public static let rpPIOLogSize = RegisterField("RP PIO Log Size", 11, 8, .ro)
        public static let dlActiveErrCor = RegisterField("DL_Active ERR_COR Signaling Supported", bit: 12, .ro)
    }
    public static let capability = RegisterLayout("DPC Capability", offset: 0x04, width: 2, [
        Capability.interruptMessageNumber, Capability.rpExtensions, Capability.poisonedTLPEgressBlocking,
        Capability.softwareTriggering, Capability.rpPIOLogSize, Capability.dlActiveErrCor,
    ])
    public enum Control {
        public static let triggerEnable = RegisterField("DPC Trigger Enable", 1, 0, .rw)
        public static let completionControl = RegisterField("DPC Completion Control", bit: 2, .rw)
        public static let interruptEnable = RegisterField("DPC Interrupt Enable", bit: 3, .rw)
        public static let errCorEnable = RegisterField("DPC ERR_COR Enable", bit: 4, .rw)
        public static let poisonedTLPEgressBlocking = RegisterField("Poisoned TLP Egress Blocking Enable", bit: 5, .rw)
        public static let softwareTrigger = RegisterField("DPC Software Trigger", bit: 6, .rw)
        public static let dlActiveErrCor = RegisterField("DL_Active ERR_COR Enable", bit: 7, .rw)
    }
    public static let control = RegisterLayout("DPC Control", offset: 0x06, width: 2, [
        Control.triggerEnable, Control.completionControl, Control.interruptEnable, Control.errCorEnable,
        Control.poisonedTLPEgressBlocking, Control.softwareTrigger, Control.dlActiveErrCor,
    ])
    public enum Status {
        public static let triggerStatus = RegisterField("DPC Trigger Status", bit: 0, .rw1cs)
        public static let triggerReason = RegisterField("DPC Trigger Reason", 2, 1, .ro)
        public static let interruptStatus = RegisterField("DPC Interrupt Status", bit: 3, .rw1cs)
        public static let rpBusy = RegisterField("DPC RP Busy", bit: 4, .ro)
        public static let triggerReasonExtension = RegisterField("DPC Trigger Reason Extension", 6, 5, .ro)
        public static let rpPIOFirstErrorPointer = RegisterField("RP PIO First Error Pointer", 12, 8, .rw1cs)
    }
    public static let status = RegisterLayout("DPC Status", offset: 0x08, width: 2, [
        Status.triggerStatus, Status.triggerReason, Status.interruptStatus, Status.rpBusy,
        Status.triggerReasonExtension, Status.rpPIOFirstErrorPointer,
    ])
    public static let errorSourceID = RegisterLayout("DPC Error Source ID", offset: 0x0A, width: 2, [.init("DPC Error Source ID", 15, 0, .ro)])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.downstreamPortContainment.name, [ExtendedCapabilityHeader.header, capability, control, status, errorSourceID])
}

/// TPH Requester (PCIe 6.0 §7.9.13).
public enum TPHRequesterCapability {
    public enum Capability {
        public static let interruptVectorMode = RegisterField("Interrupt Vector Mode Supported", bit: 1, .ro)
        public static let deviceSpecificMode = RegisterField("Device Specific Mode Supported", bit: 2, .ro)
        public static let extendedRequester = RegisterField("Extended TPH Requester Supported", bit: 8, .ro)
        public static let stTableLocation = RegisterField("ST Table Location", 10, 9, .ro,
            values: [0: "not present", 1: "in the TPH Requester Capability structure", 2: "in the MSI-X Table", 3: "reserved"])
    }
    public static let capability = RegisterLayout("TPH Requester Capability", offset: 0x04, width: 4, [
        .init("No ST Mode Supported", bit: 0, .ro), Capability.interruptVectorMode, Capability.deviceSpecificMode,
        Capability.extendedRequester, Capability.stTableLocation, .init("ST Table Size", 26, 16, .ro),
    ])
    public static let control = RegisterLayout("TPH Requester Control", offset: 0x08, width: 4, [
        .init("ST Mode Select", 2, 0, .rw), .init("TPH Requester Enable", 9, 8, .rw),
    ])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.tphRequester.name, [ExtendedCapabilityHeader.header, capability, control])
}

/// Resizable BAR and VF Resizable BAR (PCIe 6.0 §7.8.6, §9.3.7.5): a Capability and a Control register per
/// resizable BAR. A size code k means 2^k MB (k = 0: 1 MB).
public enum ResizableBARCapability {
    /// Capability bit 4 + k: size code k (1 MB to 128 TB) supported.
    public static let supportedSizes = RegisterField("Supported BAR Sizes", 31, 4, .ro)
    public enum Control {
        public static let barIndex = RegisterField("BAR Index", 2, 0, .ro)
        /// In the first Control register only.
        public static let numberOfBARs = RegisterField("Number of Resizable BARs", 7, 5, .ro)
        public static let barSize = RegisterField("BAR Size", 13, 8, .rw)
        /// Control bit 16 + j: size code 28 + j (256 TB and up) supported.
        public static let supportedSizes = RegisterField("Supported BAR Sizes (256 TB and up)", 31, 16, .ro)
    }
    /// Resizable BAR `n`'s (0 to 5) Capability register.
    public static func capability(_ n: Int) -> RegisterLayout {
        RegisterLayout("Resizable BAR Capability \(n)", offset: 0x04 + 8 * n, width: 4, [supportedSizes])
    }
    /// Resizable BAR `n`'s (0 to 5) Control register.
    public static func control(_ n: Int) -> RegisterLayout {
        RegisterLayout("Resizable BAR Control \(n)", offset: 0x08 + 8 * n, width: 4,
                       [Control.barIndex] + (n == 0 ? [Control.numberOfBARs] : []) + [Control.barSize, Control.supportedSizes])
    }
    /// The layout for the BAR count the first Control register gives (1 to 6; anything else is out of
    /// specification and shows the first pair only).
    public static func layout(name: String, count: Int) -> RegisterBlockLayout {
        let n = (1...6).contains(count) ? count : 1
        return RegisterBlockLayout(name, [ExtendedCapabilityHeader.header] + (0..<n).flatMap { [capability($0), control($0)] })
    }
}

/// Single Root I/O Virtualization (PCIe 6.0 §9.3.3).
public enum SRIOVCapability {
    public enum Capabilities {
        public static let vfMigrationCapable = RegisterField("VF Migration Capable", bit: 0, .ro)
        public static let vf10BitTagRequester = RegisterField("VF 10-Bit Tag Requester Supported", bit: 2, .ro)
        public static let vfMigrationInterruptMessageNumber = RegisterField("VF Migration Interrupt Message Number", 31, 21, .ro)
    }
    public static let capabilities = RegisterLayout("SR-IOV Capabilities", offset: 0x04, width: 4, [
        Capabilities.vfMigrationCapable, .init("ARI Capable Hierarchy Preserved", bit: 1, .ro),
        Capabilities.vf10BitTagRequester, Capabilities.vfMigrationInterruptMessageNumber,
    ])
    public enum Control {
        public static let vfEnable = RegisterField("VF Enable", bit: 0, .rw)
        public static let vfMigrationEnable = RegisterField("VF Migration Enable", bit: 1, .rw)
        public static let vfMigrationInterruptEnable = RegisterField("VF Migration Interrupt Enable", bit: 2, .rw)
        public static let vfMSE = RegisterField("VF MSE", bit: 3, .rw)
        public static let ariCapableHierarchy = RegisterField("ARI Capable Hierarchy", bit: 4, .rw)
        public static let vf10BitTagRequester = RegisterField("VF 10-Bit Tag Requester Enable", bit: 5, .rw)
    }
    public static let control = RegisterLayout("SR-IOV Control", offset: 0x08, width: 2, [
        Control.vfEnable, Control.vfMigrationEnable, Control.vfMigrationInterruptEnable, Control.vfMSE,
        Control.ariCapableHierarchy, Control.vf10BitTagRequester,
    ])
    public static let vfMigrationStatus = RegisterField("VF Migration Status", bit: 0, .rw1c)
    public static let status = RegisterLayout("SR-IOV Status", offset: 0x0A, width: 2, [vfMigrationStatus])
    /// The registers that are one whole-register count or ID each, in offset order.
    static func whole(_ name: String, _ offset: Int, _ width: Int, _ access: RegisterAccess) -> RegisterLayout {
        RegisterLayout(name, offset: offset, width: width, [.init(name, width * 8 - 1, 0, access)])
    }
    public static let initialVFs = whole("InitialVFs", 0x0C, 2, .hwInit)
    public static let totalVFs = whole("TotalVFs", 0x0E, 2, .hwInit)
    public static let numVFs = whole("NumVFs", 0x10, 2, .rw)
    public static let functionDependencyLink = whole("Function Dependency Link", 0x12, 1, .ro)
    public static let firstVFOffset = whole("First VF Offset", 0x14, 2, .ro)
    public static let vfStride = whole("VF Stride", 0x16, 2, .ro)
    public static let vfDeviceID = whole("VF Device ID", 0x1A, 2, .ro)
    public static let supportedPageSizes = whole("Supported Page Sizes", 0x1C, 4, .ro)
    public static let systemPageSize = whole("System Page Size", 0x20, 4, .rw)
    /// VF BAR `n` (0 to 5): the format of a memory BAR (`PCIHeader.BAR`'s fields).
    public static func vfBAR(_ n: Int) -> RegisterLayout {
        RegisterLayout("VF BAR\(n)", offset: 0x24 + 4 * n, width: 4, PCIHeader.bar(0).fields)
    }
    public enum MigrationState {
        public static let bir = RegisterField("VF Migration State BIR", 2, 0, .ro)
        public static let offset = RegisterField("VF Migration State Offset", 31, 3, .ro)
    }
    public static let vfMigrationStateArrayOffset = RegisterLayout("VF Migration State Array Offset", offset: 0x3C, width: 4,
                                                                   [MigrationState.bir, MigrationState.offset])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.singleRootIOV.name, [ExtendedCapabilityHeader.header, capabilities, control,
        status, initialVFs, totalVFs, numVFs, functionDependencyLink, firstVFOffset, vfStride, vfDeviceID, supportedPageSizes,
        systemPageSize] + (0..<6).map(vfBAR) + [vfMigrationStateArrayOffset])
}

/// Data Object Exchange (PCIe 6.0 §7.9.24); the mailboxes (Write/Read Data Mailbox) are not state and not decoded.
public enum DOECapability {
    public static let interruptSupport = RegisterField("DOE Interrupt Support", bit: 0, .ro)
    public static let interruptMessageNumber = RegisterField("DOE Interrupt Message Number", 11, 1, .ro)
    public static let capabilities = RegisterLayout("DOE Capabilities", offset: 0x04, width: 4, [interruptSupport, interruptMessageNumber])
    public static let interruptEnable = RegisterField("DOE Interrupt Enable", bit: 1, .rw)
    public static let control = RegisterLayout("DOE Control", offset: 0x08, width: 4, [
        .init("DOE Abort", bit: 0, .rw), interruptEnable, .init("DOE Go", bit: 31, .rw),
    ])
    public enum Status {
        public static let busy = RegisterField("DOE Busy", bit: 0, .ro)
        public static let interruptStatus = RegisterField("DOE Interrupt Status", bit: 1, .rw1c)
        public static let error = RegisterField("DOE Error", bit: 2, .ro)
        public static let dataObjectReady = RegisterField("Data Object Ready", bit: 31, .ro)
    }
    public static let status = RegisterLayout("DOE Status", offset: 0x0C, width: 4, [Status.busy, Status.interruptStatus, Status.error, Status.dataObjectReady])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.dataObjectExchange.name, [ExtendedCapabilityHeader.header, capabilities, control, status])
}

/// Vendor-Specific Extended Capability (PCIe 6.0 §7.9.5): its header; the rest is the vendor's.
public enum VendorSpecificExtendedCapability {
    public static let vsecID = RegisterField("VSEC ID", 15, 0, .ro)
    public static let vsecRev = RegisterField("VSEC Rev", 19, 16, .ro)
    public static let vsecLength = RegisterField("VSEC Length", 31, 20, .ro)
    public static let header = RegisterLayout("Vendor-Specific Header", offset: 0x04, width: 4, [vsecID, vsecRev, vsecLength])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.vendorSpecific.name, [ExtendedCapabilityHeader.header, header])
}

/// Virtual Channel and Multi-Function Virtual Channel (PCIe 6.0 §7.9.1, §7.9.2): the port registers, then one
/// VC Resource Capability/Control/Status triple per VC (12 bytes apart from 0x10).
public enum VirtualChannelCapability {
    public enum Capability1 {
        public static let extendedVCCount = RegisterField("Extended VC Count", 2, 0, .ro)
        public static let lowPriorityExtendedVCCount = RegisterField("Low Priority Extended VC Count", 6, 4, .ro)
        public static let referenceClock = RegisterField("Reference Clock", 9, 8, .ro)
        public static let portArbitrationTableEntrySize = RegisterField("Port Arbitration Table Entry Size", 11, 10, .ro)
    }
    public static let capability1 = RegisterLayout("Port VC Capability Register 1", offset: 0x04, width: 4, [
        Capability1.extendedVCCount, Capability1.lowPriorityExtendedVCCount, Capability1.referenceClock, Capability1.portArbitrationTableEntrySize,
    ])
    public enum Capability2 {
        /// One bit per scheme: Hardware Fixed, WRR 32, 64 and 128 phases; 4-7 reserved.
        public static let vcArbitrationCapability = RegisterField("VC Arbitration Capability", 7, 0, .ro)
        /// In 16-byte units from the capability's start; 0: none.
        public static let vcArbitrationTableOffset = RegisterField("VC Arbitration Table Offset", 31, 24, .ro)
    }
    public static let capability2 = RegisterLayout("Port VC Capability Register 2", offset: 0x08, width: 4, [
        Capability2.vcArbitrationCapability, Capability2.vcArbitrationTableOffset,
    ])
    public static let vcArbitrationSelect = RegisterField("VC Arbitration Select", 3, 1, .rw)
    public static let control = RegisterLayout("Port VC Control", offset: 0x0C, width: 2, [.init("Load VC Arbitration Table", bit: 0, .rw), vcArbitrationSelect])
    public static let vcArbitrationTableStatus = RegisterField("VC Arbitration Table Status", bit: 0, .ro)
    public static let status = RegisterLayout("Port VC Status", offset: 0x0E, width: 2, [vcArbitrationTableStatus])

    /// The registers of VC `n` (0 through Extended VC Count).
    public struct Resource: Sendable {
        public let capability: RegisterLayout, control: RegisterLayout, status: RegisterLayout
        public init(_ n: Int) {
            let base = 0x10 + 12 * n
            capability = RegisterLayout("VC Resource Capability Register (\(n))", offset: base, width: 4, [
                ResourceCapability.portArbitrationCapability, ResourceCapability.rejectSnoopTransactions,
                ResourceCapability.maximumTimeSlots, ResourceCapability.portArbitrationTableOffset,
            ])
            control = RegisterLayout("VC Resource Control Register (\(n))", offset: base + 4, width: 4, [
                ResourceControl.tcVCMap, .init("Load Port Arbitration Table", bit: 16, .rw), ResourceControl.portArbitrationSelect,
                ResourceControl.vcID, ResourceControl.vcEnable,
            ])
            status = RegisterLayout("VC Resource Status Register (\(n))", offset: base + 10, width: 2, [
                ResourceStatus.portArbitrationTableStatus, ResourceStatus.vcNegotiationPending,
            ])
        }
    }
    public enum ResourceCapability {
        /// One bit per scheme: Hardware Fixed, WRR 32, 64, 128 phases, Time-based WRR 128, WRR 256; 6-7 reserved.
        public static let portArbitrationCapability = RegisterField("Port Arbitration Capability", 7, 0, .ro)
        public static let rejectSnoopTransactions = RegisterField("Reject Snoop Transactions", bit: 15, .hwInit)
        /// Encoded N-1.
        public static let maximumTimeSlots = RegisterField("Maximum Time Slots", 22, 16, .hwInit)
        public static let portArbitrationTableOffset = RegisterField("Port Arbitration Table Offset", 31, 24, .ro)
    }
    public enum ResourceControl {
        public static let tcVCMap = RegisterField("TC/VC Map", 7, 0, .rw)
        public static let portArbitrationSelect = RegisterField("Port Arbitration Select", 19, 17, .rw)
        public static let vcID = RegisterField("VC ID", 26, 24, .rw)
        public static let vcEnable = RegisterField("VC Enable", bit: 31, .rw)
    }
    public enum ResourceStatus {
        public static let portArbitrationTableStatus = RegisterField("Port Arbitration Table Status", bit: 0, .ro)
        public static let vcNegotiationPending = RegisterField("VC Negotiation Pending", bit: 1, .ro)
    }
    /// The structure with VCs 0 through `extendedVCCount` (0-7).
    public static func layout(name: String, extendedVCCount: Int) -> RegisterBlockLayout {
        RegisterBlockLayout(name, [ExtendedCapabilityHeader.header, capability1, capability2, control, status]
            + (0...min(max(extendedVCCount, 0), 7)).flatMap { n -> [RegisterLayout] in
                let r = Resource(n)
                return [r.capability, r.control, r.status]
            })
    }
}

/// Root Complex Link Declaration (PCIe 6.0 §7.9.8): the element's self description, then one 16-byte link entry
/// per link from 0x10.
public enum RCLinkDeclarationCapability {
    public enum ElementSelfDescription {
        /// Bits 3:0 are Element Type; lspci 3.9 reads the whole low byte (bits 7:4 are reserved).
        public static let elementType = RegisterField("Element Type", 3, 0, .ro)
        public static let numberOfLinkEntries = RegisterField("Number of Link Entries", 15, 8, .hwInit)
        public static let componentID = RegisterField("Component ID", 23, 16, .hwInit)
        public static let portNumber = RegisterField("Port Number", 31, 24, .hwInit)
    }
    public static let elementSelfDescription = RegisterLayout("Element Self Description", offset: 0x04, width: 4, [
        ElementSelfDescription.elementType, ElementSelfDescription.numberOfLinkEntries, ElementSelfDescription.componentID, ElementSelfDescription.portNumber,
    ])
    public enum LinkDescription {
        public static let linkValid = RegisterField("Link Valid", bit: 0, .hwInit)
        /// 0: the link points at memory-mapped space (an RCRB), 1: at configuration space.
        public static let linkType = RegisterField("Link Type", bit: 1, .hwInit)
        public static let associateRCRBHeader = RegisterField("Associate RCRB Header", bit: 2, .hwInit)
        public static let targetComponentID = RegisterField("Target Component ID", 23, 16, .hwInit)
        public static let targetPortNumber = RegisterField("Target Port Number", 31, 24, .hwInit)
    }
    /// A configuration-space Link Address (§7.9.8.3): N bits of bus number from bit 20, then the base address.
    public enum ConfigurationLinkAddress {
        /// Bus number bits: 1-7 as they stand, 0 meaning 8.
        public static let n = RegisterField("N", 2, 0, .hwInit)
        public static let function = RegisterField("Function Number", 14, 12, .hwInit)
        public static let device = RegisterField("Device Number", 19, 15, .hwInit)
        /// The low N bits of this field are the bus number.
        public static let bus = RegisterField("Bus Number", 27, 20, .hwInit)
    }
    /// Link entry `n`'s Link Description and 64-bit Link Address.
    public static func linkDescription(_ n: Int) -> RegisterLayout {
        RegisterLayout("Link Description (\(n))", offset: 0x10 + 16 * n, width: 4, [
            LinkDescription.linkValid, LinkDescription.linkType, LinkDescription.associateRCRBHeader,
            LinkDescription.targetComponentID, LinkDescription.targetPortNumber,
        ])
    }
    public static func linkAddress(_ n: Int) -> RegisterLayout {
        RegisterLayout("Link Address (\(n))", offset: 0x18 + 16 * n, width: 8, [.init("Link Address", 63, 0, .hwInit)])
    }
    /// The structure with `links` link entries.
    public static func layout(name: String, links: Int) -> RegisterBlockLayout {
        RegisterBlockLayout(name, [ExtendedCapabilityHeader.header, elementSelfDescription]
            + (0..<max(links, 0)).flatMap { [linkDescription($0), linkAddress($0)] })
    }
}

/// Root Complex Event Collector Endpoint Association (PCIe 6.0 §7.9.10).
public enum RCECEndpointAssociationCapability {
    /// Bit n: the RCiEP at device n of the RCEC's bus.
    public static let associationBitmap = RegisterLayout("Association Bitmap for RCiEPs", offset: 0x04, width: 4, [.init("Association Bitmap for RCiEPs", 31, 0, .hwInit)])
    public static let nextBus = RegisterField("RCEC Next Bus", 15, 8, .hwInit)
    public static let lastBus = RegisterField("RCEC Last Bus", 23, 16, .hwInit)
    /// Capability Version 2 and up.
    public static let associatedBusNumbers = RegisterLayout("RCEC Associated Bus Numbers", offset: 0x08, width: 4, [nextBus, lastBus])
    public static func layout(version: UInt8) -> RegisterBlockLayout {
        RegisterBlockLayout(ExtendedCapabilityID.rootComplexEventCollectorEndpointAssociation.name,
                            [ExtendedCapabilityHeader.header, associationBitmap] + (version >= 2 ? [associatedBusNumbers] : []))
    }
}

/// Multicast (PCIe 6.0 §7.9.11).
public enum MulticastCapability {
    public enum Capability {
        /// Encoded N-1.
        public static let maxGroup = RegisterField("MC_Max_Group", 5, 0, .ro)
        public static let windowSizeRequested = RegisterField("MC_Window_Size_Requested", 13, 8, .ro)
        public static let ecrcRegenerationSupported = RegisterField("MC_ECRC_Regeneration_Supported", bit: 15, .ro)
    }
    public static let capability = RegisterLayout("Multicast Capability", offset: 0x04, width: 2, [
        Capability.maxGroup, Capability.windowSizeRequested, Capability.ecrcRegenerationSupported,
    ])
    public enum Control {
        /// Encoded N-1.
        public static let numGroup = RegisterField("MC_Num_Group", 5, 0, .rw)
        public static let enable = RegisterField("MC_Enable", bit: 15, .rw)
    }
    public static let control = RegisterLayout("Multicast Control", offset: 0x06, width: 2, [Control.numGroup, Control.enable])
    public static let indexPosition = RegisterField("MC_Index_Position", 5, 0, .rw)
    public static let baseAddressField = RegisterField("MC_Base_Address", 63, 12, .rw)
    public static let baseAddress = RegisterLayout("MC_Base_Address", offset: 0x08, width: 8, [indexPosition, baseAddressField])
    public static let receive = RegisterLayout("MC_Receive", offset: 0x10, width: 8, [.init("MC_Receive", 63, 0, .rw)])
    public static let blockAll = RegisterLayout("MC_Block_All", offset: 0x18, width: 8, [.init("MC_Block_All", 63, 0, .rw)])
    public static let blockUntranslated = RegisterLayout("MC_Block_Untranslated", offset: 0x20, width: 8, [.init("MC_Block_Untranslated", 63, 0, .rw)])
    /// Switch and root ports only.
    public static let overlaySize = RegisterField("MC_Overlay_Size", 5, 0, .rw)
    public static let overlayBARField = RegisterField("MC_Overlay_BAR", 63, 6, .rw)
    public static let overlayBAR = RegisterLayout("MC_Overlay_BAR", offset: 0x28, width: 8, [overlaySize, overlayBARField])
    public static let layout = RegisterBlockLayout(ExtendedCapabilityID.multicast.name, [
        ExtendedCapabilityHeader.header, capability, control, baseAddress, receive, blockAll, blockUntranslated, overlayBAR,
    ])
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
            case .secondaryPCIExpress: return SecondaryPCIeCapability.layout
            case .addressTranslationServices: return ATSCapability.layout
            case .pageRequestInterface: return PRICapability.layout
            case .processAddressSpaceID: return PASIDCapability.layout
            case .l1PMSubstates: return L1PMSubstatesCapability.layout
            case .precisionTimeMeasurement: return PTMCapability.layout
            case .downstreamPortContainment: return DPCCapability.layout
            case .tphRequester: return TPHRequesterCapability.layout
            case .singleRootIOV: return SRIOVCapability.layout
            case .dataObjectExchange: return DOECapability.layout
            case .vendorSpecific: return VendorSpecificExtendedCapability.layout
            case .resizableBAR, .vfResizableBAR:
                let first = config.read(ResizableBARCapability.control(0), base: header.offset) ?? 0
                return ResizableBARCapability.layout(name: header.name, count: Int(ResizableBARCapability.Control.numberOfBARs.extract(first)))
            case .designatedVendorSpecific: return RegisterBlockLayout(ExtendedCapabilityID.designatedVendorSpecific.name, DVSECHeader.registers)
            case .virtualChannel, .virtualChannelMFVC:
                let c1 = config.read(VirtualChannelCapability.capability1, base: header.offset) ?? 0
                return VirtualChannelCapability.layout(name: header.name, extendedVCCount: Int(VirtualChannelCapability.Capability1.extendedVCCount.extract(c1)))
            case .rootComplexLinkDeclaration:
                typealias L = RCLinkDeclarationCapability
                let esd = config.read(L.elementSelfDescription, base: header.offset) ?? 0
                // As many link entries as the description says and the config space holds.
                let room = (config.count - header.offset - L.linkDescription(0).offset) / 16
                return L.layout(name: header.name, links: min(Int(L.ElementSelfDescription.numberOfLinkEntries.extract(esd)), room))
            case .multicast: return MulticastCapability.layout
            case .rootComplexEventCollectorEndpointAssociation: return RCECEndpointAssociationCapability.layout(version: header.version)
            default: return RegisterBlockLayout("Extended Capability", [ExtendedCapabilityHeader.header])
            }
        }
    }
}
