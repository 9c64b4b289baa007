import PCI

extension CXLStateEngine {
    /// Write `snapshot` back to the function, in the order the hardware needs, and
    /// report every register's outcome.
    ///
    /// Throws only when nothing was written: the state belongs to another device, the
    /// DVSEC is not where the snapshot says, or the identity could not be read. Once
    /// writing starts every step runs and its outcome goes into the report; unlike
    /// the kernel series nothing is warn-and-continue: `succeeded` is false if any
    /// register ended up different from the snapshot.
    ///
    /// Order, and why:
    /// 1. BARs. Every MMIO access below goes through them; after a conventional reset
    ///    they read 0 and the component registers are not decoded anywhere.
    /// 2. PCI Express Device/Link Control and Control 2 (payload sizes, error
    ///    reporting, completion timeouts) before the device is asked to do anything.
    /// 3. Memory Space Enable, temporarily, if clear: the HDM registers are MMIO.
    /// 4. DVSEC, lock-aware. CONFIG_LOCK survives a CXL Reset; when it is live the
    ///    RWL fields cannot be written, so they keep the hardware's value (merge) and
    ///    Lock is never written. Control2 is not lockable and carries no lock; its
    ///    persistent bits are written first, its doorbells never. Range 1/2 Base next.
    /// 5. HDM Decoder Global Control (HDM Decoder Enable) before any decoder, then the
    ///    decoders in ascending index order, each committed and polled before the next:
    ///    with Lock On Commit the hardware checks decoder n-1 is committed before
    ///    accepting n (CXL 3.1 §8.2.4.20.12), and Linux enforces the same order.
    /// 6. DVSEC Control last among the CXL enables. Unlike the kernel series, which
    ///    wrote Control (Mem_Enable) before the decoders, CXL.mem is enabled only once
    ///    every decoder is committed, so no memory traffic is decoded against a
    ///    half-programmed decoder set (Jonathan Cameron's objection to the series).
    /// 7. DVSEC Lock last: CONFIG_LOCK freezes Control and the Range Bases, so it can
    ///    only be re-armed after they hold their final values. Lock is RWO: it is
    ///    written only when the saved value has CONFIG_LOCK set, because writing 0
    ///    would use up the write-once and keep firmware from ever locking it.
    /// 8. The HDM registers are read back while Memory Space is still enabled.
    /// 9. Command, from the snapshot: this puts Memory Space Enable back.
    /// 10. MSI (address, data, mask, then Message Control) and MSI-X Message Control,
    ///    after Command, as `pci_restore_state` does.
    /// 11. The config registers are read back; every register is compared with the
    ///    snapshot (a value already read after the last write is not read again).
    public func restore(_ snapshot: CXLStateSnapshot) throws(CXLStateError) -> RestoreReport {
        try snapshot.validate()
        let confirmed = try check(snapshot)
        let run = RestoreRun(engine: self, snapshot: snapshot, confirmed: confirmed)
        run.execute()
        var report = run.report
        // The report names the function restored (its address), not the one the snapshot was saved from.
        report.device = (try? liveIdentity(snapshot.layout)) ?? snapshot.identity
        return report
    }
}

/// One restore: the engine's steps and the outcomes they collect.
final class RestoreRun {
    let engine: CXLStateEngine
    let snapshot: CXLStateSnapshot
    private var outcomes: [RegisterKey: RegisterOutcome] = [:]
    /// Values read after the register's last write: verification does not read again.
    private var fresh: [RegisterKey: UInt64] = [:]
    private var failed: Set<RegisterKey> = []
    private var steps: [String] = []
    private var decoders: [DecoderOutcome] = []
    private var locked = false

    init(engine: CXLStateEngine, snapshot: CXLStateSnapshot, confirmed: [RegisterKey: UInt64] = [:]) {
        self.engine = engine
        self.snapshot = snapshot
        fresh = confirmed
        for r in snapshot.registers {
            outcomes[r.key] = RegisterOutcome(block: r.block, register: r.register, width: r.width, saved: r.value,
                                              action: r.role == .verify ? .compared : .notAttempted, ok: true)
        }
    }

    var report: RestoreReport {
        RestoreReport(device: snapshot.identity, dvsecLocked: locked, steps: steps,
                      registers: snapshot.registers.compactMap { outcomes[$0.key] }, decoders: decoders)
    }

