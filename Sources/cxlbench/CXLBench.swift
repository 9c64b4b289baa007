import ArgumentParser
import Foundation

/// `cxlbench`: the figures the README publishes, each with a baseline measured in
/// the same run. Run in release mode: `swift run -c release cxlbench`.
@main
struct CXLBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cxlbench",
        abstract: "Benchmarks: vfio-user message cost, device memory, save/restore, translation, decode.")

    @Flag(help: "A short run (about a tenth of the iterations).")
    var quick = false

    @Flag(help: "Print the figures as JSON instead of a table.")
    var json = false

    @Option(name: .customLong("only"), help: "Run only these groups (comma-separated): socket, translation.")
    var only: String?

    @Flag(name: .shortAndLong, help: "Progress on stderr.")
    var verbose = false

    @Option(name: .customLong("echo-server"), help: .hidden)
    var echoServer: String?

    mutating func run() throws {
        if let echoServer { runEchoServer(socketPath: echoServer) }
        let ctx = BenchContext(quick: quick, verbose: verbose)
        let groups = only.map { Set($0.split(separator: ",").map(String.init)) }
        func wanted(_ g: String) -> Bool { groups?.contains(g) ?? true }

        var figures: [Figure] = []
        if wanted("socket") { figures += try socketFigures(ctx) }
        if wanted("translation") { ctx.log("translation"); figures += translationBench(ctx) }

        let report = BenchReport(date: ISO8601DateFormatter().string(from: Date()), machine: machineDescription(),
                                 quick: quick, figures: figures)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
        } else {
            print("cxlbench \(quick ? "--quick " : "")on \(report.machine), \(report.date)\n")
            print(renderTable(figures))
        }
    }
}

struct BenchReport: Codable {
    var date: String
    var machine: String
    var quick: Bool
    var figures: [Figure]
}

func machineDescription() -> String {
    let cpus = ProcessInfo.processInfo.activeProcessorCount
    let model = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("model name") }?
        .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
    return "\(cpus) CPUs, \(model)"
}

/// Figure 1's floor on its own until the vfio-user figures join it: the raw UNIX
/// socket ping-pong for REGION_READ/REGION_WRITE message sizes, pinned and unpinned.
func socketFigures(_ ctx: BenchContext) throws -> [Figure] {
    var figures: [Figure] = []
    let n = ctx.iterations(100_000)
    for pinned in [true, false] {
        for size in [4, 64, 4096] {
            ctx.log("ping-pong \(size) B pinned=\(pinned)")
            // REGION_READ: 32-byte request (header + offset/region/count), reply 32 + data.
            let s = try withPlacement(pinned: pinned) { try rawPingPong(requestSize: 32, replySize: 32 + size, iterations: n) }
            figures.append(Figure(group: "socket", name: "raw ping-pong 32 B / \(32 + size) B, \(pinned ? "CPU 0" : "unpinned")",
                                  unit: "ns", value: s.percentile(50),
                                  extra: ["p99_ns": s.percentile(99), "mean_ns": s.mean, "msgs_per_s": 1e9 / s.mean]))
        }
    }
    return figures
}
