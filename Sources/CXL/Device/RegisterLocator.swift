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
        // The catalog's fields as numbers, once (every save discovers the device): no
        // field looked up by name, no register layout copied per entry.
        let f = Fields.shared
        var i = 0
        while true {
            let rel = RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * i
            guard rel + RegisterLocatorDVSEC.entrySize <= h.length,
                  let lo = config.read(h.offset + rel + f.lowOffset, width: f.lowWidth),
                  let hi = config.read(h.offset + rel + f.highOffset, width: f.highWidth) else { break }
            out.append(RegisterLocatorEntry(index: i, bir: Int(f.bir.extract(lo)), identifier: UInt8(truncatingIfNeeded: f.identifier.extract(lo)),
                                            offset: (f.offsetHigh.extract(hi) << 32) | (f.offsetLow.extract(lo) << UInt64(f.offsetLow.lsb))))
            i += 1
        }
        return out
    }

    /// Register Offset Low/High and their fields (§8.1.9.1), from the catalog.
    private struct Fields: Sendable {
        let lowOffset = RegisterLocatorDVSEC.offsetLow.offset, lowWidth = RegisterLocatorDVSEC.offsetLow.width
        let highOffset = RegisterLocatorDVSEC.offsetHigh.offset, highWidth = RegisterLocatorDVSEC.offsetHigh.width
        let bir = RegisterLocatorDVSEC.registerBIR.bits
        let identifier = RegisterLocatorDVSEC.blockIdentifier.bits
        /// Offset bits 31:16, kept in place.
        let offsetLow = RegisterLocatorDVSEC.blockOffsetLow.bits
        /// Offset bits 63:32: Register Offset High's one field.
        let offsetHigh: Bits = {
            let fields = RegisterLocatorDVSEC.offsetHigh.fields
            precondition(fields.count == 1, "Register Offset High has one field")  // the catalog's shape, fixed at build time
            return fields[0].bits
        }()
        static let shared = Fields()
    }

    /// A field's position, without its name and value table.
    fileprivate struct Bits: Sendable {
        let mask: UInt64, lsb: Int
        func extract(_ raw: UInt64) -> UInt64 { (raw & mask) >> UInt64(lsb) }
    }

    /// Entries of every CXL Register Locator DVSEC of a function.
    public static func entries(config: ConfigSpace, capabilities: CapabilityList) -> [RegisterLocatorEntry] {
        capabilities.dvsecs(in: config)
            .filter { $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.registerLocator.rawValue }
            .flatMap { entries($0, config: config) }
    }
}

private extension RegisterField {
    var bits: RegisterLocator.Bits { RegisterLocator.Bits(mask: mask, lsb: lsb) }
}
