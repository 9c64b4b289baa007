import PCI
import CXL

// HPA -> DPA for the emulated device's memory: through the HDM decoders when HDM
// Decoder Enable is set, else through DVSEC Range 1.

extension State {
    // MARK: Memory decode

    /// One contiguous piece of a translated access.
    struct Chunk { let dpa: UInt64; let at: Int; let count: Int }

    /// HPA -> DPA, with how many bytes from there are contiguous in DPA space.
    func translate(hpa: UInt64, memory: DeviceMemory) throws(DeviceMemoryError) -> UInt64 {
        try decode(memory: memory)(hpa).dpa
    }

    func decode(memory: DeviceMemory) throws(DeviceMemoryError) -> (UInt64) throws(DeviceMemoryError) -> (dpa: UInt64, run: UInt64) {
        if cxlReset != nil || cxlResetHung { throw .resetInProgress }
        guard config.read(Self.control, width: 2) & Self.memEnable != 0 else { throw .memDisabled }
        guard config.read(Self.range1SizeLow, width: 4) & Self.memoryActive != 0 else { throw .memoryNotActive }
        let capacity = memory.size
        if component.read(Self.hdmGlobalControl, width: 4) & Self.hdmDecoderEnable != 0 {
            // HDM decoders (§8.2.4.20; interleave: §8.2.4.20.13 "Device Decode Logic").
            let map = EndpointDecoderMap((0..<profile.decoderCount).map {
                programming($0).endpointDecoder(committed: isCommitted($0))
                    ?? EndpointDecoder(base: 0, size: 0, committed: false)
            })
            return { (hpa: UInt64) throws(DeviceMemoryError) -> (dpa: UInt64, run: UInt64) in
                do {
                    let (i, dpa) = try map.translate(hpa: hpa)
                    let d = map.decoders[i]
                    let run = d.ways.ways == 1 ? d.base + d.size - hpa : UInt64(d.granularity.bytes) - ((hpa - d.base) % UInt64(d.granularity.bytes))
                    guard dpa < capacity else { throw DeviceMemoryError.beyondCapacity(hpa: hpa, dpa: dpa) }
                    return (dpa, min(run, capacity - dpa))
                } catch let e as TranslationError {
                    switch e {
                    case .notDecoded(let h): throw .notDecoded(hpa: h)
                    case .otherPosition(let h, let p, let d): throw .otherInterleavePosition(hpa: h, position: p, devicePosition: d)
                    case .dpaNotMapped: throw .notDecoded(hpa: hpa)
                    }
                } catch let e as DeviceMemoryError {
                    throw e
                } catch {
                    throw .notDecoded(hpa: hpa)
                }
            }
        }
        // HDM Decoder Enable 0: DVSEC Range 1 decodes (§8.1.3.8), DPA 0 at Range 1 Base.
        let r = CXLDeviceDVSEC.range1
        let dv = Layout.cxlDevice
        let base = config.read(r.baseHigh, base: dv) << 32 | (config.read(r.baseLow, base: dv) & CXLDeviceDVSEC.rangeBaseLow.mask)
        let size = config.read(r.sizeHigh, base: dv) << 32 | (config.read(r.sizeLow, base: dv) & CXLDeviceDVSEC.rangeSizeLow.mask)
        return { (hpa: UInt64) throws(DeviceMemoryError) -> (dpa: UInt64, run: UInt64) in
            guard hpa >= base, hpa - base < size else { throw .notDecoded(hpa: hpa) }
            let dpa = hpa - base
            guard dpa < capacity else { throw .beyondCapacity(hpa: hpa, dpa: dpa) }
            return (dpa, min(size - (hpa - base), capacity - dpa))
        }
    }

    /// Translate a whole access first (so a failing access changes nothing), then
    /// hand each contiguous DPA piece to `body`.
    func forEachChunk(hpa: UInt64, count: Int, memory: DeviceMemory,
                      _ body: (_ dpa: UInt64, _ at: Int, _ count: Int) -> Void) throws(DeviceMemoryError) {
        guard count > 0 else { return }
        if hpa.addingReportingOverflow(UInt64(count - 1)).overflow { throw .notDecoded(hpa: .max) }
        let t = try decode(memory: memory)
        var chunks: [Chunk] = []
        var at = 0
        while at < count {
            let (dpa, run) = try t(hpa + UInt64(at))
            let n = Int(min(UInt64(count - at), run))
            chunks.append(Chunk(dpa: dpa, at: at, count: n))
            at += n
        }
        for c in chunks { body(c.dpa, c.at, c.count) }
    }
}
