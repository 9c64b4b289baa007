import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
import VFIO
import VFIOUser
import VFIOCXL
import VFIOTestSupport
#if canImport(Glibc)
import Glibc
#endif
@testable import CXLKitCommands

/// `vfio:BDF` targets and `serve --device vfio:BDF`, against the fake kernel with the emulated CXL Type-2 device
/// behind its vfio-pci (the real kernel runs in scripts/qemu-vfio-guest-test).
@Suite struct VFIOKernelTargetTests {
    static let bdf = "vfio:0000:01:00.0"

    func fixture() throws -> (EmulatedCXLDevice, FakeVFIOKernel, TargetResolver) {
        let emu = try EmulatedCXLDevice("type2")
        let k = FakeVFIOKernel(function: emu)
        k.hotResetDeps = [(7, PCIAddress("0000:01:00.0")!)]
        var r = TargetResolver()
        r.register(VFIOScheme(system: k))
        return (emu, k, r)
    }

    @Test func decodeThroughVFIOIsTheDevicesOwn() throws {
        let (emu, _, r) = try fixture()
        let targets = try r.resolve(Self.bdf)
        #expect(targets.count == 1 && targets[0].name == Self.bdf)
        let viaVFIO = CXLKit.decode(targets, json: false, verbosity: 3)
        let direct = CXLKit.decode([try ResolvedTarget(function: emu)], json: false, verbosity: 3)
        // Everything after the name line: config space, DVSECs, and component registers through BAR0.
        #expect(viaVFIO.split(separator: "\n").dropFirst() == direct.split(separator: "\n").dropFirst())
        #expect(viaVFIO.contains("CXL HDM Decoder Capability"))
    }

