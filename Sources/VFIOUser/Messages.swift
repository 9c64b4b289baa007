import VFIO

// Typed payloads of every vfio-user message (vfio-user spec, one section per command). Each type encodes to the
// bytes after the 16-byte header and decodes from them with bounds checks; decoding never traps.

private func need(_ payload: [UInt8], _ n: Int, _ what: String) throws(VFIOUserError) {
    guard payload.count >= n else { throw .malformed("\(what): payload \(payload.count) bytes, need \(n)") }
}
/// The `argsz` leading a payload whose fixed part is `size` bytes: the payload must hold the fixed part, and `argsz`
/// must cover it (as `struct vfio_*` arguments, whose `argsz` counts the whole structure).
private func checkedArgsz(_ payload: [UInt8], _ size: Int, _ what: String) throws(VFIOUserError) -> UInt32 {
    try need(payload, size, what)
    let argsz = u32(payload, 0)
    guard argsz >= UInt32(size) else { throw .malformed("\(what) argsz \(argsz)") }
    return argsz
}
private func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(ByteReader.le(b, at: o, size: 4) ?? 0) }
private func u64(_ b: [UInt8], _ o: Int) -> UInt64 { ByteReader.le(b, at: o, size: 8) ?? 0 }

/// VERSION request and reply (spec "VFIO_USER_VERSION"): `major u16, minor u16`, then an optional NUL-terminated
/// JSON capabilities string.
public struct VFIOUserVersion: Sendable, Equatable {
    public var major: UInt16
    public var minor: UInt16
    public var capabilities: VFIOUserCapabilities?
    /// The JSON text as received (or to be sent), without the NUL. Encoding uses it verbatim when set.
    public var json: String?
    public init(major: UInt16, minor: UInt16, capabilities: VFIOUserCapabilities?, json: String? = nil) {
        self.major = major; self.minor = minor; self.capabilities = capabilities; self.json = json
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u16(major); w.u16(minor)
        if let text = json ?? capabilities?.json() { w.append(Array(text.utf8)); w.u8(0) }
        return w.bytes
    }
    public static func decode(_ p: [UInt8]) throws(VFIOUserError) -> VFIOUserVersion {
        try need(p, 4, "VERSION")
        let major = UInt16(ByteReader.le(p, at: 0, size: 2)!), minor = UInt16(ByteReader.le(p, at: 2, size: 2)!)
        guard p.count > 4 else { return VFIOUserVersion(major: major, minor: minor, capabilities: nil) }
        guard p.count - 4 <= VFIOUserLimits.maxVersionJSON else { throw .malformed("VERSION JSON too long") }
        guard p.last == 0 else { throw .malformed("VERSION JSON not NUL-terminated") }
        var text = Array(p[4..<(p.count - 1)])
        // Tolerate extra NUL padding after the string.
        while text.last == 0 { text.removeLast() }
        guard !text.contains(0) else { throw .malformed("VERSION JSON contains NUL") }
        guard let s = String(validating: text, as: UTF8.self) else { throw .malformed("VERSION JSON not UTF-8") }
        let caps = try VFIOUserCapabilities.parse(json: text)
        return VFIOUserVersion(major: major, minor: minor, capabilities: caps, json: s)
    }
}

/// DMA_MAP flags (spec "VFIO_USER_DMA_MAP").
public struct VFIOUserDMAFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let read = VFIOUserDMAFlags(rawValue: 1 << 0)
    public static let write = VFIOUserDMAFlags(rawValue: 1 << 1)
}

/// DMA_MAP request: `argsz, flags, offset u64, addr u64, size u64` (32 bytes); an fd may be attached.
public struct VFIOUserDMAMap: Sendable, Equatable {
    public static let size = 32
    public var argsz: UInt32 = UInt32(size)
    public var flags: VFIOUserDMAFlags
    public var offset: UInt64
    public var address: UInt64
    public var size: UInt64
    public init(flags: VFIOUserDMAFlags, offset: UInt64, address: UInt64, size: UInt64, argsz: UInt32 = UInt32(Self.size)) {
        self.flags = flags; self.offset = offset; self.address = address; self.size = size; self.argsz = argsz
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags.rawValue); w.u64(offset); w.u64(address); w.u64(size); return w.bytes
    }
    public static func decode(_ p: [UInt8]) throws(VFIOUserError) -> VFIOUserDMAMap {
        let m = VFIOUserDMAMap(flags: VFIOUserDMAFlags(rawValue: u32(p, 4)), offset: u64(p, 8), address: u64(p, 16),
                               size: u64(p, 24), argsz: try checkedArgsz(p, size, "DMA_MAP"))
        guard m.flags.rawValue & ~(VFIOUserDMAFlags.read.rawValue | VFIOUserDMAFlags.write.rawValue) == 0 else {
            throw .malformed("DMA_MAP flags 0x\(String(m.flags.rawValue, radix: 16))")
        }
        return m
    }
}

