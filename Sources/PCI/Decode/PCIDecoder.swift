// lspci-style text and JSON decoding of one function's config space.
//
// Text follows lspci 3.9.0's layout and spelling (pciutils lspci.c, ls-caps.c,
// ls-ecaps.c) for what it prints: header line, Control/Status, Regions, and one
// `Capabilities: [off]` line per capability. Vendor DVSECs and whole-function
// sections come from plug-ins (DecodePlugins.swift).

public struct PCIDecoder: Sendable {
    public private(set) var dvsecDecoders: [UInt16: any DVSECDecoder] = [:]
    public private(set) var extensions: [any FunctionDecodeExtension] = []
    /// Names for header and Subsystem lines; nil prints numeric IDs as lspci does
    /// without a database.
    public var names: PCIIDs?

    public init(names: PCIIDs? = PCIIDs.shared) { self.names = names }

    /// The header-line text after the address, as lspci prints it:
    /// `CXL: Intel Corporation Device 0d93 (rev 01)` (with -v: `(prog-if 10 [...])`).
    public func headerDescription(_ c: ConfigSpace, verbosity: Int) -> String {
        let base = UInt8(truncatingIfNeeded: c.read(PCIHeader.baseClass) ?? 0), sub = UInt8(truncatingIfNeeded: c.read(PCIHeader.subClass) ?? 0)
        let pi = UInt8(truncatingIfNeeded: c.read(PCIHeader.programmingInterface) ?? 0)
        guard let names else {
            return LspciDump.defaultDescription(c) + (verbosity >= 1 && pi != 0 ? " (prog-if \(hex(pi, digits: 2)))" : "")
        }
        var s = names.className(base: base, sub: sub) + ": " + names.deviceName(vendor: c.vendorID ?? 0xFFFF, device: c.deviceID ?? 0xFFFF)
        if let rev = c.read(PCIHeader.revisionID), rev != 0 { s += " (rev \(hex(rev, digits: 2)))" }
        if verbosity >= 1 {
            let pn = names.progIfName(base: base, sub: sub, progIf: pi)
            if pi != 0 || pn != nil { s += " (prog-if \(hex(pi, digits: 2))" + (pn.map { " [\($0)]" } ?? "") + ")" }
        }
        return s
    }

    func subsystemName(_ c: ConfigSpace, sv: UInt16, sd: UInt16) -> String {
        guard let names else { return "Device \(hex(sv, digits: 4)):\(hex(sd, digits: 4))" }
        return names.subsystemName(vendor: c.vendorID ?? 0xFFFF, device: c.deviceID ?? 0xFFFF, subVendor: sv, subDevice: sd)
    }

    /// Registers the decoder for a DVSEC vendor (replacing an earlier one).
    public mutating func register(_ decoder: any DVSECDecoder) { dvsecDecoders[decoder.vendorID] = decoder }
    public mutating func register(_ ext: any FunctionDecodeExtension) { extensions.append(ext) }

    public func context(for subject: DecodeSubject, verbosity: Int) -> DecodeContext {
        DecodeContext(subject: subject, capabilities: CapabilityList(walking: subject.config), verbosity: verbosity)
    }

    // MARK: Text

    /// lspci-style text for one function, ending with a blank line as lspci does.
    public func text(_ subject: DecodeSubject, verbosity: Int) -> String {
        let ctx = context(for: subject, verbosity: verbosity)
        var lines = [subject.name + " " + headerDescription(subject.config, verbosity: verbosity)]
        if verbosity >= 1 {
            lines += headerLines(ctx)
            lines += capabilityLines(ctx)
            for ext in extensions { lines += ext.textLines(context: ctx) }
            for f in ctx.capabilities.findings { lines.append("\t!! " + f.description) }
        }
        return lines.joined(separator: "\n") + "\n" + (verbosity >= 1 ? "\n" : "")
    }

