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
        let cls = c.classCode ?? 0
        let base = UInt8(cls >> 16), sub = UInt8((cls >> 8) & 0xFF), pi = UInt8(cls & 0xFF)
        guard let names else {
            return LspciDump.defaultDescription(c) + (verbosity >= 1 && pi != 0 ? " (prog-if \(hex(pi, digits: 2)))" : "")
        }
        var s = names.className(base: base, sub: sub) + ": " + names.deviceName(vendor: c.vendorID ?? 0xFFFF, device: c.deviceID ?? 0xFFFF)
        if let rev = c.read8(PCIHeader.revisionID.offset), rev != 0 { s += " (rev \(hex(rev, digits: 2)))" }
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
        let c = ctx.config
        var out: [String] = []
        let type = c.headerType ?? 0
        let vv = ctx.verbosity >= 2
        // Subsystem IDs: header 0x2C for type 0; the Bridge Subsystem Vendor ID
        // capability for bridges (lspci's get_subid).
        var ssid: (UInt16, UInt16)?
        if type == 0 {
            ssid = c.read16(PCIHeader.subsystemVendorID.offset).flatMap { v in c.read16(PCIHeader.subsystemID.offset).map { (v, $0) } }
        } else if type == 1, let cap = ctx.capabilities.standard(.bridgeSubsystemVendorID) {
            ssid = c.read16(cap.offset + 4).flatMap { v in c.read16(cap.offset + 6).map { (v, $0) } }
        }
        if let (sv, sd) = ssid, sv != 0, sv != 0xFFFF {
            out.append("\tSubsystem: " + subsystemName(c, sv: sv, sd: sd))
        }
        guard type <= 2 else { return out + ["\t!!! Unknown header type \(hex(type, digits: 2))"] }
        let cls16 = UInt16(truncatingIfNeeded: (c.classCode ?? 0) >> 8)
        if (type == 0 && cls16 == 0x0604) || (type != 0 && cls16 >> 8 != 0x06) {
            out.append("\t!!! Invalid class \(hex(cls16, digits: 4)) for header type \(hex(type, digits: 2))")
        }
        let cmd = c.read16(PCIHeader.command.offset) ?? 0, st = c.read16(PCIHeader.status.offset) ?? 0
        let latency = c.read8(PCIHeader.latencyTimer.offset) ?? 0, cacheLine = c.read8(PCIHeader.cacheLineSize.offset) ?? 0
        let minGnt = type == 0 ? (c.read8(0x3E) ?? 0) : 0, maxLat = type == 0 ? (c.read8(0x3F) ?? 0) : 0
        // lspci takes the IRQ from the OS (sysfs `irq`) when it has one, else Interrupt Line.
        let pin = c.read8(PCIHeader.interruptPin.offset) ?? 0
        let irq = (ctx.function as? SysfsPCIFunction)?.irq ?? UInt32(c.read8(PCIHeader.interruptLine.offset) ?? 0)
        let devsel = ["fast", "medium", "slow", "??"][Int((st >> 9) & 3)]
        if vv {
            out.append("\tControl: I/O\(flag(cmd, 0x1)) Mem\(flag(cmd, 0x2)) BusMaster\(flag(cmd, 0x4)) SpecCycle\(flag(cmd, 0x8)) MemWINV\(flag(cmd, 0x10)) VGASnoop\(flag(cmd, 0x20)) ParErr\(flag(cmd, 0x40)) Stepping\(flag(cmd, 0x80)) SERR\(flag(cmd, 0x100)) FastB2B\(flag(cmd, 0x200)) DisINTx\(flag(cmd, 0x400))")
            out.append("\tStatus: Cap\(flag(st, 0x10)) 66MHz\(flag(st, 0x20)) UDF\(flag(st, 0x40)) FastB2B\(flag(st, 0x80)) ParErr\(flag(st, 0x100)) DEVSEL=\(devsel) >TAbort\(flag(st, 0x800)) <TAbort\(flag(st, 0x1000)) <MAbort\(flag(st, 0x2000)) >SERR\(flag(st, 0x4000)) <PERR\(flag(st, 0x8000)) INTx\(flag(st, 0x8))")
            if cmd & 0x4 != 0 {
                var l = "\tLatency: \(latency)"
                if minGnt != 0 || maxLat != 0 {
                    l += " (" + (minGnt != 0 ? "\(Int(minGnt) * 250)ns min" : "") + (minGnt != 0 && maxLat != 0 ? ", " : "") + (maxLat != 0 ? "\(Int(maxLat) * 250)ns max" : "") + ")"
                }
                if cacheLine != 0 { l += ", Cache Line Size: \(Int(cacheLine) * 4) bytes" }
                out.append(l)
            }
            if pin != 0 || irq != 0 {
                out.append("\tInterrupt: pin \(pin != 0 ? String(UnicodeScalar(UInt8(0x40) &+ pin)) : "?") routed to IRQ \(irq)")
            }
        } else {
            var f = "\tFlags: "
            if cmd & 0x4 != 0 { f += "bus master, " }
            if cmd & 0x20 != 0 { f += "VGA palette snoop, " }
            if cmd & 0x80 != 0 { f += "stepping, " }
            if cmd & 0x200 != 0 { f += "fast Back2Back, " }
            if st & 0x20 != 0 { f += "66MHz, " }
            if st & 0x40 != 0 { f += "user-definable features, " }
            f += "\(devsel) devsel"
            if cmd & 0x4 != 0 { f += ", latency \(latency)" }
            if irq != 0 { f += ", IRQ \(irq)" }
            out.append(f)
        }
        if let bist = c.read8(PCIHeader.bist.offset), bist & 0x80 != 0 {
            out.append(bist & 0x40 != 0 ? "\tBIST is running" : "\tBIST result: \(hex(bist & 0xF, digits: 2))")
        }
        out += regionLines(ctx)
        if type == 0 { out += romLines(ctx, register: 0x30) }
        if type == 1 { out += bridgeLines(ctx, cmd: cmd) }
        return out
    }

    /// lspci's show_rom: the Expansion ROM BAR (0x30 on type 0, 0x38 on type 1).
    func romLines(_ ctx: DecodeContext, register: Int) -> [String] {
        let c = ctx.config
        guard let flg = c.read32(register) else { return [] }
        let rom: UInt32 = flg == 0xFFFF_FFFF ? 0 : flg
        let size = (ctx.function as? SysfsPCIFunction)?.romSize ?? 0
        guard rom != 0 || flg != 0 || size != 0 else { return [] }
        let cmd = c.read16(PCIHeader.command.offset) ?? 0
        var l = "\tExpansion ROM at "
        if rom & ~0x7FF != 0 { l += hex(rom & ~0x7FF, digits: 8) } else if flg & ~0x7FF != 0 { l += "<ignored>" } else { l += "<unassigned>" }
        if flg & 1 == 0 { l += " [disabled]" } else if cmd & 2 == 0 { l += " [disabled by cmd]" }
        if size != 0 { l += " [size=\(Self.sizeString(size))]" }
        return [l]
    }

    func bridgeLines(_ ctx: DecodeContext, cmd: UInt16) -> [String] {
        let c = ctx.config
        guard let pri = c.read8(0x18), let sec = c.read8(0x19), let sub = c.read8(0x1A), let lat = c.read8(0x1B) else { return [] }
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
            let base = c.read(w.base, width: w.registerWidth) ?? 0, limit = c.read(w.limit, width: w.registerWidth) ?? 0
            let type = base & 0xF
            if let (start, size) = osWindow(i) {
                let b = start & ~0xF
                range("\t\(w.label)", b, b &+ size &- 1, bits: start & 0xF == 1 ? w.bits.wide : w.bits.narrow)
            } else if type != limit & 0xF || !(type == 0 || (type == 1 && w.upper != nil)) {
                out.append("\t!!! Unknown \(w.name) range types \(hex(base, digits: 1))/\(hex(limit, digits: 1))")
            } else {
                var b = (base & ~0xF) << w.shift, l = (limit & ~0xF) << w.shift
                if type == 1, let u = w.upper {
                    b |= (c.read(u.base, width: u.width) ?? 0) << u.shift
                    l |= (c.read(u.limit, width: u.width) ?? 0) << u.shift
                }
                // An optional window the bridge does not implement reads base = limit = 0.
                if !(w.optional && b == 0 && l == 0 && known) {
                    range("\t\(w.label)", b, l + w.granule - 1, bits: type == 1 ? w.bits.wide : w.bits.narrow, disabled: known)
                }
            }
        }
        if ctx.verbosity >= 2, let ss = c.read16(0x1E) {
            let devsel = ["fast", "medium", "slow", "??"][Int((ss >> 9) & 3)]
            out.append("\tSecondary status: 66MHz\(flag(ss, 0x20)) FastB2B\(flag(ss, 0x80)) ParErr\(flag(ss, 0x100)) DEVSEL=\(devsel) >TAbort\(flag(ss, 0x800)) <TAbort\(flag(ss, 0x1000)) <MAbort\(flag(ss, 0x2000)) <SERR\(flag(ss, 0x4000)) <PERR\(flag(ss, 0x8000))")
        }
        out += romLines(ctx, register: 0x38)
        if ctx.verbosity >= 2, let brc = c.read16(0x3E) {
            out.append("\tBridgeCtl: Parity\(flag(brc, 0x1)) SERR\(flag(brc, 0x2)) NoISA\(flag(brc, 0x4)) VGA\(flag(brc, 0x8)) VGA16\(flag(brc, 0x10)) MAbort\(flag(brc, 0x20)) >Reset\(flag(brc, 0x40)) FastB2B\(flag(brc, 0x80))")
            out.append("\t\tPriDiscTmr\(flag(brc, 0x100)) SecDiscTmr\(flag(brc, 0x200)) DiscTmrStat\(flag(brc, 0x400)) DiscTmrSERREn\(flag(brc, 0x800))")
        }
        return out
    }

    /// A type 1 header's address window (PCI-to-PCI Bridge Architecture 1.2 §3.2.5.6-.9): Base and Limit registers
    /// whose low nibble is the window's type (0: the narrow form, 1: the wide one, its upper bits in the Upper Base and
    /// Limit registers) and whose upper bits are the address bits at `shift` and above, in granules of `granule`.
    struct BridgeWindow {
        /// As lspci names it, in its range line and in its unknown-type line.
        let label: String, name: String
        let base: Int, limit: Int, registerWidth: Int
        /// Upper Base and Limit registers, their width and the address bit they start at: the wide type only.
        let upper: (base: Int, limit: Int, width: Int, shift: Int)?
        let bits: (narrow: Int, wide: Int)
        /// An optional window (I/O, prefetchable) reads base = limit = 0 where the bridge does not implement it.
        let optional: Bool

        var shift: Int { 8 * registerWidth }
        var granule: UInt64 { 1 << UInt64(shift + 4) }

        /// In the order of the kernel's bridge window resources (sysfs resource lines 13-15).
        static let all = [
            BridgeWindow(label: "I/O behind bridge", name: "I/O", base: 0x1C, limit: 0x1D, registerWidth: 1, upper: (0x30, 0x32, 2, 16), bits: (16, 32), optional: true),
            BridgeWindow(label: "Memory behind bridge", name: "memory", base: 0x20, limit: 0x22, registerWidth: 2, upper: nil, bits: (32, 32), optional: false),
            BridgeWindow(label: "Prefetchable memory behind bridge", name: "prefetchable memory", base: 0x24, limit: 0x26,
                         registerWidth: 2, upper: (0x28, 0x2C, 4, 32), bits: (32, 64), optional: true),
        ]
    }

    /// lspci 3.9's show_bases. Without OS resource information (dumps) every BAR
    /// slot is its own line, so the upper half of a 64-bit BAR prints as a 32-bit
    /// `<unassigned>` region, as `lspci -F` does. With a live function the upper
    /// half is skipped and sizes are shown, as lspci does through sysfs.
    func regionLines(_ ctx: DecodeContext) -> [String] {
        let c = ctx.config
        let count = c.headerType == 0 ? 6 : (c.headerType == 1 ? 2 : 0)
        let cmd = c.read16(PCIHeader.command.offset) ?? 0
        let live = !(ctx.function?.bars.isEmpty ?? true)
        // lib/generic.c: base addresses, a 64-bit BAR's in its lower slot.
        var pos = [UInt64](repeating: 0, count: count)
        var upper = Set<Int>()
        var k = 0
        while k < count {
            let x = c.read32(0x10 + 4 * k) ?? 0
            if x != 0 && x != 0xFFFF_FFFF {
                if x & 1 == 1 || (x >> 1) & 3 != 2 {
                    pos[k] = UInt64(x)
                } else if k < count - 1 {
                    pos[k] = UInt64(x) | UInt64(c.read32(0x10 + 4 * (k + 1)) ?? 0) << 32
                    upper.insert(k + 1)
                    k += 1
                }
            }
            k += 1
        }
        var out: [String] = []
        for i in 0..<count {
            if live && upper.contains(i) { continue }
            var flg = c.read32(0x10 + 4 * i) ?? 0
            if flg == 0xFFFF_FFFF { flg = 0 }
            let size = ctx.function?.bars.first { $0.index == i }?.size ?? 0
            guard pos[i] != 0 || flg != 0 || size != 0 else { continue }
            var line = ctx.verbosity >= 2 ? "\tRegion \(i): " : "\t"
            if flg & 1 == 1 {
                let a = pos[i] & ~3
                line += "I/O ports at " + (a != 0 || cmd & 1 != 0 ? hex(a, digits: 4) : "<unassigned>")
                if cmd & 1 == 0 { line += " [disabled]" }
            } else {
                let t = (flg >> 1) & 3
                let a = pos[i] & ~0xF
                line += "Memory at " + (a != 0 ? hex(a, digits: 8) : "<unassigned>")
                line += " (\(["32-bit", "low-1M", "64-bit", "type 3"][Int(t)]), \(flg & 8 != 0 ? "" : "non-")prefetchable)"
                if cmd & 2 == 0 { line += " [disabled]" }
            }
            if size != 0 { line += " [size=\(Self.sizeString(size))]" }
            out.append(line)
        }
        return out
    }

    /// lspci's size spelling (show_size): divide by 1024 while at least 1024: 4K, 64K, 2M, 16G.
    public static func sizeString(_ size: UInt64) -> String {
        var s = size
        var unit = 0
        let units = ["", "K", "M", "G", "T"]
        while unit < units.count - 1 && s >= 1024 { s /= 1024; unit += 1 }
        return "\(s)\(units[unit])"
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
            let ver = ctx.verbosity >= 2 ? " v\(((ctx.config.read32(off) ?? 0) >> 16) & 0xF)" : ""
            out.append("\tCapabilities: [\(hex(off, digits: 3))\(ver)] <chain looped>")
        }
        return out
    }

    /// Standard capabilities whose lspci detail lines cxlkit does not print (AGP, VPD,
    /// PCI-X, HyperTransport, SATA, Advanced Features, Enhanced Allocation). Every other
    /// capability lspci 3.9.0 details is printed as lspci prints it.
    public static let standardCapabilitiesWithoutDetails: Set<UInt16> = [0x02, 0x03, 0x07, 0x08, 0x12, 0x13, 0x14]

    /// True when cxlkit prints a capability's detail lines the way lspci 3.9.0 does.
    public static func rendersLspciDetails(_ cap: CapabilityHeader) -> Bool {
        cap.space == .extended || !standardCapabilitiesWithoutDetails.contains(cap.id)
    }

    // MARK: Standard capabilities

    public func standardTitle(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> String {
        let c = ctx.config, o = cap.offset
        switch cap.id {
        case 0x00: return "Null"
        case 0x01:
            let pmc = c.read16(o + 2) ?? 0
            return "Power Management version \(pmc & 7)"
        case 0x02: return "AGP version \((c.read8(o + 2) ?? 0) >> 4).\((c.read8(o + 2) ?? 0) & 0xF)"
        case 0x03: return "Vital Product Data"
        case 0x05:
            let mc = c.read16(o + 2) ?? 0
            return "MSI: Enable\(flag(mc, 1)) Count=\(1 << ((mc >> 4) & 7))/\(1 << ((mc >> 1) & 7)) Maskable\(flag(mc, 0x100)) 64bit\(flag(mc, 0x80))"
        case 0x06: return "CompactPCI hot-swap <?>"
        case 0x09: return vendorSpecificTitle(cap, ctx)
        case 0x0B: return "CompactPCI central resource control <?>"
        case 0x0C: return "Hot-plug capable"
        case 0x0D: return "Subsystem: " + subsystemName(c, sv: c.read16(o + 4) ?? 0, sd: c.read16(o + 6) ?? 0)
        case 0x0E: return "AGP3 <?>"
        case 0x0F: return "Secure device <?>"
        case 0x10:
            let caps = c.read16(o + 2) ?? 0
            let type = Int((caps >> 4) & 0xF)
            let slot = flag(caps, 0x100)
            let name: String
            switch type {
            case 0: name = "Endpoint"
            case 1: name = "Legacy Endpoint"
            case 4: name = "Root Port (Slot\(slot))"
            case 5: name = "Upstream Port"
            case 6: name = "Downstream Port (Slot\(slot))"
            case 7: name = "PCI-Express to PCI/PCI-X Bridge"
            case 8: name = "PCI/PCI-X to PCI-Express Bridge (Slot\(slot))"
            case 9: name = "Root Complex Integrated Endpoint"
            case 10: name = "Root Complex Event Collector"
            default: name = "Unknown type \(type)"
            }
            return "Express " + (ctx.verbosity >= 2 ? "(v\(caps & 0xF)) " : "") + "\(name), MSI \(hex((caps >> 9) & 0x1F, digits: 2))"
        case 0x11:
            let mc = c.read16(o + 2) ?? 0
            return "MSI-X: Enable\(flag(mc, 0x8000)) Count=\((mc & 0x7FF) + 1) Masked\(flag(mc, 0x4000))"
        case 0x13: return "PCI Advanced Features"
        case 0x14: return "Enhanced Allocation (EA): NumEntries=\((c.read8(o + 2) ?? 0) & 0x3F)"
        default: return "Capability ID 0x\(hex(cap.id, digits: 1)) [\(hex(c.read16(o + 2) ?? 0, digits: 4))]"
        }
    }

    /// Virtio devices (vendor 1af4, device 1000-107f) get lspci's VirtIO decoding
    /// (ls-vendor.c); other vendors the generic length line.
    func isVirtio(_ c: ConfigSpace) -> Bool {
        c.vendorID == 0x1AF4 && (0x1000...0x107F).contains(c.deviceID ?? 0)
    }

    func vendorSpecificTitle(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> String {
        let c = ctx.config, o = cap.offset
        let len = c.read8(o + 2) ?? 0
        if isVirtio(c), len >= 16 {
            let names: [UInt8: String] = [1: "CommonCfg", 2: "Notify", 3: "ISR", 4: "DeviceCfg"]
            return "Vendor Specific Information: VirtIO: " + (names[c.read8(o + 3) ?? 0] ?? "<unknown>")
        }
        return "Vendor Specific Information: Len=\(hex(len, digits: 2)) <?>"
    }

    func standardDetails(_ cap: CapabilityHeader, _ ctx: DecodeContext) -> [String] {
        let c = ctx.config, o = cap.offset
        switch cap.id {
        case 0x01:
            guard let pmc = c.read16(o + 2), let pmcsr = c.read16(o + 4) else { return [] }
            let aux = [0, 55, 100, 160, 220, 270, 320, 375][Int((pmc >> 6) & 7)]
            return [
                "\t\tFlags: PMEClk\(flag(pmc, 0x8)) DSI\(flag(pmc, 0x20)) D1\(flag(pmc, 0x200)) D2\(flag(pmc, 0x400)) AuxCurrent=\(aux)mA PME(D0\(flag(pmc, 0x800)),D1\(flag(pmc, 0x1000)),D2\(flag(pmc, 0x2000)),D3hot\(flag(pmc, 0x4000)),D3cold\(flag(pmc, 0x8000)))",
                "\t\tStatus: D\(pmcsr & 3) NoSoftRst\(flag(pmcsr, 0x8)) PME-Enable\(flag(pmcsr, 0x100)) DSel=\((pmcsr >> 9) & 0xF) DScale=\((pmcsr >> 13) & 3) PME\(flag(pmcsr, 0x8000))",
            ]
        case 0x09:
            guard isVirtio(c), (c.read8(o + 2) ?? 0) >= 16, let bar = c.read8(o + 4),
                  let off = c.read32(o + 8), let len = c.read32(o + 12) else { return [] }
            var line = "\t\tBAR=\(bar) offset=\(hex(off, digits: 8)) size=\(hex(len, digits: 8))"
            if c.read8(o + 3) == 2, (c.read8(o + 2) ?? 0) >= 20, let mult = c.read32(o + 16) { line += " multiplier=\(hex(mult, digits: 8))" }
            return [line]
        case 0x05:
            return msiDetails(o, c)
        case 0x10:
            return expressDetails(cap, ctx)
        case 0x11:
            guard let t = c.read32(o + 4), let p = c.read32(o + 8) else { return [] }
            return ["\t\tVector table: BAR=\(t & 7) offset=\(hex(t & ~7, digits: 8))",
                    "\t\tPBA: BAR=\(p & 7) offset=\(hex(p & ~7, digits: 8))"]
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
        o.set("revision_id", .hexString(c.read8(8) ?? 0, digits: 2))
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
            if cap.id == 0x23, cap.space == .extended, let h = DVSECInstance(config: c, offset: cap.offset) {
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
