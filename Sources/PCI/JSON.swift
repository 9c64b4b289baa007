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
        return nil
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

    private static func newline(_ out: inout [UInt8], indent: Int) {
        out.append(UInt8(ascii: "\n"))
        for _ in 0..<indent { out.append(UInt8(ascii: " ")); out.append(UInt8(ascii: " ")) }
    }

    private func write(into out: inout [UInt8], pretty: Bool, indent: Int, keys: inout KeyRewriter) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): out.append(contentsOf: String(i).utf8)
        case .uint(let u): out.append(contentsOf: String(u).utf8)
        case .string(let s): JSONValue.escape(s, into: &out)
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
    private static func escape(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Nearly every string needs no escape: copy it whole.
        let copied: Bool? = s.utf8.withContiguousStorageIfAvailable { bytes in
            for b in bytes where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { return false }
            out.append(contentsOf: bytes)
            return true
        }
        if copied == true { out.append(UInt8(ascii: "\"")); return }
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

    public init(_ transform: ((String) -> String)?) { self.transform = transform }

    public mutating func rewrite(_ key: String) -> String {
        guard let transform else { return key }
        if let k = cache[key] { return k }
        let k = transform(key)
        cache[key] = k
        return k
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
    /// field values are numbers, with the spec's meaning alongside when it names one.
    public func json(raw: UInt64, at offset: Int) -> JSONValue {
        var o = JSONObject()
        o.set("offset", offset)
        o.set("value", .hexString(raw & widthMask, digits: width * 2))
        var f = JSONObject()
        for d in decode(raw) where !d.field.access.isReserved {
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
