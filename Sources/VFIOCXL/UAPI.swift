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

/// The CXL device-info capability (id 6, version 1). Payload after the 8-byte
/// `vfio_info_cap_header`, little-endian:
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 4 | flags: bit 0 FIRMWARE_COMMITTED, bit 1 CACHE_CAPABLE |
/// | 4 | 1 | component-register BAR index |
/// | 5 | 1 | HDM decoder count |
/// | 6 | 2 | reserved |
/// | 8 | 8 | component-register block offset in the BAR |
/// | 16 | 8 | component-register block size |
/// | 24 | 8 | device memory (DPA) size |
/// | 32 | 4 | device-memory region index |
/// | 36 | 4 | component-register region index |
public struct VFIOCXLCapability: Sendable, Equatable {
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Firmware committed decoder 0 before the host driver bound the device.
        public static let firmwareCommitted = Flags(rawValue: 1 << 0)
        /// DVSEC Cache_Capable: the VMM must write back and invalidate before an FLR.
        public static let cacheCapable = Flags(rawValue: 1 << 1)
    }

    public static let payloadSize = 40

    public var flags: Flags
    public var componentRegisterBAR: UInt8
    public var hdmDecoderCount: UInt8
    public var componentRegisterOffset: UInt64
    public var componentRegisterSize: UInt64
    public var memorySize: UInt64
    public var memoryRegionIndex: UInt32
    public var componentRegionIndex: UInt32

    public init(flags: Flags, componentRegisterBAR: UInt8, hdmDecoderCount: UInt8, componentRegisterOffset: UInt64,
                componentRegisterSize: UInt64, memorySize: UInt64,
                memoryRegionIndex: UInt32 = VFIOCXLUAPI.memoryRegionIndex,
                componentRegionIndex: UInt32 = VFIOCXLUAPI.componentRegionIndex) {
        self.flags = flags
        self.componentRegisterBAR = componentRegisterBAR
        self.hdmDecoderCount = hdmDecoderCount
        self.componentRegisterOffset = componentRegisterOffset
        self.componentRegisterSize = componentRegisterSize
        self.memorySize = memorySize
        self.memoryRegionIndex = memoryRegionIndex
        self.componentRegionIndex = componentRegionIndex
    }

    public var capability: VFIOCapability {
        var w = ByteWriter()
        w.u32(flags.rawValue)
        w.u8(componentRegisterBAR)
        w.u8(hdmDecoderCount)
        w.u16(0)
        w.u64(componentRegisterOffset)
        w.u64(componentRegisterSize)
        w.u64(memorySize)
        w.u32(memoryRegionIndex)
        w.u32(componentRegionIndex)
        return VFIOCapability(id: VFIOCXLUAPI.capabilityID, version: VFIOCXLUAPI.capabilityVersion, payload: w.bytes)
    }

    /// Parses the capability a server sent; the payload must hold every field.
    public init(parsing cap: VFIOCapability) throws(VFIOError) {
        guard cap.id == VFIOCXLUAPI.capabilityID else { throw .invalidArgument("not the CXL device capability (id \(cap.id))") }
        guard cap.version == VFIOCXLUAPI.capabilityVersion else { throw .notSupported("CXL device capability version \(cap.version)") }
        var r = ByteReader(cap.payload)
        guard let f = r.u32(), let bar = r.u8(), let count = r.u8(), r.u16() != nil, let off = r.u64(), let size = r.u64(),
              let mem = r.u64(), let memIndex = r.u32(), let compIndex = r.u32()
        else { throw .invalidArgument("CXL device capability truncated (\(cap.payload.count) of \(Self.payloadSize) bytes)") }
        self.init(flags: Flags(rawValue: f), componentRegisterBAR: bar, hdmDecoderCount: count, componentRegisterOffset: off,
                  componentRegisterSize: size, memorySize: mem, memoryRegionIndex: memIndex, componentRegionIndex: compIndex)
    }
}
