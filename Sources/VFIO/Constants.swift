// VFIO constants shared by the kernel VFIO uAPI (linux/vfio.h) and the vfio-user protocol, which reuses them
// (vfio-user spec, "VFIO_USER_DEVICE_GET_INFO", "VFIO_USER_DEVICE_GET_REGION_INFO", "VFIO_USER_DEVICE_GET_IRQ_INFO",
// "VFIO_USER_DEVICE_SET_IRQS"). Every number lives here once.

/// `vfio_device_info.flags` (linux/vfio.h `VFIO_DEVICE_FLAGS_*`).
public struct VFIODeviceFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `VFIO_DEVICE_FLAGS_RESET`: the device supports reset.
    public static let reset = VFIODeviceFlags(rawValue: 1 << 0)
    /// `VFIO_DEVICE_FLAGS_PCI`: a vfio-pci device (regions/IRQs follow the VFIO-PCI index layout).
    public static let pci = VFIODeviceFlags(rawValue: 1 << 1)
    /// `VFIO_DEVICE_FLAGS_CAPS`: `cap_offset` is valid (a device-info capability chain follows).
    public static let caps = VFIODeviceFlags(rawValue: 1 << 7)
}

/// `vfio_region_info.flags` (`VFIO_REGION_INFO_FLAG_*`).
public struct VFIORegionFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let read = VFIORegionFlags(rawValue: 1 << 0)
    public static let write = VFIORegionFlags(rawValue: 1 << 1)
    public static let mmap = VFIORegionFlags(rawValue: 1 << 2)
    /// `cap_offset` is valid.
    public static let caps = VFIORegionFlags(rawValue: 1 << 3)
}

/// `vfio_irq_info.flags` (`VFIO_IRQ_INFO_*`).
public struct VFIOIRQInfoFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let eventfd = VFIOIRQInfoFlags(rawValue: 1 << 0)
    public static let maskable = VFIOIRQInfoFlags(rawValue: 1 << 1)
    public static let automasked = VFIOIRQInfoFlags(rawValue: 1 << 2)
    public static let noresize = VFIOIRQInfoFlags(rawValue: 1 << 3)
}

/// `vfio_irq_set.flags` (`VFIO_IRQ_SET_DATA_*` | `VFIO_IRQ_SET_ACTION_*`).
public struct VFIOIRQSetFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let dataNone = VFIOIRQSetFlags(rawValue: 1 << 0)
    public static let dataBool = VFIOIRQSetFlags(rawValue: 1 << 1)
    public static let dataEventFD = VFIOIRQSetFlags(rawValue: 1 << 2)
    public static let actionMask = VFIOIRQSetFlags(rawValue: 1 << 3)
    public static let actionUnmask = VFIOIRQSetFlags(rawValue: 1 << 4)
    public static let actionTrigger = VFIOIRQSetFlags(rawValue: 1 << 5)
    public static let dataTypeMask: VFIOIRQSetFlags = [.dataNone, .dataBool, .dataEventFD]
    public static let actionTypeMask: VFIOIRQSetFlags = [.actionMask, .actionUnmask, .actionTrigger]
}

/// `vfio_iommu_type1_dma_unmap.flags` (`VFIO_DMA_UNMAP_FLAG_*`; vfio-user DMA_UNMAP uses the same bits).
public struct VFIODMAUnmapFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP`.
    public static let getDirtyBitmap = VFIODMAUnmapFlags(rawValue: 1 << 0)
    /// `VFIO_DMA_UNMAP_FLAG_ALL`: with iova = size = 0, unmap everything.
    public static let all = VFIODMAUnmapFlags(rawValue: 1 << 1)
}

/// VFIO-PCI region indices (`VFIO_PCI_*_REGION_INDEX`).
public enum VFIOPCIRegion: UInt32, Sendable, CaseIterable {
    case bar0 = 0, bar1, bar2, bar3, bar4, bar5
    case rom = 6
    case config = 7
    case vga = 8
    /// `VFIO_PCI_NUM_REGIONS`: device-specific regions start here.
    public static let count: UInt32 = 9
    public static func bar(_ n: Int) -> VFIOPCIRegion { VFIOPCIRegion(rawValue: UInt32(n))! }
    public var barNumber: Int? { rawValue <= 5 ? Int(rawValue) : nil }
}

/// VFIO-PCI IRQ indices (`VFIO_PCI_*_IRQ_INDEX`).
public enum VFIOPCIIRQ: UInt32, Sendable, CaseIterable {
    case intx = 0, msi, msix, err, req
    /// `VFIO_PCI_NUM_IRQS`.
    public static let count: UInt32 = 5
}

/// Capability ids for `vfio_region_info` capability chains (`VFIO_REGION_INFO_CAP_*`).
public enum VFIORegionCapabilityID {
    public static let sparseMMap: UInt16 = 1
    public static let type: UInt16 = 2
    public static let msixMappable: UInt16 = 3
    public static let nvlink2SSATGT: UInt16 = 4
}

/// `vfio_device_feature.flags` (`VFIO_DEVICE_FEATURE_*`), shared with vfio-user DEVICE_FEATURE.
public enum VFIODeviceFeatureFlags {
    public static let featureMask: UInt32 = 0xffff
    public static let get: UInt32 = 1 << 16
    public static let set: UInt32 = 1 << 17
    public static let probe: UInt32 = 1 << 18
}

/// Device feature indices (`VFIO_DEVICE_FEATURE_*`).
public enum VFIODeviceFeature {
    public static let migration: UInt32 = 1
    public static let migrationDeviceState: UInt32 = 2
    public static let dmaLoggingStart: UInt32 = 6
    public static let dmaLoggingStop: UInt32 = 7
    public static let dmaLoggingReport: UInt32 = 8
}

/// Region-IO-fd sub-region types (vfio-user `VFIO_USER_IO_FD_TYPE_*`).
public enum VFIORegionIOFDType: UInt32, Sendable {
    case ioeventfd = 0
    case ioregionfd = 1
    case ioeventfdShadow = 2
}

/// Errno values used by the VFIO layers (Linux numbering).
public enum VFIOErrno {
    public static let EPERM: Int32 = 1
    public static let ENOENT: Int32 = 2
    public static let EIO: Int32 = 5
    public static let E2BIG: Int32 = 7
    public static let EBADF: Int32 = 9
    public static let EAGAIN: Int32 = 11
    public static let ENOMEM: Int32 = 12
    public static let EFAULT: Int32 = 14
    public static let EBUSY: Int32 = 16
    public static let EEXIST: Int32 = 17
    public static let ENODEV: Int32 = 19
    public static let EINVAL: Int32 = 22
    public static let ENOSPC: Int32 = 28
    public static let ERANGE: Int32 = 34
    public static let ENOSYS: Int32 = 38
    public static let EPROTO: Int32 = 71
    public static let EMSGSIZE: Int32 = 90
    public static let ENOTSUP: Int32 = 95
    public static let ECONNRESET: Int32 = 104
    public static let ENOTCONN: Int32 = 107
    public static let ETIMEDOUT: Int32 = 110
    public static let ENOTTY: Int32 = 25
}
