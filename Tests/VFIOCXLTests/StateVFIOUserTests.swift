import CXL
import CXLEmulator
import Foundation
import Logging
import PCI
import Testing
import VFIO
import VFIOUser

/// The state engine's third backend: a device behind a vfio-user socket. The
/// emulated device is exposed by the vfio-pci-core equivalent (`VFIOPCIDevice`,
/// plain PCI passthrough, no CXL shadowing), served by `VFIOUserServer`, and reached
/// through `VFIOUserPCIFunction` (config region 7, BAR regions 0-5, FLR through the
/// Express capability). Every register access of save, reset and restore crosses
/// the wire.
/// An emulated device served over vfio-user for one test.
final class StateVFIOUserServer: @unchecked Sendable {
    let emulated: EmulatedCXLDevice
    let server: VFIOUserServer
    let path: String
    let manual = ManualClock()
    private let done = DispatchSemaphore(value: 0)

    init(_ profile: String) throws {
        emulated = try EmulatedCXLDevice(profile: try DeviceProfile.named(profile), clock: manual, address: "emulated:\(profile)")
        let device = try VFIOPCIDevice(function: emulated)
        path = NSTemporaryDirectory() + "cxl-state-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var logger = Logger(label: "test.state")
        logger.logLevel = .critical
        server = try VFIOUserServer(device: device, socketPath: path, logger: logger)
        let t = Thread { [self] in
            try? server.run()
            done.signal()
        }
        t.start()
    }

    func function(writeMultiple: Bool = true) throws -> VFIOUserPCIFunction {
        var c = VFIOUserClientConfiguration()
        c.timeoutMilliseconds = 10_000
        c.writeMultiple = writeMultiple
        return try VFIOUserPCIFunction(client: try VFIOUserClient(socketPath: path, configuration: c), address: "vfio-user:" + path)
    }

    /// Engine waits advance the emulator's clock.
    var options: CXLStateOptions {
        let manual = manual
        return CXLStateOptions(clock: VirtualCXLClock(onSleep: { d in
            let (s, a) = d.components
            manual.advance(nanoseconds: UInt64(s) * 1_000_000_000 + UInt64(a / 1_000_000_000))
        }))
    }

    func stop() { server.stop(); _ = done.wait(timeout: .now() + 10) }
}

@Suite("CXL state over vfio-user", .serialized)
struct StateVFIOUserTests {
    /// flr-loses-state behind a socket: DEVICE_RESET (FLR) wipes the CXL state;
    /// with preserve, save + reset + restore over the wire bring every register back.
    @Test func flrOverVFIOUser() throws {
        let s = try StateVFIOUserServer("flr-loses-state"); defer { s.stop() }
        let fn = try s.function(); defer { fn.close() }
        let engine = CXLStateEngine(function: fn, options: s.options)
        try engine.programLikeFirmware()
        let before = try engine.save()
        #expect(before.layout.hdm?.decoderCount == 2)
        #expect(before.dvsec(CXLDeviceDVSEC.lock)?.value == 1)

        let lost = try CXLResetOrchestrator(function: fn, options: s.options).reset(method: .flr, preserve: false)
        #expect(!lost.succeeded)
        #expect(lost.diff?.changes.contains { $0.register == "Decoder 0 Control" } == true)

        // Program again (the state is gone) and reset with preserve.
        try engine.programLikeFirmware()
        let kept = try CXLResetOrchestrator(function: fn, options: s.options).reset(method: .flr, preserve: true)
        #expect(kept.succeeded, "\(kept.restore?.failures ?? []) \(kept.diff?.changes.map(\.displayName) ?? [])")
        #expect(kept.restore?.decoders.map(\.result) == [.committed, .committed])
        // The host device really holds the restored decoders.
        let host = try CXLStateEngine(function: s.emulated, options: s.options).save()
        #expect(host[StateCatalog.hdmBlock, "Decoder 1 Control"]!.value & StateCatalog.committedBit != 0)
    }

    /// Each decoder's programming and Commit go out as one posted REGION_WRITE_MULTI when the server negotiated
    /// it: the restore (after an SBR took the decoders) has the same outcome, register by register, as with one
    /// posted REGION_WRITE per register, and the host device holds the decoders.
    @Test func batchedDecoderWritesRestoreTheSameAsSingleWrites() throws {
        var reports: [RestoreReport] = []
        for multiple in [true, false] {
            let s = try StateVFIOUserServer("type2"); defer { s.stop() }
            let fn = try s.function(writeMultiple: multiple); defer { fn.close() }
            #expect(fn.client.serverCapabilities.effectiveWriteMultiple == multiple)
            let engine = CXLStateEngine(function: fn, options: s.options)
            try engine.programLikeFirmware()
            let saved = try engine.save()
            try s.emulated.reset(.bus)
            var report = try engine.restore(saved)
            #expect(report.succeeded, "\(report.failures)")
            #expect(report.decoders.map(\.result) == [.committed, .committed])
            // The host device's own decoders (its BARs are not the guest's, so a fresh save, not a read-back).
            let host = try CXLStateEngine(function: s.emulated, options: s.options).save()
            let hdm = saved.registers.filter { $0.block == StateCatalog.hdmBlock }
            #expect(hdm.count == 16)
            #expect(hdm.map { host[$0.key]?.value } == hdm.map(\.value))
            report.device.address = ""
            reports.append(report)
        }
        #expect(reports[0] == reports[1])
    }

    /// CXL Reset driven through Control2 over the socket: quiet time on virtual time,
    /// Status2 polled over the wire, CONFIG_LOCK survives, merge path.
    @Test func cxlResetOverVFIOUser() throws {
        let s = try StateVFIOUserServer("type2"); defer { s.stop() }
        let fn = try s.function(); defer { fn.close() }
        try CXLStateEngine(function: fn, options: s.options).programLikeFirmware()
        let r = try CXLResetOrchestrator(function: fn, options: s.options).reset(method: .cxl, preserve: true)
        #expect(r.resetError == nil, "\(r.steps)")
        #expect(r.restore?.dvsecLocked == true)
        #expect(r.succeeded, "\(r.restore?.failures ?? []) \(r.diff?.changes.map(\.displayName) ?? [])")
    }
}
