import PCI

/// What firmware sets up on a CXL Type-2 device before the OS sees it: the state
/// the save/restore engine exists to keep across resets.
public struct CXLFirmwareProgram: Sendable, Hashable {
    /// One HDM decoder: HPA size and DPA skip (both multiples of 256 MiB).
    public struct Decoder: Sendable, Hashable {
        public var size: UInt64
        public var dpaSkip: UInt64
        public init(size: UInt64, dpaSkip: UInt64 = 0) {
            self.size = size
            self.dpaSkip = dpaSkip
        }
    }

    /// HPA of decoder 0 (and of DVSEC Range 1); later decoders follow contiguously.
    public var hpaBase: UInt64
    public var decoders: [Decoder]
    public var lockOnCommit: Bool
    /// Set CONFIG_LOCK last.
    public var configLock: Bool
    /// Where to place the component register BAR if it is unassigned.
    public var componentBARAddress: UInt64

    public init(hpaBase: UInt64 = 0x40_0000_0000,
                decoders: [Decoder] = [Decoder(size: 512 << 20), Decoder(size: 256 << 20, dpaSkip: 256 << 20)],
                lockOnCommit: Bool = false, configLock: Bool = true, componentBARAddress: UInt64 = 0xE000_0000) {
        self.hpaBase = hpaBase
        self.decoders = decoders
        self.lockOnCommit = lockOnCommit
        self.configLock = configLock
        self.componentBARAddress = componentBARAddress
    }
}

extension CXLStateEngine {
    /// Program the function the way firmware would, through config and BAR accesses
    /// only: component BAR (if unassigned), Memory Space and Bus Master Enable, DVSEC
    /// Range 1 Base, HDM Decoder Enable, each decoder programmed and committed in
    /// ascending order, DVSEC Control Mem_Enable (and Cache_Enable when capable),
    /// then CONFIG_LOCK. Returns the steps taken.
    @discardableResult
    public func programLikeFirmware(_ program: CXLFirmwareProgram = CXLFirmwareProgram()) throws(CXLStateError) -> [String] {
        let s = try save()
        guard let hdm = s.layout.hdm else { throw .notCXLDevice("\(function.address) has no HDM decoders to program") }
        guard program.decoders.count <= hdm.decoderCount else {
            throw .layoutMismatch("\(program.decoders.count) decoders asked, \(hdm.decoderCount) implemented")
        }
        var steps: [String] = []
        func w(_ key: RegisterKey, _ v: UInt64) throws(CXLStateError) {
            guard let r = s[key] else { throw .layoutMismatch("no \(key)") }
            try write(r, v)
        }
        func dv(_ l: RegisterLayout) -> RegisterKey { RegisterKey(block: StateCatalog.dvsecBlock, register: l.name) }
        func hk(_ name: String) -> RegisterKey { RegisterKey(block: StateCatalog.hdmBlock, register: name) }

        // Component BAR.
        let bars = StateCatalog.barIndices(of: hdm.bar, in: s)
        let baseField = PCIHeader.BAR.baseAddress
        let low = s[StateCatalog.barKey(bars[0])]!.value
        let high = bars.count > 1 ? s[StateCatalog.barKey(bars[1])]!.value : 0
        if baseField.extract(low) == 0 && high == 0 {
            try w(StateCatalog.barKey(bars[0]), program.componentBARAddress & 0xFFFF_FFFF)
            if bars.count > 1 { try w(StateCatalog.barKey(bars[1]), program.componentBARAddress >> 32) }
            steps.append("BAR \(hdm.bar) placed at 0x\(String(program.componentBARAddress, radix: 16))")
        }
        let cmd = s[StateCatalog.commandKey]!.value | PCIHeader.Command.memorySpaceEnable.mask | PCIHeader.Command.busMasterEnable.mask
        try w(StateCatalog.commandKey, cmd)
        steps.append("Command: Memory Space Enable, Bus Master Enable")

        // DVSEC Range 1 Base mirrors decoder 0 (CXL 3.1 §8.1.3.8 recommends it).
        try w(dv(CXLDeviceDVSEC.range1.baseHigh), program.hpaBase >> 32)
        try w(dv(CXLDeviceDVSEC.range1.baseLow), program.hpaBase & CXLDeviceDVSEC.range1.baseLow.writableMask)
        steps.append("DVSEC Range 1 Base = 0x\(String(program.hpaBase, radix: 16))")

        let global = HDMDecoderCapability.globalControl
        try w(hk(global.name), s[hk(global.name)]!.value | HDMDecoderCapability.hdmDecoderEnable.mask)
        steps.append("HDM Decoder Enable")

        var base = program.hpaBase
        for (n, d) in program.decoders.enumerated() {
            // Type-2 decoders are device-coherent: Target Range Type 0, 1-way.
            let control = program.lockOnCommit ? StateCatalog.lockOnCommitBit : 0
            let result: HDMCommitResult
            do {
                result = try HDMCommitter(options).commit(decoder: n, base: base, size: d.size, dpaSkip: d.dpaSkip, control: control,
                                                          through: .bar(function, bar: hdm.bar, hdmOffset: hdm.hdmOffset))
            } catch { throw .access(error) }
            switch result.wait {
            case .done: break
            case .errorNotCommitted: throw .layoutMismatch("decoder \(n) reported Error Not Committed")
            case .timeout: throw .layoutMismatch("decoder \(n) did not commit within \(options.commitTimeout.humanReadable)")
            }
            steps.append("decoder \(n): HPA 0x\(String(base, radix: 16)) size \(d.size >> 20) MiB"
                + (d.dpaSkip > 0 ? " DPA skip \(d.dpaSkip >> 20) MiB" : "") + " committed"
                + (program.lockOnCommit ? " (Lock On Commit)" : ""))
            base += d.size
        }

        let control = CXLDeviceDVSEC.control
        let cap = s.dvsec(CXLDeviceDVSEC.capability)?.value ?? 0
        var c = s.dvsec(control)!.value | CXLDeviceDVSEC.memEnable.mask
        if CXLDeviceDVSEC.cacheCapable.extract(cap) == 1 { c |= CXLDeviceDVSEC.Control.cacheEnable.mask }
        try w(dv(control), c)
        steps.append("DVSEC Control: Mem_Enable" + (c & CXLDeviceDVSEC.Control.cacheEnable.mask != 0 ? ", Cache_Enable" : ""))
        if program.configLock {
            try w(dv(CXLDeviceDVSEC.lock), StateCatalog.configLockBit)
            steps.append("CONFIG_LOCK")
        }
        return steps
    }
}
