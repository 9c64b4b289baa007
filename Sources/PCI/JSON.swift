// A small ordered JSON value: decoders build it, commands print it. Key order is
// the order fields were added (spec order), so output is stable and diffable.

public indirect enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])
    /// A register's decoded fields (`RegisterLayout.json(raw:at:)`), kept as the raw value and written
    /// straight into the output: a decode of a thousand functions holds ~10^5 of these, and building
    /// each one's object of fields only to write it out again was most of `decode --json`'s time.
    /// Reading into it (`self["fields"]`) sees the same object `tree` spells out.
    case register(RegisterJSON)

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.serialized() == b.serialized() }
    public func hash(into h: inout Hasher) { h.combine(serialized()) }

    /// A register or address as a `"0x..."` string (64-bit values do not fit a JSON double).
    public static func hexString<T: BinaryInteger>(_ v: T, digits: Int = 1) -> JSONValue {
        .string("0x" + hex(v, digits: digits))
    }

    public static func number<T: BinaryInteger>(_ v: T) -> JSONValue {
        if let i = Int64(exactly: v) { return .int(i) }
        return .uint(UInt64(truncatingIfNeeded: v))
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let kv) = self { return kv.first { $0.0 == key }?.1 }
        if case .register(let r) = self { return r.tree[key] }
        return nil
    }

    /// The same value with every `.register` spelled out as the object it stands for.
    public var materialized: JSONValue {
        switch self {
        case .register(let r): return r.tree
        case .array(let a): return .array(a.map(\.materialized))
        case .object(let kv): return .object(kv.map { ($0.0, $0.1.materialized) })
        default: return self
        }
    }

    public subscript(index: Int) -> JSONValue? {
        if case .array(let a) = self, index >= 0, index < a.count { return a[index] }
        return nil
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .uint(let u): return Int64(exactly: u)
        default: return nil
        }
    }
    public var boolValue: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var arrayValue: [JSONValue]? { if case .array(let a) = self { return a }; return nil }

    /// Serialized JSON; `pretty` indents by two spaces.
    public func serialized(pretty: Bool = false) -> String {
        var keys = KeyRewriter(nil)
        return serialized(pretty: pretty, keys: &keys)
    }

    /// Serialized with every object key passed through `keys` (e.g. snake_case), without building a
    /// second tree: a thousand decoded functions are ~10^6 keys.
    public func serialized(pretty: Bool, indent: Int = 0, keys: inout KeyRewriter) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 16)
        write(into: &out, pretty: pretty, indent: indent, keys: &keys)
        return String(decoding: out, as: UTF8.self)
    }

    static func newline(_ out: inout [UInt8], indent: Int) {
        out.append(UInt8(ascii: "\n"))
        out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: indent * 2))
    }

    /// Appends the serialized value to `out` (what `serialized` returns, as UTF-8).
    public func write(into out: inout [UInt8], pretty: Bool, indent: Int, keys: inout KeyRewriter) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): JSONValue.writeDecimal(UInt64(bitPattern: i), negative: i < 0, into: &out)
        case .uint(let u): JSONValue.writeDecimal(u, negative: false, into: &out)
        case .string(let s): JSONValue.escape(s, into: &out)
        case .register(let r): r.write(into: &out, pretty: pretty, indent: indent, keys: &keys)
        case .array(let a):
            if a.isEmpty { out.append(contentsOf: "[]".utf8); return }
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                if pretty { JSONValue.newline(&out, indent: indent + 1) }
                v.write(into: &out, pretty: pretty, indent: indent + 1, keys: &keys)
            }
            if pretty { JSONValue.newline(&out, indent: indent) }
            out.append(UInt8(ascii: "]"))
        case .object(let kv):
            if kv.isEmpty { out.append(contentsOf: "{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in kv.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                if pretty { JSONValue.newline(&out, indent: indent + 1) }
                JSONValue.escape(keys.rewrite(k), into: &out)
                out.append(UInt8(ascii: ":"))
                if pretty { out.append(UInt8(ascii: " ")) }
                v.write(into: &out, pretty: pretty, indent: indent + 1, keys: &keys)
            }
            if pretty { JSONValue.newline(&out, indent: indent) }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// RFC 8259 §7: quote, backslash and control characters escaped; everything else (UTF-8) as is.
    static func escape(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Nearly every string needs no escape: copy it whole (small strings included: withUTF8 reaches
        // their inline bytes too).
        var s = s
        let copied: Bool = s.withUTF8 { bytes in
            for b in bytes where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if copied { out.append(UInt8(ascii: "\"")); return }
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "\n"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0..<0x20: out.append(contentsOf: ("\\u" + hex(b, digits: 4)).utf8)
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Rewrites object keys while a document is serialized, remembering each key's result (the same few
/// hundred register and field names repeat across functions).
public struct KeyRewriter {
    private let transform: ((String) -> String)?
    private var cache: [String: String] = [:]
    /// Keys become `JSONKey.snakeCase`: a register field's key is then its precomputed `jsonKey`.
    public let isSnakeCase: Bool
    /// Keys are written as they are.
    public var isIdentity: Bool { transform == nil }

    public init(_ transform: ((String) -> String)?) { self.transform = transform; isSnakeCase = false }
    private init(snakeCase: Void) { transform = JSONKey.snakeCase; isSnakeCase = true }

    /// The project's JSON convention: snake_case keys (`JSONKey.snakeCase`).
    public static var snakeCase: KeyRewriter { KeyRewriter(snakeCase: ()) }

    public mutating func rewrite(_ key: String) -> String {
        guard let transform else { return key }
        // Most keys are already snake_case ("vendor_id"): a scan of their bytes is cheaper than hashing them.
        if isSnakeCase && JSONKey.isSnakeCase(key) { return key }
        if let k = cache[key] { return k }
        let k = transform(key)
        cache[key] = k
        return k
    }
}

/// JSON key spelling.
public enum JSONKey {
    /// Whether `snakeCase(key) == key`: lowercase ASCII letters and digits, single underscores between them.
    public static func isSnakeCase(_ key: String) -> Bool {
        var key = key
        return key.withUTF8 { bytes in
            if bytes.isEmpty { return true }
            guard let first = bytes.first, let last = bytes.last, first != UInt8(ascii: "_"), last != UInt8(ascii: "_") else { return false }
            var previous: UInt8 = 0
            for b in bytes {
                let isLowerOrDigit = (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
                guard isLowerOrDigit || (b == UInt8(ascii: "_") && previous != UInt8(ascii: "_")) else { return false }
                previous = b
            }
            return true
        }
    }

    /// `"Memory Space Enable"` -> `memory_space_enable`, `savedAt` -> `saved_at`, `Cache_Capable` ->
    /// `cache_capable`, `SERR# Enable` -> `serr_enable`: lowercase, a word boundary at every run of other
    /// characters and at each lower-to-upper case change. ASCII only, byte by byte.
    public static func snakeCase(_ key: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(key.utf8.count + 4)
        var pendingUnderscore = false
        var previousWasLowerOrDigit = false
        for b in key.utf8 {
            let isUpper = b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")
            let isLowerOrDigit = (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
            guard isUpper || isLowerOrDigit else {
                pendingUnderscore = !out.isEmpty
                previousWasLowerOrDigit = false
                continue
            }
            if isUpper && previousWasLowerOrDigit { pendingUnderscore = true }
            if pendingUnderscore { out.append(UInt8(ascii: "_")); pendingUnderscore = false }
            out.append(isUpper ? b + 32 : b)
            previousWasLowerOrDigit = !isUpper
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Builds a JSON object in insertion order.
public struct JSONObject: Sendable {
    public private(set) var pairs: [(String, JSONValue)] = []
    public init() {}
    public mutating func set(_ key: String, _ value: JSONValue) {
        if let i = pairs.firstIndex(where: { $0.0 == key }) { pairs[i].1 = value } else { pairs.append((key, value)) }
    }
    public mutating func set(_ key: String, _ value: Bool) { set(key, .bool(value)) }
    public mutating func set(_ key: String, _ value: String) { set(key, .string(value)) }
    public mutating func set<T: BinaryInteger>(_ key: String, _ value: T) { set(key, .number(value)) }
    public var value: JSONValue { .object(pairs) }
}

extension RegisterLayout {
    /// `{"offset": n, "value": "0x...", "fields": {name: value, ...}}` for a raw value;
    /// field values are numbers, with the spec's meaning alongside when it names one
    /// (a `.register` value: written without building the object, see `RegisterJSON`).
    public func json(raw: UInt64, at offset: Int) -> JSONValue {
        .register(RegisterJSON(layout: self, raw: raw, offset: offset))
    }
}

/// A register's JSON: `{"offset": n, "value": "0x...", "fields": {...}}`, where each field that is not
/// reserved is `{"value": n, "meaning": "..."}` when the spec names its value, a bool when it is one bit,
/// else a number; fields in bit order.
public struct RegisterJSON: Sendable {
    public let layout: RegisterLayout
    public let raw: UInt64
    public let offset: Int

    /// The object, built (the reference the direct writer is tested against).
    public var tree: JSONValue {
        var o = JSONObject()
        o.set("offset", offset)
        o.set("value", .hexString(raw & layout.widthMask, digits: layout.width * 2))
        var f = JSONObject()
        for d in layout.decode(raw) where !d.field.access.isReserved {
            if let m = d.meaning {
                f.set(d.name, .object([("value", .number(d.value)), ("meaning", .string(m))]))
            } else if d.field.width == 1 {
                f.set(d.name, d.value != 0)
            } else {
                f.set(d.name, .number(d.value))
            }
        }
        o.set("fields", f.value)
        return o.value
    }

    /// Writes what `tree` would serialize to, byte for byte, without building it.
    func write(into out: inout [UInt8], pretty: Bool, indent: Int, keys: inout KeyRewriter) {
        func key(_ k: String, first: Bool, _ level: Int) {
            if !first { out.append(UInt8(ascii: ",")) }
            if pretty { JSONValue.newline(&out, indent: level) }
            JSONValue.escape(k, into: &out)
            out.append(UInt8(ascii: ":"))
            if pretty { out.append(UInt8(ascii: " ")) }
        }
        // The shape's own keys are lowercase words: unchanged by snake_case or by no rewriting at all.
        let plain = keys.isSnakeCase || keys.isIdentity
        let kOffset = plain ? "offset" : keys.rewrite("offset"), kValue = plain ? "value" : keys.rewrite("value")
        let kFields = plain ? "fields" : keys.rewrite("fields"), kMeaning = plain ? "meaning" : keys.rewrite("meaning")
        out.append(UInt8(ascii: "{"))
        key(kOffset, first: true, indent + 1)
        JSONValue.writeDecimal(UInt64(truncatingIfNeeded: offset), negative: offset < 0, into: &out)
        key(kValue, first: false, indent + 1)
        out.append(contentsOf: "\"0x".utf8)
        JSONValue.writeHex(raw & layout.widthMask, digits: layout.width * 2, into: &out)
        out.append(UInt8(ascii: "\""))
        key(kFields, first: false, indent + 1)
        var first = true
        func field(_ fields: UnsafeBufferPointer<RegisterField>, _ i: Int) {
            guard !fields[i].access.isReserved else { return }
            let v = fields[i].extract(raw)
            if first { out.append(UInt8(ascii: "{")) }
            key(keys.isSnakeCase ? fields[i].jsonKey : keys.rewrite(fields[i].name), first: first, indent + 2)
            first = false
            if !fields[i].values.isEmpty, let m = fields[i].values[v] {
                out.append(UInt8(ascii: "{"))
                key(kValue, first: true, indent + 3)
                JSONValue.writeDecimal(v, negative: false, into: &out)
                key(kMeaning, first: false, indent + 3)
                JSONValue.escape(m, into: &out)
                if pretty { JSONValue.newline(&out, indent: indent + 2) }
                out.append(UInt8(ascii: "}"))
            } else if fields[i].width == 1 {
                out.append(contentsOf: (v != 0 ? "true" : "false").utf8)
            } else {
                JSONValue.writeDecimal(v, negative: false, into: &out)
            }
        }
        layout.fields.withUnsafeBufferPointer { fields in
            var inBitOrder = true
            for i in fields.indices.dropFirst() where fields[i - 1].lsb >= fields[i].lsb { inBitOrder = false; break }
            if inBitOrder {
                for i in fields.indices { field(fields, i) }
            } else {
                for i in fields.indices.sorted(by: { fields[$0].lsb < fields[$1].lsb }) { field(fields, i) }
            }
        }
        if first {
            out.append(contentsOf: "{}".utf8)
        } else {
            if pretty { JSONValue.newline(&out, indent: indent + 1) }
            out.append(UInt8(ascii: "}"))
        }
        if pretty { JSONValue.newline(&out, indent: indent) }
        out.append(UInt8(ascii: "}"))
    }
}

extension JSONValue {
    /// `v` in decimal (with a leading minus when `negative`, `v` then being the two's complement bits).
    static func writeDecimal(_ v: UInt64, negative: Bool, into out: inout [UInt8]) {
        var m = negative ? 0 &- v : v
        if negative { out.append(UInt8(ascii: "-")) }
        if m < 10 { out.append(UInt8(ascii: "0") + UInt8(m)); return }
        var digits: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                      UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
            (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var n = 0
        withUnsafeMutableBytes(of: &digits) { buf in
            while m > 0 { buf[n] = UInt8(ascii: "0") + UInt8(m % 10); m /= 10; n += 1 }
            for i in stride(from: n - 1, through: 0, by: -1) { out.append(buf[i]) }
        }
    }

    /// `v` in lowercase hex, zero-padded to `digits`, as `hex(_:digits:)` spells it.
    static func writeHex(_ v: UInt64, digits: Int, into out: inout [UInt8]) {
        let significant = v == 0 ? 1 : (67 - v.leadingZeroBitCount) / 4
        for _ in 0..<max(0, digits - significant) { out.append(UInt8(ascii: "0")) }
        for i in stride(from: significant - 1, through: 0, by: -1) {
            let nibble = UInt8((v >> UInt64(i * 4)) & 0xF)
            out.append(nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
        }
    }
}

extension RegisterBlockLayout {
    /// Every register of the block that `read` can fetch, keyed by register name.
    public func json(base: Int, read: (RegisterLayout) -> UInt64?) -> JSONValue {
        var o = JSONObject()
        for r in registers {
            guard let raw = read(r) else { continue }
            o.set(r.name, r.json(raw: raw, at: base + r.offset))
        }
        return o.value
    }
}
