import Testing
import Foundation
import TestSupport
import PCI
import CXL
@testable import CXLKitCommands

/// Builds a fake sysfs tree: ROOT/bus/pci/devices/ADDR/{config,resource}.
func fakeSysfs(_ functions: [(String, ConfigSpace)]) throws -> URL {
    let root = try temporaryDirectory()
    for (addr, config) in functions {
        let dir = root.appendingPathComponent("bus/pci/devices/" + addr)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(config.bytes).write(to: dir.appendingPathComponent("config"))
    }
    // Something that is not a function.
    try Data().write(to: root.appendingPathComponent("bus/pci/devices/README"))
    return root
}

/// A scheme a later layer might add, proving registration works for any PCIFunction.
struct ImageScheme: TargetScheme {
    let function: ImagePCIFunction
    var scheme: String { "emulated" }
    var summary: String { "test image" }
    func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget] {
        guard rest == "type2" else { throw CommandError("emulated:\(rest): no such emulated device") }
        return [try ResolvedTarget(function: function)]
    }
}

@Suite("cxlkit commands")
struct CommandTests {
    @Test func listMarksCXLFunctions() throws {
        let endpoint = try fixture("qemu-cxl/bound/endpoint/config.bin")
        let root = try fakeSysfs([
            ("0000:0d:00.0", ConfigSpace(bytes: endpoint)),
            ("0000:0c:00.0", ConfigSpace(bytes: try fixture("qemu-cxl/bound/rootport/config.bin"))),
            ("0000:3b:00.0", CXLFixtures.type2Device),
            ("0000:00:01.0", ConfigSpace(bytes: Array(endpoint.prefix(64)) .map { _ in 0 }.enumerated().map { $0.offset < 4 ? [0xF4, 0x1A, 0x45, 0x10][$0.offset] : $0.element })),
        ])
        defer { try? FileManager.default.removeItem(at: root) }
        let text = try CXLKit.list(tree: SysfsTree(root: root.path), json: false)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines[0] == "00:01.0  1af4:1045  class 000000")
        #expect(lines[1].hasPrefix("0c:00.0  8086:7075  class 060400  CXL Root Port DVSECs 3,4,7,8"))
        #expect(lines[2].hasPrefix("0d:00.0  8086:0d93  class 050210  CXL Type 3 device (Cache- Mem+) HDMCount 1 Mem_Enable+"))
        #expect(lines[3] == "\tRange1: 0000000000000000-000000000fffffff [size=256M] Valid+ Active+")
        #expect(lines[4].hasPrefix("3b:00.0  8086:0d93  class 050210  CXL Type 2 device (Cache+ Mem+) HDMCount 2"))
        #expect(lines[5] == "\tRange1: 0000000400000000-00000004ffffffff [size=4G] Valid+ Active+")
        #expect(lines[6] == "\tRange2: 0000000500000000-000000050fffffff [size=256M] Valid+ Active-")
        let json = try CXLKit.list(tree: SysfsTree(root: root.path), json: true)
        #expect(json.contains("\"kind\": \"Type 2 device\""))
        #expect(json.contains("\"hdm_count\": 2"))
        #expect(json.contains("\"cxl\": null"))
    }

    @Test func listErrors() {
        #expect(throws: CommandError.self) { try CXLKit.list(tree: SysfsTree(root: "/nonexistent-sysfs"), json: false) }
    }

    @Test func listThisMachine() throws {
        let text = try CXLKit.list(tree: SysfsTree(), json: false)
        #expect(!text.isEmpty)
    }

    /// Bad input: one clear line, never a trap.
    @Test func badTargets() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        func write(_ name: String, _ bytes: [UInt8]) -> String {
            let p = dir.appendingPathComponent(name).path
            _ = FileManager.default.createFile(atPath: p, contents: Data(bytes))
            return p
        }
        let cases: [(String, String)] = [
            (dir.appendingPathComponent("missing").path, "no such file, not a PCI address"),
            (write("garbage.txt", Array("this is not a dump\n".utf8)), "not an lspci hex dump line"),
            (write("short.txt", Array("00:00.0 x\n00: 86 80 93 0d\n".utf8)), "at least 64"),
            (write("short.bin", [0x86, 0x80, 0, 0xFF, 0x10]), "too short"),
            (write("empty", []), "empty file"),
            ("0000:ff:1f.7", "no such PCI function"),
            ("sysfs:zz", "not a PCI address"),
            (dir.path, "is a directory"),
            ("", "empty target"),
        ]
        for (target, message) in cases {
            do {
                _ = try TargetResolver().resolve(target)
                Issue.record("accepted \(target)")
            } catch {
                #expect(error.message.contains(message), "\(target): \(error.message)")
                #expect(!error.message.contains("\n"))
            }
        }
        var r = TargetResolver()
        r.options.barImages = [0: (0, dir.appendingPathComponent("nope.bin").path)]
        #expect(throws: CommandError.self) { try r.resolve(fixtureURL("qemu-cxl/bound/endpoint/config.bin").path) }
    }

    @Test func registeredSchemeDecodesAnyPCIFunction() throws {
        let fn = ImagePCIFunction(address: "emulated:type2", config: try ConfigSpace(bytes: fixture("qemu-cxl/region/endpoint/config.bin")),
                                  barImages: [0: (0, try fixture("qemu-cxl/region/endpoint/block-component-bar0-0x0.bin"))])
        var r = TargetResolver()
        r.register(ImageScheme(function: fn))
        let t = try r.resolve("emulated:type2")
        #expect(t.count == 1 && t[0].name == "emulated:type2")
        #expect(CXLKit.decode(t, json: false, verbosity: 2).contains("Committed+"))
        #expect(throws: CommandError.self) { try r.resolve("emulated:nope") }
    }

    /// Register Locator entries outside the BAR, or naming no BAR: named, not read.
    @Test func registerLocatorOutsideBAR() throws {
        var b = ConfigBuilder()
        b.addRegisterLocator([(bir: 0, id: 1, offset: 0x10_0000), (bir: 7, id: 1, offset: 0), (bir: 1, id: 1, offset: 0), (bir: 0, id: 1, offset: 0xFFFF_FFFF_FFFF_0000)])
        let fn = ImagePCIFunction(address: "x", config: b.config, barImages: [0: (0, [UInt8](repeating: 0, count: 0x10000))])
        let text = CXLKit.decode([ResolvedTarget(name: "00:00.0", config: b.config, function: fn)], json: false, verbosity: 2)
        #expect(text.contains("lies outside BAR0"))
        #expect(text.contains("Register BIR 7 names no BAR"))
        #expect(text.contains("BAR1 is not implemented"))
        #expect(CXLKit.unreadableRegisters([ResolvedTarget(name: "00:00.0", config: b.config, function: fn)]).count == 4)
        // A dump without BAR images has nothing it failed to read.
        #expect(CXLKit.unreadableRegisters([ResolvedTarget(name: "00:00.0", config: b.config)]).isEmpty)
    }

    @Test func dumpRoundTrips() throws {
        let targets = try TargetResolver().resolve(fixtureURL("qemu-cxl/bound/endpoint/config.bin").path)
        let text = CXLKit.dump(targets)
        #expect(text.hasPrefix("00:00.0 "))
        #expect(try LspciDump.parse(text)[0].config.bytes == fixture("qemu-cxl/bound/endpoint/config.bin"))
        // A multi-function dump decodes every function.
        let two = CXLFixtures.dumpText([CXLFixtures.rootPort, CXLFixtures.type2Device])
        let parsed = try LspciDump.parse(two)
        #expect(parsed.map(\.addressText) == ["00:00.0", "00:00.1"])
    }

    @Test func jsonIsStableAndComplete() throws {
        let t = [ResolvedTarget(name: "3b:00.0", config: CXLFixtures.type2Device)]
        let a = CXLKit.decode(t, json: true, verbosity: 2)
        #expect(a == CXLKit.decode(t, json: true, verbosity: 2))
        for key in ["\"functions\"", "\"capabilities\"", "\"dvsec\"", "\"dvsec_cxl_capability\"", "\"cache_capable\": true",
                    "\"hdm_count\": {", "\"ranges\"", "\"memory_info_valid\": true", "\"blocks\"", "\"register_bir\": 0",
                    "\"dvsec_cxl_lock\"", "\"config_lock\": true", "\"dvsec_cxl_capability3\"", "\"findings\": []",
                    "\"succeeded\": true", "\"problems\": []", "\"version\": \"\(CXLKit.version)\""] {
            #expect(a.contains(key), "\(key)")
        }
    }

    /// Hostile config spaces with CXL DVSECs (lengths past the end, locator entries
    /// everywhere) through the whole CXL-aware decoder, with and without BAR access.
    @Test func hostileCXLConfigSpacesNeverTrap() {
        var rng = SplitMix64(state: 7)
        let decoder = CXLKit.decoder()
        for i in 0..<1500 {
            var b = ConfigBuilder()
            for _ in 0..<Int(rng.next() % 6) {
                let id = UInt16(rng.next() % 11)
                let len = Int(rng.next() % 0x1000)
                let off = b.addDVSEC(vendor: rng.next() % 4 == 0 ? 0x1234 : cxlDVSECVendorID, id: id, revision: rng.next() % 4, length: len, allocate: 0x40)
                for k in 0x0A..<0x40 where off + k < 4096 { b.config.write(off + k, width: 1, value: rng.next()) }
            }
            var c = b.config
            let cut = [4096, 4096, 256, 64, Int(rng.next() % 4096)][Int(rng.next() % 5)]
            c = ConfigSpace(bytes: Array(c.bytes.prefix(max(cut, 0))))
            let bar = [UInt8](repeating: 0, count: Int(rng.next() % 0x3000))
            let fn: (any PCIFunction)? = rng.next() & 1 == 0 ? nil : ImagePCIFunction(address: "x", config: c, barImages: [Int(rng.next() % 6): (0, bar)])
            let s = DecodeSubject(name: "00:00.0", config: c, function: fn)
            _ = decoder.text(s, verbosity: Int(rng.next() % 4))
            _ = decoder.json(s).serialized()
            if i % 500 == 0 { _ = CXLKit.listJSON([ListedFunction(address: PCIAddress("00:00.0")!, config: c)]) }
        }
    }
}

