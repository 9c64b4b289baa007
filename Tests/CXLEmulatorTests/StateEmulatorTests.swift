import Foundation
import TestSupport
import Testing
import PCI
import CXL
@testable import CXLEmulator

/// The state engine against the emulated device: every shipped profile, every reset.
/// Engine waits run on a virtual clock that advances the emulator's ManualClock, so
/// commit latencies and the CXL Reset duration elapse deterministically.
struct EmulatedBench {
    let device: EmulatedCXLDevice
    let manual: ManualClock
    let clock: VirtualCXLClock
    var options: CXLStateOptions { CXLStateOptions(clock: clock) }
    var engine: CXLStateEngine { CXLStateEngine(function: device, options: options) }
    var orchestrator: CXLResetOrchestrator { CXLResetOrchestrator(function: device, options: options) }

    init(_ profile: DeviceProfile) throws {
        let manual = ManualClock()
        self.manual = manual
        clock = VirtualCXLClock(onSleep: { d in
            let (s, a) = d.components
            manual.advance(nanoseconds: UInt64(s) * 1_000_000_000 + UInt64(a / 1_000_000_000))
        })
        device = try EmulatedCXLDevice(profile: profile, clock: manual)
    }

    init(named name: String, _ configure: (inout DeviceProfile) -> Void = { _ in }) throws {
        var p = try DeviceProfile.named(name)
        configure(&p)
        try self.init(p)
    }

    /// Firmware-style programming where the profile's firmware has not done it:
    /// type2 and flr-loses-state get two committed decoders and CONFIG_LOCK;
    /// gpu-fw-committed keeps its firmware-committed, locked decoder 0 and gets CONFIG_LOCK.
    func programLikeFirmware(lockOnCommit: Bool = false) throws {
        if device.profile.firmware == nil {
            try engine.programLikeFirmware(CXLFirmwareProgram(lockOnCommit: lockOnCommit))
        } else {
            let s = try engine.save()
            let lock = try #require(s.dvsec(CXLDeviceDVSEC.lock))
            try device.configWrite(Int(lock.offset), width: 2, value: UInt32(StateCatalog.configLockBit))
        }
    }
}

let shippedProfiles = ["type2", "gpu-fw-committed", "flr-loses-state"]

