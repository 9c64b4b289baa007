import Foundation
import Testing
import PCI
@testable import CXL

/// The engine against the register-accurate test double.
@Suite("CXL state engine (test double)")
struct StateEngineTests {
    func engine(_ dev: StateTestDevice, clock: VirtualCXLClock = VirtualCXLClock()) -> CXLStateEngine {
        CXLStateEngine(function: dev, options: CXLStateOptions(clock: clock))
    }

    /// A device programmed like firmware, saved, the save edited so decoder 0 was not committed while decoder 1
    /// was (Commit and Committed cleared in its Control), then the device bus-reset: what a restore must skip
    /// (decoder 0) and report, not force (decoder 1, out of order). `control0` is Decoder 0 Control's index in the save.
    func savedWithDecoder0NotCommitted() throws -> (dev: StateTestDevice, engine: CXLStateEngine, saved: CXLStateSnapshot, control0: Int) {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let e = engine(dev)
        var saved = try e.save()
        let key = RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 0 Control")
        let i = try #require(saved.registers.firstIndex { $0.key == key })
        saved.registers[i].value &= ~(StateCatalog.committedBit | StateCatalog.commitBit)
        try dev.reset(.bus)
        return (dev, e, saved, i)
    }

    @Test func saveNamesRegistersFromTheCatalog() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let s = try engine(dev).save()
        #expect(s.identity.vendorID == 0x10DE && s.identity.serialNumber == StateTestDevice.serial)
        #expect(s.layout.dvsecOffset == StateTestDevice.dvsec)
        #expect(s.layout.hdm == HDMLocation(bar: 2, blockOffset: 0, hdmOffset: UInt64(StateTestDevice.hdm), decoderCount: 2, endpoint: true))
        #expect(s.dvsec(CXLDeviceDVSEC.control)?.value == 0x0007)
        #expect(s.dvsec(CXLDeviceDVSEC.lock)?.value == 1)
        #expect(s.dvsec(CXLDeviceDVSEC.range1.baseHigh)?.value == 0x10)
        #expect(s.dvsec(CXLDeviceDVSEC.range1.sizeLow)?.role == .verify)
        #expect(s[StateCatalog.hdmBlock, "Decoder 1 DPA Skip Low"]?.value == 0x1000_0000)
        #expect(s[StateCatalog.hdmBlock, "Decoder 0 Control"]!.value & StateCatalog.committedBit != 0)
        #expect(s[StateCatalog.hdmBlock, "HDM Decoder Global Control"]?.value == 0x2)
        #expect(s[StateCatalog.headerBlock, "Command"]?.value == 0x6)
        #expect(s[StateCatalog.headerBlock, "Base Address Register 2"]?.value == 0xE000_0004)
        #expect(s[StateCatalog.pciExpressBlock, "Device Control"]?.value == 0x2850)
        #expect(s[StateCatalog.msiBlock, "Message Control"]?.value == 0x0181)
        #expect(s[StateCatalog.msiBlock, "Message Control"]?.displayName == "MSI Message Control")
        #expect(s[StateCatalog.msixBlock, "Message Control"] != nil)
        // 7 registers per decoder, Capability and Global Control.
        #expect(s.registers.filter { $0.block == StateCatalog.hdmBlock }.count == 2 + 7 * 2)
    }

    @Test func saveSetsMemorySpaceOnlyForTheHDMReadsAndPutsItBack() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        try dev.configWrite(4, width: 2, value: 0x4)  // MSE clear
        dev.log = []
        let s = try engine(dev).save()
        let commandWrites = dev.log.filter { $0.write && $0.offset == 4 }
        #expect(commandWrites.count == 2)
        #expect(dev.cfg(0, PCIHeader.command) == 0x4)
        #expect(s[StateCatalog.headerBlock, "Command"]?.value == 0x4)
    }

    @Test func notACXLDeviceIsAClearError() {
        final class Plain: PCIFunction, @unchecked Sendable {
            let address = "plain"; let configSize = 4096; let bars: [BARDescription] = []; let resetMethods: [PCIResetMethod] = []
            func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 { offset == 0 ? 0x1234_8086 : 0 }
            func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {}
            func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 { throw .noSuchBAR(bar) }
            func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) { throw .noSuchBAR(bar) }
            func reset(_ method: PCIResetMethod) throws(PCIError) {}
        }
        #expect(throws: CXLStateError.notCXLDevice("plain has no PCIe DVSEC for CXL Devices (vendor 1e98, ID 0)")) {
            try CXLStateEngine(function: Plain()).save()
        }
    }

    /// Each reset method with preserve: state before == state after, register by register.
    @Test(arguments: CXLResetKind.allCases)
    func preserveRestoresEveryRegister(method: CXLResetKind) throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let clock = VirtualCXLClock()
        let before = try engine(dev, clock: clock).save()
        let report = try CXLResetOrchestrator(function: dev, options: CXLStateOptions(clock: clock))
            .reset(method: method, preserve: true)
        #expect(report.resetError == nil)
        #expect(report.restore?.succeeded == true, "\(report.restore?.failures ?? [])")
        #expect(report.succeeded, "\(report.diff?.changes.map(\.displayName) ?? [])")
        let after = try engine(dev, clock: clock).save()
        for r in before.registers {
            #expect(after[r.key]?.value == r.value, "\(r.displayName)")
        }
        #expect(after == CXLStateSnapshot(identity: before.identity, layout: before.layout, registers: after.registers))
    }

    @Test func conventionalResetWithoutPreserveLosesCXLState() throws {
        for method in [CXLResetKind.sbr, .link] {
            let dev = StateTestDevice()
            dev.programLikeFirmware()
            let report = try CXLResetOrchestrator(function: dev, options: CXLStateOptions(clock: VirtualCXLClock()))
                .reset(method: method, preserve: false)
            #expect(!report.succeeded)
            let changed = Set(report.diff!.changes.map(\.register))
            #expect(changed.contains("DVSEC CXL Lock"))
            #expect(changed.contains("DVSEC CXL Control"))
            #expect(changed.contains("Decoder 0 Control"))
            // The PCI core part came back.
            #expect(!changed.contains("Command") && !changed.contains("Base Address Register 2"))
            #expect(report.pciRestore?.succeeded == true)
        }
    }

    @Test func flrLeavesACompliantDeviceAloneAndWipesANonCompliantOne() throws {
        let good = StateTestDevice()
        good.programLikeFirmware()
        let r1 = try CXLResetOrchestrator(function: good, options: CXLStateOptions(clock: VirtualCXLClock()))
            .reset(method: .flr, preserve: false)
        #expect(r1.succeeded)
        let bad = StateTestDevice()
        bad.flrLosesState = true
        bad.programLikeFirmware()
        let r2 = try CXLResetOrchestrator(function: bad, options: CXLStateOptions(clock: VirtualCXLClock()))
            .reset(method: .flr, preserve: false)
        #expect(!r2.succeeded)
        let bad2 = StateTestDevice()
        bad2.flrLosesState = true
        bad2.programLikeFirmware()
        let r3 = try CXLResetOrchestrator(function: bad2, options: CXLStateOptions(clock: VirtualCXLClock()))
            .reset(method: .flr, preserve: true)
        #expect(r3.succeeded)
    }

    /// After a CXL Reset CONFIG_LOCK is still set: the DVSEC takes the merge path,
    /// Lock is not written, and the locked fields kept their values.
    @Test func cxlResetTakesTheLockedMergePath() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let report = try CXLResetOrchestrator(function: dev, options: CXLStateOptions(clock: VirtualCXLClock()))
            .reset(method: .cxl, preserve: true)
        let restore = try #require(report.restore)
        #expect(restore.dvsecLocked)
        #expect(restore.outcome(StateCatalog.dvsecBlock, "DVSEC CXL Lock")?.action == .lockedKept)
        #expect(restore.outcome(StateCatalog.dvsecBlock, "DVSEC CXL Control")?.action == .lockedKept)
        #expect(restore.outcome(StateCatalog.dvsecBlock, "DVSEC CXL Range 1 Base High")?.action == .lockedKept)
        #expect(restore.decoders.map(\.result) == [.committed, .committed])
        #expect(report.succeeded)
        // No write to Lock during the restore.
        #expect(!dev.log.contains { $0.write && $0.offset == UInt64(StateTestDevice.dvsec + CXLDeviceDVSEC.lock.offset) })
    }

    @Test func conventionalResetTakesTheUnlockedPathAndWritesLockLast() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let e = engine(dev)
        let saved = try e.save()
        try dev.reset(.bus)
        dev.log = []
        let report = try e.restore(saved)
        #expect(!report.dvsecLocked)
        #expect(report.succeeded, "\(report.failures)")
        let writes = dev.log.filter(\.write)
        let lockOffset = UInt64(StateTestDevice.dvsec + CXLDeviceDVSEC.lock.offset)
        let controlOffset = UInt64(StateTestDevice.dvsec + CXLDeviceDVSEC.control.offset)
        let lockIndex = try #require(writes.firstIndex { $0.space == .config && $0.offset == lockOffset })
        let controlIndex = try #require(writes.firstIndex { $0.space == .config && $0.offset == controlOffset })
        let lastDecoderWrite = try #require(writes.lastIndex { $0.space == .bar(2) })
        #expect(lastDecoderWrite < controlIndex && controlIndex < lockIndex)
        // Nothing CXL is written after Lock.
        #expect(!writes[(lockIndex + 1)...].contains { $0.space == .bar(2) || ($0.offset >= UInt64(StateTestDevice.dvsec) && $0.offset < UInt64(StateTestDevice.dvsec + 0x3C)) })
        #expect(dev.isLocked)
    }

    @Test func lockedCommittedDecodersAreLeftAlone() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware(lockOnCommit: true)
        let e = engine(dev)
        let saved = try e.save()
        try dev.reset(.flr)  // FLR keeps HDM: decoders stay locked and committed
        dev.log = []
        let report = try e.restore(saved)
        #expect(report.decoders.map(\.result) == [.leftLocked, .leftLocked])
        #expect(report.succeeded, "\(report.failures)")
        #expect(!dev.log.contains { $0.write && $0.space == .bar(2) && $0.offset != UInt64(StateTestDevice.hdm + 4) })
    }

    /// A restore's report keeps its register outcomes as the restore recorded them and builds
    /// `registers` when read (issue 13): it must behave as a report holding the array, a value
    /// whose edits stay in the copy that made them.
    @Test func restoreReportOutcomesBehaveAsAStoredArray() throws {
        // Decoder 0 saved not committed: its registers are skipped (a detail each), decoder 1's
        // fail as out of order (another detail), everything else is restored.
        let (_, e, saved, i) = try savedWithDecoder0NotCommitted()
        let report = try e.restore(saved)
        #expect(report.decoders.map(\.result) == [.skippedNotCommitted, .outOfOrder])
        let outcomes = report.registers
        #expect(outcomes.count == saved.registers.count)
        #expect(outcomes.map(\.key) == saved.registers.map(\.key))
        #expect(report.registers == outcomes)  // built again, the same
        #expect(outcomes[i].action == .skipped && outcomes[i].detail == "not committed when saved: not restored")
        #expect(outcomes.contains { !$0.ok && $0.detail?.contains("decoders commit in ascending order") == true })
        #expect(outcomes.contains { $0.action == .written && $0.ok && $0.after != nil })
        let stored = RestoreReport(device: report.device, dvsecLocked: report.dvsecLocked, steps: report.steps,
                                   registers: outcomes, decoders: report.decoders)
        #expect(stored == report && stored.hashValue == report.hashValue)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        #expect(try encoder.encode(stored) == encoder.encode(report))
        var edited = report
        edited.registers[0].detail = "edited"
        #expect(edited.registers[0].detail == "edited")
        #expect(report.registers[0].detail == outcomes[0].detail)
        #expect(edited != report)
    }

    /// A report read back from its JSON (as `CXLResetOrchestrator` reads a recorded run) says what the restore's own
    /// report says; JSON that is not a report (a register or decoder without its fields, an action or result the
    /// report does not know, a key missing) is a `DecodingError`, never a crash.
    @Test func restoreReportReadsBackFromItsJSONAndRefusesOtherJSON() throws {
        let (_, e, saved, _) = try savedWithDecoder0NotCommitted()
        let report = try e.restore(saved)
        let json = try JSONEncoder().encode(report)
        let back = try JSONDecoder().decode(RestoreReport.self, from: json)
        #expect(back == report && back.hashValue == report.hashValue)
        #expect(back.failures == report.failures && back.quantities == report.quantities && !back.succeeded)
        let object = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        let registers = try #require(object["registers"] as? [[String: Any]])
        let decoders = try #require(object["decoders"] as? [[String: Any]])
        func edited(_ key: String, _ value: Any?) throws -> Data {
            var o = object
            o[key] = value
            return try JSONSerialization.data(withJSONObject: o)
        }
        func replacingFirst(_ list: [[String: Any]], _ key: String, _ value: Any?) -> [[String: Any]] {
            var l = list
            l[0][key] = value
            return l
        }
        let bad: [(String, Data)] = [
            ("register without saved", try edited("registers", replacingFirst(registers, "saved", nil))),
            ("unknown action", try edited("registers", replacingFirst(registers, "action", "exploded"))),
            ("negative saved value", try edited("registers", replacingFirst(registers, "saved", -1))),
            ("unknown decoder result", try edited("decoders", replacingFirst(decoders, "result", "maybe"))),
            ("no decoders", try edited("decoders", nil)),
            ("steps not text", try edited("steps", [1, 2])),
            ("not an object", Data("[]".utf8)),
            ("truncated", json.prefix(json.count / 2)),
        ]
        for (what, data) in bad {
            #expect(throws: DecodingError.self, "\(what)") { try JSONDecoder().decode(RestoreReport.self, from: data) }
        }
    }

    @Test func liveCommittedDecoderIsDecommittedFirst() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let e = engine(dev)
        let saved = try e.save()
        // Someone re-programmed decoder 0 and committed it.
        try dev.barWrite(2, offset: UInt64(dev.decoderOffset(0, 0x10)), width: 4, value: 0)
        try dev.barWrite(2, offset: UInt64(dev.decoderOffset(0, 0x8)), width: 4, value: 0x3000_0000)
        try dev.barWrite(2, offset: UInt64(dev.decoderOffset(0, 0x10)), width: 4, value: StateCatalog.commitBit)
        dev.log = []
        let report = try e.restore(saved)
        #expect(report.succeeded, "\(report.failures)")
        let controlWrites = dev.log.filter { $0.write && $0.offset == UInt64(dev.decoderOffset(0, 0x10)) }
        #expect(controlWrites.count == 2)  // de-commit, commit
        #expect(dev.comp(dev.decoderOffset(0, 0x8)) == 0x1000_0000)
    }

    @Test func decoderCommittedOutOfOrderInTheFileIsReportedNotForced() throws {
        // Decoder 0 not committed, decoder 1 committed.
        let (dev, e, saved, _) = try savedWithDecoder0NotCommitted()
        dev.log = []
        let report = try e.restore(saved)
        #expect(report.decoders.map(\.result) == [.skippedNotCommitted, .outOfOrder])
        #expect(!report.succeeded)
        #expect(!dev.log.contains { $0.write && $0.offset >= UInt64(dev.decoderOffset(1, 0)) && $0.offset < UInt64(dev.decoderOffset(2, 0)) && $0.space == .bar(2) })
    }

    @Test func commitErrorIsAFailureOfThatDecoderAndBlocksTheNext() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let e = engine(dev)
        let saved = try e.save()
        try dev.reset(.bus)
        dev.commitBehaviour = .error
        let report = try e.restore(saved)
        #expect(report.decoders.map(\.result) == [.commitError, .blocked])
        #expect(!report.succeeded)
        #expect(report.outcome(StateCatalog.hdmBlock, "Decoder 0 Control")?.ok == false)
        // Commit cleared after the error (spec recovery), not left armed.
        #expect(dev.comp(dev.decoderOffset(0, 0x10)) & StateCatalog.commitBit == 0)
    }

    @Test func commitTimeoutUsesTheInjectedBudget() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let clock = VirtualCXLClock()
        let e = engine(dev, clock: clock)
        let saved = try e.save()
        try dev.reset(.bus)
        dev.commitBehaviour = .never
        let report = try e.restore(saved)
        #expect(report.decoders.map(\.result) == [.commitTimeout, .blocked])
        // 10 ms budget in 1 ms steps: reads at 0, 1, ..., 10 ms.
        #expect(report.decoders[0].polls == 11)
        #expect(clock.elapsed == .milliseconds(10))
    }

    @Test func restoreRefusesAnotherDevice() throws {
        let a = StateTestDevice()
        a.programLikeFirmware()
        let saved = try engine(a).save()
        let b = StateTestDevice(serial: 0xDEAD)
        b.log = []
        #expect(throws: CXLStateError.self) { try engine(b).restore(saved) }
        #expect(!b.log.contains { $0.write })
        let c = StateTestDevice(device: 0x2B01)
        #expect {
            try engine(c).restore(saved)
        } throws: { e in
            if case .deviceMismatch = e as? CXLStateError { return true }
            return false
        }
    }

    @Test func firmwareProgrammingThroughThePCIFunction() throws {
        let dev = StateTestDevice()
        let e = engine(dev)
        let steps = try e.programLikeFirmware(CXLFirmwareProgram(hpaBase: 0x10_0000_0000,
            decoders: [.init(size: 0x1000_0000), .init(size: 0x1000_0000, dpaSkip: 0x1000_0000)], lockOnCommit: true))
        #expect(steps.last == "CONFIG_LOCK")
        let s = try e.save()
        #expect(s[StateCatalog.hdmBlock, "Decoder 1 Base High"]?.value == 0x10)
        #expect(s[StateCatalog.hdmBlock, "Decoder 1 Base Low"]?.value == 0x1000_0000)
        #expect(s[StateCatalog.hdmBlock, "Decoder 1 DPA Skip Low"]?.value == 0x1000_0000)
        #expect(s[StateCatalog.hdmBlock, "Decoder 1 Control"]!.value & StateCatalog.committedBit != 0)
        #expect(s.dvsec(CXLDeviceDVSEC.control)?.value == 0x7)
        #expect(dev.isLocked)
    }

    /// QEMU clears Commit when it sets Committed; both mean "committed".
    @Test func qemuStyleCommitIsEquivalent() throws {
        let dev = StateTestDevice()
        dev.qemuCommitStyle = true
        dev.programLikeFirmware()
        let report = try CXLResetOrchestrator(function: dev, options: CXLStateOptions(clock: VirtualCXLClock()))
            .reset(method: .sbr, preserve: true)
        #expect(report.succeeded, "\(report.restore?.failures ?? [])")
    }

    /// Save + restore touch each register no more often than the algorithm needs,
    /// in the exact number of accesses the spec's minimum allows: one bulk config
    /// read and one bulk HDM read for a save; for a restore each restored register
    /// written once, the live reads the algorithm decides from, one poll per commit
    /// and one bulk read-back per space.
    @Test func accessCountsAreMinimal() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let e = engine(dev)
        dev.log = []
        let saved = try e.save()
        // Save: every saved register read exactly once.
        for reg in saved.registers {
            #expect(dev.log.filter { !$0.write && $0.covers(reg.space, reg.offset) }.count == 1, "\(reg.displayName)")
        }
        #expect(!dev.log.contains { $0.write })  // MSE was already set
        // 1 config image + CXL Capability Header and its elements + HDM Decoder Capability + 1 HDM block.
        let arraySize = Int(dev.component[ComponentRegisterBlock.cacheMemOffset + 3])
        #expect(dev.log.count == 1 + (1 + arraySize) + 1 + 1, "\(dev.log)")
        #expect(dev.log.filter(\.bulk).count == 2)

        try dev.reset(.bus)
        dev.log = []
        let report = try e.restore(saved)
        #expect(report.succeeded, "\(report.failures)")
        // Per register: single reads (live reads, polls) and writes; the bulk reads
        // are counted below.
        var r: [RegisterKey: Int] = [:], w: [RegisterKey: Int] = [:]
        for reg in saved.registers {
            for a in dev.log where !a.bulk && a.covers(reg.space, reg.offset) {
                if a.write { w[reg.key, default: 0] += 1 } else { r[reg.key, default: 0] += 1 }
            }
        }
        var committedDecoders = 0
        for reg in saved.registers {
            let name = reg.displayName
            switch (reg.block, reg.register) {
            case (StateCatalog.headerBlock, "Command"):
                // Live read for MSE, temporary MSE, final value.
                #expect(r[reg.key] == 1 && w[reg.key] == 2, "\(name)")
            case (StateCatalog.dvsecBlock, "DVSEC CXL Lock"):
                // Live read decides the path; written once (re-arm).
                #expect(r[reg.key] == 1 && w[reg.key] == 1, "\(name)")
            case (StateCatalog.hdmBlock, let n) where n.hasSuffix("Control") && n.hasPrefix("Decoder"):
                // One commit write, one poll read that serves as read-back.
                #expect(r[reg.key] == 1 && w[reg.key] == 1, "\(name)")
                committedDecoders += 1
            case (StateCatalog.hdmBlock, HDMDecoderCapability.capability.name):
                // Compared once, before any write, by the capability check.
                #expect(r[reg.key] == 1 && w[reg.key] == nil, "\(name)")
            default:
                #expect(r[reg.key] == nil && w[reg.key] == (reg.role == .verify ? nil : 1), "\(name)")
            }
            // Restored registers but the polled Controls are read back by the last bulk
            // read of their space; read-only ones were read before any write.
            let lastBulk = dev.log.last { $0.bulk && $0.space == reg.space }
            let firstWrite = dev.log.firstIndex { $0.write } ?? dev.log.count
            if reg.role == .verify {
                if reg.space == .config {
                    #expect(dev.log[..<firstWrite].contains { $0.bulk && $0.covers(reg.space, reg.offset) }, "\(name) not compared")
                }
            } else if !(reg.block == StateCatalog.hdmBlock && reg.register.hasSuffix(" Control") && reg.register.hasPrefix("Decoder")) {
                #expect(lastBulk?.covers(reg.space, reg.offset) == true, "\(name) not read back")
            }
        }
        // Exact total: identity (Vendor/Device, the 8-byte DSN) and the DVSEC header
        // check (one 8-byte read); the capability check (one bulk read of the DVSEC's read-only
        // registers, one read of HDM Decoder Capability); every restore-role register
        // written once plus the temporary MSE; Command and Lock live reads; one
        // batched read of the decoder Controls; one poll per committed decoder; one
        // bulk read-back of the HDM block and one of config space.
        let restoreRegisters = saved.registers.filter { $0.role == .restore }.count
        let writes = restoreRegisters + 1
        let reads = 2 + 1 + 2 + 2 + 1 + committedDecoders + 1 + 1
        #expect(dev.log.filter(\.write).count == writes)
        #expect(dev.log.filter { !$0.write }.count == reads, "\(dev.log.filter { !$0.write })")
    }
}