    @Test func hdmCommitSaveResetDiffRestoreThroughVFIO() throws {
        let (_, k, r) = try fixture()
        let fn = try #require(try r.resolve(Self.bdf)[0].function)
        #expect(fn.resetMethods == [.flr, .bus])
        let (_, committed) = try CXLKit.hdmCommit(fn, HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 0x1000_0000))
        #expect(committed)
        let path = NSTemporaryDirectory() + "vfio-state-\(getpid()).json"
        defer { unlink(path) }
        _ = try CXLKit.saveState(fn, to: path)
        // FLR is VFIO_DEVICE_RESET; CXL state survives it (CXL 3.1 §9.5).
        let flr = try CXLKit.resetState(fn, method: .flr, preserve: false, memClear: false, stateFile: nil, json: false)
        #expect(k.resets == 1 && flr.exitCode == 0)
        // SBR is VFIO_DEVICE_PCI_HOT_RESET: the decoder is lost, diff says so, restore brings it back.
        let sbr = try CXLKit.resetState(fn, method: .sbr, preserve: false, memClear: false, stateFile: nil, json: false)
        #expect(k.hotResets == 1 && sbr.exitCode == 1)
        let diff = CXLKit.diffState(try CXLKit.loadState(.file(path)), try CXLKit.loadState(.live(fn)), json: false)
        #expect(diff.exitCode == 1 && diff.output.contains("Decoder 0"))
        let restored = try CXLKit.restoreState(fn, from: path, json: false)
        #expect(restored.exitCode == 0)
        #expect(CXLKit.diffState(try CXLKit.loadState(.file(path)), try CXLKit.loadState(.live(fn)), json: false).exitCode == 0)
        // reset --preserve around an SBR keeps everything.
        #expect(try CXLKit.resetState(fn, method: .sbr, preserve: true, memClear: false, stateFile: nil, json: false).exitCode == 0)
    }

    /// `serve --device vfio:BDF`: the kernel device served through vfio-cxl; a vfio-user client decodes the same
    /// extended capabilities, and its FLR becomes the kernel's VFIO_DEVICE_RESET.
    /// Linux 6.1's vfio-pci hides every DVSEC (no `pci_ext_cap_length` entry): the function reads extended config
    /// space from sysfs and writes the hidden capabilities there, so the CXL commands still work.
    @Test func dvsecsHiddenByVFIOAreReachedThroughSysfs() throws {
        let (emu, k, r) = try fixture()
        let dvsecs = CapabilityList(walking: try emu.configSnapshot()).extended.filter { $0.id == 0x23 }.map(\.offset)
        #expect(dvsecs.count >= 3)
        k.hiddenExtCaps = Set(dvsecs)
        let fn = try #require(try r.resolve(Self.bdf)[0].function as? VFIOKernelPCIFunction)
        #expect(fn.hiddenByVFIO == dvsecs)
        let viaVFIO = CXLKit.decode([try ResolvedTarget(function: fn)], json: false, verbosity: 3)
        let direct = CXLKit.decode([try ResolvedTarget(function: emu)], json: false, verbosity: 3)
        #expect(viaVFIO.split(separator: "\n").dropFirst() == direct.split(separator: "\n").dropFirst())
        let path = NSTemporaryDirectory() + "vfio-hidden-\(getpid()).json"
        defer { unlink(path) }
        _ = try CXLKit.hdmCommit(fn, HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 0x1000_0000))
        _ = try CXLKit.saveState(fn, to: path)
        #expect(try CXLKit.resetState(fn, method: .sbr, preserve: false, memClear: false, stateFile: nil, json: false).exitCode == 1)
        #expect(try CXLKit.restoreState(fn, from: path, json: false).exitCode == 0)
        #expect(k.sysfsConfigWrites > 0)
        // Without the sysfs file (not root, or no sysfs) the DVSECs stay hidden: not a CXL device.
        let k2 = FakeVFIOKernel(function: try EmulatedCXLDevice("type2"))
        k2.hiddenExtCaps = Set(dvsecs)
        k2.openErrors["/sys/bus/pci/devices/0000:01:00.0/config"] = EACCES
        var r2 = TargetResolver()
        r2.register(VFIOScheme(system: k2))
        let fn2 = try #require(try r2.resolve(Self.bdf)[0].function as? VFIOKernelPCIFunction)
        #expect(fn2.hiddenByVFIO.isEmpty)
        #expect(!CXLKit.decode([try ResolvedTarget(function: fn2)], json: false, verbosity: 3).contains("CXLCap"))
    }

    @Test func serveDeviceServesTheKernelDevice() throws {
        let (emu, k, r) = try fixture()
        let socket = serveSocketPath("vfio-dev")
        let session = try DeviceServeSession(target: Self.bdf, socketPath: socket, resolver: r)
        // type2 has its memory only behind the HDM decoders (no memory BAR): served as plain PCI, the reason said.
        #expect(session.device?.cxlDisabledReason?.contains("no device memory: no mappable prefetchable BAR of at least 0x40000000 bytes") == true)
        let done = DispatchSemaphore(value: 0)
        Thread { try? session.run(); done.signal() }.start()
        defer { session.stop(); done.wait() }
        let fn = try VFIOUserPCIFunction(socketPath: socket)
        let text = CXLKit.decode([try ResolvedTarget(function: fn)], json: false, verbosity: 3)
        let direct = CXLKit.decode([try ResolvedTarget(function: emu)], json: false, verbosity: 3)
        let viaSocket = decodeSection(text, from: "Capabilities: [110")
        #expect(!viaSocket.isEmpty && viaSocket == decodeSection(direct, from: "Capabilities: [110"))
        #expect(try CXLKit.resetState(fn, method: .flr, preserve: true, memClear: false, stateFile: nil, json: false).exitCode == 0)
        #expect(k.resets == 1)
        fn.close()
        #expect(throws: CommandError("--device emulated:type2: serve takes a device bound to vfio-pci, as vfio:BDF (e.g. vfio:0000:3b:00.0)")) {
            _ = try DeviceServeSession(target: "emulated:type2", socketPath: socket + "2", resolver: r)
        }
    }

    /// A CXL device whose memory is also a prefetchable BAR (BAR2, as accelerators expose their local memory):
    /// `serve --device` serves it through vfio-cxl (DVSEC and HDM shadows, reset orchestration) with the CXL memory
    /// region (region 9) backed by that BAR: region reads and writes go through the kernel device's BAR, a client's
    /// mmap is the kernel device fd at BAR2's region offset, and a reset gates and restores it.
    @Test func serveDeviceServesTheMemoryBARAsTheCXLMemoryRegion() throws {
        var p = try DeviceProfile.named("type2")
        p.prefetchableMemoryBAR = true
        p.memorySize = 256 << 20
        let emu = try EmulatedCXLDevice(profile: p)
        let k = FakeVFIOKernel(function: emu, fdRegion: 2)
        var r = TargetResolver()
        r.register(VFIOScheme(system: k))
        let socket = serveSocketPath("vfio-mem")
        let session = try DeviceServeSession(target: Self.bdf, socketPath: socket, resolver: r)
        #expect(session.device?.isCXL == true && session.device?.cxlDisabledReason == nil)
        #expect(session.memory?.bar == 2 && session.memory?.memorySize == 256 << 20 && session.memory?.memoryFileOffset == 0)
        // vfio-cxl committed decoder 0 on the host (firmware had not) over the whole memory.
        let layout = try #require(session.device?.layout)
        let ctrl = try emu.barRead(0, offset: layout.componentOffset + UInt64(layout.hdmOffset) + 0x20, width: 4)
        #expect(ctrl & 0x400 != 0)
        let done = DispatchSemaphore(value: 0)
        Thread { try? session.run(); done.signal() }.start()
        defer { session.stop(); done.wait() }
        let c = try VFIOUserClient(socketPath: socket)
        defer { c.close() }
        #expect(try c.deviceInfo().flags.contains(VFIOCXLUAPI.deviceFlag))
        let mem = VFIOCXLUAPI.memoryRegionIndex
        let region = try c.regionInfo(mem)
        #expect(region.flags.contains(.mmap) && region.info.size == 256 << 20)
        let t = try VFIORegionTypeCapability(parsing: #require(region.info.capabilities.first { $0.id == VFIORegionCapabilityID.type }))
        #expect(t.type == VFIOCXLUAPI.regionType && t.subtype == VFIOCXLUAPI.memorySubtype)
        // Region writes reach the device's memory through its BAR, unaligned ones too.
        try c.write(region: mem, offset: 0x1003, data: [1, 2, 3, 4, 5, 6, 7])
        #expect(try emu.readDPA(0x1003, count: 7) == [1, 2, 3, 4, 5, 6, 7])
        #expect(try c.read(region: mem, offset: 0x1002, count: 9) == [0, 1, 2, 3, 4, 5, 6, 7, 0])
        // The client's mapping is the kernel device fd at BAR2's offset: the device's memory, zero copy.
        let m = try #require(try c.mapRegion(region).first)
        (m.memory.base + 0x2000).storeBytes(of: 0xCAFE_F00D as UInt32, as: UInt32.self)
        #expect(try emu.readDPA(0x2000, count: 4) == [0x0D, 0xF0, 0xFE, 0xCA])
        #expect(try c.read(region: mem, offset: 0x2000, count: 4) == [0x0D, 0xF0, 0xFE, 0xCA])
        #expect(throws: (any Error).self) { try c.read(region: mem, offset: (256 << 20) - 2, count: 4) }
        // DEVICE_RESET: save, the kernel's VFIO_DEVICE_RESET, restore; the memory region is served again after it.
        let resetsBefore = k.resets
        try c.reset()
        #expect(k.resets == resetsBefore + 1 && session.device?.lastRestore?.succeeded == true)
        #expect(try c.regionInfo(mem).flags.contains(.mmap))
        #expect(try c.read(region: mem, offset: 0x2000, count: 4) == [0x0D, 0xF0, 0xFE, 0xCA])
    }

    /// `--memory-bar N` that cannot hold the memory is an error, not a silent plain-PCI device.
    @Test func aMemoryBARThatCannotHoldTheMemoryIsRefused() throws {
        var p = try DeviceProfile.named("type2")
        p.prefetchableMemoryBAR = true
        p.memorySize = 256 << 20
        let k = FakeVFIOKernel(function: try EmulatedCXLDevice(profile: p), fdRegion: 2)
        var r = TargetResolver()
        r.register(VFIOScheme(system: k))
        let socket = serveSocketPath("vfio-membar")
        #expect(throws: CommandError("vfio:0000:01:00.0: --memory-bar 0: not a usable CXL Type-2 device: no device memory: BAR 0 (0x20000 bytes) is smaller than the DVSEC's memory (0x10000000)")) {
            _ = try DeviceServeSession(target: Self.bdf, socketPath: socket, memoryBAR: 0, resolver: r)
        }
        #expect(throws: CommandError("vfio:0000:01:00.0: --memory-bar 4: not a usable CXL Type-2 device: no device memory: BAR 4 is not implemented")) {
            _ = try DeviceServeSession(target: Self.bdf, socketPath: socket, memoryBAR: 4, resolver: r)
        }
        let s = try DeviceServeSession(target: Self.bdf, socketPath: socket, memoryBAR: 2, resolver: r)
        #expect(s.memory?.bar == 2)
    }

    /// `reset --method cxl` on a `vfio:` target: CXL Reset through the DVSEC in the config region (no VFIO reset
    /// ioctl), with the function quiesced first (Bus Master Enable cleared, INTx disabled, as the PCI core does before
    /// a function reset) and its Command restored after; the state engine around it: without --preserve the decoder
    /// is lost and the command says so, with --preserve it comes back.
    @Test func cxlResetThroughVFIOQuiescesAndTheStateEngineCarriesState() throws {
        let (_, k, r) = try fixture()
        let fn = try #require(try r.resolve(Self.bdf)[0].function)
        #expect(CXLResetOrchestrator(function: fn).availableMethods().contains(.cxl))
        let layout = try CXLPassthroughLayout.discover(fn)
        let control2 = layout.dvsecOffset + CXLDeviceDVSEC.control2.offset
        let command = PCIHeader.command.offset
        let cmd = try fn.configRead(command, width: 2)
        try fn.configWrite(command, width: 2, value: cmd | 0x4 | 0x2)
        _ = try CXLKit.hdmCommit(fn, HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 0x1000_0000))
        k.configWrites = []
        let plain = try CXLKit.resetState(fn, method: .cxl, preserve: false, memClear: false, stateFile: nil, json: false)
        #expect(plain.exitCode == 1 && plain.output.contains("Decoder 0"))
        #expect(k.resets == 0 && k.hotResets == 0)
        let writes = k.configWrites
        let quiesce = writes.firstIndex { $0.offset == command && $0.bytes.count == 2 && $0.bytes[0] & 0x4 == 0 && $0.bytes[1] & 0x4 != 0 }
        let initiate = writes.firstIndex { $0.offset == control2 && $0.bytes[0] & 0x4 != 0 }
        #expect(quiesce != nil && initiate != nil && quiesce! < initiate!)
        // Bus Master Enable and INTx back as they were (the PCI state restore after every reset).
        #expect(try fn.configRead(command, width: 2) & 0x406 == (cmd | 0x6) & 0x406)
        _ = try CXLKit.hdmCommit(fn, HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 0x1000_0000))
        let kept = try CXLKit.resetState(fn, method: .cxl, preserve: true, memClear: false, stateFile: nil, json: false)
        #expect(kept.exitCode == 0)
        let ctrl = try fn.barRead(layout.componentBAR, offset: layout.componentOffset + UInt64(layout.hdmOffset) + 0x20, width: 4)
        #expect(ctrl & 0x400 != 0)
    }

    /// A guest's Initiate CXL Reset through `serve --device`: vfio-cxl runs the CXL Reset on the kernel's device
    /// through its DVSEC (not a VFIO reset), then re-arms the client's interrupts (disable, then the same eventfds
    /// again), because the reset took the function's MSI-X programming away behind vfio-pci's back.
    @Test func guestCXLResetThroughServeDeviceReArmsTheClientsInterrupts() throws {
        var p = try DeviceProfile.named("type2")
        p.prefetchableMemoryBAR = true
        p.memorySize = 256 << 20
        let k = FakeVFIOKernel(function: try EmulatedCXLDevice(profile: p), fdRegion: 2)
        var r = TargetResolver()
        r.register(VFIOScheme(system: k))
        let socket = serveSocketPath("vfio-cxlreset")
        let session = try DeviceServeSession(target: Self.bdf, socketPath: socket, resolver: r)
        let layout = try #require(session.device?.layout)
        let done = DispatchSemaphore(value: 0)
        Thread { try? session.run(); done.signal() }.start()
        defer { session.stop(); done.wait() }
        let c = try VFIOUserClient(socketPath: socket)
        defer { c.close() }
        let msix = VFIOPCIIRQ.msix.rawValue
        let efds = try (0..<2).map { _ in try VFIOEventFD.create() }
        try c.setIRQEventFDs(index: msix, efds)
        let armed = try #require(k.irqFDs[msix])
        #expect(armed.count == 2 && armed.allSatisfy { $0 >= 0 })
        let setIRQs = k.ioctlCalls(VFIOKernelUAPI.deviceSetIRQs).count
        let resets = k.resets
        let cfg = VFIOPCIRegion.config.rawValue
        try c.write(region: cfg, offset: UInt64(layout.dvsecOffset + CXLDeviceDVSEC.control2.offset), data: [0x04, 0x00])
        let status2 = try c.read(region: cfg, offset: UInt64(layout.dvsecOffset + CXLDeviceDVSEC.status2.offset), count: 2)
        #expect(status2[0] & 0x2 != 0 && status2[0] & 0x4 == 0)
        #expect(k.resets == resets)
        let calls = Array(k.ioctlCalls(VFIOKernelUAPI.deviceSetIRQs).dropFirst(setIRQs))
        #expect(calls.count == 2)
        // Disable (DATA_NONE | ACTION_TRIGGER, count 0), then the same eventfds again.
        #expect(calls.first?.bytes.map { Array($0[4..<20]) } == [0x21, 0, 0, 0, UInt8(msix), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(k.irqFDs[msix] == armed)
        #expect(session.device?.lastRestore?.succeeded == true)
    }

    /// Through the executable: `--memory-bar` without `--device` or out of range, and `conform vfio:` on this
    /// machine (no device bound to vfio-pci), are each one error line and exit status 1.
    @Test func memoryBarAndConformVFIOErrorsAreOneLineAndExit1() throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        func run(_ args: [String]) throws -> (status: Int32, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = args
            let pipe = Pipe()
            p.standardOutput = FileHandle.nullDevice
            p.standardError = pipe
            try p.run()
            let data = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: data, as: UTF8.self))
        }
        let sock = serveSocketPath("membar-cli")
        var r = try run(["serve", "--socket", sock, "--memory-bar", "2"])
        #expect(r.status == 1 && r.stderr == "cxlkit: error: --memory-bar goes with --device vfio:BDF\n")
        r = try run(["serve", "--device", "vfio:0000:00:00.0", "--socket", sock, "--memory-bar", "9"])
        #expect(r.status == 1 && r.stderr == "cxlkit: error: --memory-bar 9: a BAR number, 0 to 5\n")
        r = try run(["conform", "vfio:0000:00:00.0"])
        #expect(r.status == 1 && r.stderr.hasPrefix("cxlkit: error: vfio:0000:00:00.0: ") && r.stderr.split(separator: "\n").count == 1, "\(r)")
        #expect(!FileManager.default.fileExists(atPath: sock))
    }
}
