import Testing
import Foundation
import TestSupport
import PCI
import CXL
@testable import CXLKitCommands

/// pciutils' lspci (3.9.0 on Debian bookworm), the oracle of the parity tests.
///
/// The fixed-corpus tests need no lspci: for every deterministic input their lspci output is committed under
/// Tests/Fixtures/lspci-expected/, keyed by a hash of the input bytes and arguments. Where lspci is installed,
/// its live output is used and checked against the committed one (a stale file fails with the command that
/// regenerates it: scripts/regenerate-lspci-expected). The randomized differential tests need the real lspci
/// and are skipped with one line without it, except under CXLKIT_REQUIRE_LSPCI=1 (set by .ci/run), where a
/// missing lspci is a failure, so CI never skips them.
enum Lspci {
    static let path: String? = ["/usr/bin/lspci", "/usr/sbin/lspci", "/sbin/lspci", "/bin/lspci"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }
    static let required = ProcessInfo.processInfo.environment["CXLKIT_REQUIRE_LSPCI"] == "1"
    static let regenerate = ProcessInfo.processInfo.environment["CXLKIT_REGENERATE_LSPCI"] == "1"
    /// Whether the tests that need a live lspci run: it is installed, or CI requires it (and fails without it).
    static let live = path != nil || required
    static let skipReason: Comment = "lspci not installed (apt-get install pciutils): randomized lspci differential test skipped"

    static func run(_ args: [String]) throws -> String {
        guard let path else { throw CommandError("lspci not found: install pciutils 3.9.0 (apt-get install pciutils) to run the lspci differential tests") }
        return try runProcess(path, args).output
    }

    static var version: String? { try? run(["--version"]).trimmingCharacters(in: .whitespacesAndNewlines) }

    /// Where the committed output for `args` on the file holding `input` lives: FNV-1a over the input bytes and
    /// the arguments (the file's own path is not part of the key: it is a temporary name in most tests).
    static func expectedURL(input: [UInt8], args: [String]) -> URL {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in input + Array(("\u{0}" + args.joined(separator: "\u{0}")).utf8) { h = (h ^ UInt64(b)) &* 0x0100_0000_01B3 }
        return fixtureURL("lspci-expected/" + hex(h, digits: 16) + ".txt")
    }

    /// lspci's output for `args` + `-F file`: live where lspci is installed (checked against the committed copy),
    /// the committed copy otherwise.
    static func output(file: String, _ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let input = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        let url = expectedURL(input: input, args: args)
        let committed = try? String(contentsOf: url, encoding: .utf8)
        guard path != nil else {
            guard let committed else {
                throw CommandError("no committed lspci output for \(args) on \(file) (\(url.lastPathComponent)): run scripts/regenerate-lspci-expected where lspci 3.9.0 is installed")
            }
            return committed
        }
        let live = try run(args + ["-F", file])
        if regenerate {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try live.write(to: url, atomically: false, encoding: .utf8)
        } else {
            #expect(committed == live, "committed lspci output \(url.lastPathComponent) for \(args) is stale or missing: run scripts/regenerate-lspci-expected",
                    sourceLocation: sourceLocation)
        }
        return live
    }
}

/// One `Capabilities:` line and the detail lines under it.
struct CapBlock: Equatable {
    var title: String
    var details: [String]
}

/// Splits lspci-style text into functions, each a list of capability blocks.
func capabilityBlocks(_ text: String) -> [[CapBlock]] {
    var functions: [[CapBlock]] = []
    var inBlock = false
    for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
        if line.isEmpty { inBlock = false; continue }
        if !line.hasPrefix("\t") { functions.append([]); inBlock = false; continue }
        if line.hasPrefix("\tCapabilities: ") {
            functions[functions.count - 1].append(CapBlock(title: line, details: []))
            inBlock = true
        } else if line.hasPrefix("\t\t"), inBlock {
            functions[functions.count - 1][functions[functions.count - 1].count - 1].details.append(line)
        } else {
            inBlock = false
        }
    }
    return functions
}

