import PCI
import CXL

/// The library half of the cxlkit commands: each returns what the command prints,
/// so tests call them directly and the executable only parses arguments.
public enum CXLKit {
    /// cxlkit's version: `cxlkit --version`, and `metadata.version` in every `--json` output.
    public static let version = "0.3.0"

    /// The PCI decoder with the CXL plug-ins: DVSEC formatter for vendor 0x1E98 and
    /// the component-register section.
    public static func decoder() -> PCIDecoder {
        var d = PCIDecoder()
        d.register(CXLDVSECFormatter())
        d.register(ComponentRegisterFormatter())
        return d
    }

    /// `cxlkit decode`: lspci-style text, or `{"functions": [...]}` JSON.
    public static func decode(_ targets: [ResolvedTarget], json: Bool, verbosity: Int) -> String {
        let d = decoder()
        if json {
            let problems = unreadableRegisters(targets)
            return JSONOutput.document(command: "decode", succeeded: problems.isEmpty, problems: problems,
                                       [("functions", .array(targets.map { d.json($0, verbosity: verbosity) }))])
        }
        return targets.map { d.text($0, verbosity: verbosity) }.joined()
    }

    /// `cxlkit decode --json`, written as it is built (one function at a time): the same bytes as
    /// `decode(targets, json: true, ...)`.
    public static func decodeJSON(_ targets: [ResolvedTarget], verbosity: Int, problems: [String], writeBytes: ([UInt8]) -> Void) {
        let d = decoder()
        JSONOutput.streamDocument(command: "decode", succeeded: problems.isEmpty, problems: problems, arrayKey: "functions",
                                  count: targets.count, element: { d.json(targets[$0], verbosity: verbosity) }, writeBytes: writeBytes)
    }

    /// Registers that could not be read although the target can reach its BARs (an
    /// unreadable or unmapped BAR, a failing read): one line each, for stderr. The
    /// decode output itself carries the same problems as `!!` findings.
    public static func unreadableRegisters(_ targets: [ResolvedTarget]) -> [String] {
        let d = decoder()
        var out: [String] = []
        for t in targets where t.function != nil {
            let ctx = d.context(for: t, verbosity: 2)
            for l in ComponentRegisterFormatter.locate(ctx) {
                let what = "\(t.name): component registers at BAR\(l.entry.bir)+0x\(hex(l.entry.offset, digits: 1))"
                if let p = l.problem { out.append("\(what): \(p)") }
                if let f = l.decode?.findings.first(where: { $0.message.hasPrefix("cannot read") }) { out.append("\(what): \(f.message)") }
            }
        }
        return out
    }

    /// `cxlkit dump`: `lspci -xxxx` hex dump of each target (what `lspci -F` reads).
    public static func dump(_ targets: [ResolvedTarget]) -> String {
        targets.map { t in
            let name = PCIAddress(t.name)?.lspciDescription ?? "00:00.0"
            return LspciDump.format(address: name, description: t.description ?? LspciDump.defaultDescription(t.config), config: t.config)
        }.joined()
    }
}
