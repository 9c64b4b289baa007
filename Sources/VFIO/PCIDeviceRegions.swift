import PCI

// VFIOPCIDevice's regions: the extension points that route a region's accesses elsewhere, a BAR's region info
// (its sparse mmap around the MSI-X table, PBA and trapped ranges), and BAR access split at those ranges.
extension VFIOPCIDevice {
    // MARK: Extension points

    /// Routes accesses to `range` of `region` to `handler` and keeps that range out of the sparse mmap.
    public func trap(region: UInt32, range: Range<UInt64>, handler: any VFIORegionAccessHandler) {
        lock.lock(); defer { lock.unlock() }
        traps[region, default: []].append((range, handler))
    }

    /// Routes config accesses in `range` to `handler` (e.g. a composing device's DVSEC shadow).
    public func overrideConfig(range: Range<Int>, handler: any VFIOConfigAccessHandler) {
        lock.lock(); defer { lock.unlock() }
        // The override wins over the read-only image too.
        for i in range where i >= 0 && i < configSize { readOnlyMask.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
        configOverrides.append((range, handler))
        overrideSpan = overrideSpan.isEmpty ? range
            : min(overrideSpan.lowerBound, range.lowerBound)..<max(overrideSpan.upperBound, range.upperBound)
    }

    /// Adds a device-specific region (index ≥ `VFIOPCIRegion.count`).
    public func addRegion(_ region: VFIOExtraRegion) {
        lock.lock(); defer { lock.unlock() }
        extraRegions[region.info.index] = region
        let i = Int(region.info.index) - Int(VFIOPCIRegion.count)
        if i >= 0 && i < 64 {
            if extraHandlers.count <= i { extraHandlers += Array(repeating: nil, count: i + 1 - extraHandlers.count) }
            extraHandlers[i] = region.handler
        } else {
            otherExtras = true
        }
    }

    // MARK: Region info

    /// Ranges of a BAR that must not be mmapped: the MSI-X table and PBA (page-aligned), plus traps.
    func excludedRanges(bar: Int, size: UInt64) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        let page: UInt64 = 4096
        func pageRange(_ start: UInt64, _ len: UInt64) -> Range<UInt64> {
            let s = start & ~(page - 1)
            let e = min(size, (start + len + page - 1) & ~(page - 1))
            return s..<max(s, e)
        }
        if let m = msix {
            if m.bar == bar { out.append(pageRange(m.tableOffset, UInt64(m.count * MSIXCapability.tableEntrySize))) }
            if m.pbaBar == bar { out.append(pageRange(m.pbaOffset, UInt64((m.count + 63) / 64 * 8))) }
        }
        for (r, _) in traps[UInt32(bar)] ?? [] { out.append(pageRange(r.lowerBound, r.upperBound - r.lowerBound)) }
        return out.sorted { $0.lowerBound < $1.lowerBound }
    }

    /// The region info of BAR region `index` (`lock` held): its size and, when the function can map it, its mmap
    /// backing with the sparse areas that leave out the MSI-X table, PBA and traps (within the function's own
    /// mappable areas).
    func barRegionInfo(_ index: UInt32) -> VFIORegionInfo {
        let n = Int(index)
        guard let b = barList[n] else { return .empty(index) }
        var info = VFIORegionInfo(index: index, flags: [.read, .write], size: b.size)
        if let mf = function as? any VFIOMappablePCIFunction, let m = mf.mmapBacking(bar: n), b.kind != .io {
            info.flags.insert(.mmap)
            info.mapping = m
            let excluded = excludedRanges(bar: n, size: b.size)
            let allowed = mf.mmapAreas(bar: n)
            if !excluded.isEmpty || allowed != nil {
                var areas: [VFIOSparseArea] = []
                var cursor: UInt64 = 0
                for ex in excluded {
                    if ex.lowerBound > cursor { areas.append(VFIOSparseArea(offset: cursor, size: ex.lowerBound - cursor)) }
                    cursor = max(cursor, ex.upperBound)
                }
                if cursor < b.size { areas.append(VFIOSparseArea(offset: cursor, size: b.size - cursor)) }
                if let allowed { areas = Self.intersect(areas, allowed) }
                if areas.isEmpty {
                    info.flags.remove(.mmap)
                    info.mapping = nil
                } else {
                    info.flags.insert(.caps)
                    info.capabilities.append(VFIOSparseMMapCapability(areas: areas).capability)
                }
            }
        }
        return info
    }

    /// The parts of `a` inside some area of `b` (both sorted or not; result sorted by offset).
    static func intersect(_ a: [VFIOSparseArea], _ b: [VFIOSparseArea]) -> [VFIOSparseArea] {
        var out: [VFIOSparseArea] = []
        for x in a {
            for y in b {
                let lo = max(x.offset, y.offset)
                let hi = min(x.offset &+ x.size, y.offset &+ y.size)
                if hi > lo { out.append(VFIOSparseArea(offset: lo, size: hi - lo)) }
            }
        }
        return out.sorted { $0.offset < $1.offset }
    }

    // MARK: Region dispatch

    /// The handler of extra region `region`, if it is one (`lock` held).
    @inline(__always)
    func extraHandler(_ region: UInt32) -> (any VFIORegionAccessHandler)? {
        if otherExtras { return extraRegions[region]?.handler }
        let i = Int(region) - Int(VFIOPCIRegion.count)
        guard i >= 0, i < extraHandlers.count else { return nil }
        return extraHandlers[i]
    }

