import PCI

/// The resets `cxlkit reset` and the orchestrator know.
public enum CXLResetKind: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// Function Level Reset (PCIe 6.0 §6.6.2): per CXL 3.1 §9.5 it leaves CXL.cache,
    /// CXL.mem, the DVSECs and the HDM decoders alone on a compliant device.
    case flr
    /// CXL Reset (CXL 3.1 §9.7) through DVSEC CXL Control2: resets CXL.cache/mem
    /// state and the decoders, keeps CONFIG_LOCK and the fields it locks.
    case cxl
    /// Secondary bus reset at the upstream bridge: a conventional reset.
    case sbr
    /// Link down and up: a conventional reset.
    case link

    /// The backend reset method, for the resets the backend performs.
    public var pciMethod: PCIResetMethod? {
        switch self {
        case .flr: return .flr
        case .sbr: return .bus
        case .link: return .link
        case .cxl: return nil
        }
    }

    public var title: String {
        switch self {
        case .flr: return "FLR"
        case .cxl: return "CXL Reset"
        case .sbr: return "secondary bus reset"
        case .link: return "link down/up"
        }
    }

    public var description: String { rawValue }
}

/// Everything one reset did and found.
public struct ResetReport: Sendable, Codable {
    public var device: CXLDeviceIdentity
    public var method: CXLResetKind
    public var preserve: Bool
    public var memClear: Bool
    /// The reset flow's steps, in order.
    public var steps: [String]
    /// The reset failed (timeout, Reset Error, backend refusal). Restore and the
    /// final comparison still ran.
    public var resetError: CXLStateError?
    /// The PCI state restore every reset gets (what the PCI core does).
    public var pciRestore: RestoreReport?
    /// State after the reset and the PCI state restore, compared with the state before
    /// the reset: what the reset took that the PCI core does not give back.
    public var wiped: CXLStateDiff?
    /// The full (CXL) restore, with `preserve`.
    public var restore: RestoreReport?
    /// Why the restore could not run at all, with `preserve`.
    public var restoreError: CXLStateError?
    /// Every saved register after everything, compared with before the reset.
    public var diff: CXLStateDiff?
    /// Why the final read-back failed.
    public var readBackError: CXLStateError?

    /// The reset ran, the restore (if any) succeeded, and the state after equals the
    /// state before, register by register.
    public var succeeded: Bool {
        resetError == nil && restoreError == nil && readBackError == nil && (restore?.succeeded ?? true)
            && (pciRestore?.succeeded ?? false)
            && (diff?.isEmpty ?? false)
    }

    enum CodingKeys: String, CodingKey {
        case device, method, preserve, memClear, steps, resetError, pciRestore, wiped, restore, restoreError, diff, readBackError, succeeded
    }

    public init(device: CXLDeviceIdentity, method: CXLResetKind, preserve: Bool, memClear: Bool) {
        self.device = device
        self.method = method
        self.preserve = preserve
        self.memClear = memClear
        self.steps = []
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        device = try c.decode(CXLDeviceIdentity.self, forKey: .device)
        method = try c.decode(CXLResetKind.self, forKey: .method)
        preserve = try c.decode(Bool.self, forKey: .preserve)
        memClear = try c.decode(Bool.self, forKey: .memClear)
        steps = try c.decode([String].self, forKey: .steps)
        pciRestore = try c.decodeIfPresent(RestoreReport.self, forKey: .pciRestore)
        wiped = try c.decodeIfPresent(CXLStateDiff.self, forKey: .wiped)
        restore = try c.decodeIfPresent(RestoreReport.self, forKey: .restore)
        diff = try c.decodeIfPresent(CXLStateDiff.self, forKey: .diff)
        // Errors are reported as text; they do not round-trip.
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(device, forKey: .device)
        try c.encode(method, forKey: .method)
        try c.encode(preserve, forKey: .preserve)
        try c.encode(memClear, forKey: .memClear)
        try c.encode(steps, forKey: .steps)
        try c.encodeIfPresent(resetError?.description, forKey: .resetError)
        try c.encodeIfPresent(pciRestore, forKey: .pciRestore)
        try c.encodeIfPresent(wiped, forKey: .wiped)
        try c.encodeIfPresent(restore, forKey: .restore)
        try c.encodeIfPresent(restoreError?.description, forKey: .restoreError)
        try c.encodeIfPresent(diff, forKey: .diff)
        try c.encodeIfPresent(readBackError?.description, forKey: .readBackError)
        try c.encode(succeeded, forKey: .succeeded)
    }
}

