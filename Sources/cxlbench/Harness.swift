// A small benchmark harness of our own.
//
// Why not ordo-one/benchmark: it needs its malloc interposer trait and adds minutes
// to every CI build, and what we publish are ratios against baselines measured in
// the same run, which a few dozen lines do exactly.

#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Monotonic nanoseconds.
@inline(__always)
func nowNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Latency samples in nanoseconds, with the percentiles we report.
struct LatencySamples {
    private(set) var values: [UInt64] = []
    init(capacity: Int) { values.reserveCapacity(capacity) }
    mutating func append(_ ns: UInt64) { values.append(ns) }
    var count: Int { values.count }
    /// This process's context switches per timed call, when measured.
    var contextSwitchesPerCall: Double = .nan

    func percentile(_ p: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = min(sorted.count - 1, max(0, Int((p / 100 * Double(sorted.count)).rounded(.up)) - 1))
        return Double(sorted[rank])
    }

    var mean: Double { values.isEmpty ? .nan : Double(values.reduce(0, +)) / Double(values.count) }
}

/// One published figure: a value, the baseline measured in the same run, and their ratio.
struct Figure: Codable {
    var group: String
    var name: String
    var unit: String
    var value: Double
    var baselineName: String?
    var baseline: Double?
    /// value / baseline.
    var ratio: Double?
    /// The goal, stated as in the issue, and whether this run met it.
    var goal: String?
    var met: Bool?
    var extra: [String: Double] = [:]

    init(group: String, name: String, unit: String, value: Double, baselineName: String? = nil, baseline: Double? = nil,
         goal: String? = nil, met: Bool? = nil, extra: [String: Double] = [:]) {
        self.group = group
        self.name = name
        self.unit = unit
        self.value = value
        self.baselineName = baselineName
        self.baseline = baseline
        self.ratio = baseline.map { value / $0 }
        self.goal = goal
        self.met = met
        self.extra = extra
    }
}

struct BenchContext {
    var quick: Bool
    var verbose: Bool
    /// Scales iteration counts: quick runs do a fraction of the full run.
    func iterations(_ full: Int) -> Int { quick ? max(1, full / 10) : full }
    func log(_ s: String) {
        if verbose { FileHandle.standardError.write(Data((s + "\n").utf8)) }
    }
}

/// Keeps a value alive so the optimizer cannot drop the work that produced it.
@inline(never)
func blackHole<T>(_ x: T) { withExtendedLifetime(x) {} }

func format(_ v: Double, unit: String) -> String {
    switch unit {
    case "ns":
        return v >= 1000 ? String(format: "%.2f us", v / 1000) : String(format: "%.0f ns", v)
    case "ops/s", "msg/s":
        if v >= 1e6 { return String(format: "%.1f M%@", v / 1e6, unit) }
        if v >= 1e3 { return String(format: "%.1f k%@", v / 1e3, unit) }
        return String(format: "%.0f %@", v, unit)
    case "B/s":
        return String(format: "%.2f GB/s", v / 1e9)
    default:
        return String(format: "%.3g %@", v, unit)
    }
}

func renderTable(_ figures: [Figure]) -> String {
    var out = "| group | figure | value | baseline | ratio | goal |\n|---|---|---|---|---|---|\n"
    for f in figures {
        // Latency figures: p50, then p99 and messages/s; save/restore: its two halves.
        var value = format(f.value, unit: f.unit)
        var baseValue = f.baseline.map { format($0, unit: f.unit) }
        if let p99 = f.extra["p99_ns"], let mps = f.extra["msgs_per_s"] {
            value = "p50 \(value), p99 \(format(p99, unit: "ns")), \(format(mps, unit: "msg/s"))"
        }
        if let b = baseValue, let p99 = f.extra["floor_p99_ns"], let mps = f.extra["floor_msgs_per_s"] {
            baseValue = "p50 \(b), p99 \(format(p99, unit: "ns")), \(format(mps, unit: "msg/s"))"
        }
        if let save = f.extra["save_ns"], let restore = f.extra["restore_ns"] {
            value += " (save \(format(save, unit: "ns")), restore \(format(restore, unit: "ns")))"
        }
        let base = baseValue.map { "\($0) (\(f.baselineName ?? ""))" } ?? "-"
        let ratio = f.ratio.map { String(format: "%.2fx", $0) } ?? "-"
        let goal = f.goal.map { "\($0) \(f.met == true ? "met" : (f.met == false ? "MISSED" : ""))" } ?? "-"
        out += "| \(f.group) | \(f.name) | \(value) | \(base) | \(ratio) | \(goal) |\n"
    }
    return out
}
