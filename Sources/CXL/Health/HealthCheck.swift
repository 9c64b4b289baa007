import PCI

/// One thing `cxlkit check` found wrong, named in spec terms.
public struct CXLProblem: Sendable, Hashable, Codable, CustomStringConvertible {
    /// What kind of problem, stable for machines: `decoder-not-committed`, `decoder-moved`,
    /// `decoder-committed`, `decoder-error`, `hdm-disabled`, `dvsec-control`, `config-lock`,
    /// `dvsec-range`, `dvsec-control2`, `range-not-active`, `mem-disabled`, `link-no-mem`,
    /// `ras-uncorrectable`, `aer-uncorrectable`, `kernel-decoder`, `device-mismatch`,
    /// `unreadable`.
    public var code: String
    /// The HDM decoder it concerns, if one.
    public var decoder: Int?
    public var message: String

    public init(_ code: String, decoder: Int? = nil, _ message: String) {
        self.code = code
        self.decoder = decoder
        self.message = message
    }
    public var description: String { message }
}

/// The outcome of a check: problems (exit 1), facts that are fine but worth saying
/// (notes), and what could not be checked (exit 2 when there is no problem).
public struct CXLCheckResult: Sendable, Hashable, Codable {
    public var problems: [CXLProblem] = []
    public var notes: [String] = []
    public var unchecked: [String] = []
    public init() {}

    public var healthy: Bool { problems.isEmpty && unchecked.isEmpty }
    /// 0 healthy, 1 problems found, 2 could not check.
    public var exitCode: Int32 { !problems.isEmpty ? 1 : (unchecked.isEmpty ? 0 : 2) }

    mutating func problem(_ code: String, decoder: Int? = nil, _ message: String) {
        problems.append(CXLProblem(code, decoder: decoder, message))
    }
}