/// Per function, the lines outside capability blocks: the header line, Subsystem,
/// Control, Status, Latency, Interrupt, Regions, bridge windows, BridgeCtl.
func headerSections(_ text: String) -> [[String]] {
    var functions: [[String]] = []
    var inBlock = false
    for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
        if line.isEmpty { inBlock = false; continue }
        if !line.hasPrefix("\t") { functions.append([line]); inBlock = false; continue }
        if line.hasPrefix("\tCapabilities: ") { inBlock = true; continue }
        if line.hasPrefix("\t\t") && inBlock { continue }
        inBlock = false
        // Our additions, which lspci does not print.
        if line.hasPrefix("\tCXL Component Registers:") || line.hasPrefix("\t!! ") { inBlock = true; continue }
        functions[functions.count - 1].append(line)
    }
    return functions
}

/// The ID of a standard capability from lspci's capability line (`[40] Vital Product Data`), nil for extended ones.
func standardCapabilityID(_ title: String) -> UInt16? {
    guard let open = title.firstIndex(of: "["), let close = title.firstIndex(of: "]"),
          !title[open..<close].contains(" ") else { return nil }   // "[100 v1]" is extended
    let name = title[title.index(after: close)...].dropFirst()
    let prefixes: [(String, UInt16)] = [("AGP version", 0x02), ("Vital Product Data", 0x03), ("PCI-X", 0x07), ("HyperTransport", 0x08),
                                         ("SATA HBA", 0x12), ("PCI Advanced Features", 0x13), ("Enhanced Allocation", 0x14)]
    return prefixes.first { name.hasPrefix($0.0) }?.1
}

/// True when `a` appears in `b` in order (b may hold extra lines between).
func isOrderedSubsequence(_ a: [String], of b: [String]) -> Bool {
    var i = 0
    for line in b where i < a.count && line == a[i] { i += 1 }
    return i == a.count
}

/// What one comparison covered, for the report.
struct ParityStats {
    var functions = 0, capabilities = 0, detailBlocks = 0, detailLines = 0, cxlDVSECs = 0, headerLines = 0
}

/// Compares our `decode -vvv` with `lspci -F FILE -vvv` for every function in `file`:
/// every capability line equal (offset, version, name, and lspci's one-line summary),
/// and for every capability we decode in detail, lspci's detail lines appear in ours
/// in order. Returns what was compared.
@discardableResult
func compareWithLspci(file: String, verbosity: Int = 3, compareHeaders: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws -> ParityStats {
    let flag = "-" + String(repeating: "v", count: verbosity)
    let theirsText = try Lspci.output(file: file, [flag], sourceLocation: sourceLocation)
    let theirs = capabilityBlocks(theirsText)
    let targets = try TargetResolver().resolve("file:" + file)
    let ours = capabilityBlocks(CXLKit.decode(targets, json: false, verbosity: verbosity))
    var stats = ParityStats()
    #expect(ours.count == theirs.count, "function count for \(file)", sourceLocation: sourceLocation)
    if compareHeaders {
        let oh = headerSections(CXLKit.decode(targets, json: false, verbosity: verbosity))
        let th = headerSections(theirsText)
        #expect(oh == th, "header lines of \(file)", sourceLocation: sourceLocation)
        stats.headerLines += th.reduce(0) { $0 + $1.count }
    }
    for (fi, (o, t)) in zip(ours, theirs).enumerated() {
        stats.functions += 1
        #expect(o.map(\.title) == t.map(\.title), "capability lines of function \(fi) in \(file)", sourceLocation: sourceLocation)
        for (ob, tb) in zip(o, t) where ob.title == tb.title {
            stats.capabilities += 1
            if tb.title.contains("Vendor=1e98") { stats.cxlDVSECs += 1 }
            // Capabilities whose details cxlkit does not print (AGP, VPD, PCI-X, ...): line only.
            if let id = standardCapabilityID(tb.title), PCIDecoder.standardCapabilitiesWithoutDetails.contains(id) { continue }
            stats.detailBlocks += 1
            stats.detailLines += tb.details.count
            // CXL DVSECs: lspci's lines in order among ours (we add lines); everything else: equal.
            let ok = tb.title.contains("Vendor=1e98") ? isOrderedSubsequence(tb.details, of: ob.details) : tb.details == ob.details
            #expect(ok,
                    "\(tb.title.trimmingCharacters(in: .whitespaces)) in \(file):\nlspci:\n\(tb.details.joined(separator: "\n"))\nours:\n\(ob.details.joined(separator: "\n"))",
                    sourceLocation: sourceLocation)
        }
    }
    return stats
}

