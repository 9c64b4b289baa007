import ArgumentParser
import CXLKitCommands

struct DiffCommand: StateReportCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two CXL states register by register; each side is a state file or a live target.",
        discussion: "Exit status as diff(1): 0 identical, 1 different, 2 trouble." + targetFormsHelp)

    @Argument(help: "State file or target.") var a: String
    @Argument(help: "State file or target.") var b: String
    @OptionGroup var options: StateReportOptionGroup

    func runCommand() throws {
        try options.runComparing { resolver in
            func source(_ s: String) throws -> StateSource {
                CXLKit.isStateFile(s) ? .file(s) : .live(try stateOptions.function(s, resolver: resolver).function)
            }
            return CXLKit.diffState(try CXLKit.loadState(source(a)), try CXLKit.loadState(source(b)), json: json)
        }
    }
}