@Suite("CXL state save/restore on the emulated device", .serialized)
struct StateEmulatorTests {
    /// For each shipped profile and each reset method, with preserve: the state after
    /// equals the state before, register by register.
    @Test(arguments: shippedProfiles, CXLResetKind.allCases)
    func preserveKeepsEveryRegister(profile: String, method: CXLResetKind) throws {
        let b = try EmulatedBench(named: profile)
        try b.programLikeFirmware()
        let before = try b.engine.save()
        #expect(before.layout.hdm?.decoderCount == 2)
        let report = try b.orchestrator.reset(method: method, preserve: true)
        #expect(report.resetError == nil, "\(report.steps)")
        #expect(report.restore?.succeeded == true, "\(report.restore?.failures ?? [])")
        #expect(report.succeeded, "\(report.diff?.changes.map(\.displayName) ?? [])")
        let after = try b.engine.save()
        #expect(after.registers.count == before.registers.count)
        for r in before.registers {
            let a = try #require(after[r.key], "\(r.displayName) missing after")
            #expect(StateCatalog.equivalent(r.key, r.value, a.value),
                    "\(profile) \(method): \(r.displayName) \(String(r.value, radix: 16)) -> \(String(a.value, radix: 16))")
        }
    }

    @Test func flrLosesStateDeviceLosesStateWithoutPreserveAndKeepsItWith() throws {
        let lossy = try EmulatedBench(named: "flr-loses-state")
        try lossy.programLikeFirmware()
        let r1 = try lossy.orchestrator.reset(method: .flr, preserve: false)
        #expect(!r1.succeeded)
        let lost = Set(r1.diff!.changes.map(\.register))
        #expect(lost.isSuperset(of: ["DVSEC CXL Control", "DVSEC CXL Lock", "DVSEC CXL Range 1 Base High",
                                     "HDM Decoder Global Control", "Decoder 0 Control", "Decoder 1 Control"]))

        let kept = try EmulatedBench(named: "flr-loses-state")
        try kept.programLikeFirmware()
        let r2 = try kept.orchestrator.reset(method: .flr, preserve: true)
        #expect(r2.succeeded, "\(r2.restore?.failures ?? [])")
        #expect(r2.wiped.map { !$0.isEmpty } == true)
        // Conventional-reset path: CONFIG_LOCK was wiped, so the unlocked path re-armed it.
        #expect(r2.restore?.dvsecLocked == false)
        #expect(r2.restore?.outcome(StateCatalog.dvsecBlock, "DVSEC CXL Lock")?.written == 1)
    }

    @Test func flrLeavesTheCompliantDeviceAlone() throws {
        for profile in ["type2", "gpu-fw-committed"] {
            let b = try EmulatedBench(named: profile)
            try b.programLikeFirmware()
            let r = try b.orchestrator.reset(method: .flr, preserve: false)
            #expect(r.succeeded, "\(profile): \(r.diff?.changes.map(\.displayName) ?? [])")
            #expect(r.wiped?.isEmpty == true)
        }
    }

    @Test(arguments: [CXLResetKind.sbr, .link])
    func conventionalResetsWipeWithoutPreserve(method: CXLResetKind) throws {
        let b = try EmulatedBench(named: "type2")
        try b.programLikeFirmware()
        let r = try b.orchestrator.reset(method: method, preserve: false)
        #expect(!r.succeeded)
        #expect(r.diff!.changes.contains { $0.register == "DVSEC CXL Lock" })
        #expect(r.diff!.changes.contains { $0.register == "Decoder 1 Control" })
    }

    /// After a CXL Reset CONFIG_LOCK is still set: merge path, Lock never written.
    @Test func cxlResetTakesTheLockedMergePath() throws {
        let b = try EmulatedBench(named: "type2")
        try b.programLikeFirmware()
        let r = try b.orchestrator.reset(method: .cxl, preserve: true)
        let restore = try #require(r.restore)
        #expect(restore.dvsecLocked)
        #expect(restore.outcome(StateCatalog.dvsecBlock, "DVSEC CXL Lock")?.action == .lockedKept)
        #expect(restore.outcome(StateCatalog.dvsecBlock, "DVSEC CXL Control")?.action == .lockedKept)
        #expect(restore.outcome(StateCatalog.dvsecBlock, "DVSEC CXL Range 1 Base Low")?.action == .lockedKept)
        #expect(restore.decoders.map(\.result) == [.committed, .committed])
        #expect(r.succeeded)
        // The CXL Reset itself: quiet time, then Status2 polled until Reset Complete.
        #expect(r.steps.contains("quiet time 100.0 ms: no config access") || r.steps.contains { $0.hasPrefix("quiet time") })
        #expect(r.steps.contains { $0.hasPrefix("CXL Reset Complete") })
    }

    /// gpu-fw-committed: after an FLR decoder 0 is still locked and committed; the
    /// restore leaves it alone.
    @Test func lockedCommittedDecoderIsLeftAlone() throws {
        let b = try EmulatedBench(named: "gpu-fw-committed")
        try b.programLikeFirmware()
        let before = try b.engine.save()
        try b.device.reset(.flr)
        let r = try b.engine.restore(before)
        #expect(r.decoders.first?.result == .leftLocked)
        #expect(r.succeeded, "\(r.failures)")
    }

    /// Lock On Commit decoders after a CXL Reset: the reset released the locks; the
    /// restore commits them again in ascending order with Lock On Commit.
    @Test func lockOnCommitDecodersAreRecommittedInOrder() throws {
        let b = try EmulatedBench(named: "type2")
        try b.programLikeFirmware(lockOnCommit: true)
        let r = try b.orchestrator.reset(method: .cxl, preserve: true)
        #expect(r.restore?.decoders.map(\.result) == [.committed, .committed])
        #expect(r.succeeded, "\(r.restore?.failures ?? [])")
    }

    @Test func decoderCommittedOutOfOrderInTheFileIsReported() throws {
        let b = try EmulatedBench(named: "type2")
        try b.programLikeFirmware()
        var saved = try b.engine.save()
        let i = try #require(saved.registers.firstIndex { $0.register == "Decoder 0 Control" })
        saved.registers[i].value &= ~(StateCatalog.commitBit | StateCatalog.committedBit)
        try b.device.reset(.bus)
        let r = try b.engine.restore(saved)
        #expect(r.decoders.map(\.result) == [.skippedNotCommitted, .outOfOrder])
        #expect(!r.succeeded)
        #expect(r.failures.contains { $0.hasPrefix("decoder 1: out-of-order") })
    }

    /// Save and restore on the emulator read and write each register no more often
    /// than the algorithm needs, with every other read batched.
    @Test func accessCounts() throws {
        let b = try EmulatedBench(named: "type2")
        try b.programLikeFirmware()
        let counter = CountingFunction(b.device)
        let engine = CXLStateEngine(function: counter, options: b.options)
        let saved = try engine.save()
        #expect(counter.counts.values.allSatisfy { $0.reads <= 1 && $0.writes == 0 })
        #expect(counter.bulkReads == 2)  // the config image and the HDM block
        try b.device.reset(.bus)
        counter.counts = [:]
        counter.bulkReads = 0
        let r = try engine.restore(saved)
        #expect(r.succeeded, "\(r.failures)")
        // The 8-byte Device Serial Number and DVSEC header reads, the capability
        // check's read of the DVSEC's read-only registers, one batched read of the
        // live decoder Controls when more than one is restored, one read-back of the
        // HDM block, one of config space.
        let restoredDecoders = r.decoders.filter { $0.result == .committed }.count
        #expect(counter.bulkReads == 3 + (restoredDecoders > 1 ? 3 : 2))
        for reg in saved.registers {
            let c = counter.counts[CountingFunction.Key(space: reg.space, offset: reg.offset)] ?? .init()
            let (maxReads, writes): (Int, Int)
            switch reg.register {
            // Single reads only (the bulk reads are counted above).
            case "Command": (maxReads, writes) = (1, 2)            // live (MSE); temp MSE + final
            case "DVSEC CXL Lock": (maxReads, writes) = (1, 1)     // live (path); re-arm
            case HDMDecoderCapability.capability.name: (maxReads, writes) = (1, 0)  // capability check
            case let n where n.hasPrefix("Decoder ") && n.hasSuffix(" Control"):
                (maxReads, writes) = (1, 1)                        // one Committed poll doubling as read-back
            default: (maxReads, writes) = (0, reg.role == .verify ? 0 : 1)
            }
            #expect(c.reads == maxReads && c.writes == writes, "\(reg.displayName): \(c.reads) reads, \(c.writes) writes")
        }
    }
}

