import ArgumentParser
import CXLKitCommands
import PCI

/// `--blank`, for the state commands on emulated targets.
struct EmulatedSetupOption: ParsableArguments {
    @Flag(help: "Emulated targets: keep the device blank instead of programming it the way firmware would first (profiles with their own firmware state are never reprogrammed; real devices never are).")
    var blank = false
}

/// The options of every command that works on a function's CXL state: where targets are found
/// (`TargetOptionGroup`) and whether an emulated one is first programmed the way firmware would (`--blank`).
struct StateTargetOptionGroup: ParsableArguments {
    @OptionGroup var targets: TargetOptionGroup
    @OptionGroup var setup: EmulatedSetupOption

    var blank: Bool { setup.blank }
    var sysfs: String { targets.sysfs }
    func resolver() throws -> TargetResolver { try targets.resolver() }

    /// The one function `target` names (the default target when nil), set up for a state command, and the note
    /// saying what the setup did.
    func function(_ target: String?, resolver: TargetResolver? = nil) throws -> (function: any PCIFunction, note: String?) {
        try CXLKit.stateFunction(targets.target(target), resolver: resolver ?? targets.resolver(), blank: setup.blank)
    }
}

/// The options of the state commands that print a report (restore, diff, reset, check): the state options and the
/// output options (`--json`, `-u`, `-q`), which always travel together there.
struct StateReportOptionGroup: ParsableArguments {
    @OptionGroup var state: StateTargetOptionGroup
    @OptionGroup var output: OutputOptionGroup

    /// Runs a state command on the function `target` names: its result, after the setup note unless `--json`.
    func run(on target: String?, _ body: (any PCIFunction) throws -> StateCommandResult) throws {
        try runStateCommand {
            let (fn, note) = try state.function(target)
            return try body(fn).prefixed(output.json ? nil : note)
        }
    }

    /// Runs a state command over several targets (`diff`, `check`), found with one resolver; a CommandError becomes
    /// exit 2, where 1 means "differs" or "problems found".
    func runComparing(_ body: (TargetResolver) throws -> StateCommandResult) throws {
        try runStateCommand(errorExit: 2) { try body(state.resolver()) }
    }
}

/// A state command that prints a report: it declares its own arguments and `options`, nothing else.
protocol StateReportCommand: JSONOutputCommand {
    var options: StateReportOptionGroup { get }
}

extension StateReportCommand {
    var outputOptions: OutputOptionGroup { options.output }
    var stateOptions: StateTargetOptionGroup { options.state }
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
