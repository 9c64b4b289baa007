import ArgumentParser
import CXLKitCommands

struct HDMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hdm",
        abstract: "Program HDM decoders through the component register BAR.",
        subcommands: [HDMCommitCommand.self])
}

struct HDMCommitCommand: ScopedCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Program one HDM decoder (base, size, DPA skip; 1-way) and commit it; exit 1 unless it commits.",
        discussion: "Numbers: decimal, 0x..., with K/M/G/T or KiB/MiB/GiB/TiB (binary multiples)." + targetFormsHelp)

    @Argument(help: "The function: a sysfs address (as root; BARs through resourceN), emulated:NAME, vfio-user:PATH.") var target: String
    @Option(help: "Decoder number.") var decoder: Int = 0
    @Option(help: "HPA base: a multiple of 256 MiB (4096, 0x..., K/M/G/T or KiB/MiB/GiB/TiB suffix).") var base: String
    @Option(help: "Size: a multiple of 256 MiB, non-zero (same number forms).") var size: String
    @Option(name: .customLong("dpa-skip"), help: "DPA skip: a multiple of 256 MiB (same number forms).") var dpaSkip: String = "0"
    @Flag(name: .customLong("lock"), help: "Set Lock On Commit.") var lock = false
    @Flag(name: .customLong("enable-hdm"), help: "Also set HDM Decoder Enable (global control).") var enableHDM = false
    @OptionGroup var targetOptions: TargetOptionGroup

    @OptionGroup var outputOptions: QuietOptionGroup


    func runCommand() throws {
        var committed = false
        try runReportingErrors {
            var req = try HDMCommitRequest.parse(decoder: decoder, base: base, size: size, dpaSkip: dpaSkip)
            let targets = try targetOptions.resolver().resolve(target)
            guard targets.count == 1, let fn = targets[0].function else {
                throw CommandError("\(target): needs exactly one live function (BAR access)")
            }
            req.lockOnCommit = lock
            req.enableDecoding = enableHDM
            let r = try CXLKit.hdmCommit(fn, req)
            committed = r.committed
            return r.text
        }
        if !committed { throw ExitCode(1) }
    }
}
