import ArgumentParser
import CXLKitCommands

struct CheckCommand: StateReportCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Say whether CXL functions' state is what it should be: against a state file, and against the kernel's view.",
        discussion: """
        Live checks: DVSEC Mem_Enable and Memory_Active per range, CONFIG_LOCK, HDM decoders (Error Not Committed), \
        CXL RAS status, Flex Bus link, PCIe AER counters (sysfs). On sysfs targets the Linux CXL driver's view under \
        SYSFS/bus/cxl/devices (memdev, endpoint decoders decoderN.M with their start, size and region) is compared \
        with the live HDM decoders. With --against FILE (a state file from cxlkit save): every decoder committed in \
        the file must be committed with the same base, size, DPA skip and ways, DVSEC Control, Range Base and Lock as \
        saved. Exit status: 0 healthy, 1 problems found, 2 could not check.
        """ + targetFormsHelp)

    @Argument(help: "Targets (sysfs address, emulated:NAME, vfio-user:PATH, control:PATH, a file with --bar images). Default: every CXL device under sysfs, else the embedded emulated:type2.")
    var targets: [String] = []
    @Option(help: ArgumentHelp("Compare with this state file (cxlkit save); one target.", valueName: "FILE")) var against: String?
    @OptionGroup var options: StateReportOptionGroup

    func runCommand() throws {
        try options.runComparing { resolver in
            var names = targets
            if names.isEmpty {
                let (found, note) = CXLKit.discoverHealthTargets(resolver: resolver)
                CommandProgress.note("cxlkit: \(note)\n")
                names = against == nil ? found : [found[0]]
            }
            if let against {
                guard names.count == 1 else { throw CommandError("--against compares one target with the file; \(names.count) given") }
                let (fn, note) = try stateOptions.function(names[0], resolver: resolver)
                if let note, !json { CommandProgress.note(note) }
                return CXLKit.checkReport([CXLKit.checkAgainst(against, function: fn, target: names[0], sysfsRoot: stateOptions.sysfs)], json: json)
            }
            return CXLKit.checkReport(names.flatMap { CXLKit.checkTarget($0, resolver: resolver, blank: stateOptions.blank) }, json: json)
        }
    }
}
