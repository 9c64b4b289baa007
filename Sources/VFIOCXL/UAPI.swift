import VFIO

// The vfio-cxl uAPI, following the posted VFIO CXL Type-2 series
// (linux-cxl, "vfio/pci: Add CXL Type-2 device passthrough support", 2026):
// a device flag, a device-info capability, and two device-specific regions.

public enum VFIOCXLUAPI {
    /// VFIO_DEVICE_FLAGS_CXL: bit 9 of `vfio_device_info.flags`, set together with
    /// VFIO_DEVICE_FLAGS_PCI.
    public static let deviceFlag = VFIODeviceFlags(rawValue: 1 << 9)
    /// VFIO_DEVICE_INFO_CAP_CXL.
    public static let capabilityID: UInt16 = 6
    public static let capabilityVersion: UInt16 = 1
    /// VFIO_REGION_TYPE_PCI_VENDOR_TYPE | PCI vendor 0x1E98 (the CXL Consortium).
    public static let regionType: UInt32 = 0x8000_0000 | 0x1E98
    /// VFIO_REGION_SUBTYPE_CXL: device memory (DPA space), read/write/mmap.
    public static let memorySubtype: UInt32 = 1
    /// VFIO_REGION_SUBTYPE_CXL_COMP_REGS: the component register block, aligned
    /// 4-byte accesses only, HDM decoders shadowed.
    public static let componentRegistersSubtype: UInt32 = 2
    /// Region indices: the first two after the nine VFIO-PCI regions.
    public static let memoryRegionIndex = UInt32(VFIOPCIRegion.count)
    public static let componentRegionIndex = UInt32(VFIOPCIRegion.count) + 1
}

/// The v2 CXL device-info capability (id 6, version 1), byte-exact with the layout NVIDIA's production kernels
/// (NV-Kernels #407/#448/#514) and their QEMU branch speak (NVIDIA/QEMU `linux-headers/linux/vfio.h` at 69a4b809cd4d,
/// `struct vfio_device_info_cap_cxl`). Payload after the 8-byte `vfio_info_cap_header`, little-endian:
///
/// | off (payload) | off (struct) | size | field |
/// |---|---|---|---|
/// | 0 | 8 | 1 | `hdm_regs_bar_index`: the BAR holding the component registers |
/// | 1 | 9 | 3 | `reserved[3]` |
/// | 4 | 12 | 4 | `flags`: bit 0 FIRMWARE_COMMITTED, bit 1 CACHE_CAPABLE |
/// | 8 | 16 | 8 | `hdm_regs_offset`: offset in that BAR of the CXL.cachemem area (component block + 0x1000) |
/// | 16 | 24 | 4 | `dpa_region_index` |
/// | 20 | 28 | 4 | `comp_regs_region_index` |
///
/// 32 bytes with the header. The decoder count and the HDM block's offset are not in it: a VMM reads them from the
/// COMP_REGS region, which starts at the CXL.cachemem area (CXL Capability Array Header at offset 0).
public struct VFIOCXLCapability: Sendable, Equatable {
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// VFIO_CXL_CAP_FIRMWARE_COMMITTED: firmware committed decoder 0 before the host driver bound the device.
        public static let firmwareCommitted = Flags(rawValue: 1 << 0)
        /// VFIO_CXL_CAP_CACHE_CAPABLE: DVSEC Cache_Capable; the VMM must write back and invalidate before an FLR.
        public static let cacheCapable = Flags(rawValue: 1 << 1)
    }

    /// Payload bytes after the header (`sizeof(struct vfio_device_info_cap_cxl)` is 32).
    public static let payloadSize = 24

    public var hdmRegistersBAR: UInt8
    public var flags: Flags
    /// Offset of the CXL.cachemem area inside `hdmRegistersBAR` (the component block's offset + 0x1000).
    public var hdmRegistersOffset: UInt64
    public var memoryRegionIndex: UInt32
    public var componentRegionIndex: UInt32

    public init(hdmRegistersBAR: UInt8, flags: Flags, hdmRegistersOffset: UInt64,
                memoryRegionIndex: UInt32 = VFIOCXLUAPI.memoryRegionIndex,
                componentRegionIndex: UInt32 = VFIOCXLUAPI.componentRegionIndex) {
        self.hdmRegistersBAR = hdmRegistersBAR
        self.flags = flags
        self.hdmRegistersOffset = hdmRegistersOffset
        self.memoryRegionIndex = memoryRegionIndex
        self.componentRegionIndex = componentRegionIndex
    }

    public var capability: VFIOCapability {
        var w = ByteWriter()
        w.u8(hdmRegistersBAR)
        w.u8(0); w.u8(0); w.u8(0)
        w.u32(flags.rawValue)
        w.u64(hdmRegistersOffset)
        w.u32(memoryRegionIndex)
        w.u32(componentRegionIndex)
        return VFIOCapability(id: VFIOCXLUAPI.capabilityID, version: VFIOCXLUAPI.capabilityVersion, payload: w.bytes)
    }

    /// Parses the capability a server sent; the payload must hold every field.
    public init(parsing cap: VFIOCapability) throws(VFIOError) {
        guard cap.id == VFIOCXLUAPI.capabilityID else { throw .invalidArgument("not the CXL device capability (id \(cap.id))") }
        guard cap.version == VFIOCXLUAPI.capabilityVersion else { throw .notSupported("CXL device capability version \(cap.version)") }
        var r = ByteReader(cap.payload)
        guard let bar = r.u8(), r.u8() != nil, r.u8() != nil, r.u8() != nil, let f = r.u32(), let off = r.u64(),
              let memIndex = r.u32(), let compIndex = r.u32()
        else { throw .invalidArgument("CXL device capability truncated (\(cap.payload.count) of \(Self.payloadSize) bytes)") }
        self.init(hdmRegistersBAR: bar, flags: Flags(rawValue: f), hdmRegistersOffset: off,
                  memoryRegionIndex: memIndex, componentRegionIndex: compIndex)
    }
}
