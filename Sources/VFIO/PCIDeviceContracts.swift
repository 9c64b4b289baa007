import Foundation
import PCI

// What VFIOPCIDevice asks of the function it exposes (mappable BARs, forwarded IRQs, DMA mapping) and of the
// handlers composing devices register with it (trapped region ranges, overridden config ranges, extra regions).

/// A PCI function whose BARs are backed by memory the transport can hand out for mmap (a memfd, a sysfs
/// `resourceN` file). `VFIOPCIDevice` reports such BARs with `VFIO_REGION_INFO_FLAG_MMAP`.
public protocol VFIOMappablePCIFunction: PCIFunction {
    /// The fd and file offset backing BAR `bar`, or nil when the BAR must be trapped.
    func mmapBacking(bar: Int) -> VFIORegionMapping?
    /// The parts of BAR `bar` that may be mapped (the kernel's sparse areas), or nil for the whole BAR (default).
    func mmapAreas(bar: Int) -> [VFIOSparseArea]?
}

extension VFIOMappablePCIFunction {
    public func mmapAreas(bar: Int) -> [VFIOSparseArea]? { nil }
}

/// A function whose interrupts another layer delivers straight to eventfds (a device the kernel's vfio-pci owns):
/// `VFIOPCIDevice` hands every SET_IRQS on to it instead of raising vectors itself, so the client's eventfds are
/// signalled by the kernel.
public protocol VFIOIRQForwardingFunction: PCIFunction {
    func forwardIRQs(_ request: VFIOIRQSet) throws(VFIOError)
    /// Disables every forwarded interrupt (the client went away).
    func releaseForwardedIRQs()
}

/// A function that does DMA through an IOMMU this process programs (a kernel VFIO device): client memory
/// registered for DMA is mapped at the client's IO virtual addresses.
public protocol VFIODMAMappingFunction: PCIFunction {
    func mapDMA(iova: UInt64, size: UInt64, address: UnsafeMutableRawPointer, writable: Bool) throws(VFIOError)
    func unmapDMA(iova: UInt64, size: UInt64)
}

/// Handles accesses to a trapped range of a region (offsets are relative to the region start).
public protocol VFIORegionAccessHandler: AnyObject, Sendable {
    func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8]
    func write(offset: UInt64, data: [UInt8]) throws(VFIOError)
    /// Reads into caller memory (`buffer.count` bytes); the default goes through `read(offset:count:)`.
    func read(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError)
    /// Writes from caller memory; the default goes through `write(offset:data:)`.
    func write(offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError)
}

extension VFIORegionAccessHandler {
    public func read(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        try InPlaceBytes.copy(read(offset: offset, count: buffer.count), into: buffer, what: "read")
    }
    public func write(offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        try write(offset: offset, data: Array(buffer))
    }
}

/// Handles config-space accesses in an overridden range (offsets are absolute config offsets; accesses are
/// naturally aligned 1/2/4 bytes, never straddling the range).
public protocol VFIOConfigAccessHandler: AnyObject, Sendable {
    func configRead(_ offset: Int, width: Int) throws(VFIOError) -> UInt32
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(VFIOError)
}

/// A device-specific region added by a composing device (index ≥ `VFIOPCIRegion.count`).
public struct VFIOExtraRegion: Sendable {
    public var info: VFIORegionInfo
    public var handler: any VFIORegionAccessHandler
    public init(info: VFIORegionInfo, handler: any VFIORegionAccessHandler) { self.info = info; self.handler = handler }
}
