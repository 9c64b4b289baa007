import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
@testable import CXLKitCommands

/// `emulated:` targets: the emulated device decodes like hardware, and lspci agrees.
@Suite("emulated: targets", .serialized)
struct EmulatedDeviceTests {
    static let profiles = DeviceProfile.namedProfiles

    /// lspci -F on the emulated device's -xxxx dump against `cxlkit decode -vvv`
    /// (the foundation's parity harness: capability lines equal, lspci's details a
    /// subsequence of ours).
    @Test(arguments: profiles)
    func lspciParity(profile: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("\(profile).txt").path
        let targets = try TargetResolver().resolve("emulated:" + profile)
        let dump = CXLKit.dump(targets)
        try dump.write(toFile: file, atomically: false, encoding: .utf8)
        let s = try compareWithLspci(file: file)
        #expect(s.cxlDVSECs == 4)
        #expect(s.capabilities == 8)
        // lspci sees the same capabilities (offset, ID, version) as our walker.
        let text = try Lspci.output(file: file, ["-vvv"])
        let caps = CapabilityList(walking: targets[0].config)
        for c in caps.all {
            let off = String(c.offset, radix: 16)
            let tag = c.space == .standard ? "[\(off)]" : "[\(off) v\(c.version)]"
            #expect(text.contains("Capabilities: \(tag)"), "\(profile): lspci does not list \(tag) \(c.name)")
        }
    }

    /// A profile file, with the memory BAR, decodes too.
    @Test func profileFileParity() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let json = dir.appendingPathComponent("p.json").path
        try #"{"name": "bar", "memorySize": "768MiB", "prefetchableMemoryBAR": true, "decoderCount": 32, "firmware": {"configLock": true, "base": "0x1000000000"}}"#
            .write(toFile: json, atomically: false, encoding: .utf8)
        let targets = try TargetResolver().resolve("emulated:" + json)
        let file = dir.appendingPathComponent("d.txt").path
        try CXLKit.dump(targets).write(toFile: file, atomically: false, encoding: .utf8)
        try compareWithLspci(file: file)
        let out = CXLKit.decode(targets, json: false, verbosity: 3)
        #expect(out.contains("DecoderCount 32"))
        #expect(out.contains("Decoder31:"))
        #expect(out.contains("CONFIG_LOCK+"))
    }

    /// Component registers are decoded through BAR0, as for a real device.
    @Test func componentRegistersThroughBAR0() throws {
        let out = CXLKit.decode(try TargetResolver().resolve("emulated:gpu-fw-committed"), json: false, verbosity: 3)
        #expect(out.contains("CXL Component Registers: BAR0+0000000000000000"))
        #expect(out.contains("CXL HDM Decoder Capability"))
        #expect(out.contains("HDMDecoderEnable+"))
        #expect(out.contains("Base 0000004000000000 Size 0000000040000000"))
        #expect(out.contains("LockOnCommit+ Commit+ Committed+ ErrNotCommitted-"))
    }

    @Test func errorsNameTheProblem() throws {
        #expect(throws: CommandError.self) { try TargetResolver().resolve("emulated:nope") }
        do {
            _ = try TargetResolver().resolve("emulated:nope")
        } catch {
            #expect(error.message.contains("type2") && error.message.contains("gpu-fw-committed"))
        }
        do {
            _ = try TargetResolver().resolve("emulated:/nonexistent/p.json")
        } catch {
            #expect(error.message.contains("No such file"))
        }
    }
}
