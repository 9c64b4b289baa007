import PCI

// One host-side HDM decoder committer: program a decoder, set Commit, poll Decoder
// n Control for Committed or Error Not Committed through the injectable clock, and
// read the decoder back (CXL 3.1 §8.2.4.20.5-.9, §8.2.4.20.12). Restore, firmware
// setup, vfio-cxl's host commit and `cxlkit hdm commit` all go through it.

/// The registers of HDM decoder n, by name (CXL 3.1 §8.2.4.20.5-.9), offsets
/// relative to the HDM Decoder Capability structure, from the catalog.
public struct HDMDecoderRegisters: Sendable, Hashable {
    public let index: Int
    public let baseLow: RegisterLayout
    public let baseHigh: RegisterLayout
    public let sizeLow: RegisterLayout
    public let sizeHigh: RegisterLayout
    public let control: RegisterLayout
    /// DPA Skip Low/High (endpoints) or Target List Low/High (ports).
    public let skipOrTargetLow: RegisterLayout
    public let skipOrTargetHigh: RegisterLayout

    public init(_ n: Int, endpoint: Bool = true) {
        let r = HDMDecoderCapability.decoderRegisters(n, endpoint: endpoint)
        index = n
        baseLow = r[0]; baseHigh = r[1]; sizeLow = r[2]; sizeHigh = r[3]; control = r[Self.controlIndex]
        skipOrTargetLow = r[5]; skipOrTargetHigh = r[6]
    }

    /// Control's index in `HDMDecoderCapability.decoderRegisters(_:endpoint:)` (save order), as `init` takes it;
    /// not `HDMDecoderCapability.controlSlot`, Control's byte offset inside a decoder.
    static let controlIndex = 4

    /// The registers programmed before Commit, in the order Linux writes them
    /// (`cxl_decoder_commit`): Base Low/High, Size Low/High, DPA Skip Low/High.
    public var programming: [RegisterLayout] { [baseLow, baseHigh, sizeLow, sizeHigh, skipOrTargetLow, skipOrTargetHigh] }

    /// The bits a Low register implements (63:28 of the address live in Low 31:28 and High).
    public static let lowAddressMask = HDMDecoderRegisters(0).baseLow.writableMask
    /// The bits a High register implements (all 32: address bits 63:32).
    public static let highAddressMask = HDMDecoderRegisters(0).baseHigh.writableMask
}

/// How the committer reaches the HDM Decoder Capability: 32-bit reads and writes at
/// offsets relative to the structure.
public struct HDMRegisterAccess {
    public var read: (_ offset: Int) throws(PCIError) -> UInt64
    public var write: (_ offset: Int, _ value: UInt64) throws(PCIError) -> Void

    public init(read: @escaping (_ offset: Int) throws(PCIError) -> UInt64,
                write: @escaping (_ offset: Int, _ value: UInt64) throws(PCIError) -> Void) {
        self.read = read
        self.write = write
    }

    /// The structure at `hdmOffset` inside BAR `bar` of `function`.
    public static func bar(_ function: any PCIFunction, bar: Int, hdmOffset: UInt64) -> HDMRegisterAccess {
        HDMRegisterAccess(
            read: { (o) throws(PCIError) in try function.barRead(bar, offset: hdmOffset + UInt64(o), width: 4) },
            write: { (o, v) throws(PCIError) in try function.barWrite(bar, offset: hdmOffset + UInt64(o), width: 4, value: v & 0xFFFF_FFFF) })
    }
}

/// How a wait on Decoder n Control ended.
public enum HDMCommitWait: Sendable, Hashable {
    /// The awaited state, with the Control value that showed it.
    case done(control: UInt64, polls: Int)
    /// Error Not Committed (a commit wait only).
    case errorNotCommitted(control: UInt64, polls: Int)
    /// The budget ran out; the last value read.
    case timeout(control: UInt64, polls: Int)

    public var polls: Int {
        switch self {
        case .done(_, let p), .errorNotCommitted(_, let p), .timeout(_, let p): return p
        }
    }
    public var control: UInt64 {
        switch self {
        case .done(let c, _), .errorNotCommitted(let c, _), .timeout(let c, _): return c
        }
    }
}

/// The result of programming and committing one decoder.
public struct HDMCommitResult: Sendable, Hashable {
    public var wait: HDMCommitWait
    /// Base and size the decoder holds after the commit (read back).
    public var base: UInt64
    public var size: UInt64
    public var committed: Bool { if case .done = wait { return true } else { return false } }
}

/// Programs and commits HDM decoders from the host side, polling through a
/// `CXLClock` (virtual in tests, real otherwise).
public struct HDMCommitter: Sendable {
    public var clock: any CXLClock
    /// CXL 3.1 §8.2.4.20.12: a decoder reports within 10 ms.
    public var timeout: Duration
    public var interval: Duration
    /// Told about each poll that found the decoder not yet settled.
    public var progress: CXLProgress?

