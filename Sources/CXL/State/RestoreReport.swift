import PCI

/// What happened to one register during a restore.
public struct RegisterOutcome: Sendable, Hashable, Codable {
    public enum Action: String, Sendable, Hashable, Codable {
        /// The saved value was written back.
        case written
        /// CONFIG_LOCK is live: the lockable fields keep the hardware's value; nothing
        /// was written because no unlocked bit differed.
        case lockedKept = "locked-kept"
        /// CONFIG_LOCK is live: unlocked bits were merged into the hardware value and written.
        case merged
        /// The decoder is live locked and committed: left alone.
        case leftAlone = "left-alone"
        /// Not restored by design (decoder not committed when saved; Lock saved clear).
        case skipped
        /// Read-only register: compared with the saved value.
        case compared
        /// Not attempted because an earlier step failed.
        case notAttempted = "not-attempted"
    }

    /// Which register (names rendered when read or encoded).
    var name: StateRegisterName
    public var block: String { get { name.block } set { name.block = newValue } }
    public var register: String { get { name.register } set { name.register = newValue } }
    public var width: Int
    public var saved: UInt64
    /// The live value read before restoring, where the algorithm needed it.
    public var live: UInt64?
    /// The last value written.
    public var written: UInt64?
    /// The value read back after the restore (nil when not read).
    public var after: UInt64?
    public var action: Action
    public var ok: Bool
    public var detail: String?

    public var key: RegisterKey { RegisterKey(name: name) }
    public var displayName: String { StateCatalog.displayName(block: block, register: register) }

    init(name: StateRegisterName, width: Int, saved: UInt64, action: Action, ok: Bool) {
        (self.name, self.width, self.saved, self.action, self.ok) = (name, width, saved, action, ok)
    }

    @inline(__always)
    init(name: StateRegisterName, width: Int, saved: UInt64, live: UInt64?, written: UInt64?, after: UInt64?,
         action: Action, ok: Bool, detail: String?) {
        (self.name, self.width, self.saved, self.action, self.ok) = (name, width, saved, action, ok)
        (self.live, self.written, self.after, self.detail) = (live, written, after, detail)
    }

    /// The JSON form: the names and every stored field, as the synthesized coding of a
    /// struct holding them (absent optionals left out).
    private struct Coded: Codable {
        var block: String, register: String, width: Int, saved: UInt64
        var live: UInt64?, written: UInt64?, after: UInt64?
        var action: Action, ok: Bool, detail: String?
    }

    public init(from decoder: any Decoder) throws {
        let c = try Coded(from: decoder)
        self.init(name: try StateRegisterName.decoded(block: c.block, register: c.register, codingPath: decoder.codingPath), width: c.width, saved: c.saved, action: c.action, ok: c.ok)
        (live, written, after, detail) = (c.live, c.written, c.after, c.detail)
    }

    public func encode(to encoder: any Encoder) throws {
        try Coded(block: block, register: register, width: width, saved: saved, live: live, written: written, after: after,
                  action: action, ok: ok, detail: detail).encode(to: encoder)
    }
}

/// What happened to one HDM decoder.
public struct DecoderOutcome: Sendable, Hashable, Codable {
    public enum Result: String, Sendable, Hashable, Codable {
        /// Programmed and committed; Committed read back within the budget.
        case committed
        /// Not committed in the saved state: not restored (as the kernel series).
        case skippedNotCommitted = "skipped-not-committed"
        /// Live locked (Lock On Commit) and committed: left alone.
        case leftLocked = "left-locked"
        /// Error Not Committed after Commit.
        case commitError = "commit-error"
        /// Neither Committed nor Error Not Committed within the budget.
        case commitTimeout = "commit-timeout"
        /// A live committed decoder did not de-commit within the budget.
        case decommitTimeout = "decommit-timeout"
        /// Committed in the saved state while a lower decoder was not: reported, not forced.
        case outOfOrder = "out-of-order"
        /// Not attempted: a lower decoder failed, and decoders commit in ascending order.
        case blocked
        /// A register access failed.
        case accessError = "access-error"

        public var isFailure: Bool {
            switch self {
            case .committed, .skippedNotCommitted, .leftLocked: return false
            default: return true
            }
        }
    }

    public var index: Int
    public var result: Result
    /// Why, or how (rendered on demand for a commit: "programmed, Committed after 1 read(s)").
    public var detail: String? {
        get { note.text }
        set { note = newValue.map(Note.text) ?? .none }
    }
    /// Decoder n Control polls after Commit.
    public var polls: Int

    /// The detail as the restore recorded it: text, or the commit's poll count.
    enum Note: Sendable, Hashable {
        case none
        case text(String)
        case committedAfter(polls: Int)
        var text: String? {
            switch self {
            case .none: return nil
            case .text(let s): return s
            case .committedAfter(let p): return "programmed, Committed after \(p) read(s)"
            }
        }
    }
    var note: Note

