import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
import CXLKitCommands
@testable import CXLMetrics

/// The exposition's samples as "name{labels}" -> value.
func samples(_ text: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " ") else { continue }
        out[String(line[..<space])] = String(line[line.index(after: space)...])
    }
    return out
}

@Suite("Prometheus exposition of CXL health")
struct ExpositionTests {
    func virtualOptions() -> CXLStateOptions { CXLStateOptions(clock: VirtualCXLClock()) }

    func programmed(_ profile: String) throws -> EmulatedCXLDevice {
        let d = try EmulatedCXLDevice(profile: try DeviceProfile.named(profile), clock: ManualClock(), address: "emulated:\(profile)")
        try CXLStateEngine(function: d, options: virtualOptions()).programLikeFirmware()
        return d
    }

    @Test func decodersDVSECAndRASBecomeLabelledSamples() throws {
        let fn = try programmed("type2")
        let h = CXLKit.health(of: fn, target: "emulated:type2", sysfsRoot: "/nonexistent")
        let text = CXLMetricsExposition.render([h])
        let s = samples(text)
        #expect(s[#"cxlkit_target_up{device="emulated:type2"}"#] == "1.0")
        #expect(s[#"cxl_hdm_decoder_committed{device="emulated:type2",decoder="0"}"#] == "1.0")
        #expect(s[#"cxl_hdm_decoder_committed{device="emulated:type2",decoder="1"}"#] == "1.0")
        #expect(s[#"cxl_hdm_decoder_size_bytes{device="emulated:type2",decoder="0"}"#] == "536870912.0")
        #expect(s[#"cxl_hdm_decoder_base_address{device="emulated:type2",decoder="0"}"#] == "274877906944.0")
        #expect(s[#"cxl_hdm_decoder_base_address{device="emulated:type2",decoder="1"}"#] == "275414777856.0")
        #expect(s[#"cxl_dvsec_mem_enable{device="emulated:type2"}"#] == "1.0")
        #expect(s[#"cxl_config_locked{device="emulated:type2"}"#] == "1.0")
        #expect(s[#"cxl_dvsec_mem_active{device="emulated:type2",range="1"}"#] != nil)
        #expect(s[#"cxl_ras_uncorrectable_status{device="emulated:type2"}"#] == "0.0")
        #expect(s[#"cxl_check_problems{device="emulated:type2"}"#] == "0.0")
        // Every family has HELP and TYPE; families sorted by name.
        let types = text.split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map { $0.split(separator: " ")[2] }
        #expect(types == types.sorted())
        #expect(text.split(separator: "\n").filter { $0.hasPrefix("# HELP ") }.count == types.count)
    }

