import Foundation
import Logging
import PCI
import CXLEmulator
import VFIO
import VFIOCXL
import VFIOUser
#if canImport(Glibc)
import Glibc
#endif

extension CXLKit {
    /// The emulated device `cxlkit serve` serves: a shipped profile name or a JSON profile path.
    public static func makeEmulatedDevice(profile: String) throws(CommandError) -> EmulatedCXLDevice {
        do { return try EmulatedCXLDevice(profile) } catch { throw CommandError("profile \(profile): \(error.description)") }
    }

    /// The VFIO device `cxlkit serve` puts on the socket, built around the emulated function: vfio-cxl (the
    /// VFIO device layer and the CXL library composed), which falls back to plain PCI passthrough, with the
    /// reason logged, when the function has no usable CXL state. The one place that decides what a VMM sees.
    ///
    /// `uapi` picks the contract: `.v2` (the default; NVIDIA's production kernels and QEMU branch, and what an
    /// unmodified VMM such as QEMU 10.2 works with) or `.v4` (the kernel's v4 series, for a CXL-aware VMM; the
    /// device must have exactly one committed, locked, non-interleaved decoder and CXL Reset, else it is refused).
    /// `v4Faults` break v4 rules on purpose (conformance tests only).
    public static func makeServedDevice(emulated: EmulatedCXLDevice, uapi: VFIOCXLContract = .v2, v4Faults: Set<VFIOCXLv4Fault> = [],
                                        logger: Logger = Logger(label: "vfio-cxl")) throws(CommandError) -> any VFIODevice {
        switch uapi {
        case .v2:
            var options = VFIOCXLOptions()
            options.logger = logger
            do { return try VFIOCXLDevice(function: emulated, memory: emulated, options: options) } catch { throw CommandError("\(emulated.address): \(error)") }
        case .v4:
            var options = VFIOCXLv4Options()
            options.logger = logger
            options.faults = v4Faults
            do { return try VFIOCXLv4Device(function: emulated, memory: emulated, options: options) } catch { throw CommandError("\(emulated.address): \(error)") }
        }
    }
}

/// The vfio-cxl contract `cxlkit serve --uapi` and `cxlkit conform` name (the CLI target sees only this module).
public typealias CXLUAPI = VFIOCXLContract

/// Settings of one `cxlkit serve` run.
public struct ServeOptions: Sendable {
    public var profile: String
    public var socketPath: String
    /// Raise MSI-X vector `irqVector` every `irqIntervalMilliseconds` (0: never); see `ServeSession`.
    public var irqIntervalMilliseconds: Int = 0
    public var irqVector: Int = 0
    /// `--control PATH`: a control socket answering status, decode, save, check and metrics (issue 18); it gets the
    /// same `socketPermissions` as the vfio-user socket.
    public var controlPath: String? = nil
    /// Control clients served at once; the next is refused with an error line.
    public var maxControlClients: Int = 4
    /// Renders the exposition for the control socket's `metrics` request (set by the executable, which links
    /// the metrics module); nil: the request is refused.
    public var controlMetrics: (@Sendable ([TargetHealth], Bool) -> String)? = nil
    /// Mode and group of the socket file (`--socket-mode`, `--socket-group`).
    public var socketPermissions = VFIOUserSocketPermissions()
    /// Sets `socketPermissions` from the command line's `--socket-mode` / `--socket-group` texts.
    public mutating func setSocketPermissions(mode: String?, group: String?) throws(CommandError) {
        socketPermissions = try VFIOUserSocketPermissions.parse(mode: mode, group: group)
    }
    /// The vfio-cxl contract served (`--uapi`).
    public var uapi: VFIOCXLContract = .v2
    /// Broken v4 rules (tests of `cxlkit conform` only; no command-line option).
    public var v4Faults: Set<VFIOCXLv4Fault> = []
    public init(profile: String, socketPath: String) {
        self.profile = profile
        self.socketPath = socketPath
    }
}

