import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
@testable import CXLKitCommands

@Suite("cxlkit demo and reset on the emulated device", .serialized)
struct StateDemoTests {
    /// Engine waits advance the emulator's manual clock: no real sleeping.
    func clocks() -> (CXLStateOptions, ManualClock) {
        let manual = ManualClock()
        let clock = VirtualCXLClock(onSleep: { d in
            let (s, a) = d.components
            manual.advance(nanoseconds: UInt64(s) * 1_000_000_000 + UInt64(a / 1_000_000_000))
        })
        return (CXLStateOptions(clock: clock), manual)
    }

    @Test func demoShowsEveryResetAndSucceeds() throws {
        let (options, manual) = clocks()
        let r = try CXLKit.demo(json: false, options: options, emulatorClock: manual)
        #expect(r.exitCode == 0, "\(r.output)")
        let lines = r.output.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("FLR       type2           nothing ") })
        #expect(lines.contains { $0.hasPrefix("FLR       flr-loses-state Control, Lock, Range 1 Base, HDM Enable, decoders 0,1") })
        #expect(lines.contains { $0.hasPrefix("CXL Reset type2           HDM Enable, decoders 0,1") && $0.contains("merge (locked)") })
        #expect(lines.contains { $0.hasPrefix("SBR ") && $0.contains("Lock re-armed") })
        #expect(lines.contains { $0.hasPrefix("link down ") })
        #expect(r.output.contains("  DVSEC CXL Lock                0x0001      0x0000      0x0001\n"))
        #expect(lines.count <= 45, "one screen")
        let json = try CXLKit.demo(json: true, options: options, emulatorClock: manual)
        #expect(json.exitCode == 0)
        let obj = try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any]
        #expect((obj?["runs"] as? [Any])?.count == 5)
    }

    func programmed(_ profile: String, _ options: CXLStateOptions, _ manual: ManualClock) throws -> EmulatedCXLDevice {
        let d = try EmulatedCXLDevice(profile: try DeviceProfile.named(profile), clock: manual, address: "emulated:\(profile)")
        try CXLStateEngine(function: d, options: options).programLikeFirmware()
        return d
    }

    /// `cxlkit reset emulated:flr-loses-state --method flr` fails; with --preserve it succeeds.
    @Test func resetCommandExitStatus() throws {
        let (options, manual) = clocks()
        let lossy = try CXLKit.resetState(try programmed("flr-loses-state", options, manual), method: .flr, preserve: false,
                                          memClear: false, stateFile: nil, json: false, options: options)
        #expect(lossy.exitCode == 1)
        #expect(lossy.output.contains("DVSEC CXL Lock                      0x0001     0x0000     CHANGED CONFIG_LOCK 1->0"))
        #expect(lossy.output.hasSuffix("result: FAILED: 12 register(s) differ from before the reset\n"))
        let kept = try CXLKit.resetState(try programmed("flr-loses-state", options, manual), method: .flr, preserve: true,
                                         memClear: false, stateFile: nil, json: false, options: options)
        #expect(kept.exitCode == 0, "\(kept.output)")
        #expect(kept.output.hasSuffix("result: OK, all 40 registers equal their values before the reset\n"))
        let json = try CXLKit.resetState(try programmed("type2", options, manual), method: .cxl, preserve: true,
                                         memClear: true, stateFile: nil, json: true, options: options)
        #expect(json.exitCode == 0)
        #expect(json.output.contains("\"succeeded\": true"))
        #expect(json.output.contains("\"problems\": []"))
    }

    /// The example, through the target resolver: emulated devices start blank
    /// and are programmed the way firmware would unless --blank.
    @Test func resetThroughTheEmulatedScheme() throws {
        let resolver = TargetResolver()
        let (fn, note) = try CXLKit.stateFunction("emulated:flr-loses-state", resolver: resolver, blank: false)
        #expect(note?.contains("programmed the way firmware would") == true)
        let lost = try CXLKit.resetState(fn, method: .flr, preserve: false, memClear: false, stateFile: nil, json: false)
        #expect(lost.exitCode == 1)
        let (fn2, _) = try CXLKit.stateFunction("emulated:flr-loses-state", resolver: resolver, blank: false)
        let kept = try CXLKit.resetState(fn2, method: .flr, preserve: true, memClear: false, stateFile: nil, json: false)
        #expect(kept.exitCode == 0)
        let (blank, none) = try CXLKit.stateFunction("emulated:flr-loses-state", resolver: resolver, blank: true)
        #expect(none == nil)
        #expect(try CXLKit.resetState(blank, method: .flr, preserve: false, memClear: false, stateFile: nil, json: false).exitCode == 0)
        // A profile with its own firmware state is not reprogrammed.
        let (gpu, gpuNote) = try CXLKit.stateFunction("emulated:gpu-fw-committed", resolver: resolver, blank: false)
        #expect(gpuNote == nil)
        #expect(try CXLKit.resetState(gpu, method: .flr, preserve: false, memClear: false, stateFile: nil, json: false).exitCode == 0)
    }

    @Test func saveRestoreDiffRoundTripOnTheEmulator() throws {
        let (options, manual) = clocks()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("type2.json").path
        let dev = try programmed("type2", options, manual)
        let saved = try CXLKit.saveState(dev, to: path, options: options).output
        #expect(saved.contains("committed: 0, 1"))
        try dev.reset(.bus)
        let diff1 = CXLKit.diffState(try CXLKit.loadState(.file(path)), try CXLKit.loadState(.live(dev), options: options), json: false)
        #expect(diff1.exitCode == 1)
        let restore = try CXLKit.restoreState(dev, from: path, json: false, options: options)
        #expect(restore.exitCode == 0, "\(restore.output)")
        #expect(restore.output.contains("Decoder 1: committed"))
        let diff2 = CXLKit.diffState(try CXLKit.loadState(.file(path)), try CXLKit.loadState(.live(dev), options: options), json: false)
        #expect(diff2.exitCode == 0, "\(diff2.output)")
    }
}
