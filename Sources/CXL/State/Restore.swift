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
        let live = try liveIdentity(snapshot.layout)
        let confirmed = try check(snapshot, live: live)
        let run = RestoreRun(engine: self, snapshot: snapshot, confirmed: confirmed)
        run.execute()
        var report = run.report
        // The report names the function restored (its address), not the one the snapshot
        // was saved from: the identity read before writing (the restore changes no ID).
        report.device = live
        return report
    }
}

/// One restore: the engine's steps and the outcomes they collect. Registers are
/// addressed by their index in the snapshot (found once, by location), so a restore
/// of N decoders does no name lookups per register.
final class RestoreRun {
    let engine: CXLStateEngine
    let snapshot: CXLStateSnapshot
    private let regs: [SavedRegister]

    typealias Slot = RestoreRecord.Slot
    /// What the restore did to each register; the report keeps it.
    private let record: RestoreRecord
    /// `record.slots`, held here: one load per access.
    private let slots: UnsafeMutableBufferPointer<Slot>
    @exclusivity(unchecked) private var steps: [RestoreStep] = []
    @exclusivity(unchecked) private var decoders: [DecoderOutcome] = []
    @exclusivity(unchecked) private var locked = false
    private let at: SnapshotIndex
    /// Waits on Decoder n Control through the options' clock (one for the whole restore).
    private let committer: HDMCommitter

    init(engine: CXLStateEngine, snapshot: CXLStateSnapshot, confirmed: ConfirmedRegisters = []) {
        self.engine = engine
        self.snapshot = snapshot
        committer = HDMCommitter(engine.options)
        regs = snapshot.registers
        record = RestoreRecord(registers: regs) { r in Slot(action: r.role == .verify ? .compared : .notAttempted) }
        slots = record.slots
        // Read-only registers the capability check already read equal: no second read.
        for c in confirmed where c.index < regs.count && regs[c.index].role == .verify { slots[c.index].fresh = c.value }
        at = SnapshotIndex(snapshot)
        // One step and one outcome per decoder, a dozen steps besides: allocated once.
        decoders.reserveCapacity(at.decoders.count)
        steps.reserveCapacity(at.decoders.count + 16)
    }

    /// The report; its register outcomes are built from the record when read.
    var report: RestoreReport {
        RestoreReport(device: snapshot.identity, dvsecLocked: locked, stepLog: steps, outcomes: .recorded(record), decoders: decoders)
    }

    // MARK: Register operations

    private func step(_ s: String) { steps.append(.text(s)) }

    private func fail(_ i: Int, _ detail: String) {
        slots[i].ok = false
        record.details[i] = record.details[i].map { "\($0); \(detail)" } ?? detail
    }

    /// Write register `i`; `posted` lets a BAR write complete later (the next read of
    /// the function orders after it; the read-back catches a lost write).
    @discardableResult
    private func write(_ i: Int, _ value: UInt64, action: RegisterOutcome.Action = .written, posted: Bool = false) -> Bool {
        slots[i].fresh = nil
        slots[i].action = action
        do {
            try engine.write(regs[i], value, posted: posted)
            slots[i].written = value
            return true
        } catch {
            fail(i, "write of \(HexCoding.format(value, width: regs[i].width)) failed: \(error)")
            return false
        }
    }

    /// Posted writes of registers in one BAR, in order, as one batch (`barWritePosted(_:_:)`);
    /// registers of another space are written one by one. A failed batch fails every
    /// register in it (which of them landed is unknown; the read-back tells).
    private func writePosted(_ batch: [(Int, UInt64)]) -> Bool {
        guard case .bar(let bar)? = batch.first.map({ regs[$0.0].space }),
              batch.allSatisfy({ regs[$0.0].space == .bar(bar) }) else {
            var ok = true
            for (i, v) in batch { ok = write(i, v, posted: true) && ok }
            return ok
        }
        for (i, _) in batch {
            slots[i].fresh = nil
            slots[i].action = .written
        }
        do {
            try engine.function.barWritePosted(bar, batch.map { PostedBARWrite(offset: regs[$0.0].offset, width: regs[$0.0].width, value: $0.1) })
            for (i, v) in batch { slots[i].written = v }
            return true
        } catch {
            for (i, v) in batch { fail(i, "write of \(HexCoding.format(v, width: regs[i].width)) failed: \(error)") }
            return false
        }
    }