    // MARK: Register operations

    private func step(_ s: String) { steps.append(s) }

    private func set(_ key: RegisterKey, _ change: (inout RegisterOutcome) -> Void) {
        if var o = outcomes[key] { change(&o); outcomes[key] = o }
    }

    private func fail(_ key: RegisterKey, _ detail: String) {
        failed.insert(key)
        set(key) { $0.ok = false; $0.detail = $0.detail.map { "\($0); \(detail)" } ?? detail }
    }

    @discardableResult
    private func write(_ r: SavedRegister, _ value: UInt64, action: RegisterOutcome.Action = .written) -> Bool {
        fresh[r.key] = nil
        set(r.key) { $0.action = action }
        do {
            try engine.write(r, value)
            set(r.key) { $0.written = value }
            return true
        } catch {
            fail(r.key, "write of \(HexCoding.format(value, width: r.width)) failed: \(error)")
            return false
        }
    }

    /// Read a live value the algorithm needs to decide; it also serves as read-back
    /// if nothing is written afterwards.
    private func readLive(_ r: SavedRegister) -> UInt64? {
        do {
            let v = try engine.read(r)
            fresh[r.key] = v
            set(r.key) { if $0.live == nil { $0.live = v } }
            return v
        } catch {
            fail(r.key, "read failed: \(error)")
            return nil
        }
    }

    private enum PollEnd { case done(UInt64), timeout, failed }

    /// Read `r` until `done` holds or `budget` runs out; the first read is immediate.
    private func poll(_ r: SavedRegister, budget: Duration, interval: Duration,
                      _ done: (UInt64) -> Bool) -> (PollEnd, polls: Int) {
        let clock = engine.options.clock
        let start = clock.now()
        var polls = 0
        while true {
            let v: UInt64
            do { v = try engine.read(r) } catch {
                fail(r.key, "read failed: \(error)")
                return (.failed, polls)
            }
            polls += 1
            fresh[r.key] = v
            if done(v) { return (.done(v), polls) }
            let elapsed = clock.now() - start
            if elapsed >= budget { return (.timeout, polls) }
            clock.sleep(for: min(interval, budget - elapsed))
        }
    }

    private func saved(_ key: RegisterKey) -> SavedRegister? { snapshot[key] }
    private func dvsec(_ layout: RegisterLayout) -> SavedRegister? { snapshot.dvsec(layout) }

    /// A DVSEC RWL register: written when unlocked; with CONFIG_LOCK live the lockable
    /// fields keep the hardware value (mask from the catalog) and only a difference in
    /// unlocked writable bits is written.
    private func restoreLockable(_ r: SavedRegister, _ layout: RegisterLayout) {
        guard locked else { write(r, r.value); return }
        guard let live = readLive(r) else { return }
        let lockable = layout.lockableMask
        let merged = (live & lockable) | (r.value & ~lockable)
        if (merged ^ live) & layout.writableMask != 0 {
            write(r, merged, action: .merged)
        } else {
            set(r.key) { $0.action = .lockedKept }
        }
    }

    // MARK: The restore

