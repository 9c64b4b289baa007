import Testing
import PCI
@testable import CXL

/// Restore onto a device whose capabilities differ is refused before the first write (issue 17, item 4).
@Suite struct CapabilityCheckTests {
    func engine(_ dev: StateTestDevice) -> CXLStateEngine {
        CXLStateEngine(function: dev, options: CXLStateOptions(clock: VirtualCXLClock()))
    }

    /// The snapshot of a device that had other read-only registers than this one.
    func saved(changing changes: [String: (UInt64) -> UInt64]) throws -> CXLStateSnapshot {
        let a = StateTestDevice()
        a.programLikeFirmware()
        var s = try engine(a).save()
        for i in s.registers.indices { if let f = changes[s.registers[i].register] { s.registers[i].value = f(s.registers[i].value) } }
        return s
    }

    @Test func differentCapabilitiesAreListedAndNothingIsWritten() throws {
        let snapshot = try saved(changing: [
            "HDM Decoder Capability": { $0 ^ 0x1 },                 // another Decoder Count
            "DVSEC CXL Range 1 Size Low": { $0 ^ 0x1000_0000 },     // another memory size
        ])
        let b = StateTestDevice()
        b.programLikeFirmware()
        b.log = []
        do {
            _ = try engine(b).restore(snapshot)
            Issue.record("restore onto a device with other capabilities was not refused")
        } catch {
            guard case .capabilityMismatch(let d) = error else { Issue.record("\(error)"); return }
            #expect(d.count == 2)
            #expect(d.contains { $0.hasPrefix("HDM Decoder Capability: saved") })
            #expect(d.contains { $0.hasPrefix("DVSEC CXL Range 1 Size Low: saved") })
            #expect(error.description.contains("nothing written"))
        }
        #expect(!b.log.contains { $0.write }, "restore wrote before refusing")
    }

    @Test func rangeStatusBitsAreNotCapabilities() throws {
        // Memory_Info_Valid / Memory_Active (bits 0, 1) differ right after a reset: not a different device.
        let snapshot = try saved(changing: ["DVSEC CXL Range 1 Size Low": { $0 ^ 0x3 }])
        let b = StateTestDevice()
        #expect(try engine(b).capabilityDifferences(snapshot).isEmpty)
    }

    @Test func theReportNamesTheRestoredFunction() throws {
        let a = StateTestDevice(address: "0000:3b:00.0")
        a.programLikeFirmware()
        let snapshot = try engine(a).save()
        let b = StateTestDevice(address: "0000:5e:00.0")
        let report = try engine(b).restore(snapshot)
        #expect(report.device.address == "0000:5e:00.0")
    }
}
