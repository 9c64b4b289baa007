import ArgumentParser
import CXLKitCommands

struct SaveCommand: ScopedCommand {
    static let configuration = CommandConfiguration(
        commandName: "save",
        abstract: "Save a CXL function's DVSEC, HDM decoder and PCI state to a state file.",
        discussion: "The file is versioned JSON with the device's identity and a checksum, written atomically (temporary file, fsync, rename); a failed save leaves an existing file untouched." + targetFormsHelp)

    @Argument(help: "The function: a sysfs address (as root), emulated:NAME, or a file with --bar images. Default: the first CXL function under sysfs, else the embedded emulated:type2.") var target: String?
    @Option(name: .shortAndLong, help: "State file to write; - for standard output. A regular file is replaced atomically, a symlink followed, a FIFO or character device written through; anything else is refused.") var output: String
    @OptionGroup var stateOptions: StateTargetOptionGroup

    @OptionGroup var outputOptions: QuietOptionGroup

    func runCommand() throws {
        try runReportingErrors {
            let (fn, note) = try stateOptions.function(target)
            let saved = try CXLKit.saveState(fn, to: output)
            if output == "-" {
                CommandProgress.note((note ?? "") + saved.summary)
                return saved.output
            }
            return (note ?? "") + saved.output
        }
    }
}
