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

    public var block: String
    public var register: String
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

    public var key: RegisterKey { RegisterKey(block: block, register: register) }
    public var displayName: String { StateCatalog.displayName(block: block, register: register) }
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
    public var detail: String?
    /// Decoder n Control polls after Commit.
    public var polls: Int
}

/// The outcome of a restore, register by register. A restore that ran to the end but
/// left any register differing from the snapshot has `succeeded == false`.
public struct RestoreReport: Sendable, Hashable, Codable {
    public var device: CXLDeviceIdentity
    /// CONFIG_LOCK was live, so the DVSEC took the merge path.
    public var dvsecLocked: Bool
    /// What the engine did, in order.
    public var steps: [String]
    public var registers: [RegisterOutcome]
    public var decoders: [DecoderOutcome]

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
        let saved = Dictionary(registers.map { ($0.key, $0.saved) }, uniquingKeysWith: { x, _ in x })
        let after = Dictionary(registers.compactMap { o in o.after.map { (o.key, $0) } }, uniquingKeysWith: { x, _ in x })
        return StateQuantities.compare({ saved[$0] }, { after[$0] }, decoderCount: decoders.count)
    }

    enum CodingKeys: String, CodingKey { case device, dvsecLocked, steps, registers, decoders, quantities }

    public init(device: CXLDeviceIdentity, dvsecLocked: Bool, steps: [String], registers: [RegisterOutcome], decoders: [DecoderOutcome]) {
        self.device = device
        self.dvsecLocked = dvsecLocked
        self.steps = steps
        self.registers = registers
        self.decoders = decoders
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
