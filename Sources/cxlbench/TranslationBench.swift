import CXL

/// Figure 4: HPA -> DPA translations per second for each interleave ways value.
///
/// The decoder map holds two committed decoders (as a Type-2 device with a
/// volatile and a persistent partition would) and the addresses hit the second,
/// so the lookup walks past a decoder as it would in practice. The baseline is the
/// bare arithmetic (`InterleaveMath.split`) on the right decoder: no lookup, no
/// position check, no errors — the floor any translator pays.
func translationBench(_ ctx: BenchContext) -> [Figure] {
    let gib: UInt64 = 1 << 30
    var figures: [Figure] = []
    let n = ctx.iterations(50_000_000)
    for ways in [1, 2, 4, 8, 16, 3, 6, 12] {
        let w = InterleaveWays(ways: ways)!
        let g = InterleaveGranularity(bytes: 4096)!
        let map = EndpointDecoderMap([
            EndpointDecoder(base: 0x10_0000_0000, size: gib),
            EndpointDecoder(base: 0x20_0000_0000, size: UInt64(ways) * gib, ways: w, granularity: g, position: ways - 1),
        ])
        // Addresses this device owns (position ways-1), spread over the decoder.
        var addresses: [UInt64] = []
        var seed: UInt64 = 0x1234_5678
        for _ in 0..<4096 {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let dpaOffset = (seed >> 20) % gib
            addresses.append(0x20_0000_0000 + InterleaveMath.join(position: ways - 1, dpaOffset: dpaOffset, ways: w, granularity: g))
        }
        let measured = addresses.withUnsafeBufferPointer { buf -> (Double, Double) in
            var sum: UInt64 = 0
            var t0 = nowNanoseconds()
            for i in 0..<n {
                let hpa = buf[i & 4095]
                do { sum &+= try map.translate(hpa: hpa).dpa } catch { sum &+= 1 }
            }
            let translate = Double(nowNanoseconds() - t0)
            blackHole(sum)
            let decoderBase: UInt64 = 0x20_0000_0000
            t0 = nowNanoseconds()
            for i in 0..<n { sum &+= InterleaveMath.split(offset: buf[i & 4095] &- decoderBase, ways: w, granularity: g).dpaOffset }
            let base = Double(nowNanoseconds() - t0)
            blackHole(sum)
            return (translate, base)
        }
        let rate = Double(n) / (measured.0 / 1e9)
        let baseRate = Double(n) / (measured.1 / 1e9)
        figures.append(Figure(group: "translation", name: "HPA->DPA \(ways)-way", unit: "ops/s", value: rate,
                              baselineName: "bare interleave arithmetic", baseline: baseRate,
                              goal: ">= 200 M/s", met: rate >= 200e6))
    }
    return figures
}
