import PCI
import CXL

/// The device's registers and pending effects. Only `EmulatedCXLDevice` touches it,
/// under its lock.
struct State {
    let profile: DeviceProfile
    /// The HDM decoders' device-side behaviour (commit rules, Lock On Commit): the
    /// one model vfio-cxl's shadow uses too.
    var hdm: HDMDecoderDevice
    /// CONFIG_LOCK and the Control2 doorbells of the DVSEC for CXL Devices.
    let dvsec = CXLDeviceDVSECDevice(origin: Layout.cxlDevice, length: CXLDeviceDVSEC.length(revision: Layout.cxlDeviceRevision))
    var config = RegisterFile(size: pcieConfigSpaceSize)
    /// CXL.cachemem: component block + 0x1000 ..< + 0x2000. The rest of the 64 KiB
    /// component block (CXL.io, ARB/MUX: not implemented) reads 0 and ignores writes.
    var component = RegisterFile(size: ComponentRegisterBlock.cacheMemSize)
    var deviceRegs = RegisterFile(size: Int(Layout.deviceRegisterBlockSize))
    /// MSI-X table at +0, PBA at +0x1000.
    var msix = RegisterFile(size: Layout.msixRegionSize)

    /// Commits whose result appears at a deadline; the result was decided at the write.
    var pendingCommits: [Int: (deadline: UInt64, failure: CommitFailure?)] = [:]
    /// Commits that will never complete (fault).
    var hungCommits: Set<Int> = []
    var cxlReset: (deadline: UInt64, memClear: Bool)? = nil
    var cxlResetHung = false
    var writebackDeadline: UInt64? = nil
    var memoryValidAt: UInt64? = nil
    var memoryActiveAt: UInt64? = nil
    var interrupts: [Int] = []
    /// BAR0 offsets of the CXL.cachemem registers (the component block's second 4 KiB),
    /// kept here: the catalog's constants live in another module, and every BAR0 access asks.
    let cacheMem: Range<UInt64> = {
        let start = Layout.componentBlock + UInt64(ComponentRegisterBlock.cacheMemOffset)
        return start ..< start + UInt64(ComponentRegisterBlock.cacheMemSize)
    }()

    init(profile: DeviceProfile) {
        self.profile = profile
        let c = profile.capabilities
        hdm = HDMDecoderDevice(rules: HDMCommitRules(threeSixTwelveWay: c.interleave3_6_12Way, sixteenWay: c.interleave16Way,
                                                     a11to8: c.interleaveA11to8, a14to12: c.interleaveA14to12, capacity: profile.memorySize),
                               decoderCount: profile.decoderCount, origin: Layout.hdmCapability)
        buildConfig()
        buildComponent()
        buildDeviceRegisters()
        buildMSIX()
    }

    // MARK: Offsets

    static let dv = Layout.cxlDevice
    static let dvsecRange = Layout.cxlDevice ..< Layout.cxlDevice + CXLDeviceDVSEC.length(revision: Layout.cxlDeviceRevision)
    static let control = Layout.cxlDevice + CXLDeviceDVSEC.control.offset
    static let control2 = Layout.cxlDevice + CXLDeviceDVSEC.control2.offset
    static let status2 = Layout.cxlDevice + CXLDeviceDVSEC.status2.offset
    static let lockRegister = Layout.cxlDevice + CXLDeviceDVSEC.lock.offset
    static let range1SizeLow = Layout.cxlDevice + CXLDeviceDVSEC.range1.sizeLow.offset
    static let deviceControl = Layout.pciExpress + PCIExpressCapability.deviceControl.offset

    static func bit(_ r: RegisterLayout, _ name: String) -> UInt64 {
        guard let f = r.field(name) else { preconditionFailure("\(r.name) has no field \(name)") }
        return f.mask
    }

