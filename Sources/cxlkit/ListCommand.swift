import ArgumentParser
import CXLKitCommands
import PCI

struct ListCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List PCI functions, marking CXL ones with their type, HDM count and ranges.")

    @Option(name: .long, help: "Where sysfs is mounted (default /sys).") var sysfs: String = "/sys"
    @Option(name: .customShort("s"), help: ArgumentHelp("Only the functions lspci -s would pick: [[[[domain]:]bus]:][slot][.[func]].", valueName: "SELECTOR"))
    var select: String?
    @Flag(name: .customShort("D"), help: "Print the PCI domain always (as lspci -D).") var showDomain = false

    @OptionGroup var outputOptions: OutputOptionGroup

    func runCommand() throws {
        try runReportingErrors { try CXLKit.list(tree: SysfsTree(root: sysfs), json: json, selector: select, showDomain: showDomain) }
    }
}