@Suite("sysfs backend on a fake tree")
struct SysfsFakeTreeTests {
    /// config, resource and resource0 as sysfs lays them out: decode reads the
    /// component registers through the mmapped resource file.
    @Test func decodeReadsComponentRegistersThroughResourceFile() throws {
        let root = try fakeSysfs([("0000:0d:00.0", ConfigSpace(bytes: try fixture("qemu-cxl/region/endpoint/config.bin")))])
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("bus/pci/devices/0000:0d:00.0")
        try Data(try fixture("qemu-cxl/region/endpoint/resource.txt")).write(to: dir.appendingPathComponent("resource"))
        try Data(try fixture("qemu-cxl/region/endpoint/block-component-bar0-0x0.bin")).write(to: dir.appendingPathComponent("resource0"))
        var r = TargetResolver()
        r.options.sysfsRoot = root.path
        let t = try r.resolve("0d:00.0")
        #expect(t[0].function?.bars.map(\.index) == [0, 2, 4])
        #expect(t[0].function?.bars.first?.size == 0x10000)
        let text = CXLKit.decode(t, json: false, verbosity: 2)
        #expect(text.contains("\tRegion 0: Memory at fe600000 (64-bit, non-prefetchable) [size=64K]\n"))
        #expect(text.contains("Decoder0:\tBase 0000000490000000 Size 0000000010000000 [size=256M]"))
        // resource2 is missing: reading BAR2 fails with a message, not a trap.
        #expect(throws: PCIError.self) { try t[0].function!.barRead(2, offset: 0, width: 4) }
        #expect(throws: PCIError.self) { try t[0].function!.barRead(0, offset: 0x10000, width: 4) }
        #expect(throws: PCIError.self) { try t[0].function!.barRead(0, offset: 2, width: 4) }
        #expect(try t[0].function!.configRead(0, width: 4) == 0x0d93_8086)
        // A resource file shorter than the BAR `resource` declares: an error, not SIGBUS.
        try Data(try fixture("qemu-cxl/region/endpoint/block-component-bar0-0x0.bin").prefix(0x1000)).write(to: dir.appendingPathComponent("resource0"))
        #expect(throws: PCIError.self) { try t[0].function!.barRead(0, offset: 0x1000, width: 4) }
        #expect(CXLKit.decode(t, json: false, verbosity: 2).contains("!! error at 0x1000: cannot read the CXL capability header: out of range:"))
        // ... and decode reports it as a one-line error (the CLI exits 1).
        let problems = CXLKit.unreadableRegisters(t)
        #expect(problems.count == 1 && problems[0].hasPrefix("0d:00.0: component registers at BAR0+0x0: cannot read the CXL capability header"))
    }
}

