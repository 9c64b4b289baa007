import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
@testable import CXLKitCommands

/// A fake sysfs tree made of the QEMU 7.2 captures: the endpoint's config space and
/// component register block (as `config` and `resource0`), and the CXL driver's view
/// (memdev, endpoint port, endpoint decoder, region) as the guest showed it
/// (`Tests/Fixtures/qemu-cxl/*/decoders-sysfs.txt`, `cxl-devices.txt`).
struct FakeCXLSysfs {
    static let endpoint = "0000:0d:00.0"
    let root: URL

    /// `state`: "region" (decoder 0 committed by cxl create-region) or "reset" (after the
    /// secondary bus reset: the hardware decoder is wiped, the kernel still holds region0).
    init(state: String, kernel: Bool = true, aer: (cor: UInt64, fatal: UInt64, nonfatal: UInt64)? = nil) throws {
        root = try temporaryDirectory()
        let fm = FileManager.default
        let dev = root.appendingPathComponent("bus/pci/devices/" + Self.endpoint)
        try fm.createDirectory(at: dev, withIntermediateDirectories: true)
        let src = "qemu-cxl/\(state)/endpoint/"
        try Data(try fixture(src + "config.bin")).write(to: dev.appendingPathComponent("config"))
        try Data(try fixture(src + "resource.txt")).write(to: dev.appendingPathComponent("resource"))
        try Data(try fixture(src + "block-component-bar0-0x0.bin")).write(to: dev.appendingPathComponent("resource0"))
        if let aer {
            try "RxErr 0\nBadTLP 0\nTOTAL_ERR_COR \(aer.cor)\n".write(to: dev.appendingPathComponent("aer_dev_correctable"), atomically: true, encoding: .utf8)
            try "Undefined 0\nDLP 0\nTOTAL_ERR_FATAL \(aer.fatal)\n".write(to: dev.appendingPathComponent("aer_dev_fatal"), atomically: true, encoding: .utf8)
            try "Undefined 0\nPoisonTLPBlocked \(aer.nonfatal)\nTOTAL_ERR_NONFATAL \(aer.nonfatal)\n".write(to: dev.appendingPathComponent("aer_dev_nonfatal"), atomically: true, encoding: .utf8)
        }
        guard kernel else { return }
        let bus = root.appendingPathComponent("bus/cxl/devices")
        try fm.createDirectory(at: bus, withIntermediateDirectories: true)
        let memdev = "../../../devices/pci0000:0c/0000:0c:00.0/\(Self.endpoint)/mem0"
        try fm.createSymbolicLink(atPath: bus.appendingPathComponent("mem0").path, withDestinationPath: memdev)
        let ep = bus.appendingPathComponent("endpoint2")
        try fm.createDirectory(at: ep, withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: ep.appendingPathComponent("uport").path, withDestinationPath: "../../../../devices/pci0000:0c/0000:0c:00.0/\(Self.endpoint)/mem0")
        // decoder2.0 as captured (identical in region/ and reset/: the kernel never noticed the reset).
        try Self.attributes(bus.appendingPathComponent("decoder2.0"), try Self.capturedDecoder(state: state, name: "decoder2.0"))
        try Self.attributes(bus.appendingPathComponent("region0"), ["commit": "1", "size": "0x10000000", "resource": "0x490000000"])
    }

    /// The `== decoderN.M` block of a state's decoders-sysfs.txt, as attribute -> value.
    static func capturedDecoder(state: String, name: String) throws -> [String: String] {
        let text = String(decoding: try fixture("qemu-cxl/\(state)/decoders-sysfs.txt"), as: UTF8.self)
        var out: [String: String] = [:]
        var inBlock = false
        for line in text.split(separator: "\n") {
            if line.hasPrefix("== ") { inBlock = line == "== \(name)"; continue }
            guard inBlock, let colon = line.firstIndex(of: ":") else { continue }
            out[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }

    static func attributes(_ dir: URL, _ attrs: [String: String]) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (k, v) in attrs { try (v + "\n").write(to: dir.appendingPathComponent(k), atomically: true, encoding: .utf8) }
    }

    var resolver: TargetResolver { TargetResolver(options: TargetOptions(sysfsRoot: root.path)) }
    func remove() { try? FileManager.default.removeItem(at: root) }
}

@Suite("cxlkit check", .serialized)
struct CheckTests {
    func virtualOptions() -> CXLStateOptions { CXLStateOptions(clock: VirtualCXLClock()) }

