import PCI

/// The device side of an endpoint's HDM Decoder Capability structure (CXL 3.1
/// §8.2.4.20): what a device does when software writes its decoders. The one model
/// of the commit rules, used by the emulated device (`CXLEmulator`) and by
/// vfio-cxl's guest shadow (`VFIOCXL`); both keep the registers in a
/// `RegisterFile` built from the catalog and hand it to this model.
///
/// - Commit 0 -> 1 on an unlocked decoder starts a commit (§8.2.4.20.12): Committed
///   and Error Not Committed clear, the checks of `HDMCommitRules` run on the
///   programming as written (index order, ascending without overlap, capability,
///   DPA capacity), and the result is Committed or Error Not Committed.
/// - Commit 1 -> 0 de-commits at once.
/// - Lock On Commit (§8.2.4.20.7): a decoder committed with it set freezes its
///   Base, Size, Control and DPA Skip until a reset releases the lock.
///
/// When the result appears is the user's choice: the emulator holds it for its
/// commit latency (`beginCommit`, then `finishCommit` later), the shadow shows it at
/// once (`commit`).
public struct HDMDecoderDevice: Sendable {
    public let rules: HDMCommitRules
    public let decoderCount: Int
    /// Offset of the HDM Decoder Capability structure inside the register file.
    public let origin: Int
    /// Why each decoder's last commit set Error Not Committed.
    public private(set) var failures: [Int: CommitFailure] = [:]

    /// Catalog numbers every write needs, kept in the model (a static would be a
    /// lazy-initialisation check per access): Decoder 0 Control's offset and the Commit bit.
    private let control0 = Self.decoder0Control
    private let commit = Self.commitMask
    /// Committed | Error Not Committed: what a commit or de-commit clears first.
    private let status = Self.committedMask | Self.errorNotCommittedMask
    /// log2 of `decoderStride` (a power of two): a write finds the decoders it reaches
    /// by shifting, not dividing (the stride is another module's constant, so a division
    /// would be a divide instruction on every BAR write).
    private let strideShift: Int = {
        let stride = HDMDecoderCapability.decoderStride
        precondition(stride > 0 && stride & (stride - 1) == 0, "decoder stride \(stride) is not a power of two")  // catalog constant
        return stride.trailingZeroBitCount
    }()

    public init(rules: HDMCommitRules, decoderCount: Int, origin: Int = 0) {
        self.rules = rules
        self.decoderCount = decoderCount
        self.origin = origin
    }

    /// The rules an HDM Decoder Capability register value declares, for a device of
    /// `capacity` bytes.
    public static func rules(capability: UInt64, capacity: UInt64) -> HDMCommitRules {
        typealias C = HDMDecoderCapability
        return HDMCommitRules(threeSixTwelveWay: C.threeSixTwelveWayCapable.extract(capability) != 0,
                              sixteenWay: C.sixteenWayCapable.extract(capability) != 0,
                              a11to8: C.a11to8Capable.extract(capability) != 0,
                              a14to12: C.a14to12Capable.extract(capability) != 0, capacity: capacity)
    }

    // MARK: Where

    /// Decoder n's registers, offsets relative to the register file.
    public func registers(_ n: Int) -> HDMDecoderRegisters { HDMDecoderRegisters(n) }
    /// Offset of Decoder n Control in the register file.
    public func controlOffset(_ n: Int) -> Int { origin + control0 + HDMDecoderCapability.decoderStride * n }
    /// Decoder 0 Control's offset in the structure: decoder n's is `decoderStride * n` further
    /// (arithmetic, not a register layout per call: every BAR write asks).
    private static let decoder0Control = HDMDecoderRegisters(0).control.offset
    /// The bytes Lock On Commit freezes (§8.2.4.20.7): Base, Size, Control, DPA Skip.
    public func lockedRange(_ n: Int) -> Range<Int> {
        let r = HDMDecoderRegisters(n)
        return origin + r.baseLow.offset ..< origin + r.skipOrTargetHigh.offset + r.skipOrTargetHigh.width
    }
    /// The whole structure in the register file.
    public var range: Range<Int> { origin ..< origin + HDMDecoderCapability.length(decoders: decoderCount) }

    // MARK: Building

