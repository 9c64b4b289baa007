import Foundation
import TestSupport
import Testing
import PCI
@testable import CXL

@Suite("CXL state file")
struct StateFileTests {
    func tempDir() throws -> String {
        try TestScratch.directory("cxlstate")
    }

    func snapshot() throws -> CXLStateSnapshot {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        return try CXLStateEngine(function: dev, options: CXLStateOptions(clock: VirtualCXLClock())).save()
    }

    @Test func roundTrip() throws {
        let dir = try tempDir()
        let s = try snapshot()
        let path = dir + "/state.json"
        try CXLStateFile.write(s, to: path)
        #expect(try CXLStateFile.read(from: path) == s)
        // Only the file itself remains: the temporary file was renamed into place.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["state.json"])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text.contains("\"format\" : \"swift-cxl-state\""))
        #expect(text.contains("\"register\" : \"DVSEC CXL Control\""))
        #expect(text.contains("\"value\" : \"0x0007\""))
    }

    @Test func reformattingKeepsTheChecksumValid() throws {
        let s = try snapshot()
        let data = try CXLStateFile.encode(s)
        let object = try JSONSerialization.jsonObject(with: data)
        let compact = try JSONSerialization.data(withJSONObject: object)
        #expect(try CXLStateFile.decode(compact) == s)
    }

