import Testing
import PCI
import CXL
@testable import CXLEmulator

/// The save/restore engine and reset orchestrator (issue 4) against the emulated
/// device: the engine's waits advance the device's manual clock, so CXL Reset and
/// commit latencies run on virtual time.
@Suite("Save/restore engine on the emulated device")
struct SaveRestoreIntegrationTests {
    struct Case: Sendable, CustomStringConvertible {
        let profile: String
        let method: CXLResetKind
        /// Whether the reset takes CXL state the PCI core does not give back.
        let wipes: Bool
        var commitLatencyMicroseconds: UInt64 = 0
        var description: String { "\(profile) \(method) latency=\(commitLatencyMicroseconds)us" }
    }

    static let cases: [Case] = [
        Case(profile: "type2", method: .flr, wipes: false),
        Case(profile: "flr-loses-state", method: .flr, wipes: true),
        Case(profile: "type2", method: .cxl, wipes: true),
        Case(profile: "type2", method: .sbr, wipes: true),
        Case(profile: "type2", method: .link, wipes: true, commitLatencyMicroseconds: 5_000),
    ]

    static let base: UInt64 = 0x40_0000_0000

    @Test(arguments: cases)
    func resetWithPreserve(_ c: Case) throws {
        var p = try DeviceProfile.named(c.profile)
        p.timing.commitLatencyMicroseconds = c.commitLatencyMicroseconds
        let manual = ManualClock()
        let dev = try EmulatedCXLDevice(profile: p, clock: manual)
        let d = try Discovered(dev)
        try dev.program(d, decoder: 0, base: Self.base, size: 2 * granule)
        // Decoder 1 may only commit once decoder 0 reports Committed (latency!).
        dev.advanceTime(milliseconds: 10)
        try dev.program(d, decoder: 1, base: Self.base + 4 * granule, size: granule, skip: granule)
        dev.advanceTime(milliseconds: 10)
        #expect(try dev.committed(d, 0) && dev.committed(d, 1))
        try dev.enableHDM(d)
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).baseHigh), width: 4, value: 0x40)
        try dev.enableMem(d, cache: true)
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.lock), width: 2, value: 1)     // CONFIG_LOCK
        try dev.configWrite(0x04, width: 2, value: 0x6)                  // Memory Space + Bus Master

        let clock = VirtualCXLClock(onSleep: { manual.advance(nanoseconds: UInt64($0 / .nanoseconds(1))) })
        let orchestrator = CXLResetOrchestrator(function: dev, options: CXLStateOptions(clock: clock))
        #expect(orchestrator.availableMethods().contains(c.method))
        let report = try orchestrator.reset(method: c.method, preserve: true)
        #expect(report.resetError == nil, "\(c): \(report.steps)")
        let wiped = report.wiped?.entries.filter { $0.a != $0.b }.map { "\($0.register): \($0.fields)" } ?? ["no read-back"]
        #expect(!wiped.isEmpty == c.wipes, "\(c): wiped \(wiped)")
        let left = report.diff?.entries.filter { $0.a != $0.b }.map { "\($0.register): \($0.fields)" } ?? ["no read-back"]
        #expect(report.succeeded, "\(c): \(report.steps) left \(left)")
        #expect(try dev.committed(d, 0) && dev.committed(d, 1))
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.lock)) == 1)
        // The restored decoders decode again.
        try dev.writeMemory(hpa: Self.base + 4 * granule, bytes: [0x42])
        #expect(try dev.readDPA(3 * granule, count: 1) == [0x42])
    }
}