    /// lspci's show_verbose: Control/Status (-vv) or Flags (-v), Latency, Interrupt,
    /// BIST, Regions, and for bridges the bus numbers, windows and BridgeCtl.
    func headerLines(_ ctx: DecodeContext) -> [String] {
        typealias H = PCIHeader
        let c = ctx.config
        var out: [String] = []
        let type = c.headerType ?? 0
        let vv = ctx.verbosity >= 2
        // Subsystem IDs: header 0x2C for type 0; the Bridge Subsystem Vendor ID
        // capability for bridges (lspci's get_subid).
        var ssid: (UInt64, UInt64)?
        if type == 0 {
            ssid = c.read(H.subsystemVendorID).flatMap { v in c.read(H.subsystemID).map { (v, $0) } }
        } else if type == 1, let cap = ctx.capabilities.standard(.bridgeSubsystemVendorID) {
            typealias B = BridgeSubsystemVendorIDCapability
            ssid = c.read(B.subsystemVendorID, base: cap.offset).flatMap { v in c.read(B.subsystemID, base: cap.offset).map { (v, $0) } }
        }
        if let (sv, sd) = ssid, sv != 0, sv != 0xFFFF {
            out.append("\tSubsystem: " + subsystemName(c, sv: UInt16(sv), sd: UInt16(sd)))
        }
        guard type <= 2 else { return out + ["\t!!! Unknown header type \(hex(type, digits: 2))"] }
        // A type 0 header on a PCI-to-PCI bridge (class 06 04), a bridge header on anything but a bridge class (06).
        let baseClass = c.read(PCIHeader.baseClass) ?? 0, subClass = c.read(PCIHeader.subClass) ?? 0
        if (type == 0 && baseClass == 0x06 && subClass == 0x04) || (type != 0 && baseClass != 0x06) {
            out.append("\t!!! Invalid class \(hex(baseClass, digits: 2))\(hex(subClass, digits: 2)) for header type \(hex(type, digits: 2))")
        }
        typealias Cmd = H.Command
        typealias St = H.Status
        let cmd = c.read(H.command) ?? 0, st = c.read(H.status) ?? 0
        let latency = c.read(H.latencyTimer) ?? 0, cacheLine = c.read(H.cacheLineSize) ?? 0
        let minGnt = type == 0 ? (c.read(H.minGnt) ?? 0) : 0, maxLat = type == 0 ? (c.read(H.maxLat) ?? 0) : 0
        // lspci takes the IRQ from the OS (sysfs `irq`) when it has one, else Interrupt Line.
        let pin = c.read(H.interruptPin) ?? 0
        let irq = (ctx.function as? SysfsPCIFunction)?.irq ?? UInt32(c.read(H.interruptLine) ?? 0)
        let devsel = ["fast", "medium", "slow", "??"][Int(St.devselTiming.extract(st))]
        let busMaster = Cmd.busMasterEnable.extract(cmd) != 0
        if vv {
            out.append("\tControl: " + Self.flags(cmd, [("I/O", Cmd.ioSpaceEnable), ("Mem", Cmd.memorySpaceEnable), ("BusMaster", Cmd.busMasterEnable),
                                                         ("SpecCycle", Cmd.specialCycleEnable), ("MemWINV", Cmd.memoryWriteAndInvalidate),
                                                         ("VGASnoop", Cmd.vgaPaletteSnoop), ("ParErr", Cmd.parityErrorResponse), ("Stepping", Cmd.idselStepping),
                                                         ("SERR", Cmd.serrEnable), ("FastB2B", Cmd.fastBackToBackEnable), ("DisINTx", Cmd.interruptDisable)]))
            out.append("\tStatus: " + Self.flags(st, [("Cap", St.capabilitiesList), ("66MHz", St.capable66MHz), ("UDF", St.userDefinableFeatures),
                                                       ("FastB2B", St.fastBackToBackCapable), ("ParErr", St.masterDataParityError)])
                + " DEVSEL=\(devsel) " + Self.flags(st, [(">TAbort", St.signaledTargetAbort), ("<TAbort", St.receivedTargetAbort), ("<MAbort", St.receivedMasterAbort),
                                                         (">SERR", St.signaledSystemError), ("<PERR", St.detectedParityError), ("INTx", St.interruptStatus)]))
            if busMaster {
                var l = "\tLatency: \(latency)"
                if minGnt != 0 || maxLat != 0 {
                    l += " (" + (minGnt != 0 ? "\(minGnt * 250)ns min" : "") + (minGnt != 0 && maxLat != 0 ? ", " : "") + (maxLat != 0 ? "\(maxLat * 250)ns max" : "") + ")"
                }
                if cacheLine != 0 { l += ", Cache Line Size: \(cacheLine * 4) bytes" }
                out.append(l)
            }
            if pin != 0 || irq != 0 {
                out.append("\tInterrupt: pin \(pin != 0 ? String(UnicodeScalar(UInt8(0x40) &+ UInt8(truncatingIfNeeded: pin))) : "?") routed to IRQ \(irq)")
            }
        } else {
            var f = "\tFlags: "
            if busMaster { f += "bus master, " }
            if Cmd.vgaPaletteSnoop.extract(cmd) != 0 { f += "VGA palette snoop, " }
            if Cmd.idselStepping.extract(cmd) != 0 { f += "stepping, " }
            if Cmd.fastBackToBackEnable.extract(cmd) != 0 { f += "fast Back2Back, " }
            if St.capable66MHz.extract(st) != 0 { f += "66MHz, " }
            if St.userDefinableFeatures.extract(st) != 0 { f += "user-definable features, " }
            f += "\(devsel) devsel"
            if busMaster { f += ", latency \(latency)" }
            if irq != 0 { f += ", IRQ \(irq)" }
            out.append(f)
        }
        if let bist = c.read(H.bist), H.BIST.bistCapable.extract(bist) != 0 {
            out.append(H.BIST.startBIST.extract(bist) != 0 ? "\tBIST is running" : "\tBIST result: \(hex(H.BIST.completionCode.extract(bist), digits: 2))")
        }
        out += regionLines(ctx)
        if type == 0 { out += romLines(ctx, register: H.expansionROM(offset: H.type0ExpansionROMOffset)) }
        if type == 1 { out += bridgeLines(ctx) }
        return out
    }

    /// lspci's show_rom: the Expansion ROM BAR (0x30 on type 0, 0x38 on type 1).
    func romLines(_ ctx: DecodeContext, register: RegisterLayout) -> [String] {
        typealias R = PCIHeader.ExpansionROM
        let c = ctx.config
        guard let flg = c.read(register) else { return [] }
        let rom = flg == register.widthMask ? 0 : flg
        let size = (ctx.function as? SysfsPCIFunction)?.romSize ?? 0
        guard rom != 0 || flg != 0 || size != 0 else { return [] }
        let cmd = c.read(PCIHeader.command) ?? 0
        var l = "\tExpansion ROM at "
        if rom & R.baseAddress.mask != 0 {
            l += hex(rom & R.baseAddress.mask, digits: 8)
        } else if flg & R.baseAddress.mask != 0 {
            l += "<ignored>"
        } else {
            l += "<unassigned>"
        }
        if R.enable.extract(flg) == 0 { l += " [disabled]" } else if PCIHeader.Command.memorySpaceEnable.extract(cmd) == 0 { l += " [disabled by cmd]" }
        if size != 0 { l += " [size=\(Self.sizeString(size))]" }
        return [l]
    }

