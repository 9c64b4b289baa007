import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
import VFIO
import VFIOUser
import VFIOCXL
import VFIOTestSupport
import CXLMetrics
import CXLKitCommands
#if canImport(Glibc)
import Glibc
#endif

/// `cxlkit serve --device vfio:BDF` in-process against the fake kernel (`FakeVFIOKernel`: its vfio-pci in front of an
/// emulated function), with `--control` and `--uapi` as the command line sets them; the session runs on its own
/// thread until `stop()`.
final class InProcessDeviceServe: @unchecked Sendable {
    let session: DeviceServeSession
    let kernel: FakeVFIOKernel
    let emulated: EmulatedCXLDevice
    let control: String?
    private let done = DispatchSemaphore(value: 0)

    /// `profile` with its memory in a prefetchable BAR2 (as accelerators expose it), so the device is served through
    /// vfio-cxl with a CXL memory region; the fake kernel's device fd is that BAR's backing.
    /// `fdRegion`: the BAR the fake kernel's device fd is the backing of (a real device fd backs every region).
    init(profile: String, tag: String, uapi: CXLUAPI = .v2, control: Bool = true, maxControlClients: Int = 4, fdRegion: UInt32 = 2) throws {
        var p = try DeviceProfile.named(profile)
        p.prefetchableMemoryBAR = true
        p.memorySize = 256 << 20
        emulated = try EmulatedCXLDevice(profile: p)
        kernel = FakeVFIOKernel(function: emulated, fdRegion: fdRegion)
        // This vfio-pci lets BAR0 be mapped where the device has memory behind it (the SRAM window, if any); the
        // registers around it stay read/write through the device fd.
        if let areas = emulated.mmapAreas(bar: 0) { kernel.sparseAreas[0] = areas }
        var r = TargetResolver()
        r.register(VFIOScheme(system: kernel))
        var o = ServeOptions(profile: profile, socketPath: serveSocketPath(tag))
        o.uapi = uapi
        o.maxControlClients = maxControlClients
        self.control = control ? serveSocketPath(tag + "-ctl") : nil
        o.controlPath = self.control
        o.controlMetrics = { CXLMetricsExposition.render($0, format: $1 ? .openMetrics : .prometheus) }
        session = try DeviceServeSession(target: "vfio:0000:01:00.0", options: o, resolver: r)
        let t = Thread { [self] in
            try? session.run()
            done.signal()
        }
        t.start()
    }

    var socket: String { session.options.socketPath }

    func stop() -> Bool {
        session.stop()
        return done.wait(timeout: .now() + 10) == .success
    }
}