/// lspci's habits (issue 17): -s selectors, -D, names as lspci prints them.
@Suite struct LspciHabitTests {
    @Test(arguments: [
        ("3b:00.0", "0000:3b:00.0", true), ("3b:00.0", "0000:3b:00.1", false), ("3b:", "0000:3b:1f.7", true),
        (".1", "0000:3b:00.1", true), (".1", "0000:3b:00.0", false), ("00.0", "0000:3b:00.0", true),
        ("0001::", "0001:3b:00.0", true), ("0001::", "0000:3b:00.0", false), ("", "0000:3b:00.0", true),
        ("3b:02", "0000:3b:02.3", true),
    ])
    func selectorsMatchAsLspciSMatches(selector: String, address: String, matches: Bool) throws {
        #expect(try PCISelector(selector).matches(PCIAddress(address)!) == matches)
    }

    @Test(arguments: ["3b:00.8", "3b:20.0", "1ff:00.0", "x:00.0", "1:2:3:4", "10000::"])
    func badSelectorsAreErrors(selector: String) {
        #expect(throws: PCISelector.ParseError.self) { try PCISelector(selector) }
    }

    @Test func aMultiFunctionDumpDecodesOneFunctionWithS() throws {
        let dir = try temporaryDirectory()
        let file = dir.appendingPathComponent("two.txt").path
        try CXLFixtures.dumpText([CXLFixtures.rootPort, CXLFixtures.type2Device]).write(toFile: file, atomically: false, encoding: .utf8)
        let all = try TargetResolver().resolve(file)
        #expect(all.count == 2)
        let one = try TargetOptions.select(all, ".1")
        #expect(one.map(\.name) == ["00:00.1"])
        #expect(throws: CommandError.self) { try TargetOptions.select(all, "01:00.0") }
    }
}

