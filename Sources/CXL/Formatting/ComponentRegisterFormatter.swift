import PCI

/// Locates CXL component registers through the Register Locator DVSEC, reads them
/// through the function's BAR, and prints / serialises the capability array, RAS and
/// HDM decoders. Plugged into the PCI decoder as a FunctionDecodeExtension.
public struct ComponentRegisterFormatter: FunctionDecodeExtension {
    public init() {}

    /// A located component register block and what reading it gave.
    public struct Located: Sendable {
        public let entry: RegisterLocatorEntry
        /// Nil when the block could not be read at all (no BAR access, outside the BAR).
        public let decode: ComponentRegisterDecode?
        /// Why the block was not read.
        public let problem: String?
    }

    /// True for devices (endpoints: DPA Skip), false for ports (Target List).
    public static func isEndpoint(_ ctx: DecodeContext) -> Bool {
        if ctx.capabilities.dvsecs(in: ctx.config).contains(where: { $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.device.rawValue }) { return true }
        guard let t = ctx.devicePortType else { return true }
        return [0x0, 0x1, 0x9].contains(t)
    }

    public static func locate(_ ctx: DecodeContext) -> [Located] {
        let entries = RegisterLocator.entries(config: ctx.config, capabilities: ctx.capabilities)
            .filter { $0.identifier == RegisterLocatorDVSEC.BlockIdentifier.componentRegisters.rawValue }
        let endpoint = isEndpoint(ctx)
        return entries.map { e in
            guard (0...5).contains(e.bir) else {
                return Located(entry: e, decode: nil, problem: "Register BIR \(e.bir) names no BAR")
            }
            guard let fn = ctx.function else {
                return Located(entry: e, decode: nil, problem: "no BAR access for this target")
            }
            if let bar = fn.bars.first(where: { $0.index == e.bir }) {
                let needed = UInt64(ComponentRegisterBlock.cacheMemOffset + ComponentRegisterBlock.cacheMemSize)
                guard e.offset < bar.size, bar.size - e.offset >= needed else {
                    return Located(entry: e, decode: nil, problem: "block at 0x\(hex(e.offset, digits: 1)) lies outside BAR\(e.bir) (\(bar.size) bytes)")
                }
            } else if !fn.bars.isEmpty {
                return Located(entry: e, decode: nil, problem: "BAR\(e.bir) is not implemented")
            }
            let d = ComponentRegisterDecode(reader: BARBlockReader(function: fn, bar: e.bir, blockOffset: e.offset), endpoint: endpoint)
            return Located(entry: e, decode: d, problem: nil)
        }
    }

    // MARK: Text

    public func textLines(context: DecodeContext) -> [String] {
        guard context.verbosity >= 1 else { return [] }
        var out: [String] = []
        for l in Self.locate(context) {
            out.append("\tCXL Component Registers: BAR\(l.entry.bir)+\(hex(l.entry.offset, digits: 16)) (Register Locator Block\(l.entry.index + 1))" + (l.problem.map { " <not read: \($0)>" } ?? ""))
            guard context.verbosity >= 2, let d = l.decode else { continue }
            out += Self.lines(d)
        }
        return out
    }

    public static func lines(_ d: ComponentRegisterDecode) -> [String] {
        var out: [String] = []
        if let h = d.header {
            let v = RegisterValue(CacheMemCapabilityArray.header, UInt64(h))
            out.append("\t\tCapArray:\tCXL_Capability_Version \(v["CXL_Capability_Version"]) CXL_Cache_Mem_Version \(v["CXL_Cache_Mem_Version"]) Array_Size \(v["Array_Size"])")
        }
        for cap in d.capabilities {
            out.append("\t\t[\(hex(cap.blockOffset, digits: 4))] \(cap.name) v\(cap.version)")
            if let regs = d.registers[cap.pointer], cap.id == CacheMemCapabilityID.ras.rawValue {
                out += rasLines(regs)
            }
            if cap.id == CacheMemCapabilityID.hdmDecoder.rawValue, let hdm = d.hdm { out += hdmLines(hdm) }
        }
        for f in d.findings { out.append("\t\t!! " + f.description) }
        return out
    }

    static func rasLines(_ regs: [(RegisterLayout, UInt32)]) -> [String] {
        let short = ["Uncorrectable Error Status": "UESta", "Uncorrectable Error Mask": "UEMsk", "Uncorrectable Error Severity": "UESvrt",
                     "Correctable Error Status": "CESta", "Correctable Error Mask": "CEMsk"]
        var out: [String] = []
        var log: [String] = []
        for (r, raw) in regs {
            if let s = short[r.name] {
                out.append("\t\t\t\(s):\t" + r.decode(UInt64(raw)).map { $0.name + flag($0.value != 0) }.joined(separator: " "))
            } else if r.name == RASCapability.errorCapabilityControl.name {
                let v = RegisterValue(r, UInt64(raw))
                out.append("\t\t\tErrCapCtl:\tFirstErrPtr \(v["First Error Pointer"]) MultHdrRecCap\(v.flag("Multiple Header Recording Capability")) PoisonEn\(v.flag("Poison Enabled"))")
            } else if r.name.hasPrefix("Header Log") {
                log.append(hex(raw, digits: 8))
            }
        }
        if !log.isEmpty { out.append("\t\t\tHeaderLog:\t" + log.joined(separator: " ")) }
        return out
    }

