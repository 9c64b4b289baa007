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
        var out = ""
        write(into: &out, pretty: pretty, indent: 0)
        return out
    }

    private func write(into out: inout String, pretty: Bool, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .string(let s): JSONValue.escape(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                v.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "]"
        case .object(let kv):
            if kv.isEmpty { out += "{}"; return }
            out += "{"
            for (i, (k, v)) in kv.enumerated() {
                if i > 0 { out += "," }
                if pretty { out += "\n" + String(repeating: "  ", count: indent + 1) }
                JSONValue.escape(k, into: &out)
                out += pretty ? ": " : ":"
                v.write(into: &out, pretty: pretty, indent: indent + 1)
            }
            if pretty { out += "\n" + String(repeating: "  ", count: indent) }
            out += "}"
        }
    }

    private static func escape(_ s: String, into out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += "\\u" + hex(u.value, digits: 4) } else { out.unicodeScalars.append(u) }
            }
        }
        out += "\""
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
