import Foundation
import PCI
import CXL
import CXLEmulator
#if canImport(Glibc)
import Glibc
#endif

/// One target's health: what was read, what the check found, or why it could not read.
public struct TargetHealth: Sendable {
    /// The target as given ("0000:0d:00.0", "emulated:type2", "control:/run/cxl.ctl").
    public var target: String
    public var reading: CXLHealthReading?
    public var result: CXLCheckResult
    /// Why the target could not be read at all (the check then counts as "could not check").
    public var error: String?
    /// Problems `check --against` found for this target (the exporter's state directory).
    public var stateCheck: CXLCheckResult?
    /// For served devices (`control:` targets): what the server reports.
    public var serve: ServeStatus?

    /// 0 healthy, 1 problems, 2 could not check.
    public var exitCode: Int32 {
        let codes = [error == nil ? result.exitCode : 2, stateCheck?.exitCode ?? 0]
        return codes.contains(1) ? 1 : (codes.max() ?? 0)
    }
    /// Every problem, the state comparison's first.
    public var problems: [CXLProblem] { (stateCheck?.problems ?? []) + result.problems }
}

extension CXLKit {
    /// The health of one function: a read-only reading plus, for sysfs functions, the
    /// AER counters and the CXL driver's view from the same sysfs tree.
    public static func health(of function: any PCIFunction, target: String, sysfsRoot: String) -> TargetHealth {
        do {
            var reading = try CXLHealthReading.read(function)
            if let s = function as? SysfsPCIFunction {
                reading.aer = PCIeAERCounters.read(directory: s.directory)
                if !reading.aer!.isAvailable { reading.aer = nil }
                reading.kernel = CXLKernelView.read(sysfsRoot: sysfsRoot, address: s.pciAddress)
            }
            var result = CXLHealthCheck.check(reading)
            if function is SysfsPCIFunction, reading.kernel == nil {
                let bus = CXLKernelView.busDirectory(sysfsRoot: sysfsRoot)
                result.notes.append(access(bus, F_OK) == 0 ? "kernel: no memdev for \(function.address) under \(bus) (cxl_pci not bound?)"
                                                            : "kernel: no CXL driver view (\(bus) absent)")
            }
            var h = TargetHealth(target: target, reading: reading, result: result)
            if let control = function as? ControlPCIFunction {
                do { h.serve = try control.status() } catch { h.result.unchecked.append("serve status: \(error.message)") }
            }
            return h
        } catch {
            var r = CXLCheckResult()
            r.unchecked.append("\(target): \(error)")
            return TargetHealth(target: target, reading: nil, result: r, error: "\(error)")
        }
    }

    /// The targets `check`, `metrics` and the exporter look at when none is given:
    /// every CXL device function under sysfs (ports are not devices), else the
    /// embedded emulated device.
    public static func discoverHealthTargets(resolver: TargetResolver) -> (targets: [String], note: String) {
        let tree = SysfsTree(root: resolver.options.sysfsRoot)
        let fns = (try? listFunctions(tree: tree)) ?? []
        let devices = fns.filter { $0.device != nil }.map(\.address.description)
        if !devices.isEmpty { return (devices, "no TARGET given: every CXL device function under \(tree.devicesDirectory): \(devices.joined(separator: ", "))") }
        return ([TargetResolver.embeddedTarget], "no TARGET given and no CXL device under \(tree.devicesDirectory): using \(TargetResolver.embeddedTarget)")
    }

    /// `cxlkit check TARGET`: resolve and check one target (a target naming several
    /// functions, such as a multi-function dump, yields one result each).
    public static func checkTarget(_ target: String, resolver: TargetResolver, blank: Bool = false,
                                   options: CXLStateOptions = CXLStateOptions()) -> [TargetHealth] {
        let targets: [ResolvedTarget]
        do { targets = try resolver.resolve(target) } catch {
            var r = CXLCheckResult()
            r.unchecked.append(error.message)
            return [TargetHealth(target: target, reading: nil, result: r, error: error.message)]
        }
        return targets.map { t in
            let name = targets.count == 1 ? target : "\(target) \(t.name)"
            guard let fn = t.function else {
                // Config space only (a dump without BAR images): the DVSEC part is still checkable.
                do {
                    let reading = try CXLHealthReading.read(config: t.config, function: nil)
                    return TargetHealth(target: name, reading: reading, result: CXLHealthCheck.check(reading))
                } catch {
                    var r = CXLCheckResult()
                    r.unchecked.append("\(name): \(error)")
                    return TargetHealth(target: name, reading: nil, result: r, error: "\(error)")
                }
            }
            // An emulated device exists for this command only: program it the way firmware
            // would, as the state commands do, unless --blank.
            if !blank, let emulated = fn as? EmulatedCXLDevice, emulated.profile.firmware == nil {
                _ = try? CXLStateEngine(function: fn, options: options).programLikeFirmware()
            }
            return health(of: fn, target: name, sysfsRoot: resolver.options.sysfsRoot)
        }
    }

