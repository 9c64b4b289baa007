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

    /// A profile from a JSON file.
    public static func load(path: String) throws(ProfileError) -> DeviceProfile {
        guard let f = fopen(path, "rb") else { throw .unreadable(path: path, reason: systemErrorText(errno)) }
        defer { fclose(f) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buf, 1, buf.count, f)
            if n > 0 { data += buf[0..<n] }
            if n < buf.count { break }
            if data.count > 1 << 22 { throw .unreadable(path: path, reason: "larger than 4 MiB") }
        }
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
            p = try JSONDecoder().decode(DeviceProfile.self, from: Data(json))
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

/// Any JSON object key.
struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Reads an object whose keys are all optional, rejecting keys it was not asked for.
struct ObjectReader {
    let c: KeyedDecodingContainer<AnyKey>
    var known: [String] = []

    init(_ decoder: Decoder) throws { c = try decoder.container(keyedBy: AnyKey.self) }

    mutating func value<T: Decodable>(_ key: String, _ fallback: T) throws -> T {
        known.append(key)
        return try c.decodeIfPresent(T.self, forKey: AnyKey(key)) ?? fallback
    }

    mutating func optional<T: Decodable>(_ key: String, _ fallback: T?) throws -> T? {
        known.append(key)
        if try !c.contains(AnyKey(key)) || c.decodeNil(forKey: AnyKey(key)) { return fallback }
        return try c.decode(T.self, forKey: AnyKey(key))
    }

    mutating func number<T: FixedWidthInteger & Decodable>(_ key: String, _ fallback: T) throws -> T {
        known.append(key)
        let k = AnyKey(key)
        guard c.contains(k) else { return fallback }
        if let v = try? c.decode(T.self, forKey: k) { return v }
        let s = try c.decode(String.self, forKey: k)
        guard let v = parseNumber(s), let t = T(exactly: v) else {
            throw DecodingError.dataCorruptedError(forKey: k, in: c, debugDescription: "'\(s)' is not a number that fits \(T.self) (use 4096, \"0x1000\", \"256MiB\", \"1GiB\")")
        }
        return t
    }

    mutating func optionalNumber(_ key: String, _ fallback: UInt64?) throws -> UInt64? {
        guard try c.contains(AnyKey(key)) && !c.decodeNil(forKey: AnyKey(key)) else { known.append(key); return fallback }
        return try number(key, UInt64(0))
    }

    func finish(_ what: String) throws {
        for k in c.allKeys where !known.contains(k.stringValue) {
            throw DecodingError.dataCorruptedError(forKey: k, in: c,
                debugDescription: "unknown key '\(k.stringValue)' in \(what) (known: \(known.joined(separator: ", ")))")
        }
    }
}

/// "4096", "0x1000", "256MiB", "256M", "1 GiB", "2KiB": the same numbers every cxlkit option takes (`ByteCount`).
func parseNumber(_ s: String) -> UInt64? { try? ByteCount.parse(s) }

extension DeviceProfile {
    public init(from decoder: Decoder) throws {
        self.init()
        var r = try ObjectReader(decoder)
        name = try r.value("name", name)
        description = try r.value("description", description)
        vendorID = try r.number("vendorID", vendorID)
        deviceID = try r.number("deviceID", deviceID)
        subsystemVendorID = try r.number("subsystemVendorID", subsystemVendorID)
        subsystemID = try r.number("subsystemID", subsystemID)
        revisionID = try r.number("revisionID", revisionID)
        classCode = try r.number("classCode", classCode)
        serialNumber = try r.number("serialNumber", serialNumber)
        memorySize = try r.number("memorySize", memorySize)
        decoderCount = try r.number("decoderCount", decoderCount)
        msixVectors = try r.number("msixVectors", msixVectors)
        prefetchableMemoryBAR = try r.value("prefetchableMemoryBAR", prefetchableMemoryBAR)
        memorySpaceEnableGatesBARs = try r.value("memorySpaceEnableGatesBARs", memorySpaceEnableGatesBARs)
        deviceSRAM = try r.value("deviceSRAM", deviceSRAM)
        capabilities = try r.value("capabilities", capabilities)
        firmware = try r.optional("firmware", firmware)
        timing = try r.value("timing", timing)
        faults = try r.value("faults", faults)
        try r.finish("the profile")
    }
}