func temporaryDirectory() throws -> URL {
    URL(fileURLWithPath: try TestScratch.directory("cxlkit-tests"))
}

@Suite("lspci 3.9.0 parity", .serialized)
struct LspciParityTests {
    @Test func lspciIsInstalledWhereRequired() throws {
        guard Lspci.path != nil else {
            #expect(!Lspci.required, "CXLKIT_REQUIRE_LSPCI=1 but lspci is not installed: install pciutils 3.9.0")
            print("lspci not installed: parity tests use the committed lspci output; the randomized differential tests are skipped")
            return
        }
        let v = try #require(Lspci.version)
        #expect(v.contains("3.9."), "parity targets pciutils 3.9.x; found \(v)")
    }

    @Test func synthesizedCXLDumps() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var total = ParityStats()
        for (name, fns) in CXLFixtures.all {
            let file = dir.appendingPathComponent(name + ".txt").path
            try CXLFixtures.dumpText(fns).write(toFile: file, atomically: false, encoding: .utf8)
            for v in 1...2 { try compareWithLspci(file: file, verbosity: v) }
            let s = try compareWithLspci(file: file)
            total.functions += s.functions; total.cxlDVSECs += s.cxlDVSECs; total.detailLines += s.detailLines
        }
        // Every CXL DVSEC ID appears, and lspci printed something to compare.
        #expect(total.cxlDVSECs >= 40)
        #expect(total.detailLines >= 120)
    }

    @Test(arguments: ["pristine", "bound", "region", "reset"])
    func qemuCaptures(state: String) throws {
        for fn in ["endpoint", "rootport"] {
            // The binary sysfs capture, written out by our dump writer, then read by lspci.
            let dir = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: dir) }
            let file = dir.appendingPathComponent("dump.txt").path
            let targets = try TargetResolver().resolve(fixtureURL("qemu-cxl/\(state)/\(fn)/config.bin").path)
            try CXLKit.dump(targets).write(toFile: file, atomically: false, encoding: .utf8)
            let s = try compareWithLspci(file: file)
            #expect(s.cxlDVSECs >= 3)
            // And the capture's own lspci -xxxx file, at every verbosity.
            for v in 1...3 { try compareWithLspci(file: fixtureURL("qemu-cxl/\(state)/\(fn)/lspci-xxxx.txt").path, verbosity: v) }
        }
    }

    /// The capture's `lspci -vvv` (taken inside the guest) against our decode of its config.bin.
    @Test func qemuCapturedLspciOutput() throws {
        for state in ["pristine", "bound", "region", "reset"] {
            for fn in ["endpoint", "rootport"] {
                let theirs = capabilityBlocks(String(decoding: try fixture("qemu-cxl/\(state)/\(fn)/lspci-vvv.txt"), as: UTF8.self))
                let ours = capabilityBlocks(CXLKit.decode(try TargetResolver().resolve(fixtureURL("qemu-cxl/\(state)/\(fn)/config.bin").path), json: false, verbosity: 3))
                #expect(ours.first?.map(\.title) == theirs.first?.map(\.title), "\(state)/\(fn)")
                for (ob, tb) in zip(ours.first ?? [], theirs.first ?? []) {
                    // In-guest lspci read sysfs: capability lines are the same as from a dump.
                    let ok = tb.title.contains("Vendor=1e98") ? isOrderedSubsequence(tb.details, of: ob.details) : tb.details == ob.details
                    #expect(ok, "\(state)/\(fn): \(tb.title)")
                }
            }
        }
    }

    /// This machine's own PCI functions (their config files under /sys), through
    /// `cxlkit dump` and `lspci -F`.
    @Test(.enabled(if: Lspci.live, Lspci.skipReason)) func thisMachinesDevices() throws {
        let tree = SysfsTree()
        let addrs = (try? tree.functionAddresses()) ?? []
        try #require(!addrs.isEmpty, "no PCI functions under /sys/bus/pci/devices")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        for a in addrs {
            let targets = try TargetResolver().resolve("sysfs:" + a.description)
            let file = dir.appendingPathComponent(a.description + ".txt").path
            try CXLKit.dump(targets).write(toFile: file, atomically: false, encoding: .utf8)
            for v in 1...3 { try compareWithLspci(file: file, verbosity: v) }
        }
    }
}