    @Test func editedValueFailsTheChecksum() throws {
        let s = try snapshot()
        var text = String(decoding: try CXLStateFile.encode(s), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"value\" : \"0x0007\"", with: "\"value\" : \"0x0003\"")
        #expect {
            try CXLStateFile.decode(Data(text.utf8))
        } throws: { e in
            if case .checksumMismatch = e as? CXLStateError { return true }
            return false
        }
    }

    @Test func truncatedFileIsCorrupt() throws {
        let data = try CXLStateFile.encode(try snapshot())
        for cut in [0, 1, data.count / 3, data.count / 2, data.count - 3] {
            #expect {
                try CXLStateFile.decode(data.prefix(cut))
            } throws: { e in
                if case .corruptFile = e as? CXLStateError { return true }
                return false
            }
        }
    }

    @Test func garbageAndWrongShapesAreCorrupt() throws {
        for text in ["", "nonsense", "{}", "[1,2]", "{\"format\":\"other\",\"version\":1}",
                     "{\"format\":\"swift-cxl-state\",\"version\":1}",
                     "{\"format\":\"swift-cxl-state\",\"version\":1,\"checksum\":\"crc32:0\",\"snapshot\":{}}"] {
            #expect {
                try CXLStateFile.decode(Data(text.utf8))
            } throws: { e in
                if case .corruptFile = e as? CXLStateError { return true }
                return false
            }
        }
    }

    @Test func badValuesAreCorrupt() throws {
        let s = try snapshot()
        let text = String(decoding: try CXLStateFile.encode(s), as: UTF8.self)
        for (from, to) in [("\"value\" : \"0x0007\"", "\"value\" : \"0x10007\""),  // wider than the register
                           ("\"value\" : \"0x0007\"", "\"value\" : \"7\""),
                           ("\"width\" : 2", "\"width\" : 3"),
                           ("\"space\" : \"config\"", "\"space\" : \"bar9\"")] {
            #expect {
                try CXLStateFile.decode(Data(text.replacingOccurrences(of: from, with: to).utf8))
            } throws: { e in
                if case .corruptFile = e as? CXLStateError { return true }
                return false
            }
        }
    }

    /// A register is a duplicate by structure and name together: the same name in another
    /// structure is not (MSI and MSI-X both have "Message Control"), the same pair at another
    /// offset is.
    @Test func duplicatesAreStructureAndNameTogether() throws {
        var s = try snapshot()
        var other = s.registers[0]
        other.block = "Another Structure"
        other.offset += 0x100
        s.registers.append(other)
        try s.validate()
        var moved = s.registers[1]
        moved.offset += 0x200
        s.registers.append(moved)
        #expect(throws: CXLStateError.self) { try s.validate() }
        // A pair the catalog lacks (kept by name, not by catalog number) is a duplicate the same way.
        s.registers.removeLast()
        try s.validate()
        other.offset += 0x100
        s.registers.append(other)
        #expect(throws: CXLStateError.invalidSnapshot("\(other.displayName) appears twice")) { try s.validate() }
    }

    /// Names the catalog lacks are interned for the life of the process, so decoding interns a new one only below
    /// the decoding limit (task-local, lowered to 0 here for this test's decoding alone). Past it, every JSON form
    /// that carries a register name fails with a DecodingError: saved register, register key, restore outcome,
    /// unread register and diff entry. Catalog names and foreign names already held still decode, to their own names.
    @Test func foreignNamesStopAtTheDecodingLimit() throws {
        let held = "Hand Made \(UUID())", fresh = "Hand Made \(UUID())"
        let saved = try #require(try snapshot().registers.first)
        let heldKey = RegisterKey(block: held, register: saved.register)   // interned by code, not by input
        let samples: [(String, any Codable)] = [
            ("saved register", saved), ("register key", saved.key),
            ("restore outcome", RegisterOutcome(name: saved.name, width: 4, saved: 1, action: .written, ok: true)),
            ("unread register", UnreadRegister(block: saved.block, register: saved.register, reason: "reset")),
            ("diff entry", CXLStateDiff.Entry(block: saved.block, register: saved.register, width: 4, a: 1, b: 2, note: nil, fields: [])),
        ]
        func renamed(_ value: any Codable, _ block: String) throws -> Data {
            var object = try #require(try JSONSerialization.jsonObject(with: JSONEncoder().encode(value)) as? [String: Any])
            object["block"] = block
            return try JSONSerialization.data(withJSONObject: object)
        }
        func decode(_ value: any Codable, _ data: Data) throws -> RegisterKey {
            let d = JSONDecoder()
            switch value {
            case is SavedRegister: return try d.decode(SavedRegister.self, from: data).key
            case is RegisterKey: return try d.decode(RegisterKey.self, from: data)
            case is RegisterOutcome: return try d.decode(RegisterOutcome.self, from: data).key
            case is UnreadRegister: return try d.decode(UnreadRegister.self, from: data).key
            default: return try d.decode(CXLStateDiff.Entry.self, from: data).key
            }
        }
        try ForeignRegisterNames.$decodingLimit.withValue(0) {
            for (what, value) in samples {
                #expect(try decode(value, renamed(value, saved.block)) == saved.key, "\(what)")
                let key = try decode(value, renamed(value, held))
                #expect(key == heldKey && key.block == held && key.register == saved.register, "\(what)")
                #expect(throws: DecodingError.self, "\(what)") { try decode(value, renamed(value, fresh)) }
            }
        }
        // Below the limit the same input decodes, to its own name.
        let key = try decode(saved.key, renamed(saved.key, fresh))
        #expect(key.block == fresh && key.register == saved.register && key.name.catalogID == nil)
    }

    /// The checksum is no defence against a deliberate edit: a crafted snapshot with
    /// a correct checksum is still refused when a location is impossible.
    @Test(arguments: ["config-offset", "misaligned", "dvsec-offset", "dvsec-misaligned", "decoders", "decoders-negative", "bar", "duplicate", "serial"])
    func craftedSnapshotsAreRefused(edit: String) throws {
        var s = try snapshot()
        switch edit {
        case "config-offset": s.registers[0].offset = 0xFFFF_FFFF_FFFF_FFF0
        case "misaligned": s.registers[0].offset = 0x5
        case "dvsec-offset": s.layout.dvsecOffset = Int.max - 2
        case "dvsec-misaligned": s.layout.dvsecOffset += 1
        case "decoders": s.layout.hdm?.decoderCount = 1000
        case "decoders-negative": s.layout.hdm?.decoderCount = -1
        case "bar": s.layout.hdm?.bar = 9
        case "duplicate": s.registers.append(s.registers[0])
        default: s.layout.serialNumberOffset = -4
        }
        let data = try CXLStateFile.encode(s)
        #expect {
            try CXLStateFile.decode(data)
        } throws: { e in
            if case .corruptFile(let m) = e as? CXLStateError { return m.hasPrefix("invalid state") }
            return false
        }
        let dev = StateTestDevice()
        #expect {
            try CXLStateEngine(function: dev, options: CXLStateOptions(clock: VirtualCXLClock())).restore(s)
        } throws: { e in
            if case .invalidSnapshot = e as? CXLStateError { return true }
            return false
        }
        #expect(!dev.log.contains { $0.write })
    }

    /// A snapshot made in code (a file's reader refuses these earlier, with its own message) with a width the
    /// register cannot have, or a value wider than it, is refused by `validate` and by restore, before any write.
    @Test(arguments: ["width", "wide-value"])
    func impossibleWidthsAndValuesAreRefused(edit: String) throws {
        var s = try snapshot()
        let name = s.registers[0].displayName
        let expected: CXLStateError
        switch edit {
        case "width":
            s.registers[0].width = 8
            expected = .invalidSnapshot("\(name): misaligned")
        default:
            s.registers[0].value = UInt64(1) << UInt64(8 * s.registers[0].width)
            expected = .invalidSnapshot("\(name): value wider than the register")
        }
        #expect(throws: expected) { try s.validate() }
        let dev = StateTestDevice()
        #expect(throws: expected) { try CXLStateEngine(function: dev, options: CXLStateOptions(clock: VirtualCXLClock())).restore(s) }
        #expect(!dev.log.contains { $0.write })
    }

    @Test func futureVersionIsRefused() throws {
        let text = String(decoding: try CXLStateFile.encode(try snapshot()), as: UTF8.self)
            .replacingOccurrences(of: "\"version\" : 2", with: "\"version\" : 3")
        #expect(throws: CXLStateError.unsupportedVersion(found: 3, supported: 2)) {
            try CXLStateFile.decode(Data(text.utf8))
        }
    }

    /// Version 2 writes snake_case keys (the JSON convention); version 1 files (camelCase) are still read, and
    /// their checksum still checked.
    @Test func version2IsSnakeCaseAndVersion1IsStillRead() throws {
        let text = String(decoding: try CXLStateFile.encode(try snapshot()), as: UTF8.self)
        #expect(text.contains("\"version\" : 2"))
        #expect(text.contains("\"saved_at\""))
        #expect(text.contains("\"dvsec_offset\""))
        #expect(!text.contains("savedAt") && !text.contains("dvsecOffset"))
        let v1 = try Data(contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/state/v1-emulated-type2.json"))
        #expect(String(decoding: v1, as: UTF8.self).contains("\"savedAt\""))
        let old = try CXLStateFile.decode(v1)
        #expect(old.layout.hdm?.decoderCount == 2)
        // A changed value in a version 1 file is still caught by its checksum.
        let tampered = String(decoding: v1, as: UTF8.self).replacingOccurrences(of: "\"dvsecOffset\" : 272", with: "\"dvsecOffset\" : 276")
        #expect(throws: CXLStateError.self) { try CXLStateFile.decode(Data(tampered.utf8)) }
    }

    @Test func failedWriteLeavesTheOldFileIntact() throws {
        let dir = try tempDir()
        let path = dir + "/state.json"
        let s = try snapshot()
        try CXLStateFile.write(s, to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        // A leftover temporary file makes the exclusive create fail: the write fails
        // and the existing file is untouched.
        let tmp = dir + "/.state.json.tmp-\(getpid())"
        FileManager.default.createFile(atPath: tmp, contents: Data("x".utf8))
        var other = s
        other.registers[0].value ^= 1
        #expect(throws: CXLStateError.self) { try CXLStateFile.write(other, to: path) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        // Writing into a missing directory fails cleanly too.
        #expect(throws: CXLStateError.self) { try CXLStateFile.write(s, to: dir + "/missing/state.json") }
    }

    @Test func missingFileIsAnIOError() {
        #expect {
            try CXLStateFile.read(from: "/nonexistent/state.json")
        } throws: { e in
            if case .fileIO = e as? CXLStateError { return true }
            return false
        }
    }

    /// Faults during reset and restore never touch the state file written before.
    @Test(arguments: ["commit-error", "commit-timeout", "reset-timeout", "reset-error"])
    func faultsLeaveTheSavedFileIntact(fault: String) throws {
        let dir = try tempDir()
        let path = dir + "/state.json"
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        switch fault {
        case "commit-error": dev.commitBehaviour = .error
        case "commit-timeout": dev.commitBehaviour = .never
        case "reset-timeout": dev.cxlResetBehaviour = .never
        default: dev.cxlResetBehaviour = .error
        }
        let before = try CXLStateEngine(function: dev, options: CXLStateOptions(clock: VirtualCXLClock())).save()
        let report = try CXLResetOrchestrator(function: dev, options: CXLStateOptions(clock: VirtualCXLClock()))
            .reset(method: fault.hasPrefix("commit") ? .sbr : .cxl, preserve: true, stateFile: path)
        #expect(!report.succeeded)
        switch fault {
        case "commit-error": #expect(report.restore?.decoders.first?.result == .commitError)
        case "commit-timeout": #expect(report.restore?.decoders.first?.result == .commitTimeout)
        case "reset-timeout": #expect(report.resetError == .resetTimeout(milliseconds: 100))
        default: #expect(report.resetError == .resetError)
        }
        #expect(try CXLStateFile.read(from: path) == before)
    }

    @Test func diffNamesChangedFields() throws {
        let a = try snapshot()
        var b = a
        let i = try #require(b.registers.firstIndex { $0.register == "DVSEC CXL Control" })
        b.registers[i].value = 0x0003
        let d = CXLStateDiff(a, b)
        #expect(d.changes.count == 1)
        #expect(d.changes[0].fields.map(\.description) == ["Mem_Enable 1->0"])
        #expect(CXLStateDiff(a, a).isEmpty)
    }
}