    static let memEnable = CXLDeviceDVSEC.memEnable.mask
    static let cacheInvalid = CXLDeviceDVSEC.Status2.cacheInvalid.mask
    static let initiateWBI = CXLDeviceDVSEC.Control2.initiateWritebackInvalidate.mask
    static let initiateReset = CXLDeviceDVSEC.Control2.initiateCXLReset.mask
    static let memClrEnable = CXLDeviceDVSEC.Control2.memClearEnable.mask
    static let desiredHotResetState = CXLDeviceDVSEC.Control2.desiredVolatileHDMStateAfterHotReset.mask
    static let infoValid = bit(CXLDeviceDVSEC.range1.sizeLow, "Memory_Info_Valid")
    static let memoryActive = bit(CXLDeviceDVSEC.range1.sizeLow, "Memory_Active")
    static let configLockBit = CXLDeviceDVSEC.configLock.mask
    static let hdmDecoderEnable = HDMDecoderCapability.hdmDecoderEnable.mask
    static let commitBit = HDMDecoderCapability.Control.commit.mask
    static let committedBit = HDMDecoderCapability.Control.committed.mask
    static let lockOnCommitBit = HDMDecoderCapability.Control.lockOnCommit.mask
    static let flrBit = PCIExpressCapability.initiateFLR.mask

    /// Offset of decoder n's first register in the cachemem file.
    static func decoderBase(_ n: Int) -> Int { Layout.hdmCapability + HDMDecoderCapability.firstDecoderOffset + HDMDecoderCapability.decoderStride * n }
    static func decoderControl(_ n: Int) -> Int { Layout.hdmCapability + HDMDecoderRegisters(n).control.offset }
    static let hdmGlobalControl = Layout.hdmCapability + HDMDecoderCapability.globalControl.offset
    static var hdmRange: Range<Int> { Layout.hdmCapability ..< Layout.hdmCapability + HDMDecoderCapability.length(decoders: HDMDecoderCapability.maximumDecoders) }
    static let rasRange = Layout.rasCapability ..< Layout.rasCapability + RASCapability.length

    static func memoryBARSize(_ p: DeviceProfile) -> UInt64 {
        var s: UInt64 = 1
        while s < p.memorySize { s <<= 1 }
        return s
    }

    // MARK: Power-on and firmware

    mutating func powerOn(now: UInt64, memory: DeviceMemory) {
        restartMemoryTimers(now: now)
        guard let f = profile.firmware else { return }
        // Mem_HwInit_Mode firmware (CXL 3.1 §8.1.3.1): ranges come up programmed.
        let dv = Layout.cxlDevice
        let size = f.size ?? profile.memorySize
        config.write(dv + CXLDeviceDVSEC.range1.baseHigh.offset, width: 4, value: f.base >> 32)
        config.write(dv + CXLDeviceDVSEC.range1.baseLow.offset, width: 4, value: f.base & CXLDeviceDVSEC.range1.baseLow.writableMask)
        component.write(Self.hdmGlobalControl, width: 4, value: f.hdmDecoderEnable ? Self.hdmDecoderEnable : 0)
        let d0 = HDMDecoderRegisters(0), hdm = Layout.hdmCapability
        let base = SplitAddress(f.base), length = SplitAddress(size), low = HDMDecoderRegisters.lowAddressMask
        component.write(hdm + d0.baseLow.offset, width: 4, value: UInt64(base.low) & low)
        component.write(hdm + d0.baseHigh.offset, width: 4, value: UInt64(base.high))
        component.write(hdm + d0.sizeLow.offset, width: 4, value: UInt64(length.low) & low)
        component.write(hdm + d0.sizeHigh.offset, width: 4, value: UInt64(length.high))
        component.store(Self.decoderControl(0), width: 4,
                        value: Self.commitBit | Self.committedBit | (f.lockDecoder ? Self.lockOnCommitBit : 0))
        if f.lockDecoder { component.setLock(self.hdm.lockedRange(0), true) }
        let control = config.read(Self.control, width: 2)
        config.write(Self.control, width: 2, value: control
            | (f.memEnable ? Self.memEnable : 0) | (f.cacheEnable ? CXLDeviceDVSEC.Control.cacheEnable.mask : 0))
        if f.configLock {
            config.write(Self.lockRegister, width: 2, value: Self.configLockBit)
            dvsec.applyConfigLock(&config)
        }
    }