    /// Capability-dependent write masks: Poison On Decode Error Enable only when
    /// capable (§8.2.4.20.2), the UIO fields of every Decoder Control only when UIO
    /// Capable (§8.2.4.20.7).
    public func restrictWritableMasks(_ file: inout RegisterFile, capability: UInt64) {
        let global = HDMDecoderCapability.globalControl
        if HDMDecoderCapability.poisonOnDecodeErrorCapable.extract(capability) == 0 {
            file.setWritableMask(origin + global.offset, width: global.width,
                                 mask: global.writableMask & ~HDMDecoderCapability.poisonOnDecodeErrorEnable.mask)
        }
        if HDMDecoderCapability.uioCapable.extract(capability) == 0 {
            for n in 0..<decoderCount {
                file.setWritableMask(controlOffset(n), width: 4,
                                     mask: HDMDecoderCapability.control.writableMask & ~HDMDecoderCapability.Control.uioFields)
            }
        }
    }

    // MARK: Reading

    /// Decoder n's programming as the file holds it.
    public func programming(_ n: Int, in file: RegisterFile) -> DecoderProgramming {
        DecoderProgramming(decoder: n) { file.read(origin + $0, width: $1) }
    }

    public func isCommitted(_ n: Int, in file: RegisterFile) -> Bool {
        HDMDecoderCapability.Control.committed.extract(file.read(controlOffset(n), width: 4)) != 0
    }

    public func hasError(_ n: Int, in file: RegisterFile) -> Bool {
        HDMDecoderCapability.Control.errorNotCommitted.extract(file.read(controlOffset(n), width: 4)) != 0
    }

