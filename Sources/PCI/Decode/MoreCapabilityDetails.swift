// lspci 3.9.0 detail lines for more capabilities (ls-caps.c cap_msi, ls-ecaps.c
// cap_ltr, cap_sec, cap_ats, cap_pri, cap_pasid, cap_sriov, cap_l1pm, cap_ptm,
// cap_dpc, cap_tph, cap_rebar); checked against lspci by the differential test.
// The registers and fields are the catalog's (Catalog/ExtendedCapabilities.swift,
// MSICapability); what stays here is lspci's wording.

extension PCIDecoder {
    func msiDetails(_ o: Int, _ c: ConfigSpace) -> [String] {
        guard let control = c.read(MSICapability.messageControl, base: o) else { return [] }
        let is64 = MSICapability.Control.is64Bit.extract(control) == 1
        let regs = MSICapability.dataRegisters(is64Bit: is64)
        guard let lo = c.read(MSICapability.messageAddress, base: o), let data = c.read(regs.messageData, base: o) else { return [] }
        let hi = is64 ? hex(c.read(MSICapability.messageUpperAddress, base: o) ?? 0, digits: 8) : ""
        var out = ["\t\tAddress: \(hi)\(hex(lo, digits: 8))  Data: \(hex(data, digits: 4))"]
        if MSICapability.Control.perVectorMasking.extract(control) == 1 {
            guard let mask = c.read(regs.maskBits, base: o), let pending = c.read(regs.pendingBits, base: o) else { return out }
            out.append("\t\tMasking: \(hex(mask, digits: 8))  Pending: \(hex(pending, digits: 8))")
        }
        return out
    }

    /// lspci's `1 << (scale * 5)` on a 32-bit int: x86 takes the shift count modulo 32,
    /// so the reserved scales 7 (and 6 only just fits) print what lspci prints.
    static func ltrScale(_ s: UInt64) -> UInt64 { UInt64(UInt32(1) << ((UInt32(truncatingIfNeeded: s) * 5) & 31)) }

    /// lspci's flag lists: each label followed by + where its field is set, - where it is clear.
    static func flags(_ raw: UInt64, _ fields: [(String, RegisterField)]) -> String {
        fields.map { "\($0.0)\($0.1.extract(raw) != 0 ? "+" : "-")" }.joined(separator: " ")
    }

    /// A latency as Value × 32^Scale ns, from the two fields LTR's registers and L1 PM Substates' threshold share.
    static func latency(_ value: UInt64, scale: UInt64) -> UInt64 { value * ltrScale(scale) }

