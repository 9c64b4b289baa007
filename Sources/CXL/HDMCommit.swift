import PCI

// Commit checks shared by every model of a decoder: the emulated device and the
// vfio-cxl guest shadow validate a guest Commit the same way.

/// One endpoint HDM decoder as its registers program it (CXL 3.1 §8.2.4.20.5-.20.9).
public struct DecoderProgramming: Sendable, Hashable {
    public var base: UInt64
    public var size: UInt64
    public var dpaSkip: UInt64
    /// Raw IW and IG encodings (Decoder Control [7:4], [3:0]).
    public var iw: UInt8
    public var ig: UInt8
    /// Interleave Set Position (Decoder Control [27:24]): this device's way.
    public var position: Int
    public var lockOnCommit: Bool

    public init(base: UInt64, size: UInt64, dpaSkip: UInt64 = 0, iw: UInt8 = 0, ig: UInt8 = 0,
                position: Int = 0, lockOnCommit: Bool = false) {
        self.base = base
        self.size = size
        self.dpaSkip = dpaSkip
        self.iw = iw
        self.ig = ig
        self.position = position
        self.lockOnCommit = lockOnCommit
    }

    /// The decoder for the CXL library's translation, if its encodings are valid.
    public func endpointDecoder(committed: Bool) -> EndpointDecoder? {
        guard let w = InterleaveWays(encoding: iw), let g = InterleaveGranularity(encoding: ig) else { return nil }
        return EndpointDecoder(base: base, size: size, ways: w, granularity: g, position: position,
                               dpaSkip: dpaSkip, committed: committed)
    }
}

/// Why a commit set Error Not Committed instead of Committed.
public enum CommitFailure: Error, Sendable, Hashable, CustomStringConvertible {
    /// Base, Size or DPA Skip not on a 256 MB granule (the registers only hold bits
    /// 63:28, so this can only come from a programming that bypasses them).
    case notGranuleAligned(field: String, value: UInt64)
    /// IW encoding reserved (5...7, > 0xA).
    case reservedInterleaveWays(UInt8)
    /// IG encoding reserved (> 6).
    case reservedInterleaveGranularity(UInt8)
    /// 3/6/12 ways without "3, 6, 12 Way Interleave Capable", or 16 ways without
    /// "16 Way Interleave Capable".
    case interleaveWaysNotCapable(ways: Int)
    /// Granularity on HPA bits the device cannot interleave on (A11to8 / A14to12 Capable).
    case interleaveGranularityNotCapable(bytes: Int)
    /// Interleave Set Position not below the number of ways.
    case positionOutOfRange(position: Int, ways: Int)
    /// Decoder m-1 is not committed (commits go in index order).
    case previousDecoderNotCommitted(Int)
    /// Base below the end of decoder m-1: HPA ranges must ascend and not overlap.
    case notAscending(base: UInt64, previousEnd: UInt64)
    /// Base + Size wraps past 2^64.
    case wrapsAddressSpace
    /// 3/6/12-way sizes must be a multiple of 3 granules (3 x 256 MB).
    case sizeNotMultipleOfThreeGranules(UInt64)
    /// The DPA range (skips and Size/ways of decoders 0...m, in order) exceeds device memory.
    case exceedsDeviceCapacity(dpaEnd: UInt64, capacity: UInt64)
    /// Injected fault: the profile makes every commit fail.
    case injectedFault

    public var description: String {
        switch self {
        case .notGranuleAligned(let f, let v): return "\(f) \(commitHex(v)) is not a multiple of 256 MB"
        case .reservedInterleaveWays(let e): return "IW encoding \(e) is reserved"
        case .reservedInterleaveGranularity(let e): return "IG encoding \(e) is reserved"
        case .interleaveWaysNotCapable(let w): return "\(w)-way interleave is not in the HDM Decoder Capability"
        case .interleaveGranularityNotCapable(let b): return "\(b)-byte interleave granularity is not in the HDM Decoder Capability"
        case .positionOutOfRange(let p, let w): return "Interleave Set Position \(p) is not below \(w) ways"
        case .previousDecoderNotCommitted(let m): return "decoder \(m) is not committed (decoders commit in index order)"
        case .notAscending(let b, let e): return "base \(commitHex(b)) is below the end \(commitHex(e)) of the previous decoder"
        case .wrapsAddressSpace: return "base + size wraps past 2^64"
        case .sizeNotMultipleOfThreeGranules(let s): return "size \(commitHex(s)) is not a multiple of 3 x 256 MB (3/6/12-way)"
        case .exceedsDeviceCapacity(let e, let c): return "DPA range ends at \(commitHex(e)), past device capacity \(commitHex(c))"
        case .injectedFault: return "fault injected by the device profile"
        }
    }
}

