import Testing
import Foundation
import PCI
import CXLEmulator
import VFIO
import VFIOTestSupport
#if canImport(Glibc)
import Glibc
#endif
@testable import CXLKitCommands

/// `cxlkit irq`: MSI-X enabled as a driver does, an eventfd handed to the device through SET_IRQS, signals counted,
/// everything undone on the way out. The real kernel runs in scripts/qemu-vfio-guest-test.
@Suite struct IRQCommandTests {
    static let msix = VFIOPCIIRQ.msix.rawValue

    /// Command and MSI-X Message Control of `fn` (the two config registers the command sets and restores).
    func registers(_ t: ResolvedTarget) throws -> (command: UInt32, control: UInt32) {
        let fn = try #require(t.function)
        let cap = try #require(CapabilityList(walking: t.config).standard(.msix))
        return (try fn.configRead(PCIHeader.command.offset, width: 2),
                try fn.configRead(cap.offset + MSIXCapability.messageControl.offset, width: 2))
    }

    @Test func interruptsOfAServerWithAnInterruptTimerArriveAndEverythingIsUndone() throws {
        let serve = try InProcessServe(profile: "type2", tag: "irq", irqInterval: 5)
        defer { _ = serve.stop() }
        let t = try TargetResolver().resolve(serve.target)[0]
        let before = try registers(t)
        #expect(before.control & 0x8000 == 0)
        var lines: [String] = []
        let r = try CXLKit.waitForInterrupts(t, options: IRQWaitOptions(vector: 0, count: 3, timeoutMilliseconds: 120_000)) { lines.append($0) }
        #expect(r.exitCode == 0 && r.received == 3)
        #expect(lines.filter { $0.hasPrefix("interrupt ") }.count == 3)
        #expect(lines.first?.hasPrefix("interrupt 1/3: MSI-X vector 0 at +") == true)
        #expect(lines.last?.contains("MSI-X vector 0: 3 of 3 interrupts arrived in") == true)
        // The eventfd was de-assigned on the server, and Command and Message Control are as they were.
        let device = try #require(serve.session.device as? VFIOPCIDevice)
        #expect(!device.irqs.isEnabled(Self.msix))
        let after = try registers(t)
        #expect(after.command == before.command && after.control == before.control)
    }

    @Test func withoutSignalsTheCommandTimesOutWithExit1AndAClearLine() throws {
        let serve = try InProcessServe(profile: "type2", tag: "irq-none")
        defer { _ = serve.stop() }
        let t = try TargetResolver().resolve(serve.target)[0]
        var lines: [String] = []
        let r = try CXLKit.waitForInterrupts(t, options: IRQWaitOptions(vector: 1, count: 2, timeoutMilliseconds: 100)) { lines.append($0) }
        #expect(r.exitCode == 1 && r.received == 0)
        #expect(lines == ["\(serve.target): MSI-X vector 1: timeout: 0 of 2 interrupts arrived within 100 ms (is the device signalling the vector? e.g. cxlkit serve --irq-interval MS)\n"])
        let device = try #require(serve.session.device as? VFIOPCIDevice)
        #expect(!device.irqs.isEnabled(Self.msix))
    }

    /// The device signals vector 1 (its Pending Bit and eventfd are vector 1's), the command waits on vector 0, whose
    /// eventfd is the only one handed over: nothing arrives, exit 1; waiting on vector 1 receives them.
    @Test func signalsOfAnotherVectorDoNotCount() throws {
        let serve = try InProcessServe(profile: "type2", tag: "irq-v1", irqInterval: 5, irqVector: 1)
        defer { _ = serve.stop() }
        let t = try TargetResolver().resolve(serve.target)[0]
        var lines: [String] = []
        var r = try CXLKit.waitForInterrupts(t, options: IRQWaitOptions(vector: 0, count: 1, timeoutMilliseconds: 100)) { lines.append($0) }
        #expect(r.exitCode == 1 && r.received == 0 && lines.count == 1 && lines[0].contains("MSI-X vector 0: timeout: 0 of 1"))
        lines = []
        r = try CXLKit.waitForInterrupts(t, options: IRQWaitOptions(vector: 1, count: 2, timeoutMilliseconds: 120_000)) { lines.append($0) }
        #expect(r.exitCode == 0 && r.received == 2 && lines.first?.hasPrefix("interrupt 1/2: MSI-X vector 1 at +") == true)
    }

