/// One entry of a VFIO capability chain (`struct vfio_info_cap_header` followed by its payload), as used by
/// `vfio_region_info` and `vfio_device_info` (linux/vfio.h; vfio-user spec "Region Info Capability Format").
///
/// The payload is opaque here so composing devices can attach arbitrary capabilities; typed views exist for the
/// standard ones (`VFIOSparseMMapCapability`, `VFIORegionTypeCapability`).
public struct VFIOCapability: Sendable, Equatable {
    public static let headerSize = 8
    public var id: UInt16
    public var version: UInt16
    public var payload: [UInt8]
    public init(id: UInt16, version: UInt16, payload: [UInt8]) {
        self.id = id; self.version = version; self.payload = payload
    }
    public var encodedSize: Int { Self.headerSize + payload.count }
}

/// One mmap-able area of a region (`struct vfio_region_sparse_mmap_area`), relative to the region start.
public struct VFIOSparseArea: Sendable, Equatable {
    public var offset: UInt64
    public var size: UInt64
    public init(offset: UInt64, size: UInt64) { self.offset = offset; self.size = size }
}

/// `VFIO_REGION_INFO_CAP_SPARSE_MMAP` (id 1, version 1): `nr_areas u32, reserved u32, {offset u64, size u64} * n`.
public struct VFIOSparseMMapCapability: Sendable, Equatable {
    public static let version: UInt16 = 1
    public static let areaSize = 16
    public var areas: [VFIOSparseArea]
    public init(areas: [VFIOSparseArea]) { self.areas = areas }

    public var capability: VFIOCapability {
        var w = ByteWriter()
        w.u32(UInt32(areas.count)); w.u32(0)
        for a in areas { w.u64(a.offset); w.u64(a.size) }
        return VFIOCapability(id: VFIORegionCapabilityID.sparseMMap, version: Self.version, payload: w.bytes)
    }

    /// Parses and validates a sparse-mmap capability against the region size: the area count must fit the payload
    /// and every area must lie inside the region (no overflow).
    public init(parsing cap: VFIOCapability, regionSize: UInt64) throws(VFIOError) {
        guard cap.id == VFIORegionCapabilityID.sparseMMap else { throw .invalidArgument("not a sparse-mmap capability") }
        var r = ByteReader(cap.payload)
        guard let n = r.u32(), r.u32() != nil else { throw .invalidArgument("sparse-mmap capability truncated") }
        guard UInt64(n) * UInt64(Self.areaSize) <= UInt64(r.remaining) else {
            throw .invalidArgument("sparse-mmap area count \(n) exceeds capability length")
        }
        var areas: [VFIOSparseArea] = []
        for _ in 0..<n {
            guard let off = r.u64(), let size = r.u64() else { throw .invalidArgument("sparse-mmap area truncated") }
            let (end, overflow) = off.addingReportingOverflow(size)
            guard !overflow, end <= regionSize else {
                throw .invalidArgument("sparse-mmap area 0x\(String(off, radix: 16))+0x\(String(size, radix: 16)) outside region")
            }
            areas.append(VFIOSparseArea(offset: off, size: size))
        }
        self.areas = areas
    }
}

/// `VFIO_REGION_INFO_CAP_TYPE` (id 2, version 1): `{type u32, subtype u32}` for device-specific regions.
public struct VFIORegionTypeCapability: Sendable, Equatable {
    public static let version: UInt16 = 1
    public var type: UInt32
    public var subtype: UInt32
    public init(type: UInt32, subtype: UInt32) { self.type = type; self.subtype = subtype }
    public var capability: VFIOCapability {
        var w = ByteWriter(); w.u32(type); w.u32(subtype)
        return VFIOCapability(id: VFIORegionCapabilityID.type, version: Self.version, payload: w.bytes)
    }
    public init(parsing cap: VFIOCapability) throws(VFIOError) {
        guard cap.id == VFIORegionCapabilityID.type, let t = ByteReader.le(cap.payload, at: 0, size: 4),
              let s = ByteReader.le(cap.payload, at: 4, size: 4)
        else { throw .invalidArgument("malformed region type capability") }
        type = UInt32(t); subtype = UInt32(s)
    }
}

/// Encoding and validating decoding of capability chains. Offsets (`cap_offset`, `next`) are relative to the start
/// of the enclosing info structure; 0 ends the chain.
public enum VFIOCapabilityChain {
    /// Upper bound on chain length accepted by `decode` (defends against hostile peers).
    public static let maxCapabilities = 64

    /// Encodes `caps` to be placed at `baseOffset` within the enclosing structure. Each capability starts 8-byte
    /// aligned (padding is inserted), as the kernel does.
    public static func encode(_ caps: [VFIOCapability], baseOffset: Int) -> [UInt8] {
        var w = ByteWriter()
        for (i, cap) in caps.enumerated() {
            let start = w.bytes.count
            let end = start + cap.encodedSize
            let padded = (end + 7) & ~7
            let next = i + 1 < caps.count ? UInt32(baseOffset + padded) : 0
            w.u16(cap.id); w.u16(cap.version); w.u32(next)
            w.append(cap.payload)
            if i + 1 < caps.count { w.zeros(padded - end) }
        }
        return w.bytes
    }

    /// Decodes the chain starting at `firstOffset` in `info` (the whole info structure). Validates that every
    /// header lies after `minOffset` (the fixed part) and inside `info`, that `next` pointers strictly increase
    /// (no loops), and that there are at most `maxCapabilities`. A capability's payload extends to the next
    /// capability, or to the end of `info` for the last one.
    public static func decode(_ info: [UInt8], firstOffset: UInt32, minOffset: Int) throws(VFIOError) -> [VFIOCapability] {
        var caps: [VFIOCapability] = []
        var offset = Int(firstOffset)
        var headers: [(Int, UInt16, UInt16, Int)] = []
        while offset != 0 {
            guard headers.count < maxCapabilities else { throw .invalidArgument("capability chain too long") }
            guard offset >= minOffset, offset + VFIOCapability.headerSize <= info.count
            else { throw .invalidArgument("capability offset \(offset) outside info of \(info.count) bytes") }
            guard let id = ByteReader.le(info, at: offset, size: 2), let ver = ByteReader.le(info, at: offset + 2, size: 2),
                  let next = ByteReader.le(info, at: offset + 4, size: 4)
            else { throw .invalidArgument("capability header truncated") }
            let nextOffset = Int(next)
            if nextOffset != 0 {
                guard nextOffset >= offset + VFIOCapability.headerSize else {
                    throw .invalidArgument("capability next pointer \(nextOffset) does not advance past \(offset)")
                }
                guard nextOffset <= info.count else { throw .invalidArgument("capability next pointer \(nextOffset) outside info") }
            }
            headers.append((offset, UInt16(id), UInt16(ver), nextOffset))
            offset = nextOffset
        }
        for (off, id, ver, next) in headers {
            let end = next == 0 ? info.count : next
            caps.append(VFIOCapability(id: id, version: ver, payload: Array(info[(off + VFIOCapability.headerSize)..<end])))
        }
        return caps
    }
}