    public init(clock: any CXLClock = SystemCXLClock(), timeout: Duration = .milliseconds(10),
                interval: Duration = .milliseconds(1), progress: CXLProgress? = CXLProgress.current) {
        self.clock = clock
        self.timeout = timeout
        self.interval = interval
        self.progress = progress
    }

    public init(_ options: CXLStateOptions) {
        self.init(clock: options.clock, timeout: options.commitTimeout, interval: options.commitPollInterval,
                  progress: options.progress)
    }

    static let commit = HDMDecoderCapability.Control.commit.mask
    static let committed = HDMDecoderCapability.Control.committed.mask
    static let errorNotCommitted = HDMDecoderCapability.Control.errorNotCommitted.mask

    /// Read Decoder n Control through `read` until Committed (`.done`) or Error Not
    /// Committed, or the budget runs out. The first read is immediate.
    /// The two status bits, held in the committer: the statics' lazy-initialisation
    /// check would run on every poll.
    private let committedMask = Self.committed
    private let errorMask = Self.errorNotCommitted

    public func awaitCommit<E: Error>(_ read: () throws(E) -> UInt64) throws(E) -> HDMCommitWait {
        let committed = committedMask, error = errorMask
        return try poll(read) { v in
            if v & committed != 0 { return .done(control: v, polls: 0) }
            if v & error != 0 { return .errorNotCommitted(control: v, polls: 0) }
            return nil
        }
    }

    /// Read Decoder n Control until Committed is clear (after Commit was cleared).
    public func awaitDecommit<E: Error>(_ read: () throws(E) -> UInt64) throws(E) -> HDMCommitWait {
        let committed = committedMask
        return try poll(read) { v in v & committed == 0 ? .done(control: v, polls: 0) : nil }
    }

    /// The budget runs from the first read that finds the decoder not yet settled: a
    /// decoder that reports at once (the common case) costs no clock read, and Linux's
    /// wait (`cxld_await_commit`) likewise counts its sleeps only after a first read.
    private func poll<E: Error>(_ read: () throws(E) -> UInt64, _ end: (UInt64) -> HDMCommitWait?) throws(E) -> HDMCommitWait {
        var started: Duration?
        var polls = 0
        while true {
            let v = try read()
            polls += 1
            if let e = end(v) {
                switch e {
                case .done: return .done(control: v, polls: polls)
                case .errorNotCommitted: return .errorNotCommitted(control: v, polls: polls)
                case .timeout: return .timeout(control: v, polls: polls)
                }
            }
            let now = clock.now()
            let start = started ?? now
            started = start
            let elapsed = now - start
            if elapsed >= timeout { return .timeout(control: v, polls: polls) }
            progress?.waiting("HDM decoder: waiting for Committed", elapsed: elapsed, budget: timeout)
            clock.sleep(for: min(interval, timeout - elapsed))
        }
    }

    /// Program decoder `n` (Base, Size, DPA Skip in Linux's order), write Control
    /// with Commit clear and then set (so the commit is a 0 -> 1 edge even when
    /// Commit was left set), wait, and read Base and Size back. `control` holds the fields to
    /// program (IG, IW, Lock On Commit, Target Range Type...); Commit, Committed and
    /// Error Not Committed in it are ignored. Throws only for an access failure.
    public func commit(decoder n: Int, base: UInt64, size: UInt64, dpaSkip: UInt64 = 0, control: UInt64 = 0,
                       through access: HDMRegisterAccess) throws(PCIError) -> HDMCommitResult {
        let r = HDMDecoderRegisters(n)
        let low = HDMDecoderRegisters.lowAddressMask
        let fields = control & ~(Self.commit | Self.committed | Self.errorNotCommitted)
        for (reg, v) in zip(r.programming, [base & low, base >> 32, size & low, size >> 32, dpaSkip & low, dpaSkip >> 32]) {
            try access.write(reg.offset, v)
        }
        try access.write(r.control.offset, fields)
        try access.write(r.control.offset, fields | Self.commit)
        let wait = try awaitCommit { () throws(PCIError) in try access.read(r.control.offset) }
        let b = SplitAddress(low: UInt32(truncatingIfNeeded: try access.read(r.baseLow.offset)),
                             high: UInt32(truncatingIfNeeded: try access.read(r.baseHigh.offset))).value(lowMask: low)
        let s = SplitAddress(low: UInt32(truncatingIfNeeded: try access.read(r.sizeLow.offset)),
                             high: UInt32(truncatingIfNeeded: try access.read(r.sizeHigh.offset))).value(lowMask: low)
        return HDMCommitResult(wait: wait, base: b, size: s)
    }
}
