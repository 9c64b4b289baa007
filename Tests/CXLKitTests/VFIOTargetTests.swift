import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
import VFIO
import VFIOUser
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
        #expect(session.device.cxlDisabledReason?.hasSuffix("no device memory backing") == true)
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
}
