import ArgumentParser
import CXLKitCommands
import CXLMetrics
import Logging

struct ServeCommand: ScopedCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve an emulated CXL Type-2 device on a vfio-user socket (for QEMU's vfio-user-pci).",
        discussion: """
        Serves one client at a time, then the next; the device keeps its state between clients. \
        SIGINT or SIGTERM stops the server and removes the socket file. Other cxlkit commands reach \
        the served device as vfio-user:SOCKET. QEMU 10.1+: \
        -device '{"driver":"vfio-user-pci","socket":{"path":"SOCKET","type":"unix"}}'
        """)

    @Option(help: "Device profile: type2, gpu-fw-committed, flr-loses-state, cxl-accel, or a JSON profile file.") var profile: String = "type2"
    @Option(help: ArgumentHelp("vfio-cxl contract: v2 (NVIDIA's production kernels and QEMU branch; works with an unmodified VMM such as QEMU 10.2) or v4 (the kernel's v4 series, for a CXL-aware VMM; needs one committed, locked decoder and CXL Reset, e.g. --profile cxl-accel).", valueName: "v2|v4"))
    var uapi: String = "v2"
    @Option(help: ArgumentHelp("Serve a real device instead of the emulator: a function bound to vfio-pci, as vfio:BDF (through vfio-cxl; plain PCI when it has no CXL state).", valueName: "vfio:BDF"))
    var device: String?
    @Option(name: .customLong("memory-bar"), help: ArgumentHelp("With --device: the BAR holding the device's memory (DPA 0 at BAR offset 0), served as the CXL memory region; default: the one mappable prefetchable BAR that can hold the DVSEC's memory.", valueName: "N"))
    var memoryBAR: Int?
    @Option(help: "UNIX socket path to listen on. Refused when a server already answers there; a stale socket is replaced; on exit only this server's own socket is removed.") var socket: String
    @Option(name: .customLong("socket-mode"), help: ArgumentHelp("Mode of the socket file, octal (e.g. 0660 so that QEMU running as another user in GROUP can connect).", valueName: "MODE"))
    var socketMode: String?
    @Option(name: .customLong("socket-group"), help: ArgumentHelp("Group of the socket file: a name or a gid (e.g. kvm, libvirt-qemu).", valueName: "GROUP"))
    var socketGroup: String?
    @Flag(help: "Trace every vfio-user message (log level debug) on stderr.") var verbose = false
    @Option(name: .customLong("irq-interval"), help: ArgumentHelp("Make the device signal an MSI-X vector every MS milliseconds (0: never).", valueName: "MS"))
    var irqInterval: Int = 0
    @Option(name: .customLong("irq-vector"), help: "The MSI-X vector --irq-interval signals.") var irqVector: Int = 0
    @Option(help: ArgumentHelp("Also listen on a control socket at PATH: status, decode, save, check, metrics of the served device while a client is attached (read-only; control:PATH is a target).", valueName: "PATH"))
    var control: String?
    @Option(name: .customLong("control-clients"), help: "Control clients served at once; the next is refused with an error line.") var controlClients: Int = 4

    @OptionGroup var outputOptions: QuietOptionGroup


    func runCommand() throws {
        // --quiet keeps warnings and errors only; the info lines ("listening on ...") are notes.
        let level: Logger.Level = verbose ? .debug : (outputOptions.quiet ? .warning : .info)
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        guard let contract = CXLUAPI(rawValue: uapi) else {
            writeStderr("cxlkit: error: --uapi \(uapi): expected v2 or v4\n")
            throw ExitCode(1)
        }
        var options = ServeOptions(profile: profile, socketPath: socket)
        options.uapi = contract
        options.irqIntervalMilliseconds = irqInterval
        options.irqVector = irqVector
        options.controlPath = control
        options.maxControlClients = controlClients
        options.controlMetrics = { CXLMetricsExposition.render($0, format: $1 ? .openMetrics : .prometheus) }
        do throws(CommandError) {
            try options.setSocketPermissions(mode: socketMode, group: socketGroup)
            if device == nil, memoryBAR != nil { throw CommandError("--memory-bar goes with --device vfio:BDF") }
            if let device {
                guard irqInterval == 0 else { throw CommandError("--irq-interval drives the emulated device; a real device (--device) raises its own interrupts") }
                if let memoryBAR, !(0...5).contains(memoryBAR) { throw CommandError("--memory-bar \(memoryBAR): a BAR number, 0 to 5") }
                CommandProgress.active?.show("serve: opening \(device), claiming \(socket)")
                let session = try DeviceServeSession(target: device, options: options, memoryBAR: memoryBAR)
                CommandProgress.clear()
                ServeSession.installSignalHandlers(stopFD: session.server.stopFD)
                try session.run()
                return
            }
            CommandProgress.active?.show("serve: building emulated:\(profile), claiming \(socket)")
            let session = try ServeSession(options: options)
            CommandProgress.clear()
            ServeSession.installSignalHandlers(for: session)
            try session.run()
        } catch {
            writeStderr("cxlkit: error: \(error.message)\n")
            throw ExitCode(1)
        }
    }
}
