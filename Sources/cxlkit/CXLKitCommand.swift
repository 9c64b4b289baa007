import ArgumentParser
import CXLKitCommands
import PCI
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// The root command. Each subcommand lives in its own file; add new ones to
/// `subcommands` below.
@main
struct CXLKitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cxlkit",
        abstract: "CXL Type-2 device passthrough toolkit.",
        version: CXLKit.version,
        subcommands: [ListCommand.self, DecodeCommand.self, DumpCommand.self,
                      SaveCommand.self, RestoreCommand.self, DiffCommand.self, ResetCommand.self, DemoCommand.self, ServeCommand.self, HDMCommand.self, ConformCommand.self, CheckCommand.self,
                      MetricsCommand.self, ExporterCommand.self, IRQCommand.self])
}

/// Runs a command body: a CommandError becomes one line on stderr and exit 1.
func runReportingErrors(_ body: () throws -> String) throws {
    do {
        let out = try body()
        writeStdout(out)
    } catch let e as CommandError {
        writeStderr("cxlkit: error: \(e.message)\n")
        throw ExitCode(1)
    }
}

func writeStdout(_ s: String) { writeStdout(bytes: Array(s.utf8)) }

func writeStdout(bytes: [UInt8]) {
    CommandProgress.clear()
    // A closed pipe (`cxlkit decode | head`) ends the output; nothing more to say about it.
    _ = bytes.withUnsafeBytes { FileDescriptor.standardOutput.writeFully($0) }
}

func writeStderr(_ s: String) {
    CommandProgress.clear()
    _ = Array(s.utf8).withUnsafeBytes { FileDescriptor.standardError.writeFully($0) }
}

/// `--sysfs ROOT` and `--bar N=FILE[@OFFSET]`, shared by commands that take targets.
struct TargetOptionGroup: ParsableArguments {
    @Option(name: .long, help: "Where sysfs is mounted (default /sys); tests use a fake tree.")
    var sysfs: String = "/sys"

    @Flag(name: .customShort("D"), help: "Name sysfs functions with their PCI domain always (as lspci -D).")
    var showDomain = false

    @Option(name: .long, help: ArgumentHelp("BAR image for a file target: N=FILE or N=FILE@OFFSET (the image starts OFFSET bytes into BAR N).", valueName: "N=FILE[@OFFSET]"))
    var bar: [String] = []

    /// The TARGET a command works on: the one given, or the default (the first CXL
    /// function under sysfs, else the embedded emulated device), announced on stderr.
    func target(_ given: String?) throws -> String {
        if let given { return given }
        let (target, note) = try resolver().defaultTarget()
        CommandProgress.note("cxlkit: \(note)\n")
        return target
    }

    /// The functions `target` (or the default target) names, narrowed to those an lspci `-s` selector picks.
    func functions(_ target: String?, select: String?) throws -> [ResolvedTarget] {
        try TargetOptions.select(resolver().resolve(self.target(target)), select)
    }

    func resolver() throws -> TargetResolver {
        var images: [Int: (offset: UInt64, path: String)] = [:]
        for spec in bar {
            let image = try TargetOptions.parseBarImage(spec)
            images[image.bar] = (image.offset, image.path)
        }
        var options = TargetOptions(sysfsRoot: sysfs, barImages: images)
        options.showDomain = showDomain
        return TargetResolver(options: options)
    }
}

/// The TARGET forms every command that takes one accepts, for its --help: the registered schemes, each with its
/// one-line summary, and the scheme-less forms.
let targetFormsHelp: String = {
    let schemes = TargetResolver().schemes.values.sorted { $0.scheme < $1.scheme }
        .map { "  \($0.scheme):...".padding(toLength: 18, withPad: " ", startingAt: 0) + " \($0.summary)" }
    return "\n\nTARGET forms:\n" + schemes.joined(separator: "\n")
        + "\n  ADDR               a PCI address (0000:3b:00.0 or 3b:00.0), as sysfs:ADDR"
        + "\n  PATH               an existing file, as file:PATH"
}()

/// Settings a command's body runs under: what its report writers and the progress line on stderr do.
protocol OutputScope: ParsableArguments {
    /// Runs `body` with these settings in force.
    func scope<T>(_ body: () throws -> T) rethrows -> T
}

/// A command whose body (`runCommand`) runs inside its output settings: every report command's `run()`.
protocol ScopedCommand: ParsableCommand {
    associatedtype Output: OutputScope
    var outputOptions: Output { get }
    func runCommand() throws
}

extension ScopedCommand {
    func run() throws { try outputOptions.scope { try runCommand() } }
}

/// `--json`, `-u/--human` and `-q/--quiet`: the output options of every command that prints a report as text or
/// JSON (list, decode, diff, restore, reset, demo, check, conform), declared once.
struct OutputOptionGroup: OutputScope {
    @Flag(help: "Print JSON instead of text (cxl-cli's conventions; one schema per command in schemas/, see README, JSON output).")
    var json = false

    @Flag(name: [.customShort("u"), .long],
          help: "With --json, byte counts (keys ending in _bytes) as strings such as \"256.00 MiB\", as cxl-cli -u.")
    var human = false

    @Flag(name: [.customShort("q"), .long], help: "No progress and no notes on stderr; errors only.")
    var quiet = false

    func scope<T>(_ body: () throws -> T) rethrows -> T {
        try JSONOutput.$human.withValue(human) {
            try CommandProgress.$quiet.withValue(quiet) { try CommandProgress.around(body) }
        }
    }
}

/// A command with the output options (`--json`, `-u`, `-q`): `-u/--human` only means something for its JSON, so
/// alone it is a usage error rather than silently ignored.
protocol JSONOutputCommand: ScopedCommand where Output == OutputOptionGroup {}

extension JSONOutputCommand {
    /// `--json` was given.
    var json: Bool { outputOptions.json }

    func validate() throws {
        if outputOptions.human && !json {
            throw ValidationError("-u/--human formats byte counts in --json output; add --json")
        }
    }
}

/// `-q/--quiet` alone, for commands without JSON output.
struct QuietOptionGroup: OutputScope {
    @Flag(name: [.customShort("q"), .long], help: "No progress and no notes on stderr; errors only.")
    var quiet = false

    func scope<T>(_ body: () throws -> T) rethrows -> T {
        try CommandProgress.$quiet.withValue(quiet) { try CommandProgress.around(body) }
    }
}