    func execute() {
        let hdm = snapshot.layout.hdm

        // 1. BARs.
        let bars = (0..<6).compactMap { saved(StateCatalog.barKey($0)) }
        for r in bars { write(r, r.value) }
        if !bars.isEmpty { step("BARs written first: every MMIO access below goes through them") }

        // 2. PCI Express control registers.
        let pcie = snapshot.registers.filter { $0.block == StateCatalog.pciExpressBlock }
        for r in pcie { write(r, r.value) }
        if !pcie.isEmpty { step("PCI Express Device/Link Control and Control 2 written") }

        // 3. Memory Space Enable for the MMIO accesses.
        let command = saved(StateCatalog.commandKey)
        if hdm != nil, let command, let live = readLive(command), live & StateCatalog.memorySpaceEnableBit == 0 {
            if write(command, live | StateCatalog.memorySpaceEnableBit) {
                step("Memory Space Enable set temporarily for the HDM decoder accesses")
            }
        }

        // 4. DVSEC: lock state decides the path.
        if let lock = dvsec(CXLDeviceDVSEC.lock) {
            // An unreadable Lock is treated as locked: the merge path writes nothing locked.
            let live = readLive(lock) ?? StateCatalog.configLockBit
            locked = live & StateCatalog.configLockBit != 0
            step(locked ? "CONFIG_LOCK is set: DVSEC merge path, locked fields keep the hardware value, Lock not written"
                        : "CONFIG_LOCK is clear: DVSEC unlocked path")
        }
        if let c2 = dvsec(CXLDeviceDVSEC.control2) {
            write(c2, c2.value & StateCatalog.control2PersistentMask)
            step("DVSEC CXL Control2 persistent bits written (doorbells never)")
        }
        var ranges = 0
        for range in [CXLDeviceDVSEC.range1, CXLDeviceDVSEC.range2] {
            for layout in [range.baseHigh, range.baseLow] {
                if let r = dvsec(layout) { restoreLockable(r, layout); ranges += 1 }
            }
        }
        if ranges > 0 { step(locked ? "DVSEC Range 1/2 Base merged with the locked hardware values" : "DVSEC Range 1/2 Base written") }

        // 5. HDM decoders.
        if let hdm { restoreHDM(hdm) }

        // 6. DVSEC Control after the decoders.
        if let control = dvsec(CXLDeviceDVSEC.control) {
            restoreLockable(control, CXLDeviceDVSEC.control)
            step(locked ? "DVSEC CXL Control merged (locked)" : "DVSEC CXL Control written after the decoders (Mem_Enable last)")
        }

        // 7. Lock last, only to re-arm it.
        if let lock = dvsec(CXLDeviceDVSEC.lock) {
            if locked {
                set(lock.key) { $0.action = .lockedKept }
            } else if lock.value & StateCatalog.configLockBit != 0 {
                write(lock, lock.value)
                step("DVSEC CXL Lock written last: CONFIG_LOCK re-armed")
            } else {
                set(lock.key) { $0.action = .skipped; $0.detail = "saved clear; Lock is write-once, not written" }
            }
        }

        // 8. Read back the MMIO registers while Memory Space is enabled.
        verify(snapshot.registers.filter { $0.space != .config })

        // 9. Command puts Memory Space Enable back to the saved value.
        if let command {
            write(command, command.value)
            step("Command written from the snapshot (Memory Space Enable put back)")
        }

        // 10. MSI and MSI-X, enables last.
        let msi = snapshot.registers.filter { $0.block == StateCatalog.msiBlock }
        let msiControl = msi.filter { $0.register == MSICapability.messageControl.name }
        for r in msi.filter({ $0.register != MSICapability.messageControl.name }) + msiControl { write(r, r.value) }
        for r in snapshot.registers where r.block == StateCatalog.msixBlock { write(r, r.value) }
        if !msi.isEmpty || snapshot.registers.contains(where: { $0.block == StateCatalog.msixBlock }) {
            step("MSI/MSI-X control written after Command")
        }

        // 11. Read back config space.
        verify(snapshot.registers.filter { $0.space == .config })
        // A register the steps above never reached is a failure, not a silent pass.
        for r in snapshot.registers where outcomes[r.key]?.action == .notAttempted && outcomes[r.key]?.ok == true {
            fail(r.key, "not attempted")
        }
    }