/// `cxlkit serve`: one emulated device on a vfio-user socket, one client at a time, until `stop()` (or SIGINT /
/// SIGTERM with `installSignalHandlers`). The device and its state outlive each client. The socket is listening
/// when `init` returns.
public final class ServeSession: @unchecked Sendable {
    public let options: ServeOptions
    public let emulated: EmulatedCXLDevice
    public let device: any VFIODevice
    public let server: VFIOUserServer
    /// Between the server and the device: notes the client and its resets for the control socket.
    public let monitor: ServedDeviceMonitor
    /// The control socket, when `controlPath` was given; accepting once `init` returns.
    public private(set) var control: ControlServer?
    let logger: Logger
    private let lock = NSLock()
    private var _interruptsRaised = 0
    private var timer: Thread?

    /// Vectors raised by the interrupt timer so far.
    public var interruptsRaised: Int { lock.lock(); defer { lock.unlock() }; return _interruptsRaised }

    public init(options: ServeOptions, logger: Logger = Logger(label: "cxlkit.serve")) throws(CommandError) {
        self.options = options
        self.logger = logger
        emulated = try CXLKit.makeEmulatedDevice(profile: options.profile)
        device = try CXLKit.makeServedDevice(emulated: emulated, uapi: options.uapi, v4Faults: options.v4Faults)
        monitor = ServedDeviceMonitor(device)
        do {
            server = try VFIOUserServer(device: monitor, socketPath: options.socketPath, logger: logger,
                                        permissions: options.socketPermissions)
        } catch {
            throw CommandError(error.description)
        }
        control = try ControlServer.start(options: options, monitor: monitor) { [weak self] in self?.status }
    }

    /// What the control socket's `status` reports.
    public var status: ServeStatus {
        ServeStatus(profile: emulated.profile.name, device: emulated.address, clientAttached: monitor.clientAttached,
                    clientsServed: server.clientsServed, resets: monitor.resets, interruptsRaised: interruptsRaised,
                    memoryGated: monitor.memoryGated)
    }

    /// Serves clients until `stop()`; removes the socket file on return.
    public func run() throws(CommandError) {
        logger.info("serving", metadata: ["profile": "\(emulated.profile.name)", "device": "\(emulated.address)", "uapi": "\(options.uapi.rawValue)",
                                          "socket": "\(options.socketPath)"])
        startInterruptTimer()
        defer { stopInterruptTimer() }
        defer { control?.stop() }
        do { try server.run() } catch { throw CommandError("\(options.socketPath): \(error)") }
        logger.info("stopped", metadata: ["clients_served": "\(server.clientsServed)", "interrupts_raised": "\(interruptsRaised)"])
    }

    /// Stops `run()` (from any thread).
    public func stop() {
        server.stop()
        control?.stop()
    }

    // MARK: Interrupt timer

    private var timerStop = false

    /// The device signals MSI-X vector `irqVector` through its own `signal(vector:)` every interval: the device
    /// decides (its MSI-X Enable, masks, PBA) whether the interrupt goes out to the client's eventfd.
    private func startInterruptTimer() {
        let ms = options.irqIntervalMilliseconds
        guard ms > 0 else { return }
        let t = Thread { [weak self] in
            while let s = self {
                s.lock.lock(); let stop = s.timerStop; s.lock.unlock()
                if stop { return }
                // Counted before the signal: whoever the interrupt wakes must already see it counted.
                s.lock.lock(); s._interruptsRaised += 1; let n = s._interruptsRaised; s.lock.unlock()
                s.emulated.signal(vector: s.options.irqVector)
                var meta: Logger.Metadata = ["vector": "\(s.options.irqVector)", "count": "\(n)"]
                if let d = s.device as? VFIOPCIDevice {
                    meta["msix_eventfds"] = "\(d.irqs.isEnabled(VFIOPCIIRQ.msix.rawValue))"
                    meta["msix_eventfd_vector"] = "\(d.irqs.eventfd(index: VFIOPCIIRQ.msix.rawValue, vector: s.options.irqVector) != nil)"
                    meta["pending"] = "\(d.irqs.isPending(index: VFIOPCIIRQ.msix.rawValue, vector: s.options.irqVector))"
                }
                if let x = (try? s.emulated.configSnapshot()).flatMap({ CapabilityList(walking: $0).standard(.msix) }),
                   let ctl = try? s.emulated.configRead(x.offset + MSIXCapability.messageControl.offset, width: 2) {
                    meta["function_msix_control"] = "0x\(String(ctl, radix: 16))"
                }
                s.logger.debug("device signalled MSI-X vector", metadata: meta)
                usleep(useconds_t(ms * 1000))
            }
        }
        t.name = "cxlkit-serve-irq"
        timer = t
        t.start()
    }