/// The HDM Decoder Capability bits that constrain a commit.
public struct HDMCommitRules: Sendable, Hashable {
    public var threeSixTwelveWay: Bool
    public var sixteenWay: Bool
    public var a11to8: Bool
    public var a14to12: Bool
    public var capacity: UInt64

    public init(threeSixTwelveWay: Bool, sixteenWay: Bool, a11to8: Bool, a14to12: Bool, capacity: UInt64) {
        self.threeSixTwelveWay = threeSixTwelveWay
        self.sixteenWay = sixteenWay
        self.a11to8 = a11to8
        self.a14to12 = a14to12
        self.capacity = capacity
    }

    /// The checks a device runs on the 0 -> 1 transition of Commit of decoder `m`
    /// (CXL 3.1 §8.2.4.20.12 "Committing Decoder Programming", §8.2.4.20.7): encodings
    /// valid and capable; position inside the set; decoder m-1 committed; HPA ranges
    /// ascending without overlap or wrap; 3/6/12-way sizes a multiple of 3 granules;
    /// DPA capacity, allocating skip + Size/ways in decoder order. The spec makes the
    /// checks mandatory with Lock On Commit; this device runs them on every commit.
    /// A zero-size decoder passes (CXL 3.2 §8.2.4.20.12: legal, decodes nothing).
    ///
    /// - Parameters:
    ///   - decoders: every decoder's programming, index order.
    ///   - committed: Committed bit of every decoder.
    public func check(decoder m: Int, decoders: [DecoderProgramming], committed: [Bool]) -> CommitFailure? {
        check(decoders[m], index: m, previous: m > 0 ? decoders[m - 1] : nil, previousCommitted: m > 0 && committed[m - 1],
              dpaEnd: Self.dpaEnd(of: m, decoders))
    }

    /// The same checks, given what they need of the other decoders: decoder m-1's
    /// programming and Committed bit, and where decoder m's DPA range ends
    /// (`dpaEnd(of:_:)`). A device that keeps its decoders in registers computes these
    /// in one pass over them, with no arrays (`HDMDecoderDevice.check`).
    public func check(_ d: DecoderProgramming, index m: Int, previous p: DecoderProgramming?, previousCommitted: Bool,
                      dpaEnd end: UInt64) -> CommitFailure? {
        if d.base % hdmGranule != 0 { return .notGranuleAligned(field: "Base", value: d.base) }
        if d.size % hdmGranule != 0 { return .notGranuleAligned(field: "Size", value: d.size) }
        if d.dpaSkip % hdmGranule != 0 { return .notGranuleAligned(field: "DPA Skip", value: d.dpaSkip) }
        guard let ways = InterleaveWays(encoding: d.iw) else { return .reservedInterleaveWays(d.iw) }
        guard let gran = InterleaveGranularity(encoding: d.ig) else { return .reservedInterleaveGranularity(d.ig) }
        if ways.isMultipleOfThree && !threeSixTwelveWay { return .interleaveWaysNotCapable(ways: ways.ways) }
        if ways.ways == 16 && !sixteenWay { return .interleaveWaysNotCapable(ways: 16) }
        if ways.ways > 1 {
            // IG 256 B ... 2 KB interleaves on HPA bits 11:8, 4 KB ... 16 KB on bits 14:12.
            if gran.bytes <= 2048 && !a11to8 { return .interleaveGranularityNotCapable(bytes: gran.bytes) }
            if gran.bytes >= 4096 && !a14to12 { return .interleaveGranularityNotCapable(bytes: gran.bytes) }
        }
        if d.position >= ways.ways { return .positionOutOfRange(position: d.position, ways: ways.ways) }
        if m > 0 {
            // Decoder m-1 not committed (or not given) fails whether or not its programming is known.
            guard previousCommitted else { return .previousDecoderNotCommitted(m - 1) }
            if let p {
                let (end, o) = p.base.addingReportingOverflow(p.size)
                if o || d.base < end { return .notAscending(base: d.base, previousEnd: o ? .max : end) }
            }
        }
        if d.base.addingReportingOverflow(d.size).overflow { return .wrapsAddressSpace }
        if ways.isMultipleOfThree && d.size % (3 * hdmGranule) != 0 { return .sizeNotMultipleOfThreeGranules(d.size) }
        if end > capacity { return .exceedsDeviceCapacity(dpaEnd: end, capacity: capacity) }
        return nil
    }

    /// Where decoder m's DPA range ends when decoders 0...m allocate DPA in order, each its
    /// DPA Skip then Size / ways (a reserved IW counts as 1 way): `EndpointDecoderMap.dpaEnd`,
    /// without building the map (a commit runs this for every decoder). Saturates at
    /// `UInt64.max` on overflow, as the map does.
    static func dpaEnd(of m: Int, _ decoders: [DecoderProgramming]) -> UInt64 {
        var cursor = DPACursor()
        for d in decoders[0...m] { cursor.allocate(size: d.size, iw: d.iw, dpaSkip: d.dpaSkip) }
        return cursor.end
    }
}