    // MARK: Events

    var nextDeadline: UInt64? {
        // Evaluated on every access: no array.
        var next: UInt64?
        func take(_ d: UInt64?) { if let d, next.map({ d < $0 }) ?? true { next = d } }
        for c in pendingCommits.values { take(c.deadline) }
        take(cxlReset?.deadline)
        take(writebackDeadline)
        take(memoryValidAt)
        take(memoryActiveAt)
        return next
    }

    /// Apply every delayed effect due by `now`, earliest first.
    /// Whether any delayed effect is scheduled. Every access asks: nothing scheduled is the common case, answered
    /// without a look at the deadlines (and the device does not read its clock for it).
    var hasPendingEvents: Bool {
        memoryValidAt != nil || memoryActiveAt != nil || writebackDeadline != nil || cxlReset != nil || !pendingCommits.isEmpty
    }

    mutating func processEvents(now: UInt64, memory: DeviceMemory) {
        guard hasPendingEvents else { return }
        while let next = nextDeadline, next <= now {
            if let v = memoryValidAt, v == next {
                memoryValidAt = nil
                config.setBits(Self.range1SizeLow, width: 4, mask: Self.infoValid, to: true)
            } else if let a = memoryActiveAt, a == next {
                memoryActiveAt = nil
                config.setBits(Self.range1SizeLow, width: 4, mask: Self.memoryActive, to: true)
                deviceRegs.store(DeviceRegisterBlock.mediaStatus,
                                 of: DeviceRegisterBlock.memoryDeviceStatusRegister, base: Layout.memoryDeviceStatusRegisters, value: 1)
            } else if let w = writebackDeadline, w == next {
                writebackDeadline = nil
                config.setBits(Self.status2, width: 2, mask: Self.cacheInvalid, to: true)
            } else if let r = cxlReset, r.deadline == next {
                completeCXLReset(now: next, memClear: r.memClear, memory: memory)
            } else if let (n, c) = pendingCommits.first(where: { $0.value.deadline == next }) {
                pendingCommits[n] = nil
                finishCommit(n, failure: c.failure)
            } else {
                break
            }
        }
    }

    static func scaled(_ milliseconds: Double, _ factor: Double) -> UInt64 {
        let ns = milliseconds * 1_000_000 * factor
        return ns >= 1.8e19 ? UInt64.max / 2 : UInt64(ns.rounded())
    }

    /// Range 1 Size Low Memory_Info_Valid, then Memory_Active (CXL 3.1 §8.1.3.8.2),
    /// after the profile's delays; Memory Device Status follows Memory_Active.
    mutating func restartMemoryTimers(now: UInt64) {
        config.setBits(Self.range1SizeLow, width: 4, mask: Self.infoValid | Self.memoryActive, to: false)
        let t = profile.timing
        let valid = now + Self.scaled(t.memoryInfoValidMilliseconds, t.timeFactor)
        memoryValidAt = valid
        memoryActiveAt = profile.faults.memoryNeverActive ? nil : max(valid, now + Self.scaled(t.memoryActiveMilliseconds, t.timeFactor))
    }

    // MARK: Config writes

    mutating func configWrite(_ offset: Int, width: Int, value: UInt64, now: () -> UInt64, memory: DeviceMemory) {
        // CONFIG_LOCK (§8.1.3.6) and the Control2 doorbells (§8.1.3.4): the DVSEC model.
        let (w, rung) = dvsec.write(&config, offset: offset, width: width, value: value)
        // PCIe 6.0 §7.5.3.4: Initiate Function Level Reset, a doorbell reading 0.
        if w.covers(Self.deviceControl, width: 2), w.writtenBits(ofRegisterAt: Self.deviceControl, width: 2) & Self.flrBit != 0 {
            config.setBits(Self.deviceControl, width: 2, mask: Self.flrBit, to: false)
            functionLevelReset()
            return
        }
        let c = profile.capabilities
        if rung.contains(.writebackInvalidate) && c.cacheWritebackInvalidate { startWriteback(now: now()) }
        if rung.contains(.cxlReset) && c.cxlReset {
            startCXLReset(now: now(), memClear: c.memClear && dvsec.memClearRequested(config))
        }
        if w.covers(Layout.msix + MSIXCapability.messageControl.offset, width: 2) { deliverPending() }
    }

