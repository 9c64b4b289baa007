import Foundation
import PCI

/// The one convention of every `--json` output, after cxl-cli's (docs in the README, "JSON output"; a JSON
/// Schema per command under `schemas/`):
///
/// - keys are snake_case only: register and field names too (`memory_space_enable`, `lock_on_commit`);
/// - register values and addresses are `"0x..."` strings (64-bit values do not survive a JSON double);
///   byte counts and other counts are integers;
/// - every document has `command`, `metadata` (`tool`, `version`), a top-level `succeeded` and a `problems`
///   list (empty when there are none), then the command's own fields.
public enum JSONOutput {
    /// Keys of the state reports whose integer values are register values or addresses: printed `"0x..."`.
    static let registerValueKeys: Set<String> = ["a", "b", "saved", "live", "written", "after", "before", "value",
                                                  "base", "address", "expected", "found", "offset"]

    /// Any Encodable report as a JSON value under the convention.
    public static func value<T: Encodable>(_ v: T) -> JSONValue {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        guard let data = try? e.encode(v), let any = try? JSONDecoder().decode(AnyJSON.self, from: data) else { return .null }
        return any.value.conventional(parentKey: nil)
    }

    /// The fields of an Encodable report, under the convention.
    public static func fields<T: Encodable>(_ report: T) -> [(String, JSONValue)] {
        if case .object(let kv) = value(report) { return kv }
        return [("report", value(report))]
    }

    /// The document for a report: its fields after the envelope (`succeeded` and `problems` from the arguments).
    public static func document<T: Encodable>(command: String, succeeded: Bool, problems: [String], report: T) -> String {
        document(command: command, succeeded: succeeded, problems: problems, fields(report).filter { $0.0 != "succeeded" })
    }

    /// `-u/--human`, as cxl-cli has it: every byte count (a key ending in `_bytes`) printed as a string such
    /// as `"256.00 MiB"` instead of an integer. Set by the CLI around a command's run.
    @TaskLocal public static var human = false

    static func envelope(command: String, succeeded: Bool, problems: [String]) -> [(String, JSONValue)] {
        [
            ("command", .string(command)),
            ("metadata", .object([("tool", .string("cxlkit")), ("version", .string(CXLKit.version))])),
            ("succeeded", .bool(succeeded)),
            ("problems", .array(problems.map { .string($0) })),
        ]
    }

    /// The same document as `document(command:succeeded:problems:[(key, .array(elements))])`, byte for byte,
    /// written in pieces: the envelope, then each element of the one array field as it is built, so a decode
    /// of a thousand functions never holds every function's tree or the whole text at once.
    public static func streamDocument(command: String, succeeded: Bool, problems: [String], arrayKey: String, count: Int,
                                      element: (Int) -> JSONValue, writeBytes: ([UInt8]) -> Void) {
        var keys = KeyRewriter.snakeCase
        let head = JSONValue.object(envelope(command: command, succeeded: succeeded, problems: problems))
            .serialized(pretty: true, keys: &keys)
        // "{\n  ...\n}": reopen the object after its last envelope field.
        var out = Array((String(head.dropLast(2)) + ",\n  \"" + keys.rewrite(arrayKey) + "\": [").utf8)
        guard count > 0 else { writeBytes(out + Array("]\n}\n".utf8)); return }
        out.reserveCapacity(1 << 16)
        for i in 0..<count {
            let v = human ? element(i).humanized() : element(i)
            out.append(contentsOf: (i > 0 ? ",\n    " : "\n    ").utf8)
            v.write(into: &out, pretty: true, indent: 2, keys: &keys)
            writeBytes(out)
            out.removeAll(keepingCapacity: true)
        }
        writeBytes(Array("\n  ]\n}\n".utf8))
    }

    /// The document a `--json` command prints.
    public static func document(command: String, succeeded: Bool, problems: [String], _ fields: [(String, JSONValue)]) -> String {
        var pairs = envelope(command: command, succeeded: succeeded, problems: problems)
        for (k, v) in fields where !pairs.contains(where: { $0.0 == k }) { pairs.append((k, v)) }
        // snake_case while writing: no second tree.
        var keys = KeyRewriter.snakeCase
        let doc = human ? JSONValue.object(pairs).humanized() : JSONValue.object(pairs)
        return doc.serialized(pretty: true, keys: &keys) + "\n"
    }
}

extension JSONValue {
    /// Byte counts (integers under a key whose snake_case ends in `_bytes`) as `ByteCount.human` strings:
    /// `-u/--human`. Keys are left as they are (the writer snake_cases them).
    public func humanized() -> JSONValue {
        var keys = KeyRewriter.snakeCase
        return humanized(parentKey: nil, keys: &keys)
    }

    func humanized(parentKey: String?, keys: inout KeyRewriter) -> JSONValue {
        let isBytes = parentKey.map { keys.rewrite($0).hasSuffix("_bytes") } ?? false
        switch self {
        case .object(let kv):
            var out: [(String, JSONValue)] = []
            for (k, v) in kv { out.append((k, v.humanized(parentKey: k, keys: &keys))) }
            return .object(out)
        case .array(let a):
            var out: [JSONValue] = []
            for v in a { out.append(v.humanized(parentKey: parentKey, keys: &keys)) }
            return .array(out)
        case .int(let i) where isBytes && i >= 0: return .string(ByteCount.human(UInt64(i)))
        case .uint(let u) where isBytes: return .string(ByteCount.human(u))
        default: return self
        }
    }

    /// snake_case keys, and register values/addresses (by key) as `"0x..."`.
    func conventional(parentKey: String?) -> JSONValue {
        switch self {
        case .object(let kv): return .object(kv.map { let k = JSONKey.snakeCase($0.0); return (k, $0.1.conventional(parentKey: k)) })
        case .array(let a): return .array(a.map { $0.conventional(parentKey: parentKey) })
        case .int(let i) where parentKey.map(JSONOutput.registerValueKeys.contains) == true && i >= 0: return .hexString(UInt64(i))
        case .uint(let u) where parentKey.map(JSONOutput.registerValueKeys.contains) == true: return .hexString(u)
        default: return self
        }
    }
}

/// Any JSON document, decoded into a `JSONValue` (keys sorted, as the encoder wrote them).
struct AnyJSON: Decodable {
    let value: JSONValue

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: Decoder) throws {
        if let c = try? decoder.container(keyedBy: Key.self) {
            value = .object(try c.allKeys.sorted { $0.stringValue < $1.stringValue }.map { ($0.stringValue, try c.decode(AnyJSON.self, forKey: $0).value) })
            return
        }
        if var c = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !c.isAtEnd { items.append(try c.decode(AnyJSON.self).value) }
            value = .array(items)
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { value = .null }
        else if let b = try? c.decode(Bool.self) { value = .bool(b) }
        else if let i = try? c.decode(Int64.self) { value = .int(i) }
        else if let u = try? c.decode(UInt64.self) { value = .uint(u) }
        else if let d = try? c.decode(Double.self) { value = .string(String(d)) }
        else { value = .string(try c.decode(String.self)) }
    }
}
