#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import CXL
import PCI

/// Everything that makes one emulated device different from another: IDs, memory,
/// decoders, capabilities, firmware-committed power-on state, timing and faults.
///
/// Profiles are JSON. Every key is optional (missing keys take the defaults below, a
/// compliant Type-2 accelerator); unknown keys are an error, so a typo never silently
/// becomes a default. Numbers may be JSON numbers or strings: `"0x1e98"`, `"1GiB"`,
/// `"256MiB"`.
public struct DeviceProfile: Codable, Sendable, Equatable {
    public var name: String = "custom"
    public var description: String = ""

    // PCI identity (PCI 3.0 §6.2.1).
    public var vendorID: UInt16 = 0x1E98
    public var deviceID: UInt16 = 0x7202
    public var subsystemVendorID: UInt16 = 0x1E98
    public var subsystemID: UInt16 = 0x0001
    public var revisionID: UInt8 = 0x01
    /// 24-bit class code; default 0x120000, processing accelerator.
    public var classCode: UInt32 = 0x12_0000
    /// Device Serial Number capability value.
    public var serialNumber: UInt64 = 0x0000_1E98_7202_0001

    /// Device memory (DPA space) in bytes: a non-zero multiple of 256 MiB.
    public var memorySize: UInt64 = 1 << 30
    /// HDM decoders: 1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28 or 32 (§8.2.4.20.1).
    public var decoderCount: Int = 2
    /// MSI-X vectors (table in BAR0): 1 ... 256.
    public var msixVectors: Int = 4
    /// Also expose device memory as a 64-bit prefetchable BAR 2, for VMMs that do not
    /// route CXL.mem to a passed-through device.
    public var prefetchableMemoryBAR: Bool = false
    /// BAR accesses while Command Memory Space Enable is 0 read all ones and drop
    /// writes, as hardware completes them with Unsupported Request (PCIe 6.0
    /// §7.5.1.1.3). Off by default so tools can read an unconfigured device.
    public var memorySpaceEnableGatesBARs: Bool = false
    /// BAR0 also carries device-local SRAM (`EmulatedCXLDevice.sramWindow`): plain memory a VMM may mmap, as the
    /// accelerator register windows beside a real device's component registers are. Backed by a memfd
    /// (`EmulatedCXLDevice.bar0Backing`).
    public var deviceSRAM: Bool = false

    public var capabilities = Capabilities()
    /// Power-on state set up by device firmware; nil: everything at reset values.
    public var firmware: FirmwareState? = nil
    public var timing = Timing()
    public var faults = Faults()

    public init() {}

    /// DVSEC CXL Capability / Capability2 / Capability3 and HDM Decoder Capability bits.
    public struct Capabilities: Codable, Sendable, Equatable {
        /// Cache_Capable (§8.1.3.1): a Type-2 device with CXL.cache.
        public var cache: Bool = false
        /// Cache Writeback and Invalidate Capable.
        public var cacheWritebackInvalidate: Bool = false
        /// CXL Reset Capable.
        public var cxlReset: Bool = true
        /// CXL Reset Timeout in milliseconds: 10, 100, 1000, 10000 or 100000.
        public var cxlResetTimeoutMilliseconds: UInt64 = 100
        /// CXL Reset Mem Clr Capable.
        public var memClear: Bool = true
        public var viral: Bool = false
        public var pmInitCompletionReporting: Bool = true
        /// Capability2 Cache Size Unit (0 not reported, 1 64 KiB, 2 1 MiB) and Cache Size.
        public var cacheSizeUnit: UInt8 = 0
        public var cacheSize: UInt8 = 0
        /// Range 1 Size Low Memory_Active_Timeout encoding (0 = 1 s, 1 = 4 s, ... 4 = 256 s).
        public var memoryActiveTimeout: UInt8 = 0
        /// Capability3 (§8.1.3.9): whether volatile HDM content survives each reset by default.
        public var volatileHDMPreservedAfterColdReset: Bool = false
        public var volatileHDMPreservedAfterWarmReset: Bool = false
        public var volatileHDMPreservedAfterHotReset: Bool = false
        /// Capability3 bit 3: Control2 bit 4 chooses the state after a hot reset.
        public var volatileHDMStateAfterHotResetConfigurable: Bool = true
        public var directP2PMem: Bool = false
        /// HDM Decoder Capability (§8.2.4.20.1).
        public var interleave3_6_12Way: Bool = true
        public var interleave16Way: Bool = true
        public var interleaveA11to8: Bool = true
        public var interleaveA14to12: Bool = true

        public init() {}
    }

