// Capability identifiers and the capability walker.

/// Standard capability IDs (PCI Code and ID Assignment Specification 1.11 §2).
public enum CapabilityID: UInt8, Sendable, CaseIterable {
    case null = 0x00
    case powerManagement = 0x01
    case agp = 0x02
    case vitalProductData = 0x03
    case slotIdentification = 0x04
    case msi = 0x05
    case compactPCIHotSwap = 0x06
    case pciX = 0x07
    case hyperTransport = 0x08
    case vendorSpecific = 0x09
    case debugPort = 0x0A
    case compactPCICentralResource = 0x0B
    case pciHotPlug = 0x0C
    case bridgeSubsystemVendorID = 0x0D
    case agp8x = 0x0E
    case secureDevice = 0x0F
    case pciExpress = 0x10
    case msix = 0x11
    case sataConfiguration = 0x12
    case advancedFeatures = 0x13
    case enhancedAllocation = 0x14
    case flatteningPortalBridge = 0x15

    public var name: String {
        switch self {
        case .null: return "Null"
        case .powerManagement: return "Power Management"
        case .agp: return "AGP"
        case .vitalProductData: return "Vital Product Data"
        case .slotIdentification: return "Slot Identification"
        case .msi: return "MSI"
        case .compactPCIHotSwap: return "CompactPCI Hot Swap"
        case .pciX: return "PCI-X"
        case .hyperTransport: return "HyperTransport"
        case .vendorSpecific: return "Vendor Specific"
        case .debugPort: return "Debug Port"
        case .compactPCICentralResource: return "CompactPCI Central Resource Control"
        case .pciHotPlug: return "PCI Hot-Plug"
        case .bridgeSubsystemVendorID: return "Bridge Subsystem Vendor ID"
        case .agp8x: return "AGP 8x"
        case .secureDevice: return "Secure Device"
        case .pciExpress: return "PCI Express"
        case .msix: return "MSI-X"
        case .sataConfiguration: return "SATA Configuration"
        case .advancedFeatures: return "Advanced Features"
        case .enhancedAllocation: return "Enhanced Allocation"
        case .flatteningPortalBridge: return "Flattening Portal Bridge"
        }
    }
}

/// Extended capability IDs (PCI Code and ID Assignment Specification 1.11 §3).
public enum ExtendedCapabilityID: UInt16, Sendable, CaseIterable {
    case null = 0x0000
    case advancedErrorReporting = 0x0001
    case virtualChannel = 0x0002
    case deviceSerialNumber = 0x0003
    case powerBudgeting = 0x0004
    case rootComplexLinkDeclaration = 0x0005
    case rootComplexInternalLinkControl = 0x0006
    case rootComplexEventCollectorEndpointAssociation = 0x0007
    case multiFunctionVirtualChannel = 0x0008
    case virtualChannelMFVC = 0x0009
    case rootComplexRegisterBlock = 0x000A
    case vendorSpecific = 0x000B
    case configurationAccessCorrelation = 0x000C
    case accessControlServices = 0x000D
    case alternativeRoutingIDInterpretation = 0x000E
    case addressTranslationServices = 0x000F
    case singleRootIOV = 0x0010
    case multiRootIOV = 0x0011
    case multicast = 0x0012
    case pageRequestInterface = 0x0013
    case amdReserved = 0x0014
    case resizableBAR = 0x0015
    case dynamicPowerAllocation = 0x0016
    case tphRequester = 0x0017
    case latencyToleranceReporting = 0x0018
    case secondaryPCIExpress = 0x0019
    case protocolMultiplexing = 0x001A
    case processAddressSpaceID = 0x001B
    case lnRequester = 0x001C
    case downstreamPortContainment = 0x001D
    case l1PMSubstates = 0x001E
    case precisionTimeMeasurement = 0x001F
    case mPCIe = 0x0020
    case frsQueueing = 0x0021
    case readinessTimeReporting = 0x0022
    case designatedVendorSpecific = 0x0023
    case vfResizableBAR = 0x0024
    case dataLinkFeature = 0x0025
    case physicalLayer16GT = 0x0026
    case laneMarginingAtReceiver = 0x0027
    case hierarchyID = 0x0028
    case nativePCIeEnclosureManagement = 0x0029
    case physicalLayer32GT = 0x002A
    case alternateProtocol = 0x002B
    case systemFirmwareIntermediary = 0x002C
    case shadowFunctions = 0x002D
    case dataObjectExchange = 0x002E
    case device3 = 0x002F
    case integrityAndDataEncryption = 0x0030
    case physicalLayer64GT = 0x0031
    case flitLogging = 0x0032
    case flitPerformanceMeasurement = 0x0033
    case flitErrorInjection = 0x0034