extension DeviceProfile.Capabilities {
    public init(from decoder: Decoder) throws {
        self.init()
        var r = try ObjectReader(decoder)
        cache = try r.value("cache", cache)
        cacheWritebackInvalidate = try r.value("cacheWritebackInvalidate", cacheWritebackInvalidate)
        cxlReset = try r.value("cxlReset", cxlReset)
        cxlResetTimeoutMilliseconds = try r.number("cxlResetTimeoutMilliseconds", cxlResetTimeoutMilliseconds)
        memClear = try r.value("memClear", memClear)
        viral = try r.value("viral", viral)
        pmInitCompletionReporting = try r.value("pmInitCompletionReporting", pmInitCompletionReporting)
        cacheSizeUnit = try r.number("cacheSizeUnit", cacheSizeUnit)
        cacheSize = try r.number("cacheSize", cacheSize)
        memoryActiveTimeout = try r.number("memoryActiveTimeout", memoryActiveTimeout)
        volatileHDMPreservedAfterColdReset = try r.value("volatileHDMPreservedAfterColdReset", volatileHDMPreservedAfterColdReset)
        volatileHDMPreservedAfterWarmReset = try r.value("volatileHDMPreservedAfterWarmReset", volatileHDMPreservedAfterWarmReset)
        volatileHDMPreservedAfterHotReset = try r.value("volatileHDMPreservedAfterHotReset", volatileHDMPreservedAfterHotReset)
        volatileHDMStateAfterHotResetConfigurable = try r.value("volatileHDMStateAfterHotResetConfigurable", volatileHDMStateAfterHotResetConfigurable)
        directP2PMem = try r.value("directP2PMem", directP2PMem)
        interleave3_6_12Way = try r.value("interleave3_6_12Way", interleave3_6_12Way)
        interleave16Way = try r.value("interleave16Way", interleave16Way)
        interleaveA11to8 = try r.value("interleaveA11to8", interleaveA11to8)
        interleaveA14to12 = try r.value("interleaveA14to12", interleaveA14to12)
        try r.finish("capabilities")
    }
}

extension DeviceProfile.FirmwareState {
    public init(from decoder: Decoder) throws {
        self.init()
        var r = try ObjectReader(decoder)
        memHwInitMode = try r.value("memHwInitMode", memHwInitMode)
        base = try r.number("base", base)
        size = try r.optionalNumber("size", size)
        lockDecoder = try r.value("lockDecoder", lockDecoder)
        hdmDecoderEnable = try r.value("hdmDecoderEnable", hdmDecoderEnable)
        memEnable = try r.value("memEnable", memEnable)
        cacheEnable = try r.value("cacheEnable", cacheEnable)
        configLock = try r.value("configLock", configLock)
        try r.finish("firmware")
    }
}

extension DeviceProfile.Timing {
    public init(from decoder: Decoder) throws {
        self.init()
        var r = try ObjectReader(decoder)
        commitLatencyMicroseconds = try r.number("commitLatencyMicroseconds", commitLatencyMicroseconds)
        cxlResetMilliseconds = try r.optional("cxlResetMilliseconds", cxlResetMilliseconds)
        cacheWritebackInvalidateMicroseconds = try r.number("cacheWritebackInvalidateMicroseconds", cacheWritebackInvalidateMicroseconds)
        memoryInfoValidMilliseconds = try r.value("memoryInfoValidMilliseconds", memoryInfoValidMilliseconds)
        memoryActiveMilliseconds = try r.value("memoryActiveMilliseconds", memoryActiveMilliseconds)
        timeFactor = try r.value("timeFactor", timeFactor)
        try r.finish("timing")
    }
}

extension DeviceProfile.Faults {
    public init(from decoder: Decoder) throws {
        self.init()
        var r = try ObjectReader(decoder)
        flrLosesCXLState = try r.value("flrLosesCXLState", flrLosesCXLState)
        commitNeverCompletes = try r.value("commitNeverCompletes", commitNeverCompletes)
        commitReportsError = try r.value("commitReportsError", commitReportsError)
        cxlResetNeverCompletes = try r.value("cxlResetNeverCompletes", cxlResetNeverCompletes)
        cxlResetReportsError = try r.value("cxlResetReportsError", cxlResetReportsError)
        memoryNeverActive = try r.value("memoryNeverActive", memoryNeverActive)
        try r.finish("faults")
    }
}
