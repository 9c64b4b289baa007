// PCI function addresses: `dddd:bb:dd.f` (sysfs) or `bb:dd.f` (lspci without -D).

/// A PCI function address (PCI Firmware 3.3 "segment:bus:device.function").
public struct PCIAddress: Sendable, Hashable, Comparable, CustomStringConvertible, Codable {
    public var domain: UInt32
    public var bus: UInt8
    public var device: UInt8
    public var function: UInt8

    public init(domain: UInt32 = 0, bus: UInt8, device: UInt8, function: UInt8) {
        self.domain = domain
        self.bus = bus
        self.device = device & 0x1F
        self.function = function & 0x7
    }

    /// Parses `dddd:bb:dd.f` or `bb:dd.f` (hex; function 0-7, device 0-1f). Returns nil
    /// for anything else, so it can be used to tell addresses from file names.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2 || parts.count == 3 else { return nil }
        var domain: UInt32 = 0
        if parts.count == 3 {
            guard (1...8).contains(parts[0].count), let d = UInt32(parts[0], radix: 16) else { return nil }
            domain = d
        }
        let busText = parts[parts.count - 2]
        let devfn = parts[parts.count - 1].split(separator: ".", omittingEmptySubsequences: false)
        guard (1...2).contains(busText.count), let bus = UInt8(busText, radix: 16),
              devfn.count == 2, (1...2).contains(devfn[0].count), devfn[1].count == 1,
              let dev = UInt8(devfn[0], radix: 16), dev < 32,
              let fn = UInt8(devfn[1], radix: 16), fn < 8 else { return nil }
        self.init(domain: domain, bus: bus, device: dev, function: fn)
    }

    /// `dddd:bb:dd.f`, the sysfs spelling.
    public var description: String {
        "\(hex(domain, digits: 4)):\(hex(bus, digits: 2)):\(hex(device, digits: 2)).\(function)"
    }

    /// `bb:dd.f` when the domain is 0, as lspci prints it without -D.
    public var lspciDescription: String {
        let short = "\(hex(bus, digits: 2)):\(hex(device, digits: 2)).\(function)"
        return domain == 0 ? short : "\(hex(domain, digits: 4)):" + short
    }

    public static func < (a: PCIAddress, b: PCIAddress) -> Bool {
        (a.domain, a.bus, a.device, a.function) < (b.domain, b.bus, b.device, b.function)
    }
}

/// lspci's `-s [[[[<domain>]:]<bus>]:][<slot>][.[<func>]]`: a function selector whose omitted parts match
/// anything (`3b:` is every function on bus 0x3b, `.1` every function 1, `0001::` domain 1). Hex numbers.
public struct PCISelector: Sendable, Hashable, CustomStringConvertible {
    public var domain: UInt32?
    public var bus: UInt8?
    public var device: UInt8?
    public var function: UInt8?
    public let text: String

    public enum ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        case invalid(String, reason: String)
        public var description: String {
            switch self { case .invalid(let s, let r): return "-s \(s): \(r) (expected [[[[domain]:]bus]:][slot][.[func]], hex)" }
        }
    }

    public init(_ text: String) throws(ParseError) {
        self.text = text
        func number<T: FixedWidthInteger & UnsignedInteger>(_ s: Substring, _ max: T, _ what: String) throws(ParseError) -> T? {
            if s.isEmpty || s == "*" { return nil }
            guard s.count <= 8, s.allSatisfy(\.isHexDigit), let v = UInt64(s, radix: 16), v <= UInt64(max) else {
                throw .invalid(text, reason: "bad \(what) '\(s)'")
            }
            return T(v)
        }
        var slotPart = Substring(text)
        if let dot = text.lastIndex(of: ".") {
            function = try number(text[text.index(after: dot)...], UInt8(7), "function")
            slotPart = text[..<dot]
        }
        let parts = slotPart.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count <= 3 else { throw .invalid(text, reason: "too many ':'") }
        device = try number(parts[parts.count - 1], UInt8(0x1F), "slot")
        if parts.count >= 2 { bus = try number(parts[parts.count - 2], UInt8.max, "bus") }
        if parts.count == 3 { domain = try number(parts[0], UInt32(0xFFFF), "domain") }
    }

    public func matches(_ a: PCIAddress) -> Bool {
        (domain ?? a.domain) == a.domain && (bus ?? a.bus) == a.bus && (device ?? a.device) == a.device
            && (function ?? a.function) == a.function
    }

    public var description: String { text }
}