    @Test func theKernelsRegionOnACommittedDecoderIsHealthy() throws {
        let t = try FakeCXLSysfs(state: "region")
        defer { t.remove() }
        let results = CXLKit.checkTarget(FakeCXLSysfs.endpoint, resolver: t.resolver)
        let r = CXLKit.checkReport(results, json: false)
        #expect(r.exitCode == 0, "\(r.output)")
        let reading = try #require(results.first?.reading)
        #expect(reading.kernel?.memdev == "mem0")
        #expect(reading.kernel?.endpoint == "endpoint2")
        #expect(reading.kernel?.decoders.map(\.name) == ["decoder2.0"])
        #expect(reading.kernel?.regions == ["region0"])
        #expect(reading.decoders?.first?.committed == true)
        #expect(reading.decoders?.first?.base == 0x4_9000_0000)
        #expect(r.output.contains("kernel: mem0 (endpoint2), decoder2.0 -> region0"))
        #expect(r.output.contains("result: healthy"))
    }

    /// The seed's failure, caught: after the secondary bus reset QEMU wiped the endpoint's
    /// HDM decoders while the kernel still shows region0 through decoder2.0.
    @Test func aResetUnderTheKernelsRegionIsAProblemNamingTheDecoder() throws {
        let t = try FakeCXLSysfs(state: "reset")
        defer { t.remove() }
        let results = CXLKit.checkTarget(FakeCXLSysfs.endpoint, resolver: t.resolver)
        let r = CXLKit.checkReport(results, json: false)
        #expect(r.exitCode == 1)
        let problems = results.flatMap(\.problems)
        #expect(problems.map(\.code).sorted() == ["decoder-not-committed", "hdm-disabled"])
        #expect(problems.contains { $0.message == "the kernel's decoder2.0 (region0) maps 0x490000000 (256 MiB) through HDM decoder 0, which is not committed" })
        #expect(problems.first { $0.code == "decoder-not-committed" }?.decoder == 0)
        #expect(r.output.contains("HDM Decoder Enable is 0 while the kernel holds region0"))
    }

    @Test func withoutTheDriverOnlyTheHardwareIsChecked() throws {
        let t = try FakeCXLSysfs(state: "reset", kernel: false)
        defer { t.remove() }
        let r = CXLKit.checkReport(CXLKit.checkTarget(FakeCXLSysfs.endpoint, resolver: t.resolver), json: false)
        #expect(r.exitCode == 0, "\(r.output)")
        #expect(r.output.contains("no CXL driver view"))
    }