    /// `cxlkit check TARGET --against FILE`: the live state against a saved one, plus the
    /// live checks. The live registers are re-read at the locations the file records.
    public static func checkAgainst(_ path: String, function: any PCIFunction, target: String, sysfsRoot: String,
                                    options: CXLStateOptions = CXLStateOptions()) -> TargetHealth {
        var h = health(of: function, target: target, sysfsRoot: sysfsRoot)
        do {
            let saved = try CXLStateFile.read(from: path)
            let live = try CXLStateEngine(function: function, options: options).readBack(like: saved)
            h.stateCheck = CXLStateCheck.compare(saved: saved, live: live)
        } catch {
            var r = CXLCheckResult()
            r.unchecked.append("\(path): \(error)")
            h.stateCheck = r
        }
        return h
    }

    /// Text and exit status of `cxlkit check` over its targets: 0 all healthy, 1 a
    /// problem anywhere, 2 nothing wrong found but something could not be checked.
    public static func checkReport(_ results: [TargetHealth], json: Bool) -> StateCommandResult {
        let codes = results.map(\.exitCode)
        let exit: Int32 = codes.contains(1) ? 1 : (codes.max() ?? 0)
        return StateCommandResult(output: json ? CheckText.json(results, exitCode: exit) : CheckText.text(results), exitCode: exit)
    }
}

/// Renderings of `cxlkit check`.
public enum CheckText {
    public static func text(_ results: [TargetHealth]) -> String {
        var out = ""
        for h in results {
            out += "\(h.target)" + (h.reading.map { ": \($0.identity.vendorAndDevice)" } ?? "") + "\n"
            if let r = h.reading {
                out += "  DVSEC: Mem_Enable \(r.memEnable ? 1 : 0), CONFIG_LOCK \(r.configLocked ? 1 : 0)"
                    + r.ranges.map { ", Range \($0.number) \($0.active ? "active" : "not active") \(ByteCount.exact($0.size))" }.joined()
                if let fb = r.flexBus { out += ", Flex Bus Mem \(fb.mem ? "up" : "down")" }
                out += "\n"
                if let ds = r.decoders {
                    let committed = ds.filter(\.committed)
                    out += "  HDM decoders: \(ds.count), HDM Decoder Enable \(r.hdmDecoderEnable == true ? 1 : 0), committed: "
                        + (committed.isEmpty ? "none" : committed.map { "\($0.index) at \(ByteCount.range($0.base, $0.size))\($0.locked ? " locked" : "")" }.joined(separator: ", ")) + "\n"
                }
                if let ras = r.ras {
                    out += "  RAS: Uncorrectable Error Status \("0x" + hex(ras.uncorrectableStatus, digits: 8)), Correctable Error Status \("0x" + hex(ras.correctableStatus, digits: 8))\n"
                }
                if r.memorySpaceEnabledForRead { out += "  note: Memory Space Enable was clear; set for the reads, Command put back\n" }
                if let aer = r.aer {
                    out += "  AER: correctable \(aer.correctable.map(String.init) ?? "-"), fatal \(aer.fatal.map(String.init) ?? "-"), non-fatal \(aer.nonfatal.map(String.init) ?? "-")\n"
                }
            }
            if let s = h.stateCheck {
                for p in s.problems { out += "  PROBLEM: \(p.message)\n" }
                for n in s.notes { out += "  note: \(n)\n" }
                for u in s.unchecked { out += "  NOT CHECKED: \(u)\n" }
            }
            for p in h.result.problems { out += "  PROBLEM: \(p.message)\n" }
            for n in h.result.notes { out += "  note: \(n)\n" }
            for u in h.result.unchecked { out += "  NOT CHECKED: \(u)\n" }
            switch h.exitCode {
            case 0: out += "  result: healthy\n"
            case 1: out += "  result: \(h.problems.count) problem(s)\n"
            default: out += "  result: could not check\n"
            }
        }
        return out
    }