/// Resets a CXL function and, with `preserve`, carries its state across: save
/// before, reset, restore after. Always re-reads every saved register afterwards and
/// compares it with the state before the reset.
public struct CXLResetOrchestrator: Sendable {
    public let engine: CXLStateEngine

    public init(function: any PCIFunction, options: CXLStateOptions = CXLStateOptions()) {
        engine = CXLStateEngine(function: function, options: options)
    }

    public var function: any PCIFunction { engine.function }
    var options: CXLStateOptions { engine.options }

    /// Reset methods available on this function: the backend's (flr, bus -> sbr,
    /// link) plus CXL Reset when the DVSEC says CXL Reset Capable.
    public func availableMethods() -> [CXLResetKind] {
        CXLResetKind.allCases.filter { kind in
            if let m = kind.pciMethod { return function.resetMethods.contains(m) }
            guard let s = try? engine.save() else { return false }
            return (try? cxlResetCapability(s.layout)) != nil
        }
    }

    /// Throws only when nothing was done: the state before could not be saved, the
    /// state file could not be written, or the method is not available. Everything
    /// after the reset started is in the report.
    ///
    /// - Parameter stateFile: also write the state before the reset there (atomically)
    ///   before resetting, so it survives whatever happens next.
    public func reset(method: CXLResetKind, preserve: Bool, memClear: Bool = false,
                      stateFile: String? = nil) throws(CXLStateError) -> ResetReport {
        if memClear && method != .cxl { throw .resetUnsupported("--mem-clear applies to CXL Reset only") }
        let before = try engine.save()
        if let m = method.pciMethod, !function.resetMethods.contains(m) {
            throw .resetUnsupported("\(function.address) does not offer \(m.rawValue) (offers: "
                + function.resetMethods.map(\.rawValue).joined(separator: ", ") + ")")
        }
        if method == .cxl {
            let cap = try cxlResetCapability(before.layout)
            if memClear && CXLDeviceDVSEC.memClearCapable.extract(cap) == 0 {
                throw .resetUnsupported("CXL Reset Mem Clr Capable is clear")
            }
        }
        if let stateFile { try CXLStateFile.write(before, to: stateFile) }

        var report = ResetReport(device: before.identity, method: method, preserve: preserve, memClear: memClear)
        report.steps.append("saved \(before.registers.count) registers")
        do throws(CXLStateError) {
            if let m = method.pciMethod {
                report.steps.append("\(method.title): backend reset \(m.rawValue)")
                do { try function.reset(m) } catch { throw CXLStateError.resetFailed("\(error)") }
            } else {
                try cxlReset(layout: before.layout, memClear: memClear, steps: &report.steps)
            }
        } catch {
            report.resetError = error
            report.steps.append("reset failed: \(error)")
        }
        // What the PCI core does around every reset (pci_dev_save_and_disable /
        // pci_dev_restore): Command, BARs, PCI Express control, MSI/MSI-X come back.
        // The CXL state is what the kernel series adds, and what --preserve adds here.
        /// Restores `snapshot`, noting the step (and a refusal) in the report.
        func restore(_ snapshot: CXLStateSnapshot, _ what: String, restored: String, failed: (RestoreReport) -> String) -> RestoreReport? {
            do throws(CXLStateError) {
                let r = try engine.restore(snapshot)
                report.steps.append(r.succeeded ? restored : failed(r))
                return r
            } catch {
                report.restoreError = error
                report.steps.append("\(what) restore refused: \(error)")
                return nil
            }
        }
        /// What the device holds now against `before` (nil, with the error noted, if it cannot be read).
        func readBackDiff() -> CXLStateDiff? {
            do throws(CXLStateError) { return CXLStateDiff(before, try engine.readBack(like: before)) } catch {
                report.readBackError = error
                return nil
            }
        }
        report.pciRestore = restore(before.pciOnly, "PCI state", restored: "PCI state restored (as the PCI core does)") { _ in "PCI state restore failed" }
        report.wiped = readBackDiff()
        if preserve {
            report.restore = restore(before, "CXL state", restored: "CXL state restored") { "CXL state restore failed: \($0.failures.count) problem(s)" }
            report.diff = readBackDiff()
        } else {
            report.diff = report.wiped
        }
        return report
    }