@Suite("CXL state faults on the emulated device", .serialized)
struct StateEmulatorFaultTests {
    func tempFile() throws -> String {
        try TestScratch.directory("cxlstate-emu") + "/state.json"
    }

    /// Save from a healthy device, write the file, restore onto the same device model
    /// with a commit fault: the decoder's failure is reported, the file is untouched.
    @Test(arguments: ["commit-error", "commit-timeout"])
    func commitFaults(fault: String) throws {
        let path = try tempFile()
        let healthy = try EmulatedBench(named: "type2")
        try healthy.programLikeFirmware()
        let saved = try healthy.engine.save()
        try CXLStateFile.write(saved, to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let faulty = try EmulatedBench(named: "type2") { p in
            if fault == "commit-error" { p.faults.commitReportsError = true } else { p.faults.commitNeverCompletes = true }
        }
        let r = try faulty.engine.restore(try CXLStateFile.read(from: path))
        #expect(!r.succeeded)
        #expect(r.decoders.map(\.result) == (fault == "commit-error" ? [.commitError, .blocked] : [.commitTimeout, .blocked]))
        if fault == "commit-timeout" { #expect(faulty.clock.elapsed == .milliseconds(10)) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == bytes)
    }

    @Test(arguments: ["reset-timeout", "reset-error"])
    func cxlResetFaults(fault: String) throws {
        let path = try tempFile()
        let b = try EmulatedBench(named: "type2") { p in
            if fault == "reset-timeout" { p.faults.cxlResetNeverCompletes = true } else { p.faults.cxlResetReportsError = true }
        }
        try b.programLikeFirmware()
        let before = try b.engine.save()
        let r = try b.orchestrator.reset(method: .cxl, preserve: true, stateFile: path)
        #expect(r.resetError == (fault == "reset-timeout" ? .resetTimeout(milliseconds: 100) : .resetError))
        #expect(!r.succeeded)
        #expect(try CXLStateFile.read(from: path) == before)
        // Caching re-enabled on the failure path too.
        let c2 = try b.device.configRead(before.layout.dvsecOffset + CXLDeviceDVSEC.control2.offset, width: 2)
        #expect(UInt64(c2) & CXLDeviceDVSEC.Control2.disableCaching.mask == 0)
    }

    @Test func memClearIsPassedToTheDevice() throws {
        let b = try EmulatedBench(named: "type2")
        try b.programLikeFirmware()
        try b.device.writeMemory(hpa: 0x40_0000_0000, bytes: [1, 2, 3, 4])
        let r = try b.orchestrator.reset(method: .cxl, preserve: true, memClear: true)
        #expect(r.succeeded, "\(r.restore?.failures ?? [])")
        #expect(try b.device.readMemory(hpa: 0x40_0000_0000, count: 4) == [0, 0, 0, 0])
    }

    @Test func memClearRefusedWhereNotCapable() throws {
        let b = try EmulatedBench(named: "gpu-fw-committed")
        #expect(throws: CXLStateError.resetUnsupported("CXL Reset Mem Clr Capable is clear")) {
            try b.orchestrator.reset(method: .cxl, preserve: true, memClear: true)
        }
    }

    @Test func anotherDevicesStateIsRefused() throws {
        let a = try EmulatedBench(named: "type2")
        let saved = try a.engine.save()
        let other = try EmulatedBench(named: "flr-loses-state")
        #expect {
            try other.engine.restore(saved)
        } throws: { e in
            if case .deviceMismatch = e as? CXLStateError { return true }
            return false
        }
    }
}