    /// The registry's order of a family's samples changes from run to run (found: `cxl_serve_resets_total`'s three
    /// methods came out in three orders over six scrapes); the exposition sorts them, so every scrape of the same
    /// state is the same text.
    @Test func samplesOfAFamilyComeOutInOneOrderWhateverTheRegistrysOrder() {
        let help = "# HELP cxl_serve_resets_total Resets.", type = "# TYPE cxl_serve_resets_total counter"
        let lines = [#"cxl_serve_resets_total{device="d",method="flr"} 1.0"#, #"cxl_serve_resets_total{device="d",method="cxl"} 2.0"#,
                     #"cxl_serve_resets_total{device="d",method="device_reset"} 3.0"#]
        var outputs = Set<String>()
        for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0]] {
            let text = ([help, type] + order.map { lines[$0] } + ["# HELP a_first A.", "# TYPE a_first gauge", "a_first 1.0"]).joined(separator: "\n") + "\n"
            outputs.insert(CXLMetricsExposition.sorted(text))
        }
        #expect(outputs.count == 1)
        #expect(outputs.first?.split(separator: "\n").map(String.init) == ["# HELP a_first A.", "# TYPE a_first gauge", "a_first 1.0", help, type,
                                                                          lines[1], lines[2], lines[0]])
        // Numbers in labels sort as numbers.
        let decoders = [10, 2, 0, 1].map { #"cxl_hdm_decoder_committed{device="d",decoder="\#($0)"} 1.0"# }
        #expect(CXLMetricsExposition.sorted(decoders.joined(separator: "\n")).split(separator: "\n").map(String.init)
                == [0, 1, 2, 10].map { #"cxl_hdm_decoder_committed{device="d",decoder="\#($0)"} 1.0"# })
        // A histogram's buckets keep their (ascending le) order.
        let buckets = ["# TYPE h histogram", #"h_bucket{le="0.5"} 1"#, #"h_bucket{le="10"} 2"#, #"h_bucket{le="+Inf"} 3"#]
        #expect(CXLMetricsExposition.sorted(buckets.joined(separator: "\n")) == buckets.map { $0 + "\n" }.joined())
    }

    @Test func aTargetThatFailsIsUpZeroNotAFailedScrape() throws {
        let fn = try programmed("type2")
        let health = [CXLKit.health(of: fn, target: "emulated:type2", sysfsRoot: "/nonexistent")]
            + CXLKit.collectHealth(targets: ["/nonexistent/dev"], resolver: TargetResolver())
        let s = samples(CXLMetricsExposition.render(health))
        #expect(s[#"cxlkit_target_up{device="/nonexistent/dev"}"#] == "0.0")
        #expect(s[#"cxlkit_target_up{device="emulated:type2"}"#] == "1.0")
        #expect(!s.keys.contains { $0.contains("/nonexistent/dev") && !$0.hasPrefix("cxlkit_target_up") })
    }

    /// An FLR on flr-loses-state: the decoders read uncommitted, and against the saved
    /// state file the exporter counts the problems.
    @Test func aLostDecoderShowsAsUncommittedAndAsStateCheckProblems() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cxlmetrics-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let fn = try programmed("flr-loses-state")
        _ = try CXLKit.saveState(fn, to: dir.appendingPathComponent("dev.json").path, options: virtualOptions())
        _ = try CXLResetOrchestrator(function: fn, options: virtualOptions()).reset(method: .flr, preserve: false)
        var h = CXLKit.health(of: fn, target: "dev", sysfsRoot: "/nonexistent")
        let files = CXLKit.stateFiles(in: dir.path).files
        h.stateCheck = CXLStateCheck.compare(saved: files[0].snapshot, live: try CXLStateEngine(function: fn, options: virtualOptions()).readBack(like: files[0].snapshot))
        let s = samples(CXLMetricsExposition.render([h]))
        #expect(s[#"cxl_hdm_decoder_committed{device="dev",decoder="0"}"#] == "0.0")
        #expect(s[#"cxl_dvsec_mem_enable{device="dev"}"#] == "0.0")
        #expect(s[#"cxl_state_check_problems{device="dev"}"#] == "\(Double(h.stateCheck!.problems.count))")
        #expect(h.stateCheck!.problems.count >= 5)
    }

    @Test func openMetricsNamesCountersWithoutTotalAndEndsWithEOF() {
        let text = """
        # HELP pcie_aer_fatal_errors_total PCIe AER fatal errors
        # TYPE pcie_aer_fatal_errors_total counter
        pcie_aer_fatal_errors_total{device="a"} 2
        # HELP cxl_config_locked CONFIG_LOCK
        # TYPE cxl_config_locked gauge
        cxl_config_locked{device="a"} 1.0

        """
        #expect(CXLMetricsExposition.openMetrics(text) == """
        # HELP pcie_aer_fatal_errors PCIe AER fatal errors
        # TYPE pcie_aer_fatal_errors counter
        pcie_aer_fatal_errors_total{device="a"} 2
        # HELP cxl_config_locked CONFIG_LOCK
        # TYPE cxl_config_locked gauge
        cxl_config_locked{device="a"} 1.0
        # EOF

        """)
    }

    @Test func theAcceptHeaderPicksTheFormat() {
        // What Prometheus 2.x sends by default.
        #expect(MetricsFormat.negotiate(accept: "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1") == .openMetrics)
        #expect(MetricsFormat.negotiate(accept: "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5") == .prometheus)
        #expect(MetricsFormat.negotiate(accept: nil) == .prometheus)
        #expect(MetricsFormat.negotiate(accept: "*/*") == .prometheus)
        #expect(MetricsFormat.negotiate(accept: ";;,,q=;") == .prometheus)
    }

    @Test func labelValuesAreEscaped() throws {
        let fn = try programmed("type2")
        let h = CXLKit.health(of: fn, target: "odd\"name\\with\nnewline", sysfsRoot: "/nonexistent")
        let text = CXLMetricsExposition.render([h])
        #expect(text.contains(#"cxlkit_target_up{device="odd\"name\\with\nnewline"} 1.0"#))
    }

    @Test func theTextfileIsReplacedAtomically() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cxlmetrics-tf-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try TextfileWriter.write("a 1\n", directory: dir.path)
        try TextfileWriter.write("a 2\n", directory: dir.path)
        #expect(try String(contentsOf: dir.appendingPathComponent("cxlkit.prom"), encoding: .utf8) == "a 2\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["cxlkit.prom"])
        #expect(throws: TextfileError.self) { try TextfileWriter.write("x", directory: dir.path + "/missing") }
        #expect(throws: TextfileError.self) { try TextfileWriter.write("x", directory: dir.path, name: "../evil.prom") }
        #expect(try String(contentsOf: dir.appendingPathComponent("cxlkit.prom"), encoding: .utf8) == "a 2\n")
    }

    /// The textfile follows the rules of every file cxlkit writes: a symlink stays a symlink (its target is
    /// replaced), a directory or socket at the name is refused and left in place.
    @Test func theTextfileNeverReplacesWhatIsNotARegularFile() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cxlmetrics-tf2-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("old\n".utf8).write(to: dir.appendingPathComponent("real.prom"))
        #expect(symlink("real.prom", dir.appendingPathComponent("cxlkit.prom").path) == 0)
        try TextfileWriter.write("a 3\n", directory: dir.path)
        var st = stat()
        #expect(lstat(dir.appendingPathComponent("cxlkit.prom").path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK)
        #expect(try String(contentsOf: dir.appendingPathComponent("real.prom"), encoding: .utf8) == "a 3\n")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("d.prom"), withIntermediateDirectories: false)
        #expect(throws: TextfileError.self) { try TextfileWriter.write("x", directory: dir.path, name: "d.prom") }
        #expect(lstat(dir.appendingPathComponent("d.prom").path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR)
    }
}
