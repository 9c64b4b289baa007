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
/// through `VFIOUserClient` wrapped as a `PCIFunction`: config region 7, BAR regions
/// 0-5, DEVICE_RESET as FLR. Every register access of save, reset and restore
/// crosses the wire.
final class VFIOUserStateFunction: PCIFunction, @unchecked Sendable {
    let client: VFIOUserClient
    let address: String
    let configSize = pcieConfigSpaceSize
    let bars: [BARDescription] = []
    let resetMethods: [PCIResetMethod] = [.flr]

    init(client: VFIOUserClient, address: String) {
        self.client = client
        self.address = address
    }

    private func get(_ region: UInt32, _ offset: UInt64, _ width: Int) throws(PCIError) -> UInt64 {
        do {
            let b = try client.read(region: region, offset: offset, count: width)
            return b.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        } catch { throw .io("vfio-user read: \(error)") }
    }

    private func put(_ region: UInt32, _ offset: UInt64, _ width: Int, _ value: UInt64) throws(PCIError) {
        do {
            try client.write(region: region, offset: offset, data: (0..<width).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * $0)) })
        } catch { throw .io("vfio-user write: \(error)") }
    }

    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        UInt32(try get(VFIOPCIRegion.config.rawValue, UInt64(offset), width))
    }
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        try put(VFIOPCIRegion.config.rawValue, UInt64(offset), width, UInt64(value))
    }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 { try get(UInt32(bar), offset, width) }
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) { try put(UInt32(bar), offset, width, value) }
    func reset(_ method: PCIResetMethod) throws(PCIError) {
        guard method == .flr else { throw .resetUnsupported(method.rawValue) }
        do { try client.reset() } catch { throw .io("vfio-user DEVICE_RESET: \(error)") }
    }
}

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

    func function() throws -> VFIOUserStateFunction {
        var c = VFIOUserClientConfiguration()
        c.timeoutMilliseconds = 10_000
        return VFIOUserStateFunction(client: try VFIOUserClient(socketPath: path, configuration: c), address: "vfio-user:" + path)
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
        let fn = try s.function(); defer { fn.client.close() }
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

    /// CXL Reset driven through Control2 over the socket: quiet time on virtual time,
    /// Status2 polled over the wire, CONFIG_LOCK survives, merge path.
    @Test func cxlResetOverVFIOUser() throws {
        let s = try StateVFIOUserServer("type2"); defer { s.stop() }
        let fn = try s.function(); defer { fn.client.close() }
        try CXLStateEngine(function: fn, options: s.options).programLikeFirmware()
        let r = try CXLResetOrchestrator(function: fn, options: s.options).reset(method: .cxl, preserve: true)
        #expect(r.resetError == nil, "\(r.steps)")
        #expect(r.restore?.dvsecLocked == true)
        #expect(r.succeeded, "\(r.restore?.failures ?? []) \(r.diff?.changes.map(\.displayName) ?? [])")
    }
}
