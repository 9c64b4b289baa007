import CSwiftCXLSystem
#if canImport(Glibc)
import Glibc
#endif

/// An owned eventfd (eventfd(2)); closed when the last reference goes away. Used for interrupt delivery.
public final class VFIOEventFD: @unchecked Sendable, Equatable {
    public let fd: Int32
    /// Takes ownership of `fd`.
    public init(owning fd: Int32) { self.fd = fd }
    /// Creates a new eventfd (close-on-exec).
    public static func create(nonBlocking: Bool = false) throws(VFIOError) -> VFIOEventFD {
        let flags = csystem_efd_cloexec() | (nonBlocking ? csystem_efd_nonblock() : 0)
        let fd = csystem_eventfd(0, flags)
        guard fd >= 0 else { throw .system(errno: errno, "eventfd") }
        return VFIOEventFD(owning: fd)
    }
    deinit { close(fd) }

    /// Adds 1 to the counter (signals the interrupt).
    public func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { Glibc.write(fd, $0.baseAddress, 8) }
    }

    /// Waits up to `timeoutMilliseconds` for the counter to become non-zero and reads (resets) it.
    /// Returns nil on timeout.
    public func wait(timeoutMilliseconds: Int32) -> UInt64? {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let r = poll(&p, 1, timeoutMilliseconds)
        guard r > 0 else { return nil }
        var v: UInt64 = 0
        let n = withUnsafeMutableBytes(of: &v) { Glibc.read(fd, $0.baseAddress, 8) }
        return n == 8 ? v : nil
    }

    public static func == (a: VFIOEventFD, b: VFIOEventFD) -> Bool { a === b }
}