@Suite("Generated fixture files")
struct GeneratedFixtureTests {
    /// The synthesized dumps are also committed under Tests/Fixtures/decode/ so they
    /// can be handed to lspci and cxlkit by hand; this keeps them in step with the
    /// builder. CXLKIT_REGENERATE=1 rewrites them.
    @Test func committedDumpsMatchTheBuilder() throws {
        let regenerate = ProcessInfo.processInfo.environment["CXLKIT_REGENERATE"] == "1"
        for (name, fns) in CXLFixtures.all {
            let url = fixtureURL("decode/\(name).txt")
            let text = CXLFixtures.dumpText(fns)
            if regenerate {
                try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                try text.write(to: url, atomically: false, encoding: .utf8)
            }
            #expect((try? String(contentsOf: url, encoding: .utf8)) == text, "\(url.path) is stale: run CXLKIT_REGENERATE=1 swift test --filter GeneratedFixture")
        }
    }
}

@Suite("lspci 3.9.0 differential: PCI Express and DOE capabilities", .serialized)
struct LspciDifferentialTests {
    /// Random PCI Express capability contents for every port type and both versions,
    /// plus a DOE capability, at random device/function numbers: every line lspci
    /// prints for the function must equal ours (besides our additions).
    @Test(.enabled(if: Lspci.live, Lspci.skipReason), arguments: [1, 2, 3, 4, 5, 6])
    func randomExpressCapabilities(seed: UInt64) throws {
        var rng = SplitMix64(state: seed &* 0x1234_5678_9ABC)
        var functions: [ConfigSpace] = []
        for _ in 0..<64 {
            let type = [0, 1, 4, 5, 6, 7, 8, 9, 10, 0, 4, 6][Int(rng.next() % 12)]
            var b = ConfigBuilder(classCode: type == 4 || type == 5 || type == 6 ? 0x0604_00 : 0x0502_10, portType: UInt64(type),
                                  headerType: type == 4 || type == 5 || type == 6 || type == 7 || type == 8 ? 1 : 0)
            // Random registers 0x04..0x3B of the PCI Express capability (the header and flags stay).
            for off in stride(from: 0x44, to: 0x7C, by: 4) { b.config.write(off, width: 4, value: rng.next()) }
            var flags = b.config.read16(0x42)!
            flags = (flags & 0x00F0) | UInt16(rng.next() % 3) | UInt16(rng.next() & 0x3F00)
            b.config.write(0x42, width: 2, value: UInt64(flags))
            if rng.next() % 2 == 0 {
                // A memory BAR on some endpoints (changes lspci's AtomicOpsCap line).
                b.config.write(0x10, width: 4, value: 0xFE00_0000 | (rng.next() & 0x8))
            }
            let doe = b.addExtended(id: ExtendedCapabilityID.dataObjectExchange.rawValue, size: 0x18)
            for off in [4, 8, 12] { b.config.write(doe + off, width: 4, value: rng.next()) }
            functions.append(b.config)
        }
        let text = functions.enumerated().map { i, c in
            LspciDump.format(address: "00:\(hex(i / 8, digits: 2)).\(i % 8)", description: "x", config: c)
        }.joined()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("express.txt").path
        try text.write(toFile: file, atomically: false, encoding: .utf8)
        for v in 2...3 {
            let theirs = try Lspci.run(["-F", file, "-" + String(repeating: "v", count: v)])
            let ours = CXLKit.decode(try TargetResolver().resolve(file), json: false, verbosity: v)
            let t = capabilityBlocks(theirs), o = capabilityBlocks(ours)
            #expect(t.count == o.count)
            for (fi, (tf, of)) in zip(t, o).enumerated() {
                #expect(tf.map(\.title) == of.map(\.title), "function \(fi)")
                for (tb, ob) in zip(tf, of) where tb.details != ob.details {
                    Issue.record("function \(fi) seed \(seed) -\(v): \(tb.title)\nlspci:\n\(tb.details.joined(separator: "\n"))\nours:\n\(ob.details.joined(separator: "\n"))")
                }
            }
            #expect(headerSections(ours) == headerSections(theirs))
        }
    }
}

