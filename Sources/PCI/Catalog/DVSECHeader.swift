// Designated Vendor-Specific Extended Capability header (PCIe 6.0 §7.9.6).
// PCI knows the header; what a vendor puts in the body is the vendor's library's business.

public enum ExtendedCapabilityHeader {
    /// The DWORD that starts every extended capability (PCIe 6.0 §7.6.3).
    public static let capabilityID = RegisterField("PCI Express Extended Capability ID", 15, 0, .ro)
    public static let version = RegisterField("Capability Version", 19, 16, .ro)
    public static let next = RegisterField("Next Capability Offset", 31, 20, .ro)
    public static let header = RegisterLayout("Extended Capability Header", offset: 0x00, width: 4, [capabilityID, version, next])
    /// Extended capabilities start at 0x100 (PCIe 6.0 §7.6); Next Capability Offset's two low bits are reserved.
    public static let firstOffset = 0x100
    public static let nextOffsetMask: UInt64 = 0xFFC
}

public enum DVSECHeader {
    public static let vendorID = RegisterField("DVSEC Vendor ID", 15, 0, .ro)
    public static let revision = RegisterField("DVSEC Revision", 19, 16, .ro)
    public static let length = RegisterField("DVSEC Length", 31, 20, .ro, "bytes, counted from the extended capability header")
    public static let dvsecID = RegisterField("DVSEC ID", 15, 0, .ro)
    public static let header1 = RegisterLayout("Designated Vendor-Specific Header 1", offset: 0x04, width: 4, [vendorID, revision, length])
    public static let header2 = RegisterLayout("Designated Vendor-Specific Header 2", offset: 0x08, width: 2, [dvsecID])
    /// The 10 bytes every DVSEC starts with.
    public static let registers: [RegisterLayout] = [ExtendedCapabilityHeader.header, header1, header2]
    /// Shortest legal DVSEC: the headers alone.
    public static let minimumLength = 0x0A
}

/// A DVSEC found in a config space.
public struct DVSECInstance: Sendable, Hashable {
    /// Config-space offset of the extended capability header.
    public let offset: Int
    public let vendorID: UInt16
    public let revision: UInt8
    /// Length in bytes from `offset`, as the header states it.
    public let length: Int
    public let dvsecID: UInt16
    /// True when `offset + length` fits inside the config space that was read.
    public let fitsInConfigSpace: Bool
}

extension CapabilityList {
    /// Every DVSEC in the extended list, with its header decoded. DVSECs whose
    /// headers cannot be read are skipped (the walker already reported them).
    public func dvsecs(in config: ConfigSpace) -> [DVSECInstance] {
        extended(.designatedVendorSpecific).compactMap { cap in
            guard let h1 = config.read(DVSECHeader.header1, base: cap.offset),
                  let h2 = config.read(DVSECHeader.header2, base: cap.offset) else { return nil }
            let length = Int(DVSECHeader.length.extract(h1))
            return DVSECInstance(
                offset: cap.offset,
                vendorID: UInt16(DVSECHeader.vendorID.extract(h1)),
                revision: UInt8(DVSECHeader.revision.extract(h1)),
                length: length,
                dvsecID: UInt16(DVSECHeader.dvsecID.extract(h2)),
                fitsInConfigSpace: cap.offset + length <= config.count)
        }
    }
}
