import CXL
import CXLEmulator
import Foundation
import PCI
import VFIO
import VFIOUser

// Figure 3: CXLStateEngine save() + restore() of the DVSEC and N committed HDM
// decoders (N = 1, 8, 32), in-process against the emulated device and over vfio-user
// against VFIOCXLDevice's shadows. A counting PCIFunction wrapper records every
// register access; the baseline replays exactly that access sequence on the same
// function with no engine logic, so the ratio is the engine's own overhead.

/// Counts and records the accesses made through it.
final class CountingFunction: PCIFunction, @unchecked Sendable {
    enum Access {
        case configRead(Int, Int), configWrite(Int, Int, UInt32), barRead(Int, UInt64, Int), barWrite(Int, UInt64, Int, UInt64)
        case configReadBytes(Int, Int), barReadBytes(Int, UInt64, Int), barWritePosted(Int, UInt64, Int, UInt64)
        case barWritePostedBatch(Int, [PostedBARWrite])
    }
    let inner: any PCIFunction
    var recording = false
    private(set) var log: [Access] = []
    private(set) var configReads = 0, configWrites = 0, barReads = 0, barWrites = 0
    /// Calls made on the wrapped function: one message each over vfio-user (a batch of posted writes is one).
    private(set) var calls = 0
    var total: Int { configReads + configWrites + barReads + barWrites }

    init(_ inner: any PCIFunction) { self.inner = inner }
    func resetCounts() { configReads = 0; configWrites = 0; barReads = 0; barWrites = 0; calls = 0; log = [] }

    var address: String { inner.address }
    var configSize: Int { inner.configSize }
    var bars: [BARDescription] { inner.bars }
    var resetMethods: [PCIResetMethod] { inner.resetMethods }
    func reset(_ method: PCIResetMethod) throws(PCIError) { try inner.reset(method) }

    /// Counts one call on the wrapped function, `by` accesses of one kind, and logs the access while recording.
    private func record(_ counter: ReferenceWritableKeyPath<CountingFunction, Int>, by n: Int = 1, _ access: @autoclosure () -> Access) {
        self[keyPath: counter] += n
        calls += 1
        if recording { log.append(access()) }
    }

    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        record(\.configReads, .configRead(offset, width))
        return try inner.configRead(offset, width: width)
    }
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        record(\.configWrites, .configWrite(offset, width, value))
        try inner.configWrite(offset, width: width, value: value)
    }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        record(\.barReads, .barRead(bar, offset, width))
        return try inner.barRead(bar, offset: offset, width: width)
    }
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        record(\.barWrites, .barWrite(bar, offset, width, value))
        try inner.barWrite(bar, offset: offset, width: width, value: value)
    }

    // A bulk read or a posted write is one access (one pread, one REGION_READ, one message).
    func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        record(\.configReads, .configReadBytes(offset, count))
        return try inner.configReadBytes(offset, count: count)
    }
    func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        record(\.barReads, .barReadBytes(bar, offset, count))
        return try inner.barReadBytes(bar, offset: offset, count: count)
    }
    func barWritePosted(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        record(\.barWrites, .barWritePosted(bar, offset, width, value))
        try inner.barWritePosted(bar, offset: offset, width: width, value: value)
    }

    /// A batch of posted writes counts one BAR write per register (it is one message over vfio-user).
    func barWritePosted(_ bar: Int, _ writes: [PostedBARWrite]) throws(PCIError) {
        record(\.barWrites, by: writes.count, .barWritePostedBatch(bar, writes))
        try inner.barWritePosted(bar, writes)
    }

    /// Performs `log` again on the wrapped function, nothing else.
    func replay(_ log: [Access]) throws(PCIError) {
        var sink: UInt64 = 0
        for a in log {
            switch a {
            case .configRead(let o, let w): sink &+= UInt64(try inner.configRead(o, width: w))
            case .configWrite(let o, let w, let v): try inner.configWrite(o, width: w, value: v)
            case .barRead(let b, let o, let w): sink &+= try inner.barRead(b, offset: o, width: w)
            case .barWrite(let b, let o, let w, let v): try inner.barWrite(b, offset: o, width: w, value: v)
            case .configReadBytes(let o, let n): sink &+= UInt64(try inner.configReadBytes(o, count: n).count)
            case .barReadBytes(let b, let o, let n): sink &+= UInt64(try inner.barReadBytes(b, offset: o, count: n).count)
            case .barWritePosted(let b, let o, let w, let v): try inner.barWritePosted(b, offset: o, width: w, value: v)
            case .barWritePostedBatch(let b, let ws): try inner.barWritePosted(b, ws)
            }
        }
        blackHole(sink)
    }
}