@Suite("lspci 3.9.0 differential: other capabilities", .serialized)
struct LspciCapabilityDifferentialTests {
    /// Random contents for MSI and the extended capabilities cxlkit details (AER, ACS,
    /// ARI, ATS, PRI, PASID, SR-IOV, LTR, Secondary PCIe, L1 PM Substates, PTM, DPC,
    /// TPH, DOE, Resizable BAR, DSN and vendor-specific titles): lspci's and cxlkit's lines must be equal.
    @Test(.enabled(if: Lspci.live, Lspci.skipReason), arguments: [11, 12, 13, 14, 15, 16, 17, 18])
    func randomCapabilities(seed: UInt64) throws {
        var rng = SplitMix64(state: seed &* 0x9E37_79B9)
        let ids: [UInt16] = [0x01, 0x0D, 0x0E, 0x0F, 0x13, 0x1B, 0x10, 0x18, 0x19, 0x1E, 0x1F, 0x1D, 0x17, 0x2E, 0x03, 0x15, 0x24, 0x15, 0x02, 0x09, 0x05, 0x12, 0x07, 0x0B]
        var functions: [ConfigSpace] = []
        for n in 0..<48 {
            let type: UInt64 = [0, 4, 6, 9][n % 4]
            var b = ConfigBuilder(classCode: type == 4 || type == 6 ? 0x0604_00 : 0x0502_10, portType: type, headerType: type == 0 || type == 9 ? 0 : 1)
            // An MSI capability after the PCI Express one.
            b.config.write(0x41, width: 1, value: 0x80)
            b.config.write(0x80, width: 1, value: 0x05)
            b.config.write(0x82, width: 2, value: rng.next() & 0x1FF)
            for off in stride(from: 0x84, to: 0x98, by: 4) { b.config.write(off, width: 4, value: rng.next()) }
            for id in ids.shuffled(using: &rng).prefix(6) {
                let o = b.addExtended(id: id, version: 1 + rng.next() % 2, size: 0x40)
                for off in stride(from: 4, to: 0x40, by: 4) { b.config.write(o + off, width: 4, value: rng.next()) }
                // Resizable BAR: a valid BAR count most of the time.
                if id == 0x15 || id == 0x24, rng.next() % 4 != 0 {
                    let low = UInt64(b.config.read8(o + 8) ?? 0) & 0x1F
                    let count: UInt64 = 1 + rng.next() % 6
                    b.config.write(o + 8, width: 1, value: low | (count << 5))
                }
            }
            functions.append(b.config)
        }
        let text = functions.enumerated().map { i, c in
            LspciDump.format(address: "\(hex(i + 1, digits: 2)):00.0", description: "x", config: c)
        }.joined()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("caps.txt").path
        try text.write(toFile: file, atomically: false, encoding: .utf8)
        let theirs = capabilityBlocks(try Lspci.run(["-F", file, "-vvv"]))
        let ours = capabilityBlocks(CXLKit.decode(try TargetResolver().resolve(file), json: false, verbosity: 3))
        #expect(theirs.count == ours.count)
        for (fi, (tf, of)) in zip(theirs, ours).enumerated() {
            #expect(tf.map(\.title) == of.map(\.title), "function \(fi)")
            for (tb, ob) in zip(tf, of) where tb.details != ob.details {
                Issue.record("function \(fi) seed \(seed): \(tb.title)\nlspci:\n\(tb.details.joined(separator: "\n"))\nours:\n\(ob.details.joined(separator: "\n"))")
            }
        }
    }
}