// DMA_UNMAP request and reply: `struct vfio_iommu_type1_dma_unmap` (`VFIODMAUnmap`, 24 bytes). Flag `all` with
// addr=size=0 unmaps everything (libvfio-user's `VFIO_DMA_UNMAP_FLAG_ALL`).

/// A payload that is one of the fixed-size VFIO structs (DMA_UNMAP, DEVICE_GET_IRQ_INFO): it holds the fixed part,
/// and `argsz` covers it.
extension VFIOFixedSizeStruct {
    static func decode(_ p: [UInt8], _ what: String) throws(VFIOUserError) -> Self {
        _ = try checkedArgsz(p, size, what)
        return Self(decoding: p)
    }
}

/// DEVICE_GET_INFO request/reply: `struct vfio_device_info` (`VFIODeviceInfo`): `argsz, flags, num_regions,
/// num_irqs` (16 bytes); when the device has a capability chain and the client's argsz allows, the reply adds
/// `cap_offset u32, pad u32` and the chain.
extension VFIODeviceInfo {
    public static func decodeRequest(_ p: [UInt8]) throws(VFIOUserError) -> VFIODeviceInfo {
        VFIODeviceInfo(argsz: try checkedArgsz(p, size, "DEVICE_GET_INFO"))
    }
    /// Decodes a reply, validating the capability chain when `VFIO_DEVICE_FLAGS_CAPS` is set.
    public static func decodeReply(_ p: [UInt8]) throws(VFIOUserError) -> VFIODeviceInfo {
        try need(p, size, "DEVICE_GET_INFO reply")
        do { return try VFIODeviceInfo(decoding: p) } catch { throw .malformed("device info capabilities: \(error)") }
    }
}

/// DEVICE_GET_REGION_INFO request/reply: `struct vfio_region_info` (`VFIORegionInfo`) = `argsz, flags, index,
/// cap_offset, size u64, offset u64` (32 bytes), then the capability chain in the reply (spec
/// "VFIO_USER_DEVICE_GET_REGION_INFO").
extension VFIORegionInfo {
    public static func decodeRequest(_ p: [UInt8]) throws(VFIOUserError) -> VFIORegionInfo {
        VFIORegionInfo(argsz: try checkedArgsz(p, size, "DEVICE_GET_REGION_INFO"), index: u32(p, 8))
    }
    /// Decodes a reply. Validates the chain when FLAG_CAPS is set: `cap_offset` in [32, payload), every `next`
    /// advancing and inside the payload, at most `VFIOCapabilityChain.maxCapabilities`.
    public static func decodeReply(_ p: [UInt8]) throws(VFIOUserError) -> VFIORegionInfo {
        try need(p, size, "DEVICE_GET_REGION_INFO reply")
        do { return try VFIORegionInfo(decoding: p) } catch { throw .malformed("region info capabilities: \(error)") }
    }
}

