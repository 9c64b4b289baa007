import Foundation
import Testing
@testable import VFIO

/// Counts under the lock where the counting itself is not atomic (a read, a pause, a write): a lost update shows as
/// a short total.
private final class Counter: @unchecked Sendable {
    let lock = VFIORecursiveLock()
    var value = 0
    func bump() {
        lock.lock()
        let v = value
        if v % 64 == 0 { sched_yield() }   // hand the CPU over while holding the lock: the others must wait (futex)
        value = v + 1
        lock.unlock()
    }
}

@Suite struct RecursiveLockTests {
    @Test func theHolderTakesItAgainAndOthersWaitUntilTheOutermostUnlock() {
        let lock = VFIORecursiveLock()
        lock.lock()
        lock.lock()
        let acquired = DispatchSemaphore(value: 0), trying = DispatchSemaphore(value: 0)
        let other = Thread {
            trying.signal()
            lock.lock()
            acquired.signal()
            lock.unlock()
        }
        other.start()
        trying.wait()
        // Still held after one unlock of two: the other thread must not get it.
        lock.unlock()
        #expect(acquired.wait(timeout: .now() + 0.2) == .timedOut)
        lock.unlock()
        #expect(acquired.wait(timeout: .now() + 10) == .success)
    }

    @Test func fourThreadsCountingUnderTheLockLoseNoUpdate() {
        let counter = Counter()
        let threads = 4, perThread = 20_000
        let group = DispatchGroup()
        for _ in 0..<threads {
            group.enter()
            Thread {
                for _ in 0..<perThread { counter.bump() }
                group.leave()
            }.start()
        }
        #expect(group.wait(timeout: .now() + 120) == .success)
        #expect(counter.value == threads * perThread)
    }

    @Test func withLockNestsAndReturnsTheBodysValue() throws {
        let lock = VFIORecursiveLock()
        let v = lock.withLock { () -> Int in lock.withLock { () -> Int in 42 } }
        #expect(v == 42)
        // Released: another thread takes it at once.
        let done = DispatchSemaphore(value: 0)
        Thread { lock.withLock { () -> Void in done.signal() } }.start()
        #expect(done.wait(timeout: .now() + 10) == .success)
    }
}