@Suite("lspci 3.9.0 differential: headers and standard capabilities", .serialized)
struct LspciHeaderDifferentialTests {
    /// Random Type 0 and Type 1 header registers (Command, Status, Cache Line Size, Latency, BIST, BARs, bus
    /// numbers, bridge windows, Secondary Status, Expansion ROM, Interrupt Line/Pin, Min_Gnt/Max_Lat, Bridge
    /// Control) and random Power Management, MSI-X, Bridge Subsystem Vendor ID, AGP, Enhanced Allocation and
    /// vendor-specific (virtio on every third function) capabilities behind the PCI Express one: lspci's header
    /// lines and capability lines must equal cxlkit's at -v, -vv and -vvv.
    @Test(.enabled(if: Lspci.live, Lspci.skipReason), arguments: [21, 22, 23, 24])
    func randomHeadersAndStandardCapabilities(seed: UInt64) throws {
        var rng = SplitMix64(state: seed &* 0x2545_F491_4F6C_DD1D)
        var functions: [ConfigSpace] = []
        for n in 0..<48 {
            let bridge = n % 2 == 1, virtio = n % 3 == 0
            var b = ConfigBuilder(vendor: virtio ? 0x1AF4 : 0x8086, device: virtio ? 0x1041 : 0x0D93,
                                  classCode: bridge ? 0x0604_00 : 0x0502_10, portType: bridge ? 4 : 0, headerType: bridge ? 1 : 0)
            b.config.write(PCIHeader.command, value: rng.next())
            b.config.write(PCIHeader.status, value: rng.next() | PCIHeader.Status.capabilitiesList.mask)
            b.config.write(PCIHeader.cacheLineSize, value: rng.next())
            b.config.write(PCIHeader.latencyTimer, value: rng.next())
            b.config.write(PCIHeader.bist, value: rng.next() % 3 == 0 ? rng.next() : 0)
            // BARs, and on a bridge its bus numbers, windows and Secondary Status (0x10-0x33); a type 0 header
            // keeps its Subsystem IDs.
            for off in stride(from: 0x10, to: bridge ? 0x34 : 0x28, by: 4) { b.config.write(off, width: 4, value: rng.next()) }
            if rng.next() % 4 == 0 {
                // A narrow or wide I/O and prefetchable window of each type, so both forms and the unknown types show.
                b.config.write(PCIHeader.Type1.ioBase, value: rng.next() & 0xF1)
                b.config.write(PCIHeader.Type1.prefetchableMemoryBase, value: rng.next() & 0xFFF1)
            }
            b.config.write(PCIHeader.expansionROM(offset: bridge ? PCIHeader.type1ExpansionROMOffset : PCIHeader.type0ExpansionROMOffset), value: rng.next())
            b.config.write(PCIHeader.interruptLine, value: rng.next())
            b.config.write(PCIHeader.interruptPin, value: rng.next() % 5)
            b.config.write(0x3E, width: 2, value: rng.next())
            // Standard capabilities after the PCI Express one (0x40), 0x18 bytes apart.
            let ids: [CapabilityID] = [.powerManagement, .msix, .bridgeSubsystemVendorID, .agp, .enhancedAllocation, .vendorSpecific]
            let chosen = Array(ids.shuffled(using: &rng).prefix(1 + Int(rng.next() % 4)))
            var previous = 0x40
            for (i, id) in chosen.enumerated() {
                let o = 0x80 + 0x18 * i
                for off in stride(from: 0, to: 0x18, by: 4) { b.config.write(o + off, width: 4, value: rng.next()) }
                b.config.write(capabilityHeaderRegisters[0], base: o, value: UInt64(id.rawValue))
                b.config.write(capabilityHeaderRegisters[1], base: o, value: 0)
                b.config.write(capabilityHeaderRegisters[1], base: previous, value: UInt64(o))
                // No EA entries: lspci 3.9 does not survive random ones.
                if id == .enhancedAllocation { b.config.write(EnhancedAllocationCapability.entries, base: o, value: rng.next() & ~EnhancedAllocationCapability.numEntries.mask) }
                if id == .vendorSpecific {
                    b.config.write(VendorSpecificCapability.length, base: o, value: [8, 16, 20, 24][Int(rng.next() % 4)])
                    b.config.write(VendorSpecificCapability.Virtio.configType, base: o, value: rng.next() % 6)
                }
                previous = o
            }
            functions.append(b.config)
        }
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("headers.txt").path
        try CXLFixtures.dumpText(functions).write(toFile: file, atomically: false, encoding: .utf8)
        for v in 1...3 {
            let theirsText = try Lspci.run(["-F", file, "-" + String(repeating: "v", count: v)])
            let oursText = CXLKit.decode(try TargetResolver().resolve(file), json: false, verbosity: v)
            for (fi, (t, o)) in zip(headerSections(theirsText), headerSections(oursText)).enumerated() where t != o {
                Issue.record("function \(fi) seed \(seed) -\(v):\nlspci:\n\(t.joined(separator: "\n"))\nours:\n\(o.joined(separator: "\n"))")
            }
            let theirs = capabilityBlocks(theirsText), ours = capabilityBlocks(oursText)
            #expect(theirs.count == ours.count)
            for (fi, (tf, of)) in zip(theirs, ours).enumerated() {
                #expect(tf.map(\.title) == of.map(\.title), "function \(fi) seed \(seed) -\(v)")
                // Capabilities whose details cxlkit does not print (AGP, Enhanced Allocation): their lines only.
                for (tb, ob) in zip(tf, of) where tb.details != ob.details && !(standardCapabilityID(tb.title).map(PCIDecoder.standardCapabilitiesWithoutDetails.contains) ?? false) {
                    Issue.record("function \(fi) seed \(seed) -\(v): \(tb.title)\nlspci:\n\(tb.details.joined(separator: "\n"))\nours:\n\(ob.details.joined(separator: "\n"))")
                }
            }
        }
    }
}

