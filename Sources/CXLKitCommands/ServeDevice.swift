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
    public static func makeServedDevice(function: any PCIFunction, memory: (any CXLDeviceMemory)?,
                                        logger: Logger = Logger(label: "vfio-cxl")) throws(CommandError) -> VFIOCXLDevice {
        var options = VFIOCXLOptions()
        options.logger = logger
        do { return try VFIOCXLDevice(function: function, memory: memory, options: options) } catch { throw CommandError("\(function.address): \(error)") }
    }
}

/// `cxlkit serve --device vfio:BDF`: a real function the kernel's vfio-pci owns, served over vfio-user through
/// vfio-cxl (the VFIO library's kernel backend underneath): a user-space vfio-cxl over real hardware. BAR mmaps are
/// the kernel device fd's (sparse areas around what vfio-cxl and the kernel trap), interrupts are the client's
/// eventfds handed to the kernel with VFIO_DEVICE_SET_IRQS, and each client DMA_MAP is mapped into the device's
/// IOMMU domain at the client's IOVA (unmapped on DMA_UNMAP and on disconnect).
public final class DeviceServeSession: @unchecked Sendable {
    public let function: VFIOKernelPCIFunction
    public let device: VFIOCXLDevice
    public let server: VFIOUserServer
    public let socketPath: String
    let logger: Logger

    /// Opens `target` (`vfio:BDF`; `resolver`'s vfio scheme, so tests can hand in a fake kernel) and listens.
    public init(target: String, socketPath: String, permissions: VFIOUserSocketPermissions = VFIOUserSocketPermissions(),
                resolver: TargetResolver = TargetResolver(), logger: Logger = Logger(label: "cxlkit.serve")) throws(CommandError) {
        guard target.hasPrefix("vfio:") else {
            throw CommandError("--device \(target): serve takes a device bound to vfio-pci, as vfio:BDF (e.g. vfio:0000:3b:00.0)")
        }
        guard let scheme = resolver.schemes["vfio"] as? VFIOScheme else { throw CommandError("vfio: scheme not registered") }
        function = try scheme.open(String(target.dropFirst(5)), options: resolver.options)
        // The client's Command is virtual; this process's own accesses need the BARs decoded.
        function.keepMemoryEnabled = true
        device = try CXLKit.makeServedDevice(function: function, memory: nil, logger: logger)
        self.socketPath = socketPath
        self.logger = logger
        do { server = try VFIOUserServer(device: device, socketPath: socketPath, logger: logger, permissions: permissions) } catch {
            throw CommandError(error.description)
        }
    }

    /// Serves clients until `stop()`; removes the socket file on return.
    public func run() throws(CommandError) {
        let info = function.device.info
        logger.info("serving", metadata: ["device": "\(function.address)", "socket": "\(socketPath)",
                                          "vfio": "\(function.device.access)", "regions": "\(info.numRegions)", "irqs": "\(info.numIRQs)",
                                          "cxl": "\(device.layout != nil ? "yes" : "no: \(device.cxlDisabledReason ?? "")")",
                                          "resets": "\(function.resetMethods.map(\.rawValue).joined(separator: ","))"])
        do { try server.run() } catch { throw CommandError("\(socketPath): \(error)") }
        logger.info("stopped", metadata: ["clients_served": "\(server.clientsServed)"])
    }

    public func stop() { server.stop() }
}
