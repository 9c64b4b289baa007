import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
import VFIO
import VFIOUser
@testable import CXLKitCommands
#if canImport(Glibc)
import Glibc
#endif

/// A short socket path (sun_path holds 108 bytes).
func serveSocketPath(_ tag: String) -> String {
    "/tmp/cxlkit-test-\(getpid())-\(tag)-\(UInt32.random(in: 0...UInt32.max)).sock"
}

/// `cxlkit serve` in-process: the session runs on its own thread until `stop()`.
final class InProcessServe: @unchecked Sendable {
    let session: ServeSession
    private let done = DispatchSemaphore(value: 0)
    private(set) var error: CommandError?

    init(profile: String, tag: String, irqInterval: Int = 0, irqVector: Int = 0) throws {
        var o = ServeOptions(profile: profile, socketPath: serveSocketPath(tag))
        o.irqIntervalMilliseconds = irqInterval
        o.irqVector = irqVector
        session = try ServeSession(options: o)
        let t = Thread { [self] in
            do throws(CommandError) { try session.run() } catch { self.error = error }
            done.signal()
        }
        t.start()
    }

    var socket: String { session.options.socketPath }
    var target: String { "vfio-user:" + socket }

    /// Stops the server and waits for `run()` to return.
    func stop() -> Bool {
        session.stop()
        return done.wait(timeout: .now() + 10) == .success
    }
}

/// The section of decode text from `marker` to the end of the function.
func decodeSection(_ text: String, from marker: String) -> [String] {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard let i = lines.firstIndex(where: { $0.contains(marker) }) else { return [] }
    return Array(lines[i...])
}

/// The `cxlkit` executable next to the test bundle (built by `swift build` / `swift test`).
func cxlkitExecutable() -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    var dirs: [URL] = []
    if n > 0 {
        let exe = URL(fileURLWithPath: String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        // .build/debug/swift-cxlPackageTests.xctest (a file), or a bundle directory one level deeper.
        dirs += [exe.deletingLastPathComponent(), exe.deletingLastPathComponent().deletingLastPathComponent(),
                 exe.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()]
    }
    dirs.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
    for d in dirs {
        let p = d.appendingPathComponent("cxlkit").path
        if access(p, X_OK) == 0 { return p }
    }
    return nil
}

