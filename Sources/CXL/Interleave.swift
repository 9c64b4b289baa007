// Interleave encodings and HPA <-> DPA translation for an endpoint's HDM decoders
// (CXL 3.1 §8.2.4.20.7, §9.13.1 and the "Device Decode Logic" implementation note
// of §8.2.4.20.13).

/// Interleave Ways (IW field, Decoder Control [7:4]).
///
/// Encodings 0...4 are 1, 2, 4, 8, 16 ways; 8, 9, 0xA are 3, 6, 12 ways (CXL 3.0,
/// an ECN to 2.0). Everything else is reserved.
public struct InterleaveWays: Sendable, Hashable, Codable, CustomStringConvertible {
    public let encoding: UInt8

    public init?(encoding: UInt8) {
        guard encoding <= 4 || (8...10).contains(encoding) else { return nil }
        self.encoding = encoding
    }

    public init?(ways: Int) {
        switch ways {
        case 1: encoding = 0
        case 2: encoding = 1
        case 4: encoding = 2
        case 8: encoding = 3
        case 16: encoding = 4
        case 3: encoding = 8
        case 6: encoding = 9
        case 12: encoding = 10
        default: return nil
        }
    }

    /// True for 3, 6 and 12 ways (modulo-3 arithmetic).
    public var isMultipleOfThree: Bool { encoding >= 8 }
    /// log2 of the power-of-two factor: N = 2^k, or N = 3 * 2^k.
    public var powerOfTwoShift: Int { Int(isMultipleOfThree ? encoding - 8 : encoding) }
    public var ways: Int { (isMultipleOfThree ? 3 : 1) << powerOfTwoShift }
    public var description: String { "\(ways)" }

    public static let all: [InterleaveWays] = [0, 1, 2, 3, 4, 8, 9, 10].map { InterleaveWays(encoding: $0)! }
}

/// Interleave Granularity (IG field, Decoder Control [3:0]): 256 B << encoding,
/// encodings 0...6 (256 B ... 16 KiB); higher encodings are reserved.
public struct InterleaveGranularity: Sendable, Hashable, Codable, CustomStringConvertible {
    public let encoding: UInt8

    public init?(encoding: UInt8) {
        guard encoding <= 6 else { return nil }
        self.encoding = encoding
    }

    public init?(bytes: Int) {
        guard bytes >= 256, bytes <= 16384, bytes & (bytes - 1) == 0 else { return nil }
        encoding = UInt8(bytes.trailingZeroBitCount - 8)
    }

    /// log2 of the granularity in bytes.
    public var shift: Int { 8 + Int(encoding) }
    public var bytes: Int { 1 << shift }
    public var description: String { "\(bytes)" }

    public static let all: [InterleaveGranularity] = (0...6).map { InterleaveGranularity(encoding: $0)! }
}

/// HDM Decoder Count encoding (§8.2.4.20.1, Decoder Count [3:0]).
public enum HDMDecoderCountEncoding {
    /// Decoders for an encoding, or nil if reserved. Not "2n" beyond 16: 9..0xC
    /// encode 20, 24, 28, 32.
    public static func decoders(forEncoding e: UInt8) -> Int? {
        HDMDecoderCapability.decoderCounts[UInt64(e)]
    }

    /// The encoding of a decoder count, or nil if the count cannot be encoded.
    public static func encoding(forDecoders n: Int) -> UInt8? {
        HDMDecoderCapability.decoderCounts.first { $0.value == n }.map { UInt8($0.key) }
    }
}

/// The HDM granule: base, size and DPA skip hold address bits 63:28 only.
public let hdmGranule: UInt64 = 256 << 20

/// One endpoint decoder's programming, as the device sees it.
public struct EndpointDecoder: Sendable, Hashable, Codable {
    public var base: UInt64
    public var size: UInt64
    public var ways: InterleaveWays
    public var granularity: InterleaveGranularity
    /// This device's position in the interleave set (0 ..< ways). Where the device
    /// does not know it (no Interleave Set Position), 0 for a 1-way decoder.
    public var position: Int
    public var dpaSkip: UInt64
    public var committed: Bool

    public init(base: UInt64, size: UInt64, ways: InterleaveWays = InterleaveWays(encoding: 0)!,
                granularity: InterleaveGranularity = InterleaveGranularity(encoding: 0)!,
                position: Int = 0, dpaSkip: UInt64 = 0, committed: Bool = true) {
        self.base = base
        self.size = size
        self.ways = ways
        self.granularity = granularity
        self.position = position
        self.dpaSkip = dpaSkip
        self.committed = committed
    }

    /// DPA bytes this decoder maps on this device: Size / ways.
    public var dpaSize: UInt64 { size / UInt64(ways.ways) }

    public func contains(hpa: UInt64) -> Bool {
        hpa >= base && hpa - base < size
    }
}

/// Why an address did not translate.
public enum TranslationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No committed decoder claims the host physical address.
    case notDecoded(hpa: UInt64)
    /// A decoder claims it, but the address belongs to another device of the set.
    case otherPosition(hpa: UInt64, position: Int, devicePosition: Int)
    /// No committed decoder maps the device physical address.
    case dpaNotMapped(dpa: UInt64)

    public var description: String {
        switch self {
        case .notDecoded(let hpa): return "HPA 0x\(String(hpa, radix: 16)) is not decoded by any committed decoder"
        case .otherPosition(let hpa, let p, let d):
            return "HPA 0x\(String(hpa, radix: 16)) targets interleave position \(p), this device is position \(d)"
        case .dpaNotMapped(let dpa): return "DPA 0x\(String(dpa, radix: 16)) is not mapped by any committed decoder"
        }
    }
}

