// Reading and writing `lspci -x / -xxx / -xxxx` hex dumps.
//
// The format (pciutils lspci.c show_hex_dump, read back by lib/dump.c): for each
// function a line starting with its address (`bb:dd.f` or `dddd:bb:dd.f`) and a
// description, then lines `off: b0 b1 ... b15` with the offset in hex, then a blank
// line. `lspci -vvv -xxxx` interleaves tab-indented decoded lines; they are skipped.

/// One function read from a dump.
public struct DumpedFunction: Sendable, Hashable {
    /// The address as written in the dump, when it parses as one.
    public var address: PCIAddress?
    /// The address text as written (`0d:00.0`).
    public var addressText: String
    /// The rest of the header line (`CXL: Intel Corporation Device 0d93 (rev 01)`).
    public var description: String
    public var config: ConfigSpace

    public init(address: PCIAddress?, addressText: String, description: String, config: ConfigSpace) {
        self.address = address
        self.addressText = addressText
        self.description = description
        self.config = config
    }
}

/// Why a dump could not be read.
public struct DumpError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum LspciDump {
    /// Parses every function in an lspci hex dump. Throws on anything that is not a
    /// dump: no function header, hex lines before the first header, malformed hex
    /// lines, offsets past 4096, functions with fewer than 64 bytes.
    public static func parse(_ text: String) throws(DumpError) -> [DumpedFunction] {
        // Plain ASCII without CR (what lspci writes): parse the bytes. There a Character
        // is a byte, so the result and every error are those of the general path.
        var t = text
        let fast: Result<[DumpedFunction], DumpError>? = t.withUTF8 { u in
            u.allSatisfy({ $0 < 0x80 && $0 != 0x0D }) ? Result { () throws(DumpError) in try parseASCII(u) } : nil
        }
        if let fast { return try fast.get() }
        return try parseCharacters(text)
    }

    /// `parse` over ASCII bytes (no CR). Hex lines, nearly all of a dump, are read from
    /// the bytes; header lines and anything unusual go through the general code.
    private static func parseASCII(_ u: UnsafeBufferPointer<UInt8>) throws(DumpError) -> [DumpedFunction] {
        var dump = DumpAccumulator()
        @inline(__always) func hexValue(_ b: UInt8) -> Int? {
            switch b {
            case 0x30...0x39: return Int(b - 0x30)
            case 0x41...0x46: return Int(b - 0x41 + 10)
            case 0x61...0x66: return Int(b - 0x61 + 10)
            default: return nil
            }
        }
        @inline(__always) func isBlank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }

        var lineNo = 0
        var start = 0
        let n = u.count
        while start <= n {
            var end = start
            while end < n && u[end] != 0x0A { end += 1 }
            defer { start = end + 1 }
            lineNo += 1
            var i = start
            while i < end && isBlank(u[i]) { i += 1 }
            if i == end { continue }                          // empty or blank
            if isBlank(u[start]) { continue }                 // decoded lines of `lspci -vvv -xxxx`: indented
            var colon = start
            while colon < end && u[colon] != 0x3A { colon += 1 }
            let headLength = colon - start
            var isHex = colon < end && (1...4).contains(headLength) && (colon + 1 == end || u[colon + 1] == 0x20)
            var off = 0
            if isHex {
                for k in start..<colon {
                    guard let v = hexValue(u[k]) else { isHex = false; break }
                    off = off << 4 | v
                }
            }
            if isHex {
                guard dump.current != nil else { throw DumpError("line \(lineNo): hex data before any function header") }
                // Fields: runs of non-blank bytes after the colon. Counted first (the count
                // and range errors come before any bad byte), then parsed into place.
                var count = 0
                var k = colon + 1
                while k < end {
                    while k < end && isBlank(u[k]) { k += 1 }
                    if k == end { break }
                    count += 1
                    while k < end && !isBlank(u[k]) { k += 1 }
                }
                guard count > 0, count <= 16 else { throw DumpError("line \(lineNo): expected 1 to 16 hex bytes") }
                guard off + count <= pcieConfigSpaceSize else {
                    throw DumpError("line \(lineNo): offset 0x\(hex(off, digits: 3)) past the 4096-byte config space")
                }
                try dump.current!.bytes.withUnsafeMutableBufferPointer { (dst) throws(DumpError) in
                    var j = off
                    var k = colon + 1
                    while k < end {
                        while k < end && isBlank(u[k]) { k += 1 }
                        if k == end { break }
                        let f0 = k
                        while k < end && !isBlank(u[k]) { k += 1 }
                        if k - f0 == 2, let hi = hexValue(u[f0]), let lo = hexValue(u[f0 + 1]) {
                            dst[j] = UInt8(hi << 4 | lo)
                        } else {
                            let f = String(decoding: UnsafeBufferPointer(rebasing: u[f0..<k]), as: UTF8.self)
                            guard f.count == 2, let b = UInt8(f, radix: 16) else { throw DumpError("line \(lineNo): bad hex byte \"\(f)\"") }
                            dst[j] = b
                        }
                        j += 1
                    }
                }
                dump.current!.covered = max(dump.current!.covered, off + count)
                continue
            }
            try dump.startFunction(Substring(String(decoding: UnsafeBufferPointer(rebasing: u[start..<end]), as: UTF8.self)), lineNo: lineNo)
        }
        return try dump.functions()
    }

    /// The general path: any text, Character by Character.
    static func parseCharacters(_ text: String) throws(DumpError) -> [DumpedFunction] {
        var dump = DumpAccumulator()

        var lineNo = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = Substring(rawLine)
            if line.hasSuffix("\r") { line = line.dropLast() }
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) { continue }
            // Decoded lines of `lspci -vvv -xxxx`: indented.
            if line.first == "\t" || line.first == " " { continue }
            if let colon = line.firstIndex(of: ":"), isHexOffsetLine(line, colon: colon) {
                guard dump.current != nil else { throw DumpError("line \(lineNo): hex data before any function header") }
                let off = Int(line[line.startIndex..<colon], radix: 16)!
                let fields = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" })
                guard !fields.isEmpty, fields.count <= 16 else { throw DumpError("line \(lineNo): expected 1 to 16 hex bytes") }
                guard off + fields.count <= pcieConfigSpaceSize else {
                    throw DumpError("line \(lineNo): offset 0x\(hex(off, digits: 3)) past the 4096-byte config space")
                }
                for (i, f) in fields.enumerated() {
                    guard f.count == 2, let b = UInt8(f, radix: 16) else { throw DumpError("line \(lineNo): bad hex byte \"\(f)\"") }
                    dump.current!.bytes[off + i] = b
                }
                dump.current!.covered = max(dump.current!.covered, off + fields.count)
                continue
            }
            try dump.startFunction(line, lineNo: lineNo)
        }
        return try dump.functions()
    }

    private static func isHexOffsetLine(_ line: Substring, colon: Substring.Index) -> Bool {
        let head = line[line.startIndex..<colon]
        guard (1...4).contains(head.count), head.allSatisfy(\.isHexDigit) else { return false }
        let after = line.index(after: colon)
        return after == line.endIndex || line[after] == " "
    }

    /// One function as `lspci -xxxx` prints it (or `-xxx` for a 256-byte, `-x` for a
    /// 64-byte image): header line, 16 bytes per line, blank line. Offsets are
    /// two hex digits below 0x100 and three from 0x100 on, as lspci writes them.
    public static func format(address: String, description: String, config: ConfigSpace) -> String {
        var s = address + " " + description + "\n"
        let n = config.count
        var off = 0
        while off < n {
            s += (off < 0x100 ? hex(off, digits: 2) : hex(off, digits: 3)) + ":"
            for i in off..<min(off + 16, n) { s += " " + hex(config.bytes[i], digits: 2) }
            s += "\n"
            off += 16
        }
        return s + "\n"
    }

    /// The header-line description lspci prints when it has no ID database:
    /// `Class 0502: Device 8086:0d93 (rev 01)`.
    public static func defaultDescription(_ config: ConfigSpace) -> String {
        let cls = (config.classCode ?? 0) >> 8
        var s = "Class \(hex(cls, digits: 4)): Device \(hex(config.vendorID ?? 0xFFFF, digits: 4)):\(hex(config.deviceID ?? 0xFFFF, digits: 4))"
        if let rev = config.read8(PCIHeader.revisionID.offset), rev != 0 { s += " (rev \(hex(rev, digits: 2)))" }
        return s
    }
}

