import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
import VFIO
import VFIOUser
import CXLMetrics
@testable import CXLKitCommands
#if canImport(Glibc)
import Glibc
#endif

/// `cxlkit serve --control PATH` in-process, with one vfio-user client attached for the
/// whole test (as a VM would be).
final class ControlledServe: @unchecked Sendable {
    let session: ServeSession
    let control: String
    private let done = DispatchSemaphore(value: 0)

    init(profile: String, tag: String, maxClients: Int = 4) throws {
        var o = ServeOptions(profile: profile, socketPath: serveSocketPath(tag))
        control = serveSocketPath(tag + "-ctl")
        o.controlPath = control
        o.maxControlClients = maxClients
        o.controlMetrics = { CXLMetricsExposition.render($0, format: $1 ? .openMetrics : .prometheus) }
        session = try ServeSession(options: o)
        let t = Thread { [self] in
            try? session.run()
            done.signal()
        }
        t.start()
    }

    func stop() -> Bool {
        session.stop()
        return done.wait(timeout: .now() + 10) == .success
    }
}

/// The exposition's samples as "name{labels}" -> value.
func samples(_ text: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " ") else { continue }
        out[String(line[..<space])] = String(line[line.index(after: space)...])
    }
    return out
}

@Suite("cxlkit serve --control: fleet health while a client is attached", .serialized)
struct ServeControlTests {
    /// The client enables memory decoding and commits decoder 0 the way a guest driver
    /// would; the state is saved through the control socket; the client's FLR on
    /// flr-loses-state (no --preserve) is preserved by vfio-cxl, its secondary bus reset
    /// is not; through the control socket, with the client still attached: status shows
    /// each reset, `check --against` is healthy after the FLR and exits 1 naming decoder
    /// 0 after the SBR, and the metrics show it uncommitted.
    @Test func aResetUnderAnAttachedClientIsSeenThroughTheControlSocket() throws {
        let serve = try ControlledServe(profile: "flr-loses-state", tag: "ctl")
        defer { #expect(serve.stop()) }
        let vm = try VFIOUserPCIFunction(socketPath: serve.session.options.socketPath)
        // The "guest": Memory Space Enable, HDM decoder 0 committed.
        let cmd = try vm.configRead(PCIHeader.command.offset, width: 2)
        try vm.configWrite(PCIHeader.command.offset, width: 2, value: cmd | UInt32(StateCatalog.memorySpaceEnableBit))
        var req = HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 256 << 20)
        req.enableDecoding = true
        #expect(try CXLKit.hdmCommit(vm, req).committed)

        let control = try ControlPCIFunction(path: serve.control)
        var status = try control.status()
        #expect(status.clientAttached)
        #expect(status.resets.isEmpty)
        #expect(status.profile == "flr-loses-state")

        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("served.json").path
        _ = try CXLKit.saveState(control, to: file)
        let before = CXLKit.checkReport([CXLKit.checkAgainst(file, function: control, target: "control:" + serve.control, sysfsRoot: "/nonexistent")], json: false)
        #expect(before.exitCode == 0, "\(before.output)")

        // The client's FLR, without --preserve: flr-loses-state's host function loses its decoders, but vfio-cxl
        // saves and restores around a guest FLR (README, vfio-cxl), so the client's view comes back: healthy.
        let flr = try CXLResetOrchestrator(function: vm, options: CXLStateOptions()).reset(method: .flr, preserve: false)
        #expect(flr.succeeded)
        status = try control.status()
        #expect(status.clientAttached, "the client is still attached")
        #expect(status.resets["flr"] == 1)
        let afterFLR = CXLKit.checkReport([CXLKit.checkAgainst(file, function: try ControlPCIFunction(path: serve.control),
                                                               target: "control:" + serve.control, sysfsRoot: "/nonexistent")], json: false)
        #expect(afterFLR.exitCode == 0, "\(afterFLR.output)")

        // The client's secondary bus reset (VFIO_USER_DEVICE_RESET, what QEMU sends for an SBR at the guest's root
        // port), without --preserve: the client's view gets a conventional reset, and the decoder is gone.
        let sbr = try CXLResetOrchestrator(function: vm, options: CXLStateOptions()).reset(method: .sbr, preserve: false)
        #expect(!sbr.succeeded)
        status = try control.status()
        #expect(status.clientAttached, "the client is still attached")
        #expect(status.resets == ["flr": 1, "device_reset": 1])

        let after = CXLKit.checkReport([CXLKit.checkAgainst(file, function: try ControlPCIFunction(path: serve.control),
                                                            target: "control:" + serve.control, sysfsRoot: "/nonexistent")], json: false)
        #expect(after.exitCode == 1)
        #expect(after.output.contains("PROBLEM: decoder 0 was committed at 0x4000000000 (256 MiB), now not committed"), "\(after.output)")

        // The server renders the metrics itself ...
        let client = try ControlClient(path: serve.control)
        let metrics = samples(try client.text("metrics"))
        let dev = "control:" + serve.control
        #expect(metrics["cxl_hdm_decoder_committed{device=\"\(dev)\",decoder=\"0\"}"] == "0.0")
        #expect(metrics["cxl_serve_client_attached{device=\"\(dev)\"}"] == "1.0")
        #expect(metrics["cxl_serve_resets_total{device=\"\(dev)\",method=\"flr\"}"] == "1")
        #expect(metrics["cxl_serve_resets_total{device=\"\(dev)\",method=\"device_reset\"}"] == "1")
        #expect(metrics["cxl_serve_resets_total{device=\"\(dev)\",method=\"cxl\"}"] == "0")
        // ... and control:PATH is a target like any other for cxlkit metrics and the exporter.
        let collected = CXLKit.collectHealth(targets: [dev], resolver: TargetResolver())
        #expect(collected.first?.serve?.resets["flr"] == 1)
        let viaTarget = samples(CXLMetricsExposition.render(collected))
        #expect(viaTarget["cxl_hdm_decoder_committed{device=\"\(dev)\",decoder=\"0\"}"] == "0.0")
        #expect(viaTarget["cxlkit_target_up{device=\"\(dev)\"}"] == "1.0")
        #expect(try client.text("check").contains("control:"))
        #expect(try client.text("decode").contains("HDM Decoder"))

        // Nothing the control socket did reached the client's device: the client still
        // reads its own view, and the control view refuses writes.
        #expect(throws: PCIError.self) { try control.configWrite(PCIHeader.command.offset, width: 2, value: 0) }
        #expect(throws: PCIError.self) { try control.reset(.flr) }
        #expect(try vm.configRead(PCIHeader.command.offset, width: 2) & UInt32(StateCatalog.memorySpaceEnableBit) != 0)
    }

