/// Numbers people type for sizes and addresses: the one parser for every cxlkit option and every device profile,
/// so the same text means the same number everywhere.
///
/// Accepted: decimal (`4096`), hexadecimal (`0x1000`), and a binary-multiple suffix as cxl-cli and the kernel
/// take them: `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` (case-insensitive; `256M` = `256MiB` = 256 x 2^20). Blanks
/// and `_` between digits are ignored. Anything else, and any value past 2^64 - 1 (including after scaling), is
/// an error that says which; nothing traps.
public enum ByteCount {
    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case empty
        case notANumber(String)
        case tooLarge(String)

        public var description: String {
            switch self {
            case .empty: return "empty number"
            case .notANumber(let s): return "'\(s)' is not a number (use 4096, 0x1000, 256M, 256MiB, 1G, 1GiB, 1T)"
            case .tooLarge(let s): return "'\(s)' is too large (above 2^64 - 1)"
            }
        }
    }

    static let suffixes: [(String, UInt64)] = [
        ("kib", 1 << 10), ("mib", 1 << 20), ("gib", 1 << 30), ("tib", 1 << 40),
        ("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("t", 1 << 40),
    ]

    /// Parses `text`; see the type's documentation.
    public static func parse(_ text: String) throws(ParseError) -> UInt64 {
        var t = String(text.lowercased().filter { $0 != " " && $0 != "_" })
        guard !t.isEmpty else { throw .empty }
        var scale: UInt64 = 1
        let isHex = t.hasPrefix("0x")
        // A hex number's digits include b..f but never k/m/g/t/i, so a suffix is unambiguous either way.
        for (suffix, m) in suffixes where t.hasSuffix(suffix) && t.count > suffix.count {
            scale = m
            t.removeLast(suffix.count)
            break
        }
        let digits = isHex ? t.dropFirst(2) : Substring(t)
        guard !digits.isEmpty, digits.allSatisfy({ isHex ? $0.isHexDigit : $0.isASCII && $0.isNumber }) else {
            throw .notANumber(text)
        }
        guard let v = UInt64(digits, radix: isHex ? 16 : 10) else { throw .tooLarge(text) }
        let (r, o) = v.multipliedReportingOverflow(by: scale)
        if o { throw .tooLarge(text) }
        return r
    }

    /// "256 MiB", "4 GiB", "4097 bytes": exact, in the largest unit that divides the count, the way the
    /// spec and the kernel print sizes. Reports use it next to the byte count.
    public static func exact(_ bytes: UInt64) -> String {
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (u, name) in units where bytes >= u && bytes % u == 0 { return "\(bytes / u) \(name)" }
        return "\(bytes) bytes"
    }

    /// "256.00 MiB", "1.50 GiB", "4096 B": a byte count as cxl-cli's `-u/--human` prints it.
    public static func human(_ bytes: UInt64) -> String {
        let units: [(String, UInt64)] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        for (name, u) in units where bytes >= u {
            let whole = bytes / u, frac = (bytes % u) * 100 / u
            return "\(whole).\(frac < 10 ? "0" : "")\(frac) \(name)"
        }
        return "\(bytes) B"
    }
}