    /// Decoder n's programming registers (`others`: positions in `at.decoderOthers`,
    /// their saved values) and then its Control (`value`), as one batch of posted
    /// writes (`writePosted`), built without intermediate arrays.
    /// `function`, `flat` (`at.decoderOthers`) and `batch` come from the decoder loop,
    /// which holds them for the whole loop (read from `self` here, each call would retain
    /// and release them).
    private func writeDecoder(_ others: Range<Int>, control: Int, _ value: UInt64, function: any PCIFunction,
                              flat: [Int], batch: inout [PostedBARWrite]) -> Bool {
        guard case .bar(let bar) = regs[control].space, flat[others].allSatisfy({ regs[$0].space == .bar(bar) }) else {
            return writePosted(flat[others].map { ($0, regs[$0].value) } + [(control, value)])
        }
        // The batch keeps its length from decoder to decoder (every decoder has as many
        // registers): its elements are overwritten in place, not removed and appended.
        if batch.count != others.count + 1 {
            batch = [PostedBARWrite](repeating: PostedBARWrite(offset: 0, width: 4, value: 0), count: others.count + 1)
        }
        batch.withUnsafeMutableBufferPointer { b in
            var j = 0
            for k in others {
                let i = flat[k]
                slots[i].fresh = nil
                slots[i].action = .written
                b[j] = PostedBARWrite(offset: regs[i].offset, width: regs[i].width, value: regs[i].value)
                j += 1
            }
            b[j] = PostedBARWrite(offset: regs[control].offset, width: regs[control].width, value: value)
        }
        slots[control].fresh = nil
        slots[control].action = .written
        do {
            try function.barWritePosted(bar, batch)
            for k in others { slots[flat[k]].written = regs[flat[k]].value }
            slots[control].written = value
            return true
        } catch {
            for k in others { fail(flat[k], "write of \(HexCoding.format(regs[flat[k]].value, width: regs[flat[k]].width)) failed: \(error)") }
            fail(control, "write of \(HexCoding.format(value, width: regs[control].width)) failed: \(error)")
            return false
        }
    }

    /// Read a live value the algorithm needs to decide; it also serves as read-back
    /// if nothing is written afterwards.
    private func readLive(_ i: Int) -> UInt64? {
        do {
            let v = try engine.read(regs[i])
            noteLive(i, v)
            return v
        } catch {
            fail(i, "read failed: \(error)")
            return nil
        }
    }

    private func noteLive(_ i: Int, _ v: UInt64) {
        slots[i].fresh = v
        if slots[i].live == nil { slots[i].live = v }
    }

    /// Wait on Decoder n Control (register `i`) through the host-side committer;
    /// nil when a read failed (recorded). Every value read is kept for verification.
    private func wait(_ i: Int, decommit: Bool) -> HDMCommitWait? {
        func read() throws(CXLStateError) -> UInt64 {
            let v = try engine.read(regs[i])
            slots[i].fresh = v
            return v
        }
        do throws(CXLStateError) {
            return decommit ? try committer.awaitDecommit(read) : try committer.awaitCommit(read)
        } catch {
            fail(i, "read failed: \(error)")
            return nil
        }
    }

    /// A DVSEC RWL register: written when unlocked; with CONFIG_LOCK live the lockable
    /// fields keep the hardware value (mask from the catalog) and only a difference in
    /// unlocked writable bits is written.
    private func restoreLockable(_ i: Int, _ layout: RegisterLayout) {
        guard locked else { write(i, regs[i].value); return }
        guard let live = readLive(i) else { return }
        let lockable = layout.lockableMask
        let merged = (live & lockable) | (regs[i].value & ~lockable)
        if (merged ^ live) & layout.writableMask != 0 {
            write(i, merged, action: .merged)
        } else {
            slots[i].action = .lockedKept
        }
    }

