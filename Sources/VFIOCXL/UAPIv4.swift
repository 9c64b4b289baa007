import VFIO

// The vfio-cxl uAPI of the v3 and v4 kernel series (Manish Honap, "vfio/pci: Add CXL Type-2 device passthrough
// support": v3 2026-06-25, v4 2026-08-13; post-v3 Documentation/driver-api/vfio-pci-cxl.rst and
// tools/testing/selftests/vfio/vfio_cxl_type2_test.c). v4 has no device-info capability: the CXL flag, two
// self-describing regions (found by their TYPE capability) and a region capability on the component-register region.

/// Which vfio-cxl contract a server speaks.
public enum VFIOCXLContract: String, Sendable, CaseIterable, Codable {
    /// NVIDIA's production kernels and QEMU branch: device capability id 6 (`VFIOCXLCapability`), COMP_REGS from the
    /// CXL.cachemem area, a guest-programmable decoder shadow that hides the host base.
    case v2
    /// The v4 series: flag + regions by TYPE + `VFIOCXLCompRegsCapability`; decoders host-committed and locked.
    case v4
}

extension VFIOCXLUAPI {
    /// VFIO_REGION_SUBTYPE_CXL_MEM (v4's name for v2/v3's VFIO_REGION_SUBTYPE_CXL; same value).
    public static let cxlMemSubtype: UInt32 = memorySubtype
    /// VFIO_REGION_INFO_CAP_CXL_COMP_REGS. The public v3 review and post-v3 code name it without showing its value;
    /// mainline uses region capability ids 1...5 (SPARSE_MMAP, TYPE, MSIX_MAPPABLE, NVLINK2_SSATGT,
    /// NVLINK2_LNKSPD), so this takes the next free one, 6. Defined here once; change it here if v4 05/27 differs.
    public static let compRegsCapabilityID: UInt16 = 6
    public static let compRegsCapabilityVersion: UInt16 = 1
    /// VFIO_DEVICE_FEATURE_DMA_BUF (mainline): a dma-buf fd over a region's ranges, for IOMMU_IOAS_MAP_FILE.
    public static let dmaBufFeature: UInt32 = 11
}

/// `struct vfio_region_info_cap_cxl_comp_regs` (v4), on the CXL_COMP_REGS region. Payload after the 8-byte header:
///
/// | off (payload) | size | field |
/// |---|---|---|
/// | 0 | 4 | `bar`: the BAR holding the component registers |
/// | 4 | 4 | reserved (0) |
/// | 8 | 8 | `offset`: offset of the HDM Decoder Capability block inside that BAR |
public struct VFIOCXLCompRegsCapability: Sendable, Equatable {
    public static let payloadSize = 16
    public var bar: UInt32
    public var offset: UInt64
    public init(bar: UInt32, offset: UInt64) { self.bar = bar; self.offset = offset }

    public var capability: VFIOCapability {
        var w = ByteWriter()
        w.u32(bar); w.u32(0); w.u64(offset)
        return VFIOCapability(id: VFIOCXLUAPI.compRegsCapabilityID, version: VFIOCXLUAPI.compRegsCapabilityVersion, payload: w.bytes)
    }

    public init(parsing cap: VFIOCapability) throws(VFIOError) {
        guard cap.id == VFIOCXLUAPI.compRegsCapabilityID else { throw .invalidArgument("not the CXL_COMP_REGS region capability (id \(cap.id))") }
        var r = ByteReader(cap.payload)
        guard let bar = r.u32(), r.u32() != nil, let offset = r.u64() else {
            throw .invalidArgument("CXL_COMP_REGS capability truncated (\(cap.payload.count) of \(Self.payloadSize) bytes)")
        }
        self.init(bar: bar, offset: offset)
    }
}

/// The v3 device-info capability (id 6, version 1, posted 2026-06-25), decodable so a client can tell a v3 server
/// apart. The C struct has a `__u64` after five `__u32`s: on x86-64 the compiler puts a 4-byte hole before
/// `comp_reg_offset` (struct offset 32, sizeof 48), on i386 none (offset 28, sizeof 44). This decoder follows the
/// x86-64 layout and makes the hole explicit. Payload after the 8-byte header:
///
/// | off (payload) | size | field |
/// |---|---|---|
/// | 0 | 4 | `flags`: bit 0 HOST_FIRMWARE_COMMITTED |
/// | 4 | 4 | `hdm_region_idx` |
/// | 8 | 4 | `comp_reg_region_idx` |
/// | 12 | 4 | `comp_reg_bar` |
/// | 16 | 4 | `__resv` |
/// | 20 | 4 | padding (x86-64 alignment hole) |
/// | 24 | 8 | `comp_reg_offset` |
/// | 32 | 8 | `comp_reg_size` |
public struct VFIOCXLv3Capability: Sendable, Equatable {
    public static let payloadSize = 40
    public static let hostFirmwareCommitted: UInt32 = 1 << 0
    public var flags: UInt32
    public var memoryRegionIndex: UInt32
    public var componentRegionIndex: UInt32
    public var componentBAR: UInt32
    public var componentOffset: UInt64
    public var componentSize: UInt64

    public init(flags: UInt32, memoryRegionIndex: UInt32, componentRegionIndex: UInt32, componentBAR: UInt32,
                componentOffset: UInt64, componentSize: UInt64) {
        self.flags = flags; self.memoryRegionIndex = memoryRegionIndex; self.componentRegionIndex = componentRegionIndex
        self.componentBAR = componentBAR; self.componentOffset = componentOffset; self.componentSize = componentSize
    }

    public var capability: VFIOCapability {
        var w = ByteWriter()
        w.u32(flags); w.u32(memoryRegionIndex); w.u32(componentRegionIndex); w.u32(componentBAR)
        w.u32(0)  // __resv
        w.u32(0)  // x86-64 alignment hole
        w.u64(componentOffset); w.u64(componentSize)
        return VFIOCapability(id: VFIOCXLUAPI.capabilityID, version: VFIOCXLUAPI.capabilityVersion, payload: w.bytes)
    }

    public init(parsing cap: VFIOCapability) throws(VFIOError) {
        guard cap.id == VFIOCXLUAPI.capabilityID else { throw .invalidArgument("not the CXL device capability (id \(cap.id))") }
        guard cap.payload.count >= Self.payloadSize else {
            throw .invalidArgument("v3 CXL device capability truncated (\(cap.payload.count) of \(Self.payloadSize) bytes)")
        }
        var r = ByteReader(cap.payload)
        guard let f = r.u32(), let mem = r.u32(), let comp = r.u32(), let bar = r.u32(), r.u32() != nil, r.u32() != nil,
              let off = r.u64(), let size = r.u64() else { throw .invalidArgument("v3 CXL device capability truncated") }
        self.init(flags: f, memoryRegionIndex: mem, componentRegionIndex: comp, componentBAR: bar, componentOffset: off, componentSize: size)
    }
}
