// lspci 3.9.0's detail lines for the PCI Express capability (ls-caps.c cap_express),
// reproduced line for line; checked against lspci by the differential test in
// Tests/CXLKitTests/LspciParityTests.swift.
#if canImport(Glibc)
import Glibc
#endif

extension PCIDecoder {
    /// C's `%g` of a float, as lspci prints power limits.
    static func cFormatG(_ v: Double) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        _ = withVaList([v]) { vsnprintf(&buf, 64, "%g", $0) }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func powerLimit(_ value: UInt32, _ scale: UInt32) -> String {
        if scale == 0 && value >= 0xF0 {
            switch value {
            case 0xF0: return "250W"
            case 0xF1: return "275W"
            case 0xF2: return "300W"
            default: return ">300W"
            }
        }
        let scales: [Float] = [1.0, 0.1, 0.01, 0.001]
        return cFormatG(Double(Float(value) * scales[Int(scale & 3)])) + "W"
    }

    static let l0sLatency = ["<64ns", "<128ns", "<256ns", "<512ns", "<1us", "<2us", "<4us", "unlimited"]
    static let l1Latency = ["<1us", "<2us", "<4us", "<8us", "<16us", "<32us", "<64us", "unlimited"]

    static func linkSpeed(_ s: UInt32) -> String {
        switch s {
        case 1: return "2.5GT/s"
        case 2: return "5GT/s"
        case 3: return "8GT/s"
        case 4: return "16GT/s"
        case 5: return "32GT/s"
        case 6: return "64GT/s"
        default: return "unknown"
        }
    }

