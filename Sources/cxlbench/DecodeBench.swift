#if canImport(Glibc)
import Glibc
#endif
import CXLKitCommands
import Foundation

// Figure 5: `cxlkit decode FILE -vvv` (the library behind it: parse the dump, decode
// every function as text) on one lspci -xxxx file holding 1000 functions built from
// the test fixtures, against `/usr/bin/lspci -F FILE -vvv > /dev/null` on the same file.

/// The fixture dumps, split into functions (title line + hex lines).
private func fixtureFunctions() throws -> [[Substring]] {
    // The bench runs from the package root (swift run / .build/release/cxlbench).
    let candidates = ["Tests/Fixtures/decode", URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Tests/Fixtures/decode").standardized.path]
    guard let dir = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
        throw BenchError("fixtures not found (run from the package root)")
    }
    var out: [[Substring]] = []
    for name in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() where name.hasSuffix(".txt") {
        let text = try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
        var current: [Substring] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            // A title line: "BB:DD.F ..." (hex lines are "OO: ..." with a 2- or 3-digit offset).
            if line.count > 8, line.dropFirst(2).first == ":", line.dropFirst(5).first == "." {
                if !current.isEmpty { out.append(current) }
                current = [line]
            } else if !current.isEmpty, !line.isEmpty {
                current.append(line)
            }
        }
        if !current.isEmpty { out.append(current) }
    }
    return out
}

/// Writes a dump of `count` functions (the fixtures round-robin, renumbered) and returns its path.
func buildDecodeCorpus(count: Int) throws -> String {
    let fns = try fixtureFunctions()
    guard !fns.isEmpty else { throw BenchError("no fixture functions") }
    var text = ""
    for i in 0..<count {
        let f = fns[i % fns.count]
        let bus = i / 256, dev = (i / 8) % 32, fn = i % 8
        let title = f[0]
        let rest = title.split(separator: " ", maxSplits: 1).dropFirst().first ?? ""
        text += String(format: "%02x:%02x.%x ", bus, dev, fn) + rest + "\n"
        for l in f.dropFirst() { text += l + "\n" }
        text += "\n"
    }
    let path = NSTemporaryDirectory() + "cxlbench-decode-\(getpid()).txt"
    try text.write(toFile: path, atomically: false, encoding: .utf8)
    return path
}

func decodeFigures(_ ctx: BenchContext) throws -> [Figure] {
    let count = 1000
    let path = try buildDecodeCorpus(count: count)
    defer { unlink(path) }
    let runs = ctx.quick ? 3 : 7
    func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }

    var ours: [Double] = []
    var outBytes = 0
    for _ in 0..<runs {
        let t0 = nowNanoseconds()
        let targets = try TargetResolver().resolve(path)
        let text = CXLKit.decode(targets, json: false, verbosity: 3)
        ours.append(Double(nowNanoseconds() - t0))
        precondition(targets.count == count, "corpus holds \(targets.count) functions")
        outBytes = text.utf8.count
    }
    let ourRate = Double(count) / (median(ours) / 1e9)

    let lspci = "/usr/bin/lspci"
    guard FileManager.default.isExecutableFile(atPath: lspci) else {
        return [Figure(group: "decode", name: "decode \(count) functions -vvv (library); lspci missing: no baseline",
                       unit: "ops/s", value: ourRate, extra: ["output_bytes": Double(outBytes)])]
    }
    var theirs: [Double] = []
    for _ in 0..<runs {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: lspci)
        p.arguments = ["-F", path, "-vvv"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        let t0 = nowNanoseconds()
        try p.run()
        p.waitUntilExit()
        theirs.append(Double(nowNanoseconds() - t0))
        guard p.terminationStatus == 0 else { throw BenchError("lspci -F exited with \(p.terminationStatus)") }
    }
    let theirRate = Double(count) / (median(theirs) / 1e9)
    return [Figure(group: "decode", name: "decode \(count) functions -vvv, functions/s", unit: "ops/s", value: ourRate,
                   baselineName: "lspci -F -vvv", baseline: theirRate, goal: ">= 5x lspci", met: ourRate >= 5 * theirRate,
                   extra: ["ours_ms": median(ours) / 1e6, "lspci_ms": median(theirs) / 1e6, "output_bytes": Double(outBytes)])]
}
