import ArgumentParser
import CXLKitCommands

struct HDMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hdm",
        abstract: "Program HDM decoders through the component register BAR.",
        subcommands: [HDMCommitCommand.self])
}

struct HDMCommitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Program one HDM decoder (base, size, DPA skip; 1-way) and commit it; exit 1 unless it commits.")

    @Argument(help: "The function: a sysfs address (as root; BARs through resourceN), emulated:NAME, vfio-user:PATH.") var target: String
    @Option(help: "Decoder number.") var decoder: Int = 0
    @Option(help: "HPA base (multiple of 256 MiB; 0x... accepted).") var base: String
    @Option(help: "Size (multiple of 256 MiB; 0x... or with K/M/G suffix).") var size: String
    @Option(name: .customLong("dpa-skip"), help: "DPA skip (multiple of 256 MiB).") var dpaSkip: String = "0"
    @Flag(name: .customLong("lock"), help: "Set Lock On Commit.") var lock = false
    @Flag(name: .customLong("enable-hdm"), help: "Also set HDM Decoder Enable (global control).") var enableHDM = false
    @OptionGroup var targetOptions: TargetOptionGroup

    static func number(_ s: String) -> UInt64? {
        var t = s.lowercased()
        var mult: UInt64 = 1
        for (suffix, m) in [("k", UInt64(1) << 10), ("m", UInt64(1) << 20), ("g", UInt64(1) << 30)] where t.hasSuffix(suffix) {
            mult = m; t.removeLast()
        }
        let v = t.hasPrefix("0x") ? UInt64(t.dropFirst(2), radix: 16) : UInt64(t)
        return v.map { $0 * mult }
    }

    func run() throws {
        var committed = false
        try runReportingErrors {
            guard let b = Self.number(base), let s = Self.number(size), let k = Self.number(dpaSkip) else {
                throw CommandError("--base/--size/--dpa-skip: expected a number (0x..., or K/M/G suffix)")
            }
            let targets = try targetOptions.resolver().resolve(target)
            guard targets.count == 1, let fn = targets[0].function else {
                throw CommandError("\(target): needs exactly one live function (BAR access)")
            }
            var req = HDMCommitRequest(decoder: decoder, base: b, size: s)
            req.dpaSkip = k
            req.lockOnCommit = lock
            req.enableDecoding = enableHDM
            let r = try CXLKit.hdmCommit(fn, req)
            committed = r.committed
            return r.text
        }
        if !committed { throw ExitCode(1) }
    }
}