/// DEVICE_GET_REGION_IO_FDS request/reply: `argsz, flags, index, count` (16 bytes), then `count` sub-region
/// entries in the reply. Entries: `offset u64, size u64, fd_index u32, type u32, flags u32, pad u32, datamatch u64`
/// (40 bytes, spec); libvfio-user sends 48-byte entries, so decoders derive the stride as `(argsz-16)/count`.
public struct VFIOUserRegionIOFDs: Sendable, Equatable {
    public static let size = 16
    public static let entrySize = 40
    public struct Entry: Sendable, Equatable {
        public var offset: UInt64
        public var size: UInt64
        public var fdIndex: UInt32
        public var type: UInt32
        public var flags: UInt32
        public var datamatch: UInt64
        public init(offset: UInt64, size: UInt64, fdIndex: UInt32, type: UInt32, flags: UInt32, datamatch: UInt64) {
            self.offset = offset; self.size = size; self.fdIndex = fdIndex; self.type = type; self.flags = flags; self.datamatch = datamatch
        }
    }
    public var argsz: UInt32
    public var flags: UInt32
    public var index: UInt32
    public var count: UInt32
    public var entries: [Entry]
    public init(argsz: UInt32, flags: UInt32 = 0, index: UInt32, count: UInt32 = 0, entries: [Entry] = []) {
        self.argsz = argsz; self.flags = flags; self.index = index; self.count = count; self.entries = entries
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u32(argsz); w.u32(flags); w.u32(index); w.u32(count)
        for e in entries { w.u64(e.offset); w.u64(e.size); w.u32(e.fdIndex); w.u32(e.type); w.u32(e.flags); w.u32(0); w.u64(e.datamatch) }
        return w.bytes
    }
    public static func decodeRequest(_ p: [UInt8]) throws(VFIOUserError) -> VFIOUserRegionIOFDs {
        let r = VFIOUserRegionIOFDs(argsz: try checkedArgsz(p, size, "DEVICE_GET_REGION_IO_FDS"), flags: u32(p, 4), index: u32(p, 8),
                                    count: u32(p, 12))
        guard r.flags == 0 else { throw .malformed("DEVICE_GET_REGION_IO_FDS flags \(r.flags)") }
        return r
    }
    /// Decodes a reply; entries are read only when the payload holds all of them, at the derived stride.
    public static func decodeReply(_ p: [UInt8], fdCount: Int) throws(VFIOUserError) -> VFIOUserRegionIOFDs {
        try need(p, size, "DEVICE_GET_REGION_IO_FDS reply")
        var r = VFIOUserRegionIOFDs(argsz: u32(p, 0), flags: u32(p, 4), index: u32(p, 8), count: u32(p, 12))
        let body = p.count - size
        guard r.count > 0, body > 0 else { return r }
        guard r.count <= 1024 else { throw .malformed("IO_FDS count \(r.count)") }
        let stride = body / Int(r.count)
        guard stride >= entrySize else { return r }   // the argsz two-step: the entries did not fit
        for i in 0..<Int(r.count) {
            let o = size + i * stride
            let e = Entry(offset: u64(p, o), size: u64(p, o + 8), fdIndex: u32(p, o + 16), type: u32(p, o + 20),
                          flags: u32(p, o + 24), datamatch: u64(p, o + 32))
            guard Int(e.fdIndex) < fdCount else { throw .malformed("IO_FDS fd_index \(e.fdIndex) of \(fdCount) fds") }
            r.entries.append(e)
        }
        return r
    }
}

// DEVICE_GET_IRQ_INFO request/reply: `struct vfio_irq_info` (`VFIOIRQInfo`): `argsz, flags, index, count` (16 bytes).

/// DEVICE_SET_IRQS request: `struct vfio_irq_set` (`VFIOIRQSet`): `argsz, flags, index, start, count` (20 bytes), then
/// `count` bool bytes for DATA_BOOL; eventfds travel as SCM_RIGHTS (spec "VFIO_USER_DEVICE_SET_IRQS").
extension VFIOIRQSet {
    /// A request: known flags, exactly one data type and one action, and for DATA_BOOL the `count` flags.
    public static func decode(_ p: [UInt8]) throws(VFIOUserError) -> VFIOIRQSet {
        _ = try checkedArgsz(p, size, "DEVICE_SET_IRQS")
        let flags = VFIOIRQSetFlags(rawValue: u32(p, 4))
        let known = VFIOIRQSetFlags.dataTypeMask.rawValue | VFIOIRQSetFlags.actionTypeMask.rawValue
        guard flags.rawValue & ~known == 0 else { throw .malformed("DEVICE_SET_IRQS flags 0x\(String(flags.rawValue, radix: 16))") }
        guard flags.intersection(.dataTypeMask).rawValue.nonzeroBitCount == 1,
              flags.intersection(.actionTypeMask).rawValue.nonzeroBitCount == 1
        else { throw .malformed("DEVICE_SET_IRQS needs exactly one data type and one action") }
        if flags.contains(.dataBool) {
            guard p.count - size >= Int(u32(p, 16)) else { throw .malformed("DEVICE_SET_IRQS bool data truncated") }
        }
        return VFIOIRQSet(decoding: p)
    }
}