    /// Control2 Initiate Cache Write Back and Invalidation (§8.1.3.4): Cache Invalid
    /// clears, then sets when the write-back completes.
    mutating func startWriteback(now: UInt64) {
        config.setBits(Self.status2, width: 2, mask: Self.cacheInvalid, to: false)
        writebackDeadline = now + profile.timing.cacheWritebackInvalidateMicroseconds * 1000
    }

    /// Control2 Initiate CXL Reset (§8.1.3.4, §9.7): Reset Complete and Reset Error
    /// clear; the reset completes after the Capability timeout (or the profile's
    /// duration) times the time factor. A second initiate while one runs is ignored.
    mutating func startCXLReset(now: UInt64, memClear: Bool) {
        guard cxlReset == nil, !cxlResetHung else { return }
        dvsec.beginCXLReset(&config)
        if profile.faults.cxlResetNeverCompletes {
            cxlResetHung = true
            return
        }
        let ms = profile.timing.cxlResetMilliseconds
            ?? Double(CXLDeviceDVSEC.resetTimeoutMilliseconds[profile.cxlResetTimeoutEncoding] ?? 100)
        cxlReset = (now + Self.scaled(ms, profile.timing.timeFactor), memClear)
    }

    /// CXL Reset scope (CXL 3.1 §9.7, §8.1.3.4): the function's CXL.io state as for
    /// FLR; non-sticky DVSEC registers to defaults except CONFIG_LOCK and the fields it
    /// locks; HDM decoders and RAS non-sticky state to defaults (locks released);
    /// device memory cleared if Mem Clr was enabled; the Link capability and the Flex
    /// Bus DVSEC (link state) untouched. Then Reset Complete.
    mutating func completeCXLReset(now: UInt64, memClear: Bool, memory: DeviceMemory) {
        cxlReset = nil
        if profile.faults.cxlResetReportsError {
            dvsec.finishCXLReset(&config, succeeded: false)
            return
        }
        resetPCIFunctionState()
        config.reset(Self.dvsecRange, keeping: [.sticky, .lockedFields, .writeOnce])
        resetCXLComponentState()
        writebackDeadline = nil
        if memClear { memory.clear() }
        restartMemoryTimers(now: now)
        dvsec.finishCXLReset(&config, succeeded: true)
    }

    // MARK: Resets

    /// The function's PCI state, as FLR resets it (PCIe 6.0 §6.6.2): header, PM, MSI-X
    /// capability and table, PCIe capability, keeping sticky bits and the link-related
    /// Link Control / Link Control 2 the spec exempts.
    mutating func resetPCIFunctionState() {
        let lc = Layout.pciExpress + PCIExpressCapability.linkControl.offset
        let lc2 = Layout.pciExpress + PCIExpressCapability.linkControl2.offset
        let keep = (config.read(lc, width: 2), config.read(lc2, width: 2))
        config.reset(0 ..< pciConfigSpaceSize, keeping: [.sticky])
        config.store(lc, width: 2, value: keep.0)
        config.store(lc2, width: 2, value: keep.1)
        msix.reset(keeping: [.sticky])
        interrupts = []
    }

    /// HDM decoders (uncommitted, unlocked) and RAS non-sticky state.
    mutating func resetCXLComponentState() {
        component.reset(Self.hdmRange, keeping: [.sticky])
        component.reset(Self.rasRange, keeping: [.sticky])
        pendingCommits = [:]
        hungCommits = []
        hdm.forgetFailures()
    }

