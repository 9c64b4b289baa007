// The VFIO argument structures that both transports carry with the same layout (linux/vfio.h; the vfio-user spec
// reuses them as message payloads): the kernel backend passes them to ioctls, vfio-user sends them on the socket.
// Each is encoded and decoded here, once: little endian, field by field; decoding never traps (a missing field
// reads 0: callers check the length they need and say so in their own terms). `KernelBackendTests` checks the
// lengths and offsets against the C declarations.

private func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(ByteReader.le(b, at: o, size: 4) ?? 0) }
private func u64(_ b: [UInt8], _ o: Int) -> UInt64 { ByteReader.le(b, at: o, size: 8) ?? 0 }

/// A VFIO argument struct that is its fixed part only, and decodes from bytes without a chain to validate.
public protocol VFIOFixedSizeStruct {
    /// The fixed part's size in bytes.
    static var size: Int { get }
    /// The fields of `bytes` (a missing field reads 0).
    init(decoding bytes: [UInt8])
}

/// `struct vfio_device_info`: `argsz, flags, num_regions, num_irqs` (16 bytes); with a capability chain,
/// `cap_offset u32, pad u32` follow (24 bytes; 20 in Linux 6.1's header, which has no pad) and then the chain.
public struct VFIODeviceInfoStruct: Sendable, Equatable {
    public static let size = 16
    public static let sizeWithCaps = 24
    public var argsz: UInt32
    public var flags: UInt32
    public var numRegions: UInt32
    public var numIRQs: UInt32
    public var capOffset: UInt32
    public var capabilities: [VFIOCapability]
    public init(argsz: UInt32, flags: UInt32 = 0, numRegions: UInt32 = 0, numIRQs: UInt32 = 0, capOffset: UInt32 = 0,
                capabilities: [VFIOCapability] = []) {
        self.argsz = argsz; self.flags = flags; self.numRegions = numRegions; self.numIRQs = numIRQs
        self.capOffset = capOffset; self.capabilities = capabilities
    }
    /// The fixed part; `cap_offset`, pad and the chain (placed at `sizeWithCaps`) when there is one.
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags); w.u32(numRegions); w.u32(numIRQs)
        if capOffset != 0 || !capabilities.isEmpty {
            w.u32(capOffset); w.u32(0)
            w.append(VFIOCapabilityChain.encode(capabilities, baseOffset: Self.sizeWithCaps))
        }
        return w.bytes
    }
    /// The fields of `bytes` and, when `VFIO_DEVICE_FLAGS_CAPS` is set, `bytes` holds the `fixedSize`-byte structure
    /// and `cap_offset` is not 0, the capability chain (validated: `VFIOCapabilityChain.decode`, after the fixed part).
    public init(decoding bytes: [UInt8], fixedSize: Int = sizeWithCaps) throws(VFIOError) {
        self.init(argsz: u32(bytes, 0), flags: u32(bytes, 4), numRegions: u32(bytes, 8), numIRQs: u32(bytes, 12))
        if flags & VFIODeviceFlags.caps.rawValue != 0, bytes.count >= fixedSize {
            capOffset = u32(bytes, 16)
            if capOffset != 0 { capabilities = try VFIOCapabilityChain.decode(bytes, firstOffset: capOffset, minOffset: fixedSize) }
        }
    }
}

/// `struct vfio_region_info`: `argsz, flags, index, cap_offset, size u64, offset u64` (32 bytes), then the capability
/// chain.
public struct VFIORegionInfoStruct: Sendable, Equatable {
    public static let size = 32
    public var argsz: UInt32
    public var flags: UInt32
    public var index: UInt32
    public var capOffset: UInt32
    public var regionSize: UInt64
    public var offset: UInt64
    public var capabilities: [VFIOCapability]
    public init(argsz: UInt32, flags: UInt32 = 0, index: UInt32, capOffset: UInt32 = 0, regionSize: UInt64 = 0, offset: UInt64 = 0,
                capabilities: [VFIOCapability] = []) {
        self.argsz = argsz; self.flags = flags; self.index = index; self.capOffset = capOffset
        self.regionSize = regionSize; self.offset = offset; self.capabilities = capabilities
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags); w.u32(index); w.u32(capOffset); w.u64(regionSize); w.u64(offset)
        if !capabilities.isEmpty { w.append(VFIOCapabilityChain.encode(capabilities, baseOffset: Int(capOffset))) }
        return w.bytes
    }
    /// The fields of `bytes` and, when `VFIO_REGION_INFO_FLAG_CAPS` is set and `cap_offset` is not 0, the capability
    /// chain (validated: `cap_offset` in [32, count), every `next` advancing and inside, at most
    /// `VFIOCapabilityChain.maxCapabilities`).
    public init(decoding bytes: [UInt8]) throws(VFIOError) {
        self.init(argsz: u32(bytes, 0), flags: u32(bytes, 4), index: u32(bytes, 8), capOffset: u32(bytes, 12),
                  regionSize: u64(bytes, 16), offset: u64(bytes, 24))
        if flags & VFIORegionFlags.caps.rawValue != 0 && capOffset != 0 {
            capabilities = try VFIOCapabilityChain.decode(bytes, firstOffset: capOffset, minOffset: Self.size)
        }
    }
}