    /// Read the live values of registers `indices` in as few accesses as the function
    /// allows: one bulk read per space over the span they cover (a span of at most
    /// 4 KiB of DWORD-aligned registers), else one read each; `found(i, value)` for
    /// each register read. Failures are recorded per register.
    private func readMany(_ indices: [Int], live: Bool, _ found: (Int, UInt64) -> Void) {
        // Spaces in first-seen order with the span their registers cover (a snapshot
        // has config and one BAR). The first space's span is kept in locals: every call
        // of a restore reads one space, so the array takes only the rare others.
        guard let firstIndex = indices.first else { return }
        let space0 = regs[firstIndex].space
        var lo0 = UInt64.max, hi0: UInt64 = 0, count0 = 0
        var spans: [(space: RegisterSpace, lo: UInt64, hi: UInt64, count: Int)] = []
        regs.withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return }
            for i in indices {
                let r = base + i
                if r.pointee.space == space0 {
                    lo0 = min(lo0, r.pointee.offset)
                    hi0 = max(hi0, r.pointee.offset + UInt64(r.pointee.width))
                    count0 += 1
                    continue
                }
                var k = 0
                while k < spans.count && spans[k].space != r.pointee.space { k += 1 }
                if k == spans.count {
                    spans.append((r.pointee.space, r.pointee.offset, r.pointee.offset + UInt64(r.pointee.width), 1))
                } else {
                    spans[k].lo = min(spans[k].lo, r.pointee.offset)
                    spans[k].hi = max(spans[k].hi, r.pointee.offset + UInt64(r.pointee.width))
                    spans[k].count += 1
                }
            }
        }
        if !spans.isEmpty { spans.insert((space0, lo0, hi0, count0), at: 0) }
        for k in 0 ..< max(spans.count, 1) {
            let span = spans.isEmpty ? (space: space0, lo: lo0, hi: hi0, count: count0) : spans[k]
            let lo = span.lo & ~3, hi = (span.hi + 3) & ~3
            if span.count > 1, hi - lo <= 4096 {
                let bytes: [UInt8]?
                do throws(PCIError) {
                    switch span.space {
                    case .config: bytes = try engine.function.configReadBytes(Int(lo), count: Int(hi - lo))
                    case .bar(let b): bytes = try engine.function.barReadBytes(b, offset: lo, count: Int(hi - lo))
                    }
                } catch { bytes = nil }
                if let bytes {
                    // Registers looked at in place; with one space (the usual call) no space test each.
                    let oneSpace = spans.isEmpty
                    bytes.withUnsafeBytes { raw in
                        regs.withUnsafeBufferPointer { all in
                            guard let base = all.baseAddress else { return }
                            for i in indices {
                                let r = base + i
                                if !oneSpace && r.pointee.space != span.space { continue }
                                if let v = LittleEndian.load(raw, at: Int(r.pointee.offset - lo), width: r.pointee.width) { found(i, v) }
                            }
                        }
                    }
                    continue
                }
            }
            for i in indices where regs[i].space == span.space {
                do { found(i, try engine.read(regs[i])) } catch {
                    fail(i, live ? "read failed: \(error)" : "read-back failed: \(error)")
                }
            }
        }
    }

    // MARK: The restore

    func execute() {
        let hdm = snapshot.layout.hdm

        // 1. BARs.
        for i in at.bars { write(i, regs[i].value) }
        if !at.bars.isEmpty { step("BARs written first: every MMIO access below goes through them") }

        // 2. PCI Express control registers.
        for i in at.pciExpress { write(i, regs[i].value) }
        if !at.pciExpress.isEmpty { step("PCI Express Device/Link Control and Control 2 written") }

        // 3. Memory Space Enable for the MMIO accesses.
        let command = at.command
        if hdm != nil, let command, let live = readLive(command), live & StateCatalog.memorySpaceEnableBit == 0 {
            if write(command, live | StateCatalog.memorySpaceEnableBit) {
                step("Memory Space Enable set temporarily for the HDM decoder accesses")
            }
        }

        // 4. DVSEC: lock state decides the path.
        if let lock = at.lock {
            // An unreadable Lock is treated as locked: the merge path writes nothing locked.
            let live = readLive(lock) ?? StateCatalog.configLockBit
            locked = live & StateCatalog.configLockBit != 0
            step(locked ? "CONFIG_LOCK is set: DVSEC merge path, locked fields keep the hardware value, Lock not written"
                        : "CONFIG_LOCK is clear: DVSEC unlocked path")
        }
        if let c2 = at.control2 {
            write(c2, regs[c2].value & StateCatalog.control2PersistentMask)
            step("DVSEC CXL Control2 persistent bits written (doorbells never)")
        }
        for (i, k) in at.rangeBases { restoreLockable(i, StateRegisterTable.rangeBaseLayouts[k]) }
        if !at.rangeBases.isEmpty {
            step(locked ? "DVSEC Range 1/2 Base merged with the locked hardware values" : "DVSEC Range 1/2 Base written")
        }

        // 5. HDM decoders.
        if let hdm { restoreHDM(hdm) }

        // 6. DVSEC Control after the decoders.
        if let control = at.control {
            restoreLockable(control, CXLDeviceDVSEC.control)
            step(locked ? "DVSEC CXL Control merged (locked)" : "DVSEC CXL Control written after the decoders (Mem_Enable last)")
        }

        // 7. Lock last, only to re-arm it.
        if let lock = at.lock {
            if locked {
                slots[lock].action = .lockedKept
            } else if regs[lock].value & StateCatalog.configLockBit != 0 {
                write(lock, regs[lock].value)
                step("DVSEC CXL Lock written last: CONFIG_LOCK re-armed")
            } else {
                slots[lock].action = .skipped
                record.details[lock] = "saved clear; Lock is write-once, not written"
            }
        }

        // 8. Read back the MMIO registers while Memory Space is enabled.
        verify(at.mmio)

        // 9. Command puts Memory Space Enable back to the saved value.
        if let command {
            write(command, regs[command].value)
            step("Command written from the snapshot (Memory Space Enable put back)")
        }

        // 10. MSI and MSI-X, enables last.
        for i in at.msi { write(i, regs[i].value) }
        for i in at.msix { write(i, regs[i].value) }
        if !at.msi.isEmpty || !at.msix.isEmpty { step("MSI/MSI-X control written after Command") }

        // 11. Read back config space.
        verify(at.config)
        // A register the steps above never reached is a failure, not a silent pass.
        for i in regs.indices where slots[i].action == .notAttempted && slots[i].ok {
            fail(i, "not attempted")
        }
    }

    private func restoreHDM(_ hdm: HDMLocation) {
        if let global = at.globalControl {
            write(global, regs[global].value, posted: true)
            step("HDM Decoder Global Control written before the decoders")
        }
        let committed = StateCatalog.committedBit, commit = StateCatalog.commitBit
        let error = StateCatalog.errorNotCommittedBit, lockOnCommit = StateCatalog.lockOnCommitBit
        let budget = engine.options.commitTimeout
        var lowerUncommitted: Int?
        var blockedBy: Int?
        // The live Control of every decoder saved committed, in one batched read: the
        // restore decides from them, decoder by decoder (a commit of decoder m does not
        // change decoder n's Control).
        var wanted: [Int] = []
        wanted.reserveCapacity(at.decoders.count)
        for d in at.decoders { if let c = d.control, regs[c].value & committed != 0 { wanted.append(c) } }
        let batched = wanted.count > 1
        if batched { readMany(wanted, live: true) { i, v in slots[i].prefetched = v } }
        // Held for the whole loop: the function, and the batch of posted writes being
        // built, kept from decoder to decoder so its storage is allocated once.
        let function = engine.function, flat = at.decoderOthers
        var batch: [PostedBARWrite] = []

        for (n, d) in at.decoders.enumerated() {
            guard let control = d.control else { continue }
            func mark(_ action: RegisterOutcome.Action, ok: Bool, _ detail: String) {
                func one(_ i: Int) {
                    slots[i].action = action
                    record.details[i] = detail
                    if !ok { slots[i].ok = false }
                }
                for k in d.others { one(flat[k]) }
                one(control)
            }
            func outcome(_ result: DecoderOutcome.Result, _ detail: String? = nil, polls: Int = 0) {
                log(DecoderOutcome(index: n, result: result, detail: detail, polls: polls))
            }
            func log(_ d: DecoderOutcome) {
                decoders.append(d)
                steps.append(.decoder(d))
            }
            let saved = regs[control].value
            if saved & committed == 0 {
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
            let liveValue: UInt64?
            if batched {
                liveValue = slots[control].prefetched
                if let v = liveValue { noteLive(control, v) }
            } else {
                liveValue = readLive(control)
            }
            guard let live = liveValue else {
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
                guard write(control, live & ~commit, posted: true) else { outcome(.accessError); blockedBy = n; continue }
                if live & committed != 0 {
                    guard let w = wait(control, decommit: true) else { outcome(.accessError); blockedBy = n; continue }
                    guard case .done = w else {
                        fail(control, "still Committed \(budget.humanReadable) after Commit was cleared")
                        outcome(.decommitTimeout, nil, polls: w.polls)
                        blockedBy = n
                        continue
                    }
                }
            }
            // Base Low/High, Size Low/High, DPA Skip (or Target List) Low/High, in the
            // kernel's order, posted; then Control with Commit set, and the first poll
            // read orders after all of them.
            // One batch (vfio-user: one REGION_WRITE_MULTI message), Control last.
            let value = (saved & ~(committed | error)) | commit
            guard writeDecoder(d.others, control: control, value, function: function, flat: flat, batch: &batch) else {
                outcome(.accessError, "programming failed; not committed"); blockedBy = n; continue
            }
            switch wait(control, decommit: false) {
            case .done(_, let polls)?:
                log(DecoderOutcome(index: n, result: .committed, note: .committedAfter(polls: polls), polls: polls))
            case .errorNotCommitted(_, let polls)?:
                fail(control, "Error Not Committed")
                // Spec recovery: clear Commit so the decoder is not left armed.
                write(control, value & ~commit)
                outcome(.commitError, nil, polls: polls)
                blockedBy = n
            case .timeout(_, let polls)?:
                fail(control, "neither Committed nor Error Not Committed within \(budget.humanReadable)")
                outcome(.commitTimeout, "budget \(budget.humanReadable)", polls: polls)
                blockedBy = n
            case nil:
                outcome(.accessError, nil, polls: 1)
                blockedBy = n
            }
        }
    }

    /// Compare each register with the snapshot, reading those without a value read
    /// after their last write (in one batched read per space). Registers not restored
    /// by design are not read.
    private func verify(_ indices: [Int]) {
        func checked(_ i: Int) -> Bool {
            let action = slots[i].action
            return action != .notAttempted && (action != .skipped || !StateCatalog.isHDM(regs[i].name))
        }
        var unread: [Int] = []
        unread.reserveCapacity(indices.count)
        for i in indices where checked(i) && slots[i].fresh == nil { unread.append(i) }
        if !unread.isEmpty { readMany(unread, live: false) { i, v in slots[i].fresh = v } }
        for i in indices where checked(i) {
            guard let after = slots[i].fresh else { continue }
            slots[i].after = after
            let saved = regs.withUnsafeBufferPointer { $0[i].value }
            guard saved != after else { continue }
            let r = regs[i]
            guard !StateCatalog.equivalent(r.key, r.value, after) else { continue }
            switch slots[i].action {
            case .lockedKept, .merged:
                fail(i, "CONFIG_LOCK is set and the hardware holds a different value; locked fields cannot be restored")
            case .leftAlone:
                fail(i, "decoder is locked and committed with a different value")
            case .compared:
                fail(i, "read-only register differs from the snapshot")
            default:
                if slots[i].ok { fail(i, "reads back \(HexCoding.format(after, width: r.width))") }
            }
        }
    }
}

