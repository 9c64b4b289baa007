import Foundation
import PCI

/// The state file: a versioned JSON document holding one snapshot, its device's
/// identity (inside the snapshot) and a checksum of the snapshot.
///
/// ```json
/// {
///   "format" : "swift-cxl-state",
///   "version" : 1,
///   "checksum" : "crc32:1a2b3c4d",
///   "savedAt" : "2026-11-24T22:10:00Z",
///   "snapshot" : { "identity" : {...}, "layout" : {...}, "registers" : [...] }
/// }
/// ```
///
/// The checksum is CRC-32 (IEEE) over the canonical encoding of the snapshot (sorted
/// keys, no whitespace), so a file can be pretty-printed or re-indented without
/// invalidating it, but any change to a value is caught. Files are written
/// atomically: temporary file in the same directory, fsync, rename, fsync of the
/// directory, so a crash or a failed operation never leaves a half-written file in
/// place of a good one.
public enum CXLStateFile {
    public static let format = "swift-cxl-state"
    /// Version 2 (cxlkit 0.3): snake_case keys (`saved_at`, `dvsec_offset`, ...), the JSON convention of every
    /// cxlkit output. Version 1 (camelCase keys) is still read.
    public static let currentVersion = 2

    struct Envelope: Codable {
        var format: String
        var version: Int
        var checksum: String
        var savedAt: String?
        var snapshot: CXLStateSnapshot
    }

    struct Header: Decodable {
        var format: String?
        var version: Int?
    }

    /// The canonical bytes the checksum covers, with the key style of the file's version.
    static func canonical(_ snapshot: CXLStateSnapshot, version: Int = currentVersion) throws(CXLStateError) -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        if version >= 2 { e.keyEncodingStrategy = .convertToSnakeCase }
        do { return try e.encode(snapshot) } catch { throw .corruptFile("cannot encode snapshot: \(error)") }
    }

    public static func checksum(_ snapshot: CXLStateSnapshot, version: Int = currentVersion) throws(CXLStateError) -> String {
        "crc32:" + hex(CRC32.checksum(try canonical(snapshot, version: version)), digits: 8)
    }

    /// The file's bytes.
    public static func encode(_ snapshot: CXLStateSnapshot, savedAt: Date? = Date()) throws(CXLStateError) -> Data {
        let envelope = Envelope(format: format, version: currentVersion, checksum: try checksum(snapshot),
                                savedAt: savedAt.map { ISO8601DateFormatter().string(from: $0) }, snapshot: snapshot)
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.keyEncodingStrategy = .convertToSnakeCase
        do { return try e.encode(envelope) + Data("\n".utf8) } catch { throw .corruptFile("cannot encode: \(error)") }
    }

    /// Parse and check a state file's bytes: format, version, shape, checksum.
    public static func decode(_ data: Data) throws(CXLStateError) -> CXLStateSnapshot {
        guard !data.isEmpty else { throw .corruptFile("empty file") }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: data) } catch {
            throw .corruptFile("not JSON (truncated?): \(describe(error))")
        }
        guard header.format == format else {
            throw .corruptFile("not a \(format) file (format is \(header.format.map { "\"\($0)\"" } ?? "missing"))")
        }
        guard let version = header.version else { throw .corruptFile("no version") }
        guard version <= currentVersion else { throw .unsupportedVersion(found: version, supported: currentVersion) }
        guard version >= 1 else { throw .corruptFile("invalid version \(version)") }
        let envelope: Envelope
        let d = JSONDecoder()
        if version >= 2 { d.keyDecodingStrategy = .convertFromSnakeCase }
        do { envelope = try d.decode(Envelope.self, from: data) } catch {
            throw .corruptFile(describe(error))
        }
        let computed = try checksum(envelope.snapshot, version: version)
        guard computed == envelope.checksum else {
            throw .checksumMismatch(expected: envelope.checksum, computed: computed)
        }
        do { try envelope.snapshot.validate() } catch {
            throw .corruptFile("\(error)")
        }
        return envelope.snapshot
    }

    /// Read and check a state file.
    public static func read(from path: String) throws(CXLStateError) -> CXLStateSnapshot {
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { throw .fileIO("\(path): is a directory") }
        guard let bytes = readWholeFile(path, limit: 64 << 20) else {
            throw .fileIO("cannot read \(path): \(systemErrorText(errno))")
        }
        // Every problem with the contents names the file.
        do { return try decode(Data(bytes)) } catch {
            switch error {
            case .corruptFile(let why): throw .corruptFile("\(path): \(why)")
            case .checksumMismatch, .unsupportedVersion: throw .fileIO("\(path): \(error)")
            default: throw error
            }
        }
    }

    /// Write a state file: a regular file atomically (temporary file, fsync, rename, directory fsync), a FIFO or
    /// character device written through, never replaced (`OutputFile`). On any failure the previous file at
    /// `path`, if any, is left untouched.
    public static func write(_ snapshot: CXLStateSnapshot, to path: String) throws(CXLStateError) {
        try OutputFile.write(try encode(snapshot), to: path)
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c):
            return c.debugDescription + path(c.codingPath)
        case DecodingError.keyNotFound(let k, let c):
            return "missing \"\(k.stringValue)\"" + path(c.codingPath)
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return c.debugDescription + path(c.codingPath)
        default:
            return "\(error)"
        }
    }

    static func path(_ p: [CodingKey]) -> String {
        p.isEmpty ? "" : " at " + p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
}

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ data: Data) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in data { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
