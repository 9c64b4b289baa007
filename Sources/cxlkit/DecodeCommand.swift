import ArgumentParser
import CXLKitCommands

struct DecodeCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode config space, CXL DVSECs and component registers, lspci-style.",
        discussion: """
        TARGET is a sysfs address (0000:3b:00.0 or 3b:00.0), an lspci -x/-xxx/-xxxx dump \
        (one or many functions), a binary config-space file, or SCHEME:REST \
        (sysfs:ADDR, file:PATH, and schemes other layers register).
        """ + targetFormsHelp)

    @Argument(help: "What to decode. Default: the first CXL function under sysfs, else the embedded emulated:type2.") var target: String?
    @Flag(name: .short, help: "Verbose, as lspci: -v capabilities, -vv details, -vvv everything (with --json, registers field by field from -vv, as cxl-cli's levels).") var verbose: Int
    @Option(name: .customShort("s"), help: ArgumentHelp("Only the functions lspci -s would pick: [[[[domain]:]bus]:][slot][.[func]] (a multi-function dump decodes one function).", valueName: "SELECTOR"))
    var select: String?
    @OptionGroup var targetOptions: TargetOptionGroup

    @OptionGroup var outputOptions: OutputOptionGroup

    func runCommand() throws {
        var problems: [String] = []
        try runReportingErrors {
            let targets = try targetOptions.functions(target, select: select)
            problems = CXLKit.unreadableRegisters(targets)
            if json {
                CXLKit.decodeJSON(targets, verbosity: verbose, problems: problems, writeBytes: { writeStdout(bytes: $0) })
                return ""
            }
            return CXLKit.decode(targets, json: false, verbosity: verbose)
        }
        // The decode is printed; registers that could not be read fail the command.
        if !problems.isEmpty {
            for p in problems { writeStderr("cxlkit: error: \(p)\n") }
            throw ExitCode(1)
        }
    }
}