/// `struct vfio_irq_info`: `argsz, flags, index, count` (16 bytes).
public struct VFIOIRQInfoStruct: VFIOFixedSizeStruct, Sendable, Equatable {
    public static let size = 16
    public var argsz: UInt32
    public var flags: UInt32
    public var index: UInt32
    public var count: UInt32
    public init(argsz: UInt32 = UInt32(Self.size), flags: UInt32 = 0, index: UInt32, count: UInt32 = 0) {
        self.argsz = argsz; self.flags = flags; self.index = index; self.count = count
    }
    public func encode() -> [UInt8] { var w = ByteWriter(); w.u32(argsz); w.u32(flags); w.u32(index); w.u32(count); return w.bytes }
    public init(decoding bytes: [UInt8]) {
        self.init(argsz: u32(bytes, 0), flags: u32(bytes, 4), index: u32(bytes, 8), count: u32(bytes, 12))
    }
}

/// `struct vfio_iommu_type1_dma_unmap`: `argsz, flags, iova u64, size u64` (24 bytes). Flag `all` with iova = size =
/// 0 unmaps everything (`VFIO_DMA_UNMAP_FLAG_ALL`).
public struct VFIODMAUnmapStruct: VFIOFixedSizeStruct, Sendable, Equatable {
    public static let size = 24
    /// `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP`.
    public static let flagGetDirtyBitmap: UInt32 = 1 << 0
    /// `VFIO_DMA_UNMAP_FLAG_ALL`.
    public static let flagAll: UInt32 = 1 << 1
    public var argsz: UInt32
    public var flags: UInt32
    public var address: UInt64
    public var size: UInt64
    public init(flags: UInt32 = 0, address: UInt64, size: UInt64, argsz: UInt32 = UInt32(Self.size)) {
        self.argsz = argsz; self.flags = flags; self.address = address; self.size = size
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags); w.u64(address); w.u64(size); return w.bytes
    }
    public init(decoding bytes: [UInt8]) {
        self.init(flags: u32(bytes, 4), address: u64(bytes, 8), size: u64(bytes, 16), argsz: u32(bytes, 0))
    }
}

/// `struct vfio_irq_set`: `argsz, flags, index, start, count` (20 bytes), then the data: DATA_BOOL one byte per
/// vector, DATA_EVENTFD one s32 per vector (the kernel's ioctl; vfio-user passes eventfds as SCM_RIGHTS), DATA_NONE
/// nothing.
public struct VFIOIRQSetStruct: Sendable, Equatable {
    public static let size = 20
    public var argsz: UInt32
    public var flags: VFIOIRQSetFlags
    public var index: UInt32
    public var start: UInt32
    public var count: UInt32
    /// The bytes after the fixed part.
    public var data: [UInt8]
    /// `argsz` nil: the fixed part and the data.
    public init(flags: VFIOIRQSetFlags, index: UInt32, start: UInt32, count: UInt32, data: [UInt8] = [], argsz: UInt32? = nil) {
        self.flags = flags; self.index = index; self.start = start; self.count = count; self.data = data
        self.argsz = argsz ?? UInt32(Self.size + data.count)
    }
    /// DATA_BOOL's data: one byte per flag.
    public init(flags: VFIOIRQSetFlags, index: UInt32, start: UInt32, count: UInt32, bools: [Bool], argsz: UInt32? = nil) {
        self.init(flags: flags, index: index, start: start, count: count, data: bools.map { $0 ? 1 : 0 }, argsz: argsz)
    }
    /// DATA_EVENTFD's data as the kernel takes it: one s32 per vector (-1 de-assigns).
    public init(flags: VFIOIRQSetFlags, index: UInt32, start: UInt32, count: UInt32, eventfds: [Int32]) {
        var w = ByteWriter()
        for fd in eventfds { w.u32(UInt32(bitPattern: fd)) }
        self.init(flags: flags, index: index, start: start, count: count, data: w.bytes)
    }
    /// The data read as DATA_BOOL flags (any non-zero byte is true).
    public var bools: [Bool] {
        get { data.map { $0 != 0 } }
        set { data = newValue.map { $0 ? 1 : 0 } }
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: Self.size + data.count)
        w.u32(argsz); w.u32(flags.rawValue); w.u32(index); w.u32(start); w.u32(count); w.append(data)
        return w.bytes
    }
    /// The fixed part of `bytes` and everything after it as the data (a missing field reads 0).
    public init(decoding bytes: [UInt8]) {
        self.init(flags: VFIOIRQSetFlags(rawValue: u32(bytes, 4)), index: u32(bytes, 8), start: u32(bytes, 12), count: u32(bytes, 16),
                  data: Array(bytes.dropFirst(Self.size)), argsz: u32(bytes, 0))
    }
}

extension VFIOIRQAction {
    /// The `VFIO_IRQ_SET_ACTION_*` flag of this action.
    public var setFlag: VFIOIRQSetFlags {
        switch self {
        case .mask: return .actionMask
        case .unmask: return .actionUnmask
        case .trigger: return .actionTrigger
        }
    }
    /// The action a SET_IRQS `flags` word names: MASK, UNMASK, else TRIGGER.
    public init(setFlags flags: VFIOIRQSetFlags) {
        self = flags.contains(.actionMask) ? .mask : flags.contains(.actionUnmask) ? .unmask : .trigger
    }
}