/// REGION_READ / REGION_WRITE request and reply: `offset u64, region u32, count u32` (16 bytes) + data
/// (spec "VFIO_USER_REGION_READ", "VFIO_USER_REGION_WRITE"). `Fields` is the fixed part in place, for the paths that
/// build and check these messages in their buffers without allocating (the server's fast path, the client's
/// chunked access); `decode` makes the same checks through it.
public struct VFIOUserRegionAccess: Sendable, Equatable {
    public static let size = 16
    public var offset: UInt64
    public var region: UInt32
    public var count: UInt32
    public var data: [UInt8]
    public init(offset: UInt64, region: UInt32, count: UInt32, data: [UInt8] = []) {
        self.offset = offset; self.region = region; self.count = count; self.data = data
    }
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: Self.size + data.count); w.u64(offset); w.u32(region); w.u32(count); w.append(data); return w.bytes
    }
    /// Decodes; when `withData`, exactly `count` data bytes must follow, else none (`Fields.checked`).
    public static func decode(_ p: [UInt8], withData: Bool, what: String = "REGION_READ/WRITE") throws(VFIOUserError) -> VFIOUserRegionAccess {
        let f = try p.withUnsafeBytes { raw in
            Result { () throws(VFIOUserError) in try Fields.checked(raw, withData: withData, what) }
        }.get()
        return VFIOUserRegionAccess(offset: f.offset, region: f.region, count: f.count, data: withData ? Array(p[size...]) : [])
    }

    /// The fixed part, `offset u64, region u32, count u32`, stored to and loaded from memory in place.
    struct Fields {
        var offset: UInt64
        var region: UInt32
        var count: UInt32
        init(offset: UInt64, region: UInt32, count: UInt32) { self.offset = offset; self.region = region; self.count = count }
        /// The fields at the start of `p`, which holds at least `VFIOUserRegionAccess.size` bytes.
        @inline(__always)
        init(loading p: UnsafeRawBufferPointer) {
            offset = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            region = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
            count = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        }
        /// Writes the 16 bytes at `p` (little-endian), without allocating.
        @inline(__always)
        func store(to p: UnsafeMutableRawPointer) {
            p.storeBytes(of: offset.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: region.littleEndian, toByteOffset: 8, as: UInt32.self)
            p.storeBytes(of: count.littleEndian, toByteOffset: 12, as: UInt32.self)
        }
        /// The fields of payload `p`, checked: it holds them and, when `withData`, exactly `count` data bytes after
        /// them, else nothing more.
        static func checked(_ p: UnsafeRawBufferPointer, withData: Bool, _ what: String) throws(VFIOUserError) -> Fields {
            guard p.count >= size else { throw .malformed("\(what): payload \(p.count) bytes, need \(size)") }
            let f = Fields(loading: p)
            if withData {
                guard p.count - size == Int(f.count) else { throw .malformed("\(what): count \(f.count) but \(p.count - size) data bytes") }
            } else if p.count != size {
                throw .malformed("\(what): unexpected \(p.count - size) trailing bytes")
            }
            return f
        }
    }
}

/// DMA_READ / DMA_WRITE (server → client): `addr u64, count u64` (16 bytes) + data (spec "VFIO_USER_DMA_READ",
/// "VFIO_USER_DMA_WRITE"; the DMA_WRITE reply's count is 8 bytes as in libvfio-user).
public struct VFIOUserDMAAccess: Sendable, Equatable {
    public static let size = 16
    public var address: UInt64
    public var count: UInt64
    public var data: [UInt8]
    public init(address: UInt64, count: UInt64, data: [UInt8] = []) { self.address = address; self.count = count; self.data = data }
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: Self.size + data.count); w.u64(address); w.u64(count); w.append(data); return w.bytes
    }
    public static func decode(_ p: [UInt8], withData: Bool, what: String = "DMA_READ/WRITE") throws(VFIOUserError) -> VFIOUserDMAAccess {
        try need(p, size, what)
        var r = VFIOUserDMAAccess(address: u64(p, 0), count: u64(p, 8))
        if withData {
            guard UInt64(p.count - size) == r.count else { throw .malformed("\(what): count \(r.count) but \(p.count - size) data bytes") }
            r.data = Array(p[size...])
        }
        return r
    }
}

/// How a peer lays out DMA_READ / DMA_WRITE (an interop trap). The spec and libvfio-user use
/// `addr u64, count u64, data` and echo both fields in replies. QEMU 10.2 (`hw/vfio-user/protocol.h`,
/// `VFIOUserDMARW`) uses `offset u64, count u32, data` with the data at payload offset 12 and the message sized
/// from `sizeof` of the padded struct (4 extra bytes); it answers DMA_WRITE with the header only.
public enum VFIOUserDMALayout: Sendable, Equatable {
    case spec
    case qemu

