import PCI
import CXL

/// The library half of the cxlkit commands: each returns what the command prints,
/// so tests call them directly and the executable only parses arguments.
public enum CXLKit {
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
            let obj = JSONValue.object([("functions", .array(targets.map { d.json($0.subject, verbosity: verbosity) }))])
            return obj.serialized(pretty: true) + "\n"
        }
        return targets.map { d.text($0.subject, verbosity: verbosity) }.joined()
    }

    /// `cxlkit dump`: `lspci -xxxx` hex dump of each target (what `lspci -F` reads).
    public static func dump(_ targets: [ResolvedTarget]) -> String {
        targets.map { t in
            let name = PCIAddress(t.name)?.lspciDescription ?? "00:00.0"
            return LspciDump.format(address: name, description: t.description ?? LspciDump.defaultDescription(t.config), config: t.config)
        }.joined()
    }
}
