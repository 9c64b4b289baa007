import CSwiftCXLSystem

/// A recursive lock that costs about twenty instructions to take and release uncontended (one compare-and-swap, one
/// exchange; waiters sleep on a futex), for state read on every vfio-user message: `VFIOPCIDevice`'s config
/// virtualisation, the client's request path. Foundation's `NSRecursiveLock` cost about a hundred per pair there.
/// The thread that holds it may take it again; each `lock()` needs its `unlock()` on the same thread.
public final class VFIORecursiveLock: @unchecked Sendable {
    @usableFromInline let state: UnsafeMutablePointer<csystem_rlock>

    public init() {
        state = .allocate(capacity: 1)
        csystem_rlock_init(state)
    }

    deinit { state.deallocate() }

    @inlinable @inline(__always)
    public func lock() { csystem_rlock_lock(state) }

    @inlinable @inline(__always)
    public func unlock() { csystem_rlock_unlock(state) }

    @inlinable @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