/// Reads a config-space file: an lspci hex dump (one or many functions) or a raw
/// binary image (a sysfs `config` file copy: 64 to 4096 bytes).
public enum ConfigFile {
    public static func load(bytes: [UInt8], name: String) throws(DumpError) -> [DumpedFunction] {
        if bytes.isEmpty { throw DumpError("\(name): empty file") }
        if looksLikeText(bytes) {
            do {
                return try LspciDump.parse(String(decoding: bytes, as: UTF8.self))
            } catch {
                throw DumpError("\(name): \(error.message)")
            }
        }
        guard bytes.count >= 64 else {
            throw DumpError("\(name): \(bytes.count) bytes is too short for a config space (at least 64)")
        }
        guard bytes.count <= pcieConfigSpaceSize else {
            throw DumpError("\(name): \(bytes.count) bytes is larger than a 4096-byte config space")
        }
        return [DumpedFunction(address: nil, addressText: "00:00.0", description: "", config: ConfigSpace(bytes: bytes))]
    }

    /// Printable ASCII and whitespace only.
    static func looksLikeText(_ bytes: [UInt8]) -> Bool {
        bytes.prefix(8192).allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
    }
}

/// The functions a dump has produced so far, and the one being read; shared by the
/// byte-level and the general parser so both judge headers and short dumps alike.
private struct DumpAccumulator {
    var out: [DumpedFunction] = []
    var current: (address: PCIAddress?, text: String, desc: String, bytes: [UInt8], covered: Int, line: Int)?

    mutating func finish() throws(DumpError) {
        guard let c = current else { return }
        guard c.covered >= 64 else {
            throw DumpError("line \(c.line): function \(c.text) has \(c.covered) bytes of config space; a dump needs at least 64 (lspci -x)")
        }
        out.append(DumpedFunction(address: c.address, addressText: c.text, description: c.desc,
                                  config: ConfigSpace(bytes: Array(c.bytes.prefix(c.covered)))))
        current = nil
    }

    /// A line that is not hex data must be a function header: address, space, description.
    mutating func startFunction(_ line: Substring, lineNo: Int) throws(DumpError) {
        let firstWord = line.prefix { $0 != " " && $0 != "\t" }
        guard let addr = PCIAddress(firstWord) else {
            let shown = line.count > 40 ? String(line.prefix(40)) + "..." : String(line)
            throw DumpError("line \(lineNo): not an lspci hex dump line: \"\(shown)\"")
        }
        try finish()
        let desc = line.dropFirst(firstWord.count).drop { $0 == " " }
        current = (addr, String(firstWord), String(desc), [UInt8](repeating: 0, count: pcieConfigSpaceSize), 0, lineNo)
    }

    mutating func functions() throws(DumpError) -> [DumpedFunction] {
        try finish()
        guard !out.isEmpty else { throw DumpError("no functions in dump (expected `lspci -xxxx` output)") }
        return out
    }
}
