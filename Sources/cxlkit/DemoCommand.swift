import ArgumentParser
import CXLKitCommands

struct DemoCommand: JSONOutputCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Show firmware-programmed CXL state surviving every reset type on the emulated device.",
        discussion: "Programs the DVSEC and two HDM decoders the way firmware would, then for FLR, CXL Reset, secondary bus reset and link down shows what the reset wiped and that restore brought it back. Exit 1 if anything behaves unexpectedly.")

    @OptionGroup var outputOptions: OutputOptionGroup

    func runCommand() throws {
        try runStateCommand { try CXLKit.demo(json: json) }
    }
}