    /// Device memory programmed by firmware at power-on (Mem_HwInit_Mode, §8.1.3.1):
    /// decoder 0 committed (and usually locked) and DVSEC Range 1 Base programmed.
    public struct FirmwareState: Codable, Sendable, Equatable {
        /// Capability Mem_HwInit_Mode.
        public var memHwInitMode: Bool = true
        /// HPA base of the committed range (256 MiB aligned).
        public var base: UInt64 = 0x40_0000_0000
        /// Size of decoder 0; nil: all device memory.
        public var size: UInt64? = nil
        /// Lock On Commit of decoder 0.
        public var lockDecoder: Bool = true
        /// HDM Decoder Global Control HDM Decoder Enable.
        public var hdmDecoderEnable: Bool = true
        /// DVSEC Control Mem_Enable and Cache_Enable.
        public var memEnable: Bool = true
        public var cacheEnable: Bool = false
        /// DVSEC Lock CONFIG_LOCK.
        public var configLock: Bool = false

        public init() {}
    }

    /// Delays. Commit latency is absolute; the CXL Reset duration and the memory
    /// valid/active delays are multiplied by `timeFactor` (0.001 turns a 100 s timeout
    /// into 100 ms).
    public struct Timing: Codable, Sendable, Equatable {
        /// Commit (and de-commit) latency: 0 = Committed/Error visible on the next read.
        /// Spec budget is 10 ms (§8.2.4.20.12); larger values model a slow device.
        public var commitLatencyMicroseconds: UInt64 = 0
        /// How long a CXL Reset takes; nil: the timeout encoded in Capability.
        public var cxlResetMilliseconds: Double? = nil
        /// Cache write back and invalidate duration.
        public var cacheWritebackInvalidateMicroseconds: UInt64 = 0
        /// Memory_Info_Valid and Memory_Active after power-on / conventional reset / CXL Reset.
        public var memoryInfoValidMilliseconds: Double = 0
        public var memoryActiveMilliseconds: Double = 0
        public var timeFactor: Double = 1

        public init() {}
    }

    /// Non-compliant behaviour, each off by default.
    public struct Faults: Codable, Sendable, Equatable {
        /// FLR also resets the CXL DVSEC (CONFIG_LOCK included) and the HDM decoders,
        /// which CXL 3.1 §9.5 forbids: the device the seed thread is about.
        public var flrLosesCXLState: Bool = false
        /// Commit never sets Committed or Error Not Committed.
        public var commitNeverCompletes: Bool = false
        /// Every commit reports Error Not Committed.
        public var commitReportsError: Bool = false
        public var cxlResetNeverCompletes: Bool = false
        public var cxlResetReportsError: Bool = false
        /// Memory_Active never becomes 1.
        public var memoryNeverActive: Bool = false

        public init() {}
    }
}

// MARK: - Errors

public enum ProfileError: Error, Sendable, Equatable, CustomStringConvertible {
    case unknownName(String, available: [String])
    case unreadable(path: String, reason: String)
    case malformed(source: String, reason: String)
    case invalid(String)

    public var description: String {
        switch self {
        case .unknownName(let n, let a):
            return "no emulated device profile named '\(n)' (available: \(a.joined(separator: ", ")); or give a path to a .json profile)"
        case .unreadable(let p, let r): return "cannot read profile \(p): \(r)"
        case .malformed(let s, let r): return "profile \(s) is not a valid device profile: \(r)"
        case .invalid(let r): return "invalid device profile: \(r)"
        }
    }
}

// MARK: - Loading

extension DeviceProfile {
    /// Names of the shipped profiles.
    public static var namedProfiles: [String] { NamedProfiles.all.keys.sorted() }

    /// A shipped profile by name: `type2`, `gpu-fw-committed`, `flr-loses-state`.
    public static func named(_ name: String) throws(ProfileError) -> DeviceProfile {
        guard let profile = NamedProfiles.all[name] else { throw .unknownName(name, available: namedProfiles) }
        return profile
    }

    /// The largest profile file `load(path:)` reads.
    static let maximumFileSize = 4 << 20

    /// A profile from a JSON file (through PCI's `readWholeFile`: O_CLOEXEC, EINTR retried, closed on every path).
    public static func load(path: String) throws(ProfileError) -> DeviceProfile {
        guard let data = readWholeFile(path, limit: maximumFileSize + 1) else {
            throw .unreadable(path: path, reason: systemErrorText(errno))
        }
        if data.count > maximumFileSize { throw .unreadable(path: path, reason: "larger than 4 MiB") }
        return try decode(data, source: path)
    }

    /// `NAME` or a path (anything containing `/` or ending in `.json`).
    public static func resolve(_ spec: String) throws(ProfileError) -> DeviceProfile {
        if spec.contains("/") || spec.hasSuffix(".json") { return try load(path: spec) }
        return try named(spec)
    }

