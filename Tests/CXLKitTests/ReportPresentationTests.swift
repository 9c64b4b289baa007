import Testing
import Foundation
import PCI
import CXL
@testable import CXLKitCommands
import TestSupport

/// Reports speak the spec's quantities (a decoder base as an address, a size in bytes), `-u/--human`
/// turns byte counts into cxl-cli's strings, long waits show a progress line only on a terminal, and an
/// unprivileged sysfs read says root is needed (issue 17).
@Suite("Reports: addresses, sizes, --human, progress, root")
struct ReportPresentationTests {
    /// The QEMU capture before and after the reset: decoder 0 (0x490000000, 256 MiB) lost its commit
    /// and its programming; the diff says so in the spec's terms, not as `Memory Size Low 1->0`.
    @Test func diffShowsTheWipedDecoderAsAnAddressAndAByteCount() throws {
        let a = try CXLKit.loadState(.live(try qemuEndpointCapture("region")))
        let b = try CXLKit.loadState(.live(try qemuEndpointCapture("reset")))
        let diff = CXLStateDiff(a, b)
        let base = try #require(diff.quantities.first { $0.name == "Decoder 0 Base" })
        let size = try #require(diff.quantities.first { $0.name == "Decoder 0 Size" })
        #expect(base.kind == .address && base.a == 0x4_9000_0000)
        #expect(size.kind == .size && size.a == 256 << 20)
        let text = CXLKit.diffState(a, b, json: false).output
        for q in [base, size] where q.changed {
            #expect(text.contains(q.name), "\(text)")
        }
        if size.changed { #expect(text.contains("268435456 (256 MiB)"), "\(text)") }
        #expect(!text.contains("Memory Size Low 1->0") && !text.contains("Memory Base Low 9->0"), "\(text)")
    }

    /// A register diff of a Low register shows the field in place: the bits of the address it holds.
    @Test func lowRegisterFieldsShowTheirBitsInPlace() {
        let key = RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 0 Size Low")
        let f = StateCatalog.changedFields(key, 0x4000_0000, 0x2000_0000)
        #expect(f.map(\.description) == ["Memory Size Low 0x40000000->0x20000000"])
        let bar = RegisterKey(block: StateCatalog.headerBlock, register: "Base Address Register 0")
        #expect(StateCatalog.changedFields(bar, 0x4, 0xE000_0004).map(\.description) == ["Base Address 0->0xe0000000"])
        // Ordinary fields keep their value.
        let control = RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 0 Control")
        #expect(StateCatalog.changedFields(control, 0x0, 0x600).map(\.description) == ["Commit 0->1", "Committed 0->1"])
    }

    /// Quantities are assembled from the Low field and the High register: 0x40_0000_0000 + 0x2000_0000.
    @Test func quantitiesJoinLowAndHighHalves() {
        let regs: [RegisterKey: UInt64] = [
            RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 1 Base Low"): 0x2000_0000 | 0xFFF, // low bits are not address
            RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 1 Base High"): 0x40,
            RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 1 Size Low"): 0x1000_0000,
            RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 1 Size High"): 0x1,
            RegisterKey(block: StateCatalog.dvsecBlock, register: "DVSEC CXL Range 1 Size Low"): 0x4000_0003, // Valid, Active
            RegisterKey(block: StateCatalog.dvsecBlock, register: "DVSEC CXL Range 1 Size High"): 0,
        ]
        let q = StateQuantities.compare({ regs[$0] }, { _ in nil }, decoderCount: 2)
        #expect(q.first { $0.name == "Decoder 1 Base" }?.a == 0x40_2000_0000)
        #expect(q.first { $0.name == "Decoder 1 Size" }?.a == 0x1_1000_0000)
        #expect(q.first { $0.name == "DVSEC CXL Range 1 Size" }?.a == 0x4000_0000)
        #expect(q.first { $0.name == "Decoder 0 Base" } == nil, "absent on both sides: not listed")
        #expect(CXLStateQuantity.text(0x1_1000_0000, .size) == "4563402752 (4352 MiB)")
        #expect(CXLStateQuantity.text(0x40_2000_0000, .address) == "0x4020000000")
    }

    /// The reset report lists the quantities before and after; the JSON carries sizes as integers
    /// (`a_bytes`), addresses as 0x strings, and `-u/--human` turns the byte counts into strings.
    @Test func resetReportAndHumanJSON() throws {
        // A fresh device for each reset: the emulator's CXL Reset completes on its own (monotonic) clock, so a
        // device reused after it would be wiped or not depending on the machine's load.
        func fresh() throws -> any PCIFunction {
            try CXLKit.stateFunction("emulated:gpu-fw-committed", resolver: TargetResolver(), blank: false).function
        }
        let text = try CXLKit.resetState(try fresh(), method: .cxl, preserve: false, memClear: false, stateFile: nil, json: false,
                                         options: CXLStateOptions(clock: VirtualCXLClock())).output
        #expect(text.contains("addresses and sizes (before the reset, after everything):"), "\(text)")
        #expect(text.contains("Decoder 0 Size                      1073741824 (1 GiB)"), "\(text)")
        let json = try CXLKit.resetState(try fresh(), method: .flr, preserve: true, memClear: false, stateFile: nil, json: true,
                                         options: CXLStateOptions(clock: VirtualCXLClock())).output
        #expect(json.contains("\"a_bytes\": 1073741824"), "\(json.prefix(400))")
        #expect(json.contains("\"a\": \"0x4000000000\""))
        let human = try JSONOutput.$human.withValue(true) {
            try CXLKit.resetState(try fresh(), method: .flr, preserve: true, memClear: false, stateFile: nil, json: true,
                                  options: CXLStateOptions(clock: VirtualCXLClock())).output
        }
        #expect(human.contains("\"a_bytes\": \"1.00 GiB\""))
        #expect(!human.contains("\"a_bytes\": 1073741824"))
        #expect(human.contains("\"a\": \"0x4000000000\""), "addresses stay addresses")
    }

    @Test func humanizedTouchesOnlyByteCounts() {
        let v = JSONValue.object([("size_bytes", .uint(256 << 20)), ("table_size", .int(7)), ("granularity_bytes", .int(4096)),
                                  ("nested", .array([.object([("a_bytes", .int(0))])])), ("Desired_Interleave_bytes", .int(256))])
        // Keys are judged by their snake_case form and left as they are.
        #expect(v.humanized().serialized()
                == #"{"size_bytes":"256.00 MiB","table_size":7,"granularity_bytes":"4.00 KiB","nested":[{"a_bytes":"0 B"}],"Desired_Interleave_bytes":"256 B"}"#)
    }

    /// `snake_case` of every key style the commands meet, byte for byte as before the fast path.
    @Test(arguments: [
        ("Memory Space Enable", "memory_space_enable"), ("savedAt", "saved_at"), ("Cache_Capable", "cache_capable"),
        ("SERR# Enable", "serr_enable"), ("HDM_Count", "hdm_count"), ("IW", "iw"), ("dvsecLocked", "dvsec_locked"),
        ("Desired_Interleave_bytes", "desired_interleave_bytes"), ("Lock On Commit", "lock_on_commit"),
        ("  Mem_Clr  ", "mem_clr"), ("DVSEC CXL Range 1 Size", "dvsec_cxl_range_1_size"), ("µ-Ünits", "nits"), ("", ""),
    ])
    func snakeCase(_ input: String, _ expected: String) {
        #expect(JSONKey.snakeCase(input) == expected)
    }

    /// `decode --json` is written one function at a time; the bytes are those of the one-piece document,
    /// with and without `--human`, for several functions and for none.
    @Test func streamedDecodeJSONIsTheDocumentByteForByte() throws {
        let targets = try TargetResolver().resolve(fixtureURL("decode/type2-and-port.txt").path)
            + (try TargetResolver().resolve("emulated:gpu-fw-committed"))
        #expect(targets.count >= 3)
        for human in [false, true] {
            try JSONOutput.$human.withValue(human) {
                for subset in [targets, [], Array(targets.prefix(1))] {
                    let whole = CXLKit.decode(subset, json: true, verbosity: 2)
                    var streamed = ""
                    CXLKit.decodeJSON(subset, verbosity: 2, problems: CXLKit.unreadableRegisters(subset)) { streamed += String(decoding: $0, as: UTF8.self) }
                    #expect(streamed == whole, "human \(human), \(subset.count) functions")
                    _ = try JSONSerialization.jsonObject(with: Data(streamed.utf8))
                }
            }
        }
    }

    /// A CXL Reset on the emulated device reports its waits to the progress reporter; on a terminal the
    /// line is drawn in place and erased; with no terminal or `--quiet` there is no line at all.
    @Test func progressLineOnlyOnATerminal() throws {
        #expect(CommandProgress.forStderr(isTerminal: false) == nil)
        #expect(CommandProgress.$quiet.withValue(true) { CommandProgress.forStderr(isTerminal: true) } == nil)
        #expect(CommandProgress.forStderr(isTerminal: true) != nil)

        final class Sink: @unchecked Sendable { let lock = NSLock(); var text = "" }
        let sink = Sink()
        let line = CommandProgress { s in sink.lock.withLock { sink.text += s } }
        let dev = try CXLKit.stateFunction("emulated:type2", resolver: TargetResolver(), blank: false).function
        _ = try CXLKit.resetState(dev, method: .cxl, preserve: true, memClear: false, stateFile: nil, json: false,
                                  options: CXLStateOptions(clock: VirtualCXLClock(), progress: line.reporter))
        line.finish()
        let shown = sink.lock.withLock { sink.text }
        #expect(shown.hasPrefix("\r\u{1B}[KCXL Reset: quiet time 100 ms"), "\(shown.debugDescription)")
        #expect(shown.hasSuffix("\r\u{1B}[K"), "the line is erased at the end")
        #expect(!shown.contains("\n"), "a progress line never scrolls")
    }

    /// `-u/--human` shapes JSON only: without `--json` it is a usage error on every command that has it, not
    /// silently ignored; with `--json` it runs.
    @Test(arguments: [["decode", "emulated:type2"], ["list", "emulated:type2"], ["check", "emulated:type2"],
                      ["diff", "emulated:type2", "emulated:type2"], ["demo"], ["conform", "emulated:type2"],
                      ["reset", "emulated:type2", "--method", "cxl"], ["restore", "emulated:type2", "/nonexistent"]])
    func humanWithoutJSONIsAUsageError(_ command: [String]) throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        let r = try runProcess("/bin/sh", ["-c", ([exe] + command + ["-u"]).joined(separator: " ") + " 2>&1; echo \"exit=$?\""])
        #expect(r.output.contains("-u/--human formats byte counts in --json output; add --json"), "\(command): \(r.output)")
        #expect(r.output.hasSuffix("exit=64\n"), "\(command): \(r.output)")
        if command[0] == "decode" {
            let ok = try runProcess(exe, command + ["-u", "--json"])
            #expect(ok.status == 0)
        }
    }

