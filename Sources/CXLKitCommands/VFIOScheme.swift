import PCI
import VFIO

/// `vfio:BDF`: a function the kernel's vfio-pci owns, reached through VFIO as a VMM reaches it (`VFIOKernelPCIFunction`):
/// config space through the config region, BARs through region mmap (pread/pwrite where the kernel traps),
/// `reset --method flr` as VFIO_DEVICE_RESET, `sbr` as VFIO_DEVICE_PCI_HOT_RESET, `cxl` through the DVSEC in the
/// config region. The group (or cdev) stays open as long as the target.
public struct VFIOScheme: TargetScheme {
    let system: any VFIOKernelSystem
    let path: VFIOKernelPath
    let devRoot: String

    /// `system` is the kernel (tests pass a fake); `devRoot` where `/dev` is.
    public init(system: any VFIOKernelSystem = LinuxVFIOSystem(), path: VFIOKernelPath = .auto, devRoot: String = "/dev") {
        self.system = system; self.path = path; self.devRoot = devRoot
    }
    public var scheme: String { "vfio" }
    public var summary: String { "a PCI function bound to vfio-pci, through /dev/vfio (group or cdev)" }

    /// Opens `rest` (a PCI address) as a `VFIOKernelPCIFunction`; failures are one line naming what to fix.
    public func open(_ rest: String, options: TargetOptions) throws(CommandError) -> VFIOKernelPCIFunction {
        try opening(rest, options) { (o) throws(VFIOKernelError) in try VFIOKernelPCIFunction(address: rest, options: o, system: system) }
    }

    /// Opens `rest` as a bare `VFIOKernelDevice` (no PCI adapter: `conform` speaks to the device as a VMM does).
    public func openDevice(_ rest: String, options: TargetOptions) throws(CommandError) -> VFIOKernelDevice {
        try opening(rest, options) { (o) throws(VFIOKernelError) in try VFIOKernelDevice.open(rest, options: o, system: system) }
    }

    /// Refuses an empty `rest`, opens it with this scheme's kernel options, and makes a failure one line naming the
    /// function once (the kernel backend's messages may already start with its address).
    private func opening<T>(_ rest: String, _ options: TargetOptions,
                            _ open: (VFIOKernelOpenOptions) throws(VFIOKernelError) -> T) throws(CommandError) -> T {
        guard !rest.isEmpty else { throw CommandError("vfio: needs a PCI address bound to vfio-pci (vfio:0000:3b:00.0)") }
        do {
            return try open(VFIOKernelOpenOptions(sysfsRoot: options.sysfsRoot, devRoot: devRoot, path: path))
        } catch {
            let text = error.description
            if let a = PCIAddress(rest), text.hasPrefix(a.description + ":") { throw CommandError("vfio:" + text) }
            throw CommandError("vfio:\(rest): \(text)")
        }
    }

    public func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget] {
        [try ResolvedTarget(function: try open(rest, options: options))]
    }
}
