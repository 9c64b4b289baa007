import PCI

/// A DVSEC CXL Range (1 or 2) of the PCIe DVSEC for CXL Devices, read through the catalog.
public struct DeviceDVSECRange: Sendable {
    public let n: Int
    public let sizeHigh, sizeLow, baseHigh, baseLow: RegisterValue

    /// Range `n` (1 or 2) of the Device DVSEC at `dvsecOffset`.
    public init(n: Int, config: ConfigSpace, dvsecOffset o: Int) {
        let r = n == 1 ? CXLDeviceDVSEC.range1 : CXLDeviceDVSEC.range2
        func value(_ register: RegisterLayout) -> RegisterValue { RegisterValue(register, config: config, base: o) }
        self.n = n
        sizeHigh = value(r.sizeHigh); sizeLow = value(r.sizeLow); baseHigh = value(r.baseHigh); baseLow = value(r.baseLow)
    }

    /// Size in bytes: Memory_Size_High:Memory_Size_Low (256 MiB granule).
    public var size: UInt64 { (sizeHigh["Memory_Size_High"] << 32) | (sizeLow["Memory_Size_Low"] << 28) }
    /// Base as the spec defines it (reserved low bits dropped).
    public var base: UInt64 { (baseHigh["Memory_Base_High"] << 32) | (baseLow["Memory_Base_Low"] << 28) }
    public var valid: Bool { sizeLow.isSet("Memory_Info_Valid") }
    public var active: Bool { sizeLow.isSet("Memory_Active") }

    /// lspci 3.9.0's two lines. It prints the base registers unmasked and, for a
    /// zero size, `base-(base-1)`; its tables stop at 3 types/classes and 8
    /// interleave encodings (larger values print garbage there; `<?>` here).
    public var lspciLines: [String] {
        let rawBase = (baseHigh.raw << 32) | baseLow.raw
        let end = rawBase &+ size &- 1
        let types = ["Volatile", "Non-volatile", "CDAT"], classes = ["DRAM", "Storage", "CDAT"]
        let interleave: [UInt64] = [0, 256, 4096, 512, 1024, 2048, 8192, 16384]
        let t = Int(sizeLow["Media_Type"]), c = Int(sizeLow["Memory_Class"]), i = Int(sizeLow["Desired_Interleave"])
        let timeout = sizeLow["Memory_Active_Timeout"]
        return [
            "\t\tRange\(n): \(hex(rawBase, digits: 16))-\(hex(end, digits: 16))",
            "\t\t\tValid\(sizeLow.flag("Memory_Info_Valid")) Active\(sizeLow.flag("Memory_Active")) Type=\(t < 3 ? types[t] : "<?>") Class=\(c < 3 ? classes[c] : "<?>") interleave=\(i < 8 ? String(interleave[i]) : "<?>") timeout=\(1 << (timeout * 2))s",
            "\t\t\tBase=\(hex(base, digits: 16)) Size=\(hex(size, digits: 16)) Degraded\(sizeLow.flag("Memory_Active_Degraded"))",
        ]
    }

    public var json: JSONValue {
        var o = JSONObject()
        o.set("range", n)
        o.set("base", .hexString(base, digits: 16))
        o.set("size_bytes", size)
        o.set("Memory_Info_Valid", valid)
        o.set("Memory_Active", active)
        o.set("Media_Type", .object([("value", .number(sizeLow["Media_Type"])), ("meaning", .string(sizeLow.meaning("Media_Type") ?? "reserved"))]))
        o.set("Memory_Class", .object([("value", .number(sizeLow["Memory_Class"])), ("meaning", .string(sizeLow.meaning("Memory_Class") ?? "reserved"))]))
        if let b = CXLDeviceDVSEC.desiredInterleaveBytes[sizeLow["Desired_Interleave"]] {
            o.set("Desired_Interleave_bytes", b)
        } else {
            o.set("Desired_Interleave_bytes", .null)
        }
        o.set("Memory_Active_Timeout_seconds", UInt64(1) << (sizeLow["Memory_Active_Timeout"] * 2))
        o.set("Memory_Active_Degraded", sizeLow.isSet("Memory_Active_Degraded"))
        return o.value
    }
}