    /// A VM that is busy the whole time: its client reads config space and decoder 0's Base High through the
    /// component BAR, and writes Command back unchanged, in a loop, while control clients ask for status,
    /// decode, save, check and metrics. Every control answer is whole and right, every client access succeeds
    /// and reads what the device holds, and the client's accesses went on during the control requests.
    @Test func controlRequestsWhileTheClientIsBusy() throws {
        let serve = try ControlledServe(profile: "type2", tag: "busy")
        defer { #expect(serve.stop()) }
        let vm = try VFIOUserPCIFunction(socketPath: serve.session.options.socketPath)
        let cmd = try vm.configRead(PCIHeader.command.offset, width: 2) | UInt32(StateCatalog.memorySpaceEnableBit)
        try vm.configWrite(PCIHeader.command.offset, width: 2, value: cmd)
        var req = HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 256 << 20)
        req.enableDecoding = true
        #expect(try CXLKit.hdmCommit(vm, req).committed)
        let map = try CXLDeviceMap.discover(vm)
        let block = try #require(map.componentBlock), hdm = try #require(map.hdm)
        let baseHigh = block.offset + UInt64(hdm.offset + HDMDecoderRegisters(0).baseHigh.offset)
        #expect(try vm.barRead(Int(block.bir), offset: baseHigh, width: 4) == 0x40)

        final class Busy: @unchecked Sendable {
            let lock = NSLock()
            var ops = 0, stop = false, errors: [String] = []
            let done = DispatchSemaphore(value: 0)
        }
        let busy = Busy()
        let bir = Int(block.bir)
        let t = Thread {
            while !busy.lock.withLock({ busy.stop }) {
                do {
                    let c = try vm.configRead(PCIHeader.command.offset, width: 2)
                    try vm.configWrite(PCIHeader.command.offset, width: 2, value: c)
                    let b = try vm.barRead(bir, offset: baseHigh, width: 4)
                    busy.lock.withLock {
                        busy.ops += 1
                        if c != cmd || b != 0x40 { busy.errors.append("Command 0x\(String(c, radix: 16)), Base High 0x\(String(b, radix: 16))") }
                    }
                } catch {
                    busy.lock.withLock { busy.errors.append("\(error)") }
                    break
                }
            }
            busy.done.signal()
        }
        t.start()
        while busy.lock.withLock({ busy.ops == 0 && busy.errors.isEmpty }) { usleep(1000) }

        let control = try ControlClient(path: serve.control)
        let dev = "control:" + serve.control
        var overlapped = 0
        for i in 0..<20 {
            let before = busy.lock.withLock { busy.ops }
            switch i % 5 {
            case 0: #expect(try control.text("status").contains("\"client_attached\":true"))
            case 1: #expect(try control.text("decode").contains("HDM Decoder"))
            case 2:
                let saved = try CXLStateFile.decode(Data(try control.text("save").utf8))
                #expect(saved.registers.contains { $0.register == "Decoder 0 Base High" && $0.value == 0x40 }, "decoder 0's base in the saved state")
            case 3: #expect(try control.text("check").contains("result: healthy"))
            default:
                #expect(samples(try control.text("metrics"))["cxl_hdm_decoder_committed{device=\"\(dev)\",decoder=\"0\"}"] == "1.0")
            }
            if busy.lock.withLock({ busy.ops }) > before { overlapped += 1 }
        }
        busy.lock.withLock { busy.stop = true }
        busy.done.wait()
        let (ops, errors) = busy.lock.withLock { (busy.ops, busy.errors) }
        #expect(errors.isEmpty, "\(errors.prefix(3))")
        #expect(overlapped > 0, "the client's accesses went on during the control requests (\(ops) accesses)")
        // The control requests wrote nothing: the client's Command is its own.
        #expect(try vm.configRead(PCIHeader.command.offset, width: 2) == cmd)
    }

