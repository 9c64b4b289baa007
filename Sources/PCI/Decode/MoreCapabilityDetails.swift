// lspci 3.9.0 detail lines for more capabilities (ls-caps.c cap_msi, ls-ecaps.c
// cap_ltr, cap_sec, cap_ats, cap_pri, cap_pasid, cap_sriov, cap_l1pm, cap_ptm,
// cap_dpc, cap_tph); checked against lspci by the differential test.

extension PCIDecoder {
    func msiDetails(_ o: Int, _ c: ConfigSpace) -> [String] {
        guard let cap = c.read16(o + 2) else { return [] }
        let is64 = cap & 0x80 != 0
        let dataOff = is64 ? 0x0C : 0x08
        guard o + dataOff + 2 <= c.count, let lo = c.read32(o + 4), let data = c.read16(o + dataOff) else { return [] }
        var addr = ""
        if is64 { addr = hex(c.read32(o + 8) ?? 0, digits: 8) }
        var out = ["\t\tAddress: \(addr)\(hex(lo, digits: 8))  Data: \(hex(data, digits: 4))"]
        if cap & 0x100 != 0 {
            let m = is64 ? 0x10 : 0x0C
            guard o + m + 8 <= c.count, let mask = c.read32(o + m), let pend = c.read32(o + m + 4) else { return out }
            out.append("\t\tMasking: \(hex(mask, digits: 8))  Pending: \(hex(pend, digits: 8))")
        }
        return out
    }

    /// lspci's `1 << (scale * 5)` on a 32-bit int: x86 takes the shift count modulo 32,
    /// so the reserved scales 7 (and 6 only just fits) print what lspci prints.
    static func ltrScale(_ s: UInt32) -> UInt64 { UInt64(UInt32(1) << ((s * 5) & 31)) }

