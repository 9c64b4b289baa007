import Foundation
import TestSupport
import Testing
@testable import CXLKitCommands
import PCI

/// Every `--json` output and the state file, produced by the real `cxlkit` executable, validated against its
/// JSON Schema (schemas/, draft 2020-12) with python3-jsonschema (scripts/validate-json). Skipped with one line
/// where python3-jsonschema is missing, except under CXLKIT_REQUIRE_JSONSCHEMA=1 (set by .ci/run).
@Suite(.serialized) struct JSONSchemaTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let required = ProcessInfo.processInfo.environment["CXLKIT_REQUIRE_JSONSCHEMA"] == "1"

    static func run(_ program: String, _ args: [String]) throws -> (Int32, String) { try runProcess(program, args) }

    /// The first python3 (PATH first, then Debian's) that has jsonschema.
    static let python: String? = {
        let onPath = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map { "\($0)/python3" }
        return (onPath + ["/usr/bin/python3", "/usr/local/bin/python3"])
            .filter { FileManager.default.isExecutableFile(atPath: $0) }
            .first { (try? run($0, ["-c", "import jsonschema"]).0) == 0 }
    }()

    static var validatorAvailable: Bool { python != nil }

    /// validate-json's exit status and report for `file` against `schema`.
    static func validate(_ schema: String, _ file: String) throws -> (Int32, String) {
        try run(python ?? "python3", [root.appendingPathComponent("scripts/validate-json").path,
                                      root.appendingPathComponent("schemas/\(schema).schema.json").path, file])
    }

    @Test func everyCommandsJSONMatchesItsSchema() throws {
        guard Self.validatorAvailable else {
            #expect(!Self.required, "CXLKIT_REQUIRE_JSONSCHEMA=1 but python3 jsonschema is missing (apt-get install python3-jsonschema)")
            print("python3 jsonschema not installed: JSON Schema validation skipped")
            return
        }
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        let dir = try temporaryDirectory()
        let state = dir.appendingPathComponent("state.json").path
        #expect(try Self.run(exe, ["save", "emulated:type2", "-o", state]).0 == 0)
        let cases: [(schema: String, args: [String])] = [
            ("cxlkit-list", ["list", "--json"]),
            ("cxlkit-decode", ["decode", "emulated:type2", "--json", "-vvv"]),
            ("cxlkit-decode", ["decode", "emulated:gpu-fw-committed", "--json"]),
            ("cxlkit-diff", ["diff", "emulated:type2", "emulated:flr-loses-state", "--json"]),
            ("cxlkit-restore", ["restore", "emulated:type2", state, "--json"]),
            ("cxlkit-reset", ["reset", "emulated:flr-loses-state", "--method", "flr", "--json"]),
            ("cxlkit-reset", ["reset", "emulated:type2", "--method", "cxl", "--preserve", "--json"]),
            ("cxlkit-demo", ["demo", "--json"]),
            ("cxlkit-check", ["check", "emulated:type2", "--json"]),
            ("cxlkit-check", ["check", "emulated:type2", "--against", state, "--json"]),
            ("cxlkit-check", ["check", "emulated:gpu-fw-committed", "--json", "-u"]),
            ("cxlkit-diff", ["diff", "emulated:gpu-fw-committed", "emulated:type2", "--json", "--human"]),
            ("cxlkit-decode", ["decode", "emulated:gpu-fw-committed", "--json", "-u"]),
            ("cxlkit-reset", ["reset", "emulated:gpu-fw-committed", "--method", "cxl", "--preserve", "--json", "-u"]),
        ]
        for (i, c) in cases.enumerated() {
            let (_, out) = try Self.run(exe, c.args)
            let file = dir.appendingPathComponent("\(i).json").path
            try out.write(toFile: file, atomically: false, encoding: .utf8)
            let (status, report) = try Self.validate(c.schema, file)
            #expect(status == 0, "cxlkit \(c.args.joined(separator: " ")) does not match \(c.schema): \(report)")
        }
        let (status, report) = try Self.validate("cxlkit-state-file", state)
        #expect(status == 0, "state file does not match its schema: \(report)")
    }

    /// The schemas can fail: a camelCase key, a register value as a number, a missing `problems`.
    @Test func theSchemasRejectOutputThatBreaksTheConvention() throws {
        guard Self.validatorAvailable else { print("python3 jsonschema not installed: skipped"); return }
        let dir = try temporaryDirectory()
        let good = JSONOutput.document(command: "list", succeeded: true, problems: [], [("functions", .array([]))])
        let broken = [
            good.replacingOccurrences(of: "\"succeeded\"", with: "\"Succeeded\""),
            good.replacingOccurrences(of: "\"problems\": [],", with: ""),
            good.replacingOccurrences(of: "\"functions\": []", with: "\"functions\": [], \"vendorID\": 1"),
        ]
        let goodFile = dir.appendingPathComponent("good.json").path
        try good.write(toFile: goodFile, atomically: false, encoding: .utf8)
        #expect(try Self.validate("cxlkit-list", goodFile).0 == 0)
        for (i, text) in broken.enumerated() {
            let f = dir.appendingPathComponent("bad\(i).json").path
            try text.write(toFile: f, atomically: false, encoding: .utf8)
            #expect(try Self.validate("cxlkit-list", f).0 == 1, "broken case \(i) passed validation")
        }
        // Register values are strings in the restore report.
        let restoreDoc = #"{"command":"restore","metadata":{"tool":"cxlkit","version":"0.3.0"},"succeeded":true,"problems":[],"device":{"address":"x","vendor":"0x1e98","device":"0x7202"},"steps":[],"decoders":[],"registers":[{"block":"b","register":"r","width":4,"saved":4096,"action":"written","ok":true}]}"#
        let f = dir.appendingPathComponent("restore.json").path
        try restoreDoc.write(toFile: f, atomically: false, encoding: .utf8)
        #expect(try Self.validate("cxlkit-restore", f).0 == 1)
    }

    @Test func snakeCaseNamesEveryKeyStyleTheCommandsUsedToMix() {
        #expect(JSONKey.snakeCase("Memory Space Enable") == "memory_space_enable")
        #expect(JSONKey.snakeCase("Lock On Commit") == "lock_on_commit")
        #expect(JSONKey.snakeCase("Cache_Capable") == "cache_capable")
        #expect(JSONKey.snakeCase("savedAt") == "saved_at")
        #expect(JSONKey.snakeCase("vendor_id") == "vendor_id")
        #expect(JSONKey.snakeCase("SERR# Enable") == "serr_enable")
        #expect(JSONKey.snakeCase("3, 6, 12 Way Interleave Capable") == "3_6_12_way_interleave_capable")
        #expect(JSONKey.snakeCase("DVSEC CXL Capability2") == "dvsec_cxl_capability2")
    }
}
