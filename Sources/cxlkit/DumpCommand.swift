import ArgumentParser
import CXLKitCommands

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print the target's config space as an lspci -xxxx hex dump (readable by lspci -F).",
        discussion: targetFormsHelp)

    @Argument(help: "What to dump (same forms as decode). Default: the first CXL function under sysfs, else the embedded emulated:type2.") var target: String?
    @Option(name: .customShort("s"), help: ArgumentHelp("Only the functions lspci -s would pick: [[[[domain]:]bus]:][slot][.[func]] (a multi-function dump decodes one function).", valueName: "SELECTOR"))
    var select: String?
    @OptionGroup var targetOptions: TargetOptionGroup

    func run() throws {
        try runReportingErrors { CXLKit.dump(try targetOptions.functions(target, select: select)) }
    }
}