    public init(index: Int, result: Result, detail: String?, polls: Int) {
        self.init(index: index, result: result, note: detail.map(Note.text) ?? .none, polls: polls)
    }

    init(index: Int, result: Result, note: Note, polls: Int) {
        (self.index, self.result, self.note, self.polls) = (index, result, note, polls)
    }

    /// The JSON form, as the synthesized coding of the public fields.
    private struct Coded: Codable {
        var index: Int, result: Result, detail: String?, polls: Int
    }

    public init(from decoder: any Decoder) throws {
        let c = try Coded(from: decoder)
        self.init(index: c.index, result: c.result, detail: c.detail, polls: c.polls)
    }

    public func encode(to encoder: any Encoder) throws {
        try Coded(index: index, result: result, detail: detail, polls: polls).encode(to: encoder)
    }

    public static func == (a: DecoderOutcome, b: DecoderOutcome) -> Bool {
        a.index == b.index && a.result == b.result && a.detail == b.detail && a.polls == b.polls
    }

    public func hash(into h: inout Hasher) {
        h.combine(index); h.combine(result); h.combine(detail); h.combine(polls)
    }
}

/// One step of a restore, kept as what happened and rendered as text on demand.
enum RestoreStep: Sendable, Hashable {
    case text(String)
    /// "Decoder n: result (detail)".
    case decoder(DecoderOutcome)

    var text: String {
        switch self {
        case .text(let s): return s
        case .decoder(let d): return "Decoder \(d.index): \(d.result.rawValue)\(d.detail.map { " (\($0))" } ?? "")"
        }
    }
}

/// The outcome of a restore, register by register. A restore that ran to the end but
/// left any register differing from the snapshot has `succeeded == false`.
public struct RestoreReport: Sendable, Hashable, Codable {
    public var device: CXLDeviceIdentity
    /// CONFIG_LOCK was live, so the DVSEC took the merge path.
    public var dvsecLocked: Bool
    /// What the engine did, in order (rendered from `stepLog` when read).
    public var steps: [String] {
        get { stepLog.map(\.text) }
        set { stepLog = newValue.map(RestoreStep.text) }
    }
    var stepLog: [RestoreStep]
    /// Every register's outcome, in snapshot order. A report from `restore` keeps them as
    /// the restore recorded them (`RestoreRecord`) and builds this array each time it is
    /// read; setting it stores the array.
    public var registers: [RegisterOutcome] {
        get {
            switch outcomes {
            case .built(let list): return list
            case .recorded(let record): return record.outcomes
            }
        }
        set { outcomes = .built(newValue) }
    }
    var outcomes: Outcomes
    public var decoders: [DecoderOutcome]

    /// Where the register outcomes are.
    enum Outcomes: Sendable {
        case built([RegisterOutcome])
        case recorded(RestoreRecord)
    }

    public var failures: [String] {
        registers.filter { !$0.ok }.map { "\($0.displayName): \($0.detail ?? "differs")" }
            + decoders.filter { $0.result.isFailure }.map { "decoder \($0.index): \($0.result.rawValue)\($0.detail.map { " (\($0))" } ?? "")" }
    }

    public var succeeded: Bool { failures.isEmpty }

    public func outcome(_ block: String, _ register: String) -> RegisterOutcome? {
        registers.first { $0.block == block && $0.register == register }
    }

    /// The addresses and sizes restored, as the spec means them: saved (A) against read back (B).
    public var quantities: [CXLStateQuantity] {
        let registers = registers
        let saved = Dictionary(registers.map { ($0.key, $0.saved) }, uniquingKeysWith: { x, _ in x })
        let after = Dictionary(registers.compactMap { o in o.after.map { (o.key, $0) } }, uniquingKeysWith: { x, _ in x })
        return StateQuantities.compare({ saved[$0] }, { after[$0] }, decoderCount: decoders.count)
    }

    enum CodingKeys: String, CodingKey { case device, dvsecLocked, steps, registers, decoders, quantities }

    public init(device: CXLDeviceIdentity, dvsecLocked: Bool, steps: [String], registers: [RegisterOutcome], decoders: [DecoderOutcome]) {
        self.init(device: device, dvsecLocked: dvsecLocked, stepLog: steps.map(RestoreStep.text), registers: registers, decoders: decoders)
    }

    init(device: CXLDeviceIdentity, dvsecLocked: Bool, stepLog: [RestoreStep], registers: [RegisterOutcome], decoders: [DecoderOutcome]) {
        self.init(device: device, dvsecLocked: dvsecLocked, stepLog: stepLog, outcomes: .built(registers), decoders: decoders)
    }

