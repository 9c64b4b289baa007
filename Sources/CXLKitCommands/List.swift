import PCI
import CXL
#if canImport(Glibc)
import Glibc
#endif

/// What `cxlkit list` reports for one function.
public struct ListedFunction: Sendable {
    public var address: PCIAddress
    public var config: ConfigSpace?
    /// Why the config space could not be read.
    public var error: String?

    public var vendorID: UInt16? { config?.vendorID }
    public var deviceID: UInt16? { config?.deviceID }

    public var dvsecs: [DVSECInstance] {
        guard let c = config else { return [] }
        return CapabilityList(walking: c).dvsecs(in: c).filter { $0.vendorID == cxlDVSECVendorID }
    }
    public var isCXL: Bool { !dvsecs.isEmpty }

    /// Decoded PCIe DVSEC for CXL Devices, if present.
    public var device: (cap: RegisterValue, ctl: RegisterValue, ranges: [DeviceDVSECRange])? {
        guard let c = config, let d = dvsecs.first(where: { $0.dvsecID == CXLDVSECID.device.rawValue }) else { return nil }
        let o = d.offset
        let ranges = (1...2).map { DeviceDVSECRange(n: $0, config: c, dvsecOffset: o) }
        return (RegisterValue(CXLDeviceDVSEC.capability, config: c, base: o), RegisterValue(CXLDeviceDVSEC.control, config: c, base: o), ranges)
    }

    /// "Type 1/2/3 device" from Cache_Capable/Mem_Capable, or the port kind.
    public var cxlKind: String? {
        guard isCXL else { return nil }
        if let d = device {
            switch (d.cap.isSet("Cache_Capable"), d.cap.isSet("Mem_Capable")) {
            case (true, true): return "Type 2 device"
            case (false, true): return "Type 3 device"
            case (true, false): return "Type 1 device"
            case (false, false): return "device (CXL.io only)"
            }
        }
        guard let c = config else { return "CXL function" }
        let caps = CapabilityList(walking: c)
        if let pcie = caps.standard(.pciExpress), let v = c.read(PCIExpressCapability.capabilities, base: pcie.offset) {
            switch PCIExpressCapability.DevicePortType(rawValue: PCIExpressCapability.devicePortType.extract(v)) {
            case .rootPort: return "Root Port"
            case .upstreamPort: return "Upstream Switch Port"
            case .downstreamPort: return "Downstream Switch Port"
            default: break
            }
        }
        return "CXL function"
    }

    /// HDM_Count, and the ranges it covers (1 or 2).
    public var hdmRanges: [DeviceDVSECRange] {
        guard let d = device else { return [] }
        let n = Int(d.cap["HDM_Count"])
        return Array(d.ranges.prefix(min(n, 2)))
    }
}

extension CXLKit {
    /// Every function under `tree`, sorted by address.
    public static func listFunctions(tree: SysfsTree) throws(CommandError) -> [ListedFunction] {
        let addrs: [PCIAddress]
        do { addrs = try tree.functionAddresses() } catch { throw CommandError(error.description) }
        return addrs.map { a in
            guard let bytes = readWholeFile(tree.path(of: a) + "/config", limit: pcieConfigSpaceSize) else {
                return ListedFunction(address: a, config: nil, error: "config not readable")
            }
            guard bytes.count >= 64 else { return ListedFunction(address: a, config: nil, error: "config holds \(bytes.count) bytes") }
            // Unprivileged: the header only. Listed (as lspci does), with the reason CXL is not seen.
            var st = stat()
            let size = stat(tree.path(of: a) + "/config", &st) == 0 ? min(Int(st.st_size), pcieConfigSpaceSize) : bytes.count
            let short = SysfsPCIFunction.shortConfigRead(address: a, read: bytes.count, size: size, privileged: geteuid() == 0)
            return ListedFunction(address: a, config: ConfigSpace(bytes: bytes), error: short.map { _ in
                "only the first \(bytes.count) bytes of config space are readable; CXL DVSECs need root" })
        }
    }

    /// `cxlkit list`.
    /// `selector`: lspci's -s; `showDomain`: lspci's -D (text only: JSON always carries the sysfs address).
    public static func list(tree: SysfsTree, json: Bool, selector: String? = nil, showDomain: Bool = false) throws(CommandError) -> String {
        var fns = try listFunctions(tree: tree)
        if let selector {
            let s: PCISelector
            do { s = try PCISelector(selector) } catch { throw CommandError(error.description) }
            fns = fns.filter { s.matches($0.address) }
        }
        if json {
            let problems = fns.compactMap { f in f.error.map { "\(f.address): \($0)" } }
            return JSONOutput.document(command: "list", succeeded: true, problems: problems,
                                       [("functions", listJSON(fns)["functions"] ?? .array([]))])
        }
        var out = ""
        for f in fns {
            guard let c = f.config else {
                out += "\(showDomain ? f.address.description : f.address.lspciDescription)  <\(f.error ?? "unreadable")>\n"
                continue
            }
            var line = "\(showDomain ? f.address.description : f.address.lspciDescription)  \(hex(c.vendorID ?? 0xFFFF, digits: 4)):\(hex(c.deviceID ?? 0xFFFF, digits: 4))  class \(hex(c.classCode ?? 0, digits: 6))"
            if let e = f.error { line += "  <\(e)>" }
            if let kind = f.cxlKind {
                line += "  CXL \(kind)"
                if let d = f.device {
                    line += " (Cache\(d.cap.flag("Cache_Capable")) Mem\(d.cap.flag("Mem_Capable"))) HDMCount \(d.cap["HDM_Count"]) Mem_Enable\(d.ctl.flag("Mem_Enable"))"
                }
                line += " DVSECs " + f.dvsecs.map { String($0.dvsecID, radix: 16) }.joined(separator: ",")
            }
            out += line + "\n"
            for r in f.hdmRanges {
                out += "\tRange\(r.n): \(hex(r.base, digits: 16))-\(hex(r.base &+ r.size &- 1, digits: 16)) [size=\(PCIDecoder.sizeString(r.size))] Valid\(flag(r.valid)) Active\(flag(r.active))\n"
            }
        }
        return out
    }

    public static func listJSON(_ fns: [ListedFunction]) -> JSONValue {
        .object([("functions", .array(fns.map { f in
            var o = JSONObject()
            o.set("address", f.address.description)
            if let c = f.config {
                o.set("vendor_id", .hexString(c.vendorID ?? 0xFFFF, digits: 4))
                o.set("device_id", .hexString(c.deviceID ?? 0xFFFF, digits: 4))
                o.set("class_code", .hexString(c.classCode ?? 0, digits: 6))
            } else {
                o.set("error", f.error ?? "unreadable")
            }
            if let kind = f.cxlKind {
                var x = JSONObject()
                x.set("kind", kind)
                x.set("dvsecs", .array(f.dvsecs.map { d in
                    .object([("id", .hexString(d.dvsecID, digits: 4)), ("offset", .hexString(d.offset, digits: 3)), ("revision", .number(d.revision)), ("length", .number(d.length))])
                }))
                if let d = f.device {
                    x.set("Cache_Capable", d.cap.isSet("Cache_Capable"))
                    x.set("Mem_Capable", d.cap.isSet("Mem_Capable"))
                    x.set("HDM_Count", d.cap["HDM_Count"])
                    x.set("Mem_Enable", d.ctl.isSet("Mem_Enable"))
                    x.set("ranges", .array(f.hdmRanges.map(\.json)))
                }
                o.set("cxl", x.value)
            } else {
                o.set("cxl", .null)
            }
            return o.value
        }))])
    }
}