/// Forwards every access to `inner` but a batch of posted writes, which goes out one
/// posted write at a time (the protocol's default): the engine as it was before it
/// batched decoder writes, for a same-run comparison.
final class UnbatchedFunction: PCIFunction, @unchecked Sendable {
    let inner: any PCIFunction
    init(_ inner: any PCIFunction) { self.inner = inner }
    var address: String { inner.address }
    var configSize: Int { inner.configSize }
    var bars: [BARDescription] { inner.bars }
    var resetMethods: [PCIResetMethod] { inner.resetMethods }
    func reset(_ method: PCIResetMethod) throws(PCIError) { try inner.reset(method) }
    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 { try inner.configRead(offset, width: width) }
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) { try inner.configWrite(offset, width: width, value: value) }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 { try inner.barRead(bar, offset: offset, width: width) }
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) { try inner.barWrite(bar, offset: offset, width: width, value: value) }
    func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] { try inner.configReadBytes(offset, count: count) }
    func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8] { try inner.barReadBytes(bar, offset: offset, count: count) }
    func barWritePosted(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        try inner.barWritePosted(bar, offset: offset, width: width, value: value)
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ s: String) { description = s }
}

/// Programs and commits `count` 256 MiB decoders (ascending bases, Linux order), with
/// Memory Space Enable set; returns how many report Committed.
@discardableResult
func commitDecoders(_ f: any PCIFunction, count: Int) throws -> Int {
    try f.configWrite(0x04, width: 2, value: 0x6)
    guard let hdm = try CXLStateEngine(function: f).save().layout.hdm else { throw BenchError("no HDM decoder capability found") }
    let granule: UInt64 = 256 << 20
    let commit = HDMDecoderCapability.Control.commit.mask
    let committed = HDMDecoderCapability.Control.committed.mask
    var ok = 0
    for n in 0..<count {
        let regs = HDMDecoderRegisters(n)
        func w(_ r: RegisterLayout, _ v: UInt64) throws { try f.barWrite(hdm.bar, offset: hdm.hdmOffset + UInt64(r.offset), width: 4, value: v) }
        let base = SplitAddress(0x40_0000_0000 + UInt64(n) * granule), size = SplitAddress(granule)
        try w(regs.baseHigh, UInt64(base.high)); try w(regs.baseLow, UInt64(base.low))
        try w(regs.sizeHigh, UInt64(size.high)); try w(regs.sizeLow, UInt64(size.low))
        try w(regs.control, commit)
        let ctl = try f.barRead(hdm.bar, offset: hdm.hdmOffset + UInt64(regs.control.offset), width: 4)
        if ctl & committed != 0 { ok += 1 }
    }
    return ok
}

/// Times save + restore on `function` and the bare replay of the same accesses;
/// returns medians and the access counts of one save + restore. The counting wrapper
/// records one pass (counts, replay log) and stays out of the timed passes, as it stays
/// out of the replay: both sides of the ratio are the bare function.
private func measureSaveRestore(_ function: any PCIFunction, iterations: Int) throws
    -> (value: Double, save: Double, restore: Double, replay: Double, unbatched: Double, counts: CountingFunction, restoreOK: Bool) {
    let counting = CountingFunction(function)
    let recordingEngine = CXLStateEngine(function: counting)
    let engine = CXLStateEngine(function: function)
    let unbatchedEngine = CXLStateEngine(function: UnbatchedFunction(function))
    // One recorded pass for counts and the replay log.
    counting.recording = true
    let snap = try recordingEngine.save()
    let report = try recordingEngine.restore(snap)
    counting.recording = false
    let log = counting.log
    var saves: [Double] = [], restores: [Double] = [], totals: [Double] = [], replays: [Double] = [], unbatched: [Double] = []
    for _ in 0..<iterations {
        // The same save + restore with one message per posted write, interleaved.
        let u0 = nowNanoseconds()
        let us = try unbatchedEngine.save()
        blackHole(try unbatchedEngine.restore(us))
        unbatched.append(Double(nowNanoseconds() - u0))
        let t0 = nowNanoseconds()
        let s = try engine.save()
        let t1 = nowNanoseconds()
        let r = try engine.restore(s)
        let t2 = nowNanoseconds()
        blackHole(r)
        try counting.replay(log)
        let t3 = nowNanoseconds()
        saves.append(Double(t1 - t0)); restores.append(Double(t2 - t1)); totals.append(Double(t2 - t0)); replays.append(Double(t3 - t2))
    }
    func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }
    return (median(totals), median(saves), median(restores), median(replays), median(unbatched), counting, report.succeeded)
}

