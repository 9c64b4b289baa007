import Testing
import Foundation
import PCI
import CXL
@testable import CXLKitCommands

/// The state commands on the QEMU 7.2 Type-3 captures (config space + component
/// register block): real register contents, read-only backend.
@Suite("cxlkit save/restore/diff on QEMU captures")
struct StateCommandTests {
    func capture(_ stage: String) throws -> ImagePCIFunction { try qemuEndpointCapture(stage) }

    @Test func saveFindsTheCommittedDecoderOfARealCapture() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("region.json").path
        let text = try CXLKit.saveState(try capture("region"), to: path).output
        #expect(text.contains("HDM decoders: BAR 0 + 0x1110, 1 decoder(s), committed: 0"))
        let s = try CXLStateFile.read(from: path)
        #expect(s[StateCatalog.hdmBlock, "Decoder 0 Base High"]?.value == 0x4)
        #expect(s[StateCatalog.hdmBlock, "Decoder 0 Base Low"]?.value == 0x9000_0000)
        #expect(s.dvsec(CXLDeviceDVSEC.control)?.value == 0x6)
    }

    /// The seed thread's observation, on QEMU: the reset kept the DVSEC but wiped the
    /// committed decoder.
    @Test func diffShowsWhatTheQEMUResetWiped() throws {
        let a = try CXLKit.loadState(.live(try capture("region")))
        let b = try CXLKit.loadState(.live(try capture("reset")))
        let r = CXLKit.diffState(a, b, json: false)
        #expect(r.exitCode == 1)
        #expect(r.output.contains("Decoder 0 Control                   0x00001400 -> 0x00000000 Committed 1->0, Target Range Type 1->0"))
        #expect(r.output.contains("HDM Decoder Global Control          0x00000002 -> 0x00000000 HDM Decoder Enable 1->0"))
        #expect(!r.output.contains("DVSEC CXL Control "))
        #expect(r.output.hasSuffix("5 of 33 registers differ\n"))
        #expect(CXLKit.diffState(a, a, json: false).exitCode == 0)
        let json = CXLKit.diffState(a, b, json: true).output
        #expect(json.contains("\"register\": \"Decoder 0 Control\""))
        #expect(json.contains("\"a\": \"0x00001400\"") || json.contains("\"a\": \"0x1400\""))
    }

    /// A backend that refuses writes: the restore runs, reports every refused write
    /// and exits 1; nothing traps.
    @Test func restoreToAReadOnlyBackendFailsCleanly() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("region.json").path
        _ = try CXLKit.saveState(try capture("region"), to: path)
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let r = try CXLKit.restoreState(try capture("reset"), from: path, json: false)
        #expect(r.exitCode == 1)
        #expect(r.output.contains("RESTORE FAILED"))
        #expect(r.output.contains("read-only image"))
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }

    @Test func badStateFilesAreOneLineErrors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = dir.appendingPathComponent("good.json").path
        _ = try CXLKit.saveState(try capture("region"), to: good)
        let text = try String(contentsOfFile: good, encoding: .utf8)
        let cases: [(String, String)] = [
            ("truncated", String(text.prefix(text.count / 2))),
            ("future", text.replacingOccurrences(of: "\"version\" : 2", with: "\"version\" : 7")),
            ("edited", text.replacingOccurrences(of: "\"value\" : \"0x90000000\"", with: "\"value\" : \"0xa0000000\"")),
            ("other", text.replacingOccurrences(of: "\"device\" : \"0x0d93\"", with: "\"device\" : \"0x0d94\"")),
        ]
        for (name, body) in cases {
            let p = dir.appendingPathComponent(name + ".json").path
            try body.write(toFile: p, atomically: false, encoding: .utf8)
            #expect(throws: CommandError.self) { try CXLKit.restoreState(try capture("reset"), from: p, json: false) }
        }
        do {
            _ = try CXLKit.restoreState(try capture("reset"), from: dir.appendingPathComponent("future.json").path, json: false)
        } catch {
            #expect("\(error)".contains("future.json: state file version 7 is newer than supported version 2"), "\(error)")
        }
    }

    @Test func stateFileDetection() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("s.json").path
        _ = try CXLKit.saveState(try capture("region"), to: p)
        #expect(CXLKit.isStateFile(p))
        #expect(!CXLKit.isStateFile(fixtureURL("qemu-cxl/region/endpoint/config.bin").path))
        #expect(!CXLKit.isStateFile(dir.appendingPathComponent("missing").path))
        // A directory opens for reading but does not read: not a state file, and no trap (OptionFuzzTests found it).
        #expect(!CXLKit.isStateFile(dir.path))
        #expect(!CXLKit.isStateFile("/"))
    }

    /// A failed save never replaces the file already there.
    @Test func failedSaveLeavesTheFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let p = dir.appendingPathComponent("s.json").path
        _ = try CXLKit.saveState(try capture("region"), to: p)
        let before = try Data(contentsOf: URL(fileURLWithPath: p))
        let noBAR = ImagePCIFunction(address: "x", config: ConfigSpace(bytes: try fixture("qemu-cxl/reset/endpoint/config.bin")))
        #expect(throws: CommandError.self) { try CXLKit.saveState(noBAR, to: p) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: p)) == before)
    }
}

/// `save -o -` and `reset --state-file` (issue 17, item 2).
@Suite struct StateOutputTests {
    @Test func saveToStandardOutputReturnsTheStateFileItself() throws {
        let dev = try CXLKit.stateFunction("emulated:type2", resolver: TargetResolver(), blank: false).function
        let saved = try CXLKit.saveState(dev, to: "-")
        let snapshot = try CXLStateFile.decode(Data(saved.output.utf8))
        #expect(snapshot.registers.count > 0)
        #expect(saved.summary.contains("to standard output"))
    }

    @Test func saveThroughACharacterDeviceDoesNotReplaceIt() throws {
        let dev = try CXLKit.stateFunction("emulated:type2", resolver: TargetResolver(), blank: false).function
        _ = try CXLKit.saveState(dev, to: "/dev/null")
        var st = stat()
        #expect(lstat("/dev/null", &st) == 0 && (st.st_mode & S_IFMT) == S_IFCHR)
    }

    @Test func resetStateFileCannotBeStandardOutput() throws {
        let dev = try CXLKit.stateFunction("emulated:type2", resolver: TargetResolver(), blank: false).function
        #expect(throws: CommandError.self) {
            try CXLKit.resetState(dev, method: .flr, preserve: true, memClear: false, stateFile: "-", json: false)
        }
    }
}
