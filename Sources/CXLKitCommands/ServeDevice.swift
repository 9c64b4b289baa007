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
public final class DeviceServeSession: @unchecked Sendable {
    public let function: VFIOKernelPCIFunction
    public let device: VFIOCXLDevice
    public let server: VFIOUserServer
    public let socketPath: String
    let logger: Logger

    /// The device memory served as the CXL memory region (region 9), nil when served as plain PCI.
    public let memory: BARDeviceMemory?

    /// Opens `target` (`vfio:BDF`; `resolver`'s vfio scheme, so tests can hand in a fake kernel) and listens.
    /// `memoryBAR` names the BAR holding the device's memory (DPA 0 at BAR offset 0); nil: the one prefetchable,
    /// mappable BAR besides the component registers' that can hold the DVSEC's memory, if there is exactly one.
    public init(target: String, socketPath: String, memoryBAR: Int? = nil, permissions: VFIOUserSocketPermissions = VFIOUserSocketPermissions(),
                resolver: TargetResolver = TargetResolver(), logger: Logger = Logger(label: "cxlkit.serve")) throws(CommandError) {
        guard target.hasPrefix("vfio:") else {
            throw CommandError("--device \(target): serve takes a device bound to vfio-pci, as vfio:BDF (e.g. vfio:0000:3b:00.0)")
        }
        guard let scheme = resolver.schemes["vfio"] as? VFIOScheme else { throw CommandError("vfio: scheme not registered") }
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
        device = try CXLKit.makeServedDevice(function: function, memory: memory, missingMemoryReason: missing, logger: logger)
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
                                          "memory": "\(memory.map { "BAR\($0.bar), 0x\(String($0.memorySize, radix: 16)) bytes" } ?? "none")",
                                          "resets": "\(function.resetMethods.map(\.rawValue).joined(separator: ","))"])
        do { try server.run() } catch { throw CommandError("\(socketPath): \(error)") }
        logger.info("stopped", metadata: ["clients_served": "\(server.clientsServed)"])
    }

    public func stop() { server.stop() }
}