    static func hexJSON(_ v: UInt64) -> JSONValue { .string("0x" + String(v, radix: 16)) }

    static func problemJSON(_ p: CXLProblem, target: String?) -> JSONValue {
        var kv: [(String, JSONValue)] = []
        if let target { kv.append(("target", .string(target))) }
        kv.append(("code", .string(p.code)))
        kv.append(("decoder", p.decoder.map { .int(Int64($0)) } ?? .null))
        kv.append(("message", .string(p.message)))
        return .object(kv)
    }

    public static func readingJSON(_ r: CXLHealthReading) -> JSONValue {
        var kv: [(String, JSONValue)] = [
            ("vendor_id", .string("0x" + hex(r.identity.vendorID, digits: 4))),
            ("device_id", .string("0x" + hex(r.identity.deviceID, digits: 4))),
            ("serial_number", r.identity.serialNumber.map { .string("0x" + hex($0, digits: 16)) } ?? .null),
            ("dvsec_control", .string("0x" + hex(r.control, digits: 4))),
            ("mem_enable", .bool(r.memEnable)), ("cache_enable", .bool(r.cacheEnable)), ("config_locked", .bool(r.configLocked)),
            ("hdm_count", .int(Int64(r.hdmCount))),
            ("ranges", .array(r.ranges.map { .object([("range", .int(Int64($0.number))), ("base", hexJSON($0.base)), ("size_bytes", .uint($0.size)),
                                                      ("memory_info_valid", .bool($0.infoValid)), ("memory_active", .bool($0.active))]) })),
            ("flex_bus", r.flexBus.map { .object([("cache", .bool($0.cache)), ("io", .bool($0.io)), ("mem", .bool($0.mem)), ("mem_enabled", .bool($0.memEnabled))]) } ?? .null),
            ("hdm_decoder_enable", r.hdmDecoderEnable.map { .bool($0) } ?? .null),
            ("decoders", r.decoders.map { .array($0.map { d in .object([
                ("decoder", .int(Int64(d.index))), ("base", hexJSON(d.base)), ("size_bytes", .uint(d.size)),
                ("dpa_skip_bytes", d.dpaSkip.map { .uint($0) } ?? .null), ("interleave_ways", d.ways.map { .int(Int64($0)) } ?? .null),
                ("control", .string("0x" + hex(d.control, digits: 8))), ("committed", .bool(d.committed)), ("locked", .bool(d.locked)),
                ("error_not_committed", .bool(d.errorNotCommitted)),
            ]) }) } ?? .null),
            ("component_registers_error", r.componentError.map { .string($0) } ?? .null),
            ("ras", r.ras.map { .object([("uncorrectable_status", .string("0x" + hex($0.uncorrectableStatus, digits: 8))),
                                         ("uncorrectable_mask", .string("0x" + hex($0.uncorrectableMask, digits: 8))),
                                         ("correctable_status", .string("0x" + hex($0.correctableStatus, digits: 8)))]) } ?? .null),
            ("aer", r.aer.map { a in .object([("correctable", a.correctable.map { .uint($0) } ?? .null), ("fatal", a.fatal.map { .uint($0) } ?? .null),
                                              ("nonfatal", a.nonfatal.map { .uint($0) } ?? .null)]) } ?? .null),
        ]
        kv.append(("kernel", r.kernel.map { k in .object([
            ("memdev", .string(k.memdev)), ("endpoint", k.endpoint.map { .string($0) } ?? .null),
            ("decoders", .array(k.decoders.map { d in .object([
                ("name", .string(d.name)), ("decoder", .int(Int64(d.index))), ("start", d.start.map(hexJSON) ?? .null),
                ("size_bytes", d.size.map { .uint($0) } ?? .null), ("region", d.region.map { .string($0) } ?? .null),
                ("region_committed", d.regionCommitted.map { .bool($0) } ?? .null), ("in_use", .bool(d.inUse)),
            ]) })),
        ]) } ?? .null))
        return .object(kv)
    }

