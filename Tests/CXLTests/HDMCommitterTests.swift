import Testing
import PCI
@testable import CXL

/// The one host-side HDM committer: programs, commits, polls through the injected
/// clock, and reads the decoder back.
@Suite("HDM committer")
struct HDMCommitterTests {
    func access(_ dev: StateTestDevice) -> HDMRegisterAccess {
        .bar(dev, bar: StateTestDevice.componentBAR, hdmOffset: UInt64(StateTestDevice.hdm))
    }

    @Test func commitsProgramsInLinuxOrderAndReadsBack() throws {
        let dev = StateTestDevice()
        let clock = VirtualCXLClock()
        let base: UInt64 = 0x12_3000_0000, size: UInt64 = 0x1_2000_0000
        let r = try HDMCommitter(clock: clock).commit(decoder: 0, base: base, size: size, dpaSkip: 0x1000_0000, through: access(dev))
        #expect(r.committed && r.wait.polls == 1 && r.base == base && r.size == size)
        #expect(clock.recordedSleeps.isEmpty)
        // Writes: Base Low/High, Size Low/High, DPA Skip Low/High, Control (Commit 0), Control (Commit 1).
        let regs = HDMDecoderRegisters(0)
        let writes = dev.log.filter(\.write).map { Int($0.offset) - StateTestDevice.hdm }
        #expect(writes == regs.programming.map(\.offset) + [regs.control.offset, regs.control.offset])
    }

    @Test func errorNotCommittedEndsTheWait() throws {
        let dev = StateTestDevice()
        dev.commitBehaviour = .error
        let clock = VirtualCXLClock()
        let r = try HDMCommitter(clock: clock).commit(decoder: 0, base: 0, size: 0x1000_0000, through: access(dev))
        guard case .errorNotCommitted(let control, 1) = r.wait else { Issue.record("\(r.wait)"); return }
        #expect(control & StateCatalog.errorNotCommittedBit != 0 && !r.committed)
    }

    /// A decoder that never reports: the committer polls every interval on the
    /// injected clock until the budget is spent, never on the wall clock.
    @Test func timeoutSpendsTheBudgetOnTheInjectedClock() throws {
        let dev = StateTestDevice()
        dev.commitBehaviour = .never
        let clock = VirtualCXLClock()
        let c = HDMCommitter(clock: clock, timeout: .milliseconds(10), interval: .milliseconds(3))
        let r = try c.commit(decoder: 0, base: 0, size: 0x1000_0000, through: access(dev))
        guard case .timeout(_, let polls) = r.wait else { Issue.record("\(r.wait)"); return }
        #expect(clock.recordedSleeps == [.milliseconds(3), .milliseconds(3), .milliseconds(3), .milliseconds(1)])
        #expect(polls == 5 && clock.elapsed == .milliseconds(10))
    }

    @Test func decommitWaitsForCommittedToClear() throws {
        let dev = StateTestDevice()
        let c = HDMCommitter(clock: VirtualCXLClock())
        _ = try c.commit(decoder: 0, base: 0, size: 0x1000_0000, through: access(dev))
        let ctl = HDMDecoderRegisters(0).control.offset
        try access(dev).write(ctl, 0)
        let w = try c.awaitDecommit { () throws(PCIError) in try access(dev).read(ctl) }
        #expect(w == .done(control: 0, polls: 1))
    }

    /// The split-address and byte helpers the committer and the engine share.
    @Test func splitAddressAndLittleEndianRoundTrip() {
        let a = SplitAddress(0x1234_5678_9ABC_DEF0)
        #expect(a.low == 0x9ABC_DEF0 && a.high == 0x1234_5678)
        #expect(a.value() == 0x1234_5678_9ABC_DEF0)
        #expect(a.value(lowMask: HDMDecoderRegisters.lowAddressMask) == 0x1234_5678_9000_0000)
        var b = [UInt8](repeating: 0, count: 8)
        LittleEndian.store(0x0102_0304, width: 4, into: &b, at: 2)
        #expect(b == [0, 0, 4, 3, 2, 1, 0, 0])
        #expect(LittleEndian.load(b, at: 2, width: 4) == 0x0102_0304)
        #expect(LittleEndian.load(b, at: 6, width: 4) == nil)
        #expect(LittleEndian.bytes(0xAABB, width: 2) == [0xBB, 0xAA])
    }
}

/// Registers and fields are reached by catalog handle; a name the catalog does not
/// declare stops the process at first use instead of reading 0.
@Suite("Register handles")
struct RegisterHandleTests {
    @Test func namedDecoderRegistersMatchTheCatalog() {
        for n in [0, 1, 31] {
            let r = HDMDecoderRegisters(n)
            let base = HDMDecoderCapability.firstDecoderOffset + HDMDecoderCapability.decoderStride * n
            #expect(r.baseLow.name == "Decoder \(n) Base Low" && r.baseLow.offset == base)
            #expect(r.control.name == "Decoder \(n) Control" && r.control.offset == base + HDMDecoderCapability.controlSlot)
            #expect(r.skipOrTargetHigh.name == "Decoder \(n) DPA Skip High" && r.skipOrTargetHigh.offset == base + 0x18)
            #expect(HDMDecoderRegisters(n, endpoint: false).skipOrTargetLow.name == "Decoder \(n) Target List Low")
        }
        #expect(StateCatalog.layout(for: RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 7 Target List High"))?.offset
                == HDMDecoderCapability.firstDecoderOffset + 7 * HDMDecoderCapability.decoderStride + 0x18)
        #expect(StateCatalog.layout(for: RegisterKey(block: StateCatalog.hdmBlock, register: "Decoder 32 Control")) == nil)
    }

    @Test func fieldHandleReadsTheField() {
        let v = RegisterValue(HDMDecoderCapability.capability, 0x0000_0305)
        #expect(v[HDMDecoderCapability.decoderCount] == 5 && v["Decoder Count"] == 5)
    }

    @Test func unknownFieldNameStopsAtFirstUse() async {
        await #expect(processExitsWith: .failure) {
            _ = RegisterValue(HDMDecoderCapability.capability, 0)["No Such Field"]
        }
    }
}