    public static func decode(_ json: [UInt8], source: String = "<json>") throws(ProfileError) -> DeviceProfile {
        let p: DeviceProfile
        do {
            let given = try JSONDecoder().decode(ProfileJSON.self, from: Data(json))
            let completed = try DeviceProfile.completed(given, path: [])
            p = try JSONDecoder().decode(DeviceProfile.self, from: JSONEncoder().encode(completed))
        } catch let e as ProfileJSON.Problem {
            throw .malformed(source: source, reason: e.reason)
        } catch let e as DecodingError {
            throw .malformed(source: source, reason: describe(e))
        } catch {
            throw .malformed(source: source, reason: "\(error)")
        }
        try p.validate()
        return p
    }

    public func jsonString() -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard let d = try? e.encode(self) else { return "{}" }
        return String(decoding: d, as: UTF8.self)
    }

    private static func describe(_ e: DecodingError) -> String {
        func path(_ c: [CodingKey]) -> String {
            c.isEmpty ? "top level" : c.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
        }
        switch e {
        case .typeMismatch(_, let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        case .valueNotFound(_, let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c): return "\(path(c.codingPath + [k])): missing"
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    /// Checks what the type system cannot.
    public func validate() throws(ProfileError) {
        if memorySize == 0 || memorySize % hdmGranule != 0 {
            throw .invalid("memorySize \(memorySize) is not a non-zero multiple of 256 MiB")
        }
        if memorySize > 1 << 46 { throw .invalid("memorySize \(memorySize) is larger than 64 TiB") }
        if HDMDecoderCountEncoding.encoding(forDecoders: decoderCount) == nil {
            throw .invalid("decoderCount \(decoderCount) has no HDM Decoder Count encoding (1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32)")
        }
        if !(1...256).contains(msixVectors) { throw .invalid("msixVectors \(msixVectors) is not in 1...256 (the table is one 4 KiB page of BAR0)") }
        if classCode > 0xFF_FFFF { throw .invalid("classCode \(hex64(UInt64(classCode))) is wider than 24 bits") }
        let c = capabilities
        if !CXLDeviceDVSEC.resetTimeoutMilliseconds.values.contains(c.cxlResetTimeoutMilliseconds) {
            throw .invalid("capabilities.cxlResetTimeoutMilliseconds \(c.cxlResetTimeoutMilliseconds) is not one of 10, 100, 1000, 10000, 100000")
        }
        if c.cacheSizeUnit > 2 { throw .invalid("capabilities.cacheSizeUnit \(c.cacheSizeUnit) is reserved (0, 1 or 2)") }
        if c.memoryActiveTimeout > 4 { throw .invalid("capabilities.memoryActiveTimeout \(c.memoryActiveTimeout) is reserved (0 ... 4)") }
        if c.memClear && !c.cxlReset { throw .invalid("capabilities.memClear needs capabilities.cxlReset") }
        if !(timing.timeFactor >= 0) || !timing.timeFactor.isFinite { throw .invalid("timing.timeFactor must be a finite number >= 0") }
        if let r = timing.cxlResetMilliseconds, !(r >= 0) { throw .invalid("timing.cxlResetMilliseconds must be >= 0") }
        if !(timing.memoryInfoValidMilliseconds >= 0) || !(timing.memoryActiveMilliseconds >= 0) {
            throw .invalid("timing memory delays must be >= 0")
        }
        if let f = firmware {
            let size = f.size ?? memorySize
            if f.base % hdmGranule != 0 { throw .invalid("firmware.base \(hex64(f.base)) is not 256 MiB aligned") }
            if size % hdmGranule != 0 { throw .invalid("firmware.size \(hex64(size)) is not a multiple of 256 MiB") }
            if size > memorySize { throw .invalid("firmware.size \(hex64(size)) exceeds memorySize") }
            if f.base.addingReportingOverflow(size).overflow { throw .invalid("firmware range wraps past 2^64") }
        }
    }

    /// The Capability [10:8] encoding of the reset timeout.
    var cxlResetTimeoutEncoding: UInt64 {
        CXLDeviceDVSEC.resetTimeoutMilliseconds.first { $0.value == capabilities.cxlResetTimeoutMilliseconds }?.key ?? 1
    }
}

// MARK: - Lenient, strict decoding

/// A part of a profile that JSON states key by key: the profile itself and each nested object. Every key is optional
/// (left out: the default `init()` has), numbers may be strings (`"0x1e98"`, `"1GiB"`: `ByteCount`), and a key that is
/// not a stored property is an error, so a typo never silently becomes a default. Done once for every part
/// (`completed(_:path:)`): the given object is laid over the encoding of the defaults, and the result decodes through
/// the synthesized `Decodable`, which `Codable`'s own rules (every key present, numbers as numbers) then fit.
protocol ProfileSection: Codable {
    init()
    /// The keys whose values are parts of their own (those whose default is nil included).
    static var sections: [String: any ProfileSection.Type] { get }
}

extension ProfileSection {
    static var sections: [String: any ProfileSection.Type] { [:] }

    /// The keys a JSON object of this part may hold, each with its default: the stored properties, as the synthesized
    /// coding names them.
    static var fields: [(key: String, default: Any)] {
        Mirror(reflecting: Self()).children.compactMap { c in c.label.map { ($0, c.value) } }
    }

    /// `given` laid over the defaults' encoding: each given key replaces the default's (a part is laid over its own
    /// defaults); a string where the default is not a string becomes the number it spells; an integer must fit the
    /// field's type. What is not an object is left to the decoder to refuse.
    static func completed(_ given: ProfileJSON, path: [String]) throws(ProfileJSON.Problem) -> ProfileJSON {
        guard case .object(let object) = given else { return given }
        var out: [String: ProfileJSON] = [:]
        if let d = try? JSONEncoder().encode(Self()), case .object(let defaults)? = try? JSONDecoder().decode(ProfileJSON.self, from: d) {
            out = defaults
        }
        let fields = self.fields
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            let at = (path + [key]).joined(separator: ".")
            guard let field = fields.first(where: { $0.key == key }) else {
                throw ProfileJSON.Problem("\(at): unknown key '\(key)' in \(path.last ?? "the profile") (known: \(fields.map(\.key).joined(separator: ", ")))")
            }
            if let section = sections[key] {
                out[key] = try section.completed(value, path: path + [key])
                continue
            }
            var v = value
            if case .string(let text) = value, out[key]?.isString != true {
                guard let n = try? ByteCount.parse(text) else {
                    throw ProfileJSON.Problem("\(at): '\(text)' is not a number (use 4096, \"0x1000\", \"256MiB\", \"1GiB\")")
                }
                v = .uint(n)
            }
            if let type = Swift.type(of: field.default) as? any FixedWidthInteger.Type, !v.fits(type) {
                throw ProfileJSON.Problem("\(at): \(value.text) is not a number that fits \(type) (use 4096, \"0x1000\", \"256MiB\", \"1GiB\")")
            }
            out[key] = v
        }
        return .object(out)
    }
}

extension DeviceProfile: ProfileSection {
    static var sections: [String: any ProfileSection.Type] {
        ["capabilities": Capabilities.self, "firmware": FirmwareState.self, "timing": Timing.self, "faults": Faults.self]
    }
}
extension DeviceProfile.Capabilities: ProfileSection {}
extension DeviceProfile.FirmwareState: ProfileSection {}
extension DeviceProfile.Timing: ProfileSection {}
extension DeviceProfile.Faults: ProfileSection {}

/// Any JSON value, as a profile's text holds it (integers kept exact to 64 bits).
indirect enum ProfileJSON: Codable, Equatable {
    case null
    case bool(Bool)
    case uint(UInt64)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([ProfileJSON])
    case object([String: ProfileJSON])

    /// What is wrong with a profile's JSON, said with the key's path.
    struct Problem: Error { let reason: String; init(_ reason: String) { self.reason = reason } }

    var isString: Bool { if case .string = self { return true }; return false }

    /// A JSON integer that `T` holds exactly, or anything that is not an integer (the decoder judges those).
    func fits<T: FixedWidthInteger>(_: T.Type) -> Bool {
        switch self {
        case .uint(let u): return T(exactly: u) != nil
        case .int(let i): return T(exactly: i) != nil
        default: return true
        }
    }

    /// The value as the profile spelt it, for messages.
    var text: String {
        switch self {
        case .string(let s): return "'\(s)'"
        case .uint(let u): return "\(u)"
        case .int(let i): return "\(i)"
        default: return "the value"
        }
    }

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let v = try? c.decode(Bool.self) { self = .bool(v) }
        else if let v = try? c.decode(UInt64.self) { self = .uint(v) }
        else if let v = try? c.decode(Int64.self) { self = .int(v) }
        else if let v = try? c.decode(Double.self) { self = .double(v) }
        else if let v = try? c.decode(String.self) { self = .string(v) }
        else if let v = try? c.decode([ProfileJSON].self) { self = .array(v) }
        else { self = .object(try c.decode([String: ProfileJSON].self)) }
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case .bool(let v): try c.encode(v)
        case .uint(let v): try c.encode(v)
        case .int(let v): try c.encode(v)
        case .double(let v): try c.encode(v)
        case .string(let v): try c.encode(v)
        case .array(let v): try c.encode(v)
        case .object(let v): try c.encode(v)
        }
    }
}
