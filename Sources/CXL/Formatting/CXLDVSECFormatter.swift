import PCI

/// Decodes CXL DVSECs (vendor 0x1E98) for the PCI decoder.
///
/// The lines lspci 3.9.0 prints come first and match it byte for byte, quirks
/// included (reference §9.1): nothing for a Device DVSEC of revision 0 or shorter
/// than 0x38, the zero-size range printed as `base-(base-1)`, 16-bit function map
/// entries, the second "AlternateBus" line holding Alt Memory Base/Limit. What lspci
/// does not decode follows on extra lines, spelled as later pciutils spell them
/// where they do (CXLCtl2, CXLCap2, CXLCap3, ...).
public struct CXLDVSECFormatter: DVSECDecoder {
    public init() {}
    public var vendorID: UInt16 { cxlDVSECVendorID }

    public func titleSuffix(_ h: DVSECInstance, context: DecodeContext) -> String {
        h.length >= 16 ? ": CXL" : " <?>"
    }

    public func textLines(_ h: DVSECInstance, context: DecodeContext) -> [String] {
        guard h.length >= 16 else { return [] }
        let c = context.config, o = h.offset
        switch CXLDVSECID(rawValue: h.dvsecID) {
        case .device: return deviceLines(h, c, context.verbosity)
        case .nonCXLFunctionMap:
            guard h.length >= NonCXLFunctionMapDVSEC.length else { return [] }
            return (0..<8).map { i in
                let r = RegisterValue(NonCXLFunctionMapDVSEC.layout.registers.first { $0.offset == 0x0C + 4 * i }!, config: c, base: o)
                // lspci 3.9 reads only the low 16 bits of each map register.
                return "\t\tFuncMap \(i): \(hex(r.raw & 0xFFFF, digits: 8))"
            } + ["\t\tFuncMap+:\t" + (0..<8).map { i in
                hex(RegisterValue(NonCXLFunctionMapDVSEC.layout.registers.first { $0.offset == 0x0C + 4 * i }!, config: c, base: o).raw, digits: 8)
            }.joined(separator: " ")]
        case .portExtensions:
            guard h.length >= PortExtensionsDVSEC.length else { return [] }
            let L = PortExtensionsDVSEC.layout
            let st = RegisterValue(PortExtensionsDVSEC.status, config: c, base: o)
            let ct = RegisterValue(PortExtensionsDVSEC.control, config: c, base: o)
            let bb = RegisterValue(L["Alternate Bus Base"], config: c, base: o)
            let bl = RegisterValue(L["Alternate Bus Limit"], config: c, base: o)
            let mb = RegisterValue(L["Alternate Memory Base"], config: c, base: o)
            let ml = RegisterValue(L["Alternate Memory Limit"], config: c, base: o)
            let pb = RegisterValue(L["Alternate Prefetchable Memory Base"], config: c, base: o)
            let pl = RegisterValue(L["Alternate Prefetchable Memory Limit"], config: c, base: o)
            let pbh = RegisterValue(L["Alternate Prefetchable Memory Base High"], config: c, base: o)
            let plh = RegisterValue(L["Alternate Prefetchable Memory Limit High"], config: c, base: o)
            let rc = RegisterValue(L["CXL RCRB Base"], config: c, base: o)
            let rch = RegisterValue(L["CXL RCRB Base High"], config: c, base: o)
            var out = [
                // lspci 3.9 tests the register's offset (0x0A) as the mask, i.e. bits 1 and 3;
                // the real PM Initialization Complete (bit 0) is on the CXLPortSta+ line.
                "\t\tCXLPortSta:\tPMComplete\(flag(st.raw, UInt64(PortExtensionsDVSEC.status.offset)))",
                "\t\tCXLPortCtl:\tUnmaskSBR\(ct.flag("Unmask SBR")) UnmaskLinkDisable\(ct.flag("Unmask Link Disable")) AltMem\(ct.flag("Alt Memory and ID Space Enable")) AltBME\(ct.flag("Alt BME")) ViralEnable\(ct.flag("Viral Enable"))",
                "\t\tAlternateBus:\t\(hex(bb.raw, digits: 2))-\(hex(bl.raw, digits: 2))",
                "\t\tAlternateBus:\t\(hex(mb.raw, digits: 4))-\(hex(ml.raw, digits: 4))",
            ]
            // Beyond lspci 3.9:
            out.append("\t\tCXLPortSta+:\tPMInitComplete\(st.flag("Port Power Management Initialization Complete")) ViralSta\(st.flag("Viral Status"))")
            out.append("\t\tAltMem:\t\(hex(mb["Alt Mem Base"] << 20, digits: 8))-\(hex((ml["Alt Mem Limit"] << 20) | 0xFFFFF, digits: 8))")
            let pbase = (pbh.raw << 32) | (pb["Alt Prefetch Mem Base"] << 20)
            let plim = (plh.raw << 32) | (pl["Alt Prefetch Mem Limit"] << 20) | 0xFFFFF
            out.append("\t\tAltPrefetchMem:\t\(hex(pbase, digits: 16))-\(hex(plim, digits: 16))")
            out.append("\t\tRCRB:\tEnable\(rc.flag("CXL RCRB Enable")) Base \(hex((rch.raw << 32) | (rc["CXL RCRB Base Address Low"] << 13), digits: 16))")
            return out
        case .gpfPort:
            let L = GPFPortDVSEC.layout
            let p1 = RegisterValue(L["GPF Phase 1 Control"], config: c, base: o)
            let p2 = RegisterValue(L["GPF Phase 2 Control"], config: c, base: o)
            return ["\t\tGPF Phase 1 Timeout: " + Self.gpfTime(base: p1["Port GPF Phase 1 Timeout Base"], scale: p1["Port GPF Phase 1 Timeout Scale"]),
                    "\t\tGPF Phase 2 Timeout: " + Self.gpfTime(base: p2["Port GPF Phase 2 Timeout Base"], scale: p2["Port GPF Phase 2 Timeout Scale"])]
        case .gpfDevice:
            let d = RegisterValue(GPFDeviceDVSEC.phase2Duration, config: c, base: o)
            let p = RegisterValue(GPFDeviceDVSEC.phase2Power, config: c, base: o)
            return ["\t\tGPF Phase 2 Duration: " + Self.gpfTime(base: d["Device GPF Phase 2 Time Base"], scale: d["Device GPF Phase 2 Time Scale"]),
                    "\t\tGPF Phase 2 Power: \(p["GPF Phase 2 active power"])mW"]
        case .flexBusPort: return flexBusLines(h, c)
        case .registerLocator:
            var out: [String] = []
            for e in RegisterLocator.entries(h, config: c) where e.identifier != 0 {
                let name = RegisterLocatorDVSEC.BlockIdentifier(rawValue: e.identifier)?.name ?? "<?>"
                out.append("\t\tBlock\(e.index + 1): BIR: bar\(e.bir), ID: \(name == "empty" ? "<?>" : name), offset: \(hex(e.offset, digits: 16))")
            }
            return out
        case .mld:
            let n = RegisterValue(MLDDVSEC.layout["Number of LD Supported"], config: c, base: o)["Number of LDs Supported"]
            let v = RegisterValue(MLDDVSEC.layout["LD-ID Hot Reset Vector"], config: c, base: o)
            var out: [String] = []
            if (1...16).contains(n) { out.append("\t\tNumLogDevs: \(n)") }
            out.append("\t\tLDIDHotResetVec: \(hex(v.raw, digits: 4))")
            return out
        default:
            return ["\t\tUnknown ID \(hex(h.dvsecID, digits: 4))"]
        }
    }