    func bridgeLines(_ ctx: DecodeContext) -> [String] {
        typealias T = PCIHeader.Type1
        let c = ctx.config
        guard let pri = c.read(T.primaryBusNumber), let sec = c.read(T.secondaryBusNumber), let sub = c.read(T.subordinateBusNumber),
              let lat = c.read(T.secondaryLatencyTimer) else { return [] }
        var out = ["\tBus: primary=\(hex(pri, digits: 2)), secondary=\(hex(sec, digits: 2)), subordinate=\(hex(sub, digits: 2)), sec-latency=\(lat)"]
        let verb = ctx.verbosity > 2
        func range(_ prefix: String, _ base: UInt64, _ limit: UInt64, bits: Int, disabled: Bool = false) {
            var l = prefix + ":"
            if base <= limit || verb { l += " " + hex(base, digits: (bits + 3) / 4) + "-" + hex(limit, digits: (bits + 3) / 4) }
            l += !disabled && base <= limit ? " [size=\(Self.sizeString(limit - base + 1))]" : " [disabled]"
            out.append(l + " [\(bits)-bit]")
        }
        // Through sysfs lspci takes the windows the kernel assigned (resource lines
        // 13-15); a window without one is printed from config space as disabled.
        let windows = (ctx.function as? SysfsPCIFunction)?.bridgeWindows ?? []
        let known = windows.count == 3
        func osWindow(_ i: Int) -> (UInt64, UInt64)? {
            guard known, windows[i].size > 0 else { return nil }
            return (windows[i].start, windows[i].size)
        }
        for (i, w) in BridgeWindow.all.enumerated() {
            let base = c.read(w.base) ?? 0, limit = c.read(w.limit) ?? 0
            let type = w.type(base)
            if let (start, size) = osWindow(i) {
                // libpci reports a window's start with the type nibble of its Base register in the low bits.
                let b = start & ~w.typeMask
                range("\t\(w.label)", b, b &+ size &- 1, bits: w.type(start) == T.wideAddressing ? w.bits.wide : w.bits.narrow)
            } else if type != w.type(limit) || !(type == T.narrowAddressing || (type == T.wideAddressing && w.upper != nil)) {
                out.append("\t!!! Unknown \(w.name) range types \(hex(base, digits: 1))/\(hex(limit, digits: 1))")
            } else {
                var b = w.address(base), l = w.address(limit)
                if type == T.wideAddressing, let u = w.upper {
                    b |= (c.read(u.base) ?? 0) << u.shift
                    l |= (c.read(u.limit) ?? 0) << u.shift
                }
                // An optional window the bridge does not implement reads base = limit = 0.
                if !(w.optional && b == 0 && l == 0 && known) {
                    range("\t\(w.label)", b, l + w.granule - 1, bits: type == T.wideAddressing ? w.bits.wide : w.bits.narrow, disabled: known)
                }
            }
        }
        typealias St = PCIHeader.Status
        if ctx.verbosity >= 2, let ss = c.read(T.secondaryStatus) {
            let devsel = ["fast", "medium", "slow", "??"][Int(St.devselTiming.extract(ss))]
            out.append("\tSecondary status: " + Self.flags(ss, [("66MHz", St.capable66MHz), ("FastB2B", St.fastBackToBackCapable), ("ParErr", St.masterDataParityError)])
                + " DEVSEL=\(devsel) " + Self.flags(ss, [(">TAbort", St.signaledTargetAbort), ("<TAbort", St.receivedTargetAbort), ("<MAbort", St.receivedMasterAbort),
                                                         ("<SERR", T.receivedSystemError), ("<PERR", St.detectedParityError)]))
        }
        out += romLines(ctx, register: PCIHeader.expansionROM(offset: PCIHeader.type1ExpansionROMOffset))
        if ctx.verbosity >= 2, let brc = c.read(PCIHeader.bridgeControl) {
            let labels = ["Parity", "SERR", "NoISA", "VGA", "VGA16", "MAbort", ">Reset", "FastB2B", "PriDiscTmr", "SecDiscTmr", "DiscTmrStat", "DiscTmrSERREn"]
            let fields = Array(zip(labels, PCIHeader.BridgeControl.flags))
            out.append("\tBridgeCtl: " + Self.flags(brc, Array(fields.prefix(8))))
            out.append("\t\t" + Self.flags(brc, Array(fields.dropFirst(8))))
        }
        return out
    }

    /// A type 1 header's address window (PCI-to-PCI Bridge Architecture 1.2 §3.2.5.6-.9): Base and Limit registers
    /// whose low nibble is the window's type (0: the narrow form, 1: the wide one, its upper bits in the Upper Base and
    /// Limit registers) and whose upper bits are the address bits at `shift` and above, in granules of `granule`.
    struct BridgeWindow {
        typealias T = PCIHeader.Type1
        /// As lspci names it, in its range line and in its unknown-type line.
        let label: String, name: String
        let base: RegisterLayout, limit: RegisterLayout
        /// Upper Base and Limit registers and the address bit they start at: the wide type only.
        let upper: (base: RegisterLayout, limit: RegisterLayout, shift: Int)?
        let bits: (narrow: Int, wide: Int)
        /// An optional window (I/O, prefetchable) reads base = limit = 0 where the bridge does not implement it.
        let optional: Bool

        /// The register's address bits are its writable field; they are address bits `shift` and up.
        var shift: Int { 8 * base.width }
        var granule: UInt64 { 1 << UInt64(shift + base.writableMask.trailingZeroBitCount) }
        /// The low nibble below the address bits: the window's type (Addressing Capability; reserved 0 for memory).
        var typeMask: UInt64 { base.widthMask & ~base.writableMask }
        func type(_ raw: UInt64) -> UInt64 { raw & typeMask }
        func address(_ raw: UInt64) -> UInt64 { (raw & base.writableMask) << UInt64(shift) }