    func moreExtendedDetails(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> [String]? {
        let c = ctx.config, o = cap.offset
        func r32(_ off: Int) -> UInt32 { c.read32(o + off) ?? 0 }
        func r16(_ off: Int) -> UInt32 { UInt32(c.read16(o + off) ?? 0) }
        func r8(_ off: Int) -> UInt32 { UInt32(c.read8(o + off) ?? 0) }
        func f(_ v: UInt32, _ m: UInt32) -> String { v & m != 0 ? "+" : "-" }
        func fits(_ n: Int) -> Bool { o + n <= c.count }
        switch cap.id {
        case 0x18: // LTR
            guard fits(8) else { return [] }
            let s = r16(4), n = r16(6)
            return ["\t\tMax snoop latency: \(UInt64(s & 0x3FF) * Self.ltrScale((s >> 10) & 7))ns",
                    "\t\tMax no snoop latency: \(UInt64(n & 0x3FF) * Self.ltrScale((n >> 10) & 7))ns"]
        case 0x19: // Secondary PCI Express
            guard fits(16) else { return [] }
            let ctl3 = r32(4)
            var lane = r32(8) & 0xFFFF
            var l = "\t\tLaneErrStat: "
            if lane != 0 {
                l += "LaneErr at lane:"
                var n = 0
                while lane != 0 { if lane & 1 != 0 { l += " \(n)" }; lane >>= 1; n += 1 }
            } else {
                l += "0"
            }
            return ["\t\tLnkCtl3: LnkEquIntrruptEn\(f(ctl3, 2)) PerformEqu\(f(ctl3, 1))", l]
        case 0x0F: // ATS
            guard fits(8) else { return [] }
            let capw = r16(4), ctl = r16(6)
            return ["\t\tATSCap:\tInvalidate Queue Depth: \(hex(capw & 0x1F, digits: 2))",
                    "\t\tATSCtl:\tEnable\(f(ctl, 0x8000)), Smallest Translation Unit: \(hex(ctl & 0x1F, digits: 2))"]
        case 0x13: // PRI
            guard fits(16) else { return [] }
            let ctl = r16(4), st = r16(6)
            return ["\t\tPRICtl: Enable\(f(ctl, 1)) Reset\(f(ctl, 2))",
                    "\t\tPRISta: RF\(f(st, 1)) UPRGI\(f(st, 2)) Stopped\(f(st, 0x100))",
                    "\t\tPage Request Capacity: \(hex(r32(8), digits: 8)), Page Request Allocation: \(hex(r32(12), digits: 8))"]
        case 0x1B: // PASID
            guard fits(8) else { return [] }
            let capw = r16(4), ctl = r16(6)
            return ["\t\tPASIDCap: Exec\(f(capw, 2)) Priv\(f(capw, 4)), Max PASID Width: \(hex((capw >> 8) & 0x1F, digits: 2))",
                    "\t\tPASIDCtl: Enable\(f(ctl, 1)) Exec\(f(ctl, 2)) Priv\(f(ctl, 4))"]
        case 0x1E: // L1 PM Substates
            guard fits(16) else { return ["\t\t<unreadable>"] }
            let l1 = r32(4)
            var out = ["\t\tL1SubCap: PCI-PM_L1.2\(f(l1, 1)) PCI-PM_L1.1\(f(l1, 2)) ASPM_L1.2\(f(l1, 4)) ASPM_L1.1\(f(l1, 8)) L1_PM_Substates\(f(l1, 0x10))"]
            func pwron(_ scale: UInt32, _ value: UInt32) -> String {
                switch scale {
                case 0: return "\(2 * value)us"
                case 1: return "\(10 * value)us"
                case 2: return "\(100 * value)us"
                default: return "<error>"
                }
            }
            let l12 = l1 & 1 != 0 || l1 & 4 != 0
            if l12 { out.append("\t\t\t  PortCommonModeRestoreTime=\((l1 >> 8) & 0xFF)us PortTPowerOnTime=\(pwron((l1 >> 16) & 3, (l1 >> 19) & 0x1F))") }
            let c1 = r32(8)
            out.append("\t\tL1SubCtl1: PCI-PM_L1.2\(f(c1, 1)) PCI-PM_L1.1\(f(c1, 2)) ASPM_L1.2\(f(c1, 4)) ASPM_L1.1\(f(c1, 8))")
            if l12 {
                var l = "\t\t\t   T_CommonMode=\((c1 >> 8) & 0xFF)us"
                if l1 & 4 != 0 {
                    let scale = (c1 >> 29) & 7
                    l += scale > 5 ? " LTR1.2_Threshold=<error>" : " LTR1.2_Threshold=\(UInt64((c1 >> 16) & 0x3FF) * Self.ltrScale(scale))ns"
                }
                out.append(l)
            }
            let c2 = r32(12)
            out.append("\t\tL1SubCtl2:" + (l12 ? " T_PwrOn=\(pwron(c2 & 3, (c2 >> 3) & 0x1F))" : ""))
            return out
        case 0x1F: // PTM
            guard fits(12) else { return ["\t\t<unreadable>"] }
            let capw = r32(4), ctl = r32(8)
            func gran(_ g: UInt32, _ zero: String) -> String { g == 0 ? zero : (g == 0xFF ? "Greater than 254ns" : "\(g)ns") }
            return ["\t\tPTMCap: Requester:\(f(capw, 1)) Responder:\(f(capw, 2)) Root:\(f(capw, 4))",
                    "\t\tPTMClockGranularity: \(gran((capw >> 8) & 0xFF, "Unimplemented"))",
                    "\t\tPTMControl: Enabled:\(f(ctl, 1)) RootSelected:\(f(ctl, 2))",
                    "\t\tPTMEffectiveGranularity: \(gran((ctl >> 8) & 0xFF, "Unknown"))"]
        case 0x1D: // DPC
            guard fits(12) else { return [] }
            let capw = r16(4), ctl = r16(6), st = r16(8), src = r16(10)
            return ["\t\tDpcCap:\tINT Msg #\(capw & 0x1F), RPExt\(f(capw, 0x20)) PoisonedTLP\(f(capw, 0x40)) SwTrigger\(f(capw, 0x80)) RP PIO Log \((capw >> 8) & 0xF), DL_ActiveErr\(f(capw, 0x1000))",
                    "\t\tDpcCtl:\tTrigger:\(hex(ctl & 3, digits: 1)) Cmpl\(f(ctl, 4)) INT\(f(ctl, 8)) ErrCor\(f(ctl, 0x10)) PoisonedTLP\(f(ctl, 0x20)) SwTrigger\(f(ctl, 0x40)) DL_ActiveErr\(f(ctl, 0x80))",
                    "\t\tDpcSta:\tTrigger\(f(st, 1)) Reason:\(hex((st >> 1) & 3, digits: 2)) INT\(f(st, 8)) RPBusy\(f(st, 0x10)) TriggerExt:\(hex((st >> 5) & 3, digits: 2)) RP PIO ErrPtr:\(hex((st >> 8) & 0x1F, digits: 2))",
                    "\t\tSource:\t\(hex(src, digits: 4))"]
        case 0x17: // TPH
            guard fits(8) else { return [] }
            let t = r32(4)
            var out: [String] = []
            if t & 2 != 0 { out.append("\t\tInterrupt vector mode supported") }
            if t & 4 != 0 { out.append("\t\tDevice specific mode supported") }
            if t & 0x100 != 0 { out.append("\t\tExtended requester support") }
            switch (t >> 9) & 3 {
            case 0: out.append("\t\tNo steering table available")
            case 1: out.append("\t\tSteering table in TPH capability structure")
            case 2: out.append("\t\tSteering table in MSI-X table")
            default: out.append("\t\tReserved steering table location")
            }
            return out
        case 0x02, 0x09: return vcDetails(o, c)
        case 0x05: return rclinkDetails(o, c)
        case 0x07: return rcecDetails(o, c, version: cap.version)
        case 0x12: return multicastDetails(o, c, type: ctx.devicePortType)
        case 0x15, 0x24: // Resizable BAR, VF Resizable BAR
            guard fits(12) else { return [] }
            let n = Int((r32(8) >> 5) & 7)
            guard (1...6).contains(n) else { return ["\t\t<error in resizable BAR: num_bars=\(n) is out of specification>"] }
            guard fits(4 + 8 * n) else { return [] }
            func size(_ k: UInt32) -> String { "\(1 << (k % 10))\(["MB", "GB", "TB", "PB", "EB"][Int(k / 10)])" }
            var out: [String] = []
            for i in 0..<n {
                let capw = r32(4 + 8 * i), ctl = r32(8 + 8 * i)
                let current = (ctl >> 8) & 0x3F
                var l = "\t\tBAR \(ctl & 7): current size: \(current < 44 ? size(current) : "<unknown>")"
                let supported = UInt64(capw >> 4) | UInt64(ctl >> 16) << 28
                if supported != 0 {
                    l += ", supported:"
                    for k in 0..<44 where supported & (1 << UInt64(k)) != 0 { l += " " + size(UInt32(k)) }
                }
                out.append(l)
            }
            return out
        case 0x10: // SR-IOV
            guard fits(0x40) else { return [] }
            let capl = r32(4), ctl = r16(8), st = r16(0x0A)
            var out = ["\t\tIOVCap:\tMigration\(f(capl, 1)) 10BitTagReq\(f(capl, 4)) Interrupt Message Number: \(hex(capl >> 21, digits: 3))",
                       "\t\tIOVCtl:\tEnable\(f(ctl, 1)) Migration\(f(ctl, 2)) Interrupt\(f(ctl, 4)) MSE\(f(ctl, 8)) ARIHierarchy\(f(ctl, 0x10)) 10BitTagReq\(f(ctl, 0x20))",
                       "\t\tIOVSta:\tMigration\(f(st, 1))",
                       "\t\tInitial VFs: \(r16(0x0C)), Total VFs: \(r16(0x0E)), Number of VFs: \(r16(0x10)), Function Dependency Link: \(hex(r8(0x12), digits: 2))",
                       "\t\tVF offset: \(r16(0x14)), stride: \(r16(0x16)), Device ID: \(hex(r16(0x1A), digits: 4))",
                       "\t\tSupported Page Size: \(hex(r32(0x1C), digits: 8)), System Page Size: \(hex(r32(0x20), digits: 8))"]
            var i = 0
            while i < 6 {
                var l = r32(0x24 + 4 * i)
                if l == 0xFFFF_FFFF { l = 0 }
                if l == 0 { i += 1; continue }
                var line = "\t\tRegion \(i): Memory at "
                let type = l & 6
                if type == 4 {
                    i += 1
                    line += hex(r32(0x24 + 4 * i), digits: 8)
                }
                line += "\(hex(l & ~0xF, digits: 8)) (\(type == 0 ? "32" : "64")-bit, \(l & 8 != 0 ? "" : "non-")prefetchable)"
                out.append(line)
                i += 1
            }
            let m = r32(0x3C)
            out.append("\t\tVF Migration: offset: \(hex(m & ~7, digits: 8)), BIR: \(hex(m & 7, digits: 1))")
            return out
        default:
            return nil
        }
    }
}