    /// lspci 3.9.0's GPF time: base times 1/10/100 of us, ms, s; scale 7 (10 s)
    /// prints the unit as `<?>` (fixed in pciutils 3.14).
    static func gpfTime(base: UInt64, scale: UInt64) -> String {
        let mult: [UInt64] = [1, 10, 100, 1, 10, 100, 1, 10]
        let unit = ["us", "us", "us", "ms", "ms", "ms", "s", "<?>"]
        guard scale < 8 else { return "\(base)<?>" }
        return "\(base * mult[Int(scale)])\(unit[Int(scale)])"
    }

    func deviceLines(_ h: DVSECInstance, _ c: ConfigSpace, _ verbosity: Int) -> [String] {
        // lspci 3.9 ignores revision 0 (CXL 1.1) and short structures.
        guard h.revision >= 1, h.length >= CXLDeviceDVSEC.length(revision: 1) else { return [] }
        let o = h.offset
        let cap = RegisterValue(CXLDeviceDVSEC.capability, config: c, base: o)
        let ctl = RegisterValue(CXLDeviceDVSEC.control, config: c, base: o)
        let sta = RegisterValue(CXLDeviceDVSEC.status, config: c, base: o)
        let ctl2 = RegisterValue(CXLDeviceDVSEC.control2, config: c, base: o)
        let sta2 = RegisterValue(CXLDeviceDVSEC.status2, config: c, base: o)
        let lock = RegisterValue(CXLDeviceDVSEC.lock, config: c, base: o)
        let cap2 = RegisterValue(CXLDeviceDVSEC.capability2, config: c, base: o)
        var out: [String] = []
        out.append("\t\tCXLCap:\tCache\(cap.flag("Cache_Capable")) IO\(cap.flag("IO_Capable")) Mem\(cap.flag("Mem_Capable")) Mem HW Init\(cap.flag("Mem_HwInit_Mode")) HDMCount \(cap["HDM_Count"]) Viral\(cap.flag("Viral_Capable"))")
        let timeout = cap.meaning("CXL Reset Timeout").map { $0.replacingSpaces() } ?? "<?>"
        out.append("\t\tCXLCap+:\tCacheWBI\(cap.flag("Cache Writeback and Invalidate Capable")) CXLReset\(cap.flag("CXL Reset Capable")) ResetTimeout \(timeout) ResetMemClr\(cap.flag("CXL Reset Mem Clr Capable")) TSP\(cap.flag("TSP Capable")) MLD\(cap.flag("Multiple Logical Device")) PMInitReport\(cap.flag("PM Init Completion Reporting Capable"))")
        out.append("\t\tCXLCtl:\tCache\(ctl.flag("Cache_Enable")) IO\(ctl.flag("IO_Enable")) Mem\(ctl.flag("Mem_Enable")) Cache SF Cov \(ctl["Cache_SF_Coverage"]) Cache SF Gran \(ctl["Cache_SF_Granularity"]) Cache Clean\(ctl.flag("Cache_Clean_Eviction")) Viral\(ctl.flag("Viral_Enable"))")
        out.append("\t\tCXLCtl+:\tDirectP2PMem\(ctl.flag("Direct P2P Mem Enable"))")
        out.append("\t\tCXLCtl2:\tDisableCaching\(ctl2.flag("Disable Caching")) InitCacheWB&Inval\(ctl2.flag("Initiate Cache Write Back and Invalidation")) InitRst\(ctl2.flag("Initiate CXL Reset")) RstMemClrEn\(ctl2.flag("CXL Reset Mem Clr Enable")) DesiredVolatileHDMStateAfterHotReset\(ctl2.flag("Desired Volatile HDM State after Hot Reset")) ModifiedCompletionEn\(ctl2.flag("Modified Completion Enable"))")
        out.append("\t\tCXLSta:\tViral\(sta.flag("Viral_Status"))")
        out.append("\t\tCXLSta2:\tResetComplete\(sta2.flag("CXL Reset Complete")) ResetError\(sta2.flag("CXL Reset Error")) PMComplete\(sta2.flag("Power Management Initialization Complete"))")
        out.append("\t\tCXLSta2+:\tCacheInvalid\(sta2.flag("Cache Invalid")) VolatileHDMPreservationErr\(sta2.flag("Volatile HDM Preservation Error"))")
        out.append("\t\tCXLLock:\tCONFIG_LOCK\(lock.flag("CONFIG_LOCK"))")
        let unit = cap2["Cache Size Unit"], size = cap2["Cache Size"]
        switch unit {
        case 0: out.append("\t\tCache Size Not Reported")
        case 1: out.append("\t\tCache Size: \(hex(size * 64 * 1024, digits: 8))")
        case 2: out.append("\t\tCache Size: \(hex(size * 1024 * 1024, digits: 8))")
        default: out.append("\t\tCache Size: \(size) of unknown unit size (\(unit))")
        }
        out.append("\t\tCXLCap2:\tFallback \(cap2["Fallback Capability"]) ModifiedCompletion\(cap2.flag("Modified Completion Capable")) NoCleanWriteback\(cap2.flag("No Clean Writeback"))")
        for n in 1...2 { out += DeviceDVSECRange(n: n, config: c, dvsecOffset: o).lspciLines }
        if h.revision >= 2, h.length >= CXLDeviceDVSEC.length(revision: 2) {
            let c3 = RegisterValue(CXLDeviceDVSEC.capability3, config: c, base: o)
            out.append("\t\tCXLCap3:\tDefaultVolatileHDMStateAfterColdReset\(c3.flag("Default Volatile HDM State after Cold Reset")) DefaultVolatileHDMStateAfterWarmReset\(c3.flag("Default Volatile HDM State after Warm Reset")) DefaultVolatileHDMStateAfterHotReset\(c3.flag("Default Volatile HDM State after Hot Reset")) VolatileHDMStateAfterHotResetConfigurable\(c3.flag("Volatile HDM State after Hot Reset - Configurability")) DirectP2PMem\(c3.flag("Direct P2P Mem Capable"))")
        }
        return out
    }

