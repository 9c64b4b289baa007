import ArgumentParser
import CXLKitCommands

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a state file to a CXL function, in the order the hardware needs; exit 1 if any register did not come back.")

    @Argument(help: "The function (same forms as save).") var target: String
    @Argument(help: "State file written by cxlkit save.") var file: String
    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var targetOptions: TargetOptionGroup

    func run() throws {
        try runStateCommand {
            try CXLKit.restoreState(CXLKit.stateFunction(target, resolver: targetOptions.resolver()), from: file, json: json)
        }
    }
}

/// Runs a state command: prints its output and exits with its status; a
/// CommandError becomes one line on stderr and exit 2 where 1 means "differs".
func runStateCommand(errorExit: Int32 = 1, _ body: () throws -> StateCommandResult) throws {
    let result: StateCommandResult
    do {
        result = try body()
    } catch let e as CommandError {
        writeStderr("cxlkit: error: \(e.message)\n")
        throw ExitCode(errorExit)
    }
    writeStdout(result.output)
    if result.exitCode != 0 { throw ExitCode(result.exitCode) }
}