/// Counts accesses per register location.
final class CountingFunction: PCIFunction, @unchecked Sendable {
    struct Key: Hashable { var space: RegisterSpace; var offset: UInt64 }
    struct Count { var reads = 0; var writes = 0 }
    let inner: any PCIFunction
    var counts: [Key: Count] = [:]
    init(_ inner: any PCIFunction) { self.inner = inner }
    var address: String { inner.address }
    var configSize: Int { inner.configSize }
    var bars: [BARDescription] { inner.bars }
    var resetMethods: [PCIResetMethod] { inner.resetMethods }
    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        counts[Key(space: .config, offset: UInt64(offset)), default: Count()].reads += 1
        return try inner.configRead(offset, width: width)
    }
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        counts[Key(space: .config, offset: UInt64(offset)), default: Count()].writes += 1
        try inner.configWrite(offset, width: width, value: value)
    }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        counts[Key(space: .bar(bar), offset: offset), default: Count()].reads += 1
        return try inner.barRead(bar, offset: offset, width: width)
    }
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        counts[Key(space: .bar(bar), offset: offset), default: Count()].writes += 1
        try inner.barWrite(bar, offset: offset, width: width, value: value)
    }
    func reset(_ method: PCIResetMethod) throws(PCIError) { try inner.reset(method) }
    /// A bulk read counts once, in `bulkReads`, not per register.
    var bulkReads = 0
    func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        bulkReads += 1
        return try inner.configReadBytes(offset, count: count)
    }
    func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        bulkReads += 1
        return try inner.barReadBytes(bar, offset: offset, count: count)
    }
}
