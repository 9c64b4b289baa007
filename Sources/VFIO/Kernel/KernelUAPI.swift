import CSwiftCXLSystem

/// The kernel's VFIO and iommufd uAPI (linux/vfio.h, linux/iommufd.h): ioctl numbers, taken from the C target
/// (`csystem_vfio.h`, where they are declared once), and the structs the backend passes, encoded field by field
/// (little endian, the kernel's layout; `VFIOKernelUAPITests` checks each length and field offset against the C
/// declarations).
public enum VFIOKernelUAPI {
    public static func number(_ which: csystem_vfio_ioctl) -> UInt { UInt(csystem_vfio_ioctl_number(Int32(which.rawValue))) }
    public static func size(_ which: csystem_vfio_struct) -> Int { Int(csystem_vfio_struct_size(Int32(which.rawValue))) }

    // MARK: ioctl numbers (VFIO_TYPE ';', VFIO_BASE 100; IOMMUFD_TYPE ';', base 0x80)
    public static let getAPIVersion = number(CSYSTEM_VFIO_GET_API_VERSION)
    public static let checkExtension = number(CSYSTEM_VFIO_CHECK_EXTENSION)
    public static let setIOMMU = number(CSYSTEM_VFIO_SET_IOMMU)
    public static let groupGetStatus = number(CSYSTEM_VFIO_GROUP_GET_STATUS)
    public static let groupSetContainer = number(CSYSTEM_VFIO_GROUP_SET_CONTAINER)
    public static let groupUnsetContainer = number(CSYSTEM_VFIO_GROUP_UNSET_CONTAINER)
    public static let groupGetDeviceFD = number(CSYSTEM_VFIO_GROUP_GET_DEVICE_FD)
    public static let deviceGetInfo = number(CSYSTEM_VFIO_DEVICE_GET_INFO)
    public static let deviceGetRegionInfo = number(CSYSTEM_VFIO_DEVICE_GET_REGION_INFO)
    public static let deviceGetIRQInfo = number(CSYSTEM_VFIO_DEVICE_GET_IRQ_INFO)
    public static let deviceSetIRQs = number(CSYSTEM_VFIO_DEVICE_SET_IRQS)
    public static let deviceReset = number(CSYSTEM_VFIO_DEVICE_RESET)
    public static let deviceGetPCIHotResetInfo = number(CSYSTEM_VFIO_DEVICE_GET_PCI_HOT_RESET_INFO)
    public static let devicePCIHotReset = number(CSYSTEM_VFIO_DEVICE_PCI_HOT_RESET)
    public static let iommuMapDMA = number(CSYSTEM_VFIO_IOMMU_MAP_DMA)
    public static let iommuUnmapDMA = number(CSYSTEM_VFIO_IOMMU_UNMAP_DMA)
    public static let deviceBindIOMMUFD = number(CSYSTEM_VFIO_DEVICE_BIND_IOMMUFD)
    public static let deviceAttachIOMMUFDPT = number(CSYSTEM_VFIO_DEVICE_ATTACH_IOMMUFD_PT)
    public static let iommuDestroy = number(CSYSTEM_IOMMU_DESTROY)
    public static let ioasAlloc = number(CSYSTEM_IOMMU_IOAS_ALLOC)
    public static let ioasMap = number(CSYSTEM_IOMMU_IOAS_MAP)
    public static let ioasUnmap = number(CSYSTEM_IOMMU_IOAS_UNMAP)
    public static let ioasMapFile = number(CSYSTEM_IOMMU_IOAS_MAP_FILE)

    /// `VFIO_API_VERSION` (0), `VFIO_TYPE1_IOMMU` (1), `VFIO_TYPE1v2_IOMMU` (3).
    public static let apiVersion = Int32(csystem_vfio_api_version())
    public static let type1IOMMU = UInt(csystem_vfio_type1_iommu())
    public static let type1v2IOMMU = UInt(csystem_vfio_type1v2_iommu())

    /// `vfio_group_status.flags`.
    public static let groupFlagViable: UInt32 = 1 << 0
    public static let groupFlagContainerSet: UInt32 = 1 << 1
    /// `vfio_iommu_type1_dma_map.flags`.
    public static let dmaMapFlagRead: UInt32 = 1 << 0
    public static let dmaMapFlagWrite: UInt32 = 1 << 1
    /// `iommu_ioas_map.flags`.
    public static let ioasMapFixedIOVA: UInt32 = 1 << 0
    public static let ioasMapWriteable: UInt32 = 1 << 1
    public static let ioasMapReadable: UInt32 = 1 << 2

    // MARK: structs

    /// `struct vfio_group_status { argsz, flags }`.
    public static func groupStatus() -> [UInt8] { var w = ByteWriter(); w.u32(8); w.u32(0); return w.bytes }

    /// `struct vfio_device_info` (`VFIODeviceInfo`) with `argsz`, zero-filled to it: room for what the kernel
    /// writes back.
    public static func deviceInfo(argsz: Int) -> [UInt8] { zeroFilled(VFIODeviceInfo(argsz: UInt32(argsz)).encode(), to: argsz) }

    /// `struct vfio_region_info` (`VFIORegionInfo`) with `argsz` (the tail beyond the 32-byte fixed part
    /// receives the capability chain).
    public static func regionInfo(index: UInt32, argsz: Int) -> [UInt8] {
        zeroFilled(VFIORegionInfo(argsz: UInt32(argsz), index: index).encode(), to: argsz)
    }

    /// `struct vfio_irq_info` (`VFIOIRQInfo`).
    public static func irqInfo(index: UInt32) -> [UInt8] { VFIOIRQInfo(index: index).encode() }

