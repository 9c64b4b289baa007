import PCI
#if canImport(Glibc)
import Glibc
#endif

/// One endpoint decoder as the Linux CXL driver shows it under `/sys/bus/cxl/devices`
/// (`Documentation/ABI/testing/sysfs-bus-cxl`): `decoderN.M` belongs to `endpointN`, and M
/// is the index of the HDM decoder it programs in the endpoint's HDM Decoder Capability
/// (`drivers/cxl/core/hdm.c` numbers decoders by their register index).
public struct CXLKernelDecoder: Sendable, Hashable, Codable {
    /// "decoder2.0".
    public var name: String
    /// M: the HDM decoder index.
    public var index: Int
    /// `start` and `size`: the HPA range the kernel programmed (size 0: not in use).
    public var start: UInt64?
    public var size: UInt64?
    /// `region`: the region the decoder is attached to (empty: none).
    public var region: String?
    /// The region's `commit` attribute (1: the kernel committed the region's decoders).
    public var regionCommitted: Bool?
    /// `mode` (ram, pmem, none, mixed), `dpa_resource`, `dpa_size`, `locked`.
    public var mode: String?
    public var dpaResource: UInt64?
    public var dpaSize: UInt64?
    public var locked: Bool?

    /// The kernel holds this decoder for a region: it must be committed in hardware
    /// with this start and size.
    public var inUse: Bool { (size ?? 0) > 0 && !(region ?? "").isEmpty && regionCommitted != false }
}

/// What the Linux CXL driver believes about one PCI function: its memdev, its
/// endpoint port and the endpoint decoders with their regions.
public struct CXLKernelView: Sendable, Hashable, Codable {
    /// "mem0".
    public var memdev: String
    /// "endpoint2", if the endpoint port was enumerated.
    public var endpoint: String?
    public var decoders: [CXLKernelDecoder]

    public init(memdev: String, endpoint: String?, decoders: [CXLKernelDecoder]) {
        self.memdev = memdev
        self.endpoint = endpoint
        self.decoders = decoders
    }

    /// Regions the kernel holds through this function.
    public var regions: [String] {
        var seen: [String] = []
        for d in decoders where d.inUse { if let r = d.region, !seen.contains(r) { seen.append(r) } }
        return seen
    }

    /// Where the CXL bus lives in a tree laid out like `/sys`.
    public static func busDirectory(sysfsRoot: String) -> String {
        (sysfsRoot.hasSuffix("/") && sysfsRoot.count > 1 ? String(sysfsRoot.dropLast()) : sysfsRoot) + "/bus/cxl/devices"
    }

    /// The kernel's view of the PCI function `address` under `sysfsRoot`: nil when the
    /// tree has no CXL bus (no CXL driver) or no memdev whose parent is that function.
    /// A memdev is `ROOT/bus/cxl/devices/memN`, a link into the PCI device's directory;
    /// its endpoint port is the `endpointN` whose `uport` link names it.
    public static func read(sysfsRoot: String, address: PCIAddress) -> CXLKernelView? {
        let bus = busDirectory(sysfsRoot: sysfsRoot)
        guard let entries = SysfsFiles.list(bus) else { return nil }
        let bdf = address.description
        guard let memdev = entries.filter({ $0.hasPrefix("mem") }).sorted().first(where: { name in
            // The link target's parent component is the PCI function: .../0000:0d:00.0/mem0.
            if let target = SysfsFiles.link(bus + "/" + name) {
                let parts = target.split(separator: "/")
                return parts.count >= 2 && parts[parts.count - 2] == bdf
            }
            // A fake tree may hold a directory with a `device` link instead.
            if let dev = SysfsFiles.link(bus + "/" + name + "/device") { return dev.split(separator: "/").last.map(String.init) == bdf }
            return false
        }) else { return nil }
        let endpoint = entries.filter { $0.hasPrefix("endpoint") }.sorted().first { name in
            SysfsFiles.link(bus + "/" + name + "/uport")?.split(separator: "/").last.map(String.init) == memdev
        }
        var decoders: [CXLKernelDecoder] = []
        if let endpoint, let port = Int(endpoint.dropFirst("endpoint".count)) {
            let prefix = "decoder\(port)."
            for name in entries where name.hasPrefix(prefix) {
                guard let m = Int(name.dropFirst(prefix.count)), m >= 0, m < HDMDecoderCapability.maximumDecoders else { continue }
                let dir = bus + "/" + name
                let region = SysfsFiles.text(dir + "/region")
                var committed: Bool?
                if let r = region, !r.isEmpty, let c = SysfsFiles.text(bus + "/" + r + "/commit") { committed = c == "1" }
                decoders.append(CXLKernelDecoder(
                    name: name, index: m, start: SysfsFiles.number(dir + "/start"), size: SysfsFiles.number(dir + "/size"),
                    region: region, regionCommitted: committed, mode: SysfsFiles.text(dir + "/mode"),
                    dpaResource: SysfsFiles.number(dir + "/dpa_resource"), dpaSize: SysfsFiles.number(dir + "/dpa_size"),
                    locked: SysfsFiles.text(dir + "/locked").map { $0 == "1" }))
            }
        }
        decoders.sort { $0.index < $1.index }
        return CXLKernelView(memdev: memdev, endpoint: endpoint, decoders: decoders)
    }
}

/// Small sysfs readers: attributes are one line of text.
enum SysfsFiles {
    static func list(_ dir: String) -> [String]? {
        guard let d = opendir(dir) else { return nil }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { out.append(name) }
        }
        return out
    }

    static func link(_ path: String) -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { readlink(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    static func text(_ path: String) -> String? {
        guard let b = readWholeFile(path, limit: 4096) else { return nil }
        return String(decoding: b, as: UTF8.self).trimmingWhitespace
    }

    /// "0x490000000", "268435456" or "0x0000000010000000".
    static func number(_ path: String) -> UInt64? {
        guard let t = text(path) else { return nil }
        if t.hasPrefix("0x") || t.hasPrefix("0X") { return UInt64(t.dropFirst(2), radix: 16) }
        return UInt64(t)
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c == " " || c == "\n" || c == "\t" || c == "\r" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\n" || c == "\t" || c == "\r" { s = s.dropLast() }
        return String(s)
    }
}
