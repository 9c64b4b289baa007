import PCI

/// Little-endian byte assembly used by VFIO structures and the vfio-user wire format (vfio-user spec,
/// "Header": host byte order; this project supports little-endian hosts only).
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]
    public init(capacity: Int = 0) { bytes = []; bytes.reserveCapacity(capacity) }
    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func append<C: Collection>(_ data: C) where C.Element == UInt8 { bytes.append(contentsOf: data) }
    public mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
    /// Overwrites a u32 already written at `offset`.
    public mutating func patchU32(at offset: Int, _ v: UInt32) {
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
}

/// Bounds-checked little-endian reader. Every read fails with `nil` instead of trapping, so decoders fed untrusted
/// bytes cannot read out of bounds.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var position: Int
    public init(_ bytes: [UInt8], position: Int = 0) { self.bytes = bytes; self.position = position }
    public init(_ bytes: ArraySlice<UInt8>) { self.bytes = Array(bytes); self.position = 0 }
    public var remaining: Int { max(0, bytes.count - position) }

    /// Reads an unsigned little-endian integer of `n` bytes at an absolute offset, or nil when out of bounds.
    public static func le(_ bytes: [UInt8], at offset: Int, size n: Int) -> UInt64? {
        LittleEndian.load(bytes, at: offset, width: n)
    }
    public func peekU32(at offset: Int) -> UInt32? { Self.le(bytes, at: offset, size: 4).map { UInt32($0) } }
    public func peekU16(at offset: Int) -> UInt16? { Self.le(bytes, at: offset, size: 2).map { UInt16($0) } }
    public func peekU64(at offset: Int) -> UInt64? { Self.le(bytes, at: offset, size: 8) }

    public mutating func u8() -> UInt8? { read(1).map { UInt8($0) } }
    public mutating func u16() -> UInt16? { read(2).map { UInt16($0) } }
    public mutating func u32() -> UInt32? { read(4).map { UInt32($0) } }
    public mutating func u64() -> UInt64? { read(8) }
    public mutating func take(_ n: Int) -> [UInt8]? {
        guard n >= 0, remaining >= n else { return nil }
        defer { position += n }
        return Array(bytes[position..<position + n])
    }
    public mutating func rest() -> [UInt8] { take(remaining) ?? [] }
    private mutating func read(_ n: Int) -> UInt64? {
        guard let v = Self.le(bytes, at: position, size: n) else { return nil }
        position += n
        return v
    }
}

/// The array forms of an accessor that works in place (into and from caller memory), with its typed error passed
/// on: `Array.withUnsafeBytes` and `init(unsafeUninitializedCapacity:)` only rethrow untyped errors.
public enum InPlaceBytes {
    /// `count` bytes that `read` fills in place; a negative count is refused.
    public static func read(count: Int, _ read: (UnsafeMutableRawBufferPointer) throws(VFIOError) -> Void) throws(VFIOError) -> [UInt8] {
        guard count >= 0 else { throw .invalidArgument("read of \(count) bytes") }
        var failure: VFIOError?
        let out = [UInt8](unsafeUninitializedCapacity: count) { buf, n in
            do throws(VFIOError) { try read(UnsafeMutableRawBufferPointer(buf)) } catch {
                buf.initialize(repeating: 0)
                failure = error
            }
            n = count
        }
        if let failure { throw failure }
        return out
    }

    /// Copies what an array read returned into `buffer`, the in-place form of an accessor that reads arrays; fewer
    /// bytes than `buffer` holds is an I/O error (`what` names the read).
    public static func copy(_ bytes: [UInt8], into buffer: UnsafeMutableRawBufferPointer, what: String) throws(VFIOError) {
        guard bytes.count == buffer.count else { throw .system(errno: VFIOErrno.EIO, "short \(what)") }
        if let d = buffer.baseAddress, !bytes.isEmpty { bytes.withUnsafeBytes { d.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
    }

    /// Hands `data` to `write` in place.
    public static func write(_ data: [UInt8], _ write: (UnsafeRawBufferPointer) throws(VFIOError) -> Void) throws(VFIOError) {
        try data.withUnsafeBytes { raw in Result { () throws(VFIOError) in try write(raw) } }.get()
    }
}