    /// FLR (PCIe 6.0 §6.6.2; CXL 3.1 §9.5): PCI function state only. CXL.cache/.mem,
    /// the DVSECs, the HDM decoders and device memory are untouched — unless the
    /// profile injects `flrLosesCXLState`.
    mutating func functionLevelReset() {
        resetPCIFunctionState()
        if profile.faults.flrLosesCXLState {
            config.reset(Self.dvsecRange, keeping: [.sticky])
            resetCXLComponentState()
            memoryValidAt = nil
            memoryActiveAt = nil
            // The broken device does bring its memory status back.
            config.setBits(Self.range1SizeLow, width: 4, mask: Self.infoValid | (profile.faults.memoryNeverActive ? 0 : Self.memoryActive), to: true)
        }
    }

    /// Conventional reset (hot reset, secondary bus reset, link down; PCIe 6.0 §6.6.1):
    /// every non-sticky register to its default, CONFIG_LOCK cleared, decoders
    /// uncommitted and unlocked, pending effects dropped. Volatile memory survives if
    /// Capability3 says it does after a hot reset, or if Control2 "Desired Volatile HDM
    /// State after Hot Reset" (sticky) asks and Capability3 makes it configurable.
    mutating func conventionalReset(now: UInt64, memory: DeviceMemory) {
        let c = profile.capabilities
        let requested = config.read(Self.control2, width: 2) & Self.desiredHotResetState != 0
        let preserve = c.volatileHDMPreservedAfterHotReset || (c.volatileHDMStateAfterHotResetConfigurable && requested)
        config.reset(keeping: [.sticky])
        component.reset(keeping: [.sticky])
        deviceRegs.reset(keeping: [.sticky])
        msix.reset(keeping: [.sticky])
        interrupts = []
        pendingCommits = [:]
        hungCommits = []
        hdm.forgetFailures()
        cxlReset = nil
        cxlResetHung = false
        writebackDeadline = nil
        if !preserve { memory.clear() }
        restartMemoryTimers(now: now)
    }

    // MARK: BAR0

    var memorySpaceEnabled: Bool {
        config.read(Self.commandOffset, width: 2) & Self.memorySpaceEnableBit != 0
    }

    /// `memorySpaceEnabled` for the device's accessors, which every BAR0 access of a
    /// gating profile calls: as a mutating call it works on the device's `State` in
    /// place, where reading the property from the device copied the whole `State`
    /// (a retain and release per array in it) on every access.
    @inline(__always)
    mutating func isMemorySpaceEnabled() -> Bool { memorySpaceEnabled }
    static let commandOffset = PCIHeader.command.offset
    static let memorySpaceEnableBit = PCIHeader.Command.memorySpaceEnable.mask

    mutating func bar0Read(_ offset: UInt64, width: Int) -> UInt64 {
        if let o = componentOffset(offset) { return component.read(o, width: width) }
        if offset >= Layout.deviceRegisterBlock, offset < Layout.deviceRegisterBlock + Layout.deviceRegisterBlockSize {
            return deviceRegs.read(Int(offset - Layout.deviceRegisterBlock), width: width)
        }
        if offset >= Layout.msixTable, offset < Layout.msixTable + UInt64(Layout.msixRegionSize) {
            return msix.read(Int(offset - Layout.msixTable), width: width)
        }
        return 0
    }

    /// A software write to BAR0. `now` is asked only when the write schedules something
    /// (a commit with latency): most register writes never read the clock.
    mutating func bar0Write(_ offset: UInt64, width: Int, value: UInt64, now: () -> UInt64, memory: DeviceMemory) {
        if let o = componentOffset(offset) {
            // Only a decoder whose Control the write covers can commit or de-commit.
            for edge in hdm.write(&component, offset: o, width: width, value: value) {
                switch edge {
                case .commit(let n): startCommit(n, now: now)
                case .decommit(let n): decommit(n)
                }
            }
        } else if offset >= Layout.deviceRegisterBlock, offset < Layout.deviceRegisterBlock + Layout.deviceRegisterBlockSize {
            deviceRegs.write(Int(offset - Layout.deviceRegisterBlock), width: width, value: value)
        } else if offset >= Layout.msixTable, offset < Layout.msixTable + UInt64(Layout.msixRegionSize) {
            msix.write(Int(offset - Layout.msixTable), width: width, value: value)
            deliverPending()
        }
    }

