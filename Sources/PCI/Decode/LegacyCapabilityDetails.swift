// lspci 3.9.0 detail lines for Virtual Channel, Multicast and Root Complex Link
// (ls-ecaps.c cap_vc, cap_multicast, cap_rclink); checked by the differential test.

extension PCIDecoder {
    /// lspci's arbitration capability line: each named scheme (and each reserved one that is set) with +/-.
    private static func arbitrationLine(_ prefix: String, _ names: [String], supported: UInt32) -> String {
        var line = prefix
        for i in 0..<names.count where !names[i].hasPrefix("?") || supported & (1 << UInt32(i)) != 0 {
            line += (i == 0 ? "\t" : " ") + names[i] + (supported & (1 << UInt32(i)) != 0 ? "+" : "-")
        }
        return line
    }

    func vcDetails(_ o: Int, _ c: ConfigSpace) -> [String] {
        guard o + 0x1C <= c.count else { return [] }
        func r32(_ off: Int) -> UInt32 { c.read32(off) ?? 0 }
        func f(_ v: UInt32, _ m: UInt32) -> String { v & m != 0 ? "+" : "-" }
        let cr1 = r32(o + 4), cr2 = r32(o + 8)
        let ctrl = UInt32(c.read16(o + 0x0C) ?? 0), status = UInt32(c.read16(o + 0x0E) ?? 0)
        let evc = Int(cr1 & 7)
        let refClk = (cr1 >> 8) & 3 == 0 ? "100ns" : "??\((cr1 >> 8) & 3)"
        var out = ["\t\tCaps:\tLPEVC=\((cr1 >> 4) & 7) RefClk=\(refClk) PATEntryBits=\(1 << ((cr1 >> 10) & 3))"]
        let arb = ["Fixed", "WRR32", "WRR64", "WRR128", "??4", "??5", "??6", "??7"]
        out.append(Self.arbitrationLine("\t\tArb:", arb, supported: cr2))
        out.append("\t\tCtrl:\tArbSelect=\(arb[Int((ctrl >> 1) & 7)])")
        out.append("\t\tStatus:\tInProgress\(f(status, 1))")
        let patPos = Int(cr2 >> 24)
        if patPos != 0 { out.append("\t\tPort Arbitration Table [\(hex(o + 16 * patPos, digits: 1))] <?>") }
        let vcArb = ["Fixed", "WRR32", "WRR64", "WRR128", "TWRR128", "WRR256", "??6", "??7"]
        for i in 0...evc {
            let pos = o + 0x10 + 12 * i
            guard pos + 12 <= c.count else { out.append("\t\tVC\(i):\t<unreadable>"); continue }
            let rcap = r32(pos), rctrl = r32(pos + 4), rstatus = UInt32(c.read16(pos + 10) ?? 0)
            out.append("\t\tVC\(i):\tCaps:\tPATOffset=\(hex(rcap >> 24, digits: 2)) MaxTimeSlots=\(((rcap >> 16) & 0x7F) + 1) RejSnoopTrans\(f(rcap, 1 << 15))")
            out.append(Self.arbitrationLine("\t\t\tArb:", vcArb, supported: rcap))
            out.append("\t\t\tCtrl:\tEnable\(f(rctrl, 1 << 31)) ID=\((rctrl >> 24) & 7) ArbSelect=\(vcArb[Int((rctrl >> 17) & 7)]) TC/VC=\(hex(rctrl & 0xFF, digits: 2))")
            out.append("\t\t\tStatus:\tNegoPending\(f(rstatus, 2)) InProgress\(f(rstatus, 1))")
            if rcap >> 24 != 0 { out.append("\t\t\tPort Arbitration Table <?>") }
        }
        return out
    }

