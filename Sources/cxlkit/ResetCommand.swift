import ArgumentParser
import CXL
import CXLKitCommands

extension CXLResetKind: ExpressibleByArgument {
    /// The method names, and `bus`: what the kernel's reset_method file and its error messages call a secondary
    /// bus reset.
    public init?(argument: String) {
        if argument == "bus" { self = .sbr; return }
        self.init(rawValue: argument)
    }
}

struct ResetCommand: StateReportCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Reset a CXL function and report, register by register, what the reset changed.",
        discussion: """
            The PCI state (Command, BARs, PCI Express control, MSI/MSI-X) is carried across every reset, as the \
            PCI core does; --preserve also saves the CXL state (DVSEC, HDM decoders) before the reset and restores \
            it after. Every saved register is re-read afterwards and compared with its value before the reset; \
            exit 1 when any differs or the reset failed.
            """ + targetFormsHelp)

    @Argument(help: "The function (same forms as save). Default: the first CXL function under sysfs, else the embedded emulated:type2.") var target: String?
    @Option(help: "flr, cxl (CXL Reset), sbr or bus (secondary bus reset), or link (link down/up).") var method: CXLResetKind
    @Flag(name: .customLong("mem-clear"), help: "CXL Reset with CXL Reset Mem Clr Enable.") var memClear = false
    @Flag(help: "Save the CXL state before the reset and restore it after.") var preserve = false
    @Option(name: .customLong("state-file"), help: "Also write the state before the reset to this file (atomically, before resetting).")
    var stateFile: String?
    @OptionGroup var options: StateReportOptionGroup

    func runCommand() throws {
        try options.run(on: target) {
            try CXLKit.resetState($0, method: method, preserve: preserve, memClear: memClear, stateFile: stateFile, json: json)
        }
    }
}
