// lspci 3.9.0 detail lines for Virtual Channel, Multicast, Root Complex Link and the RCEC
// Endpoint Association (ls-ecaps.c cap_vc, cap_multicast, cap_rclink, cap_rcec); checked by the
// differential test. The registers and fields are the catalog's (Catalog/ExtendedCapabilities.swift).

extension PCIDecoder {
    /// lspci's arbitration capability line: each named scheme (and each reserved one that is set) with +/-;
    /// bit n of `supported` is scheme n.
    private static func arbitrationLine(_ prefix: String, _ names: [String], supported: UInt64) -> String {
        var line = prefix
        for i in 0..<names.count where !names[i].hasPrefix("?") || supported >> UInt64(i) & 1 != 0 {
            line += (i == 0 ? "\t" : " ") + names[i] + flag(supported >> UInt64(i) & 1 != 0)
        }
        return line
    }

    func vcDetails(_ o: Int, _ c: ConfigSpace) -> [String] {
        typealias V = VirtualChannelCapability
        // lspci fetches the capability through the first VC's registers (0x1C bytes).
        let vc0 = V.Resource(0)
        guard o + vc0.status.offset + vc0.status.width <= c.count else { return [] }
        func r(_ register: RegisterLayout) -> UInt64 { c.read(register, base: o) ?? 0 }
        let cr1 = r(V.capability1), cr2 = r(V.capability2), ctrl = r(V.control), status = r(V.status)
        let evc = Int(V.Capability1.extendedVCCount.extract(cr1))
        let refClock = V.Capability1.referenceClock.extract(cr1)
        let refClk = refClock == 0 ? "100ns" : "??\(refClock)"
        var out = ["\t\tCaps:\tLPEVC=\(V.Capability1.lowPriorityExtendedVCCount.extract(cr1)) RefClk=\(refClk) PATEntryBits=\(1 << V.Capability1.portArbitrationTableEntrySize.extract(cr1))"]
        let arb = ["Fixed", "WRR32", "WRR64", "WRR128", "??4", "??5", "??6", "??7"]
        out.append(Self.arbitrationLine("\t\tArb:", arb, supported: V.Capability2.vcArbitrationCapability.extract(cr2)))
        out.append("\t\tCtrl:\tArbSelect=\(arb[Int(V.vcArbitrationSelect.extract(ctrl))])")
        out.append("\t\tStatus:\t" + Self.flags(status, [("InProgress", V.vcArbitrationTableStatus)]))
        let patPos = Int(V.Capability2.vcArbitrationTableOffset.extract(cr2))
        if patPos != 0 { out.append("\t\tPort Arbitration Table [\(hex(o + 16 * patPos, digits: 1))] <?>") }
        let vcArb = ["Fixed", "WRR32", "WRR64", "WRR128", "TWRR128", "WRR256", "??6", "??7"]
        typealias RC = V.ResourceCapability
        typealias RCtl = V.ResourceControl
        for i in 0...evc {
            let vc = V.Resource(i)
            guard o + vc.capability.offset + 12 <= c.count else { out.append("\t\tVC\(i):\t<unreadable>"); continue }
            let rcap = r(vc.capability), rctrl = r(vc.control), rstatus = r(vc.status)
            out.append("\t\tVC\(i):\tCaps:\tPATOffset=\(hex(RC.portArbitrationTableOffset.extract(rcap), digits: 2)) MaxTimeSlots=\(RC.maximumTimeSlots.extract(rcap) + 1) "
                + Self.flags(rcap, [("RejSnoopTrans", RC.rejectSnoopTransactions)]))
            out.append(Self.arbitrationLine("\t\t\tArb:", vcArb, supported: RC.portArbitrationCapability.extract(rcap)))
            out.append("\t\t\tCtrl:\t" + Self.flags(rctrl, [("Enable", RCtl.vcEnable)]) + " ID=\(RCtl.vcID.extract(rctrl)) ArbSelect=\(vcArb[Int(RCtl.portArbitrationSelect.extract(rctrl))]) TC/VC=\(hex(RCtl.tcVCMap.extract(rctrl), digits: 2))")
            out.append("\t\t\tStatus:\t" + Self.flags(rstatus, [("NegoPending", V.ResourceStatus.vcNegotiationPending), ("InProgress", V.ResourceStatus.portArbitrationTableStatus)]))
            if RC.portArbitrationTableOffset.extract(rcap) != 0 { out.append("\t\t\tPort Arbitration Table <?>") }
        }
        return out
    }

