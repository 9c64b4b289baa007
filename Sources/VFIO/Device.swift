/// Where a region can be mapped: a file descriptor owned by the device, and the file offset of the region start.
/// vfio-user reports `fileOffset` as `vfio_region_info.offset` and passes `fd` with SCM_RIGHTS (the receiver gets
/// its own duplicate; the device keeps ownership of `fd`).
public struct VFIORegionMapping: Sendable, Equatable {
    public var fd: Int32
    public var fileOffset: UInt64
    public init(fd: Int32, fileOffset: UInt64) { self.fd = fd; self.fileOffset = fileOffset }
}

/// One sub-region served by an ioeventfd/ioregionfd (vfio-user DEVICE_GET_REGION_IO_FDS).
public struct VFIORegionIOFD: Sendable, Equatable {
    public var offset: UInt64
    public var size: UInt64
    public var fd: Int32
    public var type: VFIORegionIOFDType
    public var flags: UInt32
    public var datamatch: UInt64
    public init(offset: UInt64, size: UInt64, fd: Int32, type: VFIORegionIOFDType = .ioeventfd, flags: UInt32 = 0, datamatch: UInt64 = 0) {
        self.offset = offset; self.size = size; self.fd = fd; self.type = type; self.flags = flags; self.datamatch = datamatch
    }
}

/// Access to the memory of whoever owns the device (the guest), for device-initiated DMA. The transport provides
/// it: vfio-user serves it from client-shared fds or with DMA_READ/DMA_WRITE messages.
public protocol VFIODMAMemory: AnyObject, Sendable {
    /// Reads `count` bytes at IO virtual address `address`.
    func read(address: UInt64, count: Int) throws(VFIOError) -> [UInt8]
    /// Writes `data` at IO virtual address `address`.
    func write(address: UInt64, data: [UInt8]) throws(VFIOError)
    /// Reads `buffer.count` bytes at `address` into caller memory (no array); the default goes through
    /// `read(address:count:)`.
    func read(address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError)
    /// Writes `buffer` at `address` from caller memory; the default goes through `write(address:data:)`.
    func write(address: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError)
    /// Scatter-gather read: each segment's bytes at its guest address into its buffer, as a device with several
    /// reads outstanding does. A transport may have all of them in flight at once (vfio-user sends every DMA_READ
    /// before awaiting the first reply); the default reads them one after the other.
    func read(segments: [VFIODMASegment]) throws(VFIOError)
    /// Scatter-gather write: each segment's buffer to its guest address (in order; the default one by one).
    func write(segments: [VFIODMASegment]) throws(VFIOError)
}

/// One piece of a scatter-gather DMA: `buffer.count` bytes at guest (IO virtual) address `address`, to or from
/// `buffer` (device memory the caller owns for the duration of the call).
public struct VFIODMASegment: @unchecked Sendable {
    public var address: UInt64
    public var buffer: UnsafeMutableRawBufferPointer
    public init(address: UInt64, buffer: UnsafeMutableRawBufferPointer) {
        self.address = address
        self.buffer = buffer
    }
}

extension VFIODMAMemory {
    public func read(segments: [VFIODMASegment]) throws(VFIOError) {
        for s in segments { try read(address: s.address, into: s.buffer) }
    }
    public func write(segments: [VFIODMASegment]) throws(VFIOError) {
        for s in segments { try write(address: s.address, from: UnsafeRawBufferPointer(s.buffer)) }
    }
    public func read(address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        try InPlaceBytes.copy(read(address: address, count: buffer.count), into: buffer, what: "DMA read")
    }
    public func write(address: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        try write(address: address, data: Array(buffer))
    }
}

/// A VFIO device, independent of the transport (the user-space equivalent of `vfio_device_ops` + vfio-pci-core's
/// ioctl surface). A vfio-user server or any other front end drives it.
///
/// Composition: a device wrapping another (e.g. a CXL device around `VFIOPCIDevice`) forwards what it does not
/// override, can add regions beyond `VFIOPCIRegion.count`, extra capabilities to `regionInfo`, and device-info
/// capabilities to `deviceInfo()`.
public protocol VFIODevice: AnyObject, Sendable {
    func deviceInfo() -> VFIODeviceInfo
    func regionInfo(_ index: UInt32) throws(VFIOError) -> VFIORegionInfo
    /// The ioeventfds of a region; empty means none (the default).
    func regionIOFDs(_ index: UInt32) throws(VFIOError) -> [VFIORegionIOFD]
    func irqInfo(_ index: UInt32) throws(VFIOError) -> VFIOIRQInfo
    func setIRQs(_ request: VFIOIRQSet) throws(VFIOError)
    /// Reads `count` bytes at `offset` of region `region`; bounds are the device's to check.
    func read(region: UInt32, offset: UInt64, count: Int) throws(VFIOError) -> [UInt8]
    func write(region: UInt32, offset: UInt64, data: [UInt8]) throws(VFIOError)
    /// Device reset (`VFIO_DEVICE_RESET`).
    func reset() throws(VFIOError)
    /// `VFIO_DEVICE_FEATURE`: `flags` carries the feature index and GET/SET/PROBE; returns the reply data for GET.
    /// The default reports every feature unsupported.
    func feature(flags: UInt32, data: [UInt8]) throws(VFIOError) -> [UInt8]
    /// The transport attaches guest-memory access when a client connects (nil when it goes away).
    func attachDMA(_ memory: (any VFIODMAMemory)?)
    /// The client went away: drop its eventfds and anything tied to the connection; keep device state.
    func clientDisconnected()
    /// The transport registered client memory for device DMA: IO virtual addresses [iova, iova+size) are at
    /// `address` in this process (nil when the client shared no fd: DMA then goes by messages). A device backed by
    /// real hardware maps it into its IOMMU domain here; the default does nothing.
    func dmaMapped(iova: UInt64, size: UInt64, address: UnsafeMutableRawPointer?, writable: Bool) throws(VFIOError)
    /// The mapping [iova, iova+size) goes away (DMA_UNMAP, disconnect); called before its memory is unmapped.
    func dmaUnmapped(iova: UInt64, size: UInt64)
}

/// A device that reads into and writes from caller memory, so a transport can serve REGION_READ and REGION_WRITE
/// without an array per access (vfio-user's server reads straight into its send buffer and writes straight from its
/// receive buffer). Optional: a transport falls back to `VFIODevice.read`/`write` for other devices.
public protocol VFIODirectAccessDevice: VFIODevice {
    /// Fills `buffer` (its count is the access size) from region `region` at `offset`. Bounds are the device's to
    /// check, as for `read(region:offset:count:)`.
    func read(region: UInt32, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError)
    /// Writes `buffer` to region `region` at `offset`. `buffer` is valid only during the call.
    func write(region: UInt32, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError)
}

extension VFIODevice {
    public func regionIOFDs(_ index: UInt32) throws(VFIOError) -> [VFIORegionIOFD] { [] }
    public func feature(flags: UInt32, data: [UInt8]) throws(VFIOError) -> [UInt8] {
        throw .notSupported("device feature \(flags & VFIODeviceFeatureFlags.featureMask)")
    }
    public func attachDMA(_ memory: (any VFIODMAMemory)?) {}
    public func clientDisconnected() {}
    public func dmaMapped(iova: UInt64, size: UInt64, address: UnsafeMutableRawPointer?, writable: Bool) throws(VFIOError) {}
    public func dmaUnmapped(iova: UInt64, size: UInt64) {}
}
