import PCI
import Testing
import TestSupport
@testable import CXL

@Suite("Decoder programming read from the catalog's registers")
struct DecoderProgrammingTests {
    @Test func decoderOneFromARegisterImage() {
        var image = RegisterFile(size: HDMDecoderCapability.length(decoders: 2))
        image.place(HDMDecoderCapability.layout(decoders: 2, endpoint: true), at: 0)
        let r = HDMDecoderCapability.decoderRegisters(1, endpoint: true)
        // Low registers carry junk in bits 27:0, which they do not hold.
        for (reg, v) in zip(r, [0x3000_0ABC, 0x12, 0x6000_0001, 0x1, 0x0000_0000, 0x1000_0FFF, 0x2] as [UInt64]) {
            image.store(reg.offset, width: 4, value: v)
        }
        var ctl: UInt64 = 0
        ctl = HDMDecoderCapability.Control.iw.insert(9, into: ctl)
        ctl = HDMDecoderCapability.Control.ig.insert(2, into: ctl)
        ctl = HDMDecoderCapability.Control.interleaveSetPosition.insert(5, into: ctl)
        ctl = HDMDecoderCapability.Control.lockOnCommit.insert(1, into: ctl)
        image.store(r[4].offset, width: 4, value: ctl)
        let p = DecoderProgramming(decoder: 1) { image.read($0, width: $1) }
        #expect(p == DecoderProgramming(base: 0x12_3000_0000, size: 0x1_6000_0000, dpaSkip: 0x2_1000_0000,
                                        iw: 9, ig: 2, position: 5, lockOnCommit: true))
        #expect(DecoderProgramming(decoder: 0) { image.read($0, width: $1) } == DecoderProgramming(base: 0, size: 0))
    }
}

@Suite("Commit check: DPA allocation without building a decoder map")
struct CommitDPAEndTests {
    /// `HDMCommitRules.dpaEnd` equals `EndpointDecoderMap.dpaEnd` (the definition) for random decoder sets:
    /// reserved IW encodings (counted as 1 way), skips and sizes near 2^64 (saturation), 3/6/12 ways.
    @Test func dpaEndMatchesTheDecoderMap() {
        let seed: UInt64 = 0x13_5EED
        print("CommitDPAEndTests seed \(String(seed, radix: 16))")
        var rng = SplitMix64(state: seed)
        let big: [UInt64] = [0, 1 << 28, 3 << 28, 1 << 40, UInt64.max - (1 << 28) + 1, UInt64.max / 3, 1 << 63]
        for _ in 0..<2000 {
            let count = Int.random(in: 1...8, using: &rng)
            let decoders = (0..<count).map { _ in
                DecoderProgramming(base: 0, size: big.randomElement(using: &rng)! &+ UInt64.random(in: 0...4, using: &rng) << 28,
                                   dpaSkip: Bool.random(using: &rng) ? 0 : big.randomElement(using: &rng)!,
                                   iw: UInt8.random(in: 0...11, using: &rng))
            }
            let map = EndpointDecoderMap(decoders.map {
                EndpointDecoder(base: $0.base, size: $0.size, ways: InterleaveWays(encoding: $0.iw) ?? InterleaveWays(encoding: 0)!,
                                dpaSkip: $0.dpaSkip)
            })
            for m in 0..<count {
                #expect(HDMCommitRules.dpaEnd(of: m, decoders) == map.dpaEnd(of: m), "seed \(seed) \(decoders) m \(m)")
            }
        }
    }
}

@Suite("Commit check: one decoder, given what it needs of the others")
struct SingleDecoderCommitCheckTests {
    /// The one-decoder form of the check refuses decoder m > 0 when decoder m-1 is not committed, even when the
    /// caller has not given m-1's programming; given it, the answer is the array form's.
    @Test func previousNotCommittedFailsWithOrWithoutItsProgramming() {
        let rules = HDMCommitRules(threeSixTwelveWay: true, sixteenWay: true, a11to8: true, a14to12: true, capacity: 1 << 30)
        let zero = (0..<2).map { n in DecoderProgramming(decoder: n) { _, _ in 0 } }
        for previous in [nil, zero[0]] {
            #expect(rules.check(zero[1], index: 1, previous: previous, previousCommitted: false, dpaEnd: 0) == .previousDecoderNotCommitted(0))
        }
        #expect(rules.check(zero[1], index: 1, previous: zero[0], previousCommitted: false, dpaEnd: 0)
                == rules.check(decoder: 1, decoders: zero, committed: [false, false]))
        #expect(rules.check(zero[1], index: 1, previous: zero[0], previousCommitted: true, dpaEnd: 0)
                == rules.check(decoder: 1, decoders: zero, committed: [true, false]))
    }
}