/// Through sysfs, lspci takes IRQs, BAR sizes and bridge windows from the OS; cxlkit
/// does the same, so whole `-vvv` outputs compare equal (Kernel lines aside).
@Suite("lspci 3.9.0 parity through sysfs", .serialized)
struct LspciSysfsParityTests {
    static func strip(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            .filter { l in !["\tKernel driver in use:", "\tKernel modules:", "\tPhysical Slot:", "\tNUMA node:", "\tIOMMU group:", "\tDevice tree node:"].contains { l.hasPrefix($0) } }
    }

    /// Our lines minus what we add (CXL extra lines and the component-register section).
    static func withoutAdditions(_ ours: [String], like theirs: [String]) -> [String] {
        var out: [String] = []
        var skipping = false
        for l in ours {
            if l.hasPrefix("\tCXL Component Registers:") || l.hasPrefix("\t!! ") { skipping = true; continue }
            if skipping && l.hasPrefix("\t\t") { continue }
            skipping = false
            out.append(l)
        }
        // CXL DVSEC extra lines: keep only lines lspci also has, in order.
        var result: [String] = []
        var j = 0
        for l in out {
            if j < theirs.count && l == theirs[j] { result.append(l); j += 1 } else if !(l.hasPrefix("\t\t")) { result.append(l) }
        }
        return result
    }

    @Test(arguments: ["pristine", "bound", "region", "reset"])
    func qemuCapturesAsAFakeSysfsTree(state: String) throws {
        for (fn, irq) in [("endpoint", "0"), ("rootport", "11")] {
            let captured = String(decoding: try fixture("qemu-cxl/\(state)/\(fn)/lspci-vvv.txt"), as: UTF8.self)
            let addr = "0000:" + captured.prefix { $0 != " " }
            let root = try temporaryDirectory()
            defer { try? FileManager.default.removeItem(at: root) }
            let dir = root.appendingPathComponent("bus/pci/devices/" + addr)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data(try fixture("qemu-cxl/\(state)/\(fn)/config.bin")).write(to: dir.appendingPathComponent("config"))
            try Data(try fixture("qemu-cxl/\(state)/\(fn)/resource.txt")).write(to: dir.appendingPathComponent("resource"))
            try Data((irq + "\n").utf8).write(to: dir.appendingPathComponent("irq"))
            var r = TargetResolver()
            r.options.sysfsRoot = root.path
            let ours = CXLKit.decode(try r.resolve(addr), json: false, verbosity: 3).replacingOccurrences(of: addr + " ", with: String(addr.dropFirst(5)) + " ")
            let theirs = Self.strip(captured)
            #expect(Self.withoutAdditions(Self.strip(ours), like: theirs) == theirs, "\(state)/\(fn)")
        }
    }

    /// This machine's functions: `lspci -vvv -s ADDR` against `cxlkit decode ADDR -vvv`.
    /// Needs root (both tools then read all of config space).
    /// lspci's lines minus the details of capabilities cxlkit does not render.
    static func dropUnrendered(_ lines: [String]) -> [String] {
        var out: [String] = []
        var skipping = false
        for l in lines {
            if l.hasPrefix("\tCapabilities: ") {
                skipping = standardCapabilityID(l).map { PCIDecoder.standardCapabilitiesWithoutDetails.contains($0) } ?? false
            } else if !l.hasPrefix("\t\t") {
                skipping = false
            } else if skipping {
                continue
            }
            out.append(l)
        }
        return out
    }

