// The VFIO argument structures (linux/vfio.h), one type each: what a device reports (`VFIODevice.deviceInfo()`,
// `regionInfo`, `irqInfo`) and takes (`setIRQs`), and what both transports carry with the same layout (the vfio-user
// spec reuses them as message payloads): the kernel backend passes them to ioctls, vfio-user sends them on the
// socket. Flags are typed. Each is encoded and decoded here, once: little endian, field by field; decoding never traps
// (a missing field reads 0: callers check the length they need and say so in their own terms). `KernelBackendTests`
// checks the lengths and offsets against the C declarations.

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
/// A device reports its flags, counts and capabilities (`argsz` and `cap_offset` are the transport's: the size the
/// caller's buffer has or the answer needs, and where the chain starts in the encoded bytes, 0 when it is not there).
public struct VFIODeviceInfo: Sendable, Equatable {
    public static let size = 16
    public static let sizeWithCaps = 24
    public var argsz: UInt32
    public var flags: VFIODeviceFlags
    public var numRegions: UInt32
    public var numIRQs: UInt32
    public var capOffset: UInt32
    public var capabilities: [VFIOCapability]
    /// A request is `argsz` alone (the caller's buffer size).
    public init(argsz: UInt32 = UInt32(Self.size), flags: VFIODeviceFlags = [], numRegions: UInt32 = 0, numIRQs: UInt32 = 0,
                capOffset: UInt32 = 0, capabilities: [VFIOCapability] = []) {
        self.argsz = argsz; self.flags = flags; self.numRegions = numRegions; self.numIRQs = numIRQs
        self.capOffset = capOffset; self.capabilities = capabilities
    }
    /// The fixed part; `cap_offset`, pad and the chain when there is one. The chain goes at `sizeWithCaps`, so that
    /// is the `cap_offset` written with it (a device-described info has none of its own); without a chain,
    /// `capOffset` as given.
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags.rawValue); w.u32(numRegions); w.u32(numIRQs)
        if capOffset != 0 || !capabilities.isEmpty {
            w.u32(capabilities.isEmpty ? capOffset : UInt32(Self.sizeWithCaps)); w.u32(0)
            w.append(VFIOCapabilityChain.encode(capabilities, baseOffset: Self.sizeWithCaps))
        }
        return w.bytes
    }
    /// The fields of `bytes` and, when `VFIO_DEVICE_FLAGS_CAPS` is set, `bytes` holds the `fixedSize`-byte structure
    /// and `cap_offset` is not 0, the capability chain (validated: `VFIOCapabilityChain.decode`, after the fixed part).
    public init(decoding bytes: [UInt8], fixedSize: Int = sizeWithCaps) throws(VFIOError) {
        self.init(argsz: u32(bytes, 0), flags: VFIODeviceFlags(rawValue: u32(bytes, 4)), numRegions: u32(bytes, 8),
                  numIRQs: u32(bytes, 12))
        if flags.contains(.caps), bytes.count >= fixedSize {
            capOffset = u32(bytes, 16)
            if capOffset != 0 { capabilities = try VFIOCapabilityChain.decode(bytes, firstOffset: capOffset, minOffset: fixedSize) }
        }
    }
}

/// `struct vfio_region_info`: `argsz, flags, index, cap_offset, size u64, offset u64` (32 bytes), then the capability
/// chain (sparse mmap, type, or anything a composing device adds). `offset` is where the region starts in the device
/// fd (kernel) or in the fd sent with a vfio-user reply; `mapping` is not on the wire: the fd a device offers for
/// mmap and the region's offset in it, which a transport reports as `offset` (vfio-user sends the fd with
/// SCM_RIGHTS).
public struct VFIORegionInfo: Sendable, Equatable {
    public static let size = 32
    public var argsz: UInt32
    public var flags: VFIORegionFlags
    public var index: UInt32
    public var capOffset: UInt32
    /// The region's size in bytes.
    public var size: UInt64
    public var offset: UInt64
    public var capabilities: [VFIOCapability]
    public var mapping: VFIORegionMapping?
    /// The fields in `struct vfio_region_info`'s order; a request is `argsz` and `index`.
    public init(argsz: UInt32, flags: VFIORegionFlags = [], index: UInt32, capOffset: UInt32 = 0, size: UInt64 = 0, offset: UInt64 = 0,
                capabilities: [VFIOCapability] = []) {
        self.argsz = argsz; self.flags = flags; self.index = index; self.capOffset = capOffset
        self.size = size; self.offset = offset; self.capabilities = capabilities
    }
    /// A region as a device describes it.
    public init(index: UInt32, flags: VFIORegionFlags, size: UInt64, mapping: VFIORegionMapping? = nil,
                capabilities: [VFIOCapability] = []) {
        self.init(argsz: UInt32(Self.size), flags: flags, index: index, size: size, capabilities: capabilities)
        self.mapping = mapping
    }
    /// An absent region: size 0, no flags (vfio-pci reports unimplemented BARs this way).
    public static func empty(_ index: UInt32) -> VFIORegionInfo { VFIORegionInfo(index: index, flags: [], size: 0) }

