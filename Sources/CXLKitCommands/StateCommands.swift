import Foundation
import PCI
import CXL
import CXLEmulator

/// What a state command prints, and whether it succeeded (the exit status).
public struct StateCommandResult: Sendable {
    public var output: String
    /// 0 success; 1 restore failed / state differs / reset lost state.
    public var exitCode: Int32
    public init(output: String, exitCode: Int32) {
        self.output = output
        self.exitCode = exitCode
    }
}

/// One side of `cxlkit diff`: a state file or a live target.
public enum StateSource: Sendable {
    case file(String)
    case live(any PCIFunction)
}

extension CXLKit {
    /// The one function a target names, reachable beyond config space (the state
    /// commands need the BARs).
    public static func stateFunction(_ target: String, resolver: TargetResolver) throws(CommandError) -> any PCIFunction {
        let targets = try resolver.resolve(target)
        guard targets.count == 1 else {
            throw CommandError("\(target): names \(targets.count) functions; the state commands take exactly one")
        }
        guard let fn = targets[0].function else {
            throw CommandError("\(target): only config space is available; saving CXL state needs the device's BARs "
                + "(a live device: sysfs address as root, emulated:NAME, or a file with --bar images)")
        }
        return fn
    }

    /// The function for a state command. An emulated device is created for this one
    /// command; a profile without firmware state would start blank, with nothing a
    /// reset could take, so unless `blank` it is first programmed the way firmware
    /// would (BAR, DVSEC Range 1 Base, two committed decoders, Mem_Enable,
    /// CONFIG_LOCK). Profiles with their own firmware section keep theirs. Real
    /// devices are never programmed. Returns the note to print, if any.
    public static func stateFunction(_ target: String, resolver: TargetResolver, blank: Bool,
                                     options: CXLStateOptions = CXLStateOptions()) throws(CommandError) -> (function: any PCIFunction, note: String?) {
        let fn = try stateFunction(target, resolver: resolver)
        guard !blank, let emulated = fn as? EmulatedCXLDevice, emulated.profile.firmware == nil else { return (fn, nil) }
        do {
            let steps = try CXLStateEngine(function: fn, options: options).programLikeFirmware()
            return (fn, "\(fn.address) starts blank; programmed the way firmware would first (--blank skips this):\n"
                        + StateDemo.wrap(steps.joined(separator: "; "), indent: "  ", width: 100))
        } catch {
            throw CommandError("\(fn.address): firmware-style setup failed: \(error)")
        }
    }

    static func commandError(_ e: CXLStateError) -> CommandError { CommandError(e.description) }

    static func jsonText<T: Encodable>(_ value: T) -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let d = try? e.encode(value) else { return "{}\n" }
        return String(decoding: d, as: UTF8.self) + "\n"
    }

    /// `cxlkit save TARGET -o FILE`. The file is written atomically, after the save
    /// succeeded; a failed save leaves an existing file untouched.
    /// `-o -` puts the state file itself on standard output (the summary then belongs on stderr: `summary`).
    public static func saveState(_ function: any PCIFunction, to path: String,
                                 options: CXLStateOptions = CXLStateOptions()) throws(CommandError) -> (output: String, summary: String) {
        let snapshot: CXLStateSnapshot
        do {
            snapshot = try CXLStateEngine(function: function, options: options).save()
            if path == "-" {
                return (String(decoding: try CXLStateFile.encode(snapshot), as: UTF8.self), StateText.saved(snapshot, path: "standard output"))
            }
            try CXLStateFile.write(snapshot, to: path)
        } catch { throw commandError(error) }
        let summary = StateText.saved(snapshot, path: path)
        return (summary, summary)
    }

    /// `cxlkit restore TARGET FILE`: exit 1 when any register did not come back.
    public static func restoreState(_ function: any PCIFunction, from path: String, json: Bool,
                                    options: CXLStateOptions = CXLStateOptions()) throws(CommandError) -> StateCommandResult {
        let report: RestoreReport
        do {
            let snapshot = try CXLStateFile.read(from: path)
            report = try CXLStateEngine(function: function, options: options).restore(snapshot)
        } catch { throw commandError(error) }
        return StateCommandResult(output: json ? JSONOutput.document(command: "restore", succeeded: report.succeeded, problems: report.failures,
                                                                     report: report) : StateText.restore(report),
                                  exitCode: report.succeeded ? 0 : 1)
    }

    /// Reads a state source: a state file is parsed and checked, a live target saved.
    public static func loadState(_ source: StateSource, options: CXLStateOptions = CXLStateOptions()) throws(CommandError) -> CXLStateSnapshot {
        do {
            switch source {
            case .file(let p): return try CXLStateFile.read(from: p)
            case .live(let fn): return try CXLStateEngine(function: fn, options: options).save()
            }
        } catch { throw commandError(error) }
    }

    /// Whether a command-line argument names a state file (an existing file that
    /// starts with a JSON object) rather than a target.
    public static func isStateFile(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        // read(upToCount:) throws where readData(ofLength:) traps (a directory opens for reading and fails to read).
        guard let head = try? h.read(upToCount: 64) else { return false }
        return head.first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{")
    }

    /// `cxlkit diff A B`: exit 1 when any register differs (or the devices differ).
    public static func diffState(_ a: CXLStateSnapshot, _ b: CXLStateSnapshot, json: Bool) -> StateCommandResult {
        let d = CXLStateDiff(a, b)
        let problems = d.sameDevice ? [] : ["the two sides are different devices: \(d.a) and \(d.b)"]
        return StateCommandResult(output: json ? JSONOutput.document(command: "diff", succeeded: true, problems: problems,
                                                                     [("identical", .bool(d.isEmpty && d.sameDevice))] + JSONOutput.fields(d)) : StateText.diff(d),
                                  exitCode: d.isEmpty && d.sameDevice ? 0 : 1)
    }

    /// `cxlkit reset TARGET --method M [--mem-clear] [--preserve]`: exit 1 when the
    /// state after the reset differs from the state before it (or the reset failed).
    public static func resetState(_ function: any PCIFunction, method: CXLResetKind, preserve: Bool, memClear: Bool,
                                  stateFile: String?, json: Bool,
                                  options: CXLStateOptions = CXLStateOptions()) throws(CommandError) -> StateCommandResult {
        if stateFile == "-" { throw CommandError("--state-file -: standard output carries the reset report; give a file path") }
        let report: ResetReport
        do {
            report = try CXLResetOrchestrator(function: function, options: options)
                .reset(method: method, preserve: preserve, memClear: memClear, stateFile: stateFile)
        } catch { throw commandError(error) }
        return StateCommandResult(output: json ? JSONOutput.document(command: "reset", succeeded: report.succeeded, problems: report.problems,
                                                                     report: report) : StateText.reset(report),
                                  exitCode: report.succeeded ? 0 : 1)
    }
}

extension ResetReport {
    /// Why the reset did not succeed, one line each: the `problems` of `reset --json`.
    public var problems: [String] {
        var out: [String] = []
        if let e = resetError { out.append("reset: \(e)") }
        if let e = restoreError { out.append("restore: \(e)") }
        if let e = readBackError { out.append("read-back: \(e)") }
        out += (pciRestore?.failures ?? []).map { "PCI state: \($0)" }
        out += (restore?.failures ?? []).map { "CXL state: \($0)" }
        if let d = diff, !d.isEmpty { out.append("\(d.changes.count) register(s) differ from before the reset") }
        return out
    }
}