    /// `bytes` followed by zeros up to `count` bytes.
    static func zeroFilled(_ bytes: [UInt8], to count: Int) -> [UInt8] { bytes + [UInt8](repeating: 0, count: max(0, count - bytes.count)) }

    /// `struct vfio_irq_set` (`VFIOIRQSet`): DATA_NONE, DATA_BOOL (one byte per vector) or DATA_EVENTFD (one s32
    /// per vector, -1 de-assigns).
    public static func irqSet(index: UInt32, start: UInt32, count: UInt32, action: VFIOIRQAction, data: VFIOKernelIRQData) -> [UInt8] {
        switch data {
        case .none:
            return VFIOIRQSet(flags: [.dataNone, action.setFlag], index: index, start: start, count: count).encode()
        case .bool(let b):
            return VFIOIRQSet(flags: [.dataBool, action.setFlag], index: index, start: start, count: count, bools: b).encode()
        case .eventfds(let fds):
            let set = VFIOIRQSet(flags: [.dataEventFD, action.setFlag], index: index, start: start, count: count,
                                 argsz: UInt32(VFIOIRQSet.size + 4 * fds.count))
            return set.encode(eventfdNumbers: fds)
        }
    }

    /// `struct vfio_pci_hot_reset_info { argsz, flags, count, devices[] }` with room for `room` devices.
    public static func hotResetInfo(room: Int) -> [UInt8] {
        var w = ByteWriter(); w.u32(UInt32(12 + 8 * room)); w.u32(0); w.u32(0); w.zeros(8 * room); return w.bytes
    }

    /// `struct vfio_pci_hot_reset { argsz, flags, count, group_fds[] }`.
    public static func hotReset(groupFDs: [Int32]) -> [UInt8] {
        var w = ByteWriter(); w.u32(UInt32(12 + 4 * groupFDs.count)); w.u32(0); w.u32(UInt32(groupFDs.count))
        for fd in groupFDs { w.u32(UInt32(bitPattern: fd)) }
        return w.bytes
    }

    /// `struct vfio_iommu_type1_dma_map { argsz, flags, vaddr, iova, size }`.
    public static func type1DMAMap(vaddr: UInt64, iova: UInt64, size: UInt64, writable: Bool) -> [UInt8] {
        var w = ByteWriter(); w.u32(32); w.u32(dmaMapFlagRead | (writable ? dmaMapFlagWrite : 0))
        w.u64(vaddr); w.u64(iova); w.u64(size); return w.bytes
    }

    /// `struct vfio_iommu_type1_dma_unmap` (`VFIODMAUnmap`); the kernel writes back the size unmapped.
    public static func type1DMAUnmap(iova: UInt64, size: UInt64) -> [UInt8] { VFIODMAUnmap(address: iova, size: size).encode() }

    /// `struct vfio_device_bind_iommufd { argsz, flags, iommufd, out_devid }`.
    public static func bindIOMMUFD(_ iommufd: Int32) -> [UInt8] {
        var w = ByteWriter(); w.u32(16); w.u32(0); w.u32(UInt32(bitPattern: iommufd)); w.u32(0); return w.bytes
    }

    /// `struct vfio_device_attach_iommufd_pt { argsz, flags, pt_id }`.
    public static func attachIOMMUFDPT(_ ptID: UInt32) -> [UInt8] {
        var w = ByteWriter(); w.u32(12); w.u32(0); w.u32(ptID); return w.bytes
    }

    /// `struct iommu_ioas_alloc { size, flags, out_ioas_id }`.
    public static func ioasAllocArgs() -> [UInt8] { var w = ByteWriter(); w.u32(12); w.u32(0); w.u32(0); return w.bytes }

    /// `struct iommu_destroy { size, id }`.
    public static func destroy(_ id: UInt32) -> [UInt8] { var w = ByteWriter(); w.u32(8); w.u32(id); return w.bytes }

    /// `struct iommu_ioas_map { size, flags, ioas_id, __reserved, user_va, length, iova }` at a fixed IOVA.
    public static func ioasMapArgs(ioas: UInt32, userVA: UInt64, length: UInt64, iova: UInt64, writable: Bool) -> [UInt8] {
        var w = ByteWriter(); w.u32(40); w.u32(ioasMapFixedIOVA | ioasMapReadable | (writable ? ioasMapWriteable : 0))
        w.u32(ioas); w.u32(0); w.u64(userVA); w.u64(length); w.u64(iova); return w.bytes
    }

    /// `struct iommu_ioas_map_file { size, flags, ioas_id, fd, start, length, iova }` at a fixed IOVA.
    public static func ioasMapFileArgs(ioas: UInt32, fd: Int32, start: UInt64, length: UInt64, iova: UInt64, writable: Bool) -> [UInt8] {
        var w = ByteWriter(); w.u32(40); w.u32(ioasMapFixedIOVA | ioasMapReadable | (writable ? ioasMapWriteable : 0))
        w.u32(ioas); w.u32(UInt32(bitPattern: fd)); w.u64(start); w.u64(length); w.u64(iova); return w.bytes
    }

    /// `struct iommu_ioas_unmap { size, ioas_id, iova, length }`; the kernel writes back the length unmapped.
    public static func ioasUnmapArgs(ioas: UInt32, iova: UInt64, length: UInt64) -> [UInt8] {
        var w = ByteWriter(); w.u32(24); w.u32(ioas); w.u64(iova); w.u64(length); return w.bytes
    }
}

/// The data of a kernel SET_IRQS: nothing, one flag per vector, or one eventfd per vector (-1 de-assigns).
public enum VFIOKernelIRQData: Sendable, Equatable {
    case none
    case bool([Bool])
    case eventfds([Int32])
}