    init(device: CXLDeviceIdentity, dvsecLocked: Bool, stepLog: [RestoreStep], outcomes: Outcomes, decoders: [DecoderOutcome]) {
        self.device = device
        self.dvsecLocked = dvsecLocked
        self.stepLog = stepLog
        self.outcomes = outcomes
        self.decoders = decoders
    }

    /// Equal when they say the same: steps compared as text.
    public static func == (a: RestoreReport, b: RestoreReport) -> Bool {
        a.device == b.device && a.dvsecLocked == b.dvsecLocked && a.steps == b.steps && a.registers == b.registers && a.decoders == b.decoders
    }

    public func hash(into h: inout Hasher) {
        h.combine(device); h.combine(dvsecLocked); h.combine(steps); h.combine(registers); h.combine(decoders)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(device: try c.decode(CXLDeviceIdentity.self, forKey: .device),
                  dvsecLocked: try c.decode(Bool.self, forKey: .dvsecLocked),
                  steps: try c.decode([String].self, forKey: .steps),
                  registers: try c.decode([RegisterOutcome].self, forKey: .registers),
                  decoders: try c.decode([DecoderOutcome].self, forKey: .decoders))
    }

    /// The stored fields, and the quantities (derived, for readers of the JSON).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(device, forKey: .device)
        try c.encode(dvsecLocked, forKey: .dvsecLocked)
        try c.encode(steps, forKey: .steps)
        try c.encode(registers, forKey: .registers)
        try c.encode(decoders, forKey: .decoders)
        try c.encode(quantities, forKey: .quantities)
    }
}

/// The per-register record of one restore: for each register of the snapshot, the
/// fields of its `RegisterOutcome` but the names and the detail text, as plain data in
/// one buffer (updating a field costs a store), and the details apart. Only the
/// `RestoreRun` that made it writes it, on one thread from start to end; once `restore`
/// returns it is read-only, which is what makes sharing it between copies of a report
/// (`RestoreReport.Outcomes.recorded`) safe.
final class RestoreRecord: @unchecked Sendable {
    /// One register's outcome fields, and the two values only the run uses.
    /// Packed: the five optional values as plain words and one byte of presence bits
    /// (48 bytes a slot, not 88: a restore walks every slot several times).
    struct Slot {
        var action: RegisterOutcome.Action
        var ok = true
        private var present: UInt8 = 0
        private var values: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)

        init(action: RegisterOutcome.Action) { self.action = action }

        enum Value: Int { case live, written, after, fresh, prefetched }

        /// Value `v`, nil when it was never set (or set to nil).
        subscript(_ v: Value) -> UInt64? {
            get {
                guard present & (1 << v.rawValue) != 0 else { return nil }
                return withUnsafeBytes(of: values) { $0.load(fromByteOffset: 8 * v.rawValue, as: UInt64.self) }
            }
            set {
                guard let newValue else { present &= ~(1 << v.rawValue); return }
                withUnsafeMutableBytes(of: &values) { $0.storeBytes(of: newValue, toByteOffset: 8 * v.rawValue, as: UInt64.self) }
                present |= 1 << v.rawValue
            }
        }

        /// The live value read before restoring (`RegisterOutcome.live`).
        var live: UInt64? { get { self[.live] } set { self[.live] = newValue } }
        /// The last value written.
        var written: UInt64? { get { self[.written] } set { self[.written] = newValue } }
        /// The value read back (`RegisterOutcome.after`).
        var after: UInt64? { get { self[.after] } set { self[.after] = newValue } }
        /// A value read after the register's last write: verification does not read again.
        var fresh: UInt64? { get { self[.fresh] } set { self[.fresh] = newValue } }
        /// Decoder n Control as the batched read before the decoder loop found it.
        var prefetched: UInt64? { get { self[.prefetched] } set { self[.prefetched] = newValue } }
    }

    let registers: [SavedRegister]
    /// One slot per register, allocated here and freed in `deinit` (`Slot` is trivial).
    let slots: UnsafeMutableBufferPointer<Slot>
    /// Outcome details by register index (only failures and deliberate skips have one).
    @exclusivity(unchecked) var details: [Int: String] = [:]

    init(registers: [SavedRegister], _ initial: (SavedRegister) -> Slot) {
        self.registers = registers
        slots = .allocate(capacity: registers.count)
        for (i, r) in registers.enumerated() { slots.initializeElement(at: i, to: initial(r)) }
    }

    deinit {
        slots.deinitialize()
        slots.deallocate()
    }

    /// The outcomes, in snapshot order.
    var outcomes: [RegisterOutcome] {
        var out = registers.indices.map { i in
            let r = registers[i], s = slots[i]
            return RegisterOutcome(name: r.name, width: r.width, saved: r.value, live: s.live, written: s.written, after: s.after,
                                   action: s.action, ok: s.ok, detail: nil)
        }
        for (i, d) in details { out[i].detail = d }
        return out
    }
}
