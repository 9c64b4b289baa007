import Testing
import PCI
import CXL
@testable import CXLEmulator

/// HDM decoder commit (CXL 3.1 §8.2.4.20.7, §8.2.4.20.12; reference §5.5).
@Suite("HDM decoder commit")
struct CommitTests {
    static let base0: UInt64 = 0x10_0000_0000

    struct Case: Sendable, CustomStringConvertible {
        let name: String
        /// Profile changes (memory 1 GiB, 2 decoders, all interleave capabilities by default).
        var profile: @Sendable (inout DeviceProfile) -> Void = { _ in }
        /// Commit decoder 0 (1-way, 256 MB at base0) first.
        var commitDecoder0 = true
        let decoder: Int
        let base: UInt64, size: UInt64
        var skip: UInt64 = 0, iw: UInt8 = 0, ig: UInt8 = 0, position: Int = 0
        let expected: CommitFailure?
        var description: String { name }
    }

    static let next = base0 + granule
    static let cases: [Case] = [
        Case(name: "valid 1-way", decoder: 1, base: next, size: granule, expected: nil),
        Case(name: "valid zero size", decoder: 1, base: next, size: 0, expected: nil),
        Case(name: "valid 3-way 3 granules", decoder: 1, base: next, size: 3 * granule, iw: 8, position: 2, expected: nil),
        Case(name: "valid 16-way", decoder: 1, base: next, size: 4 * granule, iw: 4, ig: 6, position: 15, expected: nil),
        Case(name: "reserved IW", decoder: 1, base: next, size: granule, iw: 5, expected: .reservedInterleaveWays(5)),
        Case(name: "reserved IW 0xB", decoder: 1, base: next, size: granule, iw: 0xB, expected: .reservedInterleaveWays(0xB)),
        Case(name: "reserved IG", decoder: 1, base: next, size: granule, iw: 1, ig: 7, expected: .reservedInterleaveGranularity(7)),
        Case(name: "3-way not capable", profile: { $0.capabilities.interleave3_6_12Way = false },
             decoder: 1, base: next, size: 3 * granule, iw: 8, expected: .interleaveWaysNotCapable(ways: 3)),
        Case(name: "12-way not capable", profile: { $0.capabilities.interleave3_6_12Way = false },
             decoder: 1, base: next, size: 3 * granule, iw: 0xA, expected: .interleaveWaysNotCapable(ways: 12)),
        Case(name: "16-way not capable", profile: { $0.capabilities.interleave16Way = false },
             decoder: 1, base: next, size: granule, iw: 4, expected: .interleaveWaysNotCapable(ways: 16)),
        Case(name: "IG 256 B without A11to8", profile: { $0.capabilities.interleaveA11to8 = false },
             decoder: 1, base: next, size: granule, iw: 1, ig: 0, expected: .interleaveGranularityNotCapable(bytes: 256)),
        Case(name: "IG 4 KB without A14to12", profile: { $0.capabilities.interleaveA14to12 = false },
             decoder: 1, base: next, size: granule, iw: 1, ig: 4, expected: .interleaveGranularityNotCapable(bytes: 4096)),
        Case(name: "position outside the set", decoder: 1, base: next, size: 2 * granule, iw: 1, position: 2,
             expected: .positionOutOfRange(position: 2, ways: 2)),
        Case(name: "previous decoder not committed", commitDecoder0: false, decoder: 1, base: next, size: granule,
             expected: .previousDecoderNotCommitted(0)),
        Case(name: "overlaps previous decoder", decoder: 1, base: base0, size: granule,
             expected: .notAscending(base: base0, previousEnd: next)),
        Case(name: "below previous decoder", decoder: 1, base: base0 - granule, size: granule,
             expected: .notAscending(base: base0 - granule, previousEnd: next)),
        Case(name: "wraps 2^64", commitDecoder0: false, decoder: 0, base: 0xFFFF_FFFF_F000_0000, size: 2 * granule,
             expected: .wrapsAddressSpace),
        Case(name: "3-way size not 3 granules", decoder: 1, base: next, size: 2 * granule, iw: 8,
             expected: .sizeNotMultipleOfThreeGranules(2 * granule)),
        Case(name: "6-way size not 3 granules", decoder: 1, base: next, size: 4 * granule, iw: 9,
             expected: .sizeNotMultipleOfThreeGranules(4 * granule)),
        Case(name: "size beyond capacity", commitDecoder0: false, decoder: 0, base: base0, size: 5 * granule,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "skip pushes past capacity", commitDecoder0: false, decoder: 0, base: base0, size: 2 * granule, skip: 3 * granule,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "capacity in decoder order", decoder: 1, base: next, size: 4 * granule,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "interleaved size counts Size/ways", decoder: 1, base: next, size: 6 * granule, iw: 1,
             expected: nil),
        Case(name: "interleaved size beyond capacity", decoder: 1, base: next, size: 8 * granule, iw: 1, position: 1,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "8-way, 4 GiB per device share past capacity", decoder: 1, base: next, size: 32 * granule, iw: 3,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
    ]

    @Test(arguments: cases)
    func commitCheck(_ c: Case) throws {
        let (dev, d, _) = try makeDevice { c.profile(&$0) }
        if c.commitDecoder0 {
            try dev.program(d, decoder: 0, base: Self.base0, size: granule)
            #expect(try dev.committed(d, 0))
        }
        try dev.program(d, decoder: c.decoder, base: c.base, size: c.size, skip: c.skip, iw: c.iw, ig: c.ig, position: c.position)
        #expect(try dev.committed(d, c.decoder) == (c.expected == nil))
        #expect(try dev.commitError(d, c.decoder) == (c.expected != nil))
        #expect(dev.commitFailure(decoder: c.decoder) == c.expected)
    }

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
