import Foundation
import VFIO

/// One DMA mapping registered by DMA_MAP (vfio-user spec "VFIO_USER_DMA_MAP"): either shared through an fd that
/// the server mmaps, or reachable only with DMA_READ/DMA_WRITE messages.
public struct VFIOUserDMARegion: Sendable {
    public var address: UInt64
    public var size: UInt64
    public var flags: VFIOUserDMAFlags
    /// The mmap of the client's fd, or nil for message-based DMA.
    public var memory: VFIOSharedMemory?
    /// Offset of `address` within `memory` (the fd offset is mapped page-aligned).
    public var memoryOffset: Int
    public var end: UInt64 { address &+ size }
}

/// The DMA mappings of one connection, with overlap checks and lookup.
final class VFIOUserDMATable: @unchecked Sendable {
    private let lock = NSLock()
    private var regions: [VFIOUserDMARegion] = []

    var count: Int { lock.lock(); defer { lock.unlock() }; return regions.count }
    var all: [VFIOUserDMARegion] { lock.lock(); defer { lock.unlock() }; return regions }

    enum AddResult { case added, identical }

    func add(_ r: VFIOUserDMARegion, maxMaps: UInt64) throws(VFIOError) -> AddResult {
        lock.lock(); defer { lock.unlock() }
        if regions.contains(where: { $0.address == r.address && $0.size == r.size && $0.flags == r.flags }) { return .identical }
        if let o = regions.first(where: { r.address < $0.end && $0.address < r.end }) {
            throw .exists("DMA range 0x\(String(r.address, radix: 16))+0x\(String(r.size, radix: 16)) overlaps 0x\(String(o.address, radix: 16))+0x\(String(o.size, radix: 16))")
        }
        guard UInt64(regions.count) < maxMaps else { throw .system(errno: VFIOErrno.ENOSPC, "max_dma_maps \(maxMaps) reached") }
        regions.append(r)
        return .added
    }

    /// Removes every mapping inside [address, address+size) and returns them, as the kernel's type1 IOMMU unmaps
    /// (linux/vfio.h VFIO_IOMMU_UNMAP_DMA): a range holding no mapping unmaps nothing and succeeds (QEMU with a
    /// vIOMMU sends such unmaps); a range that cuts a mapping in two is refused (EINVAL), nothing removed.
    func removeInside(address: UInt64, size: UInt64) throws(VFIOError) -> [VFIOUserDMARegion] {
        lock.lock(); defer { lock.unlock() }
        // The range may end exactly at the top of the address space (QEMU unmaps [0xfef00000, 2^64) under a vIOMMU).
        let (last, o) = address.addingReportingOverflow(size &- 1)
        guard size > 0, !o else { throw .invalidArgument("DMA_UNMAP 0x\(String(address, radix: 16))+0x\(String(size, radix: 16))") }
        func lastByte(_ r: VFIOUserDMARegion) -> UInt64 { r.address &+ (r.size &- 1) }
        func inside(_ r: VFIOUserDMARegion) -> Bool { r.address >= address && lastByte(r) <= last }
        if let cut = regions.first(where: { $0.address <= last && address <= lastByte($0) && !inside($0) }) {
            throw .invalidArgument("DMA_UNMAP 0x\(String(address, radix: 16))+0x\(String(size, radix: 16)) cuts mapping 0x\(String(cut.address, radix: 16))+0x\(String(cut.size, radix: 16))")
        }
        let gone = regions.filter(inside)
        regions.removeAll(where: inside)
        return gone
    }

    /// Removes and returns every mapping.
    func takeAll() -> [VFIOUserDMARegion] {
        lock.lock(); defer { lock.unlock() }
        let all = regions
        regions.removeAll()
        return all
    }

    /// Removes the mapping that is exactly [address, address+size) (the client's own bookkeeping).
    func remove(address: UInt64, size: UInt64) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        guard let i = regions.firstIndex(where: { $0.address == address && $0.size == size }) else {
            throw .notFound("no DMA mapping 0x\(String(address, radix: 16))+0x\(String(size, radix: 16))")
        }
        regions.remove(at: i)
    }

    func removeAll() { lock.lock(); regions.removeAll(); lock.unlock() }

    /// The region fully containing [address, address+count), if any.
    func lookup(address: UInt64, count: Int) -> VFIOUserDMARegion? {
        lock.lock(); defer { lock.unlock() }
        let (end, o) = address.addingReportingOverflow(UInt64(count))
        if o { return nil }
        return regions.first { $0.address <= address && end <= $0.end }
    }
}