    /// The fixed part, then the chain when there is one. The chain goes right after the fixed part, so `cap_offset`
    /// and every `next` are written as that place (a device-described info has no `cap_offset` of its own); without
    /// a chain, `capOffset` as given.
    public func encode() -> [UInt8] {
        let chainAt = capabilities.isEmpty ? capOffset : UInt32(Self.size)
        var w = ByteWriter(); w.u32(argsz); w.u32(flags.rawValue); w.u32(index); w.u32(chainAt); w.u64(size); w.u64(offset)
        if !capabilities.isEmpty { w.append(VFIOCapabilityChain.encode(capabilities, baseOffset: Self.size)) }
        return w.bytes
    }
    /// The fields of `bytes` and, when `VFIO_REGION_INFO_FLAG_CAPS` is set and `cap_offset` is not 0, the capability
    /// chain (validated: `cap_offset` in [32, count), every `next` advancing and inside, at most
    /// `VFIOCapabilityChain.maxCapabilities`).
    public init(decoding bytes: [UInt8]) throws(VFIOError) {
        self.init(argsz: u32(bytes, 0), flags: VFIORegionFlags(rawValue: u32(bytes, 4)), index: u32(bytes, 8),
                  capOffset: u32(bytes, 12), size: u64(bytes, 16), offset: u64(bytes, 24))
        if flags.contains(.caps) && capOffset != 0 {
            capabilities = try VFIOCapabilityChain.decode(bytes, firstOffset: capOffset, minOffset: Self.size)
        }
    }
}

/// `struct vfio_irq_info`: `argsz, flags, index, count` (16 bytes).
public struct VFIOIRQInfo: VFIOFixedSizeStruct, Sendable, Equatable {
    public static let size = 16
    public var argsz: UInt32
    public var flags: VFIOIRQInfoFlags
    public var index: UInt32
    public var count: UInt32
    /// The fields in `struct vfio_irq_info`'s order; a request is `index` alone.
    public init(argsz: UInt32 = UInt32(Self.size), flags: VFIOIRQInfoFlags = [], index: UInt32, count: UInt32 = 0) {
        self.argsz = argsz; self.flags = flags; self.index = index; self.count = count
    }
    /// An IRQ index as a device describes it.
    public init(index: UInt32, flags: VFIOIRQInfoFlags, count: UInt32) { self.init(flags: flags, index: index, count: count) }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags.rawValue); w.u32(index); w.u32(count); return w.bytes
    }
    public init(decoding bytes: [UInt8]) {
        self.init(argsz: u32(bytes, 0), flags: VFIOIRQInfoFlags(rawValue: u32(bytes, 4)), index: u32(bytes, 8), count: u32(bytes, 12))
    }
}

/// `struct vfio_iommu_type1_dma_unmap`: `argsz, flags, iova u64, size u64` (24 bytes). Flag `all` with iova = size =
/// 0 unmaps everything (`VFIO_DMA_UNMAP_FLAG_ALL`).
public struct VFIODMAUnmap: VFIOFixedSizeStruct, Sendable, Equatable {
    public static let size = 24
    public var argsz: UInt32
    public var flags: VFIODMAUnmapFlags
    public var address: UInt64
    public var size: UInt64
    public init(flags: VFIODMAUnmapFlags = [], address: UInt64, size: UInt64, argsz: UInt32 = UInt32(Self.size)) {
        self.argsz = argsz; self.flags = flags; self.address = address; self.size = size
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags.rawValue); w.u64(address); w.u64(size); return w.bytes
    }
    public init(decoding bytes: [UInt8]) {
        self.init(flags: VFIODMAUnmapFlags(rawValue: u32(bytes, 4)), address: u64(bytes, 8), size: u64(bytes, 16), argsz: u32(bytes, 0))
    }
}

