import Testing
import PCI
import CXL
@testable import CXLEmulator

/// HDM decoder commit in the emulator (CXL 3.1 §8.2.4.20.7, §8.2.4.20.12; reference §5.5):
/// latency, faults and resets, which only the emulator has.
@Suite("HDM decoder commit")
struct CommitTests {
    static let base0: UInt64 = 0x10_0000_0000

    // The 26-case commit table runs against both users of the device model (this
    // emulator and vfio-cxl's shadow): Tests/VFIOCXLTests/DeviceModelTests.swift.

    /// Base/Size/Skip registers hold bits 63:28 only, so misalignment cannot be
    /// programmed through them; the check itself still rejects it.
    @Test func granuleAlignmentCheck() {
        let rules = HDMCommitRules(threeSixTwelveWay: true, sixteenWay: true, a11to8: true, a14to12: true, capacity: GiB)
        #expect(rules.check(decoder: 0, decoders: [DecoderProgramming(base: 0x1000, size: granule)], committed: [false])
                == .notGranuleAligned(field: "Base", value: 0x1000))
        #expect(rules.check(decoder: 0, decoders: [DecoderProgramming(base: 0, size: granule + 4096)], committed: [false])
                == .notGranuleAligned(field: "Size", value: granule + 4096))
        #expect(rules.check(decoder: 0, decoders: [DecoderProgramming(base: 0, size: granule, dpaSkip: 1)], committed: [false])
                == .notGranuleAligned(field: "DPA Skip", value: 1))
        #expect(rules.check(decoder: 0, decoders: [DecoderProgramming(base: 0, size: granule)], committed: [false]) == nil)
    }

    @Test func failedCommitRecoversAfterClearAndReprogram() throws {
        let (dev, d, _) = try makeDevice()
        try dev.program(d, decoder: 0, base: Self.base0, size: 8 * granule)
        #expect(try dev.commitError(d, 0))
        try dev.setBar32(d.control(0), 0)
        #expect(try !dev.commitError(d, 0) && !dev.committed(d, 0))
        try dev.program(d, decoder: 0, base: Self.base0, size: 4 * granule)
        #expect(try dev.committed(d, 0) && !dev.commitError(d, 0))
    }

    @Test func decommitAndLockOnCommit() throws {
        let (dev, d, _) = try makeDevice()
        try dev.program(d, decoder: 0, base: Self.base0, size: granule)
        try dev.setBar32(d.control(0), 0)
        #expect(try !dev.committed(d, 0))
        try dev.program(d, decoder: 0, base: Self.base0, size: granule, lock: true)
        #expect(try dev.committed(d, 0))
        // Locked: every decoder register ignores writes, Commit = 0 included.
        let before = try (0..<7).map { try dev.bar32(d.decoder(0) + UInt64(4 * $0)) }
        for i in 0..<7 { try dev.setBar32(d.decoder(0) + UInt64(4 * i), 0) }
        try dev.barWrite(0, offset: d.decoder(0), width: 8, value: 0)
        #expect(try (0..<7).map { try dev.bar32(d.decoder(0) + UInt64(4 * $0)) } == before)
        #expect(try dev.committed(d, 0))
        // Decoder 1 is independent of decoder 0's lock.
        try dev.program(d, decoder: 1, base: Self.base0 + granule, size: granule)
        #expect(try dev.committed(d, 1))
        try dev.setBar32(d.control(1), 0)
        #expect(try !dev.committed(d, 1))
        // A conventional reset releases the lock and uncommits.
        try dev.reset(.bus)
        #expect(try dev.decoderControl(d, 0) == 0)
        try dev.program(d, decoder: 0, base: Self.base0 + granule, size: granule)
        #expect(try dev.committed(d, 0))
    }

    /// Commit latency, including beyond the 10 ms budget (§8.2.4.20.12), on a manual clock.
    @Test(arguments: [UInt64(1), 5_000, 10_000, 15_000, 250_000])
    func commitLatency(microseconds: UInt64) throws {
        let (dev, d, clock) = try makeDevice { $0.timing.commitLatencyMicroseconds = microseconds }
        try dev.program(d, decoder: 0, base: Self.base0, size: granule)
        #expect(try !dev.committed(d, 0) && !dev.commitError(d, 0))
        clock.advance(nanoseconds: microseconds * 1000 - 1)
        #expect(try !dev.committed(d, 0))
        #expect(dev.nextEventDeadline == microseconds * 1000)
        clock.advance(nanoseconds: 1)
        #expect(try dev.committed(d, 0))
        #expect(dev.nextEventDeadline == nil)
    }

    @Test func failureAlsoWaitsForLatency() throws {
        let (dev, d, clock) = try makeDevice { $0.timing.commitLatencyMicroseconds = 2_000 }
        try dev.program(d, decoder: 0, base: Self.base0, size: 8 * granule)
        #expect(try !dev.commitError(d, 0))
        clock.advance(milliseconds: 2)
        #expect(try dev.commitError(d, 0))
    }

    @Test func decommitCancelsPendingCommit() throws {
        let (dev, d, clock) = try makeDevice { $0.timing.commitLatencyMicroseconds = 2_000 }
        try dev.program(d, decoder: 0, base: Self.base0, size: granule)
        try dev.setBar32(d.control(0), 0)
        clock.advance(milliseconds: 5)
        #expect(try !dev.committed(d, 0) && !dev.commitError(d, 0))
    }

    @Test func faultCommitNeverCompletes() throws {
        let (dev, d, clock) = try makeDevice { $0.faults.commitNeverCompletes = true }
        try dev.program(d, decoder: 0, base: Self.base0, size: granule)
        clock.advance(milliseconds: 10_000)
        #expect(try !dev.committed(d, 0) && !dev.commitError(d, 0))
        #expect(dev.nextEventDeadline == nil)
    }

    @Test func faultCommitReportsError() throws {
        let (dev, d, _) = try makeDevice { $0.faults.commitReportsError = true }
        try dev.program(d, decoder: 0, base: Self.base0, size: granule)
        #expect(try !dev.committed(d, 0) && dev.commitError(d, 0))
        #expect(dev.commitFailure(decoder: 0) == .injectedFault)
    }
}