    func moreExtendedDetails(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> [String]? {
        let c = ctx.config, o = cap.offset
        /// lspci fetches the capability's first `n` bytes before decoding it; where they are not all there it
        /// prints `short`.
        func fetched(_ n: Int, else short: [String] = [], _ decode: () -> [String]) -> [String] {
            o + n <= c.count ? decode() : short
        }
        func r(_ register: RegisterLayout) -> UInt64 { c.read(register, base: o) ?? 0 }
        switch ExtendedCapabilityID(rawValue: cap.id) {
        case .latencyToleranceReporting:
            typealias L = LTRCapability.Latency
            func latency(_ raw: UInt64) -> UInt64 { Self.latency(L.value.extract(raw), scale: L.scale.extract(raw)) }
            return fetched(8) {
                ["\t\tMax snoop latency: \(latency(r(LTRCapability.maxSnoop)))ns",
                 "\t\tMax no snoop latency: \(latency(r(LTRCapability.maxNoSnoop)))ns"]
            }
        case .secondaryPCIExpress:
            typealias L = SecondaryPCIeCapability.LinkControl3
            return fetched(16) {
                let control = r(SecondaryPCIeCapability.linkControl3)
                // lspci reads the low 16 bits of Lane Error Status: lanes 0 to 15.
                let lanes = UInt16(truncatingIfNeeded: r(SecondaryPCIeCapability.laneErrorStatus))
                let errors = (0..<16).filter { lanes >> $0 & 1 != 0 }.map { " \($0)" }.joined()
                return ["\t\tLnkCtl3: " + Self.flags(control, [("LnkEquIntrruptEn", L.equalizationRequestInterruptEnable), ("PerformEqu", L.performEqualization)]),
                        "\t\tLaneErrStat: " + (errors.isEmpty ? "0" : "LaneErr at lane:" + errors)]
            }
        case .addressTranslationServices:
            typealias A = ATSCapability
            return fetched(8) {
                let control = r(A.control)
                return ["\t\tATSCap:\tInvalidate Queue Depth: \(hex(A.invalidateQueueDepth.extract(r(A.capability)), digits: 2))",
                        "\t\tATSCtl:\t" + Self.flags(control, [("Enable", A.Control.enable)]) + ", Smallest Translation Unit: \(hex(A.Control.smallestTranslationUnit.extract(control), digits: 2))"]
            }
        case .pageRequestInterface:
            typealias P = PRICapability
            return fetched(16) {
                let control = r(P.control), status = r(P.status)
                return ["\t\tPRICtl: " + Self.flags(control, [("Enable", P.Control.enable), ("Reset", P.Control.reset)]),
                        "\t\tPRISta: " + Self.flags(status, [("RF", P.Status.responseFailure), ("UPRGI", P.Status.unexpectedGroupIndex), ("Stopped", P.Status.stopped)]),
                        "\t\tPage Request Capacity: \(hex(r(P.capacity), digits: 8)), Page Request Allocation: \(hex(r(P.allocation), digits: 8))"]
            }
        case .processAddressSpaceID:
            typealias P = PASIDCapability
            return fetched(8) {
                let capability = r(P.capability), control = r(P.control)
                return ["\t\tPASIDCap: " + Self.flags(capability, [("Exec", P.Capability.executePermission), ("Priv", P.Capability.privilegedMode)])
                            + ", Max PASID Width: \(hex(P.Capability.maxPASIDWidth.extract(capability), digits: 2))",
                        "\t\tPASIDCtl: " + Self.flags(control, [("Enable", P.Control.enable), ("Exec", P.Control.executePermission), ("Priv", P.Control.privilegedMode)])]
            }
        case .l1PMSubstates:
            return fetched(16, else: ["\t\t<unreadable>"]) { l1PMSubstatesDetails(r) }
        case .precisionTimeMeasurement:
            typealias P = PTMCapability
            func granularity(_ g: UInt64, _ zero: String) -> String { g == 0 ? zero : (g == 0xFF ? "Greater than 254ns" : "\(g)ns") }
            return fetched(12, else: ["\t\t<unreadable>"]) {
                let capability = r(P.capability), control = r(P.control)
                return ["\t\tPTMCap: " + Self.flags(capability, [("Requester:", P.Capability.requester), ("Responder:", P.Capability.responder), ("Root:", P.Capability.root)]),
                        "\t\tPTMClockGranularity: \(granularity(P.Capability.localClockGranularity.extract(capability), "Unimplemented"))",
                        "\t\tPTMControl: " + Self.flags(control, [("Enabled:", P.Control.enable), ("RootSelected:", P.Control.rootSelect)]),
                        "\t\tPTMEffectiveGranularity: \(granularity(P.Control.effectiveGranularity.extract(control), "Unknown"))"]
            }
        case .downstreamPortContainment:
            return fetched(12) { dpcDetails(r) }
        case .tphRequester:
            typealias T = TPHRequesterCapability.Capability
            return fetched(8) {
                let capability = r(TPHRequesterCapability.capability)
                let modes = [(T.interruptVectorMode, "Interrupt vector mode supported"), (T.deviceSpecificMode, "Device specific mode supported"),
                             (T.extendedRequester, "Extended requester support")]
                let table = switch T.stTableLocation.extract(capability) {
                case 0: "No steering table available"
                case 1: "Steering table in TPH capability structure"
                case 2: "Steering table in MSI-X table"
                default: "Reserved steering table location"
                }
                return (modes.filter { $0.0.extract(capability) != 0 }.map(\.1) + [table]).map { "\t\t" + $0 }
            }
        case .virtualChannel, .virtualChannelMFVC: return vcDetails(o, c)
        case .rootComplexLinkDeclaration: return rclinkDetails(o, c)
        case .rootComplexEventCollectorEndpointAssociation: return rcecDetails(o, c, version: cap.version)
        case .multicast: return multicastDetails(o, c, type: ctx.devicePortType)
        case .resizableBAR, .vfResizableBAR:
            let first = ResizableBARCapability.control(0)   // header, then one Capability/Control pair at least
            return fetched(first.offset + first.width) { resizableBARDetails(o, c, r) }
        case .singleRootIOV:
            return fetched(SRIOVCapability.layout.length) { sriovDetails(r) }
        default:
            return nil
        }
    }

    /// L1 PM Substates (cap_l1pm).
    private func l1PMSubstatesDetails(_ r: (RegisterLayout) -> UInt64) -> [String] {
        typealias L = L1PMSubstatesCapability
        /// PCI-PM L1.2, PCI-PM L1.1, ASPM L1.2, ASPM L1.1 (Supported or Enable), labelled as lspci labels them.
        func substates(_ fields: [RegisterField]) -> [(String, RegisterField)] {
            Array(zip(["PCI-PM_L1.2", "PCI-PM_L1.1", "ASPM_L1.2", "ASPM_L1.1"], fields))
        }
        /// T_POWER_ON: Value in units of 2, 10 or 100 us by Scale.
        func powerOn(scale: UInt64, value: UInt64) -> String {
            switch scale {
            case 0: return "\(2 * value)us"
            case 1: return "\(10 * value)us"
            case 2: return "\(100 * value)us"
            default: return "<error>"
            }
        }
        let capability = r(L.capability), control1 = r(L.control1), control2 = r(L.control2)
        let l12 = L.Capability.pciPML12.extract(capability) != 0 || L.Capability.aspmL12.extract(capability) != 0
        var out = ["\t\tL1SubCap: " + Self.flags(capability, substates(L.Capability.substates) + [("L1_PM_Substates", L.Capability.l1PMSubstates)])]
        if l12 {
            out.append("\t\t\t  PortCommonModeRestoreTime=\(L.Capability.commonModeRestoreTime.extract(capability))us "
                + "PortTPowerOnTime=\(powerOn(scale: L.Capability.powerOnScale.extract(capability), value: L.Capability.powerOnValue.extract(capability)))")
        }
        out.append("\t\tL1SubCtl1: " + Self.flags(control1, substates(L.Control1.substates)))
        if l12 {
            var l = "\t\t\t   T_CommonMode=\(L.Control1.commonModeRestoreTime.extract(control1))us"
            if L.Capability.aspmL12.extract(capability) != 0 {
                let scale = L.Control1.ltrThresholdScale.extract(control1)
                l += scale > 5 ? " LTR1.2_Threshold=<error>" : " LTR1.2_Threshold=\(Self.latency(L.Control1.ltrThresholdValue.extract(control1), scale: scale))ns"
            }
            out.append(l)
        }
        out.append("\t\tL1SubCtl2:" + (l12 ? " T_PwrOn=\(powerOn(scale: L.Control2.powerOnScale.extract(control2), value: L.Control2.powerOnValue.extract(control2)))" : ""))
        return out
    }

    /// Downstream Port Containment (cap_dpc).
    private func dpcDetails(_ r: (RegisterLayout) -> UInt64) -> [String] {
        typealias D = DPCCapability
        let capability = r(D.capability), control = r(D.control), status = r(D.status)
        typealias C = D.Capability
        typealias K = D.Control
        typealias S = D.Status
        return ["\t\tDpcCap:\tINT Msg #\(C.interruptMessageNumber.extract(capability)), "
                    + Self.flags(capability, [("RPExt", C.rpExtensions), ("PoisonedTLP", C.poisonedTLPEgressBlocking), ("SwTrigger", C.softwareTriggering)])
                    + " RP PIO Log \(C.rpPIOLogSize.extract(capability)), " + Self.flags(capability, [("DL_ActiveErr", C.dlActiveErrCor)]),
                "\t\tDpcCtl:\tTrigger:\(hex(K.triggerEnable.extract(control), digits: 1)) " + Self.flags(control, [("Cmpl", K.completionControl),
                    ("INT", K.interruptEnable), ("ErrCor", K.errCorEnable), ("PoisonedTLP", K.poisonedTLPEgressBlocking), ("SwTrigger", K.softwareTrigger),
                    ("DL_ActiveErr", K.dlActiveErrCor)]),
                "\t\tDpcSta:\t\(Self.flags(status, [("Trigger", S.triggerStatus)])) Reason:\(hex(S.triggerReason.extract(status), digits: 2)) \(Self.flags(status, [("INT", S.interruptStatus), ("RPBusy", S.rpBusy)])) TriggerExt:\(hex(S.triggerReasonExtension.extract(status), digits: 2)) RP PIO ErrPtr:\(hex(S.rpPIOFirstErrorPointer.extract(status), digits: 2))",
                "\t\tSource:\t\(hex(r(D.errorSourceID), digits: 4))"]
    }

    /// Resizable BAR and VF Resizable BAR (cap_rebar): one line per BAR, sizes as lspci prints them.
    private func resizableBARDetails(_ o: Int, _ c: ConfigSpace, _ r: (RegisterLayout) -> UInt64) -> [String] {
        typealias B = ResizableBARCapability
        let n = Int(B.Control.numberOfBARs.extract(r(B.control(0))))
        guard (1...6).contains(n) else { return ["\t\t<error in resizable BAR: num_bars=\(n) is out of specification>"] }
        let last = B.control(n - 1)
        guard o + last.offset + last.width <= c.count else { return [] }
        func size(_ k: UInt64) -> String { "\(1 << (k % 10))\(["MB", "GB", "TB", "PB", "EB"][Int(k / 10)])" }
        return (0..<n).map { i in
            let capability = r(B.capability(i)), control = r(B.control(i))
            let current = B.Control.barSize.extract(control)
            var l = "\t\tBAR \(B.Control.barIndex.extract(control)): current size: \(current < 44 ? size(current) : "<unknown>")"
            let supported = B.supportedSizes.extract(capability) | B.Control.supportedSizes.extract(control) << 28
            if supported != 0 {
                l += ", supported:"
                for k in 0..<44 where supported & (1 << UInt64(k)) != 0 { l += " " + size(UInt64(k)) }
            }
            return l
        }
    }

    /// Single Root I/O Virtualization (cap_sriov).
    private func sriovDetails(_ r: (RegisterLayout) -> UInt64) -> [String] {
        typealias S = SRIOVCapability
        let capabilities = r(S.capabilities), control = r(S.control), status = r(S.status)
        typealias K = S.Control
        var out = ["\t\tIOVCap:\t" + Self.flags(capabilities, [("Migration", S.Capabilities.vfMigrationCapable), ("10BitTagReq", S.Capabilities.vf10BitTagRequester)])
                       + " Interrupt Message Number: \(hex(S.Capabilities.vfMigrationInterruptMessageNumber.extract(capabilities), digits: 3))",
                   "\t\tIOVCtl:\t" + Self.flags(control, [("Enable", K.vfEnable), ("Migration", K.vfMigrationEnable), ("Interrupt", K.vfMigrationInterruptEnable),
                                                          ("MSE", K.vfMSE), ("ARIHierarchy", K.ariCapableHierarchy), ("10BitTagReq", K.vf10BitTagRequester)]),
                   "\t\tIOVSta:\t" + Self.flags(status, [("Migration", S.vfMigrationStatus)]),
                   "\t\tInitial VFs: \(r(S.initialVFs)), Total VFs: \(r(S.totalVFs)), Number of VFs: \(r(S.numVFs)), Function Dependency Link: \(hex(r(S.functionDependencyLink), digits: 2))",
                   "\t\tVF offset: \(r(S.firstVFOffset)), stride: \(r(S.vfStride)), Device ID: \(hex(r(S.vfDeviceID), digits: 4))",
                   "\t\tSupported Page Size: \(hex(r(S.supportedPageSizes), digits: 8)), System Page Size: \(hex(r(S.systemPageSize), digits: 8))"]
        typealias BAR = PCIHeader.BAR
        var i = 0
        while i < 6 {
            var bar = r(S.vfBAR(i))
            if bar == 0xFFFF_FFFF { bar = 0 }
            if bar == 0 { i += 1; continue }
            var line = "\t\tRegion \(i): Memory at "
            let type = BAR.memoryType.extract(bar)
            if type == BAR.memoryType64Bit {
                i += 1
                line += hex(r(S.vfBAR(i)), digits: 8)
            }
            line += "\(hex(bar & BAR.memoryBaseMask, digits: 8)) (\(type == 0 ? "32" : "64")-bit, \(BAR.prefetchable.extract(bar) != 0 ? "" : "non-")prefetchable)"
            out.append(line)
            i += 1
        }
        let migration = r(S.vfMigrationStateArrayOffset)
        out.append("\t\tVF Migration: offset: \(hex(migration & S.MigrationState.offset.mask, digits: 8)), BIR: \(hex(S.MigrationState.bir.extract(migration), digits: 1))")
        return out
    }
}