@Suite("cxlkit serve --device vfio:BDF: the control socket and the v4 contract over a kernel device", .serialized)
struct ServeDeviceControlTests {
    /// A real device (the fake kernel's) served with `--control`, a client attached throughout as a VM would be. The
    /// client enables memory decoding and commits decoder 0 in its view; the state is saved through `control:PATH`;
    /// the client's FLR on flr-loses-state (the host function loses its decoders) is carried by vfio-cxl, its
    /// DEVICE_RESET (QEMU's SBR) resets its view: through the control socket, with the client still attached, status
    /// shows each reset, `check --against` is healthy after the FLR and names decoder 0 after the SBR, the metrics
    /// show it uncommitted. None of the control requests writes to the kernel's device.
    @Test func theControlSocketWatchesAServedKernelDevice() throws {
        let serve = try InProcessDeviceServe(profile: "flr-loses-state", tag: "devctl")
        defer { #expect(serve.stop()) }
        let ctl = try #require(serve.control)
        let dev = "control:" + ctl
        #expect(serve.session.device?.isCXL == true)
        let vm = try VFIOUserPCIFunction(socketPath: serve.socket)
        defer { vm.close() }
        let cmd = try vm.configRead(PCIHeader.command.offset, width: 2)
        try vm.configWrite(PCIHeader.command.offset, width: 2, value: cmd | UInt32(StateCatalog.memorySpaceEnableBit))
        var req = HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 256 << 20)
        req.enableDecoding = true
        #expect(try CXLKit.hdmCommit(vm, req).committed)

        let control = try ControlPCIFunction(path: ctl)
        var status = try control.status()
        #expect(status.clientAttached && status.resets.isEmpty)
        #expect(status.profile == "vfio" && status.device == "vfio:0000:01:00.0" && status.memoryGated == false)

        // The control socket only reads: whatever it is asked, the kernel sees no config write, no ioctl.
        let kernelWrites = serve.kernel.configWrites.count, kernelCalls = serve.kernel.calls.count
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("served-device.json").path
        _ = try CXLKit.saveState(control, to: file)
        let before = CXLKit.checkReport([CXLKit.checkAgainst(file, function: control, target: dev, sysfsRoot: "/nonexistent")], json: false)
        #expect(before.exitCode == 0, "\(before.output)")
        let client = try ControlClient(path: ctl)
        #expect(try client.text("decode").contains("HDM Decoder"))
        #expect(try client.text("check").contains(dev))
        #expect(!(try client.request("save")).isEmpty)
        #expect(samples(try client.text("metrics"))["cxl_hdm_decoder_committed{device=\"\(dev)\",decoder=\"0\"}"] == "1.0")
        // A real device's BARs are read only inside the CXL component register block: its other MMIO can have read
        // side effects (a status cleared, a FIFO popped) under the VM's driver.
        let l = try #require(serve.session.device?.layout)
        #expect(try client.text("bar-read \(l.componentBAR) \(l.componentOffset + 0x1000) 4").hasPrefix("0x"))
        for (bar, offset) in [(l.componentBAR, l.componentOffset + 0x10000), (2, 0)] {
            #expect { try client.text("bar-read \(bar) \(offset) 4") } throws: { e in
                (e as? CommandError)?.message.contains("outside the CXL component register block(s)") == true
            }
        }
        #expect(serve.kernel.configWrites.count == kernelWrites && serve.kernel.calls.count == kernelCalls,
                "\(serve.kernel.calls.dropFirst(kernelCalls))")

        // The client's FLR: the kernel resets the function (VFIO_DEVICE_RESET), which loses its decoders
        // (flr-loses-state); vfio-cxl saved and restores them, and the client's view keeps its decoder (CXL 3.1 §9.5).
        let hostResets = serve.kernel.resets
        #expect(try CXLResetOrchestrator(function: vm, options: CXLStateOptions()).reset(method: .flr, preserve: false).succeeded)
        #expect(serve.kernel.resets == hostResets + 1 && serve.session.device?.lastRestore?.succeeded == true)
        status = try control.status()
        #expect(status.clientAttached, "the client is still attached")
        #expect(status.resets == ["flr": 1])
        let afterFLR = CXLKit.checkReport([CXLKit.checkAgainst(file, function: try ControlPCIFunction(path: ctl), target: dev,
                                                               sysfsRoot: "/nonexistent")], json: false)
        #expect(afterFLR.exitCode == 0, "\(afterFLR.output)")

        // The client's SBR (VFIO_USER_DEVICE_RESET): a conventional reset of its view; decoder 0 is gone.
        #expect(!(try CXLResetOrchestrator(function: vm, options: CXLStateOptions()).reset(method: .sbr, preserve: false).succeeded))
        #expect(serve.kernel.resets == hostResets + 2)
        status = try control.status()
        #expect(status.clientAttached, "the client is still attached")
        #expect(status.resets == ["flr": 1, "device_reset": 1] && status.memoryGated == false)
        let after = CXLKit.checkReport([CXLKit.checkAgainst(file, function: try ControlPCIFunction(path: ctl), target: dev,
                                                            sysfsRoot: "/nonexistent")], json: false)
        #expect(after.exitCode == 1)
        #expect(after.output.contains("PROBLEM: decoder 0 was committed at 0x4000000000 (256 MiB), now not committed"), "\(after.output)")

        let metrics = samples(try client.text("metrics"))
        #expect(metrics["cxl_hdm_decoder_committed{device=\"\(dev)\",decoder=\"0\"}"] == "0.0")
        #expect(metrics["cxl_serve_client_attached{device=\"\(dev)\"}"] == "1.0")
        #expect(metrics["cxl_serve_resets_total{device=\"\(dev)\",method=\"flr\"}"] == "1")
        #expect(metrics["cxl_serve_resets_total{device=\"\(dev)\",method=\"device_reset\"}"] == "1")
        #expect(try client.text("openmetrics").hasSuffix("# EOF\n"))
        // control:PATH as a target of cxlkit metrics / the exporter.
        let collected = CXLKit.collectHealth(targets: [dev], resolver: TargetResolver())
        #expect(collected.first?.serve?.device == "vfio:0000:01:00.0" && collected.first?.serve?.resets["device_reset"] == 1)
        #expect(samples(CXLMetricsExposition.render(collected))["cxlkit_target_up{device=\"\(dev)\"}"] == "1.0")

        // The control view refuses writes and resets; the client's own view is untouched by all of the above.
        #expect(throws: PCIError.self) { try control.configWrite(PCIHeader.command.offset, width: 2, value: 0) }
        #expect(throws: PCIError.self) { try control.reset(.flr) }
        #expect(try vm.configRead(PCIHeader.command.offset, width: 2) & UInt32(StateCatalog.memorySpaceEnableBit) != 0)
        #expect(try ControlPCIFunction(path: ctl).status().clientAttached)
    }

    /// `--control-clients` bounds a device serve's control socket as it does the emulator's.
    @Test func aDeviceServesControlClientsBounded() throws {
        let serve = try InProcessDeviceServe(profile: "type2", tag: "devbound", maxControlClients: 1)
        defer { #expect(serve.stop()) }
        let ctl = try #require(serve.control)
        let a = try ControlClient(path: ctl)
        #expect(try a.text("status").contains("\"profile\":\"vfio\""))
        let b = try ControlClient(path: ctl)
        #expect(throws: CommandError.self) { try b.text("status") }
        #expect(serve.session.control?.refused == 1)
        _ = a
    }

    /// The checks that map a BAR through the fd the server hands out: the component BAR (BAR0 here) and CXL_MEM
    /// (the memory BAR, BAR2).
    static let mapsComponentBAR: Set<String> = ["comp_bar_sparse_mmap"]
    static let mapsMemoryBAR: Set<String> = ["hdm_mem_mmap_rw", "hdm_mem_huge_mmap", "hdm_mem_ioas_map", "hdm_mem_touch_committed_base"]

    /// `serve --device vfio:BDF --uapi v4` over a kernel function with one committed, locked decoder and CXL Reset
    /// (cxl-accel, its memory in BAR2): `cxlkit conform` against the served socket. DEVICE_RESET is the CXL Reset,
    /// run on the kernel's function through its DVSEC (no VFIO reset ioctl), its decoder restored; the control
    /// socket (v4 too) sees the resets and the memory gate open again.
    ///
    /// The fake kernel's device fd is the backing of one BAR only (`fdRegion`; a real device fd backs each region at
    /// its offset), and the client refuses to map a window past the end of a regular file: so the checks that map
    /// the other BAR fail on the fake's fd, with that reason, and nothing else. Run once with each BAR behind the
    /// fd, every one of the 19 checks passes in one of the two runs.
    @Test(arguments: [UInt32(2), 0])
    func conformPassesAgainstAKernelDeviceServedAsV4(fdRegion: UInt32) throws {
        let serve = try InProcessDeviceServe(profile: "cxl-accel", tag: "devv4", uapi: .v4, fdRegion: fdRegion)
        defer { #expect(serve.stop()) }
        let v4 = try #require(serve.session.v4Device)
        #expect(serve.session.device == nil && v4.decoder == 0 && v4.programming.size == 256 << 20 && v4.layout.componentBAR == 0)
        let (text, ok) = try CXLKit.conform(target: "vfio-user:" + serve.socket, json: false)
        let lines = text.split(separator: "\n").map(String.init)
        let unbacked = fdRegion == 2 ? Self.mapsComponentBAR : Self.mapsMemoryBAR
        for name in VFIOCXLConformance.names {
            if unbacked.contains(name) {
                #expect(lines.contains { $0.hasPrefix("FAIL  \(name) ") && $0.contains("the fd holds 0x") }, "\(name): \(text)")
            } else {
                #expect(lines.contains { $0.hasPrefix("PASS  \(name) ") }, "\(name): \(text)")
            }
        }
        #expect(!ok && lines.last == "\(19 - unbacked.count) passed, \(unbacked.count) failed, 0 skipped", "\(text)")
        // The CXL Reset ran on the kernel's function (config writes to DVSEC Control2), not as a VFIO reset ioctl.
        #expect(serve.kernel.resets == 0 && serve.kernel.hotResets == 0)
        let control2 = v4.layout.dvsecOffset + CXLDeviceDVSEC.control2.offset
        #expect(serve.kernel.configWrites.contains { $0.offset == control2 && $0.bytes.first.map { $0 & 0x4 != 0 } == true })
        // The host decoder is committed and locked again, memory open.
        let ctl = v4.layout.componentOffset + UInt64(v4.layout.hdmOffset) + UInt64(HDMDecoderRegisters(0).control.offset)
        let c = try serve.emulated.barRead(v4.layout.componentBAR, offset: ctl, width: 4)
        #expect(c & HDMDecoderCapability.Control.committed.mask != 0 && c & HDMDecoderCapability.Control.lockOnCommit.mask != 0)
        let ctlPath = try #require(serve.control)
        let control = try ControlPCIFunction(path: ctlPath)
        // v4's component BAR reads the HDM block as all-ones; the control view reads it as a v4 client does, through
        // CXL_COMP_REGS (the region its capability places there): decoder 0 committed and locked.
        let m = samples(try ControlClient(path: ctlPath).text("metrics"))
        #expect(m["cxl_hdm_decoder_committed{device=\"control:\(ctlPath)\",decoder=\"0\"}"] == "1.0", "\(m)")
        #expect(m["cxl_hdm_decoder_locked{device=\"control:\(ctlPath)\",decoder=\"0\"}"] == "1.0")
        var status = try control.status()
        // The last check's connection ends as conform returns; the server notes it on its own thread.
        let checks = VFIOCXLConformance.names.count
        for _ in 0..<2000 where status.clientAttached || status.clientsServed < checks { usleep(2000); status = try control.status() }
        #expect((status.resets["device_reset"] ?? 0) >= 1 && status.memoryGated == false && !status.clientAttached)
        #expect(status.clientsServed >= checks)
    }

    /// v4's DEVICE_RESET is a CXL Reset the kernel did not run: on a kernel device it took the function's MSI-X
    /// programming behind vfio-pci's back, so the server hands the kernel the client's eventfds again (SET_IRQS
    /// disable, then the same fds), and the memory opens again with the decoder restored.
    @Test func v4DeviceResetReArmsTheClientsInterruptsOnAKernelDevice() throws {
        let serve = try InProcessDeviceServe(profile: "cxl-accel", tag: "devv4-irq", uapi: .v4, control: false)
        defer { #expect(serve.stop()) }
        let c = try VFIOUserClient(socketPath: serve.socket)
        defer { c.close() }
        let msix = VFIOPCIIRQ.msix.rawValue
        let efds = try (0..<2).map { _ in try VFIOEventFD.create() }
        try c.setIRQEventFDs(index: msix, efds)
        let armed = try #require(serve.kernel.irqFDs[msix])
        #expect(armed.count == 2 && armed.allSatisfy { $0 >= 0 })
        let before = serve.kernel.ioctlCalls(VFIOKernelUAPI.deviceSetIRQs).count
        try c.reset()
        let calls = Array(serve.kernel.ioctlCalls(VFIOKernelUAPI.deviceSetIRQs).dropFirst(before))
        #expect(calls.count == 2)
        // Disable (DATA_NONE | ACTION_TRIGGER, count 0), then the same eventfds again.
        #expect(calls.first?.bytes.map { Array($0[4..<20]) } == [0x21, 0, 0, 0, UInt8(msix), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(serve.kernel.irqFDs[msix] == armed)
        #expect(serve.kernel.resets == 0 && serve.session.v4Device?.hdmValid == true)
    }

    /// v4 binds only what the v4 series binds; through `--device` that is one clear error naming the rule (and how to
    /// get there), never a silent plain-PCI device.
    @Test func v4RefusesAKernelDeviceItCannotBind() throws {
        // type2: nothing committed by firmware.
        #expect {
            _ = try InProcessDeviceServe(profile: "type2", tag: "devv4-none", uapi: .v4, control: false)
        } throws: { e in
            let m = (e as? CommandError)?.message ?? ""
            return m.hasPrefix("vfio:0000:01:00.0: --uapi v4: the v4 vfio-cxl contract refuses this device: no HDM decoder is committed")
                && m.contains("cxlkit hdm commit vfio:0000:01:00.0 --decoder 0") && !m.contains("\n")
        }
        // cxl-accel without a memory BAR: its memory is only behind the HDM decoder, which this server cannot map.
        let emu = try EmulatedCXLDevice("cxl-accel")
        let k = FakeVFIOKernel(function: emu)
        if let areas = emu.mmapAreas(bar: 0) { k.sparseAreas[0] = areas }
        var r = TargetResolver()
        r.register(VFIOScheme(system: k))
        var o = ServeOptions(profile: "cxl-accel", socketPath: serveSocketPath("devv4-nomem"))
        o.uapi = .v4
        #expect {
            _ = try DeviceServeSession(target: "vfio:0000:01:00.0", options: o, resolver: r)
        } throws: { e in
            let m = (e as? CommandError)?.message ?? ""
            return m.hasPrefix("vfio:0000:01:00.0: --uapi v4: the v4 vfio-cxl contract refuses this device: no device memory: no mappable prefetchable BAR")
        }
        #expect(!FileManager.default.fileExists(atPath: o.socketPath))
    }

    /// Through the executable: `--device` takes `--control` and `--uapi v4` (no longer refused); on this machine the
    /// device cannot be opened, which is one error line and exit status 1, and neither socket is left behind.
    @Test func theCommandLineTakesControlAndV4WithDevice() throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        let sock = serveSocketPath("devcli"), ctl = serveSocketPath("devcli-ctl")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["serve", "--device", "vfio:0000:00:00.0", "--uapi", "v4", "--control", ctl, "--socket", sock]
        let pipe = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = pipe
        try p.run()
        let err = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 1)
        #expect(err.hasPrefix("cxlkit: error: vfio:0000:00:00.0: ") && err.split(separator: "\n").count == 1, "\(err)")
        #expect(!FileManager.default.fileExists(atPath: sock) && !FileManager.default.fileExists(atPath: ctl))
    }
}