/// Decoders allocating DPA in index order, each its DPA Skip then Size / ways (a
/// reserved IW counts as 1 way), saturating at `UInt64.max` as `EndpointDecoderMap` does.
struct DPACursor {
    private var cursor: UInt64 = 0
    private var base: UInt64 = 0
    private var dpaSize: UInt64 = 0

    /// Allocate the next decoder's range.
    @inline(__always)
    mutating func allocate(size: UInt64, iw: UInt8, dpaSkip: UInt64) {
        // Size / ways without a division instruction: ways is 2^k or 3 * 2^k, and
        // floor(floor(size / 2^k) / 3) == floor(size / (3 * 2^k)).
        if let ways = InterleaveWays(encoding: iw) {
            let shifted = size >> UInt64(ways.powerOfTwoShift)
            dpaSize = ways.isMultipleOfThree ? shifted / 3 : shifted
        } else {
            dpaSize = size
        }
        let (afterSkip, o1) = cursor.addingReportingOverflow(dpaSkip)
        base = o1 ? .max : afterSkip
        let (next, o2) = afterSkip.addingReportingOverflow(dpaSize)
        cursor = (o1 || o2) ? .max : next
    }

    /// Where the last allocated range ends.
    var end: UInt64 {
        let (end, overflow) = base.addingReportingOverflow(dpaSize)
        return overflow ? .max : end
    }
}

func commitHex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

extension DecoderProgramming {
    /// Decoder Control fields as (mask, shift), from the catalog once.
    private struct ControlFields: Sendable {
        let iw: (UInt64, UInt64), ig: (UInt64, UInt64), position: (UInt64, UInt64)
        let lockOnCommit: UInt64
        init() {
            let c = HDMDecoderCapability.Control.self
            func f(_ field: RegisterField) -> (UInt64, UInt64) { (field.mask, UInt64(field.lsb)) }
            iw = f(c.iw); ig = f(c.ig); position = f(c.interleaveSetPosition)
            lockOnCommit = c.lockOnCommit.mask
        }
    }
    private static let fields = ControlFields()

    /// Where decoder 0's registers are, reduced to numbers once: decoder n's are
    /// `decoderStride * n` further (a commit check reads every lower decoder, so no
    /// register layouts are built per read).
    private struct Places: Sendable {
        typealias Place = (offset: Int, width: Int)
        let baseLow: Place, baseHigh: Place, sizeLow: Place, sizeHigh: Place, control: Place, skipLow: Place, skipHigh: Place
    }
    private static let places: Places = {
        let r = HDMDecoderRegisters(0)
        func p(_ l: RegisterLayout) -> Places.Place { (l.offset, l.width) }
        return Places(baseLow: p(r.baseLow), baseHigh: p(r.baseHigh), sizeLow: p(r.sizeLow), sizeHigh: p(r.sizeHigh),
                      control: p(r.control), skipLow: p(r.skipOrTargetLow), skipHigh: p(r.skipOrTargetHigh))
    }()

    /// Endpoint decoder `n` as its registers program it (§8.2.4.20.5-.20.9), read
    /// through `read(offset, width)` with offsets relative to the HDM Decoder
    /// Capability structure. Base, Size and DPA Skip keep only the bits their Low
    /// registers hold (63:28), as the catalog declares them.
    @inline(__always)
    public init(decoder n: Int, read: (_ offset: Int, _ width: Int) -> UInt64) {
        let r = Self.places
        let shift = HDMDecoderCapability.decoderStride * n
        func value(_ reg: Places.Place) -> UInt64 { read(reg.offset + shift, reg.width) }
        func address(high: Places.Place, low: Places.Place) -> UInt64 {
            SplitAddress(low: UInt32(truncatingIfNeeded: value(low)), high: UInt32(truncatingIfNeeded: value(high)))
                .value(lowMask: HDMDecoderRegisters.lowAddressMask)
        }
        let ctl = value(r.control)
        let f = Self.fields
        func extract(_ field: (UInt64, UInt64)) -> UInt64 { (ctl & field.0) >> field.1 }
        self.init(base: address(high: r.baseHigh, low: r.baseLow), size: address(high: r.sizeHigh, low: r.sizeLow),
                  dpaSkip: address(high: r.skipHigh, low: r.skipLow),
                  iw: UInt8(truncatingIfNeeded: extract(f.iw)), ig: UInt8(truncatingIfNeeded: extract(f.ig)),
                  position: Int(extract(f.position)), lockOnCommit: ctl & f.lockOnCommit != 0)
    }
}