    static func hdmLines(_ h: HDMDecoderCapabilityState) -> [String] {
        let cap = RegisterValue(HDMDecoderCapability.capability, UInt64(h.capability))
        let gc = RegisterValue(HDMDecoderCapability.globalControl, UInt64(h.globalControl))
        var out = [
            "\t\t\tHDMCap:\tDecoderCount \(h.decoderCount.map(String.init) ?? "<?>") TargetCount \(cap["Target Count"]) A11to8\(cap.flag("A11to8 Interleave Capable")) A14to12\(cap.flag("A14to12 Interleave Capable")) PoisonOnDecodeErr\(cap.flag("Poison On Decode Error Capability")) 3-6-12Way\(cap.flag("3, 6, 12 Way Interleave Capable")) 16Way\(cap.flag("16 Way Interleave Capable")) UIO\(cap.flag("UIO Capable")) UIODecoders \(cap["UIO Capable Decoder Count"]) MemDataNXM\(cap.flag("MemData-NXM Capable")) Coherency=\(cap.meaning("Supported Coherency Models") ?? "?")",
            "\t\t\tHDMCtl:\tPoisonOnDecodeErrEn\(gc.flag("Poison On Decode Error Enable")) HDMDecoderEnable\(gc.flag("HDM Decoder Enable"))",
        ]
        for d in h.decoders {
            out.append("\t\t\tDecoder\(d.index):\tBase \(hex(d.base, digits: 16)) Size \(hex(d.size, digits: 16)) [size=\(PCIDecoder.sizeString(d.size))]")
            let ways = d.ways.map { "\($0)" } ?? "<?>"
            let gran = d.granularity.map { "\($0)" } ?? "<?>"
            out.append("\t\t\t\tCtl:\tIW=\(d.iwEncoding) (\(ways) way\(d.ways == 1 ? "" : "s")) IG=\(d.igEncoding) (\(gran) bytes) LockOnCommit\(flag(d.lockOnCommit)) Commit\(flag(d.commit)) Committed\(flag(d.committed)) ErrNotCommitted\(flag(d.errorNotCommitted)) Type=\(d.targetType.rawValue)")
            if let skip = d.dpaSkip { out.append("\t\t\t\tDPASkip:\t\(hex(skip, digits: 16))") }
            if let t = d.targets { out.append("\t\t\t\tTargets:\t" + t.prefix(d.ways ?? 8).map { hex($0, digits: 2) }.joined(separator: " ")) }
        }
        return out
    }

    // MARK: JSON

    public func json(context: DecodeContext) -> (key: String, value: JSONValue)? {
        let located = Self.locate(context)
        guard !located.isEmpty else { return nil }
        return ("cxl_component_registers", .array(located.map { l in
            var o = JSONObject()
            o.set("bar", l.entry.bir)
            o.set("offset", .hexString(l.entry.offset, digits: 16))
            o.set("read", l.decode != nil)
            if let p = l.problem { o.set("problem", p) }
            if let d = l.decode { for (k, v) in Self.json(d, registers: context.verbosity >= 2).pairsOrEmpty { o.set(k, v) } }
            return o.value
        }))
    }

    /// The decoded block; `registers` adds every register decoded field by field (`-vv`), else the capabilities
    /// and the HDM decoders' summary only.
    public static func json(_ d: ComponentRegisterDecode, registers: Bool = true) -> JSONValue {
        var o = JSONObject()
        if registers, let h = d.header { o.set("CXL Capability Header", CacheMemCapabilityArray.header.json(raw: UInt64(h), at: ComponentRegisterBlock.cacheMemOffset)) }
        o.set("capabilities", .array(d.capabilities.map { cap in
            var c = JSONObject()
            c.set("id", .hexString(cap.id, digits: 4))
            c.set("version", Int(cap.version))
            c.set("name", cap.name)
            c.set("offset", cap.blockOffset)
            if registers, let regs = d.registers[cap.pointer] {
                var r = JSONObject()
                for (l, raw) in regs { r.set(l.name, l.json(raw: UInt64(raw), at: cap.blockOffset + l.offset)) }
                c.set("registers", r.value)
            }
            if cap.id == CacheMemCapabilityID.hdmDecoder.rawValue, let h = d.hdm {
                if registers {
                    c.set("HDM Decoder Capability", HDMDecoderCapability.capability.json(raw: UInt64(h.capability), at: cap.blockOffset))
                    c.set("HDM Decoder Global Control", HDMDecoderCapability.globalControl.json(raw: UInt64(h.globalControl), at: cap.blockOffset + 4))
                }
                c.set("decoder_count", h.decoderCount.map { JSONValue.number($0) } ?? .null)
                c.set("decoders", .array(h.decoders.map { dec in
                    var x = JSONObject()
                    x.set("index", dec.index)
                    x.set("base", .hexString(dec.base, digits: 16))
                    x.set("size_bytes", dec.size)
                    x.set("control", .hexString(dec.control, digits: 8))
                    x.set("IW", Int(dec.iwEncoding))
                    x.set("ways", dec.ways.map { JSONValue.number($0) } ?? .null)
                    x.set("IG", Int(dec.igEncoding))
                    x.set("granularity_bytes", dec.granularity.map { JSONValue.number($0) } ?? .null)
                    x.set("Lock On Commit", dec.lockOnCommit)
                    x.set("Commit", dec.commit)
                    x.set("Committed", dec.committed)
                    x.set("Error Not Committed", dec.errorNotCommitted)
                    x.set("target_type", dec.targetType.rawValue)
                    if let s = dec.dpaSkip { x.set("dpa_skip_bytes", s) }
                    if let t = dec.targets { x.set("targets", .array(t.map { .number($0) })) }
                    return x.value
                }))
            }
            return c.value
        }))
        o.set("findings", .array(d.findings.map { .string($0.description) }))
        return o.value
    }
}

extension JSONValue {
    var pairsOrEmpty: [(String, JSONValue)] { if case .object(let p) = self { return p }; return [] }
}
