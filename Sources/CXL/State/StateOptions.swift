import Foundation

// Time, made injectable: every wait the save/restore engine and the CXL Reset flow
// perform goes through a `CXLClock`, so tests run on virtual time (fast and
// deterministic) while the defaults follow the spec and the kernel.

/// A monotonic clock the engine polls and sleeps on.
public protocol CXLClock: Sendable {
    /// Monotonic time since an arbitrary origin.
    func now() -> Duration
    /// Block the caller for `duration`.
    func sleep(for duration: Duration)
}

/// Wall-clock time: `ContinuousClock` and a real sleep.
public struct SystemCXLClock: CXLClock {
    private let origin = ContinuousClock.now
    public init() {}
    public func now() -> Duration { ContinuousClock.now - origin }
    public func sleep(for duration: Duration) {
        guard duration > .zero else { return }
        let (s, attos) = duration.components
        var request = timespec(tv_sec: Int(s), tv_nsec: Int(attos / 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}

/// Virtual time: `sleep` advances `now` instantly. `onSleep` lets a test (or an
/// emulated device with its own notion of time) see every wait the engine makes.
public final class VirtualCXLClock: CXLClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current: Duration = .zero
    private var sleeps: [Duration] = []
    private let onSleep: (@Sendable (Duration) -> Void)?

    public init(onSleep: (@Sendable (Duration) -> Void)? = nil) { self.onSleep = onSleep }

    public func now() -> Duration { lock.withLock { current } }

    public func sleep(for duration: Duration) {
        lock.withLock {
            current += duration
            sleeps.append(duration)
        }
        onSleep?(duration)
    }

    /// Every sleep so far, in order.
    public var recordedSleeps: [Duration] { lock.withLock { sleeps } }
    /// Sum of all sleeps: virtual time elapsed.
    public var elapsed: Duration { now() }
}

/// Budgets and intervals of the save/restore engine and the reset flow. The defaults
/// are the spec's and the kernel's numbers; tests shrink nothing, they inject a
/// virtual clock instead.
public struct CXLStateOptions: Sendable {
    /// How long a decoder may take to report Committed or Error Not Committed after
    /// Commit is written: CXL 3.1 §8.2.4.20.12 allows 10 ms (Linux waits 20 ms).
    public var commitTimeout: Duration = .milliseconds(10)
    /// Delay between two reads of Decoder n Control while waiting for Committed.
    public var commitPollInterval: Duration = .milliseconds(1)
    /// CXL Reset: no config access for this long after Initiate CXL Reset
    /// (CXL 3.1 §9.7; accesses in the first 100 ms are undefined).
    public var resetQuietTime: Duration = .milliseconds(100)
    /// CXL Reset: Status2 poll interval after the quiet time (Linux cxl_reset: 20 ms).
    public var resetPollInterval: Duration = .milliseconds(20)
    /// CXL Reset: upper bound of the wait; `nil` takes DVSEC CXL Capability
    /// "CXL Reset Timeout" (10 ms ... 100 s), never less than the quiet time.
    public var resetTimeout: Duration? = nil
    /// Cache Write Back and Invalidation: Status2 Cache Invalid poll interval and
    /// budget (Linux: 100 µs steps up to 100 ms).
    public var cacheInvalidPollInterval: Duration = .microseconds(100)
    public var cacheInvalidTimeout: Duration = .milliseconds(100)
    /// The clock every wait goes through.
    public var clock: any CXLClock
    /// Told what a long wait is waiting for (a CXL Reset's Reset Complete, a decoder's Committed), each
    /// time it polls; nil says nothing. Defaults to `CXLProgress.current`, which the CLI sets.
    public var progress: CXLProgress?

    public init(clock: any CXLClock = SystemCXLClock(), progress: CXLProgress? = CXLProgress.current) {
        self.clock = clock
        self.progress = progress
    }
}

/// Where a long operation says what it waits for: the CLI shows it as a progress line on a terminal's
/// stderr (nothing when stderr is not a terminal, or with `--quiet`); a library user may log it.
public struct CXLProgress: Sendable {
    public let report: @Sendable (_ message: String) -> Void

    public init(_ report: @escaping @Sendable (_ message: String) -> Void) { self.report = report }

    /// The reporter operations started in this task use by default.
    @TaskLocal public static var current: CXLProgress?

    /// "waiting for Reset Complete: 120 ms of 10 s".
    public func waiting(_ what: String, elapsed: Duration, budget: Duration) {
        report("\(what): \(elapsed.roundedToMilliseconds.humanReadable) of \(budget.humanReadable)")
    }
}

extension Duration {
    /// Whole milliseconds (progress lines need no microseconds).
    public var roundedToMilliseconds: Duration {
        let (s, a) = components
        return .seconds(s) + .milliseconds(a / 1_000_000_000_000_000)
    }

    /// "100 ms", "10 ms", "1 s", "250 us": the spec's units, for reports.
    public var humanReadable: String {
        let (s, a) = components
        let us = Int64(s) * 1_000_000 + a / 1_000_000_000_000
        if us % 1_000_000 == 0 { return "\(us / 1_000_000) s" }
        if us % 1_000 == 0 { return "\(us / 1_000) ms" }
        return "\(us) us"
    }
}