    private func restoreHDM(_ hdm: HDMLocation) {
        let block = StateCatalog.hdmBlock
        if let global = saved(RegisterKey(block: block, register: HDMDecoderCapability.globalControl.name)) {
            write(global, global.value)
            step("HDM Decoder Global Control written before the decoders")
        }
        let committed = StateCatalog.committedBit, commit = StateCatalog.commitBit
        let error = StateCatalog.errorNotCommittedBit, lockOnCommit = StateCatalog.lockOnCommitBit
        let budget = engine.options.commitTimeout, interval = engine.options.commitPollInterval
        var lowerUncommitted: Int?
        var blockedBy: Int?

        for n in 0..<hdm.decoderCount {
            let regs = snapshot.decoder(n)
            guard let control = regs.first(where: { $0.register == StateCatalog.decoderControlName(n) }) else { continue }
            let others = regs.filter { $0.key != control.key }
            func mark(_ action: RegisterOutcome.Action, ok: Bool, _ detail: String) {
                for r in regs {
                    set(r.key) {
                        $0.action = action
                        $0.detail = detail
                        if !ok { $0.ok = false }
                    }
                    if !ok { failed.insert(r.key) }
                }
            }
            func outcome(_ result: DecoderOutcome.Result, _ detail: String? = nil, polls: Int = 0) {
                decoders.append(DecoderOutcome(index: n, result: result, detail: detail, polls: polls))
                step("Decoder \(n): \(result.rawValue)\(detail.map { " (\($0))" } ?? "")")
            }

            if control.value & committed == 0 {
                mark(.skipped, ok: true, "not committed when saved: not restored")
                outcome(.skippedNotCommitted)
                if lowerUncommitted == nil { lowerUncommitted = n }
                continue
            }
            if let lower = lowerUncommitted {
                let why = "committed in the saved state while decoder \(lower) was not; decoders commit in ascending order"
                mark(.notAttempted, ok: false, why)
                outcome(.outOfOrder, why)
                continue
            }
            if let b = blockedBy {
                let why = "decoder \(b) failed; decoders commit in ascending order"
                mark(.notAttempted, ok: false, why)
                outcome(.blocked, why)
                continue
            }
            guard let live = readLive(control) else {
                outcome(.accessError, "Decoder \(n) Control unreadable")
                blockedBy = n
                continue
            }
            if live & lockOnCommit != 0 && live & committed != 0 {
                mark(.leftAlone, ok: true, "live locked and committed: left alone")
                outcome(.leftLocked)
                continue
            }
            // A decoder that is committed, or armed (Commit set after an error), must be
            // de-committed first: a new commit needs Commit to go 0 -> 1.
            if live & (commit | committed) != 0 {
                guard write(control, live & ~commit) else { outcome(.accessError); blockedBy = n; continue }
                if live & committed != 0 {
                    let (end, polls) = poll(control, budget: budget, interval: interval) { $0 & committed == 0 }
                    guard case .done = end else {
                        fail(control.key, "still Committed \(budget.humanReadable) after Commit was cleared")
                        outcome(.decommitTimeout, nil, polls: polls)
                        blockedBy = n
                        continue
                    }
                }
            }
            // Base Low/High, Size Low/High, DPA Skip (or Target List) Low/High, in the
            // kernel's order, then Control with Commit set.
            var ok = true
            for r in others { ok = write(r, r.value) && ok }
            guard ok else { outcome(.accessError, "programming failed; not committed"); blockedBy = n; continue }
            let value = (control.value & ~(committed | error)) | commit
            guard write(control, value) else { outcome(.accessError); blockedBy = n; continue }
            let (end, polls) = poll(control, budget: budget, interval: interval) { $0 & (committed | error) != 0 }
            switch end {
            case .done(let v) where v & committed != 0:
                outcome(.committed, "programmed, Committed after \(polls) read(s)", polls: polls)
            case .done:
                fail(control.key, "Error Not Committed")
                // Spec recovery: clear Commit so the decoder is not left armed.
                write(control, value & ~commit)
                outcome(.commitError, nil, polls: polls)
                blockedBy = n
            case .timeout:
                fail(control.key, "neither Committed nor Error Not Committed within \(budget.humanReadable)")
                outcome(.commitTimeout, "budget \(budget.humanReadable)", polls: polls)
                blockedBy = n
            case .failed:
                outcome(.accessError, nil, polls: polls)
                blockedBy = n
            }
        }
    }

    /// Compare each register with the snapshot, reading it unless a value read after
    /// its last write is at hand. Registers not restored by design are not read.
    private func verify(_ registers: [SavedRegister]) {
        for r in registers {
            guard let o = outcomes[r.key], o.action != .skipped || r.block != StateCatalog.hdmBlock,
                  o.action != .notAttempted else { continue }
            let after: UInt64
            if let v = fresh[r.key] {
                after = v
            } else {
                do { after = try engine.read(r) } catch {
                    fail(r.key, "read-back failed: \(error)")
                    continue
                }
                fresh[r.key] = after
            }
            set(r.key) { $0.after = after }
            guard !StateCatalog.equivalent(r.key, r.value, after) else { continue }
            switch o.action {
            case .lockedKept, .merged:
                fail(r.key, "CONFIG_LOCK is set and the hardware holds a different value; locked fields cannot be restored")
            case .leftAlone:
                fail(r.key, "decoder is locked and committed with a different value")
            case .compared:
                fail(r.key, "read-only register differs from the snapshot")
            default:
                if !failed.contains(r.key) { fail(r.key, "reads back \(HexCoding.format(after, width: r.width))") }
            }
        }
    }
}
