import ArgumentParser
import CXLKitCommands

struct IRQCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "irq",
        abstract: "Enable an MSI-X vector as a driver does and wait for the device to signal it through an eventfd.",
        discussion: """
            For vfio:BDF and vfio-user:SOCKET targets. Sets Bus Master Enable in Command and MSI-X Enable in the \
            MSI-X Message Control (Function Mask clear), clears the vector's Mask Bit in the MSI-X table in its BAR, \
            hands the device an eventfd for the vector (SET_IRQS DATA_EVENTFD | ACTION_TRIGGER: the kernel's \
            VFIO_DEVICE_SET_IRQS, or vfio-user DEVICE_SET_IRQS with the fd), and polls it. One line per interrupt, \
            then a result line. On the way out the eventfd is de-assigned and the Mask Bit, Message Control and \
            Command are written back. Exit 0 when COUNT interrupts arrived, 1 on a timeout, 2 on an error. \
            (cxlkit serve --irq-interval MS makes the emulated device signal a vector periodically.)
            """)

    @Argument(help: "The function: vfio:BDF (bound to vfio-pci) or vfio-user:SOCKET.") var target: String
    @Option(help: "The MSI-X vector (table entry).") var vector: Int = 0
    @Option(help: "Interrupts to wait for.") var count: Int = 1
    @Option(name: .customLong("timeout-ms"), help: ArgumentHelp("How long to wait for all of them.", valueName: "MS")) var timeoutMs: Int = 5000
    @OptionGroup var targetOptions: TargetOptionGroup

    func run() throws {
        let code: Int32
        do {
            let targets = try targetOptions.resolver().resolve(target)
            guard targets.count == 1 else { throw CommandError("\(target): names \(targets.count) functions; irq needs one") }
            code = try CXLKit.waitForInterrupts(targets[0], options: IRQWaitOptions(vector: vector, count: count, timeoutMilliseconds: timeoutMs),
                                                write: { writeStdout($0) }).exitCode
        } catch let e as CommandError {
            writeStderr("cxlkit: error: \(e.message)\n")
            throw ExitCode(2)
        }
        if code != 0 { throw ExitCode(code) }
    }
}