        /// In the order of the kernel's bridge window resources (sysfs resource lines 13-15).
        static let all = [
            BridgeWindow(label: "I/O behind bridge", name: "I/O", base: T.ioBase, limit: T.ioLimit, upper: (T.ioBaseUpper16Bits, T.ioLimitUpper16Bits, 16),
                         bits: (16, 32), optional: true),
            BridgeWindow(label: "Memory behind bridge", name: "memory", base: T.memoryBase, limit: T.memoryLimit, upper: nil, bits: (32, 32), optional: false),
            BridgeWindow(label: "Prefetchable memory behind bridge", name: "prefetchable memory", base: T.prefetchableMemoryBase, limit: T.prefetchableMemoryLimit,
                         upper: (T.prefetchableBaseUpper32Bits, T.prefetchableLimitUpper32Bits, 32), bits: (32, 64), optional: true),
        ]
    }

    /// lspci 3.9's show_bases. Without OS resource information (dumps) every BAR
    /// slot is its own line, so the upper half of a 64-bit BAR prints as a 32-bit
    /// `<unassigned>` region, as `lspci -F` does. With a live function the upper
    /// half is skipped and sizes are shown, as lspci does through sysfs.
    func regionLines(_ ctx: DecodeContext) -> [String] {
        typealias B = PCIHeader.BAR
        typealias Cmd = PCIHeader.Command
        let c = ctx.config
        let count = c.headerType == 0 ? 6 : (c.headerType == 1 ? 2 : 0)
        let cmd = c.read(PCIHeader.command) ?? 0
        let live = !(ctx.function?.bars.isEmpty ?? true)
        func isIO(_ x: UInt64) -> Bool { B.memorySpaceIndicator.extract(x) == 1 }
        // lib/generic.c: base addresses, a 64-bit BAR's in its lower slot.
        var pos = [UInt64](repeating: 0, count: count)
        var upper = Set<Int>()
        var k = 0
        while k < count {
            let x = c.read(PCIHeader.bar(k)) ?? 0
            if x != 0 && x != 0xFFFF_FFFF {
                if isIO(x) || B.memoryType.extract(x) != B.memoryType64Bit {
                    pos[k] = x
                } else if k < count - 1 {
                    pos[k] = x | (c.read(PCIHeader.bar(k + 1)) ?? 0) << 32
                    upper.insert(k + 1)
                    k += 1
                }
            }
            k += 1
        }
        // A memory BAR's flag bits below Base Address (the address itself may run on into the upper DWORD).
        let memoryFlags = B.memorySpaceIndicator.mask | B.memoryType.mask | B.prefetchable.mask
        var out: [String] = []
        for i in 0..<count {
            if live && upper.contains(i) { continue }
            var flg = c.read(PCIHeader.bar(i)) ?? 0
            if flg == 0xFFFF_FFFF { flg = 0 }
            let size = ctx.function?.bars.first { $0.index == i }?.size ?? 0
            guard pos[i] != 0 || flg != 0 || size != 0 else { continue }
            var line = ctx.verbosity >= 2 ? "\tRegion \(i): " : "\t"
            if isIO(flg) {
                let a = pos[i] & B.ioBaseMask
                let ioEnabled = Cmd.ioSpaceEnable.extract(cmd) != 0
                line += "I/O ports at " + (a != 0 || ioEnabled ? hex(a, digits: 4) : "<unassigned>")
                if !ioEnabled { line += " [disabled]" }
            } else {
                let a = pos[i] & ~memoryFlags
                line += "Memory at " + (a != 0 ? hex(a, digits: 8) : "<unassigned>")
                line += " (\(["32-bit", "low-1M", "64-bit", "type 3"][Int(B.memoryType.extract(flg))]), \(B.prefetchable.extract(flg) != 0 ? "" : "non-")prefetchable)"
                if Cmd.memorySpaceEnable.extract(cmd) == 0 { line += " [disabled]" }
            }
            if size != 0 { line += " [size=\(Self.sizeString(size))]" }
            out.append(line)
        }
        return out
    }

    /// lspci's size spelling (show_size): divide by 1024 while it divides evenly: 4K, 64K, 2M, 16G, 2037M, 684156K;
    /// what is left is printed as a C `unsigned` (its low 32 bits).
    public static func sizeString(_ size: UInt64) -> String {
        var s = size
        var unit = 0
        let units = ["", "K", "M", "G", "T"]
        while unit < units.count - 1 && s != 0 && s % 1024 == 0 { s /= 1024; unit += 1 }
        return "\(UInt32(truncatingIfNeeded: s))\(units[unit])"
    }

    func capabilityLines(_ ctx: DecodeContext) -> [String] {
        var out: [String] = []
        for cap in ctx.capabilities.standard {
            out.append("\tCapabilities: [\(hex(cap.offset, digits: 2))] " + standardTitle(cap, ctx))
            if ctx.verbosity >= 2 { out += standardDetails(cap, ctx) }
        }
        // Where the walk stopped, what lspci prints there.
        for f in ctx.capabilities.findings {
            guard let off = f.offset else { continue }
            if f.message.hasPrefix("capability pointer past the end") {
                out.append("\tCapabilities: <access denied>")
            } else if f.message == "capability list loops" {
                out.append("\tCapabilities: [\(hex(off, digits: 2))] <chain looped>")
            } else if f.message.hasPrefix("capability chain broken") {
                out.append("\tCapabilities: [\(hex(off, digits: 2))] <chain broken>")
            }
        }
        // lspci shows extended capabilities only for PCI Express functions (3.9.0).
        guard ctx.capabilities.standard(.pciExpress) != nil else { return out }
        for cap in ctx.capabilities.extended {
            let ver = ctx.verbosity >= 2 ? " v\(cap.version)" : ""
            out.append("\tCapabilities: [\(hex(cap.offset, digits: 3))\(ver)] " + extendedTitle(cap, ctx))
            if ctx.verbosity >= 2 { out += extendedDetails(cap, ctx) }
        }
        for f in ctx.capabilities.findings where f.message == "extended capability list loops" {
            guard let off = f.offset else { continue }
            let ver = ctx.verbosity >= 2 ? " v\(ExtendedCapabilityHeader.version.extract(ctx.config.read(ExtendedCapabilityHeader.header, base: off) ?? 0))" : ""
            out.append("\tCapabilities: [\(hex(off, digits: 3))\(ver)] <chain looped>")
        }
        return out
    }