    /// The checks of §8.2.4.20.12 on decoder n as the file holds decoders 0...n.
    ///
    /// One pass over the registers, no arrays: decoder n's programming, decoder n-1's
    /// programming and Committed bit, and the DPA cursor over decoders 0...n (Size,
    /// DPA Skip and IW only). That pass is O(n) loads (at most 32 decoders, ~5 loads
    /// each), recomputed from the registers on every commit rather than cached, so no
    /// write path (software, hardware stores, resets, the shadow's lock release) can
    /// leave a stale running total behind.
    public func check(_ n: Int, in file: RegisterFile) -> CommitFailure? {
        // Straight from the file's bytes: a closure over the file itself would copy it.
        // The catalog's numbers in one load (one lazy-initialisation check, not one per
        // static; the model itself stays small, as every BAR write passes it by value).
        let k = Self.checkConstants
        let p = k.places, iwMask = k.iwMask, iwShift = k.iwShift, committed = k.committed
        let first = HDMDecoderCapability.firstDecoderOffset, stride = HDMDecoderCapability.decoderStride
        return file.bytes.withUnsafeBytes { raw in
            let words = HDMRegisterWords(raw, origin: origin)
            var cursor = DPACursor()
            var oneWayEnd: UInt64?
            let low = words.lowAddressMask
            if k.pairedLoads, origin >= 0, origin + first + stride * (n + 1) <= words.count {
                // Decoders 0...n all inside the file (checked just above: plain loads, and
                // offsets that cannot overflow, so wrapping adds), each Low/High pair (adjacent,
                // inside the decoder's stride: checked once in `CheckConstants`) in one 8-byte
                // load: three loads per decoder.
                let sizeAt = p.sizeLow, control = p.control, skipAt = p.skipLow
                let pairMask = words.pairAddressMask
                // First as if every decoder were 1-way (IW 0, the usual case): then Size / ways
                // is Size and the DPA cursor is the saturating sum of skips and sizes, which
                // is where the last range ends (`DPACursor.end` equals its cursor after the
                // last allocation). A decoder with IW != 0 sends it to the general loop below.
                var sum: UInt64 = 0
                var at = origin &+ first
                for m in 0...n {
                    let ctl = UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at &+ control, as: UInt32.self)))
                    guard ctl & iwMask == 0 else { break }
                    let size = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at &+ sizeAt, as: UInt64.self)) & pairMask
                    let skip = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at &+ skipAt, as: UInt64.self)) & pairMask
                    let (afterSkip, o1) = sum.addingReportingOverflow(skip)
                    let (next, o2) = afterSkip.addingReportingOverflow(size)
                    sum = o1 || o2 ? .max : next
                    at &+= stride
                    if m == n { oneWayEnd = sum }
                }
                if oneWayEnd == nil {
                    at = origin &+ first
                    for _ in 0...n {
                        let size = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at &+ sizeAt, as: UInt64.self)) & pairMask
                        let skip = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at &+ skipAt, as: UInt64.self)) & pairMask
                        let ctl = UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at &+ control, as: UInt32.self)))
                        cursor.allocate(size: size, iw: UInt8(truncatingIfNeeded: (ctl & iwMask) &>> iwShift), dpaSkip: skip)
                        at &+= stride
                    }
                }
            } else if origin >= 0, origin + first + stride * (n + 1) <= words.count {
                // Decoders 0...n all inside the file: plain loads, no per-load range check,
                // and offsets that cannot overflow (checked just above), so wrapping adds.
                func load(_ at: Int) -> UInt64 { UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self))) }
                let sizeLow = p.sizeLow, sizeHigh = p.sizeHigh, control = p.control, skipLow = p.skipLow, skipHigh = p.skipHigh
                var at = origin &+ first
                for _ in 0...n {
                    cursor.allocate(size: load(at &+ sizeHigh) << 32 | (load(at &+ sizeLow) & low),
                                    iw: UInt8(truncatingIfNeeded: (load(at &+ control) & iwMask) &>> iwShift),
                                    dpaSkip: load(at &+ skipHigh) << 32 | (load(at &+ skipLow) & low))
                    at &+= stride
                }
            } else {
                for m in 0...n {
                    let at = first + stride * m
                    cursor.allocate(size: words.address(at + p.sizeLow, at + p.sizeHigh),
                                    iw: UInt8(truncatingIfNeeded: (words.load(at + p.control) & iwMask) >> iwShift),
                                    dpaSkip: words.address(at + p.skipLow, at + p.skipHigh))
                }
            }
            let d: DecoderProgramming, previous: DecoderProgramming?, previousCommitted: Bool
            if origin >= 0, origin + first + stride * (n + 1) <= words.count {
                // Decoders n-1 and n inside the file (checked): their registers without a range check per load.
                func load(_ offset: Int, _: Int) -> UInt64 {
                    UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: origin &+ offset, as: UInt32.self)))
                }
                d = DecoderProgramming(decoder: n, read: load)
                previous = n > 0 ? DecoderProgramming(decoder: n - 1, read: load) : nil
                previousCommitted = n > 0 && load(Self.decoderBase(n - 1) + p.control, 4) & committed != 0
            } else {
                d = words.programming(n)
                previous = n > 0 ? words.programming(n - 1) : nil
                previousCommitted = n > 0 && words.load(Self.decoderBase(n - 1) + p.control) & committed != 0
            }
            return rules.check(d, index: n, previous: previous, previousCommitted: previousCommitted, dpaEnd: oneWayEnd ?? cursor.end)
        }
    }

    /// Decoder n's first register, relative to the structure.
    static func decoderBase(_ n: Int) -> Int { HDMDecoderCapability.firstDecoderOffset + HDMDecoderCapability.decoderStride * n }

    /// Decoder 0's registers relative to its first register (Base Low), reduced to
    /// numbers once from the catalog.
    struct Places: Sendable {
        let baseLow: Int, baseHigh: Int, sizeLow: Int, sizeHigh: Int, control: Int, skipLow: Int, skipHigh: Int
    }
    static let places: Places = {
        let r = HDMDecoderRegisters(0)
        let b = decoderBase(0)
        return Places(baseLow: r.baseLow.offset - b, baseHigh: r.baseHigh.offset - b, sizeLow: r.sizeLow.offset - b,
                      sizeHigh: r.sizeHigh.offset - b, control: r.control.offset - b, skipLow: r.skipOrTargetLow.offset - b,
                      skipHigh: r.skipOrTargetHigh.offset - b)
    }()
    /// What a commit check and a commit's result read, together.
    struct CheckConstants: Sendable {
        let places = HDMDecoderDevice.places
        let iwMask = HDMDecoderDevice.iwMask, iwShift = HDMDecoderDevice.iwShift
        let committed = HDMDecoderDevice.committedMask, lockOnCommit = HDMDecoderDevice.lockOnCommitMask
        /// Size High follows Size Low and DPA Skip High follows DPA Skip Low (4 bytes on),
        /// both pairs inside one decoder's stride: each pair is one 8-byte load.
        let pairedLoads: Bool = {
            let p = HDMDecoderDevice.places, stride = HDMDecoderCapability.decoderStride
            return p.sizeHigh == p.sizeLow + 4 && p.skipHigh == p.skipLow + 4 && p.sizeLow >= 0 && p.skipLow >= 0
                && p.sizeLow + 8 <= stride && p.skipLow + 8 <= stride
        }()
    }
    static let checkConstants = CheckConstants()
    static let committedMask = HDMDecoderCapability.Control.committed.mask
    static let commitMask = HDMDecoderCapability.Control.commit.mask
    static let errorNotCommittedMask = HDMDecoderCapability.Control.errorNotCommitted.mask
    static let lockOnCommitMask = HDMDecoderCapability.Control.lockOnCommit.mask
    static let iwMask = HDMDecoderCapability.Control.iw.mask
    static let iwShift = UInt64(HDMDecoderCapability.Control.iw.lsb)

    // MARK: Writing

    /// A Commit edge a write made on an unlocked decoder.
    public enum CommitEdge: Sendable, Hashable {
        /// Commit 0 -> 1: a commit starts.
        case commit(Int)
        /// Commit 1 -> 0: the decoder de-commits.
        case decommit(Int)
    }

    /// The Commit edges one write made: at most two (an access is at most 8 bytes and
    /// Controls are `decoderStride` bytes apart), held inline: every BAR write returns
    /// one, and most return none.
    public struct CommitEdges: Sequence, Sendable {
        private var first: CommitEdge?
        private var second: CommitEdge?
        public init() {}
        mutating func append(_ e: CommitEdge) {
            if first == nil { first = e } else { second = e }
        }
        public var isEmpty: Bool { first == nil }
        public struct Iterator: IteratorProtocol {
            var edges: CommitEdges
            public mutating func next() -> CommitEdge? {
                guard let e = edges.first else { return nil }
                edges.first = edges.second
                edges.second = nil
                return e
            }
        }
        public func makeIterator() -> Iterator { Iterator(edges: self) }
    }

    /// Apply a software write at `offset` (file-relative) and report the Commit edges
    /// it made. Only a decoder whose whole Control the write covers, and which was not
    /// locked before the write, can commit or de-commit. The caller acts on each edge
    /// (`commit` / `beginCommit`, `decommit`).
    public func write(_ file: inout RegisterFile, offset: Int, width: Int, value: UInt64) -> CommitEdges {
        // Only the decoders whose Control the access's bytes can reach: Control n is the
        // 4 bytes at `rel` 32n ..< 32n + 4, so n runs from ceil((rel - 3) / 32) to
        // floor((rel + width - 1) / 32), clamped to the decoders there are (wrapping
        // arithmetic: an offset far outside only fails the range test). At most two
        // (an access is at most 8 bytes), each with its Control as it was before the write.
        var first = -1, second = -1
        var firstBefore: UInt64 = 0, secondBefore: UInt64 = 0
        let stride = HDMDecoderCapability.decoderStride
        let rel = offset &- origin &- control0
        if width > 0, width <= 8, rel > -width, rel < stride &* decoderCount {
            // Both dividends are non-negative here (rel > -width), so a shift divides.
            let lo = (rel &+ stride &- 4) &>> strideShift
            let hi = min(decoderCount - 1, (rel &+ width &- 1) &>> strideShift)
            if lo <= hi {
                for n in lo...hi where !file.isLocked(controlOffset(n)) {
                    let before = file.read(controlOffset(n), width: 4)
                    if first < 0 { (first, firstBefore) = (n, before) } else { (second, secondBefore) = (n, before) }
                }
            }
        }
        // The write's own result is not needed (the Controls were read above): it stays
        // in memory the caller never reads back.
        file.write(offset, width: width, value: value)
        // Most writes reach no Control: return before anything reads the file again.
        guard first >= 0 else { return CommitEdges() }
        return edges(in: file, offset: offset, width: width, (first, firstBefore), (second, secondBefore))
    }

    /// The Commit edges of a write at `offset`/`width` on the candidate decoders (index,
    /// Control before the write; index -1 for none), from their Controls in `file` after it.
    private func edges(in file: RegisterFile, offset: Int, width: Int, _ first: (Int, UInt64), _ second: (Int, UInt64)) -> CommitEdges {
        var edges = CommitEdges()
        for k in 0..<2 {
            let (n, controlBefore) = k == 0 ? first : second
            guard n >= 0 else { continue }
            let c = controlOffset(n)
            // Commit as it was in the bytes the access covered (bytes it did not cover count as 0).
            var covered: UInt64 = 0
            for b in 0..<4 where c + b >= offset && c + b < offset + width { covered |= 0xFF << UInt64(8 * b) }
            guard covered != 0 else { continue }
            let before = controlBefore & covered & commit != 0
            let after = file.read(c, width: 4) & commit != 0
            if !before && after { edges.append(.commit(n)) }
            if before && !after { edges.append(.decommit(n)) }
        }
        return edges
    }

    /// Commit 0 -> 1: Committed and Error Not Committed clear; the last failure is
    /// forgotten. The result follows with `finishCommit`.
    public mutating func beginCommit(_ n: Int, in file: inout RegisterFile) {
        file.setBits(controlOffset(n), width: 4, mask: status, to: false)
        if !failures.isEmpty { failures[n] = nil }
    }

    /// The commit's result: Error Not Committed (recording why), or Committed and,
    /// with Lock On Commit set, the decoder's registers frozen.
    public mutating func finishCommit(_ n: Int, failure: CommitFailure?, in file: inout RegisterFile) {
        if let failure {
            failures[n] = failure
            file.setBits(controlOffset(n), width: 4, mask: Self.errorNotCommittedMask, to: true)
            return
        }
        let k = Self.checkConstants
        file.setBits(controlOffset(n), width: 4, mask: k.committed, to: true)
        if file.read(controlOffset(n), width: 4) & k.lockOnCommit != 0 {
            file.setLock(lockedRange(n), true)
        }
    }

    /// A commit whose result shows at once: begin, check, finish. Returns the failure.
    @discardableResult
    public mutating func commit(_ n: Int, in file: inout RegisterFile) -> CommitFailure? {
        beginCommit(n, in: &file)
        let failure = check(n, in: file)
        finishCommit(n, failure: failure, in: &file)
        return failure
    }

    /// Commit 1 -> 0 on an unlocked decoder: Committed and Error Not Committed clear at once.
    public mutating func decommit(_ n: Int, in file: inout RegisterFile) {
        if !failures.isEmpty { failures[n] = nil }
        file.setBits(controlOffset(n), width: 4, mask: status, to: false)
    }

    /// After a reset of the structure's registers: no failures remembered.
    public mutating func forgetFailures() { failures = [:] }
}

