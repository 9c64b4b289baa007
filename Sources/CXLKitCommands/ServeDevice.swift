import CXL
import Foundation
import Logging
import PCI
import VFIO
import VFIOCXL
import VFIOUser

extension CXLKit {
    /// The VFIO device `cxlkit serve --device` puts on the socket for a real function: vfio-cxl around it, exactly
    /// as for the emulated device (DVSEC shadow, HDM shadow, reset orchestration). Without device memory to serve
    /// (`memory` nil) or without usable CXL state it is served as plain PCI, the reason logged.
    public static func makeServedDevice(function: any PCIFunction, memory: (any CXLDeviceMemory)?, missingMemoryReason: String? = nil,
                                        logger: Logger = Logger(label: "vfio-cxl")) throws(CommandError) -> VFIOCXLDevice {
        var options = VFIOCXLOptions()
        options.logger = logger
        if let missingMemoryReason { options.missingMemoryReason = missingMemoryReason }
        do { return try VFIOCXLDevice(function: function, memory: memory, options: options) } catch { throw CommandError("\(function.address): \(error)") }
    }
}

/// `cxlkit serve --device vfio:BDF`: a real function the kernel's vfio-pci owns, served over vfio-user through
/// vfio-cxl (the VFIO library's kernel backend underneath): a user-space vfio-cxl over real hardware. BAR mmaps are
/// the kernel device fd's (sparse areas around what vfio-cxl and the kernel trap), interrupts are the client's
/// eventfds handed to the kernel with VFIO_DEVICE_SET_IRQS, and each client DMA_MAP is mapped into the device's
/// IOMMU domain at the client's IOVA (unmapped on DMA_UNMAP and on disconnect).
///
/// The contract (`options.uapi`) is v2 by default (`VFIOCXLDevice`: shadows, decoder 0 committed by the host when
/// firmware did not, plain PCI when there is no usable CXL state) or v4 (`VFIOCXLv4Device`: the device must come
/// with exactly one committed, locked decoder, CXL Reset, and its memory in a BAR; else it is refused). As for the
/// emulated device, a `ServedDeviceMonitor` sits between the server and the device, and `options.controlPath` opens
/// the control socket on it (status, decode, save, check, metrics; read-only, bounded clients).
public final class DeviceServeSession: @unchecked Sendable {
    public let function: VFIOKernelPCIFunction
    /// The vfio-cxl device under v2 (`--uapi v2`, the default); nil under v4.
    public let device: VFIOCXLDevice?
    /// The vfio-cxl device under v4 (`--uapi v4`); nil under v2.
    public let v4Device: VFIOCXLv4Device?
    /// Between the server and the device: notes the client and its resets for the control socket.
    public let monitor: ServedDeviceMonitor
    public let server: VFIOUserServer
    public let options: ServeOptions
    public var socketPath: String { options.socketPath }
    /// The control socket, when `options.controlPath` was given; accepting once `init` returns.
    public private(set) var control: ControlServer?
    let logger: Logger

    /// The device memory served as the CXL memory region (region 9), nil when served as plain PCI.
    public let memory: BARDeviceMemory?

    /// The `vfio:` target served (`--device`).
    public let target: String

    /// `serve --device TARGET --socket socketPath` with the v2 contract and no control socket.
    public convenience init(target: String, socketPath: String, memoryBAR: Int? = nil, permissions: VFIOUserSocketPermissions = VFIOUserSocketPermissions(),
                            resolver: TargetResolver = TargetResolver(), logger: Logger = Logger(label: "cxlkit.serve")) throws(CommandError) {
        var options = ServeOptions(profile: Self.profileName, socketPath: socketPath)
        options.socketPermissions = permissions
        try self.init(target: target, options: options, memoryBAR: memoryBAR, resolver: resolver, logger: logger)
    }

    /// What `status` reports as the profile of a real device.
    public static let profileName = "vfio"

