import ArgumentParser
import CXLKitCommands

struct ConformCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "conform",
        abstract: "Check a vfio-cxl device against the v4 contract: the 19 vfio_cxl_type2_test checks, by name.",
        discussion: """
        TARGET is vfio-user:SOCKET (any vfio-user server, e.g. cxlkit serve --uapi v4) or vfio:BDF (a function bound \
        to a kernel vfio-cxl driver, through /dev/vfio). Prints one line per check \
        (PASS, FAIL or SKIP with the reason) and "N passed, N failed, N skipped"; exits 1 when a check fails. \
        The checks write to the device (decoder and DVSEC registers, device memory) and run DEVICE_RESET. \
        --json prints {target, checks: [{name, status, detail}], passed, failed, skipped}.
        """)

    @Argument(help: ArgumentHelp("The device: vfio-user:SOCKET or vfio:BDF.", valueName: "TARGET")) var target: String
    @OptionGroup var outputOptions: OutputOptionGroup

    func runCommand() throws {
        let result: (output: String, ok: Bool)
        do { result = try CXLKit.conform(target: target, json: json) } catch {
            writeStderr("cxlkit: error: \(error.message)\n")
            throw ExitCode(1)
        }
        writeStdout(result.output)
        if !result.ok { throw ExitCode(1) }
    }
}
