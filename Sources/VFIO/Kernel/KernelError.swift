/// Why the kernel VFIO backend failed, each printable as one line that says what to do.
public enum VFIOKernelError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not a PCI address.
    case badAddress(String)
    /// No such function under sysfs.
    case noSuchDevice(address: String, sysfs: String)
    /// The function is not bound to vfio-pci (driver nil: no driver at all).
    case notBound(address: String, driver: String?)
    /// The function has no IOMMU group (no IOMMU, or the IOMMU is off).
    case noIOMMUGroup(address: String)
    /// `/dev/vfio` or one of its nodes does not exist.
    case vfioMissing(path: String)
    /// The caller may not open `path` (EACCES/EPERM).
    case permission(path: String, errno: Int32)
    /// Another process holds the group or device (EBUSY).
    case busy(path: String)
    /// The group holds functions not bound to vfio-pci (or pci-stub), so the kernel refuses it.
    case groupNotViable(group: String, others: [String])
    /// The kernel lacks something the backend needs (API version, TYPE1 IOMMU, a cdev).
    case unsupported(String)
    /// An ioctl failed.
    case ioctl(name: String, errno: Int32)
    /// Another system call failed.
    case system(String, errno: Int32)
    /// An argument or a kernel reply the backend refuses (bad region, capability chain, range).
    case invalid(String)

    public var errno: Int32 {
        switch self {
        case .badAddress, .invalid: return VFIOErrno.EINVAL
        case .noSuchDevice, .vfioMissing, .noIOMMUGroup: return VFIOErrno.ENOENT
        case .notBound: return VFIOErrno.ENODEV
        case .permission(_, let e): return e
        case .busy: return VFIOErrno.EBUSY
        case .groupNotViable: return VFIOErrno.EPERM
        case .unsupported: return VFIOErrno.ENOTSUP
        case .ioctl(_, let e), .system(_, let e): return e
        }
    }

    /// The same failure as a `VFIOError` (for the `VFIODevice` surface).
    public var vfioError: VFIOError {
        switch self {
        case .badAddress, .invalid: return .invalidArgument(description)
        case .unsupported: return .notSupported(description)
        default: return .system(errno: errno, description)
        }
    }

    private static func text(_ e: Int32) -> String { VFIOSystemErrno(e).text }

    public var description: String {
        switch self {
        case .badAddress(let s): return "\(s): not a PCI address (expected DDDD:BB:DD.F or BB:DD.F)"
        case .noSuchDevice(let a, let s): return "\(a): no such PCI function in \(s)"
        case .notBound(let a, let d):
            let now = d.map { "bound to \($0)" } ?? "bound to no driver"
            let unbind = d == nil ? "" : "echo \(a) > /sys/bus/pci/devices/\(a)/driver/unbind; "
            return "\(a): \(now), not vfio-pci (modprobe vfio-pci; \(unbind)echo vfio-pci > /sys/bus/pci/devices/\(a)/driver_override; echo \(a) > /sys/bus/pci/drivers_probe)"
        case .noIOMMUGroup(let a):
            return "\(a): no IOMMU group (no IOMMU, or it is off: boot with intel_iommu=on or amd_iommu=on)"
        case .vfioMissing(let p): return "\(p): no such file (is the vfio-pci module loaded, and is there an IOMMU?)"
        case .permission(let p, let e):
            return "\(p): \(Self.text(e)) (run as root, or give your user the group's device node: chown/udev rule on /dev/vfio)"
        case .busy(let p): return "\(p): busy (another process, e.g. a VMM, has the group or device open)"
        case .groupNotViable(let g, let others):
            let list = others.isEmpty ? "" : ": " + others.joined(separator: ", ")
            return "IOMMU group \(g) is not viable: bind every function in it to vfio-pci (or unbind them)\(list)"
        case .unsupported(let s): return "not supported: \(s)"
        case .ioctl(let n, let e): return "\(n): \(Self.text(e)) (errno \(e))"
        case .system(let s, let e): return "\(s): \(Self.text(e)) (errno \(e))"
        case .invalid(let s): return s
        }
    }
}
