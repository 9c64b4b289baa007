import ArgumentParser
import CXLKitCommands

struct RestoreCommand: StateReportCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a state file to a CXL function, in the order the hardware needs; exit 1 if any register did not come back.",
        discussion: "Refused before the first write when the state belongs to another device or the device's read-only capabilities differ." + targetFormsHelp)

    @Argument(help: "The function (same forms as save).") var target: String
    @Argument(help: "State file written by cxlkit save.") var file: String
    @OptionGroup var options: StateReportOptionGroup

    func runCommand() throws {
        try options.run(on: target) { try CXLKit.restoreState($0, from: file, json: json) }
    }
}
