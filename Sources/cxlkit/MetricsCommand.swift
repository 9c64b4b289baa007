import ArgumentParser
import CXLKitCommands
import CXLMetrics
#if canImport(Glibc)
import Glibc
#endif

struct MetricsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metrics",
        abstract: "Print CXL health metrics in the Prometheus text exposition format (OpenMetrics with --openmetrics).",
        discussion: "A target that cannot be read yields cxlkit_target_up 0 for it; the command still exits 0. See README, Fleet health." + targetFormsHelp)

    @Argument(help: "Targets; default: every CXL device under sysfs, else the embedded emulated:type2.") var targets: [String] = []
    @Flag(help: "OpenMetrics 1.0 instead of the Prometheus text format.") var openmetrics = false
    @Option(name: .customLong("state-dir"), help: ArgumentHelp("State files (cxlkit save) to compare each target with: cxl_state_check_problems.", valueName: "DIR"))
    var stateDir: String?
    @OptionGroup var stateOptions: StateTargetOptionGroup

    func run() throws {
        try runReportingErrors {
            let health = CXLKit.collectHealth(targets: targets, resolver: try stateOptions.resolver(), stateDirectory: stateDir, blank: stateOptions.blank)
            return CXLMetricsExposition.render(health, format: openmetrics ? .openMetrics : .prometheus)
        }
    }
}

struct ExporterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exporter",
        abstract: "Serve CXL health metrics to Prometheus (--listen ADDR:PORT) or write them for node_exporter's textfile collector (--textfile DIR).",
        discussion: """
        Each scrape reads every target afresh: targets given, else every CXL device under sysfs; control:PATH reaches \
        a device served by cxlkit serve --control PATH. A target that fails is cxlkit_target_up 0, never a failed scrape. \
        The listener answers GET /metrics (OpenMetrics when the Accept header asks for it), one request per connection, \
        at most --max-connections at once, requests up to 8 KiB, connections closed after --timeout seconds.
        """ + targetFormsHelp)

    @Argument(help: "Targets; default: every CXL device under sysfs, else the embedded emulated:type2.") var targets: [String] = []
    @Option(help: ArgumentHelp("Listen on ADDR:PORT (e.g. 127.0.0.1:9841, [::1]:9841).", valueName: "ADDR:PORT")) var listen: String?
    @Option(help: ArgumentHelp("Write DIR/cxlkit.prom atomically instead of listening.", valueName: "DIR")) var textfile: String?
    @Option(help: ArgumentHelp("With --textfile: rewrite every S seconds (0: once and exit).", valueName: "S")) var interval: Int = 0
    @Option(name: .customLong("state-dir"), help: ArgumentHelp("State files to compare each target with: cxl_state_check_problems.", valueName: "DIR"))
    var stateDir: String?
    @Option(name: .customLong("max-connections"), help: "Connections served at once.") var maxConnections: Int = 16
    @Option(help: "Seconds a connection may live.") var timeout: Int = 10
    @OptionGroup var stateOptions: StateTargetOptionGroup

    func run() throws {
        try runReportingErrors {
            let resolver = try stateOptions.resolver()
            let targets = self.targets, stateDir = self.stateDir, blank = stateOptions.blank
            let collect: MetricsCollector = { format in
                CXLMetricsExposition.render(CXLKit.collectHealth(targets: targets, resolver: resolver, stateDirectory: stateDir, blank: blank), format: format)
            }
            switch (listen, textfile) {
            case (nil, let dir?):
                while true {
                    do { try TextfileWriter.write(collect(.prometheus), directory: dir) } catch { throw CommandError("\(error)") }
                    if interval <= 0 { return "" }
                    sleep(UInt32(min(interval, 86_400)))
                }
            case (let addr?, nil):
                guard let colon = addr.lastIndex(of: ":"), let port = Int(addr[addr.index(after: colon)...]), (0...65535).contains(port) else {
                    throw CommandError("--listen \(addr): expected ADDR:PORT")
                }
                var host = String(addr[..<colon])
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                guard maxConnections > 0, timeout > 0 else { throw CommandError("--max-connections and --timeout must be positive") }
                var limits = ExporterLimits()
                limits.maxConnections = maxConnections
                limits.connectionTimeout = .seconds(Int64(timeout))
                let exporter: MetricsExporter
                do { exporter = try MetricsExporter(host: host, port: port, limits: limits, collect: collect) } catch {
                    throw CommandError("--listen \(addr): \(error)")
                }
                writeStderr("cxlkit exporter: listening on http://\(exporter.host.contains(":") ? "[\(exporter.host)]" : exporter.host):\(exporter.port)/metrics\n")
                try? exporter.wait()
                return ""
            default:
                throw CommandError("give exactly one of --listen ADDR:PORT and --textfile DIR")
            }
        }
    }
}
