import Foundation
import PCI
import CXL
import CXLEmulator

/// `cxlkit demo`: firmware-programmed CXL state across every reset type, on the
/// emulated device.
public enum StateDemo {
    /// One reset of one freshly programmed device.
    public struct Run: Sendable, Encodable {
        public var profile: String
        public var firmware: [String]
        public var report: ResetReport
        /// What the run was expected to show.
        public var expectation: String
        public var asExpected: Bool
    }

    public struct Result: Sendable, Encodable {
        public var runs: [Run]
        public var succeeded: Bool { runs.allSatisfy(\.asExpected) }
    }

    static let plan: [(profile: String, method: CXLResetKind, expectWipe: Bool, expectation: String)] = [
        ("type2", .flr, false, "FLR leaves a compliant device's CXL state alone (CXL 3.1 §9.5)"),
        ("flr-loses-state", .flr, true, "this non-compliant device loses its CXL state on FLR; restore brings it back"),
        ("type2", .cxl, true, "CXL Reset resets the decoders, keeps CONFIG_LOCK and what it locks"),
        ("type2", .sbr, true, "a conventional reset clears everything, CONFIG_LOCK included"),
        ("type2", .link, true, "link down is a conventional reset too"),
    ]

    /// Run the demo. `clock` drives the engine's waits (the CXL Reset quiet time);
    /// the emulator runs on real time unless a matching `emulatorClock` is given.
    public static func run(options: CXLStateOptions = CXLStateOptions(),
                           emulatorClock: (any EmulatorClock)? = nil) throws(CommandError) -> Result {
        var runs: [Run] = []
        for step in plan {
            let device: EmulatedCXLDevice
            do {
                device = try EmulatedCXLDevice(profile: try DeviceProfile.named(step.profile),
                                               clock: emulatorClock ?? MonotonicClock(), address: "emulated:\(step.profile)")
            } catch { throw CommandError("emulated:\(step.profile): \(error)") }
            do {
                let firmware = try CXLStateEngine(function: device, options: options).programLikeFirmware()
                let report = try CXLResetOrchestrator(function: device, options: options)
                    .reset(method: step.method, preserve: true)
                let wiped = !(report.wiped?.isEmpty ?? true)
                runs.append(Run(profile: step.profile, firmware: firmware, report: report, expectation: step.expectation,
                                asExpected: wiped == step.expectWipe && report.succeeded))
            } catch {
                throw CommandError("emulated:\(step.profile): \(error)")
            }
        }
        return Result(runs: runs)
    }

    // MARK: Text

    /// Short names for the wiped column.
    static func short(_ e: CXLStateDiff.Entry) -> String {
        switch e.register {
        case "DVSEC CXL Control": return "Control"
        case "DVSEC CXL Control2": return "Control2"
        case "DVSEC CXL Lock": return "Lock"
        case let r where r.hasPrefix("DVSEC CXL Range"): return "Range " + r.split(separator: " ")[3] + " Base"
        case "HDM Decoder Global Control": return "HDM Enable"
        case let r where r.hasPrefix("Decoder "): return "decoder " + r.split(separator: " ")[1]
        default: return e.displayName
        }
    }

    static func wipedSummary(_ d: CXLStateDiff?) -> String {
        guard let d else { return "(unreadable)" }
        if d.isEmpty { return "nothing" }
        var seen: [String] = []
        for e in d.changes where !seen.contains(short(e)) { seen.append(short(e)) }
        let decoders = seen.filter { $0.hasPrefix("decoder ") }.map { $0.dropFirst(8) }
        var parts = seen.filter { !$0.hasPrefix("decoder ") }
        if !decoders.isEmpty { parts.append((decoders.count > 1 ? "decoders " : "decoder ") + decoders.joined(separator: ",")) }
        return parts.joined(separator: ", ")
    }

