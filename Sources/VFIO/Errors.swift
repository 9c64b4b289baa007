import PCI
/// A typed VFIO error. Every case maps to an errno so transports (vfio-user error replies) can report it.
public enum VFIOError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A bad index, range, flag combination or argument (EINVAL).
    case invalidArgument(String)
    /// The operation is not supported by this device (ENOTSUP).
    case notSupported(String)
    /// A mapping or resource already exists (EEXIST).
    case exists(String)
    /// The resource (region, DMA mapping) does not exist (ENOENT).
    case notFound(String)
    /// The device or its peer failed an I/O (EIO) or a system call returned `errno`.
    case system(errno: Int32, String)
    /// A DMA address is not backed by any mapping (EFAULT).
    case badAddress(UInt64, Int)

    public var errno: Int32 {
        switch self {
        case .invalidArgument: return VFIOErrno.EINVAL
        case .notSupported: return VFIOErrno.ENOTSUP
        case .exists: return VFIOErrno.EEXIST
        case .notFound: return VFIOErrno.ENOENT
        case .system(let e, _): return e
        case .badAddress: return VFIOErrno.EFAULT
        }
    }

    public var description: String {
        switch self {
        case .invalidArgument(let s): return "invalid argument: \(s)"
        case .notSupported(let s): return "not supported: \(s)"
        case .exists(let s): return "exists: \(s)"
        case .notFound(let s): return "not found: \(s)"
        case .system(let e, let s): return "\(s): \(systemErrorText(e))"
        case .badAddress(let a, let n): return "no DMA mapping covers 0x\(String(a, radix: 16))+\(n)"
        }
    }
}
