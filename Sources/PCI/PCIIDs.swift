// Names from the PCI ID database (pci.ids), spelled and combined as pciutils'
// lib/names.c does, so header and Subsystem lines read like lspci's.

public final class PCIIDs: Sendable {
    let vendors: [UInt16: String]
    let devices: [UInt32: String]
    let subsystems: [UInt64: String]
    let classes: [UInt8: String]
    let subclasses: [UInt16: String]
    let progIfs: [UInt32: String]

    /// The system database (what lspci reads), or nil when none is installed.
    public static let shared: PCIIDs? = {
        for p in ["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"] {
            if let b = readWholeFile(p, limit: 64 << 20) { return PCIIDs(text: String(decoding: b, as: UTF8.self)) }
        }
        return nil
    }()

    public init(text: String) {
        var vendors: [UInt16: String] = [:], devices: [UInt32: String] = [:], subsystems: [UInt64: String] = [:]
        var classes: [UInt8: String] = [:], subclasses: [UInt16: String] = [:], progIfs: [UInt32: String] = [:]
        var vendor: UInt16?, device: UInt16?, cls: UInt8?, sub: UInt8?
        for raw in text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            guard let first = raw.first, first != UInt8(ascii: "#") else { continue }
            let line = Substring(decoding: raw, as: UTF8.self)
            let tabs = line.prefix { $0 == "\t" }.count
            let body = line.dropFirst(tabs)
            func split(_ s: Substring) -> (Substring, String)? {
                var i = s.startIndex
                while i < s.endIndex {
                    let j = s.index(after: i)
                    if s[i] == " ", j < s.endIndex, s[j] == " " { return (s[..<i], String(s[s.index(after: j)...])) }
                    i = j
                }
                return nil
            }
            if tabs == 0 {
                if body.hasPrefix("C "), let (id, name) = split(body.dropFirst(2)), let c = UInt8(id, radix: 16) {
                    cls = c; vendor = nil; classes[c] = name
                } else if let (id, name) = split(body), let v = UInt16(id, radix: 16) {
                    vendor = v; cls = nil; device = nil; vendors[v] = name
                } else {
                    vendor = nil; cls = nil   // other sections (device types, languages, ...)
                }
            } else if tabs == 1 {
                guard let (id, name) = split(body) else { continue }
                if let v = vendor, let d = UInt16(id, radix: 16) { device = d; devices[UInt32(v) << 16 | UInt32(d)] = name }
                if let c = cls, let s = UInt8(id, radix: 16) { sub = s; subclasses[UInt16(c) << 8 | UInt16(s)] = name }
            } else if tabs == 2 {
                guard let (id, name) = split(body) else { continue }
                if let v = vendor, let d = device {
                    let parts = id.split(separator: " ")
                    if parts.count == 2, let sv = UInt16(parts[0], radix: 16), let sd = UInt16(parts[1], radix: 16) {
                        subsystems[UInt64(v) << 48 | UInt64(d) << 32 | UInt64(sv) << 16 | UInt64(sd)] = name
                    }
                }
                if let c = cls, let s = sub, let p = UInt8(id, radix: 16) { progIfs[UInt32(c) << 16 | UInt32(s) << 8 | UInt32(p)] = name }
            }
        }
        self.vendors = vendors; self.devices = devices; self.subsystems = subsystems
        self.classes = classes; self.subclasses = subclasses; self.progIfs = progIfs
    }

    public func vendor(_ v: UInt16) -> String? { vendors[v] }
    public func device(_ v: UInt16, _ d: UInt16) -> String? { devices[UInt32(v) << 16 | UInt32(d)] }

    /// `Intel Corporation Device 0d93`, `Red Hat, Inc. Virtio 1.0 block device`, `Device 1234:5678`.
    public func deviceName(vendor v: UInt16, device d: UInt16) -> String {
        guard let vn = vendor(v) else { return "Device \(hex(v, digits: 4)):\(hex(d, digits: 4))" }
        return vn + " " + (device(v, d) ?? "Device \(hex(d, digits: 4))")
    }

    /// A subsystem as lspci names it: subsystem vendor, then the subsystem entry under
    /// the device, or the device itself when the subsystem IDs equal the device IDs.
    public func subsystemName(vendor v: UInt16, device d: UInt16, subVendor sv: UInt16, subDevice sd: UInt16) -> String {
        guard let vn = vendor(sv) else { return "Device \(hex(sv, digits: 4)):\(hex(sd, digits: 4))" }
        var name = subsystems[UInt64(v) << 48 | UInt64(d) << 32 | UInt64(sv) << 16 | UInt64(sd)]
        if name == nil && v == sv && d == sd { name = device(v, d) }
        return vn + " " + (name ?? "Device \(hex(sd, digits: 4))")
    }

    /// Sub-class name, else class name, else `Class cccc`.
    public func className(base: UInt8, sub: UInt8) -> String {
        subclasses[UInt16(base) << 8 | UInt16(sub)] ?? classes[base].map { "\($0) [\(hex(UInt16(base) << 8 | UInt16(sub), digits: 4))]" } ?? "Class \(hex(UInt16(base) << 8 | UInt16(sub), digits: 4))"
    }

    public func progIfName(base: UInt8, sub: UInt8, progIf: UInt8) -> String? {
        progIfs[UInt32(base) << 16 | UInt32(sub) << 8 | UInt32(progIf)]
    }
}