/// Where the registers a restore names are in a snapshot, found in one pass: config
/// registers by structure and catalog name, HDM decoder registers by location
/// (decoder n, register slot) inside the HDM Decoder Capability.
struct SnapshotIndex {
    struct Decoder {
        var control: Int?
        /// Base Low/High, Size Low/High, DPA Skip (or Target List) Low/High, in snapshot
        /// order: positions in `decoderOthers`, which all decoders share.
        var others: Range<Int> = 0..<0
    }
    var command: Int?
    var bars: [Int] = []
    var pciExpress: [Int] = []
    /// MSI registers, Message Control last.
    var msi: [Int] = []
    var msix: [Int] = []
    var lock: Int?
    var control: Int?
    var control2: Int?
    /// (snapshot index, position in `StateRegisterTable.rangeBaseLayouts`).
    var rangeBases: [(Int, Int)] = []
    var globalControl: Int?
    var decoders: [Decoder] = []
    /// Every decoder's registers other than Control, grouped by decoder (snapshot order kept).
    var decoderOthers: [Int] = []
    var mmio: [Int] = []
    var config: [Int] = []

    init(_ snapshot: CXLStateSnapshot) {
        let regs = snapshot.registers
        let hdm = snapshot.layout.hdm
        let decoderCount = hdm?.decoderCount ?? 0
        // Built in locals and stored once at the end (a nested function writing through
        // `self` would keep every field in memory).
        var command: Int?, lock: Int?, control: Int?, control2: Int?, globalControl: Int?
        var pciExpress: [Int] = [], msi: [Int] = [], msix: [Int] = []
        // Room for every register of each kind there is (4 PCI Express control, at most 6 MSI, 1 MSI-X).
        pciExpress.reserveCapacity(StateCatalog.pciExpressRegisters.count)
        msi.reserveCapacity(8)
        msix.reserveCapacity(1)
        var decoders = [Decoder](repeating: Decoder(), count: decoderCount)
        var msiControl: Int?
        // Hoisted: the table's size and kinds (statics), and where the decoders are.
        let tableCount = UInt32(StateRegisterTable.count)
        let kinds = StateRegisterTable.kinds
        let hdmBar = hdm?.bar, hdmOffset = hdm?.hdmOffset ?? 0
        let first = UInt64(HDMDecoderCapability.firstDecoderOffset), stride = UInt64(HDMDecoderCapability.decoderStride)
        let decodersEnd = first + stride * UInt64(decoderCount)
        let controlSlot = UInt64(HDMDecoderCapability.controlSlot), globalOffset = UInt64(HDMDecoderCapability.globalControl.offset)
        // Config and MMIO lists, and the HDM registers other than Control with their
        // decoder, filled into one scratch buffer (no growing arrays per register):
        // [0, r) config, [r, 2r) MMIO, [2r, 3r) HDM register index, [3r, 4r) its decoder.
        let r = regs.count
        // After them, [4r, 4r + 6) BAR 0-5 and [4r + 6, 4r + 10) the Range Bases (-1: none).
        let scratch = UnsafeMutableBufferPointer<Int>.allocate(capacity: 4 * r + 10)
        defer { scratch.deallocate() }
        let barAt = 4 * r, rangeAt = 4 * r + 6
        for k in barAt ..< rangeAt + 4 { scratch[k] = -1 }
        var configCount = 0, mmioCount = 0, placedCount = 0
        /// An HDM register by location (decoder n, register slot) inside the structure.
        func placeHDM(_ i: Int, _ reg: UnsafePointer<SavedRegister>) {
            guard let hdmBar, case .bar(let b) = reg.pointee.space, b == hdmBar, reg.pointee.offset >= hdmOffset else { return }
            let rel = reg.pointee.offset - hdmOffset
            if rel >= first, rel < decodersEnd {
                let n = Int((rel - first) / stride)
                if (rel - first) % stride == controlSlot {
                    decoders[n].control = i
                } else {
                    scratch[2 * r + placedCount] = i
                    scratch[3 * r + placedCount] = n
                    placedCount += 1
                }
            } else if rel == globalOffset, reg.pointee.role == .restore {
                globalControl = i
            }
        }
        // Through the array's buffer: each register is looked at in place, not copied.
        regs.withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return }
            for i in 0..<r {
                let reg = base + i
                if case .config = reg.pointee.space {
                    scratch[configCount] = i
                    configCount += 1
                } else {
                    scratch[r + mmioCount] = i
                    mmioCount += 1
                }
                // By catalog number: no names compared. A register the state table lacks
                // (only a crafted file has one) goes by its structure's name.
                let id = reg.pointee.name.id
                guard id < tableCount else {
                    switch reg.pointee.block {
                    case StateCatalog.pciExpressBlock: pciExpress.append(i)
                    case StateCatalog.msiBlock: msi.append(i)
                    case StateCatalog.msixBlock: msix.append(i)
                    case StateCatalog.hdmBlock: placeHDM(i, reg)
                    default: break
                    }
                    continue
                }
                switch kinds[Int(id)] {
                case .command: command = i
                case .bar(let b): scratch[barAt + b] = i
                case .pciExpress: pciExpress.append(i)
                case .msiControl: msiControl = i
                case .msi: msi.append(i)
                case .msixControl: msix.append(i)
                case .dvsecLock: lock = i
                case .dvsecControl: control = i
                case .dvsecControl2: control2 = i
                case .rangeBase(let k): scratch[rangeAt + k] = i
                case .dvsecOther, .hdmCapability: break
                case .hdmGlobalControl, .decoder: placeHDM(i, reg)
                }
            }
        }
        (self.command, self.lock, self.control, self.control2, self.globalControl) = (command, lock, control, control2, globalControl)
        config = Array(scratch[0 ..< configCount])
        mmio = Array(scratch[r ..< r + mmioCount])
        bars.reserveCapacity(6)
        for b in 0..<6 where scratch[barAt + b] >= 0 { bars.append(scratch[barAt + b]) }
        // Every decoder's other registers in one array, grouped by decoder (snapshot order kept).
        // A snapshot from `save()` lists them decoder by decoder already: then the placed
        // order is the grouped order, and one pass finds where each decoder starts.
        var grouped = placedCount > 0
        for k in 1 ..< max(placedCount, 1) where scratch[3 * r + k] < scratch[3 * r + k - 1] { grouped = false; break }
        if grouped {
            var flat = [Int](repeating: 0, count: placedCount)
            var start = 0
            for k in 0..<placedCount {
                flat[k] = scratch[2 * r + k]
                let n = scratch[3 * r + k]
                if k + 1 == placedCount || scratch[3 * r + k + 1] != n {
                    decoders[n].others = start ..< k + 1
                    start = k + 1
                }
            }
            decoderOthers = flat
        } else if placedCount > 0 {
            var start = [Int](repeating: 0, count: decoderCount + 1)
            for k in 0..<placedCount { start[scratch[3 * r + k] + 1] += 1 }
            for n in 0..<decoderCount { start[n + 1] += start[n] }
            var next = start
            var flat = [Int](repeating: 0, count: placedCount)
            for k in 0..<placedCount {
                let n = scratch[3 * r + k]
                flat[next[n]] = scratch[2 * r + k]
                next[n] += 1
            }
            for n in 0..<decoderCount { decoders[n].others = start[n] ..< start[n + 1] }
            decoderOthers = flat
        }
        if let msiControl { msi.append(msiControl) }
        (self.pciExpress, self.msi, self.msix) = (pciExpress, msi, msix)
        rangeBases.reserveCapacity(4)
        for k in 0..<4 where scratch[rangeAt + k] >= 0 { rangeBases.append((scratch[rangeAt + k], k)) }
        self.decoders = decoders
    }
}