    public static func json(_ results: [TargetHealth], exitCode: Int32) -> String {
        let targets: [JSONValue] = results.map { h in
            var kv: [(String, JSONValue)] = [("target", .string(h.target)), ("exit_code", .int(Int64(h.exitCode))),
                                             ("healthy", .bool(h.exitCode == 0)), ("error", h.error.map { .string($0) } ?? .null)]
            kv.append(("problems", .array(h.problems.map { problemJSON($0, target: nil) })))
            kv.append(("notes", .array(((h.stateCheck?.notes ?? []) + h.result.notes).map { .string($0) })))
            kv.append(("unchecked", .array(((h.stateCheck?.unchecked ?? []) + h.result.unchecked).map { .string($0) })))
            kv.append(("against_state_file", .bool(h.stateCheck != nil)))
            kv.append(("reading", h.reading.map(readingJSON) ?? .null))
            return .object(kv)
        }
        let all = results.flatMap { h in h.problems.map { problemJSON($0, target: h.target) } }
        // The envelope every --json output has (`problems`: one line each); the structured problems beside it.
        let lines = results.flatMap { h in h.problems.map { "\(h.target): \($0.message)" } + (h.error.map { ["\(h.target): \($0)"] } ?? []) }
        return JSONOutput.document(command: "check", succeeded: exitCode == 0, problems: lines, [
            ("exit_code", .int(Int64(exitCode))),
            ("problem_details", .array(all)),
            ("targets", .array(targets)),
        ])
    }
}

extension CXLKit {
    /// The version `check --json` and the metrics report (`cxlkit_build_info`).
    public static var fleetHealthVersion: String { version }
}

extension CXLDeviceIdentity {
    var vendorAndDevice: String {
        "\(hex(vendorID, digits: 4)):\(hex(deviceID, digits: 4))" + (serialNumber.map { " serial \(hex($0, digits: 16))" } ?? "")
    }
}

extension CXLKit {
    /// State files in `directory` (`*.json` that load as state files); unreadable ones
    /// are skipped with the reason.
    public static func stateFiles(in directory: String) -> (files: [(path: String, snapshot: CXLStateSnapshot)], errors: [String]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            return ([], ["\(directory): cannot list the state directory"])
        }
        var files: [(String, CXLStateSnapshot)] = []
        var errors: [String] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            let path = directory + "/" + name
            do { files.append((path, try CXLStateFile.read(from: path))) } catch { errors.append("\(path): \(error)") }
        }
        return (files, errors)
    }

    /// What `cxlkit metrics` and each exporter scrape read: every target (none given:
    /// sysfs discovery, else the embedded device) read afresh; a target that fails is
    /// a result with `error` (the exposition's `cxlkit_target_up 0`), never a failure
    /// of the whole. With `stateDirectory`, each function whose state file is there
    /// (same address, or same vendor, device and serial number) is also compared with it.
    public static func collectHealth(targets given: [String], resolver: TargetResolver, stateDirectory: String? = nil,
                                     blank: Bool = false, options: CXLStateOptions = CXLStateOptions()) -> [TargetHealth] {
        let targets = given.isEmpty ? discoverHealthTargets(resolver: resolver).targets : given
        let states = stateDirectory.map { stateFiles(in: $0) }
        var out: [TargetHealth] = []
        for target in targets {
            let resolved: [ResolvedTarget]
            do { resolved = try resolver.resolve(target) } catch {
                var r = CXLCheckResult()
                r.unchecked.append(error.message)
                out.append(TargetHealth(target: target, reading: nil, result: r, error: error.message))
                continue
            }
            for t in resolved {
                let name = resolved.count == 1 ? target : "\(target) \(t.name)"
                guard let fn = t.function else {
                    out += checkTarget(name, resolver: resolver, blank: blank, options: options)
                    continue
                }
                if !blank, let emulated = fn as? EmulatedCXLDevice, emulated.profile.firmware == nil {
                    _ = try? CXLStateEngine(function: fn, options: options).programLikeFirmware()
                }
                var h = health(of: fn, target: name, sysfsRoot: resolver.options.sysfsRoot)
                if let states, let reading = h.reading {
                    let match = states.files.first { $0.snapshot.identity.address == fn.address }
                        ?? states.files.first { $0.snapshot.identity.serialNumber != nil && $0.snapshot.identity.matches(reading.identity) }
                    if let match {
                        do {
                            let live = try CXLStateEngine(function: fn, options: options).readBack(like: match.snapshot)
                            h.stateCheck = CXLStateCheck.compare(saved: match.snapshot, live: live)
                        } catch {
                            var r = CXLCheckResult()
                            r.unchecked.append("\(match.path): \(error)")
                            h.stateCheck = r
                        }
                    }
                }
                out.append(h)
            }
        }
        return out
    }
}
