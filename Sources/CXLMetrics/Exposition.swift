import Foundation
import PCI
import CXL
import CXLKitCommands
import Prometheus

/// The two exposition formats a scraper may ask for.
public enum MetricsFormat: Sendable, Equatable {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    case prometheus
    /// OpenMetrics 1.0.0 (`application/openmetrics-text; version=1.0.0`).
    case openMetrics

    public var contentType: String {
        switch self {
        case .prometheus: return "text/plain; version=0.0.4; charset=utf-8"
        case .openMetrics: return "application/openmetrics-text; version=1.0.0; charset=utf-8"
        }
    }

    /// What the scraper's Accept header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` with a higher (or equal) q than text/plain, as
    /// Prometheus does by default; else the text format.
    public static func negotiate(accept: String?) -> MetricsFormat {
        guard let accept else { return .prometheus }
        var om = -1.0, text = -1.0
        for part in accept.split(separator: ",") {
            let params = part.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let type = params.first?.lowercased() else { continue }
            var q = 1.0
            for p in params.dropFirst() where p.lowercased().hasPrefix("q=") { q = Double(p.dropFirst(2)) ?? 0 }
            if type == "application/openmetrics-text" { om = max(om, q) }
            if type == "text/plain" || type == "*/*" { text = max(text, q) }
        }
        return om > 0 && om >= text ? .openMetrics : .prometheus
    }
}

/// The metric families, named by Prometheus conventions (base units, `_total` for
/// counters, `_bytes` for sizes) and labelled `device` (the target: a BDF or
/// `emulated:NAME`), `decoder`, `range`, `method`.
public enum CXLMetricNames {
    public static let targetUp = "cxlkit_target_up"
    public static let decoderCommitted = "cxl_hdm_decoder_committed"
    public static let decoderSize = "cxl_hdm_decoder_size_bytes"
    public static let decoderBase = "cxl_hdm_decoder_base_address"
    public static let decoderLocked = "cxl_hdm_decoder_locked"
    public static let decoderEnable = "cxl_hdm_decoder_enable"
    public static let kernelDecoder = "cxl_kernel_decoder_in_use"
    public static let memEnable = "cxl_dvsec_mem_enable"
    public static let memActive = "cxl_dvsec_mem_active"
    public static let configLocked = "cxl_config_locked"
    public static let flexBusMem = "cxl_flexbus_mem_up"
    public static let rasUncorrectable = "cxl_ras_uncorrectable_status"
    public static let rasCorrectable = "cxl_ras_correctable_status"
    public static let aerCorrectable = "pcie_aer_correctable_errors_total"
    public static let aerFatal = "pcie_aer_fatal_errors_total"
    public static let aerNonfatal = "pcie_aer_nonfatal_errors_total"
    public static let checkProblems = "cxl_check_problems"
    public static let stateCheckProblems = "cxl_state_check_problems"
    public static let serveResets = "cxl_serve_resets_total"
    public static let serveClientAttached = "cxl_serve_client_attached"
    public static let serveInterrupts = "cxl_serve_interrupts_raised_total"
    public static let serveMemoryGated = "cxl_serve_memory_gated"
}

