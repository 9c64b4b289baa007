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
    public func controlOffset(_ n: Int) -> Int { origin + Self.control0 + HDMDecoderCapability.decoderStride * n }
    /// Decoder 0 Control's offset in the structure: decoder n's is `decoderStride * n` further
    /// (arithmetic, not a register layout per call: every BAR write asks).
    private static let control0 = HDMDecoderRegisters(0).control.offset
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
    public func check(_ n: Int, in file: RegisterFile) -> CommitFailure? {
        // Straight from the file's bytes: a commit reads every lower decoder, and a closure
        // over the file itself would copy it (its eleven arrays) once per decoder read.
        file.bytes.withUnsafeBytes { raw in
            func read(_ offset: Int, _ width: Int) -> UInt64 {
                // As `RegisterFile.read`: little-endian, bytes outside the file read 0.
                let at = origin + offset
                if width == 4 && at >= 0 && at <= raw.count - 4 {
                    return UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                }
                var v: UInt64 = 0
                for i in 0..<width where at + i >= 0 && at + i < raw.count { v |= UInt64(raw[at + i]) << UInt64(8 * i) }
                return v
            }
            var decoders: [DecoderProgramming] = []
            var committed: [Bool] = []
            decoders.reserveCapacity(n + 1)
            committed.reserveCapacity(n + 1)
            for m in 0...n {
                decoders.append(DecoderProgramming(decoder: m, read: read))
                committed.append(HDMDecoderCapability.Control.committed.extract(read(controlOffset(m) - origin, 4)) != 0)
            }
            return rules.check(decoder: n, decoders: decoders, committed: committed)
        }
    }

    // MARK: Writing

    /// A Commit edge a write made on an unlocked decoder.
    public enum CommitEdge: Sendable, Hashable {
        /// Commit 0 -> 1: a commit starts.
        case commit(Int)
        /// Commit 1 -> 0: the decoder de-commits.
        case decommit(Int)
    }

    /// Apply a software write at `offset` (file-relative) and report the Commit edges
    /// it made. Only a decoder whose whole Control the write covers, and which was not
    /// locked before the write, can commit or de-commit. The caller acts on each edge
    /// (`commit` / `beginCommit`, `decommit`).
    public func write(_ file: inout RegisterFile, offset: Int, width: Int, value: UInt64) -> (RegisterWrite, [CommitEdge]) {
        var touched: [Int] = []
        if offset < range.upperBound && range.lowerBound < offset + width {
            // Only the decoders whose Control the access's bytes can reach (an access is at most 8 bytes).
            let stride = HDMDecoderCapability.decoderStride
            let first = max(0, (offset - origin - Self.control0 - 3) / stride)
            let last = min(decoderCount - 1, (offset + width - 1 - origin - Self.control0) / stride + 1)
            if first <= last {
                for n in first...last {
                    let c = controlOffset(n)
                    if c < offset + width && offset < c + 4 && !file.isLocked(c) { touched.append(n) }
                }
            }
        }
        let w = file.write(offset, width: width, value: value)
        let commit = HDMDecoderCapability.Control.commit
        var edges: [CommitEdge] = []
        for n in touched where w.covers(controlOffset(n), width: 4) {
            let before = commit.extract(w.beforeBits(ofRegisterAt: controlOffset(n), width: 4)) != 0
            let after = commit.extract(file.read(controlOffset(n), width: 4)) != 0
            if !before && after { edges.append(.commit(n)) }
            if before && !after { edges.append(.decommit(n)) }
        }
        return (w, edges)
    }

    /// Commit 0 -> 1: Committed and Error Not Committed clear; the last failure is
    /// forgotten. The result follows with `finishCommit`.
    public mutating func beginCommit(_ n: Int, in file: inout RegisterFile) {
        let c = HDMDecoderCapability.Control.self
        file.setBits(controlOffset(n), width: 4, mask: c.committed.mask | c.errorNotCommitted.mask, to: false)
        failures[n] = nil
    }

    /// The commit's result: Error Not Committed (recording why), or Committed and,
    /// with Lock On Commit set, the decoder's registers frozen.
    public mutating func finishCommit(_ n: Int, failure: CommitFailure?, in file: inout RegisterFile) {
        let c = HDMDecoderCapability.Control.self
        if let failure {
            failures[n] = failure
            file.setBits(controlOffset(n), width: 4, mask: c.errorNotCommitted.mask, to: true)
            return
        }
        file.setBits(controlOffset(n), width: 4, mask: c.committed.mask, to: true)
        if c.lockOnCommit.extract(file.read(controlOffset(n), width: 4)) != 0 {
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
        let c = HDMDecoderCapability.Control.self
        failures[n] = nil
        file.setBits(controlOffset(n), width: 4, mask: c.committed.mask | c.errorNotCommitted.mask, to: false)
    }

    /// After a reset of the structure's registers: no failures remembered.
    public mutating func forgetFailures() { failures = [:] }
}