    /// `--json`, `-u` and `-q` have one home (`OutputOptionGroup`): every report command's --help lists each
    /// once, with the same words.
    @Test(arguments: ["decode", "list", "check", "diff", "demo", "conform", "reset", "restore"])
    func everyReportCommandListsTheOutputOptionsOnce(_ command: String) throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        let help = try runProcess(exe, [command, "--help"]).output
        let usage = try #require(help.split(separator: "\n").first { $0.hasPrefix("USAGE:") })
        #expect(usage.hasSuffix("[--json] [--human] [--quiet]"), "\(command): \(usage)")
        for option in ["  --json                  Print JSON instead of text", "  -u, --human ", "  -q, --quiet "] {
            #expect(help.components(separatedBy: option).count == 2, "\(command) --help: \(option) not listed once\n\(help)")
        }
    }

    /// The kernel gives an unprivileged reader the first 64 bytes of `config`: decode says root is needed.
    @Test func unprivilegedConfigReadSaysRootIsNeeded() throws {
        let a = try #require(PCIAddress("0000:00:03.0"))
        let why = try #require(SysfsPCIFunction.shortConfigRead(address: a, read: 64, size: 4096, privileged: false))
        #expect(why.contains("only the first 64 of 4096 bytes") && why.contains("need root"))
        #expect(SysfsPCIFunction.shortConfigRead(address: a, read: 4096, size: 4096, privileged: false) == nil)
        #expect(SysfsPCIFunction.shortConfigRead(address: a, read: 256, size: 256, privileged: true) == nil)
        #expect(SysfsPCIFunction.shortConfigRead(address: a, read: 64, size: 256, privileged: true)?.contains("returned 64 of 256") == true)
        #expect(SysfsPCIFunction.shortConfigRead(address: a, read: 12, size: 256, privileged: true)?.contains("only 12 bytes") == true)
    }
}

/// The real thing, where it can be done: as root with setpriv(1) and a PCI function in /sys, run cxlkit as
/// nobody against the kernel's own `config` file (64 readable bytes) and expect the root message.
@Suite("Unprivileged sysfs decode")
struct UnprivilegedSysfsTests {
    @Test func decodeAsNobodySaysRootIsNeeded() throws {
        let devices = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/bus/pci/devices")) ?? []
        guard geteuid() == 0, access("/usr/bin/setpriv", X_OK) == 0, let first = devices.sorted().first,
              let exe = cxlkitExecutable() else {
            print("skipped: needs root, /usr/bin/setpriv, a PCI function under /sys and the cxlkit executable")
            return
        }
        let dir = try TestScratch.directory("unprivileged")
        chmod(TestScratch.root, 0o755)
        chmod(dir, 0o755)
        let copy = dir + "/cxlkit"
        try FileManager.default.copyItem(atPath: exe, toPath: copy)
        let r = try runProcess("/bin/sh", ["-c", "/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups \(copy) decode \(first) 2>&1; echo \"exit=$?\""])
        #expect(r.output.contains("bytes of config space are readable without root"), "\(r.output)")
        #expect(r.output.contains("exit=1"), "\(r.output)")
    }
}