    func rclinkDetails(_ o: Int, _ c: ConfigSpace) -> [String] {
        guard o + 0x10 <= c.count else { return [] }
        let esd = c.read32(o + 4) ?? 0
        let types = ["Config", "Egress", "Internal"]
        let elt = Int(esd & 0xFF)
        var out = ["\t\tDesc:\tPortNumber=\(hex(esd >> 24, digits: 2)) ComponentID=\(hex((esd >> 16) & 0xFF, digits: 2)) EltType=\(elt < 3 ? types[elt] : "??\(elt)")"]
        for i in 0..<Int((esd >> 8) & 0xFF) {
            let pos = o + 0x10 + 16 * i
            guard pos + 16 <= c.count else { out.append("\t\tLink\(i):\t<unreadable>"); return out }
            let desc = c.read32(pos) ?? 0, lo = c.read32(pos + 8) ?? 0, hi = c.read32(pos + 12) ?? 0
            func f(_ v: UInt32, _ m: UInt32) -> String { v & m != 0 ? "+" : "-" }
            out.append("\t\tLink\(i):\tDesc:\tTargetPort=\(hex(desc >> 24, digits: 2)) TargetComponent=\(hex((desc >> 16) & 0xFF, digits: 2)) AssocRCRB\(f(desc, 4)) LinkType=\(desc & 2 != 0 ? "Config" : "MemMapped") LinkValid\(f(desc, 1))")
            if desc & 2 != 0 {
                var n = lo & 7
                if n == 0 { n = 8 }
                let bus = (lo >> 20) & ((1 << n) - 1)
                out.append("\t\t\tAddr:\t\(hex(bus, digits: 2)):\(hex((lo >> 15) & 0x1F, digits: 2)).\((lo >> 12) & 7)  CfgSpace=\(hex(hi, digits: 8))\(hex(lo, digits: 8))")
            } else {
                out.append("\t\t\tAddr:\t\(hex(hi, digits: 8))\(hex(lo, digits: 8))")
            }
        }
        return out
    }

    func multicastDetails(_ o: Int, _ c: ConfigSpace, type: UInt8?) -> [String] {
        guard o + 0x30 <= c.count else { return [] }
        func r64(_ off: Int) -> UInt64 { UInt64(c.read32(o + off) ?? 0) | UInt64(c.read32(o + off + 4) ?? 0) << 32 }
        let w = UInt32(c.read16(o + 4) ?? 0), ctl = UInt32(c.read16(o + 6) ?? 0)
        let t = type.map(Int.init) ?? -1
        // lspci computes 1 << n in a 32-bit int (x86: shift count modulo 32).
        func shifted(_ n: UInt64) -> Int32 { Int32(bitPattern: UInt32(1) << UInt32(n & 31)) }
        var l = "\t\tMcastCap: MaxGroups \((w & 0x3F) + 1)"
        if t == 0 || t == 9 { l += ", WindowSz \((w >> 8) & 0x3F) (\(shifted(UInt64((w >> 8) & 0x3F))) bytes)" }
        var out: [String] = []
        let ctlLine = "\t\tMcastCtl: NumGroups \((ctl & 0x3F) + 1), Enable\(ctl & 0x8000 != 0 ? "+" : "-")"
        if t == 4 || t == 5 || t == 6 {
            out.append(l + ", ECRCRegen\(w & 0x8000 != 0 ? "+" : "-")")
            out.append(ctlLine)
        } else {
            // lspci ends the McastCap line only for ports.
            out.append(l + ctlLine)
        }
        let bar = r64(0x08)
        out.append("\t\tMcastBAR: IndexPos \(bar & 0x3F), BaseAddr \(hex(bar & ~0xFFF, digits: 16))")
        out.append("\t\tMcastReceiveVec:      \(hex(r64(0x10), digits: 16))")
        out.append("\t\tMcastBlockAllVec:     \(hex(r64(0x18), digits: 16))")
        out.append("\t\tMcastBlockUntransVec: \(hex(r64(0x20), digits: 16))")
        if t == 0 || t == 9 { return out }
        let ovl = r64(0x28)
        let size = ovl & 0x3F
        out.append("\t\tMcastOverlayBAR: OverlaySize \(size) " + (size >= 6 ? "(\(shifted(size)) bytes)" : "(disabled)") + ", BaseAddr \(hex(ovl & ~0x3F, digits: 16))")
        return out
    }
}

extension PCIDecoder {
    /// Root Complex Event Collector Endpoint Association (PCIe 6.0 §7.9.10).
    func rcecDetails(_ o: Int, _ c: ConfigSpace, version: UInt8) -> [String] {
        guard let bitmap = c.read32(o + 4) else { return [] }
        var l = "\t\tRCiEPBitmap: "
        if bitmap == 0 {
            l += "00000000 [none]"
        } else {
            var ranges: [String] = []
            var d = 0
            while d < 32 {
                guard bitmap & (1 << UInt32(d)) != 0 else { d += 1; continue }
                var e = d
                while e + 1 < 32 && bitmap & (1 << UInt32(e + 1)) != 0 { e += 1 }
                // lspci 3.9 closes a range only at a clear bit: a run reaching bit 31 prints its start.
                ranges.append(e == d || e == 31 ? "\(d)" : "\(d)-\(e)")
                d = e + 1
            }
            l += "RCiEP at Device(s): " + ranges.joined(separator: ", ")
        }
        var out = [l]
        if version >= 2, let bus = c.read32(o + 8) {
            out.append("\t\tAssociatedBusNumbers: \(hex((bus >> 8) & 0xFF, digits: 2))-\(hex((bus >> 16) & 0xFF, digits: 2))")
        }
        return out
    }
}