/// Renders target health as one exposition, through swift-prometheus's registry
/// (names, label escaping, HELP/TYPE lines). A fresh registry per rendering: each
/// scrape shows the state read for it, and a decoder that disappeared is gone.
public enum CXLMetricsExposition {
    public static func render(_ targets: [TargetHealth], format: MetricsFormat = .prometheus) -> String {
        let registry = PrometheusCollectorRegistry()
        func gauge(_ name: String, _ labels: [(String, String)], _ help: String, _ value: Double) {
            registry.makeGauge(name: name, labels: labels, help: help).set(to: value)
        }
        func counter(_ name: String, _ labels: [(String, String)], _ help: String, _ value: UInt64) {
            registry.makeCounter(name: name, labels: labels, help: help).increment(by: Int64(clamping: value))
        }
        func b(_ v: Bool) -> Double { v ? 1 : 0 }
        for t in targets {
            let dev = [("device", t.target)]
            gauge(CXLMetricNames.targetUp, dev, "1 if cxlkit could read the target's CXL state for this scrape, else 0", t.reading == nil ? 0 : 1)
            if let r = t.reading {
                gauge(CXLMetricNames.memEnable, dev, "DVSEC CXL Control Mem_Enable (CXL 3.1 8.1.3.2)", b(r.memEnable))
                gauge(CXLMetricNames.configLocked, dev, "DVSEC CXL Lock CONFIG_LOCK (CXL 3.1 8.1.3.6)", b(r.configLocked))
                for range in r.ranges {
                    gauge(CXLMetricNames.memActive, dev + [("range", "\(range.number)")], "DVSEC CXL Range n Size Low Memory_Active (CXL 3.1 8.1.3.8.2)", b(range.active))
                }
                if let fb = r.flexBus {
                    gauge(CXLMetricNames.flexBusMem, dev, "Flex Bus Port Status Mem: the link trained with CXL.mem (CXL 3.1 8.2.1.3.3)", b(fb.mem))
                }
                if let e = r.hdmDecoderEnable {
                    gauge(CXLMetricNames.decoderEnable, dev, "HDM Decoder Global Control HDM Decoder Enable (CXL 3.1 8.2.4.20.2)", b(e))
                }
                for d in r.decoders ?? [] {
                    let l = dev + [("decoder", "\(d.index)")]
                    gauge(CXLMetricNames.decoderCommitted, l, "HDM Decoder n Control Committed (CXL 3.1 8.2.4.20.7)", b(d.committed))
                    gauge(CXLMetricNames.decoderSize, l, "HDM Decoder n Size (CXL 3.1 8.2.4.20.6)", Double(d.size))
                    // HPAs are at most 52 bits wide (x86-64, Arm): exact in a double.
                    gauge(CXLMetricNames.decoderBase, l, "HDM Decoder n Base, a host physical address (CXL 3.1 8.2.4.20.5)", Double(d.base))
                    gauge(CXLMetricNames.decoderLocked, l, "Committed with Lock On Commit (CXL 3.1 8.2.4.20.7)", b(d.locked))
                }
                if let ras = r.ras {
                    gauge(CXLMetricNames.rasUncorrectable, dev, "CXL RAS Uncorrectable Error Status, unmasked bits (CXL 3.1 8.2.4.17.1)",
                          Double(ras.uncorrectableStatus & ~ras.uncorrectableMask))
                    gauge(CXLMetricNames.rasCorrectable, dev, "CXL RAS Correctable Error Status (CXL 3.1 8.2.4.17.4)", Double(ras.correctableStatus))
                }
                if let aer = r.aer {
                    if let v = aer.correctable { counter(CXLMetricNames.aerCorrectable, dev, "PCIe AER correctable errors the kernel counted (sysfs aer_dev_correctable)", v) }
                    if let v = aer.fatal { counter(CXLMetricNames.aerFatal, dev, "PCIe AER fatal errors the kernel counted (sysfs aer_dev_fatal)", v) }
                    if let v = aer.nonfatal { counter(CXLMetricNames.aerNonfatal, dev, "PCIe AER non-fatal errors the kernel counted (sysfs aer_dev_nonfatal)", v) }
                }
                if let k = r.kernel {
                    for d in k.decoders {
                        gauge(CXLMetricNames.kernelDecoder, dev + [("decoder", "\(d.index)"), ("region", d.region ?? "")],
                              "1 if the Linux CXL driver holds endpoint decoder n for a region (sysfs decoderN.M)", b(d.inUse))
                    }
                }
                gauge(CXLMetricNames.checkProblems, dev, "Problems cxlkit check finds in the live state (kernel view, RAS, AER, ranges)", Double(t.result.problems.count))
            }
            if let s = t.stateCheck {
                gauge(CXLMetricNames.stateCheckProblems, dev, "Problems cxlkit check --against finds against the saved state file", Double(s.problems.count))
            }
            if let s = t.serve {
                gauge(CXLMetricNames.serveClientAttached, dev, "1 while a vfio-user client is attached to cxlkit serve", b(s.clientAttached))
                for method in ["device_reset", "flr", "cxl"] {
                    counter(CXLMetricNames.serveResets, dev + [("method", method)], "Resets the served device went through, by method", UInt64(max(0, s.resets[method] ?? 0)))
                }
                counter(CXLMetricNames.serveInterrupts, dev, "MSI-X vectors cxlkit serve's interrupt timer raised", UInt64(max(0, s.interruptsRaised)))
                if let g = s.memoryGated {
                    gauge(CXLMetricNames.serveMemoryGated, dev, "1 while vfio-cxl gates the device-memory region (reset in progress or decoder 0 not committed)", b(g))
                }
            }
        }
        let text = sorted(registry.emitToString())
        return format == .openMetrics ? openMetrics(text) : text
    }

    /// The registry emits families, and the samples of one family, in hash order; sort families by name and each
    /// family's samples by their labels (numbers as numbers), so the output is stable and diffable: two scrapes of
    /// the same state are the same text. A histogram's buckets (`le` labels) keep their order.
    static func sorted(_ text: String) -> String {
        var families: [(name: String, lines: [Substring])] = []
        for line in text.split(separator: "\n") {
            let name: Substring
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                name = line.dropFirst(7).prefix { $0 != " " }
            } else {
                name = line.prefix { $0 != "{" && $0 != " " }
            }
            if let i = families.lastIndex(where: { $0.name == name }) { families[i].lines.append(line) } else { families.append((String(name), [line])) }
        }
        // HELP before TYPE as emitted, then the samples.
        func ordered(_ lines: [Substring]) -> [Substring] {
            let comments = lines.filter { $0.hasPrefix("#") }, samples = lines.filter { !$0.hasPrefix("#") }
            // Numbers in labels compare as numbers: decoder="2" before decoder="10".
            let byLabels = samples.sorted { String($0).compare(String($1), options: .numeric) == .orderedAscending }
            return comments + (samples.contains { $0.contains("le=\"") } ? samples : byLabels)
        }
        return families.sorted { $0.name < $1.name }.flatMap { ordered($0.lines) }.map { $0 + "\n" }.joined()
    }

    /// OpenMetrics 1.0 from the text format: a counter family is named without its
    /// `_total` suffix (its samples keep it), and the exposition ends with `# EOF`.
    public static func openMetrics(_ text: String) -> String {
        var counters = Set<Substring>()
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") && line.hasSuffix(" counter") {
            counters.insert(line.dropFirst(7).prefix { $0 != " " })
        }
        var out = ""
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let name = line.dropFirst(7).prefix { $0 != " " }
                if counters.contains(name), name.hasSuffix("_total") {
                    out += line.prefix(7) + name.dropLast(6) + line.dropFirst(7 + name.count) + "\n"
                    continue
                }
            }
            out += line + "\n"
        }
        return out + "# EOF\n"
    }
}