    public var name: String {
        switch self {
        case .null: return "Null"
        case .advancedErrorReporting: return "Advanced Error Reporting"
        case .virtualChannel: return "Virtual Channel"
        case .deviceSerialNumber: return "Device Serial Number"
        case .powerBudgeting: return "Power Budgeting"
        case .rootComplexLinkDeclaration: return "Root Complex Link Declaration"
        case .rootComplexInternalLinkControl: return "Root Complex Internal Link Control"
        case .rootComplexEventCollectorEndpointAssociation: return "Root Complex Event Collector Endpoint Association"
        case .multiFunctionVirtualChannel: return "Multi-Function Virtual Channel"
        case .virtualChannelMFVC: return "Virtual Channel (MFVC present)"
        case .rootComplexRegisterBlock: return "Root Complex Register Block"
        case .vendorSpecific: return "Vendor-Specific"
        case .configurationAccessCorrelation: return "Configuration Access Correlation"
        case .accessControlServices: return "Access Control Services"
        case .alternativeRoutingIDInterpretation: return "Alternative Routing-ID Interpretation"
        case .addressTranslationServices: return "Address Translation Services"
        case .singleRootIOV: return "Single Root I/O Virtualization"
        case .multiRootIOV: return "Multi-Root I/O Virtualization"
        case .multicast: return "Multicast"
        case .pageRequestInterface: return "Page Request Interface"
        case .amdReserved: return "Reserved for AMD"
        case .resizableBAR: return "Resizable BAR"
        case .dynamicPowerAllocation: return "Dynamic Power Allocation"
        case .tphRequester: return "TPH Requester"
        case .latencyToleranceReporting: return "Latency Tolerance Reporting"
        case .secondaryPCIExpress: return "Secondary PCI Express"
        case .protocolMultiplexing: return "Protocol Multiplexing"
        case .processAddressSpaceID: return "Process Address Space ID"
        case .lnRequester: return "LN Requester"
        case .downstreamPortContainment: return "Downstream Port Containment"
        case .l1PMSubstates: return "L1 PM Substates"
        case .precisionTimeMeasurement: return "Precision Time Measurement"
        case .mPCIe: return "M-PCIe"
        case .frsQueueing: return "FRS Queueing"
        case .readinessTimeReporting: return "Readiness Time Reporting"
        case .designatedVendorSpecific: return "Designated Vendor-Specific"
        case .vfResizableBAR: return "VF Resizable BAR"
        case .dataLinkFeature: return "Data Link Feature"
        case .physicalLayer16GT: return "Physical Layer 16.0 GT/s"
        case .laneMarginingAtReceiver: return "Lane Margining at the Receiver"
        case .hierarchyID: return "Hierarchy ID"
        case .nativePCIeEnclosureManagement: return "Native PCIe Enclosure Management"
        case .physicalLayer32GT: return "Physical Layer 32.0 GT/s"
        case .alternateProtocol: return "Alternate Protocol"
        case .systemFirmwareIntermediary: return "System Firmware Intermediary"
        case .shadowFunctions: return "Shadow Functions"
        case .dataObjectExchange: return "Data Object Exchange"
        case .device3: return "Device 3"
        case .integrityAndDataEncryption: return "Integrity and Data Encryption"
        case .physicalLayer64GT: return "Physical Layer 64.0 GT/s"
        case .flitLogging: return "Flit Logging"
        case .flitPerformanceMeasurement: return "Flit Performance Measurement"
        case .flitErrorInjection: return "Flit Error Injection"
        }
    }
}

/// Which list a capability was found in.
public enum CapabilitySpace: String, Sendable, Codable, Hashable {
    case standard, extended
}

/// One capability header found by the walker.
public struct CapabilityHeader: Sendable, Hashable {
    public let space: CapabilitySpace
    public let id: UInt16
    /// Capability Version (extended capabilities only; 0 for standard ones).
    public let version: UInt8
    public let offset: Int
    /// The raw next pointer, low bits masked as the spec requires.
    public let next: Int

    public var name: String {
        switch space {
        case .standard: return CapabilityID(rawValue: UInt8(truncatingIfNeeded: id))?.name ?? "Unknown capability " + hex(id, digits: 4)
        case .extended: return ExtendedCapabilityID(rawValue: id)?.name ?? "Unknown extended capability " + hex(id, digits: 4)
        }
    }
}

/// Something wrong with a config space, found while decoding it. Decoders report
/// findings and keep going; they never trap on hostile input.
public struct Finding: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Codable { case warning, error }
    public let severity: Severity
    /// Config-space (or register-block) offset the finding is about, if any.
    public let offset: Int?
    public let message: String

    public init(_ severity: Severity, at offset: Int?, _ message: String) {
        self.severity = severity
        self.offset = offset
        self.message = message
    }

    public var description: String {
        if let offset { return "\(severity.rawValue) at 0x\(String(offset, radix: 16)): \(message)" }
        return "\(severity.rawValue): \(message)"
    }
}