    /// At most N control clients at once; the next one gets one clear error line; a
    /// slot frees when a client leaves. Bad requests are errors, not crashes.
    @Test func controlClientsAreBoundedWithAClearError() throws {
        let serve = try ControlledServe(profile: "type2", tag: "bound", maxClients: 2)
        defer { #expect(serve.stop()) }
        var a: ControlClient? = try ControlClient(path: serve.control)
        let b = try ControlClient(path: serve.control)
        _ = try a!.text("status")
        _ = try b.text("status")
        let c = try ControlClient(path: serve.control)
        do {
            _ = try c.text("status")
            Issue.record("a third client was served past the bound of 2")
        } catch {
            #expect(error.message.hasSuffix("too many control clients (limit 2)"), "\(error.message)")
        }
        #expect(serve.session.control?.refused == 1)
        a = nil
        var admitted = false
        for _ in 0..<2000 where !admitted {
            if serve.session.control?.activeClients == 1 { admitted = true } else { usleep(2000) }
        }
        #expect(admitted)
        let d = try ControlClient(path: serve.control)
        #expect(try d.text("status").contains("\"client_attached\":false"))
        // Bad requests: one error line each, the connection stays usable.
        #expect(throws: CommandError.self) { try d.text("frobnicate") }
        #expect(throws: CommandError.self) { try d.text("config-read 4096 4") }
        #expect(throws: CommandError.self) { try d.text("bar-read 9 0 4") }
        #expect(throws: CommandError.self) { try d.text(String(repeating: "x", count: 300)) }
        _ = a
    }
}