func addressText(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
func rangeText(_ base: UInt64, _ size: UInt64) -> String { ByteCount.range(base, size) }

extension ByteCount {
    /// "0x4000000000 (256 MiB)".
    public static func range(_ base: UInt64, _ size: UInt64) -> String { "\(addressText(base)) (\(exact(size)))" }
}

/// `cxlkit check`: the live state of a function judged on its own and against what
/// the Linux CXL driver believes.
public enum CXLHealthCheck {
    public static func check(_ r: CXLHealthReading) -> CXLCheckResult {
        var out = CXLCheckResult()
        // DVSEC ranges (§8.1.3.8): memory the device reports valid but not active is
        // not usable, whatever the decoders say.
        for range in r.ranges where range.infoValid && !range.active {
            out.problem("range-not-active", "DVSEC Range \(range.number): Memory_Info_Valid is 1 but Memory_Active is 0 (the device's memory is not active)")
        }
        if let fb = r.flexBus, r.memEnable, !fb.mem {
            out.problem("link-no-mem", "Flex Bus Port Status: the link did not train with CXL.mem while DVSEC Mem_Enable is 1")
        }
        if let e = r.componentError { out.unchecked.append(e) }
        for d in r.decoders ?? [] where d.errorNotCommitted {
            out.problem("decoder-error", decoder: d.index, "decoder \(d.index): Error Not Committed is set (the last commit of \(rangeText(d.base, d.size)) failed)")
        }
        if let ras = r.ras {
            let u = ras.uncorrectableErrors
            if !u.isEmpty { out.problem("ras-uncorrectable", "CXL RAS Uncorrectable Error Status: " + u.joined(separator: ", ")) }
            let c = ras.correctableErrors
            if !c.isEmpty { out.notes.append("CXL RAS Correctable Error Status: " + c.joined(separator: ", ")) }
        }
        if let aer = r.aer {
            if (aer.fatal ?? 0) > 0 || (aer.nonfatal ?? 0) > 0 {
                out.problem("aer-uncorrectable", "PCIe AER: \(aer.fatal ?? 0) fatal and \(aer.nonfatal ?? 0) non-fatal uncorrectable errors counted by the kernel")
            }
            if let c = aer.correctable, c > 0 { out.notes.append("PCIe AER: \(c) correctable errors counted by the kernel") }
        }
        if let k = r.kernel { kernel(k, r, &out) }
        return out
    }

    /// "The kernel thinks the region is active, the hardware decoder is not committed":
    /// every endpoint decoder the kernel holds for a region must be committed in hardware
    /// with the kernel's start and size, HDM decoding enabled and CXL.mem enabled.
    static func kernel(_ k: CXLKernelView, _ r: CXLHealthReading, _ out: inout CXLCheckResult) {
        let held = k.decoders.filter(\.inUse)
        out.notes.append("kernel: \(k.memdev)" + (k.endpoint.map { " (\($0))" } ?? "")
            + (held.isEmpty ? ", no region" : ", " + held.map { "\($0.name) -> \($0.region ?? "?")" }.joined(separator: ", ")))
        guard !held.isEmpty else { return }
        let regions = k.regions.joined(separator: ", ")
        if !r.memEnable {
            out.problem("mem-disabled", "DVSEC Mem_Enable is 0 while the kernel holds \(regions) through \(k.memdev)")
        }
        guard let decoders = r.decoders else {
            out.unchecked.append("the kernel's decoders (\(held.map(\.name).joined(separator: ", "))) cannot be compared: HDM decoders not read")
            return
        }
        if r.hdmDecoderEnable == false {
            out.problem("hdm-disabled", "HDM Decoder Global Control: HDM Decoder Enable is 0 while the kernel holds \(regions)")
        }
        for kd in held {
            let what = "the kernel's \(kd.name) (\(kd.region ?? "?")) maps \(rangeText(kd.start ?? 0, kd.size ?? 0))"
            guard let hw = decoders.first(where: { $0.index == kd.index }) else {
                out.problem("kernel-decoder", decoder: kd.index, "\(what) through HDM decoder \(kd.index), which the device does not implement")
                continue
            }
            if !hw.committed {
                out.problem("decoder-not-committed", decoder: kd.index, "\(what) through HDM decoder \(kd.index), which is not committed")
            } else if hw.base != kd.start || hw.size != kd.size {
                out.problem("decoder-moved", decoder: kd.index, "\(what) through HDM decoder \(kd.index), which is committed at \(rangeText(hw.base, hw.size))")
            }
        }
        for hw in decoders where hw.committed && !held.contains(where: { $0.index == hw.index }) {
            out.notes.append("HDM decoder \(hw.index) is committed at \(rangeText(hw.base, hw.size)) with no kernel region (firmware or another owner)")
        }
    }
}

/// `cxlkit check --against FILE`: the live state compared with a saved one, each
/// difference in spec terms.
public enum CXLStateCheck {
    public static func compare(saved: CXLStateSnapshot, live: CXLStateSnapshot) -> CXLCheckResult {
        var out = CXLCheckResult()
        guard saved.identity.matches(live.identity) else {
            out.problem("device-mismatch", "the state file is of \(saved.identity), the target is \(live.identity)")
            return out
        }
        dvsec(saved, live, &out)
        hdm(saved, live, &out)
        // The PCI part is the PCI core's business; differences there are said, not counted.
        let cxlBlocks: Set<String> = [StateCatalog.dvsecBlock, StateCatalog.hdmBlock]
        for e in CXLStateDiff(saved, live).changes where !cxlBlocks.contains(e.block) {
            out.notes.append("\(e.displayName) was \(value(e.a, e.width)), now \(value(e.b, e.width))"
                + (e.fields.isEmpty ? "" : " (" + e.fields.map(\.description).joined(separator: ", ") + ")"))
        }
        return out
    }

    static func value(_ v: UInt64?, _ width: Int) -> String { v.map { HexCoding.format($0, width: width) } ?? "unread" }

    static func dvsec(_ saved: CXLStateSnapshot, _ live: CXLStateSnapshot, _ out: inout CXLCheckResult) {
        func pair(_ r: RegisterLayout) -> (UInt64, UInt64)? {
            guard let a = saved.dvsec(r)?.value, let b = live.dvsec(r)?.value else { return nil }
            return (a, b)
        }
        if let (a, b) = pair(CXLDeviceDVSEC.control), a != b {
            let f = StateCatalog.changedFields(RegisterKey(block: StateCatalog.dvsecBlock, register: CXLDeviceDVSEC.control.name), a, b)
            out.problem("dvsec-control", "DVSEC CXL Control was \(HexCoding.format(a, width: 2)), now \(HexCoding.format(b, width: 2)): "
                + f.map { "\($0.field) was \($0.before), now \($0.after)" }.joined(separator: ", "))
        }
        if let (a, b) = pair(CXLDeviceDVSEC.control2) {
            let m = StateCatalog.control2PersistentMask
            if a & m != b & m {
                let f = StateCatalog.changedFields(RegisterKey(block: StateCatalog.dvsecBlock, register: CXLDeviceDVSEC.control2.name), a & m, b & m)
                out.problem("dvsec-control2", "DVSEC CXL Control2: " + f.map { "\($0.field) was \($0.before), now \($0.after)" }.joined(separator: ", "))
            }
        }
        if let (a, b) = pair(CXLDeviceDVSEC.lock), a & StateCatalog.configLockBit != b & StateCatalog.configLockBit {
            out.problem("config-lock", "CONFIG_LOCK was \(a & StateCatalog.configLockBit != 0 ? "set" : "clear"), now \(b & StateCatalog.configLockBit != 0 ? "set" : "clear")")
        }
        for (n, r) in [(1, CXLDeviceDVSEC.range1), (2, CXLDeviceDVSEC.range2)] {
            if let (ah, bh) = pair(r.baseHigh), let (al, bl) = pair(r.baseLow) {
                let lowMask = CXLDeviceDVSEC.rangeBaseLow.mask
                let a = ah << 32 | (al & lowMask), b = bh << 32 | (bl & lowMask)
                if a != b { out.problem("dvsec-range", "DVSEC Range \(n) Base was \(addressText(a)), now \(addressText(b))") }
            }
            if let (ah, bh) = pair(r.sizeHigh), let (al, bl) = pair(r.sizeLow) {
                let lowMask = CXLDeviceDVSEC.rangeSizeLow.mask
                let a = ah << 32 | (al & lowMask), b = bh << 32 | (bl & lowMask)
                if a != b {
                    out.problem("dvsec-range", "DVSEC Range \(n) Size was \(ByteCount.exact(a)), now \(ByteCount.exact(b)) (not the memory that was saved)")
                }
            }
        }
    }

    static func hdm(_ saved: CXLStateSnapshot, _ live: CXLStateSnapshot, _ out: inout CXLCheckResult) {
        guard let hdm = saved.layout.hdm else { return }
        let unread = Dictionary(live.unread.map { ($0.register, $0.reason) }, uniquingKeysWith: { a, _ in a })
        let enable = HDMDecoderCapability.hdmDecoderEnable
        if let a = saved[StateCatalog.hdmBlock, HDMDecoderCapability.globalControl.name]?.value,
           let b = live[StateCatalog.hdmBlock, HDMDecoderCapability.globalControl.name]?.value, enable.extract(a) != enable.extract(b) {
            out.problem("hdm-disabled", "HDM Decoder Enable was \(enable.extract(a)), now \(enable.extract(b))")
        }
        for n in 0..<hdm.decoderCount {
            let was = CXLDecoderReading(snapshot: saved, index: n)
            let now = CXLDecoderReading(snapshot: live, index: n)
            guard let was else { continue }
            let before = was.committed ? "was committed at \(rangeText(was.base, was.size))" : "was not committed"
            guard let now else {
                if was.committed {
                    let why = unread["Decoder \(n) Control"] ?? "not read"
                    out.problem("unreadable", decoder: n, "decoder \(n) \(before), now unreadable: \(why)")
                }
                continue
            }
            switch (was.committed, now.committed) {
            case (true, false):
                out.problem("decoder-not-committed", decoder: n, "decoder \(n) \(before), now not committed")
            case (false, true):
                out.problem("decoder-committed", decoder: n, "decoder \(n) \(before), now committed at \(rangeText(now.base, now.size))")
            case (true, true):
                var diffs: [String] = []
                if was.base != now.base || was.size != now.size { diffs.append("now committed at \(rangeText(now.base, now.size))") }
                if was.dpaSkip != now.dpaSkip { diffs.append("DPA skip was \(ByteCount.exact(was.dpaSkip ?? 0)), now \(ByteCount.exact(now.dpaSkip ?? 0))") }
                if was.ways != now.ways { diffs.append("interleave ways were \(was.ways.map(String.init) ?? "reserved"), now \(now.ways.map(String.init) ?? "reserved")") }
                if was.lockOnCommit != now.lockOnCommit { diffs.append("Lock On Commit was \(was.lockOnCommit ? 1 : 0), now \(now.lockOnCommit ? 1 : 0)") }
                if !diffs.isEmpty { out.problem("decoder-moved", decoder: n, "decoder \(n) \(before); " + diffs.joined(separator: "; ")) }
            case (false, false):
                break
            }
        }
    }
}
