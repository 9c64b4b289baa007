import Testing
@testable import CXL

@Suite("Interleave encodings and HPA <-> DPA translation")
struct InterleaveTests {
    /// CXL 3.1 §8.2.4.20.1 Decoder Count table.
    @Test(arguments: [
        (0x0, 1), (0x1, 2), (0x2, 4), (0x3, 6), (0x4, 8), (0x5, 10), (0x6, 12), (0x7, 14),
        (0x8, 16), (0x9, 20), (0xA, 24), (0xB, 28), (0xC, 32),
    ])
    func decoderCountEncoding(encoding: Int, decoders: Int) {
        #expect(HDMDecoderCountEncoding.decoders(forEncoding: UInt8(encoding)) == decoders)
        #expect(HDMDecoderCountEncoding.encoding(forDecoders: decoders) == UInt8(encoding))
    }

    @Test func reservedDecoderCountEncodings() {
        for e in 0xD...0xF { #expect(HDMDecoderCountEncoding.decoders(forEncoding: UInt8(e)) == nil) }
        for n in [0, 3, 5, 18, 22, 33] { #expect(HDMDecoderCountEncoding.encoding(forDecoders: n) == nil) }
    }

    /// §8.2.4.20.7 IW table.
    @Test(arguments: [(0, 1), (1, 2), (2, 4), (3, 8), (4, 16), (8, 3), (9, 6), (10, 12)])
    func interleaveWaysEncoding(encoding: Int, ways: Int) {
        #expect(InterleaveWays(encoding: UInt8(encoding))?.ways == ways)
        #expect(InterleaveWays(ways: ways)?.encoding == UInt8(encoding))
    }

    @Test func reservedWaysEncodings() {
        for e in [5, 6, 7, 11, 12, 13, 14, 15] { #expect(InterleaveWays(encoding: UInt8(e)) == nil) }
    }

    /// §8.2.4.20.7 IG table: 256 B << encoding, 0...6.
    @Test(arguments: [(0, 256), (1, 512), (2, 1024), (3, 2048), (4, 4096), (5, 8192), (6, 16384)])
    func granularityEncoding(encoding: Int, bytes: Int) {
        #expect(InterleaveGranularity(encoding: UInt8(encoding))?.bytes == bytes)
        #expect(InterleaveGranularity(bytes: bytes)?.encoding == UInt8(encoding))
        #expect(InterleaveGranularity(encoding: 7) == nil)
    }

    /// The reference's worked checks (cxl-registers.md §6).
    @Test func workedExamples() {
        let threeWay = InterleaveWays(ways: 3)!, g256 = InterleaveGranularity(bytes: 256)!
        var r = InterleaveMath.split(offset: 0x300, ways: threeWay, granularity: g256)
        #expect(r.position == 0 && r.dpaOffset == 0x100)
        r = InterleaveMath.split(offset: 0x500, ways: threeWay, granularity: g256)
        #expect(r.position == 2 && r.dpaOffset == 0x100)
        r = InterleaveMath.split(offset: 0x1C40, ways: InterleaveWays(ways: 2)!, granularity: InterleaveGranularity(bytes: 1024)!)
        #expect(r.position == 1 && r.dpaOffset == 0xC40)
    }

    /// Every IW x IG combination: position = chunk mod N, DPA offset = chunk div N,
    /// and join inverts split, across several rows of the interleave.
    @Test(arguments: InterleaveWays.all)
    func roundTripEveryGranularity(ways: InterleaveWays) {
        for g in InterleaveGranularity.all {
            let n = UInt64(ways.ways), s = UInt64(g.shift)
            for chunk in stride(from: UInt64(0), to: n * 7 + 3, by: 1) {
                for low in [UInt64(0), 1, UInt64(g.bytes) - 1] {
                    let off = (chunk << s) | low
                    let (p, dpa) = InterleaveMath.split(offset: off, ways: ways, granularity: g)
                    #expect(UInt64(p) == chunk % n)
                    #expect(dpa == ((chunk / n) << s) | low)
                    #expect(InterleaveMath.join(position: p, dpaOffset: dpa, ways: ways, granularity: g) == off)
                }
            }
        }
    }

    /// Multi-decoder allocation: decoder n's DPA starts after lower decoders' skip + size/ways.
    @Test func multiDecoderAllocationWithSkip() throws {
        let gib: UInt64 = 1 << 30
        let map = EndpointDecoderMap([
            EndpointDecoder(base: 4 * gib, size: 2 * gib, ways: InterleaveWays(ways: 2)!, position: 1),
            EndpointDecoder(base: 8 * gib, size: gib, dpaSkip: hdmGranule),
        ])
        #expect(map.dpaBases == [0, gib + hdmGranule])
        // Chunk 1 of decoder 0 belongs to position 1 -> DPA 0.
        #expect(try map.translate(hpa: 4 * gib + 256).dpa == 0)
        #expect(throws: TranslationError.otherPosition(hpa: 4 * gib, position: 0, devicePosition: 1)) {
            try map.translate(hpa: 4 * gib)
        }
        let t = try map.translate(hpa: 8 * gib + 0x1234)
        #expect(t.decoder == 1 && t.dpa == gib + hdmGranule + 0x1234)
        #expect(try map.hpa(forDPA: gib + hdmGranule + 0x1234) == 8 * gib + 0x1234)
        #expect(throws: TranslationError.notDecoded(hpa: 0)) { try map.translate(hpa: 0) }
        #expect(throws: TranslationError.dpaNotMapped(dpa: gib)) { try map.hpa(forDPA: gib) }
    }

    @Test func uncommittedDecodersDecodeNothing() {
        let map = EndpointDecoderMap([EndpointDecoder(base: 0, size: hdmGranule, committed: false)])
        #expect(throws: TranslationError.notDecoded(hpa: 0x10)) { try map.translate(hpa: 0x10) }
    }

    @Test func hugeSkipsDoNotOverflow() {
        let map = EndpointDecoderMap([
            EndpointDecoder(base: 0, size: hdmGranule, dpaSkip: .max - 5),
            EndpointDecoder(base: hdmGranule, size: hdmGranule, dpaSkip: .max),
        ])
        #expect(map.dpaBases[1] == .max)
    }
}