    private func stopInterruptTimer() {
        lock.lock(); timerStop = true; lock.unlock()
    }

    // MARK: Signals

    /// SIGINT and SIGTERM stop `session` (the handler writes the server's stop eventfd, async-signal-safe);
    /// SIGPIPE is ignored (a client vanishing mid-reply is an error return, not a process kill).
    public static func installSignalHandlers(for session: ServeSession) { installSignalHandlers(stopFD: session.server.stopFD) }

    /// The same for any server: SIGINT/SIGTERM write `stopFD` (a `VFIOUserServer.stopFD`).
    public static func installSignalHandlers(stopFD: Int32) {
        serveStopFD = stopFD
        var sa = sigaction()
        sa.__sigaction_handler.sa_handler = { _ in
            var one: UInt64 = 1
            _ = withUnsafeBytes(of: &one) { Glibc.write(serveStopFD, $0.baseAddress, 8) }
        }
        sigemptyset(&sa.sa_mask)
        sa.sa_flags = 0
        sigaction(SIGINT, &sa, nil)
        sigaction(SIGTERM, &sa, nil)
        signal(SIGPIPE, SIG_IGN)
        // A launcher may hand us a mask with them blocked (Foundation's Process passes on its thread's mask, in
        // which the Swift runtime's threads block most signals): unblock, or SIGTERM would never arrive.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }
}

extension VFIOUserSocketPermissions {
    /// Parses `--socket-mode` (octal, e.g. 0660 or 660) and `--socket-group` (a group name or a numeric gid).
    public static func parse(mode: String?, group: String?) throws(CommandError) -> VFIOUserSocketPermissions {
        var p = VFIOUserSocketPermissions()
        if let mode {
            let digits = mode.hasPrefix("0o") ? String(mode.dropFirst(2)) : mode
            guard !digits.isEmpty, digits.count <= 4, let m = UInt32(digits, radix: 8), m <= 0o7777 else {
                throw CommandError("--socket-mode \(mode): expected an octal mode such as 0660")
            }
            p.mode = mode_t(m)
        }
        if let group {
            if let gid = UInt32(group) {
                p.group = gid_t(gid)
            } else if let g = getgrnam(group) {
                p.group = g.pointee.gr_gid
            } else {
                throw CommandError("--socket-group \(group): no such group")
            }
        }
        return p
    }
}

/// The stop eventfd the signal handler writes (set once, before the handlers are installed).
nonisolated(unsafe) private var serveStopFD: Int32 = -1

/// A profile with device SRAM (`deviceSRAM`) makes BAR0 mmap-able: its memfd backs the BAR, and only the SRAM window
/// is offered in the sparse mmap (the registers around it stay trapped). A profile with `prefetchableMemoryBAR` makes
/// BAR2 mmap-able: the device-memory memfd backs it (BAR offset = DPA), mappable over the device memory.
extension EmulatedCXLDevice: VFIOMappablePCIFunction {
    public func mmapBacking(bar: Int) -> VFIORegionMapping? {
        if bar == 2, profile.prefetchableMemoryBAR { return VFIORegionMapping(fd: memoryFD, fileOffset: 0) }
        guard bar == 0, let b = bar0Backing else { return nil }
        return VFIORegionMapping(fd: b.fd, fileOffset: 0)
    }
    public func mmapAreas(bar: Int) -> [VFIOSparseArea]? {
        if bar == 2, profile.prefetchableMemoryBAR, let b = bars.first(where: { $0.index == 2 }) {
            return b.size > memorySize ? [VFIOSparseArea(offset: 0, size: memorySize)] : nil
        }
        guard bar == 0, let b = bar0Backing else { return nil }
        return [VFIOSparseArea(offset: b.window.lowerBound, size: b.window.upperBound - b.window.lowerBound)]
    }
}
