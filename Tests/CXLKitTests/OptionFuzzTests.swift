import Foundation
import Testing
import TestSupport
import PCI
import VFIOUser
@testable import CXLKitCommands

/// No input crashes any command (issue 17, item 3): every option parser is driven with random strings, first in
/// process (many cases, fast), then through the real `cxlkit` executable (a crash there is a signal, not an exit
/// status). Seeded: the seed is printed, and `CXLKIT_FUZZ_SEED=N swift test --filter OptionFuzz` replays a run.
@Suite(.serialized) struct OptionFuzzTests {
    static let seed: UInt64 = ProcessInfo.processInfo.environment["CXLKIT_FUZZ_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 0...UInt64.max)

    /// Texts that have broken number parsers somewhere: overflow, signs, empty, bare prefixes and suffixes.
    static let edgeCases = [
        "", "-", "0", "-1", "+1", "0x", "0X10", "x", "G", "GiB", "1GiBG", "99999999999G", "18446744073709551615",
        "18446744073709551616", "0xffffffffffffffff", "0x1_0000_0000_0000_0000", "16E", "1e9", "1.5G", " ", "256 MiB",
        "0x10000000000000000", "17179869184T", "4096K", "0x-1", "256m", "९९", "0o777", "0660", "7777", "-0",
        String(repeating: "9", count: 400), "0x" + String(repeating: "f", count: 17), "\u{0}", "1\u{0}", "ffff",
    ]

    static func randomText(_ rng: inout SplitMix64) -> String {
        if rng.next() % 3 == 0 { return edgeCases[Int(rng.next() % UInt64(edgeCases.count))] }
        let alphabet = Array("0123456789abcdefxXkKmMgGtTiIbB _-+.:@=/\u{e9}")
        let n = Int(rng.next() % 24)
        return String((0..<n).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] })
    }

    @Test func everyOptionParserAnswersRandomTextWithAValueOrAnError() throws {
        print("OptionFuzzTests seed \(Self.seed) (replay: CXLKIT_FUZZ_SEED=\(Self.seed))")
        var rng = SplitMix64(state: Self.seed)
        var accepted = 0
        for _ in 0..<20_000 {
            let a = Self.randomText(&rng), b = Self.randomText(&rng), c = Self.randomText(&rng)
            if let v = try? ByteCount.parse(a) {
                accepted += 1
                // What parses is what the text says: decimal/hex digits times a binary-multiple suffix.
                #expect(a.isEmpty == false && (v == 0 || a.contains(where: \.isNumber)), "\(a) -> \(v)")
            }
            if let r = try? HDMCommitRequest.parse(decoder: Int(truncatingIfNeeded: rng.next() % 40) - 4, base: a, size: b, dpaSkip: c) {
                #expect(r.size > 0 && r.base % (256 << 20) == 0 && !r.base.addingReportingOverflow(r.size).overflow)
            }
            _ = try? VFIOUserSocketPermissions.parse(mode: a, group: b)
            _ = PCIAddress(a)
            _ = try? TargetOptions.parseBarImage(a + "=" + b)
        }
        #expect(accepted > 0)
        // The table: what the same text means everywhere.
        #expect(try ByteCount.parse("256M") == 256 << 20)
        #expect(try ByteCount.parse("256MiB") == 256 << 20)
        #expect(try ByteCount.parse("0x10000000") == 256 << 20)
        #expect(try ByteCount.parse("1T") == 1 << 40)
        #expect(try ByteCount.parse("4k") == 4096)
        #expect(throws: ByteCount.ParseError.tooLarge("99999999999G")) { try ByteCount.parse("99999999999G") }
        #expect(throws: ByteCount.ParseError.notANumber("1.5G")) { try ByteCount.parse("1.5G") }
        #expect(throws: ByteCount.ParseError.notANumber("-1")) { try ByteCount.parse("-1") }
    }

    /// Through the executable: each case must end with an exit status (0, 1, 2 or ArgumentParser's 64), never a
    /// signal (SIGILL from an overflow trap, SIGSEGV, SIGABRT).
    @Test func theCxlkitExecutableNeverCrashesOnRandomOptions() throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        print("OptionFuzzTests seed \(Self.seed) (replay: CXLKIT_FUZZ_SEED=\(Self.seed))")
        var rng = SplitMix64(state: Self.seed ^ 0x5EED)
        let noDir = NSTemporaryDirectory() + "cxlkit-fuzz-no-such-dir-\(getpid())/x"
        let templates: [([String]) -> [String]] = [
            { ["hdm", "commit", "emulated:type2", "--base", $0[0], "--size", $0[1], "--dpa-skip", $0[2]] },
            { ["hdm", "commit", "emulated:type2", "--decoder", $0[0], "--base", "0x4000000000", "--size", $0[1]] },
            { ["save", "emulated:type2", "-o", "/dev/null", "--bar", $0[0]] },
            { ["reset", "emulated:type2", "--method", $0[0]] },
            { ["serve", "--socket", noDir, "--socket-mode", $0[0], "--socket-group", $0[1]] },
            { ["decode", $0[0]] },
            { ["decode", "emulated:type2", "-s", $0[0]] },
            { ["dump", "emulated:type2", "-s", $0[0]] },
            { ["restore", "emulated:type2", $0[0]] },
            { ["diff", $0[0], $0[1]] },
            { ["list", "--sysfs", $0[0]] },
        ]
        for i in 0..<(templates.count * 6) {
            let args = templates[i % templates.count]((0..<3).map { _ in Self.randomText(&rng) })
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            #expect(p.terminationReason == .exit, "cxlkit \(args) was killed by signal \(p.terminationStatus) (seed \(Self.seed))")
            #expect([0, 1, 2, 64].contains(p.terminationStatus), "cxlkit \(args) exited \(p.terminationStatus) (seed \(Self.seed))")
        }
    }
}