    /// Standard capabilities whose lspci detail lines cxlkit does not print (AGP, VPD,
    /// PCI-X, HyperTransport, SATA, Advanced Features, Enhanced Allocation). Every other
    /// capability lspci 3.9.0 details is printed as lspci prints it.
    public static let standardCapabilitiesWithoutDetails = Set(([.agp, .vitalProductData, .pciX, .hyperTransport, .sataConfiguration, .advancedFeatures,
                                                                 .enhancedAllocation] as [CapabilityID]).map { UInt16($0.rawValue) })

    /// True when cxlkit prints a capability's detail lines the way lspci 3.9.0 does.
    public static func rendersLspciDetails(_ cap: CapabilityHeader) -> Bool {
        cap.space == .extended || !standardCapabilitiesWithoutDetails.contains(cap.id)
    }

    // MARK: Standard capabilities

    public func standardTitle(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> String {
        let c = ctx.config, o = cap.offset
        func r(_ register: RegisterLayout) -> UInt64 { c.read(register, base: o) ?? 0 }
        switch CapabilityID(rawValue: UInt8(truncatingIfNeeded: cap.id)) {
        case .null: return "Null"
        case .powerManagement:
            return "Power Management version \(PowerManagementCapability.Capabilities.version.extract(r(PowerManagementCapability.capabilities)))"
        case .agp:
            let rev = r(AGPCapability.revision)
            return "AGP version \(hex(AGPCapability.majorRevision.extract(rev), digits: 1)).\(hex(AGPCapability.minorRevision.extract(rev), digits: 1))"
        case .vitalProductData: return "Vital Product Data"
        case .msi:
            typealias M = MSICapability.Control
            let mc = r(MSICapability.messageControl)
            return "MSI: " + Self.flags(mc, [("Enable", M.enable)]) + " Count=\(1 << M.multipleMessageEnable.extract(mc))/\(1 << M.multipleMessageCapable.extract(mc)) "
                + Self.flags(mc, [("Maskable", M.perVectorMasking), ("64bit", M.is64Bit)])
        case .compactPCIHotSwap: return "CompactPCI hot-swap <?>"
        case .vendorSpecific: return vendorSpecificTitle(cap, ctx)
        case .compactPCICentralResource: return "CompactPCI central resource control <?>"
        case .pciHotPlug: return "Hot-plug capable"
        case .bridgeSubsystemVendorID:
            typealias B = BridgeSubsystemVendorIDCapability
            return "Subsystem: " + subsystemName(c, sv: UInt16(truncatingIfNeeded: r(B.subsystemVendorID)), sd: UInt16(truncatingIfNeeded: r(B.subsystemID)))
        case .agp8x: return "AGP3 <?>"
        case .secureDevice: return "Secure device <?>"
        case .pciExpress:
            typealias P = PCIExpressCapability
            let caps = r(P.capabilities)
            let type = P.devicePortType.extract(caps)
            let slot = "(Slot" + Self.flags(caps, [("", P.Capabilities.slotImplemented)]) + ")"
            let name: String
            switch P.DevicePortType(rawValue: type) {
            case .endpoint: name = "Endpoint"
            case .legacyEndpoint: name = "Legacy Endpoint"
            case .rootPort: name = "Root Port " + slot
            case .upstreamPort: name = "Upstream Port"
            case .downstreamPort: name = "Downstream Port " + slot
            case .pcieToPCIBridge: name = "PCI-Express to PCI/PCI-X Bridge"
            case .pciToPCIeBridge: name = "PCI/PCI-X to PCI-Express Bridge " + slot
            case .rootComplexIntegratedEndpoint: name = "Root Complex Integrated Endpoint"
            case .rootComplexEventCollector: name = "Root Complex Event Collector"
            case nil: name = "Unknown type \(type)"
            }
            return "Express " + (ctx.verbosity >= 2 ? "(v\(P.Capabilities.capabilityVersion.extract(caps))) " : "") + "\(name), MSI \(hex(P.Capabilities.interruptMessageNumber.extract(caps), digits: 2))"
        case .msix:
            typealias M = MSIXCapability.Control
            let mc = r(MSIXCapability.messageControl)
            return "MSI-X: " + Self.flags(mc, [("Enable", M.enable)]) + " Count=\(M.tableSize.extract(mc) + 1) " + Self.flags(mc, [("Masked", M.functionMask)])
        case .advancedFeatures: return "PCI Advanced Features"
        case .enhancedAllocation:
            typealias E = EnhancedAllocationCapability
            var title = "Enhanced Allocation (EA): NumEntries=\(E.numEntries.extract(r(E.entries)))"
            // A bridge's EA capability gives its fixed bus numbers first (lspci prints them in decimal).
            if c.headerType == 1, let buses = c.read(E.bridgeBusNumbers, base: o) {
                title += ", secondary=\(E.fixedSecondaryBusNumber.extract(buses)), subordinate=\(E.fixedSubordinateBusNumber.extract(buses))"
            }
            return title
        default: return "Capability ID 0x\(hex(cap.id, digits: 1)) [\(hex(c.read16(o + 2) ?? 0, digits: 4))]"
        }
    }

    /// Virtio devices (vendor 1af4, device 1000-107f) get lspci's VirtIO decoding
    /// (ls-vendor.c); other vendors the generic length line.
    func isVirtio(_ c: ConfigSpace) -> Bool {
        c.vendorID == 0x1AF4 && (0x1000...0x107F).contains(c.deviceID ?? 0)
    }

    func vendorSpecificTitle(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> String {
        typealias V = VendorSpecificCapability.Virtio
        let c = ctx.config, o = cap.offset
        let len = c.read(VendorSpecificCapability.length, base: o) ?? 0
        if isVirtio(c), len >= UInt64(V.length.offset + V.length.width) {
            let names: [UInt64: String] = [1: "CommonCfg", 2: "Notify", 3: "ISR", 4: "DeviceCfg"]
            return "Vendor Specific Information: VirtIO: " + (names[c.read(V.configType, base: o) ?? 0] ?? "<unknown>")
        }
        return "Vendor Specific Information: Len=\(hex(len, digits: 2)) <?>"
    }

    func standardDetails(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> [String] {
        let c = ctx.config, o = cap.offset
        switch CapabilityID(rawValue: UInt8(truncatingIfNeeded: cap.id)) {
        case .powerManagement:
            typealias PM = PowerManagementCapability
            typealias C = PM.Capabilities
            typealias S = PM.ControlStatus
            guard let pmc = c.read(PM.capabilities, base: o), let pmcsr = c.read(PM.controlStatus, base: o) else { return [] }
            let aux = [0, 55, 100, 160, 220, 270, 320, 375][Int(C.auxCurrent.extract(pmc))]
            // PME_Support: bit n of the field for D0, D1, D2, D3hot, D3cold.
            let pme = C.pmeSupport.extract(pmc)
            let pmeStates = ["D0", "D1", "D2", "D3hot", "D3cold"].enumerated().map { "\($0.element)\(flag(pme >> UInt64($0.offset) & 1 != 0))" }
            var out = [
                "\t\tFlags: " + Self.flags(pmc, [("PMEClk", C.pmeClock), ("DSI", C.deviceSpecificInitialization), ("D1", C.d1Support), ("D2", C.d2Support)])
                    + " AuxCurrent=\(aux)mA PME(" + pmeStates.joined(separator: ",") + ")",
                "\t\tStatus: D\(S.powerState.extract(pmcsr)) " + Self.flags(pmcsr, [("NoSoftRst", S.noSoftReset), ("PME-Enable", S.pmeEnable)])
                    + " DSel=\(S.dataSelect.extract(pmcsr)) DScale=\(S.dataScale.extract(pmcsr)) " + Self.flags(pmcsr, [("PME", S.pmeStatus)]),
            ]
            // lspci prints the bridge extensions where any bit of the byte is set; B3+ means B2_B3# clear.
            if let bse = c.read(PM.bridgeExtensions, base: o), bse != 0 {
                out.append("\t\tBridge: " + Self.flags(bse, [("PM", PM.BridgeExtensions.bpccEnable)]) + " B3" + flag(PM.BridgeExtensions.b2B3.extract(bse) == 0))
            }
            return out
        case .vendorSpecific:
            typealias V = VendorSpecificCapability.Virtio
            let len = c.read(VendorSpecificCapability.length, base: o) ?? 0
            guard isVirtio(c), len >= UInt64(V.length.offset + V.length.width), let bar = c.read(V.bar, base: o),
                  let off = c.read(V.offset, base: o), let size = c.read(V.length, base: o) else { return [] }
            var line = "\t\tBAR=\(bar) offset=\(hex(off, digits: 8)) size=\(hex(size, digits: 8))"
            if c.read(V.configType, base: o) == V.notifyConfigType, len >= UInt64(V.notifyOffsetMultiplier.offset + V.notifyOffsetMultiplier.width),
               let mult = c.read(V.notifyOffsetMultiplier, base: o) {
                line += " multiplier=\(hex(mult, digits: 8))"
            }
            return [line]
        case .msi:
            return msiDetails(o, c)
        case .pciExpress:
            return expressDetails(cap, ctx)
        case .msix:
            typealias M = MSIXCapability
            guard let t = c.read(M.tableOffset, base: o), let p = c.read(M.pbaOffset, base: o) else { return [] }
            return ["\t\tVector table: BAR=\(M.tableBIR.extract(t)) offset=\(hex(t & M.tableOffsetField.mask, digits: 8))",
                    "\t\tPBA: BAR=\(M.pbaBIR.extract(p)) offset=\(hex(p & M.pbaOffsetField.mask, digits: 8))"]
        default: return []
        }
    }

    // MARK: Extended capabilities

    static let extendedNames: [UInt16: String] = [
        0x00: "Null", 0x01: "Advanced Error Reporting", 0x02: "Virtual Channel", 0x04: "Power Budgeting <?>",
        0x05: "Root Complex Link", 0x06: "Root Complex Internal Link <?>",
        0x07: "Root Complex Event Collector Endpoint Association", 0x08: "Multi-Function Virtual Channel <?>",
        0x09: "Virtual Channel", 0x0A: "Root Complex Register Block <?>", 0x0D: "Access Control Services",
        0x0E: "Alternative Routing-ID Interpretation (ARI)", 0x0F: "Address Translation Service (ATS)",
        0x10: "Single Root I/O Virtualization (SR-IOV)", 0x11: "Multi-Root I/O Virtualization <?>",
        0x12: "Multicast", 0x13: "Page Request Interface (PRI)", 0x15: "Physical Resizable BAR",
        0x16: "Dynamic Power Allocation <?>", 0x17: "Transaction Processing Hints", 0x18: "Latency Tolerance Reporting",
        0x19: "Secondary PCI Express", 0x1A: "Protocol Multiplexing <?>", 0x1B: "Process Address Space ID (PASID)",
        0x1C: "LN Requester <?>", 0x1D: "Downstream Port Containment", 0x1E: "L1 PM Substates",
        0x1F: "Precision Time Measurement", 0x20: "PCI Express over M_PHY <?>", 0x21: "FRS Queueing <?>",
        0x22: "Readiness Time Reporting <?>", 0x24: "Virtual Resizable BAR", 0x25: "Data Link Feature <?>",
        0x26: "Physical Layer 16.0 GT/s <?>", 0x27: "Lane Margining at the Receiver <?>", 0x28: "Hierarchy ID <?>",
        0x29: "Native PCIe Enclosure Management <?>", 0x2E: "Data Object Exchange",
    ]

    public func extendedTitle(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> String {
        let c = ctx.config, o = cap.offset
        switch ExtendedCapabilityID(rawValue: cap.id) {
        case .deviceSerialNumber:
            guard let lo = c.read(DeviceSerialNumberCapability.lower, base: o), let hi = c.read(DeviceSerialNumberCapability.upper, base: o) else {
                return "Device Serial Number <unreadable>"
            }
            // The 64-bit serial number, most significant byte first.
            let serial = hi << 32 | lo
            return "Device Serial Number " + stride(from: 56, through: 0, by: -8).map { hex((serial >> UInt64($0)) & 0xFF, digits: 2) }.joined(separator: "-")
        case .vendorSpecific:
            typealias V = VendorSpecificExtendedCapability
            guard let h = c.read(V.header, base: o) else { return "Vendor Specific Information: <unreadable>" }
            return "Vendor Specific Information: ID=\(hex(V.vsecID.extract(h), digits: 4)) Rev=\(V.vsecRev.extract(h)) Len=\(hex(V.vsecLength.extract(h), digits: 3)) <?>"
        case .designatedVendorSpecific:
            guard let h = DVSECInstance(config: c, offset: o) else { return "Designated Vendor-Specific: <unreadable>" }
            let base = "Designated Vendor-Specific: Vendor=\(hex(h.vendorID, digits: 4)) ID=\(hex(h.dvsecID, digits: 4)) Rev=\(h.revision) Len=\(h.length)"
            if let d = dvsecDecoders[h.vendorID] { return base + d.titleSuffix(h, context: ctx) }
            return base + " <?>"
        default:
            return Self.extendedNames[cap.id] ?? "Extended Capability ID 0x\(hex(cap.id, digits: 1))"
        }
    }

    func extendedDetails(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> [String] {
        let c = ctx.config, o = cap.offset
        if let more = moreExtendedDetails(cap, ctx) { return more }
        switch ExtendedCapabilityID(rawValue: cap.id) {
        case .advancedErrorReporting:
            typealias A = AERCapability
            guard let ues = c.read(A.uncorrectableStatus, base: o), let uem = c.read(A.uncorrectableMask, base: o),
                  let uesv = c.read(A.uncorrectableSeverity, base: o), let ces = c.read(A.correctableStatus, base: o),
                  let cem = c.read(A.correctableMask, base: o), let capc = c.read(A.capabilitiesAndControl, base: o) else { return [] }
            // lspci names the first twelve uncorrectable and six correctable errors, in bit order.
            let ueLabels = ["DLP", "SDES", "TLP", "FCP", "CmpltTO", "CmpltAbrt", "UnxCmplt", "RxOF", "MalfTLP", "ECRC", "UnsupReq", "ACSViol"]
            func ue(_ l: UInt64) -> String { Self.flags(l, Array(zip(ueLabels, A.uncorrectableFields))) }
            func ce(_ l: UInt64) -> String { Self.flags(l, Array(zip(["RxErr", "BadTLP", "BadDLLP", "Rollover", "Timeout", "AdvNonFatalErr"], A.correctableFields))) }
            let capabilityFlags = Array(zip(["ECRCGenCap", "ECRCGenEn", "ECRCChkCap", "ECRCChkEn", "MultHdrRecCap", "MultHdrRecEn", "TLPPfxPres", "HdrLogCap"],
                                            A.capabilityFlags))
            let log = A.headerLog.map { hex(c.read($0, base: o) ?? 0, digits: 8) }.joined(separator: " ")
            return ["\t\tUESta:\t" + ue(ues), "\t\tUEMsk:\t" + ue(uem), "\t\tUESvrt:\t" + ue(uesv),
                    "\t\tCESta:\t" + ce(ces), "\t\tCEMsk:\t" + ce(cem),
                    "\t\tAERCap:\tFirst Error Pointer: \(hex(A.firstErrorPointer.extract(capc), digits: 2)), " + Self.flags(capc, Array(capabilityFlags.prefix(4))),
                    "\t\t\t" + Self.flags(capc, Array(capabilityFlags.dropFirst(4))),
                    "\t\tHeaderLog: " + log] + aerRootLines(o, ctx)
        case .accessControlServices:
            guard let cp = c.read(ACSCapability.capability, base: o), let ct = c.read(ACSCapability.control, base: o) else { return [] }
            let labels = ["SrcValid", "TransBlk", "ReqRedir", "CmpltRedir", "UpstreamFwd", "EgressCtrl", "DirectTrans"]
            return ["\t\tACSCap:\t" + Self.flags(cp, Array(zip(labels, ACSCapability.capabilityFlags))),
                    "\t\tACSCtl:\t" + Self.flags(ct, Array(zip(labels, ACSCapability.controlFlags)))]
        case .alternativeRoutingIDInterpretation:
            typealias A = ARICapability
            guard let cp = c.read(A.capability, base: o), let ct = c.read(A.control, base: o) else { return [] }
            return ["\t\tARICap:\t" + Self.flags(cp, Array(zip(["MFVC", "ACS"], A.capabilityFlags))) + ", Next Function: \(A.nextFunctionNumber.extract(cp))",
                    "\t\tARICtl:\t" + Self.flags(ct, Array(zip(["MFVC", "ACS"], A.controlFlags))) + ", Function Group: \(A.functionGroup.extract(ct))"]
        case .dataObjectExchange:
            typealias D = DOECapability
            guard let dc = c.read(D.capabilities, base: o), let ctl = c.read(D.control, base: o), let st = c.read(D.status, base: o) else { return [] }
            var out = ["\t\tDOECap: " + Self.flags(dc, [("IntSup", D.interruptSupport)])]
            if D.interruptSupport.extract(dc) != 0 { out.append("\t\t\tInterrupt Message Number \(hex(D.interruptMessageNumber.extract(dc), digits: 3))") }
            out.append("\t\tDOECtl: " + Self.flags(ctl, [("IntEn", D.interruptEnable)]))
            // lspci 3.9 tests bits 0-1 (Busy, Interrupt Status) for Error; DOE Error is bit 2.
            let lspciError = D.Status.busy.mask | D.Status.interruptStatus.mask
            out.append("\t\tDOESta: " + Self.flags(st, [("Busy", D.Status.busy), ("IntSta", D.Status.interruptStatus)]) + " Error\(flag(st, lspciError)) "
                + Self.flags(st, [("ObjectReady", D.Status.dataObjectReady)]))
            return out
        case .designatedVendorSpecific:
            guard let h = DVSECInstance(config: c, offset: o), let d = dvsecDecoders[h.vendorID] else { return [] }
            return d.textLines(h, context: ctx)
        default: return []
        }
    }

    /// Root Error Command/Status and Error Source Identification (PCIe 6.0 §7.8.4.9-11),
    /// printed by lspci for Root Ports and Root Complex Event Collectors.
    func aerRootLines(_ o: Int, _ ctx: DecodeContext) -> [String] {
        typealias A = AERCapability
        let c = ctx.config
        guard let t = ctx.devicePortType.flatMap({ PCIExpressCapability.DevicePortType(rawValue: UInt64($0)) }),
              t == .rootPort || t == .rootComplexEventCollector, let cmd = c.read(A.rootErrorCommand, base: o),
              let st = c.read(A.rootErrorStatus, base: o), let src = c.read(A.errorSourceIdentification, base: o) else { return [] }
        let status = Array(zip(["CERcvd", "MultCERcvd", "UERcvd", "MultUERcvd", "FirstFatal", "NonFatalMsg", "FatalMsg"], A.rootStatusFlags))
        return ["\t\tRootCmd: " + Self.flags(cmd, Array(zip(["CERptEn", "NFERptEn", "FERptEn"], A.rootCommandFlags))),
                "\t\tRootSta: " + Self.flags(st, Array(status.prefix(4))),
                "\t\t\t " + Self.flags(st, Array(status.dropFirst(4))) + " IntMsg \(A.advancedErrorInterruptMessageNumber.extract(st))",
                "\t\tErrorSrc: ERR_COR: \(hex(A.errCorSource.extract(src), digits: 4)) ERR_FATAL/NONFATAL: \(hex(A.errFatalNonFatalSource.extract(src), digits: 4))"]
    }

    // MARK: JSON

    /// The function as a JSON object (schema in the README). Levels as cxl-cli's `list` and lspci have them:
    /// below 2 (`--json`, `--json -v`) identity, capabilities, CXL summaries and findings; from 2 (`-vv`) also
    /// every register of the header and of each capability, decoded field by field.
    public func json(_ subject: DecodeSubject, verbosity: Int = 2) -> JSONValue {
        let ctx = context(for: subject, verbosity: verbosity)
        let c = subject.config
        var o = JSONObject()
        o.set("address", subject.name)
        o.set("vendor_id", .hexString(c.vendorID ?? 0xFFFF, digits: 4))
        o.set("device_id", .hexString(c.deviceID ?? 0xFFFF, digits: 4))
        o.set("revision_id", .hexString(c.read(PCIHeader.revisionID) ?? 0, digits: 2))
        o.set("class_code", .hexString(c.classCode ?? 0, digits: 6))
        o.set("header_type", Int(c.headerType ?? 0))
        o.set("multi_function", c.isMultiFunction)
        o.set("config_size", c.count)
        if verbosity >= 2, let layout = PCIHeader.layout(forHeaderType: c.headerType ?? 0) {
            o.set("header", layout.json(base: 0) { c.read($0) })
        }
        var caps: [JSONValue] = []
        let showExtended = ctx.capabilities.standard(.pciExpress) != nil
        for cap in ctx.capabilities.standard + ctx.capabilities.extended {
            var co = JSONObject()
            co.set("space", cap.space.rawValue)
            co.set("offset", cap.offset)
            co.set("id", .hexString(cap.id, digits: cap.space == .standard ? 2 : 4))
            if cap.space == .extended { co.set("version", Int(cap.version)) }
            co.set("name", cap.name)
            co.set("title", cap.space == .standard ? standardTitle(cap, ctx) : extendedTitle(cap, ctx))
            if cap.space == .extended && !showExtended { co.set("shown_by_lspci", false) }
            if verbosity >= 2, let layout = CapabilityCatalog.layout(for: cap, config: c) {
                co.set("registers", layout.json(base: cap.offset) { c.read($0, base: cap.offset) })
            }
            if cap.space == .extended, ExtendedCapabilityID(rawValue: cap.id) == .designatedVendorSpecific, let h = DVSECInstance(config: c, offset: cap.offset) {
                var d = JSONObject()
                d.set("vendor_id", .hexString(h.vendorID, digits: 4))
                d.set("id", .hexString(h.dvsecID, digits: 4))
                d.set("revision", Int(h.revision))
                d.set("length", h.length)
                if let dec = dvsecDecoders[h.vendorID] { d.set("decoded", dec.json(h, context: ctx)) }
                co.set("dvsec", d.value)
            }
            caps.append(co.value)
        }
        o.set("capabilities", .array(caps))
        for ext in extensions { if let (k, v) = ext.json(context: ctx) { o.set(k, v) } }
        o.set("findings", .array(ctx.capabilities.findings.map { f in
            var fo = JSONObject()
            fo.set("severity", f.severity.rawValue)
            if let off = f.offset { fo.set("offset", off) }
            fo.set("message", f.message)
            return fo.value
        }))
        return o.value
    }
}