    /// The component register file's bytes for BAR0 `offset ..< offset + count`, when all of them are in it.
    func componentRange(_ offset: UInt64, _ count: Int) -> Range<Int>? {
        guard let o = componentOffset(offset), count <= component.size - o else { return nil }
        return o ..< o + count
    }

    private func componentOffset(_ offset: UInt64) -> Int? {
        guard cacheMem.contains(offset) else { return nil }
        return Int(offset - cacheMem.lowerBound)
    }

    // MARK: HDM decoder commit (CXL 3.1 §8.2.4.20.7, §8.2.4.20.12): the HDMDecoderDevice model

    func programming(_ n: Int) -> DecoderProgramming { hdm.programming(n, in: component) }

    func isCommitted(_ n: Int) -> Bool { hdm.isCommitted(n, in: component) }

    /// Commit 0 -> 1: Committed and Error Not Committed clear; the checks run on the
    /// programming as written; the result appears after the commit latency.
    mutating func startCommit(_ n: Int, now: () -> UInt64) {
        hdm.beginCommit(n, in: &component)
        if !pendingCommits.isEmpty { pendingCommits[n] = nil }
        if profile.faults.commitNeverCompletes {
            hungCommits.insert(n)
            return
        }
        let failure: CommitFailure? = profile.faults.commitReportsError ? .injectedFault : hdm.check(n, in: component)
        let latency = profile.timing.commitLatencyMicroseconds * 1000
        if latency == 0 {
            finishCommit(n, failure: failure)
        } else {
            pendingCommits[n] = (now() + latency, failure)
        }
    }

    /// The result: Committed (Lock On Commit freezes the decoder) or Error Not Committed.
    mutating func finishCommit(_ n: Int, failure: CommitFailure?) {
        hdm.finishCommit(n, failure: failure, in: &component)
    }

    /// Commit 1 -> 0 on an unlocked decoder: de-commit at once.
    mutating func decommit(_ n: Int) {
        // Empty in the common case: no hashing per de-commit.
        if !pendingCommits.isEmpty { pendingCommits[n] = nil }
        if !hungCommits.isEmpty { hungCommits.remove(n) }
        hdm.decommit(n, in: &component)
    }

    // MARK: MSI-X (PCI 3.0 §6.8.2)

    private var msixControl: UInt64 { config.read(Layout.msix + MSIXCapability.messageControl.offset, width: 2) }
    private var msixEnabled: Bool { msixControl & MSIXCapability.Control.enable.mask != 0 }
    private var functionMasked: Bool { msixControl & MSIXCapability.Control.functionMask.mask != 0 }
    private func vectorMasked(_ v: Int) -> Bool {
        MSIXCapability.maskBit.extract(msix.read(MSIXCapability.tableEntrySize * v + MSIXCapability.vectorControl.offset, width: 4)) != 0
    }
    private var pbaBase: Int { Int(Layout.msixPBA - Layout.msixTable) }

    mutating func signal(vector v: Int) {
        guard v >= 0, v < profile.msixVectors, msixEnabled else { return }
        if functionMasked || vectorMasked(v) {
            msix.setBits(pbaBase + 8 * (v / 64), width: 8, mask: 1 << UInt64(v % 64), to: true)
        } else {
            interrupts.append(v)
        }
    }

    mutating func deliverPending() {
        guard msixEnabled, !functionMasked else { return }
        for v in 0..<profile.msixVectors where !vectorMasked(v) {
            let o = pbaBase + 8 * (v / 64), bit: UInt64 = 1 << UInt64(v % 64)
            if msix.read(o, width: 8) & bit != 0 {
                msix.setBits(o, width: 8, mask: bit, to: false)
                interrupts.append(v)
            }
        }
    }

    /// The vectors to deliver, nil when there are none: every write asks, and almost
    /// always there are none, so no array is handed out (and released) for them.
    mutating func takeInterrupts() -> [Int]? {
        if interrupts.isEmpty { return nil }
        defer { interrupts = [] }
        return interrupts
    }
}