/// The data of a SET_IRQS request (`VFIO_IRQ_SET_DATA_*`), as a device takes it.
public enum VFIOIRQSetData: Sendable, Equatable {
    /// `DATA_NONE`.
    case none
    /// `DATA_BOOL`: one flag per vector.
    case bool([Bool])
    /// `DATA_EVENTFD`: one eventfd per vector; `nil` de-assigns. An empty array with `count > 0` de-assigns `count`
    /// vectors (vfio-user sends no fds to de-assign).
    case eventfds([VFIOEventFD?])

    /// The `VFIO_IRQ_SET_DATA_*` flag of this data.
    public var setFlag: VFIOIRQSetFlags {
        switch self {
        case .none: return .dataNone
        case .bool: return .dataBool
        case .eventfds: return .dataEventFD
        }
    }
}

/// The action of a SET_IRQS request (`VFIO_IRQ_SET_ACTION_*`).
public enum VFIOIRQAction: Sendable, Equatable {
    case mask, unmask, trigger

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

/// `struct vfio_irq_set`: `argsz, flags, index, start, count` (20 bytes), then the data: DATA_BOOL one byte per
/// vector, DATA_EVENTFD one s32 per vector (the kernel's ioctl; vfio-user passes eventfds as SCM_RIGHTS and sends no
/// data), DATA_NONE nothing. `flags` names the data type and the action; `bools` holds DATA_BOOL's flags and
/// `eventfds` DATA_EVENTFD's eventfds (owned; not in the encoded bytes: the transport passes them).
public struct VFIOIRQSet: Sendable, Equatable {
    public static let size = 20
    public var argsz: UInt32
    public var flags: VFIOIRQSetFlags
    public var index: UInt32
    public var start: UInt32
    public var count: UInt32
    public var bools: [Bool]
    public var eventfds: [VFIOEventFD?]
    /// The fields in `struct vfio_irq_set`'s order with DATA_BOOL's flags; `argsz` nil: the fixed part and the flags.
    public init(flags: VFIOIRQSetFlags, index: UInt32, start: UInt32, count: UInt32, bools: [Bool] = [], argsz: UInt32? = nil) {
        self.flags = flags; self.index = index; self.start = start; self.count = count; self.bools = bools; self.eventfds = []
        self.argsz = argsz ?? UInt32(Self.size + (flags.contains(.dataBool) ? bools.count : 0))
    }
    /// A request as a device takes it.
    public init(index: UInt32, start: UInt32, count: UInt32, action: VFIOIRQAction, data: VFIOIRQSetData) {
        var bools: [Bool] = []
        if case .bool(let b) = data { bools = b }
        self.init(flags: [data.setFlag, action.setFlag], index: index, start: start, count: count, bools: bools)
        if case .eventfds(let fds) = data { eventfds = fds }
    }
    /// The action `flags` names.
    public var action: VFIOIRQAction { VFIOIRQAction(setFlags: flags) }
    /// The data `flags` names: DATA_EVENTFD's `eventfds`, DATA_BOOL's `bools`, else none.
    public var data: VFIOIRQSetData {
        flags.contains(.dataEventFD) ? .eventfds(eventfds) : flags.contains(.dataBool) ? .bool(bools) : .none
    }
    /// The fixed part, then DATA_BOOL's flags (one byte each) or `eventfdNumbers` (DATA_EVENTFD as the kernel's ioctl
    /// takes it: one s32 per vector, -1 de-assigns; `argsz` must count them).
    public func encode(eventfdNumbers: [Int32] = []) -> [UInt8] {
        var w = ByteWriter(capacity: Self.size + bools.count + 4 * eventfdNumbers.count)
        w.u32(argsz); w.u32(flags.rawValue); w.u32(index); w.u32(start); w.u32(count)
        if flags.contains(.dataBool) { w.append(bools.map { $0 ? 1 : 0 }) }
        for fd in eventfdNumbers { w.u32(UInt32(bitPattern: fd)) }
        return w.bytes
    }
    /// The fixed part of `bytes` (a missing field reads 0) and, for DATA_BOOL, up to `count` flags after it (any
    /// non-zero byte is true).
    public init(decoding bytes: [UInt8]) {
        let flags = VFIOIRQSetFlags(rawValue: u32(bytes, 4)), count = u32(bytes, 16)
        let bools = flags.contains(.dataBool) ? bytes.dropFirst(Self.size).prefix(Int(count)).map { $0 != 0 } : []
        self.init(flags: flags, index: u32(bytes, 8), start: u32(bytes, 12), count: count, bools: bools, argsz: u32(bytes, 0))
    }
}