    /// Payload of a server→client DMA_READ (`data` empty) or DMA_WRITE request.
    public func encodeRequest(_ a: VFIOUserDMAAccess) -> [UInt8] {
        switch self {
        case .spec: return a.encode()
        case .qemu:
            var w = ByteWriter(capacity: 16 + a.data.count)
            w.u64(a.address); w.u32(UInt32(truncatingIfNeeded: a.count)); w.append(a.data); w.zeros(4)
            return w.bytes
        }
    }

    /// Payload of a client's reply to DMA_READ (with data) or DMA_WRITE (without).
    public func encodeReply(_ a: VFIOUserDMAAccess, write: Bool) -> [UInt8] {
        switch self {
        case .spec: return a.encode()
        case .qemu:
            if write { return [] }
            return encodeRequest(a)
        }
    }

    /// Decodes a client→server request as this layout sends it (for a client serving DMA).
    public func decodeRequest(_ p: [UInt8], write: Bool) throws(VFIOUserError) -> VFIOUserDMAAccess {
        switch self {
        case .spec:
            return try VFIOUserDMAAccess.decode(p, withData: write, what: write ? "DMA_WRITE" : "DMA_READ")
        case .qemu:
            guard p.count >= 16, let addr = ByteReader.le(p, at: 0, size: 8), let count = ByteReader.le(p, at: 8, size: 4) else {
                throw .malformed("DMA request truncated")
            }
            guard !write || UInt64(p.count - 12) >= count else { throw .malformed("DMA_WRITE count \(count) beyond data") }
            return VFIOUserDMAAccess(address: addr, count: count, data: write ? Array(p[12..<(12 + Int(count))]) : [])
        }
    }

    /// Bytes of a request's fixed fields: spec `addr u64, count u64`; QEMU `offset u64, count u32`.
    public var requestFieldsSize: Int { self == .spec ? 16 : 12 }
    /// Bytes after a request's data: QEMU sends its padded struct's 4 trailing bytes.
    public var requestTrailerSize: Int { self == .spec ? 0 : 4 }

    /// Stores a request's fixed fields (`requestFieldsSize` bytes) at `p`, as `encodeRequest` encodes them.
    public func storeRequestFields(to p: UnsafeMutableRawPointer, address: UInt64, count: UInt64) {
        p.storeBytes(of: address.littleEndian, toByteOffset: 0, as: UInt64.self)
        if self == .spec { p.storeBytes(of: count.littleEndian, toByteOffset: 8, as: UInt64.self) }
        else { p.storeBytes(of: UInt32(truncatingIfNeeded: count).littleEndian, toByteOffset: 8, as: UInt32.self) }
    }