    /// The BAR number of `region` after checking [offset, offset + count) against its size (the size
    /// `regionInfo` reports; ROM and VGA have none). Without building the region info (sparse areas).
    func checkBAR(_ region: UInt32, _ offset: UInt64, _ count: Int) throws(VFIOError) -> Int {
        guard let r = VFIOPCIRegion(rawValue: region), r != .config else { throw .invalidArgument("region index \(region)") }
        let bar = Int(region)
        let size: UInt64 = bar < 6 ? barList[bar]?.size ?? 0 : 0
        let (end, o) = offset.addingReportingOverflow(UInt64(truncatingIfNeeded: count))
        guard count >= 0, !o, end <= size else {
            throw .invalidArgument("region \(region) access 0x\(String(offset, radix: 16))+\(count) beyond 0x\(String(size, radix: 16))")
        }
        return bar
    }

    // MARK: BAR access

    private enum Segment { case table(UInt64), pba(UInt64), trap(any VFIORegionAccessHandler), device }

    private func classify(bar: Int, _ off: UInt64) -> (Segment, UInt64) {
        // Indexed loops (see `override`): no iterator on the per-message path.
        let trapped = traps[UInt32(bar)] ?? []
        var i = 0
        while i < trapped.count {
            let (r, h) = trapped[i]
            if r.contains(off) { return (.trap(h), r.upperBound) }
            i += 1
        }
        if let m = msix {
            let tlen = UInt64(m.count * MSIXCapability.tableEntrySize)
            if m.bar == bar, off >= m.tableOffset, off < m.tableOffset + tlen { return (.table(off - m.tableOffset), m.tableOffset + tlen) }
            let plen = UInt64((m.count + 63) / 64 * 8)
            if m.pbaBar == bar, off >= m.pbaOffset, off < m.pbaOffset + plen { return (.pba(off - m.pbaOffset), m.pbaOffset + plen) }
        }
        // The next special range starting after `off` bounds this device segment.
        var end = UInt64.max
        i = 0
        while i < trapped.count {
            let lower = trapped[i].0.lowerBound
            if lower > off { end = min(end, lower) }
            i += 1
        }
        if let m = msix {
            if m.bar == bar && m.tableOffset > off { end = min(end, m.tableOffset) }
            if m.pbaBar == bar && m.pbaOffset > off { end = min(end, m.pbaOffset) }
        }
        return (.device, end)
    }

    /// BAR `bar` [offset, offset + buffer.count) in place: a read fills `buffer`, a write takes it (`buffer` is then
    /// only read). The range is split at the MSI-X table, the PBA and trapped ranges; the function's registers get
    /// naturally aligned accesses of at most 8 bytes. `lock` is held.
    func barAccess(bar: Int, offset: UInt64, _ buffer: UnsafeMutableRawBufferPointer, write: Bool) throws(VFIOError) {
        guard let base = buffer.baseAddress else { return }
        var off = offset
        let end = offset + UInt64(buffer.count)
        while off < end {
            let (seg, segEnd) = classify(bar: bar, off)
            let n = Int(min(end, segEnd) - off)
            let chunk = base + Int(off - offset)
            switch seg {
            case .trap(let h):
                if write { try h.write(offset: off, from: UnsafeRawBufferPointer(start: chunk, count: n)) }
                else { try h.read(offset: off, into: UnsafeMutableRawBufferPointer(start: chunk, count: n)) }
            case .table(let t):
                msixTable.withUnsafeMutableBytes { table in
                    guard let tb = table.baseAddress, Int(t) + n <= table.count else { return }
                    if write { (tb + Int(t)).copyMemory(from: chunk, byteCount: n) } else { chunk.copyMemory(from: tb + Int(t), byteCount: n) }
                }
            case .pba(let p):
                guard !write else { break }
                for i in 0..<n {
                    var byte: UInt8 = 0
                    for bit in 0..<8 {
                        let v = (Int(p) + i) * 8 + bit
                        if irqs.isPending(index: VFIOPCIIRQ.msix.rawValue, vector: v) { byte |= 1 << UInt8(bit) }
                    }
                    chunk.storeBytes(of: byte, toByteOffset: i, as: UInt8.self)
                }
            case .device:
                var o = off
                var p = 0
                while p < n {
                    let w = Self.accessWidth(o, n - p, maxWidth: 8)
                    do {
                        if write {
                            var v: UInt64 = 0
                            for i in 0..<w { v |= UInt64(chunk.load(fromByteOffset: p + i, as: UInt8.self)) << UInt64(8 * i) }
                            try function.barWrite(bar, offset: o, width: w, value: v)
                        } else {
                            let v = try function.barRead(bar, offset: o, width: w)
                            for i in 0..<w { chunk.storeBytes(of: UInt8(truncatingIfNeeded: v >> UInt64(8 * i)), toByteOffset: p + i, as: UInt8.self) }
                        }
                    } catch {
                        throw .system(errno: VFIOErrno.EIO, "BAR\(bar) \(write ? "write" : "read") 0x\(String(o, radix: 16))/\(w): \(error)")
                    }
                    o += UInt64(w)
                    p += w
                }
            }
            off += UInt64(n)
        }
    }
}