    /// Opens `target` (`vfio:BDF`; `resolver`'s vfio scheme, so tests can hand in a fake kernel) and listens on
    /// `options.socketPath` (and `options.controlPath`). `memoryBAR` names the BAR holding the device's memory (DPA 0
    /// at BAR offset 0); nil: the one prefetchable, mappable BAR besides the component registers' that can hold the
    /// DVSEC's memory, if there is exactly one. `options.profile`, `irqIntervalMilliseconds` and `irqVector` drive
    /// the emulator and are not used here.
    public init(target: String, options: ServeOptions, memoryBAR: Int? = nil,
                resolver: TargetResolver = TargetResolver(), logger: Logger = Logger(label: "cxlkit.serve")) throws(CommandError) {
        guard target.hasPrefix("vfio:") else {
            throw CommandError("--device \(target): serve takes a device bound to vfio-pci, as vfio:BDF (e.g. vfio:0000:3b:00.0)")
        }
        guard let scheme = resolver.schemes["vfio"] as? VFIOScheme else { throw CommandError("vfio: scheme not registered") }
        self.target = target
        self.options = options
        function = try scheme.open(String(target.dropFirst(5)), options: resolver.options)
        // The client's Command is virtual; this process's own accesses need the BARs decoded.
        function.keepMemoryEnabled = true
        // The CXL memory region: the device's memory BAR, mapped by the client through the kernel device fd.
        var memory: BARDeviceMemory?, missing: String?
        do throws(VFIOCXLError) {
            let layout = try CXLPassthroughLayout.discover(function)
            memory = try BARDeviceMemory.find(in: function, layout: layout, bar: memoryBAR)
        } catch {
            if let memoryBAR { throw CommandError("\(target): --memory-bar \(memoryBAR): \(error)") }
            if case .notCXL(let reason) = error { missing = reason } else { missing = error.description }
        }
        self.memory = memory
        let served: any VFIODevice
        switch options.uapi {
        case .v2:
            let d = try CXLKit.makeServedDevice(function: function, memory: memory, missingMemoryReason: missing, logger: logger)
            device = d; v4Device = nil; served = d
        case .v4:
            // v4 has no plain-PCI fallback: the kernel's v4 driver refuses to bind such a device.
            guard let memory else {
                throw CommandError("\(target): --uapi v4: \(VFIOCXLError.refused(missing ?? "no device memory"))")
            }
            var o = VFIOCXLv4Options()
            o.logger = logger
            o.faults = options.v4Faults
            let d: VFIOCXLv4Device
            do { d = try VFIOCXLv4Device(function: function, memory: memory, options: o) } catch {
                var hint = ""
                if case .refused(let why) = error, why.hasPrefix("no HDM decoder is committed") || why.contains("without Lock On Commit") {
                    hint = " (commit and lock one first: cxlkit hdm commit \(target) --decoder 0 --base HPA --size SIZE --lock --enable-hdm)"
                }
                throw CommandError("\(target): --uapi v4: \(error)\(hint)")
            }
            device = nil; v4Device = d; served = d
        }
        monitor = ServedDeviceMonitor(served)
        self.logger = logger
        do { server = try VFIOUserServer(device: monitor, socketPath: options.socketPath, logger: logger, permissions: options.socketPermissions) } catch {
            throw CommandError(error.description)
        }
        control = try ControlServer.start(options: options, monitor: monitor, onlyComponentRegisters: true) { [weak self] in self?.status }
    }

    /// What the control socket's `status` reports: `profile` is `vfio`, `device` the function's `vfio:BDF`.
    /// `interrupts_raised` stays 0: a real device's interrupts go from the kernel straight to the client's eventfds.
    public var status: ServeStatus {
        ServeStatus(profile: Self.profileName, device: function.address, clientAttached: monitor.clientAttached,
                    clientsServed: server.clientsServed, resets: monitor.resets, interruptsRaised: 0, memoryGated: monitor.memoryGated)
    }

    /// Serves clients until `stop()`; removes the socket file (and the control socket's) on return.
    public func run() throws(CommandError) {
        let info = function.device.info
        let cxl: String
        if let device { cxl = device.layout != nil ? "yes" : "no: \(device.cxlDisabledReason ?? "")" } else { cxl = "yes (v4)" }
        logger.info("serving", metadata: ["device": "\(function.address)", "socket": "\(socketPath)", "uapi": "\(options.uapi.rawValue)",
                                          "vfio": "\(function.device.access)", "regions": "\(info.numRegions)", "irqs": "\(info.numIRQs)",
                                          "cxl": "\(cxl)",
                                          "memory": "\(memory.map { "BAR\($0.bar), 0x\(String($0.memorySize, radix: 16)) bytes" } ?? "none")",
                                          "resets": "\(function.resetMethods.map(\.rawValue).joined(separator: ","))",
                                          "control": "\(options.controlPath ?? "none")"])
        defer { control?.stop() }
        do { try server.run() } catch { throw CommandError("\(socketPath): \(error)") }
        logger.info("stopped", metadata: ["clients_served": "\(server.clientsServed)"])
    }

    /// Stops `run()` (from any thread).
    public func stop() {
        server.stop()
        control?.stop()
    }
}