@Suite("cxlkit serve and vfio-user:PATH", .serialized)
struct ServeTests {
    @Test func decodeThroughVFIOUserShowsDVSECsAndComponentRegisters() throws {
        let serve = try InProcessServe(profile: "type2", tag: "decode")
        defer { #expect(serve.stop()) }
        let targets = try TargetResolver().resolve(serve.target)
        #expect(targets.count == 1)
        let text = CXLKit.decode(targets, json: false, verbosity: 3)
        #expect(text.hasPrefix(serve.target + " "))
        for id in ["0000", "0005", "0007", "0008"] {
            #expect(text.contains("Designated Vendor-Specific: Vendor=1e98 ID=\(id) "), "DVSEC \(id)")
        }
        #expect(text.contains("Capabilities: [60] Express (v2) Endpoint"))
        #expect(text.contains("CXL Component Registers: BAR0+"))
        #expect(text.contains("CXL HDM Decoder Capability"))
        #expect(text.contains("Decoder1:"))

        // The DVSECs and component registers read through the socket are the device's own: compare with the same
        // profile decoded in-process (the virtualised header differs by design: Command, BARs, MSI-X).
        let direct = try ResolvedTarget(function: try EmulatedCXLDevice("type2"))
        let directText = CXLKit.decode([direct], json: false, verbosity: 3)
        let viaSocket = decodeSection(text, from: "Capabilities: [110")
        #expect(!viaSocket.isEmpty)
        #expect(viaSocket == decodeSection(directText, from: "Capabilities: [110"))
        #expect(serve.session.server.clientsServed <= 1)
    }

    @Test func functionOverVFIOUser() throws {
        let serve = try InProcessServe(profile: "type2", tag: "fn")
        defer { #expect(serve.stop()) }
        let fn = try VFIOUserPCIFunction(socketPath: serve.socket)
        defer { fn.close() }
        #expect(fn.configSize == 4096)
        #expect(fn.bars == [BARDescription(index: 0, kind: .memory64, prefetchable: false, size: 0x2_0000)])
        #expect(fn.resetMethods == [.flr, .bus])
        #expect(try fn.configRead(0, width: 4) == 0x7202_1e98)
        #expect(throws: PCIError.self) { try fn.configRead(4094, width: 4) }
        #expect(throws: PCIError.self) { try fn.barRead(2, offset: 0, width: 4) }
        #expect(throws: PCIError.self) { try fn.barRead(0, offset: 0x2_0000, width: 4) }

        // HDM decoder 0 base, found through the catalog, written through the socket: vfio-cxl keeps it in the
        // guest's shadow and never writes the device's decoder (which the host side committed at its own base).
        let hdm = try #require(serve.session.emulated.componentStructures.first { $0.name.contains("HDM") })
        let baseLow = try #require(hdm.layout.registers.first { $0.name.contains("Decoder 0 Base Low") })
        let off = UInt64(hdm.offset + baseLow.offset)
        let hostBefore = try serve.session.emulated.barRead(0, offset: off, width: 4)
        try fn.barWrite(0, offset: off, width: 4, value: 0x1000_0000)
        #expect(try fn.barRead(0, offset: off, width: 4) == 0x1000_0000)
        #expect(try serve.session.emulated.barRead(0, offset: off, width: 4) == hostBefore)

        // DEVICE_RESET and an FLR through the Express capability both reach the device (the server stays up).
        try fn.reset(.bus)
        try fn.reset(.flr)
        #expect(throws: PCIError.self) { try fn.reset(.pm) }
        #expect(try fn.configRead(0, width: 2) == 0x1e98)
    }

    @Test func oneClientAtATimeThenTheNextKeepingState() throws {
        let serve = try InProcessServe(profile: "type2", tag: "seq")
        defer { #expect(serve.stop()) }
        let hdm = try #require(serve.session.emulated.componentStructures.first { $0.name.contains("HDM") })
        let sizeLow = try #require(hdm.layout.registers.first { $0.name.contains("Decoder 0 Size Low") })
        let off = UInt64(hdm.offset + sizeLow.offset)
        do {
            let a = try VFIOUserPCIFunction(socketPath: serve.socket)
            try a.barWrite(0, offset: off, width: 4, value: 0x1000_0000)
            a.close()
        }
        let b = try VFIOUserPCIFunction(socketPath: serve.socket)
        #expect(try b.barRead(0, offset: off, width: 4) == 0x1000_0000)
        b.close()
        // The server notices each disconnect and goes on.
        let deadline = Date().addingTimeInterval(5)
        while serve.session.server.clientsServed < 2 && Date() < deadline { usleep(10_000) }
        #expect(serve.session.server.clientsServed == 2)
    }

    @Test func badTargets() throws {
        #expect(throws: CommandError.self) { try TargetResolver().resolve("vfio-user:") }
        #expect(throws: CommandError.self) { try TargetResolver().resolve("vfio-user:/nonexistent/dir/x.sock") }
        #expect(throws: CommandError.self) { try ServeSession(options: ServeOptions(profile: "no-such-profile", socketPath: serveSocketPath("bad"))) }
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func signalStopsTheServerAndRemovesTheSocket(signal sig: Int32) throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        let sock = serveSocketPath("sig\(sig)")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = ["serve", "--profile", "gpu-fw-committed", "--socket", sock, "--verbose"]
        // A file, not a pipe: --verbose writes a line per message, more than a pipe buffer holds.
        let logPath = sock + ".log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        defer { unlink(logPath) }
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        var listening = false
        for _ in 0..<500 {
            var st = stat()
            if lstat(sock, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK { listening = true; break }
            usleep(10_000)
        }
        #expect(listening)
        // A client works through the child process (the file exists only once the socket listens).
        let text = CXLKit.decode(try TargetResolver().resolve("vfio-user:" + sock), json: false, verbosity: 2)
        #expect(text.contains("Device 1e98:7203"))
        kill(p.processIdentifier, sig)
        for _ in 0..<500 where p.isRunning { usleep(10_000) }
        #expect(!p.isRunning, "stopped within 5 s of the signal")
        p.waitUntilExit()
        #expect(p.terminationReason == .exit)
        #expect(p.terminationStatus == 0)
        #expect(access(sock, F_OK) != 0, "socket file removed")
        let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        #expect(log.contains("vfio-user server stopped"))
        #expect(log.contains("command=DEVICE_GET_REGION_INFO"), "--verbose traces messages")
    }
}

/// Interop (QEMU harness): run-guest.sh waits for the socket file and QEMU connects at once. The server used to
/// bind() the final path and listen() after, so a connect in between got ECONNREFUSED (seen first by the SIGINT
/// child test above). The file must appear only once the socket listens.
@Suite("vfio-user server socket appears listening", .serialized)
struct ServeSocketAppearanceTests {
    @Test func socketFileAcceptsConnectionsAsSoonAsItExists() throws {
        final class Watch: @unchecked Sendable {
            let lock = NSLock()
            var path = ""
            var stop = false
            var refused = 0
            var connected = 0
        }
        let w = Watch()
        let watcher = Thread {
            while true {
                w.lock.lock(); let path = w.path, stop = w.stop; w.lock.unlock()
                if stop { return }
                var st = stat()
                guard !path.isEmpty, lstat(path, &st) == 0 else { continue }
                // Non-blocking: the server under test never accepts, so once its backlog is full a blocking
                // connect would wait forever (EAGAIN here instead).
                let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
                var addr = sockaddr_un()
                addr.sun_family = sa_family_t(AF_UNIX)
                withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                    for (i, b) in path.utf8.enumerated() { raw[i] = b }
                }
                let r = withUnsafePointer(to: &addr) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
                let e = errno
                close(fd)
                w.lock.lock()
                if r == 0 { w.connected += 1 } else if e == ECONNREFUSED && w.path == path { w.refused += 1 }
                w.lock.unlock()
            }
        }
        watcher.start()
        for i in 0..<100 {
            let path = serveSocketPath("appear\(i)")
            w.lock.lock(); w.path = path; w.lock.unlock()
            let device = try CXLKit.makeServedDevice(emulated: try EmulatedCXLDevice("type2"))
            let server = try VFIOUserServer(device: device, socketPath: path)
            var st = stat()
            #expect(lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK)
            #expect(access(path + ".\(getpid()).tmp", F_OK) != 0, "no temporary name left behind")
            // The file exists, so it listens: a connect now is accepted into the backlog
            // (this fails if the file appears before listen()).
            #expect(Self.connects(path), "socket file \(i) refused a connection")
            w.lock.lock(); w.path = ""; w.lock.unlock()
            usleep(1000)
            server.stop()
            try server.run()
            #expect(access(path, F_OK) != 0)
        }
        w.lock.lock(); w.stop = true; let refused = w.refused; w.lock.unlock()
        #expect(refused == 0, "a socket file that refused connections")
    }

    /// One connect(2) to a UNIX socket path.
    /// Whether a server listens at `path`. Non-blocking: these servers never accept, so once the backlog is
    /// full a blocking connect would wait forever; EAGAIN (backlog full) means listening too.
    static func connects(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        return r == 0 || errno == EAGAIN
    }

    @Test func aRegularFileAtThePathIsNotReplaced() throws {
        let path = serveSocketPath("file")
        FileManager.default.createFile(atPath: path, contents: Data("keep".utf8))
        defer { unlink(path) }
        let device = try CXLKit.makeServedDevice(emulated: try EmulatedCXLDevice("type2"))
        #expect(throws: VFIOUserError.self) { try VFIOUserServer(device: device, socketPath: path) }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "keep")
    }
}

/// Interop (QEMU 10.2 guest, MSI-X): QEMU emulates the MSI-X capability and table and tells the server only
/// through SET_IRQS. VFIOPCIDevice kept Message Control virtual, so the emulated function never saw MSI-X Enable
/// and its `signal(vector:)` was dropped (no eventfd, no pending bit). The VFIO layer now does what vfio-pci does
/// on hardware: MSI-X eventfds assigned → the function's MSI-X enabled and its vectors unmasked.
@Suite("MSI-X from the served device", .serialized)
struct ServeMSIXTests {
    @Test func deviceSignalReachesTheClientsEventfd() throws {
        let serve = try InProcessServe(profile: "type2", tag: "msix")
        defer { #expect(serve.stop()) }
        let client = try VFIOUserClient(socketPath: serve.socket)
        defer { client.close() }
        let info = try client.irqInfo(VFIOPCIIRQ.msix.rawValue)
        #expect(info.count == 4)
        let fds = try (0..<Int(info.count)).map { _ in try VFIOEventFD.create() }
        // As QEMU does on the guest's MSI-X enable: eventfds for the vectors, no config write to the function.
        try client.setIRQEventFDs(index: VFIOPCIIRQ.msix.rawValue, fds.map { Optional($0) })
        serve.session.emulated.signal(vector: 2)
        #expect(fds[2].wait(timeoutMilliseconds: 2000) == 1)
        #expect(fds[0].wait(timeoutMilliseconds: 0) == nil)
        // DEVICE_RESET (QEMU's system reset / SBR) keeps the host interrupt set-up, as vfio-pci does.
        try client.reset()
        serve.session.emulated.signal(vector: 1)
        #expect(fds[1].wait(timeoutMilliseconds: 2000) == 1)
        // Disabled: nothing goes out.
        try client.disableIRQs(index: VFIOPCIIRQ.msix.rawValue)
        serve.session.emulated.signal(vector: 1)
        #expect(fds[1].wait(timeoutMilliseconds: 100) == nil)
    }

    @Test func serveInterruptTimerSignalsTheDevice() throws {
        let serve = try InProcessServe(profile: "flr-loses-state", tag: "timer", irqInterval: 20)
        defer { #expect(serve.stop()) }
        let client = try VFIOUserClient(socketPath: serve.socket)
        defer { client.close() }
        let fd = try VFIOEventFD.create()
        try client.setIRQEventFDs(index: VFIOPCIIRQ.msix.rawValue, [fd])
        let n = fd.wait(timeoutMilliseconds: 2000)
        #expect((n ?? 0) >= 1)
        #expect(serve.session.interruptsRaised >= 1)
    }
}

/// Interop (QEMU 10.2 guest through cxlkit serve + vfio-cxl): what the guest's HDM decoders look like across the
/// resets QEMU produces. A guest FLR is a config write and must keep CXL.mem state (CXL 3.1 §9.5): it used to
/// reset the HDM shadow, so the guest's committed decoder vanished (qemu-vfio-user-test reset-flr FAILED, cxlkit
/// diff "Decoder 0 Control 0x600 -> 0"). DEVICE_RESET (QEMU: system reset, Secondary Bus Reset) is the guest's
/// conventional reset: shadows back to their reset state, which after a reset lost HDM Decoder Enable that
/// firmware had set and that the guest saw before any reset (decode-match FAILED for gpu-fw-committed).
@Suite("vfio-cxl resets as a QEMU guest sees them", .serialized)
struct ServeGuestResetTests {
    static func hdm(_ fn: any PCIFunction) throws -> (bar: Int, offset: UInt64) {
        let h = try #require(try CXLStateEngine(function: fn).save().layout.hdm)
        return (h.bar, h.hdmOffset)
    }
    static func reg(_ fn: any PCIFunction, _ r: RegisterLayout) throws -> UInt64 {
        let h = try hdm(fn)
        return try fn.barRead(h.bar, offset: h.offset + UInt64(r.offset), width: 4)
    }

    @Test func guestFLRKeepsTheGuestsDecodersDeviceResetClearsThem() throws {
        let serve = try InProcessServe(profile: "type2", tag: "flr")
        defer { #expect(serve.stop()) }
        let fn = try VFIOUserPCIFunction(socketPath: serve.socket)
        defer { fn.close() }
        var req = HDMCommitRequest(decoder: 0, base: 0x40_0000_0000, size: 256 << 20)
        req.timeoutMilliseconds = 2000
        #expect(try CXLKit.hdmCommit(fn, req).committed)
        let regs = HDMDecoderCapability.decoderRegisters(0, endpoint: true)
        let committed = HDMDecoderCapability.Control.committed
        let before = try regs.map { try Self.reg(fn, $0) }
        try fn.reset(.flr)                       // guest FLR: Initiate FLR in Device Control
        #expect(try regs.map { try Self.reg(fn, $0) } == before)
        try fn.reset(.bus)                       // DEVICE_RESET: what QEMU sends for an SBR
        #expect(committed.extract(try Self.reg(fn, regs[4])) == 0)
    }

    @Test func deviceResetKeepsFirmwaresHDMDecoderEnable() throws {
        let serve = try InProcessServe(profile: "gpu-fw-committed", tag: "glob")
        defer { #expect(serve.stop()) }
        let fn = try VFIOUserPCIFunction(socketPath: serve.socket)
        defer { fn.close() }
        let global = HDMDecoderCapability.globalControl
        let enable = HDMDecoderCapability.hdmDecoderEnable
        let before = try Self.reg(fn, global)
        #expect(enable.extract(before) == 1)
        try fn.reset(.bus)
        #expect(try Self.reg(fn, global) == before)
    }
}

/// Interop (QEMU 10.2 guest, gpu-fw-committed through vfio-cxl): the DVSEC Control a guest saw before any reset
/// (firmware's Cache_Enable+ Mem_Enable+) went to Cache- Mem- after QEMU's VM-start DEVICE_RESET, while the HDM
/// shadow came back as firmware left it (qemu-vfio-user-test decode-match FAILED: CXLCtl Cache+ Mem+ vs Cache- Mem-).
@Suite("vfio-cxl DVSEC Control across DEVICE_RESET", .serialized)
struct ServeDVSECResetTests {
    @Test func deviceResetKeepsFirmwaresDVSECControl() throws {
        let serve = try InProcessServe(profile: "gpu-fw-committed", tag: "dvsec")
        defer { #expect(serve.stop()) }
        let fn = try VFIOUserPCIFunction(socketPath: serve.socket)
        defer { fn.close() }
        let config = try fn.configSnapshot()
        let dvsec = try #require(CapabilityList(walking: config).dvsecs(in: config).first {
            $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.device.rawValue })
        let before = try fn.read(CXLDeviceDVSEC.control, base: dvsec.offset)
        #expect(CXLDeviceDVSEC.memEnable.extract(before) == 1)
        try fn.reset(.bus)
        #expect(try fn.read(CXLDeviceDVSEC.control, base: dvsec.offset) == before)
    }
}
