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

    static func powerLimit(_ value: UInt64, _ scale: UInt64) -> String {
        if scale == 0 && value >= 0xF0 {
            switch value {
            case 0xF0: return "250W"
            case 0xF1: return "275W"
            case 0xF2: return "300W"
            default: return ">300W"
            }
        }
        let scales: [Float] = [1.0, 0.1, 0.01, 0.001]
        return cFormatG(Double(Float(value) * scales[Int(scale)])) + "W"
    }

    static let l0sLatency = ["<64ns", "<128ns", "<256ns", "<512ns", "<1us", "<2us", "<4us", "unlimited"]
    static let l1Latency = ["<1us", "<2us", "<4us", "<8us", "<16us", "<32us", "<64us", "unlimited"]

    static func linkSpeed(_ s: UInt64) -> String {
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
        typealias P = PCIExpressCapability
        let c = ctx.config, o = cap.offset
        let caps = c.read(P.capabilities, base: o) ?? 0
        let type = P.DevicePortType(rawValue: P.devicePortType.extract(caps))
        var slot = false
        var link = true
        switch type {
        case .rootPort, .downstreamPort, .pciToPCIeBridge: slot = P.Capabilities.slotImplemented.extract(caps) != 0
        case .rootComplexIntegratedEndpoint, .rootComplexEventCollector: link = false
        default: break
        }
        // lspci fetches the registers through Slot Status (through Root Status for a root port).
        let fetched = type == .rootPort ? P.rootStatus : (slot ? P.slotStatus : P.linkStatus)
        guard o + fetched.offset + fetched.width <= c.count else { return [] }
        func r(_ register: RegisterLayout) -> UInt64 { c.read(register, base: o) ?? 0 }
        func flags(_ raw: UInt64, _ fields: [(String, RegisterField)]) -> String { Self.flags(raw, fields) }
        let isEP = type == .endpoint || type == .legacyEndpoint
        var out: [String] = []

        // Device
        typealias DC = P.DeviceCapabilities
        let dc = r(P.deviceCapabilities)
        var l = "\t\tDevCap:\tMaxPayload \(128 << DC.maxPayloadSizeSupported.extract(dc)) bytes, PhantFunc \((1 << DC.phantomFunctionsSupported.extract(dc)) - 1)"
        if isEP {
            l += ", Latency L0s \(Self.l0sLatency[Int(DC.endpointL0sAcceptableLatency.extract(dc))]), L1 \(Self.l1Latency[Int(DC.endpointL1AcceptableLatency.extract(dc))])"
        }
        out.append(l)
        l = "\t\t\t" + flags(dc, [("ExtTag", DC.extendedTagFieldSupported)])
        if isEP || type == .upstreamPort || type == .pcieToPCIBridge {
            l += " " + flags(dc, [("AttnBtn", DC.attentionButtonPresent), ("AttnInd", DC.attentionIndicatorPresent), ("PwrInd", DC.powerIndicatorPresent)])
        }
        l += " " + flags(dc, [("RBE", DC.roleBasedErrorReporting)])
        let flrTypes = isEP || type == .rootComplexIntegratedEndpoint
        if flrTypes { l += " " + flags(dc, [("FLReset", P.flrCapable)]) }
        if type == .endpoint || type == .upstreamPort || type == .pcieToPCIBridge {
            l += " SlotPowerLimit " + Self.powerLimit(DC.capturedSlotPowerLimitValue.extract(dc), DC.capturedSlotPowerLimitScale.extract(dc))
        }
        out.append(l)
        typealias DCtl = P.DeviceControl
        let dctl = r(P.deviceControl)
        out.append("\t\tDevCtl:\t" + flags(dctl, [("CorrErr", DCtl.correctableErrorReportingEnable), ("NonFatalErr", DCtl.nonFatalErrorReportingEnable),
                                                   ("FatalErr", DCtl.fatalErrorReportingEnable), ("UnsupReq", DCtl.unsupportedRequestReportingEnable)]))
        l = "\t\t\t" + flags(dctl, [("RlxdOrd", DCtl.enableRelaxedOrdering), ("ExtTag", DCtl.extendedTagFieldEnable), ("PhantFunc", DCtl.phantomFunctionsEnable),
                                    ("AuxPwr", DCtl.auxPowerPMEnable), ("NoSnoop", DCtl.enableNoSnoop)])
        if type == .pcieToPCIBridge { l += " " + flags(dctl, [("BrConfRtry", DCtl.bridgeConfigurationRetryEnable)]) }
        if flrTypes && P.flrCapable.extract(dc) != 0 { l += " " + flags(dctl, [("FLReset", P.initiateFLR)]) }
        out.append(l)
        out.append("\t\t\tMaxPayload \(128 << DCtl.maxPayloadSize.extract(dctl)) bytes, MaxReadReq \(128 << DCtl.maxReadRequestSize.extract(dctl)) bytes")
        typealias DS = P.DeviceStatus
        out.append("\t\tDevSta:\t" + flags(r(P.deviceStatus), [("CorrErr", DS.correctableErrorDetected), ("NonFatalErr", DS.nonFatalErrorDetected),
                                                                ("FatalErr", DS.fatalErrorDetected), ("UnsupReq", DS.unsupportedRequestDetected),
                                                                ("AuxPwr", DS.auxPowerDetected), ("TransPend", DS.transactionsPending)]))

        // Link
        if link { out += linkLines(r, type: type) }

        // Slot
        if slot {
            typealias SC = P.SlotCapabilities
            let sc = r(P.slotCapabilities)
            out.append("\t\tSltCap:\t" + flags(sc, [("AttnBtn", SC.attentionButtonPresent), ("PwrCtrl", SC.powerControllerPresent), ("MRL", SC.mrlSensorPresent),
                                                     ("AttnInd", SC.attentionIndicatorPresent), ("PwrInd", SC.powerIndicatorPresent), ("HotPlug", SC.hotPlugCapable),
                                                     ("Surprise", SC.hotPlugSurprise)]))
            out.append("\t\t\tSlot #\(SC.physicalSlotNumber.extract(sc)), PowerLimit \(Self.powerLimit(SC.slotPowerLimitValue.extract(sc), SC.slotPowerLimitScale.extract(sc))); "
                + flags(sc, [("Interlock", SC.electromechanicalInterlockPresent), ("NoCompl", SC.noCommandCompletedSupport)]))
            typealias SCtl = P.SlotControl
            let sctl = r(P.slotControl)
            let ind = ["Unknown", "On", "Blink", "Off"]
            out.append("\t\tSltCtl:\tEnable: " + flags(sctl, [("AttnBtn", SCtl.attentionButtonPressedEnable), ("PwrFlt", SCtl.powerFaultDetectedEnable),
                                                               ("MRL", SCtl.mrlSensorChangedEnable), ("PresDet", SCtl.presenceDetectChangedEnable),
                                                               ("CmdCplt", SCtl.commandCompletedInterruptEnable), ("HPIrq", SCtl.hotPlugInterruptEnable),
                                                               ("LinkChg", SCtl.dataLinkLayerStateChangedEnable)]))
            out.append("\t\t\tControl: AttnInd \(ind[Int(SCtl.attentionIndicatorControl.extract(sctl))]), PwrInd \(ind[Int(SCtl.powerIndicatorControl.extract(sctl))]), "
                + flags(sctl, [("Power", SCtl.powerControllerControl), ("Interlock", SCtl.electromechanicalInterlockControl)]))
            typealias SS = P.SlotStatus
            let ss = r(P.slotStatus)
            out.append("\t\tSltSta:\tStatus: " + flags(ss, [("AttnBtn", SS.attentionButtonPressed), ("PowerFlt", SS.powerFaultDetected), ("MRL", SS.mrlSensorState),
                                                             ("CmdCplt", SS.commandCompleted), ("PresDet", SS.presenceDetectState),
                                                             ("Interlock", SS.electromechanicalInterlockStatus)]))
            out.append("\t\t\tChanged: " + flags(ss, [("MRL", SS.mrlSensorChanged), ("PresDet", SS.presenceDetectChanged), ("LinkState", SS.dataLinkLayerStateChanged)]))
        }

        // Root
        if type == .rootPort || type == .rootComplexEventCollector {
            let rs = r(P.rootStatus)
            out.append("\t\tRootCap: " + flags(r(P.rootCapabilities), [("CRSVisible", P.crsSoftwareVisibility)]))
            out.append("\t\tRootCtl: " + flags(r(P.rootControl), Array(zip(["ErrCorrectable", "ErrNon-Fatal", "ErrFatal", "PMEIntEna", "CRSVisible"], P.rootControlFlags))))
            out.append("\t\tRootSta: PME ReqID \(hex(P.RootStatus.pmeRequesterID.extract(rs), digits: 4)), "
                + flags(rs, [("PMEStatus", P.RootStatus.pmeStatus), ("PMEPending", P.RootStatus.pmePending)]))
        }

        guard P.Capabilities.capabilityVersion.extract(caps) >= 2 else { return out }
        // Version 2 adds the registers from Device Capabilities 2, as many bytes again as were fetched (lspci 3.9).
        guard o + P.deviceCapabilities2.offset + (slot ? 24 : 16) <= c.count else { return out }
        out += express2Details(ctx, r, type: type, link: link)
        return out
    }

    /// LnkCap, LnkCtl and LnkSta (PCIe 6.0 §7.5.3.6-8).
    private func linkLines(_ r: (RegisterLayout) -> UInt64, type: PCIExpressCapability.DevicePortType?) -> [String] {
        typealias P = PCIExpressCapability
        typealias LC = P.LinkCapabilities
        func flags(_ raw: UInt64, _ fields: [(String, RegisterField)]) -> String { Self.flags(raw, fields) }
        var out: [String] = []
        let lc = r(P.linkCapabilities)
        let aspm = LC.aspmSupport.extract(lc)
        let capSpeed = LC.maxLinkSpeed.extract(lc), capWidth = LC.maximumLinkWidth.extract(lc)
        var l = "\t\tLnkCap:\tPort #\(LC.portNumber.extract(lc)), Speed \(Self.linkSpeed(capSpeed)), Width x\(capWidth), ASPM \(["not supported", "L0s", "L1", "L0s L1"][Int(aspm)])"
        // ASPM Support: bit 0 of the encoding is L0s, bit 1 L1.
        let l0s = aspm & 1 != 0, l1 = aspm & 2 != 0
        if l0s || l1 {
            l += ", Exit Latency "
            if l0s { l += "L0s \(Self.l0sLatency[Int(LC.l0sExitLatency.extract(lc))])" }
            if l1 { l += (l0s ? ", " : "") + "L1 \(Self.l1Latency[Int(LC.l1ExitLatency.extract(lc))])" }
        }
        out.append(l)
        out.append("\t\t\t" + flags(lc, [("ClockPM", LC.clockPowerManagement), ("Surprise", LC.surpriseDownErrorReportingCapable),
                                          ("LLActRep", LC.dataLinkLayerLinkActiveReportingCapable), ("BwNot", LC.linkBandwidthNotificationCapability),
                                          ("ASPMOptComp", LC.aspmOptionalityCompliance)]))
        typealias LCtl = P.LinkControl
        let lctl = r(P.linkControl)
        l = "\t\tLnkCtl:\tASPM \(["Disabled", "L0s Enabled", "L1 Enabled", "L0s L1 Enabled"][Int(LCtl.aspmControl.extract(lctl))]);"
        if type == .rootPort || type == .endpoint || type == .legacyEndpoint || type == .pcieToPCIBridge {
            l += " RCB \(LCtl.readCompletionBoundary.extract(lctl) != 0 ? 128 : 64) bytes,"
        }
        l += " " + flags(lctl, [("Disabled", LCtl.linkDisable), ("CommClk", LCtl.commonClockConfiguration)])
        out.append(l)
        out.append("\t\t\t" + flags(lctl, [("ExtSynch", LCtl.extendedSynch), ("ClockPM", LCtl.enableClockPowerManagement), ("AutWidDis", LCtl.hardwareAutonomousWidthDisable),
                                            ("BWInt", LCtl.linkBandwidthManagementInterruptEnable), ("AutBWInt", LCtl.linkAutonomousBandwidthInterruptEnable)]))
        typealias LS = P.LinkStatus
        let ls = r(P.linkStatus)
        let staSpeed = LS.currentLinkSpeed.extract(ls), staWidth = LS.negotiatedLinkWidth.extract(ls)
        func compare(_ sta: UInt64, _ cap: UInt64) -> String {
            if sta > cap { return " (overdriven)" }
            if sta == cap || type == .rootPort || type == .downstreamPort || type == .pciToPCIeBridge { return "" }
            return " (downgraded)"
        }
        out.append("\t\tLnkSta:\tSpeed \(Self.linkSpeed(staSpeed))\(compare(staSpeed, capSpeed)), Width x\(staWidth)\(compare(staWidth, capWidth))")
        out.append("\t\t\t" + flags(ls, [("TrErr", LS.linkTrainingError), ("Train", LS.linkTraining), ("SlotClk", LS.slotClockConfiguration),
                                          ("DLActive", LS.dataLinkLayerLinkActive), ("BWMgmt", LS.linkBandwidthManagementStatus),
                                          ("ABWMgmt", LS.linkAutonomousBandwidthStatus)]))
        return out
    }

    private func express2Details(_ ctx: DecodeContext, _ r: (RegisterLayout) -> UInt64, type: PCIExpressCapability.DevicePortType?, link: Bool) -> [String] {
        typealias P = PCIExpressCapability
        typealias DC2 = P.DeviceCapabilities2
        let c = ctx.config
        func flags(_ raw: UInt64, _ fields: [(String, RegisterField)]) -> String { Self.flags(raw, fields) }
        let isPort = type == .rootPort || type == .upstreamPort || type == .downstreamPort
        var out: [String] = []
        let dc2 = r(P.deviceCapabilities2)
        let ranges: [UInt64: String] = [0: "Not Supported", 1: "Range A", 2: "Range B", 3: "Range AB", 6: "Range BC", 7: "Range ABC", 14: "Range BCD", 15: "Range ABCD"]
        out.append("\t\tDevCap2: Completion Timeout: \(ranges[DC2.completionTimeoutRangesSupported.extract(dc2)] ?? "Unknown"), "
            + flags(dc2, [("TimeoutDis", DC2.completionTimeoutDisableSupported), ("NROPrPrP", DC2.noROEnabledPRPRPassing), ("LTR", DC2.ltrMechanismSupported)]))
        var l = "\t\t\t " + flags(dc2, [("10BitTagComp", DC2.tenBitTagCompleterSupported), ("10BitTagReq", DC2.tenBitTagRequesterSupported)])
            + " OBFF \(["Not Supported", "Via message", "Via WAKE#", "Via message/WAKE#"][Int(DC2.obffSupported.extract(dc2))]), "
            + flags(dc2, [("ExtFmt", DC2.extendedFmtFieldSupported), ("EETLPPrefix", DC2.endEndTLPPrefixSupported)])
        if DC2.endEndTLPPrefixSupported.extract(dc2) != 0 {
            let n = DC2.maxEndEndTLPPrefixes.extract(dc2)
            l += ", MaxEETLPPrefixes \(n == 0 ? 4 : n)"
        }
        out.append(l)
        out.append("\t\t\t EmergencyPowerReduction \(["Not Supported", "Dev Specific", "Form Factor Dev Specific", "Reserved"][Int(DC2.emergencyPowerReductionSupported.extract(dc2))]), "
            + flags(dc2, [("EmergencyPowerReductionInit", DC2.emergencyPowerReductionInitializationRequired)]))
        l = "\t\t\t " + flags(dc2, [("FRS", DC2.frsSupported)])
        if type == .rootPort { l += " LN System CLS \(["Not Supported", "64byte cachelines", "128byte cachelines", "Reserved"][Int(DC2.lnSystemCLS.extract(dc2))])," }
        // lspci 3.9 prints TPH only for endpoints and root ports, and nothing for the reserved encoding 2.
        if type == .endpoint || type == .rootPort {
            l += " " + ["TPHComp- ExtTPHComp-", "TPHComp+ ExtTPHComp-", "", "TPHComp+ ExtTPHComp+"][Int(DC2.tphCompleterSupported.extract(dc2))]
        }
        if type == .rootPort || type == .downstreamPort { l += " " + flags(dc2, [("ARIFwd", DC2.ariForwardingSupported)]) }
        out.append(l)
        let hasMemBar = hasMemoryBAR(c)
        if isPort || hasMemBar {
            l = "\t\t\t AtomicOpsCap:"
            if isPort { l += " " + flags(dc2, [("Routing", DC2.atomicOpRoutingSupported)]) }
            if type == .rootPort || hasMemBar {
                l += " " + flags(dc2, [("32bit", DC2.atomicOp32BitCompleterSupported), ("64bit", DC2.atomicOp64BitCompleterSupported),
                                       ("128bitCAS", DC2.cas128BitCompleterSupported)])
            }
            out.append(l)
        }
        typealias DCtl2 = P.DeviceControl2
        let dctl2 = r(P.deviceControl2)
        let values: [UInt64: String] = [0: "50us to 50ms", 1: "50us to 100us", 2: "1ms to 10ms", 5: "16ms to 55ms", 6: "65ms to 210ms",
                                        9: "260ms to 900ms", 10: "1s to 3.5s", 13: "4s to 13s", 14: "17s to 64s"]
        l = "\t\tDevCtl2: Completion Timeout: \(values[DCtl2.completionTimeoutValue.extract(dctl2)] ?? "Unknown"), "
            + flags(dctl2, [("TimeoutDis", DCtl2.completionTimeoutDisable), ("LTR", DCtl2.ltrMechanismEnable), ("10BitTagReq", DCtl2.tenBitTagRequesterEnable)])
            + " OBFF \(["Disabled", "Via message A", "Via message B", "Via WAKE#"][Int(DCtl2.obffEnable.extract(dctl2))]),"
        if type == .rootPort || type == .downstreamPort { l += " " + flags(dctl2, [("ARIFwd", DCtl2.ariForwardingEnable)]) }
        out.append(l)
        let requesters: Set<P.DevicePortType> = [.rootPort, .endpoint, .rootComplexIntegratedEndpoint, .legacyEndpoint]
        if isPort || type.map(requesters.contains) == true {
            l = "\t\t\t AtomicOpsCtl:"
            if type.map(requesters.contains) == true { l += " " + flags(dctl2, [("ReqEn", DCtl2.atomicOpRequesterEnable)]) }
            if isPort { l += " " + flags(dctl2, [("EgressBlck", DCtl2.atomicOpEgressBlocking)]) }
            out.append(l)
        }
        guard link else { return out }
        let fn = PCIAddress(ctx.subject.name)
        typealias LC2 = P.LinkCapabilities2
        let lc2 = r(P.linkCapabilities2)
        if !(type == .endpoint || type == .legacyEndpoint) || (fn?.device ?? 0) == 0 && (fn?.function ?? 0) == 0 {
            if lc2 != 0 {
                // The highest speed in the vector names the range; speeds past 32GT/s are RsvdP to lspci 3.9.
                let v = LC2.supportedLinkSpeedsVector.extract(lc2)
                let top = v == 0 ? -1 : 63 - v.leadingZeroBitCount
                let speeds = top < 0 ? "Unknown" : top >= 5 ? "RsvdP" : ["2.5GT/s", "2.5-5GT/s", "2.5-8GT/s", "2.5-16GT/s", "2.5-32GT/s"][top]
                out.append("\t\tLnkCap2: Supported Link Speeds: \(speeds), " + flags(lc2, [("Crosslink", LC2.crosslinkSupported), ("Retimer", LC2.retimerPresenceDetectSupported),
                                                                                          ("2Retimers", LC2.twoRetimersPresenceDetectSupported), ("DRS", LC2.drsSupported)]))
            }
            typealias LCtl2 = P.LinkControl2
            let lctl2 = r(P.linkControl2)
            let speed2: [UInt64: String] = [0: "2.5GT/s", 1: "2.5GT/s", 2: "5GT/s", 3: "8GT/s", 4: "16GT/s", 5: "32GT/s", 6: "64GT/s"]
            l = "\t\tLnkCtl2: Target Link Speed: \(speed2[LCtl2.targetLinkSpeed.extract(lctl2)] ?? "Unknown"), "
                + flags(lctl2, [("EnterCompliance", LCtl2.enterCompliance), ("SpeedDis", LCtl2.hardwareAutonomousSpeedDisable)])
            if type == .downstreamPort { l += ", Selectable De-emphasis: \(LCtl2.selectableDeEmphasis.extract(lctl2) != 0 ? "-3.5dB" : "-6dB")" }
            out.append(l)
            let margins = ["Normal Operating Range", "800-1200mV(full-swing)/400-700mV(half-swing)", "200-400mV(full-swing)/100-200mV(half-swing)",
                           "200-400mV(full-swing)/100-200mV(half-swing)", "200-400mV(full-swing)/100-200mV(half-swing)", "200-400mV(full-swing)/100-200mV(half-swing)", "Unknown", "Unknown"]
            out.append("\t\t\t Transmit Margin: \(margins[Int(LCtl2.transmitMargin.extract(lctl2))]), "
                + flags(lctl2, [("EnterModifiedCompliance", LCtl2.enterModifiedCompliance), ("ComplianceSOS", LCtl2.complianceSOS)]))
            let presets = ["-6dB de-emphasis, 0dB preshoot", "-3.5dB de-emphasis, 0dB preshoot", "-4.4dB de-emphasis, 0dB preshoot",
                           "-2.5dB de-emphasis, 0dB preshoot", "0dB de-emphasis, 0dB preshoot", "0dB de-emphasis, 1.9dB preshoot",
                           "0dB de-emphasis, 2.5dB preshoot", "-6.0dB de-emphasis, 3.5dB preshoot", "-3.5dB de-emphasis, 3.5dB preshoot",
                           "0dB de-emphasis, 3.5dB preshoot"]
            let p = Int(LCtl2.compliancePresetDeEmphasis.extract(lctl2))
            out.append("\t\t\t Compliance Preset/De-emphasis: \(p < presets.count ? presets[p] : "Unknown")")
        }
        typealias LS2 = P.LinkStatus2
        let ls2 = r(P.linkStatus2)
        out.append("\t\tLnkSta2: Current De-emphasis Level: \(LS2.currentDeEmphasisLevel.extract(ls2) != 0 ? "-3.5dB" : "-6dB"), "
            + flags(ls2, [("EqualizationComplete", LS2.equalizationComplete), ("EqualizationPhase1", LS2.equalizationPhase1Successful)]))
        out.append("\t\t\t " + flags(ls2, [("EqualizationPhase2", LS2.equalizationPhase2Successful), ("EqualizationPhase3", LS2.equalizationPhase3Successful),
                                            ("LinkEqualizationRequest", LS2.linkEqualizationRequest)]))
        l = "\t\t\t " + flags(ls2, [("Retimer", LS2.retimerPresenceDetected), ("2Retimers", LS2.twoRetimersPresenceDetected)])
            + " CrosslinkRes: \(["unsupported", "Upstream Port", "Downstream Port", "incomplete"][Int(LS2.crosslinkResolution.extract(ls2))])"
        if (type == .rootPort || type == .downstreamPort || type == .pciToPCIeBridge) && LC2.drsSupported.extract(lc2) != 0 {
            out.append(l + ", " + flags(ls2, [("DRS", LS2.drsMessageReceived)]))
            let comp = ["Link Down - Not Determined", "Link Down - Not Present", "Link Down - Present", "Reserved",
                        "Link Up - Present", "Link Up - Present and DRS Received", "Reserved", "Reserved"]
            out.append("\t\t\t DownstreamComp: \(comp[Int(LS2.downstreamComponentPresence.extract(ls2))])")
        } else {
            out.append(l)
        }
        return out
    }

    /// A memory BAR with an address (lspci asks the OS for sizes; a dump has none, so
    /// lib/generic.c's base addresses are what count).
    func hasMemoryBAR(_ c: ConfigSpace) -> Bool {
        typealias B = PCIHeader.BAR
        let count = c.headerType == 0 ? 6 : (c.headerType == 1 ? 2 : 0)
        var i = 0
        while i < count {
            let x = c.read(PCIHeader.bar(i)) ?? 0
            let isMemory = B.memorySpaceIndicator.extract(x) == 0
            if x != 0 && x != 0xFFFF_FFFF && isMemory { return true }
            // A 64-bit BAR's upper half is not a BAR of its own.
            if isMemory && B.memoryType.extract(x) == B.memoryType64Bit { i += 1 }
            i += 1
        }
        return false
    }
}