@Suite("CXL Reset flow (test double)")
struct CXLResetFlowTests {
    func orchestrator(_ dev: StateTestDevice, _ clock: VirtualCXLClock) -> CXLResetOrchestrator {
        CXLResetOrchestrator(function: dev, options: CXLStateOptions(clock: clock))
    }

    @Test func flowWaitsQuietTimeAndPollsStatus2() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        let clock = VirtualCXLClock()
        let report = try orchestrator(dev, clock).reset(method: .cxl, preserve: true)
        #expect(report.succeeded)
        #expect(clock.recordedSleeps == [.milliseconds(100)])
        #expect(report.steps.contains("Disable Caching set"))
        #expect(report.steps.contains("Cache Invalid set"))
        #expect(report.steps.contains { $0.hasPrefix("CXL Reset Complete after 1 Status2 poll") })
        #expect(report.steps.contains("Disable Caching cleared: caching re-enabled"))
        #expect(dev.resets == ["cxl"])
    }

    @Test func resetTimeoutIsReportedAndStateStillRestored() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        dev.cxlResetBehaviour = .never
        let clock = VirtualCXLClock()
        let report = try orchestrator(dev, clock).reset(method: .cxl, preserve: true)
        #expect(report.resetError == .resetTimeout(milliseconds: 100))
        #expect(!report.succeeded)
        // 100 ms quiet time, then the 100 ms Capability timeout has run out: one poll.
        #expect(clock.recordedSleeps.first == .milliseconds(100))
        let c2 = dev.cfg(StateTestDevice.dvsec, CXLDeviceDVSEC.control2)
        #expect(c2 & 0x1 == 0, "caching re-enabled after the failure")
    }

    @Test func resetTimeoutPollsEvery20ms() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        dev.cxlResetBehaviour = .never
        let clock = VirtualCXLClock()
        var options = CXLStateOptions(clock: clock)
        options.resetTimeout = .milliseconds(200)
        let report = try CXLResetOrchestrator(function: dev, options: options).reset(method: .cxl, preserve: false)
        #expect(report.resetError == .resetTimeout(milliseconds: 200))
        #expect(clock.recordedSleeps == [.milliseconds(100)] + Array(repeating: .milliseconds(20), count: 5))
    }

    @Test func resetErrorIsReported() throws {
        let dev = StateTestDevice()
        dev.programLikeFirmware()
        dev.cxlResetBehaviour = .error
        let report = try orchestrator(dev, VirtualCXLClock()).reset(method: .cxl, preserve: true)
        #expect(report.resetError == .resetError)
        #expect(!report.succeeded)
    }

    @Test func memClearNeedsCXLReset() throws {
        let dev = StateTestDevice()
        #expect(throws: CXLStateError.resetUnsupported("--mem-clear applies to CXL Reset only")) {
            try orchestrator(dev, VirtualCXLClock()).reset(method: .flr, preserve: false, memClear: true)
        }
    }

    @Test func unsupportedBackendMethodIsRefusedBeforeAnything() throws {
        let dev = StateTestDevice()
        dev.resetMethods = [.flr]
        dev.programLikeFirmware()
        #expect(throws: CXLStateError.self) {
            try orchestrator(dev, VirtualCXLClock()).reset(method: .sbr, preserve: true)
        }
        #expect(dev.resets.isEmpty)
    }
}
