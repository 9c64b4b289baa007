import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
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

    @Option(name: .customLong("only"), help: "Run only these groups (comma-separated): vfio-user, memory, state, translation, decode.")
    var only: String?

    @Flag(name: .shortAndLong, help: "Progress on stderr.")
    var verbose = false

    @Option(name: .customLong("libvfio-user-server"),
            help: "A libvfio-user samples/server binary (built outside this repository) to measure with the C client next to ours.")
    var libvfioUserServer: String?

    @Flag(name: .customLong("no-c-client"), help: "Skip the C-client figures (they compile scripts/vfu-bench-client.c with cc).")
    var noCClient = false

    @Option(name: .customLong("echo-server"), help: .hidden)
    var echoServer: String?

    @Option(name: .customLong("serve-vfio-user"), help: .hidden)
    var serveVFIOUser: String?

    @Option(name: .customLong("serve-decoders"), help: .hidden)
    var serveDecoders: Int = 2

    mutating func run() throws {
        if let echoServer { runEchoServer(socketPath: echoServer) }
        if let serveVFIOUser { runVFIOUserServer(socketPath: serveVFIOUser, decoders: serveDecoders) }
        let ctx = BenchContext(quick: quick, verbose: verbose)
        let groups = only.map { Set($0.split(separator: ",").map(String.init)) }
        func wanted(_ g: String) -> Bool { groups?.contains(g) ?? true }

        var figures: [Figure] = []
        if wanted("vfio-user") || wanted("socket") {
            if !noCClient { figures += try cClientFigures(ctx, libvfioUserServer: libvfioUserServer) }
            figures += try vfioUserFigures(ctx)
        }
        if wanted("memory") { figures += try memoryFigures(ctx) }
        if wanted("state") { figures += try stateFigures(ctx) }
        if wanted("translation") { ctx.log("translation"); figures += translationBench(ctx) }
        if wanted("decode") { ctx.log("decode"); figures += try decodeFigures(ctx) }

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
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    return "\(cpus) CPUs, \(model), Linux \(release)"
}