/// The save + restore figure of `fn` once `n` decoders are committed: its time against the replay of its accesses,
/// and the accesses of one save and one restore, by kind.
func saveRestoreFigure(_ fn: any PCIFunction, decoders n: Int, placement: String, iterations: Int) throws -> Figure {
    let committed = try commitDecoders(fn, count: n)
    let r = try measureSaveRestore(fn, iterations: iterations)
    let c = r.counts
    c.resetCounts()
    let snap = try CXLStateEngine(function: c).save(); let saveAccesses = c.total
    _ = try CXLStateEngine(function: c).restore(snap)
    return Figure(group: "state", name: "save + restore, DVSEC + \(n) decoders, \(placement)", unit: "ns", value: r.value,
                  baselineName: "replay of its \(c.total) accesses", baseline: r.replay,
                  extra: ["save_ns": r.save, "restore_ns": r.restore, "unbatched_ns": r.unbatched, "accesses": Double(c.total),
                          "save_accesses": Double(saveAccesses), "config_reads": Double(c.configReads),
                          "config_writes": Double(c.configWrites), "bar_reads": Double(c.barReads),
                          "bar_writes": Double(c.barWrites), "calls": Double(c.calls), "decoders_committed": Double(committed),
                          "restore_succeeded": r.restoreOK ? 1 : 0])
}

func stateFigures(_ ctx: BenchContext) throws -> [Figure] {
    var figures: [Figure] = []
    // CXLBENCH_STATE_DECODERS=32 measures only those decoder counts (for profiling one size).
    let sizes = ProcessInfo.processInfo.environment["CXLBENCH_STATE_DECODERS"]
        .map { $0.split(separator: ",").compactMap { Int($0) }.filter { (1...32).contains($0) } } ?? [1, 8, 32]
    for n in sizes {
        // In-process: the emulated device itself.
        ctx.log("save/restore in-process \(n) decoders")
        var profile = try DeviceProfile.named("type2")
        profile.decoderCount = n
        profile.memorySize = max(1 << 30, UInt64(n) * (256 << 20))
        let dev = try EmulatedCXLDevice(profile: profile)
        // CXLBENCH_STATE_PASSES=K: only K bare save + restore passes, no figure (for
        // instruction counts: callgrind of K passes minus callgrind of 0).
        if let k = ProcessInfo.processInfo.environment["CXLBENCH_STATE_PASSES"].flatMap({ Int($0) }) {
            try commitDecoders(dev, count: n)
            let engine = CXLStateEngine(function: dev)
            for _ in 0..<k { blackHole(try engine.restore(try engine.save())) }
            continue
        }
        var figure = try saveRestoreFigure(dev, decoders: n, placement: "in-process", iterations: ctx.iterations(2000))
        if n == 32 { (figure.goal, figure.met) = ("<= 50 us", figure.value <= 50_000) }
        figures.append(figure)
    }
    // Over vfio-user, client and server on CPU 0: every access is a round trip.
    // (CXLBENCH_STATE_LOCAL=1 skips this part, for profiling the in-process one.)
    if ProcessInfo.processInfo.environment["CXLBENCH_STATE_LOCAL"] == "1" { return figures }
    try withPlacement(pinned: true) {
        for n in sizes {
            ctx.log("save/restore over vfio-user \(n) decoders")
            let child = try VFIOUserChild(decoders: n)
            defer { child.stop() }
            let f = try VFIOUserPCIFunction(client: child.client, address: "vfio-user:cxlbench")
            var figure = try saveRestoreFigure(f, decoders: n, placement: "vfio-user CPU 0", iterations: ctx.quick ? 5 : 40)
            if n == 32 { (figure.goal, figure.met) = ("<= 2 ms", figure.value <= 2_000_000) }
            figures.append(figure)
        }
    }
    return figures
}