    // MARK: CXL Reset (CXL 3.1 §9.7, DVSEC §8.1.3)

    /// DVSEC CXL Capability, if CXL Reset Capable; throws otherwise.
    func cxlResetCapability(_ layout: CXLStateLayout) throws(CXLStateError) -> UInt64 {
        let cap = try engine.configRead(layout.dvsecOffset + CXLDeviceDVSEC.capability.offset, CXLDeviceDVSEC.capability.width)
        guard CXLDeviceDVSEC.cxlResetCapable.extract(cap) == 1 else {
            throw .resetUnsupported("CXL Reset Capable is clear in DVSEC CXL Capability")
        }
        return cap
    }

    /// The CXL Reset flow:
    /// 1. capability checks (Reset Capable; Mem Clr Capable when asked to clear);
    /// 2. if Cache_Capable: Disable Caching, then, if Cache Writeback and Invalidate
    ///    Capable, Initiate Cache Write Back and Invalidation and wait for Cache Invalid;
    /// 3. quiesce: Bus Master Enable cleared, INTx disabled (restored with the PCI state afterwards);
    /// 4. Initiate CXL Reset, with CXL Reset Mem Clr Enable as asked;
    /// 5. no config access for the quiet time (100 ms: accesses are undefined);
    /// 6. Status2 polled every 20 ms until Reset Complete or Reset Error, bounded by the
    ///    Capability's CXL Reset Timeout (all-ones reads mean "not ready yet");
    /// 7. caching re-enabled (Disable Caching cleared), on success and on failure.
    func cxlReset(layout: CXLStateLayout, memClear: Bool, steps: inout [String]) throws(CXLStateError) {
        let base = layout.dvsecOffset
        let c2L = CXLDeviceDVSEC.control2, s2L = CXLDeviceDVSEC.status2
        let cap = try cxlResetCapability(layout)
        let clock = options.clock
        func rd(_ r: RegisterLayout) throws(CXLStateError) -> UInt64 { try engine.configRead(base + r.offset, r.width) }
        func wr(_ r: RegisterLayout, _ v: UInt64) throws(CXLStateError) {
            do { try function.configWrite(base + r.offset, width: r.width, value: UInt32(truncatingIfNeeded: v)) } catch {
                throw .access(error)
            }
        }
        func bit(_ r: RegisterLayout, _ name: String) -> UInt64 { r.field(name)!.mask }
        let disableCaching = bit(c2L, "Disable Caching")
        let initiateWBI = bit(c2L, "Initiate Cache Write Back and Invalidation")
        let initiateReset = bit(c2L, "Initiate CXL Reset")
        let memClr = bit(c2L, "CXL Reset Mem Clr Enable")
        let cacheInvalid = bit(s2L, "Cache Invalid")
        let complete = bit(s2L, "CXL Reset Complete"), resetError = bit(s2L, "CXL Reset Error")
        let allOnes = s2L.widthMask

        let encodedTimeout = CXLDeviceDVSEC.cxlResetTimeout.extract(cap)
        let capTimeout = Duration.milliseconds(Int64(CXLDeviceDVSEC.resetTimeoutMilliseconds[encodedTimeout] ?? 100_000))
        let timeout = max(options.resetTimeout ?? capTimeout, options.resetQuietTime)
        let cacheCapable = CXLDeviceDVSEC.cacheCapable.extract(cap) == 1
        let wbiCapable = CXLDeviceDVSEC.writebackInvalidateCapable.extract(cap) == 1
        steps.append("CXL Reset Capable; timeout \(timeout.humanReadable)\(memClear ? "; Mem Clr Capable" : "")")

        let control2 = try rd(c2L) & StateCatalog.control2PersistentMask
        var cachingDisabled = false
        func reenableCaching(_ steps: inout [String]) {
            guard cachingDisabled else { return }
            // Read-modify-write: a CXL Reset returns Control2 to its defaults.
            if let now = try? rd(c2L) {
                try? wr(c2L, now & StateCatalog.control2PersistentMask & ~disableCaching)
                steps.append("Disable Caching cleared: caching re-enabled")
            }
        }

        if cacheCapable {
            try wr(c2L, control2 | disableCaching)
            cachingDisabled = true
            steps.append("Disable Caching set")
            if wbiCapable {
                try wr(c2L, control2 | disableCaching | initiateWBI)
                steps.append("Initiate Cache Write Back and Invalidation")
                let start = clock.now()
                while true {
                    let s2 = try rd(s2L)
                    if s2 != allOnes && s2 & cacheInvalid != 0 { break }
                    let elapsed = clock.now() - start
                    if elapsed >= options.cacheInvalidTimeout {
                        reenableCaching(&steps)
                        throw .cacheInvalidTimeout(milliseconds: Self.milliseconds(options.cacheInvalidTimeout))
                    }
                    options.progress?.waiting("CXL Reset: waiting for Cache Invalid", elapsed: elapsed, budget: options.cacheInvalidTimeout)
                    clock.sleep(for: min(options.cacheInvalidPollInterval, options.cacheInvalidTimeout - elapsed))
                }
                steps.append("Cache Invalid set")
            }
        } else {
            steps.append("not Cache_Capable: no cache to disable or write back")
        }

        // Quiesce CXL.io, as the PCI core does before any function reset (pci_dev_save_and_disable): no DMA (Bus
        // Master Enable clear), no INTx. The PCI state restore after the reset brings Command back.
        do { try quiesce(&steps) } catch { reenableCaching(&steps); throw error }
        let initiate = (control2 & ~memClr) | (cachingDisabled ? disableCaching : 0) | (memClear ? memClr : 0) | initiateReset
        do { try wr(c2L, initiate) } catch { reenableCaching(&steps); throw error }
        let start = clock.now()
        steps.append("Initiate CXL Reset" + (memClear ? " with CXL Reset Mem Clr Enable" : ""))
        options.progress?.report("CXL Reset: quiet time \(options.resetQuietTime.humanReadable), then up to \(timeout.humanReadable) for Reset Complete")
        clock.sleep(for: options.resetQuietTime)
        steps.append("quiet time \(options.resetQuietTime.humanReadable): no config access")
        var polls = 0
        while true {
            let s2: UInt64
            do { s2 = try rd(s2L) } catch { reenableCaching(&steps); throw error }
            polls += 1
            if s2 != allOnes {
                if s2 & resetError != 0 {
                    steps.append("CXL Reset Error after \(polls) Status2 poll(s)")
                    reenableCaching(&steps)
                    throw .resetError
                }
                if s2 & complete != 0 {
                    steps.append("CXL Reset Complete after \(polls) Status2 poll(s)")
                    break
                }
            }
            let elapsed = clock.now() - start
            if elapsed >= timeout {
                steps.append("no Reset Complete after \(polls) Status2 poll(s)")
                reenableCaching(&steps)
                throw .resetTimeout(milliseconds: Self.milliseconds(timeout))
            }
            options.progress?.waiting("CXL Reset: waiting for Reset Complete", elapsed: elapsed, budget: timeout)
            clock.sleep(for: min(options.resetPollInterval, timeout - elapsed))
        }
        reenableCaching(&steps)
    }

    /// Command: Bus Master Enable cleared, Interrupt Disable set (PCIe 6.0 §7.5.1.1.3); Memory and I/O Space stay,
    /// so register access (and a VFIO BAR mmap) keeps working.
    func quiesce(_ steps: inout [String]) throws(CXLStateError) {
        let command = PCIHeader.command
        let busMaster = PCIHeader.Command.busMasterEnable.mask, intxOff = PCIHeader.Command.interruptDisable.mask
        let c = try engine.configRead(command.offset, command.width)
        do { try function.configWrite(command.offset, width: command.width, value: UInt32(truncatingIfNeeded: (c & ~busMaster) | intxOff)) } catch {
            throw .access(error)
        }
        steps.append("quiesced: Bus Master Enable cleared, INTx disabled (Command 0x\(String(c, radix: 16)) -> 0x\(String((c & ~busMaster) | intxOff, radix: 16)))")
    }

    static func milliseconds(_ d: Duration) -> Int {
        let (s, a) = d.components
        return Int(s) * 1000 + Int(a / 1_000_000_000_000_000)
    }
}
