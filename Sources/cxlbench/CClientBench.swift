#if canImport(Glibc)
import Glibc
#endif
import Foundation

// Figure 1b: the vfio-user round trip measured by an independent C client
// (`scripts/vfu-bench-client.c`), so the published figure does not depend on our
// Swift client: VERSION, then 4-byte config-space REGION_READs, interleaved in
// blocks with a raw ping-pong of the same sizes (32-byte request, 36-byte reply)
// against the echo child, in the same process. Optionally the same client against
// libvfio-user's `samples/server` (`--libvfio-user-server BINARY`, built outside the
// repository), measured in the same interleaving.

/// The C client's source, next to this package's `Sources` (found from this file's path at build time), or
/// under the current directory.
func cClientSource() -> String? {
    let here = URL(fileURLWithPath: #filePath)
    let candidates = [
        here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/vfu-bench-client.c").path,
        FileManager.default.currentDirectoryPath + "/scripts/vfu-bench-client.c",
    ]
    return candidates.first { FileManager.default.fileExists(atPath: $0) }
}

/// Compiles the C client with `cc -O2` into a temporary file; nil (with the reason) when that is not possible.
func buildCClient(_ ctx: BenchContext) -> (path: String?, why: String?) {
    guard let src = cClientSource() else { return (nil, "scripts/vfu-bench-client.c not found") }
    let out = NSTemporaryDirectory() + "cxlbench-vfu-bench-client-\(getpid())"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = [ProcessInfo.processInfo.environment["CC"] ?? "cc", "-O2", "-o", out, src]
    do { try p.run() } catch { return (nil, "cannot run cc: \(error)") }
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { return (nil, "cc failed (\(p.terminationStatus))") }
    ctx.log("built \(out) from \(src)")
    return (out, nil)
}

/// One target's line from the C client: `NAME mean p50 p99 min calls`.
struct CClientResult {
    var mean: Double, p50: Double, p99: Double, min: Double, calls: Int
}

/// Runs the C client over `targets` (`vfu:PATH` / `raw:PATH`), returning each target's result.
func runCClient(_ binary: String, iterations: Int, targets: [String]) throws -> [String: CClientResult] {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: binary)
    p.arguments = ["-n", "\(iterations)", "-b", "500"] + targets
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw CClientBenchError.failed("vfu-bench-client exited with \(p.terminationStatus)") }
    var out: [String: CClientResult] = [:]
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count == 6, let mean = Double(f[1]), let p50 = Double(f[2]), let p99 = Double(f[3]), let mn = Double(f[4]),
              let calls = Int(f[5]) else { continue }
        out[String(f[0])] = CClientResult(mean: mean, p50: p50, p99: p99, min: mn, calls: calls)
    }
    return out
}

enum CClientBenchError: Error, CustomStringConvertible {
    case failed(String)
    var description: String { switch self { case .failed(let s): s } }
}

/// Waits until `path` exists as a socket (a child has bound it), up to 20 s.
func waitForSocket(_ path: String, process: Process) throws {
    let deadline = Date().addingTimeInterval(20)
    var st = stat()
    while !(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK) {
        guard process.isRunning, Date() < deadline else { throw CClientBenchError.failed("no socket at \(path)") }
        usleep(5000)
    }
}

/// Figure 1b.
func cClientFigures(_ ctx: BenchContext, libvfioUserServer: String?) throws -> [Figure] {
    let (binary, why) = buildCClient(ctx)
    guard let binary else {
        ctx.log("C client skipped: \(why ?? "")")
        return [Figure(group: "vfio-user", name: "C client REGION_READ config 4 B: not run (\(why ?? ""))", unit: "ns", value: .nan)]
    }
    defer { unlink(binary) }
    var figures: [Figure] = []
    let n = ctx.iterations(50_000)
    for pinned in [true, false] {
        try withPlacement(pinned: pinned) {
            let tag = "\(getpid())-\(pinned ? "p" : "u")"
            let ours = NSTemporaryDirectory() + "cxlbench-cc-vu-\(tag).sock"
            let echo = NSTemporaryDirectory() + "cxlbench-cc-echo-\(tag).sock"
            let lvu = NSTemporaryDirectory() + "cxlbench-cc-lvu-\(tag).sock"
            for p in [ours, echo, lvu] { unlink(p) }
            let server = try spawnSelf(["--serve-vfio-user", ours, "--serve-decoders", "2"], quiet: true)
            let echoChild = try spawnSelf(["--echo-server", echo])
            var lvuChild: Process? = nil
            defer {
                for c in [server, lvuChild].compactMap({ $0 }) where c.isRunning { c.terminate(); c.waitUntilExit() }
                echoChild.waitUntilExit()
                for p in [ours, echo, lvu] { unlink(p) }
            }
            if let libvfioUserServer {
                let c = Process()
                c.executableURL = URL(fileURLWithPath: libvfioUserServer)
                c.arguments = [lvu]
                c.standardOutput = FileHandle.nullDevice
                c.standardError = FileHandle.nullDevice
                try c.run()
                lvuChild = c
                try waitForSocket(lvu, process: c)
            }
            try waitForSocket(ours, process: server)
            try waitForSocket(echo, process: echoChild)
            ctx.log("C client pinned=\(pinned)")
            var targets = ["raw:\(echo)", "vfu:\(ours)"]
            if lvuChild != nil { targets.append("vfu:\(lvu)") }
            let r = try runCClient(binary, iterations: n, targets: targets)
            guard let floor = r["raw:\(echo)"], let us = r["vfu:\(ours)"] else { throw CClientBenchError.failed("C client output incomplete") }
            let place = pinned ? "CPU 0" : "unpinned"
            func figure(_ who: String, _ v: CClientResult, goal: Bool) -> Figure {
                var extra: [String: Double] = ["p99_ns": v.p99, "floor_p99_ns": floor.p99, "mean_ns": v.mean, "floor_mean_ns": floor.mean,
                                               "msgs_per_s": 1e9 / v.mean, "floor_msgs_per_s": 1e9 / floor.mean,
                                               "mean_ratio": v.mean / floor.mean, "p99_ratio": v.p99 / floor.p99, "min_ns": v.min,
                                               "floor_min_ns": floor.min]
                if let l = lvuChild.flatMap({ _ in r["vfu:\(lvu)"] }) { extra["vs_libvfio_user_p50"] = v.p50 / l.p50; extra["libvfio_user_p50_ns"] = l.p50 }
                return Figure(group: "vfio-user", name: "C client, \(who): REGION_READ config 4 B, \(place)", unit: "ns", value: v.p50,
                              baselineName: "raw ping-pong 32/36 B, same C client", baseline: floor.p50,
                              goal: goal ? "<= 1.10x floor, p99 <= 1.5x" : nil,
                              met: goal ? (v.p50 <= 1.10 * floor.p50 && v.p99 <= 1.5 * floor.p99) : nil, extra: extra)
            }
            figures.append(figure("swift-cxl server", us, goal: pinned))
            if let l = r["vfu:\(lvu)"] { figures.append(figure("libvfio-user samples/server", l, goal: false)) }
        }
    }
    return figures
}
