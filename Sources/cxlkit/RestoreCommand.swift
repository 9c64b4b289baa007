import ArgumentParser
import CXLKitCommands

struct RestoreCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a state file to a CXL function, in the order the hardware needs; exit 1 if any register did not come back.",
        discussion: "Refused before the first write when the state belongs to another device or the device's read-only capabilities differ." + targetFormsHelp)

    @Argument(help: "The function (same forms as save).") var target: String
    @Argument(help: "State file written by cxlkit save.") var file: String
    @Flag(help: "Print the report as JSON.") var json = false
    @OptionGroup var targetOptions: TargetOptionGroup

    @OptionGroup var setup: EmulatedSetupOption

    @OptionGroup var outputOptions: OutputOptionGroup

    func run() throws { try outputOptions.scope { try runCommand() } }

    func runCommand() throws {
        try runStateCommand {
            let (fn, note) = try CXLKit.stateFunction(target, resolver: targetOptions.resolver(), blank: setup.blank)
            return try CXLKit.restoreState(fn, from: file, json: json).prefixed(json ? nil : note)
        }
    }
}

/// `--blank`, for the state commands on emulated targets.
struct EmulatedSetupOption: ParsableArguments {
    @Flag(help: "Emulated targets: keep the device blank instead of programming it the way firmware would first (profiles with their own firmware state are never reprogrammed; real devices never are).")
    var blank = false
}

extension StateCommandResult {
    func prefixed(_ note: String?) -> StateCommandResult {
        StateCommandResult(output: (note ?? "") + output, exitCode: exitCode)
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
