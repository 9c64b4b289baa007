import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
@testable import CXLKitCommands

/// The engine through the sysfs backend (config file pread/pwrite, resourceN mmap,
/// reset_method + reset attributes) on a fake sysfs tree built from a programmed
/// emulated device. Files are not a device: writes persist but nothing commits, so
/// these tests prove the access paths and the honest failure when a decoder never
/// reports Committed.
@Suite("CXL state through the sysfs backend (fake tree)", .serialized)
struct StateSysfsTests {
    static let address = "0000:3b:00.0"

    struct Tree {
        let root: URL
        let device: URL
        let emulated: EmulatedCXLDevice
        var config: URL { device.appendingPathComponent("config") }
        var resource0: URL { device.appendingPathComponent("resource0") }
    }

    func virtualOptions() -> CXLStateOptions { CXLStateOptions(clock: VirtualCXLClock()) }

    /// An emulated type2 programmed like firmware (decoders with Lock On Commit),
    /// written out as ROOT/bus/pci/devices/ADDR/{config,resource,resource0,reset_method,reset}.
    func makeTree() throws -> Tree {
        let emulated = try EmulatedCXLDevice(profile: try DeviceProfile.named("type2"), clock: ManualClock(), address: Self.address)
        try CXLStateEngine(function: emulated, options: virtualOptions()).programLikeFirmware(CXLFirmwareProgram(lockOnCommit: true))
        let root = try temporaryDirectory()
        let dir = root.appendingPathComponent("bus/pci/devices/" + Self.address)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(try emulated.configSnapshot().bytes).write(to: dir.appendingPathComponent("config"))
        var block = [UInt8](repeating: 0, count: ComponentRegisterBlock.size)
        for off in stride(from: 0, to: block.count, by: 4) {
            let v = (try? emulated.barRead(0, offset: UInt64(off), width: 4)) ?? 0
            for i in 0..<4 { block[off + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
        }
        try Data(block).write(to: dir.appendingPathComponent("resource0"))
        // BAR 0: 64-bit memory, 64 KiB (IORESOURCE_MEM | IORESOURCE_MEM_64).
        let resource = "0x00000000e0000000 0x00000000e000ffff 0x0000000000140204\n"
            + String(repeating: "0x0000000000000000 0x0000000000000000 0x0000000000000000\n", count: 5)
        try Data(resource.utf8).write(to: dir.appendingPathComponent("resource"))
        try Data("flr bus\n".utf8).write(to: dir.appendingPathComponent("reset_method"))
        try Data().write(to: dir.appendingPathComponent("reset"))
        return Tree(root: root, device: dir, emulated: emulated)
    }

    func sysfsFunction(_ t: Tree) throws -> any PCIFunction {
        try CXLKit.stateFunction("sysfs:" + Self.address, resolver: TargetResolver(options: TargetOptions(sysfsRoot: t.root.path)))
    }

    func patch(_ url: URL, at offset: Int, _ bytes: [UInt8]) throws {
        let h = try FileHandle(forWritingTo: url)
        try h.seek(toOffset: UInt64(offset))
        h.write(Data(bytes))
        try h.close()
    }

    @Test func saveThroughSysfsEqualsSaveThroughTheEmulator() throws {
        let t = try makeTree()
        defer { try? FileManager.default.removeItem(at: t.root) }
        let viaSysfs = try CXLStateEngine(function: try sysfsFunction(t), options: virtualOptions()).save()
        let viaEmulator = try CXLStateEngine(function: t.emulated, options: virtualOptions()).save()
        #expect(viaSysfs.registers == viaEmulator.registers)
        #expect(viaSysfs.layout == viaEmulator.layout)
        #expect(viaSysfs.identity.matches(viaEmulator.identity))
    }

    /// A conventional reset cleared the DVSEC (the HDM decoders are locked and
    /// committed and stay): the restore rewrites the config file through pwrite,
    /// leaves the decoders alone, and re-arms CONFIG_LOCK last.
    @Test func restoreRewritesTheDVSECThroughTheConfigFile() throws {
        let t = try makeTree()
        defer { try? FileManager.default.removeItem(at: t.root) }
        let fn = try sysfsFunction(t)
        let engine = CXLStateEngine(function: fn, options: virtualOptions())
        let saved = try engine.save()
        let original = try Data(contentsOf: t.config)
        let d = saved.layout.dvsecOffset
        try patch(t.config, at: d + CXLDeviceDVSEC.control.offset, [0x02, 0x00])
        try patch(t.config, at: d + CXLDeviceDVSEC.lock.offset, [0x00, 0x00])
        try patch(t.config, at: d + CXLDeviceDVSEC.range1.baseHigh.offset, [0, 0, 0, 0])
        let report = try engine.restore(saved)
        #expect(report.succeeded, "\(report.failures)")
        #expect(report.decoders.map(\.result) == [.leftLocked, .leftLocked])
        #expect(try Data(contentsOf: t.config) == original)
    }

    /// A file never sets Committed: the decoder's commit times out within the 10 ms
    /// budget, the report says so, the restore fails, nothing traps.
    @Test func aDeviceThatNeverCommitsIsAReportedFailure() throws {
        let t = try makeTree()
        defer { try? FileManager.default.removeItem(at: t.root) }
        let fn = try sysfsFunction(t)
        let clock = VirtualCXLClock()
        let engine = CXLStateEngine(function: fn, options: CXLStateOptions(clock: clock))
        let saved = try engine.save()
        let hdm = try #require(saved.layout.hdm)
        let control0 = Int(hdm.hdmOffset) + HDMDecoderCapability.decoderRegisters(0, endpoint: true)[4].offset
        try patch(t.resource0, at: control0, [0, 0, 0, 0])  // decoder 0 wiped
        let report = try engine.restore(saved)
        #expect(!report.succeeded)
        #expect(report.decoders.map(\.result) == [.commitTimeout, .blocked])
        #expect(clock.elapsed == .milliseconds(10))
        let r = try CXLKit.restoreState(fn, from: try {
            let p = t.root.appendingPathComponent("s.json").path
            try CXLStateFile.write(saved, to: p)
            return p
        }(), json: false, options: CXLStateOptions(clock: VirtualCXLClock()))
        #expect(r.exitCode == 1)
        #expect(r.output.contains("decoder 0: commit-timeout"))
    }

    /// reset through sysfs: the method goes to reset_method, then "1" to reset; a
    /// method the kernel does not list is refused before anything happens.
    @Test func resetUsesTheKernelsResetMethods() throws {
        let t = try makeTree()
        defer { try? FileManager.default.removeItem(at: t.root) }
        let fn = try sysfsFunction(t)
        #expect(throws: CXLStateError.resetUnsupported("\(Self.address) does not offer link (offers: flr, bus)")) {
            try CXLResetOrchestrator(function: fn, options: virtualOptions()).reset(method: .link, preserve: true)
        }
        #expect(String(decoding: try Data(contentsOf: t.device.appendingPathComponent("reset")), as: UTF8.self) == "")
        let r = try CXLResetOrchestrator(function: fn, options: virtualOptions()).reset(method: .sbr, preserve: true)
        // A regular file is not truncated by the write, as a sysfs attribute needs not be.
        #expect(String(decoding: try Data(contentsOf: t.device.appendingPathComponent("reset_method")), as: UTF8.self).hasPrefix("bus"))
        #expect(String(decoding: try Data(contentsOf: t.device.appendingPathComponent("reset")), as: UTF8.self) == "1")
        #expect(r.succeeded, "\(r.restore?.failures ?? [])")
    }
}