    /// The fixed fields at the start of `p` as `storeRequestFields` stores them (a DMA request, or a DMA_READ
    /// reply, which echoes them); nil when `p` is shorter than `requestFieldsSize`.
    public func loadRequestFields(from p: UnsafeRawBufferPointer) -> (address: UInt64, count: UInt64)? {
        guard p.count >= requestFieldsSize else { return nil }
        let address = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let count = self == .spec ? UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                                  : UInt64(UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        return (address, count)
    }

    /// Checks the reply to a DMA_READ of `count` bytes at `address` in place (as `decodeReadReply`) and returns
    /// where its data starts.
    public func checkReadReply(_ p: UnsafeRawBufferPointer, address: UInt64, count: UInt64) throws(VFIOUserError) -> Int {
        let headerSize = requestFieldsSize
        guard let (addr, n) = loadRequestFields(from: p) else { throw .malformed("DMA_READ reply truncated") }
        guard addr == address, n == count else { throw .malformed("DMA_READ reply for 0x\(String(addr, radix: 16))+\(n), asked 0x\(String(address, radix: 16))+\(count)") }
        let avail = UInt64(p.count - headerSize)
        // spec: exactly count bytes; QEMU: count bytes plus the struct's 4 padding bytes.
        guard self == .spec ? avail == count : (avail >= count && avail <= count + 8) else {
            throw .malformed("DMA_READ reply carries \(avail) bytes for count \(count)")
        }
        return headerSize
    }

    /// Decodes the reply to a DMA_READ of `count` bytes at `address`; the echoed fields must match (`checkReadReply`).
    public func decodeReadReply(_ p: [UInt8], address: UInt64, count: UInt64) throws(VFIOUserError) -> [UInt8] {
        let start = try p.withUnsafeBytes { raw in
            Result { () throws(VFIOUserError) in try checkReadReply(raw, address: address, count: count) }
        }.get()
        return Array(p[start..<(start + Int(count))])
    }
}

/// REGION_WRITE_MULTI request: `wr_cnt u64`, then `{offset u64, region u32, count u32, data[8]}` × wr_cnt; the
/// reply is `wr_cnt u64` (spec "VFIO_USER_REGION_WRITE_MULTI").
public struct VFIOUserRegionWriteMulti: Sendable, Equatable {
    public static let entrySize = 24
    public static let maxEntryData = 8
    public static let maxEntries = 4096
    public var writes: [VFIOUserRegionAccess]
    public init(writes: [VFIOUserRegionAccess]) { self.writes = writes }
    public func encode() -> [UInt8] {
        var w = ByteWriter(); w.u64(UInt64(writes.count))
        for e in writes {
            w.u64(e.offset); w.u32(e.region); w.u32(e.count)
            var d = Array(e.data.prefix(Self.maxEntryData)); d += repeatElement(0, count: Self.maxEntryData - d.count)
            w.append(d)
        }
        return w.bytes
    }
    public static func decode(_ p: [UInt8]) throws(VFIOUserError) -> VFIOUserRegionWriteMulti {
        try need(p, 8, "REGION_WRITE_MULTI")
        let n = u64(p, 0)
        guard n <= UInt64(maxEntries), UInt64(p.count - 8) == n * UInt64(entrySize) else {
            throw .malformed("REGION_WRITE_MULTI wr_cnt \(n) vs \(p.count - 8) bytes")
        }
        var writes: [VFIOUserRegionAccess] = []
        for i in 0..<Int(n) {
            let o = 8 + i * entrySize
            let count = u32(p, o + 12)
            guard count <= UInt32(maxEntryData) else { throw .malformed("REGION_WRITE_MULTI entry count \(count)") }
            writes.append(VFIOUserRegionAccess(offset: u64(p, o), region: u32(p, o + 8), count: count,
                                               data: Array(p[(o + 16)..<(o + 16 + Int(count))])))
        }
        return VFIOUserRegionWriteMulti(writes: writes)
    }
}

/// DEVICE_FEATURE request/reply: `argsz u32, flags u32, data[]` (spec "VFIO_USER_DEVICE_FEATURE").
public struct VFIOUserDeviceFeature: Sendable, Equatable {
    public static let size = 8
    public var argsz: UInt32
    public var flags: UInt32
    public var data: [UInt8]
    public init(argsz: UInt32? = nil, flags: UInt32, data: [UInt8] = []) {
        self.argsz = argsz ?? UInt32(Self.size + data.count); self.flags = flags; self.data = data
    }
    public var feature: UInt32 { flags & VFIODeviceFeatureFlags.featureMask }
    public func encode() -> [UInt8] { var w = ByteWriter(); w.u32(argsz); w.u32(flags); w.append(data); return w.bytes }
    public static func decode(_ p: [UInt8]) throws(VFIOUserError) -> VFIOUserDeviceFeature {
        let f = VFIOUserDeviceFeature(argsz: try checkedArgsz(p, size, "DEVICE_FEATURE"), flags: u32(p, 4), data: Array(p[size...]))
        let ops = f.flags & (VFIODeviceFeatureFlags.get | VFIODeviceFeatureFlags.set | VFIODeviceFeatureFlags.probe)
        guard f.flags & ~(VFIODeviceFeatureFlags.featureMask | ops) == 0 else { throw .malformed("DEVICE_FEATURE flags") }
        return f
    }
}

/// MIG_DATA_READ / MIG_DATA_WRITE: `argsz u32, size u32` + data (spec "VFIO_USER_MIG_DATA_READ").
public struct VFIOUserMigData: Sendable, Equatable {
    public static let size = 8
    public var argsz: UInt32
    public var dataSize: UInt32
    public var data: [UInt8]
    public init(argsz: UInt32? = nil, dataSize: UInt32, data: [UInt8] = []) {
        self.argsz = argsz ?? UInt32(Self.size + data.count); self.dataSize = dataSize; self.data = data
    }
    public func encode() -> [UInt8] { var w = ByteWriter(); w.u32(argsz); w.u32(dataSize); w.append(data); return w.bytes }
    public static func decode(_ p: [UInt8]) throws(VFIOUserError) -> VFIOUserMigData {
        try need(p, size, "MIG_DATA")
        return VFIOUserMigData(argsz: u32(p, 0), dataSize: u32(p, 4), data: Array(p[size...]))
    }
}