/// The capability lists of one function.
///
/// The walk is bounded (each offset visited once, at most 48 standard and 1024
/// extended headers), rejects pointers into the header or past the end, and reports
/// loops, so a malformed or hostile config space always terminates.
public struct CapabilityList: Sendable {
    public private(set) var standard: [CapabilityHeader] = []
    public private(set) var extended: [CapabilityHeader] = []
    public private(set) var findings: [Finding] = []

    public init(walking config: ConfigSpace) {
        walkStandard(config)
        walkExtended(config)
    }

    public var all: [CapabilityHeader] { standard + extended }

    public func standard(_ id: CapabilityID) -> CapabilityHeader? {
        standard.first { $0.id == UInt16(id.rawValue) }
    }

    public func extended(_ id: ExtendedCapabilityID) -> [CapabilityHeader] {
        extended.filter { $0.id == id.rawValue }
    }

    private mutating func walkStandard(_ config: ConfigSpace) {
        guard let status = config.read(PCIHeader.status),
              PCIHeader.Status.capabilitiesList.extract(status) == 1 else { return }
        // Type 2 (CardBus) headers keep the pointer at 0x14; types 0 and 1 at 0x34.
        let pointer = config.headerType.map(UInt64.init) == PCIHeader.HeaderType.cardBus
            ? PCIHeader.cardBusCapabilitiesPointer : PCIHeader.capabilitiesPointer
        guard let first = config.read8(pointer.offset) else { return }
        var offset = Int(first & StandardCapabilityHeader.pointerMask)
        var visited = Set<Int>()
        while offset != 0 {
            guard offset >= StandardCapabilityHeader.firstOffset else {
                findings.append(Finding(.error, at: offset, "capability pointer points into the header"))
                return
            }
            guard offset + 2 <= min(config.count, pciConfigSpaceSize) else {
                findings.append(Finding(.error, at: offset, "capability pointer past the end of config space"))
                return
            }
            guard visited.insert(offset).inserted, visited.count <= 48 else {
                findings.append(Finding(.error, at: offset, "capability list loops"))
                return
            }
            let id = config.read8(offset + StandardCapabilityHeader.capabilityID.offset)!
            let next = Int(config.read8(offset + StandardCapabilityHeader.next.offset)! & StandardCapabilityHeader.pointerMask)
            if id == 0xFF {
                findings.append(Finding(.error, at: offset, "capability chain broken (ID 0xff)"))
                return
            }
            standard.append(CapabilityHeader(space: .standard, id: UInt16(id), version: 0, offset: offset, next: next))
            offset = next
        }
    }

    private mutating func walkExtended(_ config: ConfigSpace) {
        guard config.hasExtendedSpace else { return }
        var offset = ExtendedCapabilityHeader.firstOffset
        var visited = Set<Int>()
        while offset != 0 {
            guard offset >= ExtendedCapabilityHeader.firstOffset else {
                findings.append(Finding(.error, at: offset, "extended capability pointer below 0x100"))
                return
            }
            guard let header = config.read32(offset) else {
                findings.append(Finding(.error, at: offset, "extended capability pointer past the end of config space"))
                return
            }
            // All zeros ends the list (PCIe 6.0 §7.6.3: an absent list reads 0); all
            // ones is what a missing function or a failed read returns.
            if header == 0 { return }
            if header == 0xFFFF_FFFF {
                findings.append(Finding(.warning, at: offset, "extended capability header reads all ones"))
                return
            }
            guard visited.insert(offset).inserted, visited.count <= 1024 else {
                findings.append(Finding(.error, at: offset, "extended capability list loops"))
                return
            }
            let h = UInt64(header)
            let id = UInt16(ExtendedCapabilityHeader.capabilityID.extract(h))
            let version = UInt8(ExtendedCapabilityHeader.version.extract(h))
            let next = Int(ExtendedCapabilityHeader.next.extract(h) & ExtendedCapabilityHeader.nextOffsetMask)
            // ID 0 with a next pointer is legal padding (real GPUs ship it): keep walking.
            extended.append(CapabilityHeader(space: .extended, id: id, version: version, offset: offset, next: next))
            offset = next
        }
    }
}

/// `value` as lower-case hex, zero-padded to `digits` (lspci's `%04x` style).
public func hex<T: BinaryInteger>(_ value: T, digits: Int) -> String {
    let h = String(value, radix: 16)
    return h.count >= digits ? h : String(repeating: "0", count: digits - h.count) + h
}
