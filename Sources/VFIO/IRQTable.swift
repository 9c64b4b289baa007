import Foundation

/// Interrupt bookkeeping for one device: per IRQ index, the eventfd of each vector, its mask bit and a pending
/// bit (set when triggered while masked, delivered on unmask). Implements `VFIO_DEVICE_SET_IRQS` semantics
/// (linux/vfio.h `struct vfio_irq_set`) so any device can reuse it.
public final class VFIOIRQTable: @unchecked Sendable {
    private struct Index {
        var info: VFIOIRQInfo
        var fds: [VFIOEventFD?]
        var masked: [Bool]
        var pending: [Bool]
    }
    private let lock = NSLock()
    private var indices: [UInt32: Index] = [:]

    public init(_ infos: [VFIOIRQInfo]) {
        for i in infos {
            let n = Int(i.count)
            indices[i.index] = Index(info: i, fds: Array(repeating: nil, count: n), masked: Array(repeating: false, count: n),
                                     pending: Array(repeating: false, count: n))
        }
    }

    public func info(_ index: UInt32) throws(VFIOError) -> VFIOIRQInfo {
        lock.lock(); defer { lock.unlock() }
        guard let i = indices[index] else { throw .invalidArgument("IRQ index \(index)") }
        return i.info
    }

    /// The eventfd currently wired to `vector` of `index`.
    public func eventfd(index: UInt32, vector: Int) -> VFIOEventFD? {
        lock.lock(); defer { lock.unlock() }
        guard let i = indices[index], vector >= 0, vector < i.fds.count else { return nil }
        return i.fds[vector]
    }

    /// Every vector's eventfd of `index` (nil where none is wired); empty for an unknown index.
    public func eventfds(index: UInt32) -> [VFIOEventFD?] {
        lock.lock(); defer { lock.unlock() }
        return indices[index]?.fds ?? []
    }

    /// Whether `vector` of `index` was triggered while masked.
    public func isPending(index: UInt32, vector: Int) -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard let i = indices[index], vector >= 0, vector < i.pending.count else { return false }
        return i.pending[vector]
    }

    /// Whether any vector of `index` has an eventfd.
    public func isEnabled(_ index: UInt32) -> Bool {
        lock.lock(); defer { lock.unlock() }
        return indices[index]?.fds.contains { $0 != nil } ?? false
    }

    /// Signals `vector` of `index` unless masked (then it becomes pending). Returns whether it was delivered.
    @discardableResult
    public func trigger(index: UInt32, vector: Int) -> Bool {
        lock.lock()
        guard var i = indices[index], vector >= 0, vector < i.fds.count else { lock.unlock(); return false }
        if i.masked[vector] {
            i.pending[vector] = true
            indices[index] = i
            lock.unlock()
            return false
        }
        let fd = i.fds[vector]
        lock.unlock()
        fd?.signal()
        return fd != nil
    }

    /// Applies a SET_IRQS request.
    public func apply(_ req: VFIOIRQSet) throws(VFIOError) {
        lock.lock()
        guard var i = indices[req.index] else { lock.unlock(); throw .invalidArgument("IRQ index \(req.index)") }
        let n = UInt64(i.fds.count)
        // count == 0 with DATA_NONE and TRIGGER disables the whole index.
        if req.count == 0 {
            if case .none = req.data, req.action == .trigger {
                i.fds = Array(repeating: nil, count: i.fds.count)
                i.pending = Array(repeating: false, count: i.fds.count)
                indices[req.index] = i
                lock.unlock()
                return
            }
            lock.unlock()
            if case .eventfds(let fds) = req.data, fds.isEmpty { return }
            throw .invalidArgument("SET_IRQS count 0")
        }
        guard UInt64(req.start) + UInt64(req.count) <= n else {
            lock.unlock(); throw .invalidArgument("SET_IRQS vectors \(req.start)+\(req.count) exceed \(n)")
        }
        let range = Int(req.start)..<Int(req.start + req.count)
        var toSignal: [VFIOEventFD] = []
        switch (req.action, req.data) {
        case (.trigger, .eventfds(let fds)):
            guard fds.isEmpty || fds.count == range.count else {
                lock.unlock(); throw .invalidArgument("SET_IRQS \(fds.count) eventfds for \(range.count) vectors")
            }
            for (k, v) in range.enumerated() { i.fds[v] = fds.isEmpty ? nil : fds[k] }
        case (.trigger, .none):
            for v in range where !i.masked[v] { if let f = i.fds[v] { toSignal.append(f) } }
        case (.trigger, .bool(let b)):
            guard b.count == range.count else { lock.unlock(); throw .invalidArgument("SET_IRQS bool count") }
            for (k, v) in range.enumerated() where b[k] && !i.masked[v] { if let f = i.fds[v] { toSignal.append(f) } }
        case (.mask, .none):
            for v in range { i.masked[v] = true }
        case (.mask, .bool(let b)):
            guard b.count == range.count else { lock.unlock(); throw .invalidArgument("SET_IRQS bool count") }
            for (k, v) in range.enumerated() where b[k] { i.masked[v] = true }
        case (.unmask, .none), (.unmask, .bool):
            var sel = Array(repeating: true, count: range.count)
            if case .bool(let b) = req.data {
                guard b.count == range.count else { lock.unlock(); throw .invalidArgument("SET_IRQS bool count") }
                sel = b
            }
            for (k, v) in range.enumerated() where sel[k] {
                i.masked[v] = false
                if i.pending[v] { i.pending[v] = false; if let f = i.fds[v] { toSignal.append(f) } }
            }
        case (.mask, .eventfds), (.unmask, .eventfds):
            lock.unlock(); throw .notSupported("mask/unmask eventfds (irqfd resamplers)")
        }
        indices[req.index] = i
        lock.unlock()
        for f in toSignal { f.signal() }
    }

    /// Drops every eventfd (client disconnect); mask bits are kept.
    public func releaseAll() {
        lock.lock(); defer { lock.unlock() }
        for (k, var i) in indices {
            i.fds = Array(repeating: nil, count: i.fds.count)
            i.pending = Array(repeating: false, count: i.fds.count)
            indices[k] = i
        }
    }
}
