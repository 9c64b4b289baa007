import PCI

// The Register Locator DVSEC (CXL 3.1 §8.1.9): which register blocks a function has
// and where they are (BAR, offset). Part of the device map, used by discovery,
// decode and formatting alike.

/// One entry of the Register Locator DVSEC.
public struct RegisterLocatorEntry: Sendable, Hashable {
    /// 0-based entry index (lspci prints index + 1 as "BlockN").
    public let index: Int
    public let bir: Int
    public let identifier: UInt8
    /// Offset of the block inside the BAR.
    public let offset: UInt64

    public var json: JSONValue {
        var o = JSONObject()
        o.set("block", index + 1)
        o.set("Register BIR", bir)
        o.set("Register Block Identifier", .hexString(identifier, digits: 2))
        o.set("name", RegisterLocatorDVSEC.BlockIdentifier(rawValue: identifier)?.name ?? "reserved")
        o.set("offset", .hexString(offset, digits: 16))
        return o.value
    }
}

public enum RegisterLocator {
    /// The entries that lie inside both the DVSEC's length and the config space
    /// (lspci's rule: an entry counts when its last byte is inside the length).
    public static func entries(_ h: DVSECInstance, config: ConfigSpace) -> [RegisterLocatorEntry] {
        var out: [RegisterLocatorEntry] = []
        let lowL = RegisterLocatorDVSEC.offsetLow, highL = RegisterLocatorDVSEC.offsetHigh
        var i = 0
        while true {
            let rel = RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * i
            guard rel + RegisterLocatorDVSEC.entrySize <= h.length,
                  let lo = config.read(lowL, base: h.offset + rel),
                  let hi = config.read(highL, base: h.offset + rel) else { break }
            let low = RegisterValue(lowL, lo), high = RegisterValue(highL, hi)
            out.append(RegisterLocatorEntry(index: i, bir: Int(low["Register BIR"]), identifier: UInt8(low["Register Block Identifier"]),
                                            offset: (high["Register Block Offset High"] << 32) | (low["Register Block Offset Low"] << 16)))
            i += 1
        }
        return out
    }

    /// Entries of every CXL Register Locator DVSEC of a function.
    public static func entries(config: ConfigSpace, capabilities: CapabilityList) -> [RegisterLocatorEntry] {
        capabilities.dvsecs(in: config)
            .filter { $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.registerLocator.rawValue }
            .flatMap { entries($0, config: config) }
    }
}
