import PCI
import CXL

/// Text renderings of the state commands' results: one register a line, named as
/// the spec names it, changed fields decoded.
public enum StateText {
    static let nameWidth = 36

    static func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }

    static func value(_ v: UInt64?, _ width: Int) -> String {
        guard let v else { return "-" }
        return "0x" + hex(v, digits: 2 * width)
    }

    static func fields(_ f: [FieldChange]) -> String { f.map(\.description).joined(separator: ", ") }

    public static func saved(_ s: CXLStateSnapshot, path: String) -> String {
        var out = "saved \(s.registers.count) registers of \(s.identity) to \(path)\n"
        let control = s.dvsec(CXLDeviceDVSEC.control)?.value ?? 0
        let lock = s.dvsec(CXLDeviceDVSEC.lock)?.value ?? 0
        out += "  DVSEC at config 0x\(hex(s.layout.dvsecOffset, digits: 3)) rev \(s.layout.dvsecRevision): "
            + "Control 0x\(hex(control, digits: 4)), CONFIG_LOCK \(lock & 1 != 0 ? "set" : "clear")\n"
        if let hdm = s.layout.hdm {
            let committed = (0..<hdm.decoderCount).filter { n in
                (s[StateCatalog.hdmBlock, "Decoder \(n) Control"]?.value ?? 0) & StateCatalog.committedBit != 0
            }
            out += "  HDM decoders: BAR \(hdm.bar) + 0x\(String(hdm.hdmOffset, radix: 16)), \(hdm.decoderCount) decoder(s), committed: "
                + (committed.isEmpty ? "none" : committed.map(String.init).joined(separator: ", ")) + "\n"
        } else {
            out += "  no HDM decoder capability\n"
        }
        return out
    }

    public static func restore(_ r: RestoreReport) -> String {
        var out = "restore \(r.device)\n"
        out += steps(r.steps)
        out += "registers (saved, read back, action):\n"
        for o in r.registers {
            out += "  " + pad(o.displayName, nameWidth) + pad(value(o.saved, o.width), 11) + pad(value(o.after, o.width), 11)
                + o.action.rawValue + (o.ok ? "" : "  FAILED") + (o.detail.map { ": \($0)" } ?? "") + "\n"
        }
        let q = r.quantities
        if !q.isEmpty { out += "addresses and sizes (saved, read back):\n" + quantities(q, all: true, marks: true) }
        out += result(r)
        return out
    }

    static func steps(_ steps: [String]) -> String {
        var out = "steps:\n"
        for (i, s) in steps.enumerated() { out += "  \(String(repeating: " ", count: i + 1 < 10 ? 1 : 0))\(i + 1). \(s)\n" }
        return out
    }

    static func result(_ r: RestoreReport) -> String {
        if r.succeeded { return "result: restored; every restored register reads back as saved\n" }
        return "result: RESTORE FAILED (\(r.failures.count) problem(s)):\n" + r.failures.map { "  - \($0)\n" }.joined()
    }

    /// The changed registers of a diff, one a line.
    static func changes(_ d: CXLStateDiff, indent: String = "  ") -> String {
        var out = ""
        for e in d.changes {
            out += indent + pad(e.displayName, nameWidth) + pad(value(e.a, e.width), 11) + "-> " + pad(value(e.b, e.width), 11)
            if !e.fields.isEmpty { out += fields(e.fields) }
            if let n = e.note { out += "  (\(n))" }
            out += "\n"
        }
        return out
    }

    /// Addresses and sizes as the spec means them, one a line; `all` lists unchanged ones too.
    static func quantities(_ q: [CXLStateQuantity], all: Bool, marks: Bool = false) -> String {
        var out = ""
        for x in q where all || x.changed {
            out += "  " + pad(x.name, nameWidth) + pad(CXLStateQuantity.text(x.a, x.kind), 24)
                + (marks ? pad(CXLStateQuantity.text(x.b, x.kind), 24) + (x.changed ? "CHANGED" : "=")
                         : "-> " + CXLStateQuantity.text(x.b, x.kind))
            out += "\n"
        }
        return out
    }

    public static func diff(_ d: CXLStateDiff) -> String {
        var out = "A: \(d.a)\nB: \(d.b)\n"
        if !d.sameDevice { out += "note: A and B are different devices\n" }
        out += changes(d)
        let q = d.quantities.filter(\.changed)
        if !q.isEmpty { out += "addresses and sizes that differ:\n" + quantities(q, all: false) }
        let devices = d.sameDevice ? "" : "; A and B are different devices"
        out += d.isEmpty ? "identical: \(d.entries.count) registers\(devices)\n"
                         : "\(d.changes.count) of \(d.entries.count) registers differ\(devices)\n"
        return out
    }

    public static func reset(_ r: ResetReport) -> String {
        var out = "reset \(r.device): \(r.method.title)\(r.memClear ? " with Mem Clr" : ""), preserve \(r.preserve ? "on" : "off")\n"
        out += steps(r.steps)
        if let e = r.resetError { out += "reset error: \(e)\n" }
        if r.preserve, let w = r.wiped {
            out += w.isEmpty ? "wiped by the reset: nothing\n" : "wiped by the reset (before -> after the reset):\n" + changes(w)
                + quantities(w.quantities, all: false)
        }
        if let p = r.pciRestore, !p.succeeded { out += "PCI state " + result(p) }
        if let restore = r.restore {
            out += "restore:\n" + restore.steps.map { "  - \($0)\n" }.joined()
            if !restore.succeeded { out += result(restore) }
        }
        if let e = r.restoreError { out += "restore refused: \(e)\n" }
        if let e = r.readBackError { out += "read-back failed: \(e)\n" }
        if let d = r.diff {
            out += "registers (before the reset, after everything):\n"
            for e in d.entries {
                out += "  " + pad(e.displayName, nameWidth) + pad(value(e.a, e.width), 11) + pad(value(e.b, e.width), 11)
                out += e.changed ? "CHANGED" + (e.fields.isEmpty ? "" : " " + fields(e.fields)) : "="
                if let n = e.note { out += "  (\(n))" }
                out += "\n"
            }
            let q = d.quantities
            if !q.isEmpty { out += "addresses and sizes (before the reset, after everything):\n" + quantities(q, all: true, marks: true) }
        }
        if r.succeeded {
            out += "result: OK, all \(r.diff?.entries.count ?? 0) registers equal their values before the reset\n"
        } else {
            var why: [String] = []
            if r.resetError != nil { why.append("the reset failed") }
            if let d = r.diff, !d.isEmpty { why.append("\(d.changes.count) register(s) differ from before the reset") }
            if let restore = r.restore, !restore.succeeded { why.append("the restore failed") }
            if r.restoreError != nil || r.readBackError != nil { why.append("the state could not be restored or re-read") }
            out += "result: FAILED: " + why.joined(separator: "; ") + "\n"
        }
        return out
    }
}