    func expressDetails(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> [String] {
        let c = ctx.config, o = cap.offset
        let flags = UInt32(c.read16(o + 2) ?? 0)
        let type = (flags >> 4) & 0xF
        var slot = false
        var link = true
        switch type {
        case 4, 6, 8: slot = flags & 0x100 != 0
        case 9, 10: link = false
        default: break
        }
        var size = slot ? 24 : 16
        if type == 4 { size = 32 }
        guard o + 4 + size <= c.count else { return [] }
        func r32(_ off: Int) -> UInt32 { c.read32(o + off) ?? 0 }
        func r16(_ off: Int) -> UInt32 { UInt32(c.read16(o + off) ?? 0) }
        func f(_ v: UInt32, _ m: UInt32) -> String { v & m != 0 ? "+" : "-" }
        let isEP = type == 0 || type == 1
        var out: [String] = []

        // Device
        let dc = r32(0x04)
        var l = "\t\tDevCap:\tMaxPayload \(128 << (dc & 7)) bytes, PhantFunc \((1 << ((dc >> 3) & 3)) - 1)"
        if isEP { l += ", Latency L0s \(Self.l0sLatency[Int((dc >> 6) & 7)]), L1 \(Self.l1Latency[Int((dc >> 9) & 7)])" }
        out.append(l)
        l = "\t\t\tExtTag\(f(dc, 0x20))"
        if isEP || type == 5 || type == 7 { l += " AttnBtn\(f(dc, 0x1000)) AttnInd\(f(dc, 0x2000)) PwrInd\(f(dc, 0x4000))" }
        l += " RBE\(f(dc, 0x8000))"
        let flrTypes = isEP || type == 9
        if flrTypes { l += " FLReset\(f(dc, 0x1000_0000))" }
        if type == 0 || type == 5 || type == 7 { l += " SlotPowerLimit " + Self.powerLimit((dc >> 18) & 0xFF, (dc >> 26) & 3) }
        out.append(l)
        let dctl = r16(0x08)
        out.append("\t\tDevCtl:\tCorrErr\(f(dctl, 1)) NonFatalErr\(f(dctl, 2)) FatalErr\(f(dctl, 4)) UnsupReq\(f(dctl, 8))")
        l = "\t\t\tRlxdOrd\(f(dctl, 0x10)) ExtTag\(f(dctl, 0x100)) PhantFunc\(f(dctl, 0x200)) AuxPwr\(f(dctl, 0x400)) NoSnoop\(f(dctl, 0x800))"
        if type == 7 { l += " BrConfRtry\(f(dctl, 0x8000))" }
        if flrTypes && dc & 0x1000_0000 != 0 { l += " FLReset\(f(dctl, 0x8000))" }
        out.append(l)
        out.append("\t\t\tMaxPayload \(128 << ((dctl >> 5) & 7)) bytes, MaxReadReq \(128 << ((dctl >> 12) & 7)) bytes")
        let ds = r16(0x0A)
        out.append("\t\tDevSta:\tCorrErr\(f(ds, 1)) NonFatalErr\(f(ds, 2)) FatalErr\(f(ds, 4)) UnsupReq\(f(ds, 8)) AuxPwr\(f(ds, 0x10)) TransPend\(f(ds, 0x20))")

        // Link
        var capSpeed: UInt32 = 0, capWidth: UInt32 = 0
        if link {
            let lc = r32(0x0C)
            let aspm = (lc >> 10) & 3
            capSpeed = lc & 0xF
            capWidth = (lc >> 4) & 0x3F
            l = "\t\tLnkCap:\tPort #\(lc >> 24), Speed \(Self.linkSpeed(capSpeed)), Width x\(capWidth), ASPM \(["not supported", "L0s", "L1", "L0s L1"][Int(aspm)])"
            if aspm != 0 {
                l += ", Exit Latency "
                if aspm & 1 != 0 { l += "L0s \(Self.l0sLatency[Int((lc >> 12) & 7)])" }
                if aspm & 2 != 0 { l += (aspm & 1 != 0 ? ", " : "") + "L1 \(Self.l1Latency[Int((lc >> 15) & 7)])" }
            }
            out.append(l)
            out.append("\t\t\tClockPM\(f(lc, 0x40000)) Surprise\(f(lc, 0x80000)) LLActRep\(f(lc, 0x100000)) BwNot\(f(lc, 0x200000)) ASPMOptComp\(f(lc, 0x400000))")
            let lctl = r16(0x10)
            l = "\t\tLnkCtl:\tASPM \(["Disabled", "L0s Enabled", "L1 Enabled", "L0s L1 Enabled"][Int(lctl & 3)]);"
            if type == 4 || isEP || type == 7 { l += " RCB \(lctl & 8 != 0 ? 128 : 64) bytes," }
            l += " Disabled\(f(lctl, 0x10)) CommClk\(f(lctl, 0x40))"
            out.append(l)
            out.append("\t\t\tExtSynch\(f(lctl, 0x80)) ClockPM\(f(lctl, 0x100)) AutWidDis\(f(lctl, 0x200)) BWInt\(f(lctl, 0x400)) AutBWInt\(f(lctl, 0x800))")
            let ls = r16(0x12)
            let staSpeed = ls & 0xF, staWidth = (ls >> 4) & 0x3F
            func compare(_ sta: UInt32, _ cap: UInt32) -> String {
                if sta > cap { return " (overdriven)" }
                if sta == cap || type == 4 || type == 6 || type == 8 { return "" }
                return " (downgraded)"
            }
            out.append("\t\tLnkSta:\tSpeed \(Self.linkSpeed(staSpeed))\(compare(staSpeed, capSpeed)), Width x\(staWidth)\(compare(staWidth, capWidth))")
            out.append("\t\t\tTrErr\(f(ls, 0x400)) Train\(f(ls, 0x800)) SlotClk\(f(ls, 0x1000)) DLActive\(f(ls, 0x2000)) BWMgmt\(f(ls, 0x4000)) ABWMgmt\(f(ls, 0x8000))")
        }

        // Slot
        if slot {
            let sc = r32(0x14)
            out.append("\t\tSltCap:\tAttnBtn\(f(sc, 1)) PwrCtrl\(f(sc, 2)) MRL\(f(sc, 4)) AttnInd\(f(sc, 8)) PwrInd\(f(sc, 0x10)) HotPlug\(f(sc, 0x40)) Surprise\(f(sc, 0x20))")
            out.append("\t\t\tSlot #\(sc >> 19), PowerLimit \(Self.powerLimit((sc >> 7) & 0xFF, (sc >> 15) & 3)); Interlock\(f(sc, 0x20000)) NoCompl\(f(sc, 0x40000))")
            let sctl = r16(0x18)
            let ind = ["Unknown", "On", "Blink", "Off"]
            out.append("\t\tSltCtl:\tEnable: AttnBtn\(f(sctl, 1)) PwrFlt\(f(sctl, 2)) MRL\(f(sctl, 4)) PresDet\(f(sctl, 8)) CmdCplt\(f(sctl, 0x10)) HPIrq\(f(sctl, 0x20)) LinkChg\(f(sctl, 0x1000))")
            out.append("\t\t\tControl: AttnInd \(ind[Int((sctl >> 6) & 3)]), PwrInd \(ind[Int((sctl >> 8) & 3)]), Power\(f(sctl, 0x400)) Interlock\(f(sctl, 0x800))")
            let ss = r16(0x1A)
            out.append("\t\tSltSta:\tStatus: AttnBtn\(f(ss, 1)) PowerFlt\(f(ss, 2)) MRL\(f(ss, 0x20)) CmdCplt\(f(ss, 0x10)) PresDet\(f(ss, 0x40)) Interlock\(f(ss, 0x80))")
            out.append("\t\t\tChanged: MRL\(f(ss, 4)) PresDet\(f(ss, 8)) LinkState\(f(ss, 0x100))")
        }

        // Root
        if type == 4 || type == 10 {
            let rc = r16(0x1E), rctl = r16(0x1C), rs = r32(0x20)
            out.append("\t\tRootCap: CRSVisible\(f(rc, 1))")
            out.append("\t\tRootCtl: ErrCorrectable\(f(rctl, 1)) ErrNon-Fatal\(f(rctl, 2)) ErrFatal\(f(rctl, 4)) PMEIntEna\(f(rctl, 8)) CRSVisible\(f(rctl, 0x10))")
            out.append("\t\tRootSta: PME ReqID \(hex(rs & 0xFFFF, digits: 4)), PMEStatus\(f(rs, 0x10000)) PMEPending\(f(rs, 0x20000))")
        }

        guard flags & 0xF >= 2 else { return out }
        guard o + 0x24 + (slot ? 24 : 16) <= c.count else { return out }
        out += express2Details(ctx, o: o, type: type, link: link)
        return out
    }

    private func express2Details(_ ctx: DecodeContext, o: Int, type: UInt32, link: Bool) -> [String] {
        let c = ctx.config
        func r32(_ off: Int) -> UInt32 { c.read32(o + off) ?? 0 }
        func r16(_ off: Int) -> UInt32 { UInt32(c.read16(o + off) ?? 0) }
        func f(_ v: UInt32, _ m: UInt32) -> String { v & m != 0 ? "+" : "-" }
        let isPort = type == 4 || type == 5 || type == 6
        var out: [String] = []
        let dc2 = r32(0x24)
        let ranges: [UInt32: String] = [0: "Not Supported", 1: "Range A", 2: "Range B", 3: "Range AB", 6: "Range BC", 7: "Range ABC", 14: "Range BCD", 15: "Range ABCD"]
        out.append("\t\tDevCap2: Completion Timeout: \(ranges[dc2 & 0xF] ?? "Unknown"), TimeoutDis\(f(dc2, 0x10)) NROPrPrP\(f(dc2, 0x400)) LTR\(f(dc2, 0x800))")
        var l = "\t\t\t 10BitTagComp\(f(dc2, 0x10000)) 10BitTagReq\(f(dc2, 0x20000)) OBFF \(["Not Supported", "Via message", "Via WAKE#", "Via message/WAKE#"][Int((dc2 >> 18) & 3)]), ExtFmt\(f(dc2, 0x100000)) EETLPPrefix\(f(dc2, 0x200000))"
        if dc2 & 0x200000 != 0 {
            let n = (dc2 >> 22) & 3
            l += ", MaxEETLPPrefixes \(n == 0 ? 4 : n)"
        }
        out.append(l)
        out.append("\t\t\t EmergencyPowerReduction \(["Not Supported", "Dev Specific", "Form Factor Dev Specific", "Reserved"][Int((dc2 >> 24) & 3)]), EmergencyPowerReductionInit\(f(dc2, 0x400_0000))")
        l = "\t\t\t FRS\(f(dc2, 0x8000_0000))"
        if type == 4 { l += " LN System CLS \(["Not Supported", "64byte cachelines", "128byte cachelines", "Reserved"][Int((dc2 >> 14) & 3)])," }
        // lspci 3.9 prints TPH only for endpoints and root ports, and nothing for the reserved encoding 2.
        if type == 0 || type == 4 { l += " " + ["TPHComp- ExtTPHComp-", "TPHComp+ ExtTPHComp-", "", "TPHComp+ ExtTPHComp+"][Int((dc2 >> 12) & 3)] }
        if type == 4 || type == 6 { l += " ARIFwd\(f(dc2, 0x20))" }
        out.append(l)
        let hasMemBar = hasMemoryBAR(c)
        if isPort || hasMemBar {
            l = "\t\t\t AtomicOpsCap:"
            if isPort { l += " Routing\(f(dc2, 0x40))" }
            if type == 4 || hasMemBar { l += " 32bit\(f(dc2, 0x80)) 64bit\(f(dc2, 0x100)) 128bitCAS\(f(dc2, 0x200))" }
            out.append(l)
        }
        let dctl2 = r16(0x28)
        let values: [UInt32: String] = [0: "50us to 50ms", 1: "50us to 100us", 2: "1ms to 10ms", 5: "16ms to 55ms", 6: "65ms to 210ms",
                                        9: "260ms to 900ms", 10: "1s to 3.5s", 13: "4s to 13s", 14: "17s to 64s"]
        l = "\t\tDevCtl2: Completion Timeout: \(values[dctl2 & 0xF] ?? "Unknown"), TimeoutDis\(f(dctl2, 0x10)) LTR\(f(dctl2, 0x400)) 10BitTagReq\(f(dctl2, 0x1000)) OBFF \(["Disabled", "Via message A", "Via message B", "Via WAKE#"][Int((dctl2 >> 13) & 3)]),"
        if type == 4 || type == 6 { l += " ARIFwd\(f(dctl2, 0x20))" }
        out.append(l)
        if isPort || type == 0 || type == 9 || type == 1 {
            l = "\t\t\t AtomicOpsCtl:"
            if type == 4 || type == 0 || type == 9 || type == 1 { l += " ReqEn\(f(dctl2, 0x40))" }
            if isPort { l += " EgressBlck\(f(dctl2, 0x80))" }
            out.append(l)
        }
        guard link else { return out }
        let fn = PCIAddress(ctx.subject.name)
        let lc2 = r32(0x2C)
        if !(type == 0 || type == 1) || (fn?.device ?? 0) == 0 && (fn?.function ?? 0) == 0 {
            if lc2 != 0 {
                let v = (lc2 >> 1) & 0x7F
                let speeds = v & 0x60 != 0 ? "RsvdP" : v & 0x10 != 0 ? "2.5-32GT/s" : v & 0x08 != 0 ? "2.5-16GT/s" : v & 0x04 != 0 ? "2.5-8GT/s"
                    : v & 0x02 != 0 ? "2.5-5GT/s" : v & 0x01 != 0 ? "2.5GT/s" : "Unknown"
                out.append("\t\tLnkCap2: Supported Link Speeds: \(speeds), Crosslink\(f(lc2, 0x100)) Retimer\(f(lc2, 0x80_0000)) 2Retimers\(f(lc2, 0x100_0000)) DRS\(f(lc2, 0x8000_0000))")
            }
            let lctl2 = r16(0x30)
            let speed2: [UInt32: String] = [0: "2.5GT/s", 1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"]
            l = "\t\tLnkCtl2: Target Link Speed: \(speed2[lctl2 & 0xF] ?? "Unknown"), EnterCompliance\(f(lctl2, 0x10)) SpeedDis\(f(lctl2, 0x20))"
            if type == 6 { l += ", Selectable De-emphasis: \(lctl2 & 0x40 != 0 ? "-3.5dB" : "-6dB")" }
            out.append(l)
            let margins = ["Normal Operating Range", "800-1200mV(full-swing)/400-700mV(half-swing)", "200-400mV(full-swing)/100-200mV(half-swing)",
                           "200-400mV(full-swing)/100-200mV(half-swing)", "200-400mV(full-swing)/100-200mV(half-swing)", "200-400mV(full-swing)/100-200mV(half-swing)", "Unknown", "Unknown"]
            out.append("\t\t\t Transmit Margin: \(margins[Int((lctl2 >> 7) & 7)]), EnterModifiedCompliance\(f(lctl2, 0x400)) ComplianceSOS\(f(lctl2, 0x800))")
            let presets = ["-6dB de-emphasis, 0dB preshoot", "-3.5dB de-emphasis, 0dB preshoot", "-4.4dB de-emphasis, 0dB preshoot",
                           "-2.5dB de-emphasis, 0dB preshoot", "0dB de-emphasis, 0dB preshoot", "0dB de-emphasis, 1.9dB preshoot",
                           "0dB de-emphasis, 2.5dB preshoot", "-6.0dB de-emphasis, 3.5dB preshoot", "-3.5dB de-emphasis, 3.5dB preshoot",
                           "0dB de-emphasis, 3.5dB preshoot"]
            let p = Int((lctl2 >> 12) & 0xF)
            out.append("\t\t\t Compliance Preset/De-emphasis: \(p < presets.count ? presets[p] : "Unknown")")
        }
        let ls2 = r16(0x32)
        out.append("\t\tLnkSta2: Current De-emphasis Level: \(ls2 & 1 != 0 ? "-3.5dB" : "-6dB"), EqualizationComplete\(f(ls2, 2)) EqualizationPhase1\(f(ls2, 4))")
        out.append("\t\t\t EqualizationPhase2\(f(ls2, 8)) EqualizationPhase3\(f(ls2, 0x10)) LinkEqualizationRequest\(f(ls2, 0x20))")
        l = "\t\t\t Retimer\(f(ls2, 0x40)) 2Retimers\(f(ls2, 0x80)) CrosslinkRes: \(["unsupported", "Upstream Port", "Downstream Port", "incomplete"][Int((ls2 >> 8) & 3)])"
        if (type == 4 || type == 6 || type == 8) && lc2 & 0x8000_0000 != 0 {
            out.append(l + ", DRS\(f(ls2, 0x8000))")
            let comp = ["Link Down - Not Determined", "Link Down - Not Present", "Link Down - Present", "Reserved",
                        "Link Up - Present", "Link Up - Present and DRS Received", "Reserved", "Reserved"]
            out.append("\t\t\t DownstreamComp: \(comp[Int((ls2 >> 12) & 7)])")
        } else {
            out.append(l)
        }
        return out
    }

    /// A memory BAR with an address (lspci asks the OS for sizes; a dump has none, so
    /// lib/generic.c's base addresses are what count).
    func hasMemoryBAR(_ c: ConfigSpace) -> Bool {
        let count = c.headerType == 0 ? 6 : (c.headerType == 1 ? 2 : 0)
        var i = 0
        while i < count {
            let x = c.read32(0x10 + 4 * i) ?? 0
            if x != 0 && x != 0xFFFF_FFFF && x & 1 == 0 { return true }
            if x & 1 == 0 && (x >> 1) & 3 == 2 { i += 1 }
            i += 1
        }
        return false
    }
}
