import CXL
import PCI
import VFIO

/// Device memory a function exposes through one of its memory BARs, as accelerators expose their local memory
/// through a prefetchable BAR: DPA 0 at BAR offset 0. This is how `cxlkit serve --device vfio:BDF` serves a real
/// device's CXL memory region (region 9): a client's mmap is the BAR's own backing (the kernel VFIO device fd at the
/// BAR region's offset, handed over with SCM_RIGHTS), and region reads and writes go through the function's BAR
/// accesses (for a kernel device: its mmap of the BAR, else pread/pwrite of the region).
///
/// The HDM range itself (host physical memory behind the CXL host bridge's window) is not reachable this way: that
/// needs the kernel's vfio-cxl region or a DAX device; a device whose memory is only in the HDM range is served as
/// plain PCI, the reason said.
public final class BARDeviceMemory: CXLDeviceMemory, @unchecked Sendable {
    public let function: any VFIOMappablePCIFunction
    public let bar: Int
    public let memoryFD: Int32
    public let memoryFileOffset: UInt64
    public let memorySize: UInt64

    /// The first `size` bytes of BAR `bar`. The BAR must be a memory BAR, mmappable (a backing fd) and, when it has
    /// sparse areas, mappable over the whole of `[0, size)`.
    public init(function: any VFIOMappablePCIFunction, bar: Int, size: UInt64) throws(VFIOCXLError) {
        guard let b = function.bars.first(where: { $0.index == bar }) else { throw .notCXL("no device memory: BAR \(bar) is not implemented") }
        guard b.kind != .io else { throw .notCXL("no device memory: BAR \(bar) is an I/O BAR") }
        guard size > 0 else { throw .notCXL("no device memory: the DVSEC reports no memory (Range 1 and 2 sizes are 0)") }
        guard size <= b.size else {
            throw .notCXL("no device memory: BAR \(bar) (0x\(String(b.size, radix: 16)) bytes) is smaller than the DVSEC's memory (0x\(String(size, radix: 16)))")
        }
        guard let m = function.mmapBacking(bar: bar) else { throw .notCXL("no device memory: BAR \(bar) cannot be mapped") }
        if let areas = function.mmapAreas(bar: bar) {
            var cursor: UInt64 = 0
            for a in areas.sorted(by: { $0.offset < $1.offset }) where a.offset <= cursor { cursor = max(cursor, a.offset + a.size) }
            guard cursor >= size else {
                throw .notCXL("no device memory: BAR \(bar) is mappable only up to 0x\(String(cursor, radix: 16)) of 0x\(String(size, radix: 16)) (sparse mmap)")
            }
        }
        self.function = function
        self.bar = bar
        memoryFD = m.fd
        memoryFileOffset = m.fileOffset
        memorySize = size
    }

    /// The device's memory size: DVSEC CXL Range 1 plus Range 2 Size (CXL 3.1 §8.1.3.8).
    public static func dvsecMemorySize(_ function: any PCIFunction, layout: CXLPassthroughLayout) throws(VFIOCXLError) -> UInt64 {
        let config: ConfigSpace
        do { config = try function.configSnapshot() } catch { throw .access("config space: \(error)") }
        let ranges = (1...2).map { DeviceDVSECRange(n: $0, config: config, dvsecOffset: layout.dvsecOffset) }
        return ranges[0].size &+ (CXLDeviceDVSEC.hdmCount.extract(layout.capability) >= 2 ? ranges[1].size : 0)
    }

    /// The device memory of `function` behind `bar`, or, without `bar`, behind the one BAR that can hold it: a
    /// prefetchable memory BAR other than the component registers' BAR, mmappable, at least as large as the DVSEC's
    /// memory. None or several candidates: `.notCXL` with the reason (name one with `--memory-bar`).
    public static func find(in function: any VFIOMappablePCIFunction, layout: CXLPassthroughLayout, bar: Int?) throws(VFIOCXLError) -> BARDeviceMemory {
        let size = try dvsecMemorySize(function, layout: layout)
        if let bar { return try BARDeviceMemory(function: function, bar: bar, size: size) }
        let candidates = function.bars.filter { b in
            b.kind != .io && b.prefetchable && b.index != layout.componentBAR && b.size >= size && size > 0 && function.mmapBacking(bar: b.index) != nil
        }
        guard candidates.count == 1 else {
            if candidates.isEmpty {
                throw .notCXL("no device memory: no mappable prefetchable BAR of at least 0x\(String(size, radix: 16)) bytes (the DVSEC's memory) besides the component registers' BAR \(layout.componentBAR); the HDM range alone is host memory this server cannot map")
            }
            throw .notCXL("no device memory: BARs \(candidates.map { "\($0.index)" }.joined(separator: ", ")) could each hold it; name one with --memory-bar")
        }
        return try BARDeviceMemory(function: function, bar: candidates[0].index, size: size)
    }

    /// Naturally aligned pieces of at most 8 bytes, as a CPU's loads and stores to the BAR would be.
    private static func pieces(_ offset: UInt64, _ count: Int) -> [(offset: UInt64, width: Int)] {
        var out: [(UInt64, Int)] = []
        var o = offset, left = count
        while left > 0 {
            var w = 8
            while w > 1 && (o % UInt64(w) != 0 || w > left) { w /= 2 }
            out.append((o, w))
            o += UInt64(w); left -= w
        }
        return out
    }

    public func readMemory(at offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        guard count >= 0, offset <= memorySize, UInt64(count) <= memorySize - offset else {
            throw .outOfRange("device memory 0x\(String(offset, radix: 16))+\(count) past 0x\(String(memorySize, radix: 16))")
        }
        var out = [UInt8](repeating: 0, count: count)
        for (o, w) in Self.pieces(offset, count) {
            LittleEndian.store(try function.barRead(bar, offset: o, width: w), width: w, into: &out, at: Int(o - offset))
        }
        return out
    }

    public func writeMemory(at offset: UInt64, _ data: [UInt8]) throws(PCIError) {
        guard offset <= memorySize, UInt64(data.count) <= memorySize - offset else {
            throw .outOfRange("device memory 0x\(String(offset, radix: 16))+\(data.count) past 0x\(String(memorySize, radix: 16))")
        }
        for (o, w) in Self.pieces(offset, data.count) {
            try function.barWrite(bar, offset: o, width: w, value: LittleEndian.load(data, at: Int(o - offset), width: w) ?? 0)
        }
    }
}