    @Test func badRequestsAreErrors() throws {
        let serve = try InProcessServe(profile: "type2", tag: "irq-bad")
        defer { _ = serve.stop() }
        let t = try TargetResolver().resolve(serve.target)[0]
        #expect(throws: CommandError("\(serve.target): MSI-X vector 4 out of range (the table has 4 entries)")) {
            try CXLKit.waitForInterrupts(t, options: IRQWaitOptions(vector: 4)) { _ in }
        }
        #expect(throws: CommandError("--count must be at least 1")) { try CXLKit.waitForInterrupts(t, options: IRQWaitOptions(count: 0)) { _ in } }
        let emulated = try TargetResolver().resolve("emulated:type2")[0]
        #expect(throws: CommandError("emulated:type2: irq needs a vfio:BDF or vfio-user:SOCKET target (the eventfd is handed to the device through SET_IRQS)")) {
            try CXLKit.waitForInterrupts(emulated, options: IRQWaitOptions()) { _ in }
        }
    }

    /// Through the fake kernel: the SET_IRQS bytes (DATA_EVENTFD | ACTION_TRIGGER for the vector, then DATA_NONE |
    /// ACTION_TRIGGER count 0), the config writes (Bus Master, MSI-X Enable, then both restored), and the signals
    /// the "kernel" writes into the eventfd it was handed.
    @Test func throughKernelVFIOTheEventFDIsSetSignalledAndDisabled() throws {
        let emu = try EmulatedCXLDevice("type2")
        let k = FakeVFIOKernel(function: emu)
        var resolver = TargetResolver()
        resolver.register(VFIOScheme(system: k))
        let t = try resolver.resolve("vfio:0000:01:00.0")[0]
        let before = try registers(t)
        let cap = try #require(CapabilityList(walking: t.config).standard(.msix))
        let writesBefore = k.configWrites.count
        let vector = 2
        // The "device": signals the eventfd the kernel was handed, twice at once (one counter read of 2), then once.
        let stop = ManagedAtomicFlag()
        let signaller = Thread {
            var sent = 0
            while !stop.isSet && sent < 3 {
                k.lock.lock(); let fds = k.irqFDs[Self.msix] ?? []; k.lock.unlock()
                if fds.count > vector, fds[vector] >= 0 {
                    var v: UInt64 = sent == 0 ? 2 : 1
                    _ = withUnsafeBytes(of: &v) { Glibc.write(fds[vector], $0.baseAddress, 8) }
                    sent += Int(v)
                }
                usleep(1000)
            }
        }
        signaller.start()
        var lines: [String] = []
        let r = try CXLKit.waitForInterrupts(t, options: IRQWaitOptions(vector: vector, count: 3, timeoutMilliseconds: 120_000)) { lines.append($0) }
        stop.set()
        #expect(r.exitCode == 0 && r.received == 3)
        #expect(lines.filter { $0.hasPrefix("interrupt ") }.count == 3)
        #expect(lines.first?.contains("(eventfd counter ") == true)  // 2, or 3 when the last signal came before the read
        let sets = k.ioctlCalls(VFIOKernelUAPI.deviceSetIRQs)
        #expect(sets.count == 2)
        func u32(_ b: [UInt8], _ o: Int) -> UInt32 { b[o..<(o + 4)].enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) } }
        let assign = try #require(sets.first?.bytes)
        // argsz 24, DATA_EVENTFD (1 << 2) | ACTION_TRIGGER (1 << 5), index MSI-X (2), start = vector, count 1, the fd.
        #expect(assign.count == 24)
        #expect([u32(assign, 0), u32(assign, 4), u32(assign, 8), u32(assign, 12), u32(assign, 16)] == [24, 0x24, 2, UInt32(vector), 1])
        #expect(Int32(bitPattern: u32(assign, 20)) >= 0)
        let disable = try #require(sets.last?.bytes)
        #expect([u32(disable, 0), u32(disable, 4), u32(disable, 8), u32(disable, 12), u32(disable, 16)] == [20, 0x21, 2, 0, 0])
        #expect(k.irqFDs[Self.msix] == nil)
        // Config writes: Memory Space and Bus Master Enable set, MSI-X Enable set, then Message Control and Command written back.
        let writes = Array(k.configWrites.dropFirst(writesBefore))
        func value(_ b: [UInt8]) -> UInt32 { b.enumerated().reduce(0) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) } }
        let ctl = cap.offset + MSIXCapability.messageControl.offset
        #expect(writes.map(\.offset) == [PCIHeader.command.offset, ctl, ctl, PCIHeader.command.offset])
        #expect(writes.count == 4 && value(writes[0].bytes) == before.command | 0x6 && value(writes[1].bytes) & 0xC000 == 0x8000)
        #expect(writes.count == 4 && value(writes[2].bytes) == before.control && value(writes[3].bytes) == before.command)
    }
}

extension IRQCommandTests {
    /// Through the executable: exit 0 with one line per interrupt and a result line, 1 on a timeout, 2 with one
    /// error line for a target that cannot take an eventfd (this machine has no /dev/vfio) or a bad vector.
    @Test func theExecutableExits0On1On2() throws {
        let exe = try #require(cxlkitExecutable(), "cxlkit executable not built next to the tests")
        func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = args
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        let ticking = try InProcessServe(profile: "type2", tag: "irq-cli", irqInterval: 5)
        var r = try run(["irq", ticking.target, "--count", "2", "--timeout-ms", "120000"])
        _ = ticking.stop()
        #expect(r.status == 0 && r.stdout.split(separator: "\n").count == 3 && r.stdout.hasPrefix("interrupt 1/2: MSI-X vector 0"), "\(r)")
        let quiet = try InProcessServe(profile: "type2", tag: "irq-cli-quiet")
        r = try run(["irq", quiet.target, "--timeout-ms", "50"])
        #expect(r.status == 1 && r.stdout.contains("timeout: 0 of 1 interrupts arrived within 50 ms"), "\(r)")
        r = try run(["irq", quiet.target, "--vector", "7"])
        #expect(r.status == 2 && r.stderr == "cxlkit: error: \(quiet.target): MSI-X vector 7 out of range (the table has 4 entries)\n", "\(r)")
        _ = quiet.stop()
        r = try run(["irq", "vfio:0000:00:00.0"])
        #expect(r.status == 2 && r.stderr.hasPrefix("cxlkit: error: vfio:0000:00:00.0: ") && r.stderr.split(separator: "\n").count == 1, "\(r)")
    }
}

/// A flag set once, read from another thread.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
    func set() { lock.lock(); value = true; lock.unlock() }
}