    @Test(.enabled(if: Lspci.live, Lspci.skipReason)) func thisMachineThroughSysfs() throws {
        guard getuid() == 0 else {
            print("thisMachineThroughSysfs: not root; lspci and cxlkit would both see 64 bytes of config space only. Skipped.")
            return
        }
        for a in try SysfsTree().functionAddresses() {
            let theirs = Self.dropUnrendered(Self.strip(try Lspci.run(["-vvv", "-s", a.description])))
            let ours = CXLKit.decode(try TargetResolver().resolve(a.description), json: false, verbosity: 3)
                .replacingOccurrences(of: a.description + " ", with: a.lspciDescription + " ")
            #expect(Self.withoutAdditions(Self.strip(ours), like: theirs) == theirs, "\(a)")
        }
    }
}

@Suite("lspci 3.9.0 parity without an ID database")
struct LspciNoNamesParityTests {
    /// `lspci -i /dev/null` against a decoder without pci.ids: numeric header, Subsystem
    /// and capability lines, prog-if without a name.
    @Test func numericNames() throws {
        var d = CXLKit.decoder()
        d.names = nil
        for file in ["qemu-cxl/region/endpoint/lspci-xxxx.txt", "qemu-cxl/region/rootport/lspci-xxxx.txt", "decode/every-dvsec.txt"] {
            let path = fixtureURL(file).path
            for v in 1...3 {
                let theirs = try Lspci.output(file: path, ["-i", "/dev/null", "-" + String(repeating: "v", count: v)])
                let ours = try TargetResolver().resolve(path).map { d.text($0, verbosity: v) }.joined()
                #expect(headerSections(ours) == headerSections(theirs), "\(file) -\(v)")
                #expect(capabilityBlocks(ours).map { $0.map(\.title) } == capabilityBlocks(theirs).map { $0.map(\.title) }, "\(file) -\(v)")
            }
        }
    }
}

@Suite("lspci 3.9.0 parity on broken capability lists")
struct LspciBrokenListParityTests {
    /// Short dumps, standard loops, 0xff IDs and extended loops, Expansion ROM BARs: lspci's lines for them.
    @Test func brokenLists() throws {
        var fns: [ConfigSpace] = []
        let base = ConfigBuilder().config
        fns.append(ConfigSpace(bytes: Array(base.bytes.prefix(64))))          // cap pointer past a -x dump
        var loop = base; loop.write(0x41, width: 1, value: 0x40); fns.append(loop)               // PCIe cap points at itself
        var broken = base; broken.write(0x41, width: 1, value: 0x80); broken.write(0x80, width: 1, value: 0xFF); fns.append(broken)
        // Expansion ROM BARs: enabled, disabled, disabled by Command, unassigned, ignored; on a bridge.
        for (rom, cmd, bridge) in [(UInt64(0xFE00_0001), UInt64(2), false), (0xFE00_0000, 2, false), (0xFE00_0001, 0, false), (1, 2, false),
                                   (0x7FE, 2, false), (0xFFFF_FFFF, 2, false), (0xFE00_0001, 2, true), (1, 0, true)] {
            var r = ConfigBuilder(classCode: bridge ? 0x0604_00 : 0x0502_10, portType: bridge ? 4 : 0, headerType: bridge ? 1 : 0)
            r.config.write(0x04, width: 2, value: cmd)
            r.config.write(bridge ? 0x38 : 0x30, width: 4, value: rom)
            fns.append(r.config)
        }
        var b = ConfigBuilder()
        let o = b.addExtended(id: 0x01, version: 2, size: 0x40)
        b.set(ExtendedCapabilityHeader.header, at: o, ["Next Capability Offset": UInt64(o)])   // extended self-loop
        fns.append(b.config)
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("broken.txt").path
        try CXLFixtures.dumpText(fns).write(toFile: file, atomically: false, encoding: .utf8)
        for v in 1...3 { try compareWithLspci(file: file, verbosity: v) }
    }
}