/// The executable's shell habits (issue 17), through the real `cxlkit`.
@Suite struct CLIHabitTests {
    @Test func resetMethodBusIsASecondaryBusReset() throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        let r = try runProcess(exe, ["reset", "emulated:type2", "--method", "bus", "--preserve", "--json"])
        #expect(r.status == 0)
        #expect(r.output.contains("\"method\": \"sbr\""))
        #expect(try runProcess(exe, ["reset", "emulated:type2", "--method", "pci"]).status == 64)
    }

    @Test func versionAndHelpListTheTargetForms() throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        #expect(try runProcess(exe, ["--version"]).output == CXLKit.version + "\n")
        for command in [["decode"], ["dump"], ["save"], ["restore"], ["diff"], ["reset"], ["hdm", "commit"], ["check"], ["metrics"], ["exporter"]] {
            let help = try runProcess(exe, command + ["--help"]).output
            for scheme in TargetResolver().schemes.keys { #expect(help.contains("  \(scheme):..."), "\(command) --help lacks \(scheme):") }
        }
    }

    @Test func selectorErrorsAreOneLineAndExitOne() throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        #expect(try runProcess(exe, ["decode", "emulated:type2", "-s", "3b:00.9"]).status == 1)
        #expect(try runProcess(exe, ["decode", "emulated:type2", "-s", "01:00.0"]).status == 1)
        #expect(try runProcess(exe, ["decode", "emulated:type2", "-s", "00.0"]).status == 0)
    }
}

@Suite struct BarImageOptionTests {
    @Test func barImagesOnATargetThatIgnoresThemAreAnError() throws {
        var r = TargetResolver()
        r.options.barImages = [0: (offset: 0, path: "/dev/null")]
        #expect(throws: CommandError("--bar applies to file targets (a dump or config-space file); emulated:type2 reaches its own BARs")) {
            try r.resolve("emulated:type2")
        }
        #expect(throws: CommandError.self) { try r.resolve("0000:00:00.0") }
        // A file target takes them.
        #expect(try r.resolve(fixtureURL("qemu-cxl/bound/endpoint/config.bin").path).first?.function != nil)
    }
}