@Suite("Commit check: the device model's one pass over the registers")
struct DeviceCommitCheckTests {
    /// `HDMDecoderDevice.check` (one pass over the register bytes, no arrays) gives the same answer as
    /// `HDMCommitRules.check` over every decoder's programming read through the catalog (the definition),
    /// for random register images: any Control bits (IW/IG reserved or not, Committed, position), addresses
    /// near 2^64, skips, random capability bits and capacities, the structure at a nonzero origin.
    @Test(arguments: [UInt64(0x13C0_0001), 0x13C0_0002, 0x13C0_0003])
    func matchesTheRulesOverEveryDecoder(seed: UInt64) {
        print("DeviceCommitCheckTests seed \(String(seed, radix: 16))")
        Self.compare(seed: seed, oneWayChance: 0)
    }

    /// The same with most decoders 1-way (IW 0, as firmware and Linux program them), so the
    /// check's 1-way pass (the DPA end as the saturating sum of skips and sizes) decides most
    /// answers and the general pass takes over wherever some decoder below is interleaved.
    @Test(arguments: [UInt64(0x13C0_1001), 0x13C0_1002, 0x13C0_1003])
    func matchesTheRulesWhenMostDecodersAreOneWay(seed: UInt64) {
        print("DeviceCommitCheckTests one-way seed \(String(seed, radix: 16))")
        Self.compare(seed: seed, oneWayChance: 7)
    }

    /// Random images as described above; each decoder's IW is cleared with probability `oneWayChance` / 8.
    static func compare(seed: UInt64, oneWayChance: UInt64) {
        var rng = SplitMix64(state: seed)
        let decoders = 8, origin = 0x40
        let granules: [UInt64] = [0, 1, 2, 3, 6, 12, 0xF_FFFF_FFFF, 0x8_0000_0000]
        for round in 0..<300 {
            var file = RegisterFile(size: origin + HDMDecoderCapability.length(decoders: decoders))
            file.place(HDMDecoderCapability.layout(decoders: decoders, endpoint: true), at: origin)
            var base: UInt64 = 0
            for n in 0..<decoders {
                let r = HDMDecoderRegisters(n)
                let size = granules.randomElement(using: &rng)! << 28
                // Mostly ascending, sometimes overlapping or wrapping.
                base = Bool.random(using: &rng) ? base &+ size : (granules.randomElement(using: &rng)! << 28)
                let skip = Bool.random(using: &rng) ? 0 : granules.randomElement(using: &rng)! << 28
                for (reg, v) in zip(r.programming, [base, base >> 32, size, size >> 32, skip, skip >> 32]) {
                    file.store(origin + reg.offset, width: 4, value: (v & 0xFFFF_FFFF) | (rng.next() & 0x0FFF_FFFF))
                }
                var control = rng.next() & 0xFFFF_FFFF
                if oneWayChance > 0, rng.next() % 8 < oneWayChance { control &= ~HDMDecoderCapability.Control.iw.mask }
                file.store(origin + r.control.offset, width: 4, value: control)
            }
            let rules = HDMCommitRules(threeSixTwelveWay: Bool.random(using: &rng), sixteenWay: Bool.random(using: &rng),
                                       a11to8: Bool.random(using: &rng), a14to12: Bool.random(using: &rng),
                                       capacity: granules.randomElement(using: &rng)! << 29)
            let device = HDMDecoderDevice(rules: rules, decoderCount: decoders, origin: origin)
            let programming = (0..<decoders).map { n in DecoderProgramming(decoder: n) { file.read(origin + $0, width: $1) } }
            let committed = (0..<decoders).map { device.isCommitted($0, in: file) }
            for n in 0..<decoders {
                #expect(device.check(n, in: file) == rules.check(decoder: n, decoders: programming, committed: committed),
                        "seed \(String(seed, radix: 16)) round \(round) decoder \(n)")
            }
        }
    }
}