    static func restoreSummary(_ r: ResetReport) -> String {
        guard let restore = r.restore else { return r.restoreError.map { "refused: \($0)" } ?? "-" }
        let n = r.diff?.entries.count ?? 0
        let same = r.diff.map { $0.entries.count - $0.changes.count } ?? 0
        let path = restore.dvsecLocked ? "merge (locked)" : "Lock re-armed"
        return "\(path), \(same)/\(n) back" + (r.succeeded ? "" : " FAILED")
    }

    public static func text(_ result: Result) -> String {
        var out = "cxlkit demo: firmware-programmed CXL state across resets, emulated CXL Type-2 device\n\n"
        if let first = result.runs.first {
            out += "Firmware (through config and BAR writes, as on the real device):\n"
            out += wrap(first.firmware.joined(separator: "; "), indent: "  ", width: 100)
            out += "Each reset: fresh device, same firmware setup, cxlkit reset --preserve: save, reset,\n"
            out += "PCI state back (as the PCI core does), read what the reset took, restore, compare.\n\n"
        }
        out += StateText.pad("reset", 10) + StateText.pad("device", 16) + StateText.pad("wiped by the reset", 54) + "restore\n"
        for r in result.runs {
            out += StateText.pad(label(r.report.method), 10)
                + StateText.pad(r.profile, 16) + StateText.pad(wipedSummary(r.report.wiped), 54)
                + restoreSummary(r.report) + (r.asExpected ? "" : "  UNEXPECTED") + "\n"
        }
        if let detail = result.runs.first(where: { $0.profile == "flr-loses-state" }), let w = detail.report.wiped,
           let final = detail.report.diff {
            out += "\nFLR on flr-loses-state, register by register:\n"
            out += "  " + StateText.pad("register", 30) + StateText.pad("before", 12) + StateText.pad("after FLR", 12) + "restored\n"
            for e in w.changes {
                let restored = final.entries.first { $0.key == e.key }?.b
                out += "  " + StateText.pad(e.displayName, 30) + StateText.pad(StateText.value(e.a, e.width), 12)
                    + StateText.pad(StateText.value(e.b, e.width), 12) + StateText.value(restored, e.width) + "\n"
            }
        }
        out += "\nRestore order: BARs, PCIe control, Memory Space Enable (temporary), DVSEC Control2, Range Base,\n"
        out += "HDM Decoder Global Control, decoders 0..n (program, Commit, wait Committed), DVSEC Control,\n"
        out += "Lock last, Command, MSI/MSI-X; with CONFIG_LOCK live, locked fields keep the hardware value.\n"
        out += result.succeeded ? "result: every reset behaved as the spec says and every register came back\n"
                                : "result: UNEXPECTED behaviour (see above)\n"
        return out
    }

    static func label(_ m: CXLResetKind) -> String {
        switch m {
        case .flr: return "FLR"
        case .cxl: return "CXL Reset"
        case .sbr: return "SBR"
        case .link: return "link down"
        }
    }

    static func wrap(_ s: String, indent: String, width: Int) -> String {
        var out = "", line = indent
        for word in s.split(separator: " ") {
            if line.count + word.count + 1 > width && line != indent { out += line + "\n"; line = indent }
            line += (line == indent ? "" : " ") + word
        }
        return out + line + "\n"
    }
}

extension CXLKit {
    /// `cxlkit demo`.
    public static func demo(json: Bool, options: CXLStateOptions = CXLStateOptions(),
                            emulatorClock: (any EmulatorClock)? = nil) throws(CommandError) -> StateCommandResult {
        let r = try StateDemo.run(options: options, emulatorClock: emulatorClock)
        return StateCommandResult(output: json ? JSONOutput.document(command: "demo", succeeded: r.succeeded, problems: r.runs.filter { !$0.asExpected }.map { "\($0.profile) \($0.report.method): not as expected (\($0.expectation))" }, report: r) : StateDemo.text(r), exitCode: r.succeeded ? 0 : 1)
    }
}