    func flexBusLines(_ h: DVSECInstance, _ c: ConfigSpace) -> [String] {
        guard h.revision >= 1 else { return ["\t\tRevision 0 not supported"] }
        let o = h.offset
        let cap = RegisterValue(FlexBusPortDVSEC.capability, config: c, base: o)
        let ctl = RegisterValue(FlexBusPortDVSEC.control, config: c, base: o)
        let sta = RegisterValue(FlexBusPortDVSEC.status, config: c, base: o)
        let rev2 = h.revision > 1
        func tail(_ r: RegisterValue) -> String { rev2 ? " 256BFlit\(r.flag("Latency Optimized 256B Flit")) PBRFlit\(r.flag("PBR Flit"))" : "" }
        var out = [
            "\t\tFBCap:\tCache\(cap.flag("Cache")) IO\(cap.flag("IO")) Mem\(cap.flag("Mem")) 68BFlit\(cap.flag("CXL 68B Flit and VH")) MltLogDev\(cap.flag("CXL Multi-Logical Device"))" + tail(cap),
            "\t\tFBCtl:\tCache\(ctl.flag("Cache")) IO\(ctl.flag("IO")) Mem\(ctl.flag("Mem")) SynHdrByp\(ctl.flag("CXL Sync Hdr Bypass")) DrftBuf\(ctl.flag("Drift Buffer")) 68BFlit\(ctl.flag("CXL 68B Flit and VH")) MltLogDev\(ctl.flag("CXL Multi-Logical Device")) RCD\(ctl.flag("Disable RCD Training")) Retimer1\(ctl.flag("Retimer1 Present")) Retimer2\(ctl.flag("Retimer2 Present"))" + tail(ctl),
            "\t\tFBSta:\tCache\(sta.flag("Cache")) IO\(sta.flag("IO")) Mem\(sta.flag("Mem")) SynHdrByp\(sta.flag("CXL Sync Hdr Bypass")) DrftBuf\(sta.flag("Drift Buffer")) 68BFlit\(sta.flag("CXL 68B Flit and VH")) MltLogDev\(sta.flag("CXL Multi-Logical Device"))" + tail(sta),
        ]
        let ts = RegisterValue(FlexBusPortDVSEC.receivedModifiedTS, config: c, base: o)
        out.append("\t\tFBModTS:\tReceived FB Data: \(hex(ts["Received Flex Bus Data Phase1"], digits: 6))")
        if rev2 {
            let c2 = RegisterValue(FlexBusPortDVSEC.capability2, config: c, base: o)
            let k2 = RegisterValue(FlexBusPortDVSEC.control2, config: c, base: o)
            let s2 = RegisterValue(FlexBusPortDVSEC.status2, config: c, base: o)
            out += ["\t\tFBCap2:\tNOPHint\(c2.flag("NOP Hint Capable"))", "\t\tFBCtl2:\tNOPHint\(k2.flag("NOP Hint Enable"))",
                    "\t\tFBSta2:\tNOPHintInfo: \(s2["NOP Hint Info"])"]
        }
        return out
    }

    // MARK: JSON

    public func json(_ h: DVSECInstance, context: DecodeContext) -> JSONValue {
        let c = context.config, o = h.offset
        var obj = JSONObject()
        guard let id = CXLDVSECID(rawValue: h.dvsecID) else {
            obj.set("name", "unknown CXL DVSEC ID \(hex(h.dvsecID, digits: 4))")
            return obj.value
        }
        obj.set("name", id.name)
        // The body only (the headers are in the capability's "registers"); registers
        // past the DVSEC's stated length are not part of it.
        if context.verbosity >= 2 {
            let layout = id.layout(revision: h.revision, length: h.length)
            obj.set("registers", layout.json(base: o) { r in
                r.offset >= DVSECHeader.minimumLength && r.offset + r.width <= h.length ? c.read(r, base: o) : nil
            })
        }
        switch id {
        case .device:
            obj.set("ranges", .array((1...2).map { DeviceDVSECRange(n: $0, config: c, dvsecOffset: o).json }))
        case .registerLocator:
            obj.set("blocks", .array(RegisterLocator.entries(h, config: c).map { $0.json }))
        default: break
        }
        return obj.value
    }
}

extension String {
    func replacingSpaces() -> String { String(filter { $0 != " " }) }
}