/// Pure interleave arithmetic on offsets inside one decoder's HPA range.
public enum InterleaveMath {
    /// HPA offset -> (interleave position, DPA offset).
    ///
    /// Power-of-two N = 2^k: the position is offset bits [S+k-1:S] and the DPA
    /// offset drops those bits. N = 3*2^k: chunk C = off >> S, position = C mod N,
    /// DPA offset = (C / N) << S | low bits — the spec's "HPAOffset[51:IG+IW] / 3".
    @inline(__always)
    public static func split(offset: UInt64, ways: InterleaveWays, granularity: InterleaveGranularity) -> (position: Int, dpaOffset: UInt64) {
        let s = UInt64(granularity.shift)
        let k = UInt64(ways.powerOfTwoShift)
        let low = offset & ((1 << s) - 1)
        if !ways.isMultipleOfThree {
            let position = Int((offset >> s) & ((1 << k) - 1))
            return (position, ((offset >> (s + k)) << s) | low)
        }
        let chunk = offset >> s
        let upper = chunk >> k
        let position = Int((chunk & ((1 << k) - 1)) + (upper % 3) << k)
        return (position, ((upper / 3) << s) | low)
    }

    /// (position, DPA offset) -> HPA offset; the inverse of `split`.
    @inline(__always)
    public static func join(position: Int, dpaOffset: UInt64, ways: InterleaveWays, granularity: InterleaveGranularity) -> UInt64 {
        let s = UInt64(granularity.shift)
        let k = UInt64(ways.powerOfTwoShift)
        let low = dpaOffset & ((1 << s) - 1)
        let row = dpaOffset >> s
        if !ways.isMultipleOfThree {
            return (row << (s + k)) | (UInt64(position) << s) | low
        }
        // Position p = (C mod 2^k) + 2^k * ((C >> k) mod 3) with C = row * N + p.
        let chunk = row * UInt64(ways.ways) + UInt64(position)
        return (chunk << s) | low
    }
}

/// An endpoint's HDM decoders, in index order, translating between host physical
/// addresses and device physical addresses.
///
/// DPA allocation follows §8.2.4.20 and Linux `init_hdm_decoder`: decoder n's DPA
/// range starts after every lower decoder's skip and DPA size, plus its own skip.
public struct EndpointDecoderMap: Sendable, Hashable {
    public let decoders: [EndpointDecoder]
    /// DPA base of each decoder.
    public let dpaBases: [UInt64]

    /// What the hot path needs of a committed decoder, precomputed.
    @usableFromInline
    struct Lane: Sendable, Hashable {
        @usableFromInline let index: Int
        @usableFromInline let base: UInt64
        @usableFromInline let size: UInt64
        @usableFromInline let granularityShift: UInt64
        @usableFromInline let waysShift: UInt64
        @usableFromInline let multipleOfThree: Bool
        @usableFromInline let position: Int
        @usableFromInline let dpaBase: UInt64
    }
    @usableFromInline let lanes: [Lane]

    public init(_ decoders: [EndpointDecoder]) {
        self.decoders = decoders
        var bases: [UInt64] = []
        var cursor: UInt64 = 0
        for d in decoders {
            let (afterSkip, o1) = cursor.addingReportingOverflow(d.dpaSkip)
            bases.append(o1 ? .max : afterSkip)
            let (next, o2) = afterSkip.addingReportingOverflow(d.dpaSize)
            cursor = (o1 || o2) ? .max : next
        }
        dpaBases = bases
        lanes = decoders.indices.filter { decoders[$0].committed && decoders[$0].size > 0 }.map { i in
            let d = decoders[i]
            return Lane(index: i, base: d.base, size: d.size, granularityShift: UInt64(d.granularity.shift),
                        waysShift: UInt64(d.ways.powerOfTwoShift), multipleOfThree: d.ways.isMultipleOfThree,
                        position: d.position, dpaBase: bases[i])
        }
    }

    /// Device-side bytes every decoder up to and including n consumes (skips included).
    public func dpaEnd(of n: Int) -> UInt64 {
        let (end, overflow) = dpaBases[n].addingReportingOverflow(decoders[n].dpaSize)
        return overflow ? .max : end
    }

    /// HPA -> (decoder index, DPA).
    @inlinable
    public func translate(hpa: UInt64) throws(TranslationError) -> (decoder: Int, dpa: UInt64) {
        for lane in lanes where hpa &- lane.base < lane.size && hpa >= lane.base {
            let offset = hpa &- lane.base
            let s = lane.granularityShift, k = lane.waysShift
            let low = offset & ((1 << s) &- 1)
            let position: Int
            let row: UInt64
            if lane.multipleOfThree {
                let chunk = offset >> s
                let upper = chunk >> k
                let q = upper / 3
                position = Int((chunk & ((1 << k) &- 1)) &+ ((upper &- q &* 3) << k))
                row = q
            } else {
                position = Int((offset >> s) & ((1 << k) &- 1))
                row = offset >> (s &+ k)
            }
            guard position == lane.position else {
                throw .otherPosition(hpa: hpa, position: position, devicePosition: lane.position)
            }
            return (lane.index, lane.dpaBase &+ ((row << s) | low))
        }
        throw .notDecoded(hpa: hpa)
    }

    /// DPA -> HPA through the committed decoder that maps it.
    public func hpa(forDPA dpa: UInt64) throws(TranslationError) -> UInt64 {
        for i in decoders.indices {
            let d = decoders[i]
            guard d.committed, dpa >= dpaBases[i], dpa - dpaBases[i] < d.dpaSize else { continue }
            return d.base + InterleaveMath.join(position: d.position, dpaOffset: dpa - dpaBases[i], ways: d.ways, granularity: d.granularity)
        }
        throw .dpaNotMapped(dpa: dpa)
    }
}