    @Test func aerUncorrectableCountsAreProblemsCorrectableOnesNotes() throws {
        let t = try FakeCXLSysfs(state: "region", aer: (cor: 7, fatal: 0, nonfatal: 2))
        defer { t.remove() }
        let results = CXLKit.checkTarget(FakeCXLSysfs.endpoint, resolver: t.resolver)
        #expect(results[0].reading?.aer == PCIeAERCounters(correctable: 7, fatal: 0, nonfatal: 2,
                                                          correctableBits: ["RxErr": 0, "BadTLP": 0], fatalBits: ["Undefined": 0, "DLP": 0],
                                                          nonfatalBits: ["Undefined": 0, "PoisonTLPBlocked": 2]))
        #expect(results[0].problems.map(\.code) == ["aer-uncorrectable"])
        #expect(results[0].result.notes.contains("PCIe AER: 7 correctable errors counted by the kernel"))
        #expect(results[0].exitCode == 1)
    }

    /// flr-loses-state: saved, then an FLR without --preserve takes the DVSEC and both
    /// decoders. `check --against` names each in spec terms; after a restore it is healthy.
    @Test func againstAStateFileEachLostDecoderIsNamed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("s.json").path
        let (fn, _) = try CXLKit.stateFunction("emulated:flr-loses-state", resolver: TargetResolver(), blank: false, options: virtualOptions())
        _ = try CXLKit.saveState(fn, to: file, options: virtualOptions())
        let healthy = CXLKit.checkAgainst(file, function: fn, target: "emulated:flr-loses-state", sysfsRoot: "/nonexistent", options: virtualOptions())
        #expect(healthy.exitCode == 0, "\(CheckText.text([healthy]))")

        _ = try CXLResetOrchestrator(function: fn, options: virtualOptions()).reset(method: .flr, preserve: false)
        let h = CXLKit.checkAgainst(file, function: fn, target: "emulated:flr-loses-state", sysfsRoot: "/nonexistent", options: virtualOptions())
        #expect(h.exitCode == 1)
        let messages = h.stateCheck?.problems.map(\.message) ?? []
        #expect(messages.contains("decoder 0 was committed at 0x4000000000 (512 MiB), now not committed"))
        #expect(messages.contains("decoder 1 was committed at 0x4020000000 (256 MiB), now not committed"))
        #expect(messages.contains("CONFIG_LOCK was set, now clear"))
        #expect(messages.contains("DVSEC Range 1 Base was 0x4000000000, now 0x0"))
        #expect(messages.contains("HDM Decoder Enable was 1, now 0"))
        #expect(messages.contains { $0.hasPrefix("DVSEC CXL Control was 0x0007, now 0x0002: Cache_Enable was 1, now 0, Mem_Enable was 1, now 0") })
        #expect(CheckText.text([h]).contains("PROBLEM: decoder 0 was committed at 0x4000000000 (512 MiB), now not committed"))

        _ = try CXLKit.restoreState(fn, from: file, json: false, options: virtualOptions())
        let back = CXLKit.checkAgainst(file, function: fn, target: "emulated:flr-loses-state", sysfsRoot: "/nonexistent", options: virtualOptions())
        #expect(back.exitCode == 0, "\(CheckText.text([back]))")
    }

    /// A decoder re-committed elsewhere is named with both places.
    @Test func aDecoderCommittedElsewhereIsNamedWithBothRanges() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("s.json").path
        let fn = try CXLKit.stateFunction("emulated:type2", resolver: TargetResolver())
        var req = HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 256 << 20)
        req.enableDecoding = true
        #expect(try CXLKit.hdmCommit(fn, req).committed)
        _ = try CXLKit.saveState(fn, to: file, options: virtualOptions())
        req.base = 0x50_0000_0000
        req.size = 512 << 20
        #expect(try CXLKit.hdmCommit(fn, req).committed)
        let h = CXLKit.checkAgainst(file, function: fn, target: "emulated:type2", sysfsRoot: "/nonexistent", options: virtualOptions())
        #expect(h.stateCheck?.problems.map(\.message) == ["decoder 0 was committed at 0x4000000000 (256 MiB); now committed at 0x5000000000 (512 MiB)"])
        #expect(h.exitCode == 1)
    }

    @Test func whatCannotBeReadIsExitTwoNeverACrash() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bad = dir.appendingPathComponent("bad.json")
        try Data("{\"format\": \"swift-cxl-state\", \"version\": 1, \"snapshot\": {".utf8).write(to: bad)
        let fn = try CXLKit.stateFunction("emulated:type2", resolver: TargetResolver())
        let h = CXLKit.checkAgainst(bad.path, function: fn, target: "emulated:type2", sysfsRoot: "/nonexistent", options: virtualOptions())
        #expect(h.exitCode == 2)
        #expect(h.stateCheck?.unchecked.first?.contains("corrupt state file") == true)
        let missing = CXLKit.checkReport(CXLKit.checkTarget("/nonexistent/x", resolver: TargetResolver()), json: false)
        #expect(missing.exitCode == 2)
        // A problem anywhere wins over "could not check" elsewhere.
        let t = try FakeCXLSysfs(state: "reset")
        defer { t.remove() }
        let mixed = CXLKit.checkReport(CXLKit.checkTarget("/nonexistent/x", resolver: t.resolver)
                                       + CXLKit.checkTarget(FakeCXLSysfs.endpoint, resolver: t.resolver), json: false)
        #expect(mixed.exitCode == 1)
    }

    /// A config-only target (a dump without BAR images) is checked as far as config space
    /// goes; the decoders are "not checked", exit 2.
    @Test func aConfigOnlyTargetSaysWhatItCouldNotCheck() throws {
        let r = CXLKit.checkReport(CXLKit.checkTarget(fixtureURL("qemu-cxl/reset/endpoint/config.bin").path, resolver: TargetResolver()), json: false)
        #expect(r.exitCode == 2)
        #expect(r.output.contains("NOT CHECKED: component registers at BAR 0"))
    }

    /// gpu-fw-committed leaves Memory Space Enable clear: the check sets it for the component
    /// register reads and puts Command back; a read-only view of the same device is not
    /// written, and says what it could not check (exit 2).
    @Test func memorySpaceEnableIsSetForTheReadsOnlyWhereWritesAreAllowed() throws {
        let fn = try EmulatedCXLDevice("gpu-fw-committed")
        let command = try fn.configRead(PCIHeader.command.offset, width: 2)
        #expect(command & UInt32(StateCatalog.memorySpaceEnableBit) == 0)
        let h = CXLKit.health(of: fn, target: "emulated:gpu-fw-committed", sysfsRoot: "/nonexistent")
        #expect(h.exitCode == 0, "\(CheckText.text([h]))")
        #expect(h.reading?.memorySpaceEnabledForRead == true)
        #expect(h.reading?.decoders?.first?.committed == true)
        #expect(try fn.configRead(PCIHeader.command.offset, width: 2) == command)
        let ro = CXLKit.health(of: ReadOnlyFunction(fn), target: "ro", sysfsRoot: "/nonexistent")
        #expect(ro.exitCode == 2)
        #expect(ro.reading?.decoders == nil)
        #expect(CheckText.text([ro]).contains("NOT CHECKED: Memory Space Enable is clear"))
    }

    @Test func jsonFollowsTheConvention() throws {
        let t = try FakeCXLSysfs(state: "reset")
        defer { t.remove() }
        let r = CXLKit.checkReport(CXLKit.checkTarget(FakeCXLSysfs.endpoint, resolver: t.resolver), json: true)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any])
        #expect(obj["succeeded"] as? Bool == false)
        #expect(obj["exit_code"] as? Int == 1)
        #expect((obj["problems"] as? [String])?.contains { $0.hasPrefix(FakeCXLSysfs.endpoint + ": ") } == true)
        let problems = try #require(obj["problem_details"] as? [[String: Any]])
        #expect(problems.contains { $0["code"] as? String == "decoder-not-committed" && $0["decoder"] as? Int == 0 && $0["target"] as? String == FakeCXLSysfs.endpoint })
        let meta = try #require(obj["metadata"] as? [String: Any])
        #expect(meta["version"] is String)
        let target = try #require((obj["targets"] as? [[String: Any]])?.first)
        let reading = try #require(target["reading"] as? [String: Any])
        let kernel = try #require(reading["kernel"] as? [String: Any])
        let kd = try #require((kernel["decoders"] as? [[String: Any]])?.first)
        #expect(kd["start"] as? String == "0x490000000")
        #expect(kd["size_bytes"] as? Int == 256 << 20)
        let d0 = try #require((reading["decoders"] as? [[String: Any]])?.first)
        #expect(d0["committed"] as? Bool == false)
        #expect(d0["base"] as? String == "0x0")
        // Every key is snake_case.
        func keys(_ v: Any) -> [String] {
            if let d = v as? [String: Any] { return d.keys + d.values.flatMap(keys) }
            if let a = v as? [Any] { return a.flatMap(keys) }
            return []
        }
        #expect(keys(obj).allSatisfy { $0.allSatisfy { $0.isLowercase || $0.isNumber || $0 == "_" } })
    }
}

/// A function that refuses every write (as `control:` targets do).
final class ReadOnlyFunction: PCIFunction, @unchecked Sendable {
    let inner: any PCIFunction
    init(_ inner: any PCIFunction) { self.inner = inner }
    var address: String { inner.address }
    var configSize: Int { inner.configSize }
    var bars: [BARDescription] { inner.bars }
    var resetMethods: [PCIResetMethod] { [] }
    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 { try inner.configRead(offset, width: width) }
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) { throw .badAccess("read-only") }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 { try inner.barRead(bar, offset: offset, width: width) }
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) { throw .badAccess("read-only") }
    func reset(_ method: PCIResetMethod) throws(PCIError) { throw .resetUnsupported("read-only") }
}