    func rclinkDetails(_ o: Int, _ c: ConfigSpace) -> [String] {
        typealias L = RCLinkDeclarationCapability
        typealias E = L.ElementSelfDescription
        guard o + L.linkDescription(0).offset <= c.count else { return [] }
        let esd = c.read(L.elementSelfDescription, base: o) ?? 0
        let types = ["Config", "Egress", "Internal"]
        // lspci takes the whole low byte, the bits below Number of Link Entries, as the type: Element Type and
        // the reserved bits above it.
        let elt = Int(esd & ((1 << UInt64(E.numberOfLinkEntries.lsb)) - 1))
        var out = ["\t\tDesc:\tPortNumber=\(hex(E.portNumber.extract(esd), digits: 2)) ComponentID=\(hex(E.componentID.extract(esd), digits: 2)) EltType=\(elt < 3 ? types[elt] : "??\(elt)")"]
        typealias D = L.LinkDescription
        typealias A = L.ConfigurationLinkAddress
        for i in 0..<Int(E.numberOfLinkEntries.extract(esd)) {
            let descRegister = L.linkDescription(i), addressRegister = L.linkAddress(i)
            guard o + descRegister.offset + 16 <= c.count else { out.append("\t\tLink\(i):\t<unreadable>"); return out }
            let desc = c.read(descRegister, base: o) ?? 0, address = c.read(addressRegister, base: o) ?? 0
            let configuration = D.linkType.extract(desc) != 0
            out.append("\t\tLink\(i):\tDesc:\tTargetPort=\(hex(D.targetPortNumber.extract(desc), digits: 2)) TargetComponent=\(hex(D.targetComponentID.extract(desc), digits: 2)) "
                + Self.flags(desc, [("AssocRCRB", D.associateRCRBHeader)]) + " LinkType=\(configuration ? "Config" : "MemMapped") " + Self.flags(desc, [("LinkValid", D.linkValid)]))
            if configuration {
                var n = A.n.extract(address)
                if n == 0 { n = 8 }
                let bus = A.bus.extract(address) & ((1 << n) - 1)
                out.append("\t\t\tAddr:\t\(hex(bus, digits: 2)):\(hex(A.device.extract(address), digits: 2)).\(A.function.extract(address))  CfgSpace=\(hex(address, digits: 16))")
            } else {
                out.append("\t\t\tAddr:\t\(hex(address, digits: 16))")
            }
        }
        return out
    }

    func multicastDetails(_ o: Int, _ c: ConfigSpace, type: UInt8?) -> [String] {
        typealias M = MulticastCapability
        typealias P = PCIExpressCapability.DevicePortType
        guard o + M.overlayBAR.offset + M.overlayBAR.width <= c.count else { return [] }
        func r(_ register: RegisterLayout) -> UInt64 { c.read(register, base: o) ?? 0 }
        let w = r(M.capability), ctl = r(M.control)
        let t = type.flatMap { P(rawValue: UInt64($0)) }
        let endpoint = t == .endpoint || t == .rootComplexIntegratedEndpoint
        // lspci computes 1 << n in a 32-bit int (x86: shift count modulo 32).
        func shifted(_ n: UInt64) -> Int32 { Int32(bitPattern: UInt32(1) << UInt32(n & 31)) }
        var l = "\t\tMcastCap: MaxGroups \(M.Capability.maxGroup.extract(w) + 1)"
        let window = M.Capability.windowSizeRequested.extract(w)
        if endpoint { l += ", WindowSz \(window) (\(shifted(window)) bytes)" }
        var out: [String] = []
        let ctlLine = "\t\tMcastCtl: NumGroups \(M.Control.numGroup.extract(ctl) + 1), " + Self.flags(ctl, [("Enable", M.Control.enable)])
        if t == .rootPort || t == .upstreamPort || t == .downstreamPort {
            out.append(l + ", " + Self.flags(w, [("ECRCRegen", M.Capability.ecrcRegenerationSupported)]))
            out.append(ctlLine)
        } else {
            // lspci ends the McastCap line only for ports.
            out.append(l + ctlLine)
        }
        let bar = r(M.baseAddress)
        out.append("\t\tMcastBAR: IndexPos \(M.indexPosition.extract(bar)), BaseAddr \(hex(bar & M.baseAddressField.mask, digits: 16))")
        out.append("\t\tMcastReceiveVec:      \(hex(r(M.receive), digits: 16))")
        out.append("\t\tMcastBlockAllVec:     \(hex(r(M.blockAll), digits: 16))")
        out.append("\t\tMcastBlockUntransVec: \(hex(r(M.blockUntranslated), digits: 16))")
        if endpoint { return out }
        let ovl = r(M.overlayBAR)
        let size = M.overlaySize.extract(ovl)
        out.append("\t\tMcastOverlayBAR: OverlaySize \(size) " + (size >= 6 ? "(\(shifted(size)) bytes)" : "(disabled)") + ", BaseAddr \(hex(ovl & M.overlayBARField.mask, digits: 16))")
        return out
    }
}

extension PCIDecoder {
    /// Root Complex Event Collector Endpoint Association (PCIe 6.0 §7.9.10).
    func rcecDetails(_ o: Int, _ c: ConfigSpace, version: UInt8) -> [String] {
        typealias R = RCECEndpointAssociationCapability
        guard let bitmap = c.read(R.associationBitmap, base: o) else { return [] }
        var l = "\t\tRCiEPBitmap: "
        if bitmap == 0 {
            l += "00000000 [none]"
        } else {
            var ranges: [String] = []
            var d = 0
            while d < 32 {
                guard bitmap >> UInt64(d) & 1 != 0 else { d += 1; continue }
                var e = d
                while e + 1 < 32 && bitmap >> UInt64(e + 1) & 1 != 0 { e += 1 }
                // lspci 3.9 closes a range only at a clear bit: a run reaching bit 31 prints its start.
                ranges.append(e == d || e == 31 ? "\(d)" : "\(d)-\(e)")
                d = e + 1
            }
            l += "RCiEP at Device(s): " + ranges.joined(separator: ", ")
        }
        var out = [l]
        if version >= 2, let bus = c.read(R.associatedBusNumbers, base: o) {
            out.append("\t\tAssociatedBusNumbers: \(hex(R.nextBus.extract(bus), digits: 2))-\(hex(R.lastBus.extract(bus), digits: 2))")
        }
        return out
    }
}