/// 32-bit little-endian loads from a register file's bytes at offsets relative to the
/// HDM Decoder Capability structure; bytes outside the file read 0, as in
/// `RegisterFile.read`.
struct HDMRegisterWords {
    let raw: UnsafeRawBufferPointer
    let origin: Int
    /// The bits a Low register implements, read once per pass.
    let lowAddressMask = HDMDecoderRegisters.lowAddressMask
    /// A Low/High pair loaded as one 8-byte word: the bits the two registers implement.
    let pairAddressMask = HDMDecoderRegisters.highAddressMask << 32 | HDMDecoderRegisters.lowAddressMask
    /// `raw.count`, read once (it is a call, not a load, on every access otherwise).
    let count: Int
    init(_ raw: UnsafeRawBufferPointer, origin: Int) {
        self.raw = raw
        self.origin = origin
        count = raw.count
    }

    @inline(__always)
    func load(_ offset: Int) -> UInt64 {
        let at = origin + offset
        if at >= 0 && at <= count - 4 {
            return UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
        }
        var v: UInt64 = 0
        for i in 0..<4 where at + i >= 0 && at + i < count { v |= UInt64(raw[at + i]) << UInt64(8 * i) }
        return v
    }

    /// A Low/High pair as the catalog declares it (Low holds bits 31:28).
    func address(_ low: Int, _ high: Int) -> UInt64 {
        load(high) << 32 | (load(low) & lowAddressMask)
    }

    func programming(_ n: Int) -> DecoderProgramming {
        DecoderProgramming(decoder: n) { (offset, _) in load(offset) }
    }
}
