import CSwiftCXLSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The device's lock (every access is serialised through it): `csystem_rlock`, one compare-and-swap to take and
/// one exchange to release when nobody waits (a pthread mutex cost about three times that per config read).
final class DeviceLock: @unchecked Sendable {
    private let m: UnsafeMutablePointer<csystem_rlock>

    init() {
        m = .allocate(capacity: 1)
        csystem_rlock_init(m)
    }

    deinit { m.deallocate() }

    @inline(__always)
    func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        csystem_rlock_lock(m)
        defer { csystem_rlock_unlock(m) }
        return try body()
    }
}

/// Time as the device sees it, in nanoseconds from an arbitrary origin.
///
/// Every delay the device models (commit latency, CXL Reset completion, Memory_Info_Valid,
/// Memory_Active) is a deadline on this clock, evaluated when software next touches the
/// device, so tests drive time with `ManualClock` and never sleep.
public protocol EmulatorClock: Sendable {
    func now() -> UInt64
}

/// CLOCK_MONOTONIC.
public struct MonotonicClock: EmulatorClock {
    public init() {}
    public func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// A clock that moves only when told to: deterministic tests of every delay.
public final class ManualClock: EmulatorClock, @unchecked Sendable {
    private let lock = DeviceLock()
    private var current: UInt64

    public init(start: UInt64 = 0) { current = start }

    public func now() -> UInt64 { lock.withLock { current } }

    public func advance(nanoseconds: UInt64) { lock.withLock { current += nanoseconds } }
    public func advance(milliseconds: Double) { advance(nanoseconds: UInt64(milliseconds * 1_000_000)) }
}

func hex64(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
