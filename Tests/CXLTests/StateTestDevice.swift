import PCI
@testable import CXL

/// A small register-accurate CXL Type-2 function for the state engine's unit tests:
/// config image and component register image with catalog-derived write masks,
/// CONFIG_LOCK (RWO, freezes RWL fields), HDM commit with Lock On Commit and the
/// ascending-order check, FLR / conventional reset / CXL Reset with their spec
/// scopes, and injectable faults. Every access is logged.
final class StateTestDevice: PCIFunction, @unchecked Sendable {
    enum CommitBehaviour { case instant, error, never }
    enum CXLResetBehaviour { case complete, error, never }
    /// One access; a bulk read has `width` = its byte count and `bulk` set.
    struct Access: Hashable {
        var write: Bool; var space: RegisterSpace; var offset: UInt64; var width: Int; var bulk = false
        /// Whether this access reads (or writes) the register at `offset`.
        func covers(_ space: RegisterSpace, _ offset: UInt64) -> Bool {
            self.space == space && (bulk ? (self.offset..<(self.offset + UInt64(width))).contains(offset) : self.offset == offset)
        }
    }

    let address: String
    let configSize = 4096
    var resetMethods: [PCIResetMethod] = [.flr, .bus, .link]
    var bars: [BARDescription] { [BARDescription(index: 2, kind: .memory64, prefetchable: false, size: 0x1_0000)] }

    var commitBehaviour: CommitBehaviour = .instant
    var cxlResetBehaviour: CXLResetBehaviour = .complete
    /// FLR wipes CXL state too (a non-compliant device).
    var flrLosesState = false
    /// QEMU clears Commit when it sets Committed (hw/mem/cxl_type3.c).
    var qemuCommitStyle = false
    var log: [Access] = []
    var resets: [String] = []

    private(set) var config = [UInt8](repeating: 0, count: 4096)
    private(set) var component = [UInt8](repeating: 0, count: 0x1_0000)
    private var configMask = [UInt8](repeating: 0, count: 4096)
    private var componentMask = [UInt8](repeating: 0, count: 0x1_0000)
    private var powerOnConfig: [UInt8] = []
    private var powerOnComponent: [UInt8] = []
    private var lockWritten = false

    // Layout.
    static let pcie = 0x40, msi = 0x80, msix = 0xA0, dsn = 0x100, dvsec = 0x110, locator = 0x150
    static let componentBAR = 2
    static let hdm = 0x1010
    static let decoderCount = 2
    static let serial: UInt64 = 0x0011_2233_4455_6677

    init(address: String = "test:type2", vendor: UInt16 = 0x10DE, device: UInt16 = 0x2B00, serial: UInt64 = StateTestDevice.serial,
         cacheCapable: Bool = true) {
        self.address = address
        func put(_ base: Int, _ r: RegisterLayout, _ v: UInt64, mask: UInt64? = nil) {
            for i in 0..<r.width {
                config[base + r.offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i))
                configMask[base + r.offset + i] = UInt8(truncatingIfNeeded: (mask ?? r.writableMask) >> UInt64(8 * i))
            }
        }
        // Header.
        put(0, PCIHeader.vendorID, UInt64(vendor)); put(0, PCIHeader.deviceID, UInt64(device))
        put(0, PCIHeader.command, 0)
        put(0, PCIHeader.status, 0x10, mask: 0)
        put(0, PCIHeader.headerType, 0)
        put(0, PCIHeader.capabilitiesPointer, UInt64(Self.pcie))
        for i in 0..<6 { put(0, PCIHeader.bar(i), 0, mask: 0) }
        put(0, PCIHeader.bar(2), 0x4, mask: 0xFFFF_0000)  // 64-bit memory, 64 KiB
        put(0, PCIHeader.bar(3), 0, mask: 0xFFFF_FFFF)
        // PCI Express.
        let p = Self.pcie
        config[p] = 0x10; config[p + 1] = UInt8(Self.msi)
        put(p, PCIExpressCapability.capabilities, 0x2, mask: 0)
        put(p, PCIExpressCapability.deviceCapabilities, 1 << 28, mask: 0)
        for r in StateCatalog.pciExpressRegisters { put(p, r, r.resetValue) }
        // MSI: 64-bit, per-vector masking.
        config[Self.msi] = 0x05; config[Self.msi + 1] = UInt8(Self.msix)
        for r in MSICapability.layout(is64Bit: true, perVectorMasking: true).registers where r.offset >= 2 {
            put(Self.msi, r, r.name == "Message Control" ? 0x0180 : 0)
        }
        // MSI-X.
        config[Self.msix] = 0x11; config[Self.msix + 1] = 0
        put(Self.msix, MSIXCapability.messageControl, 0x7)
        // Device Serial Number.
        put(Self.dsn, ExtendedCapabilityHeader.header, 0x0003 | 1 << 16 | UInt64(Self.dvsec) << 20, mask: 0)
        put(Self.dsn, Discovery.serialLower, serial & 0xFFFF_FFFF, mask: 0)
        put(Self.dsn, Discovery.serialUpper, serial >> 32, mask: 0)
        // CXL Device DVSEC, revision 2.
        let d = Self.dvsec
        put(d, ExtendedCapabilityHeader.header, 0x0023 | 1 << 16 | UInt64(Self.locator) << 20, mask: 0)
        put(d, DVSECHeader.header1, 0x1E98 | 2 << 16 | 0x3C << 20, mask: 0)
        put(d, DVSECHeader.header2, 0, mask: 0)
        // Cache, IO, Mem capable; HDM_Count 1; WB+I; CXL Reset capable, timeout 100 ms; Mem Clr capable.
        let cap: UInt64 = (cacheCapable ? 1 : 0) | 1 << 1 | 1 << 2 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 8 | 1 << 11
        put(d, CXLDeviceDVSEC.capability, cap, mask: 0)
        put(d, CXLDeviceDVSEC.control, CXLDeviceDVSEC.control.resetValue)
        put(d, CXLDeviceDVSEC.status, 0)
        put(d, CXLDeviceDVSEC.control2, 0)
        put(d, CXLDeviceDVSEC.status2, 1 << 15, mask: 0)
        put(d, CXLDeviceDVSEC.lock, 0)
        put(d, CXLDeviceDVSEC.range1.sizeHigh, 0, mask: 0)
        put(d, CXLDeviceDVSEC.range1.sizeLow, 0x1000_0003, mask: 0)  // 256 MiB, valid, active
        put(d, CXLDeviceDVSEC.range1.baseHigh, 0); put(d, CXLDeviceDVSEC.range1.baseLow, 0)
        put(d, CXLDeviceDVSEC.range2.baseHigh, 0); put(d, CXLDeviceDVSEC.range2.baseLow, 0)
        // Register Locator: one entry, component registers in BAR 2 at offset 0.
        put(Self.locator, ExtendedCapabilityHeader.header, 0x0023 | 1 << 16, mask: 0)
        put(Self.locator, DVSECHeader.header1, 0x1E98 | 0 << 16 | 0x14 << 20, mask: 0)
        put(Self.locator, DVSECHeader.header2, 0x8, mask: 0)
        put(Self.locator + RegisterLocatorDVSEC.firstEntryOffset, RegisterLocatorDVSEC.offsetLow, 2 | 1 << 8, mask: 0)
        // Component registers: capability array with one HDM capability at 0x1010.
        func cput(_ off: Int, _ r: RegisterLayout, _ v: UInt64, mask: UInt64? = nil) {
            for i in 0..<r.width {
                component[off + r.offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i))
                componentMask[off + r.offset + i] = UInt8(truncatingIfNeeded: (mask ?? r.writableMask) >> UInt64(8 * i))
            }
        }
        cput(0x1000, CacheMemCapabilityArray.header, 0x0111_0001, mask: 0)
        cput(0x1000, CacheMemCapabilityArray.element, 0x0103_0005 | UInt64(Self.hdm - 0x1000) << 20 & 0xFFF0_0000, mask: 0)
        let hdmLayout = HDMDecoderCapability.layout(decoders: Self.decoderCount, endpoint: true)
        for r in hdmLayout.registers {
            cput(Self.hdm, r, r.name == HDMDecoderCapability.capability.name ? 0x11 : 0)
        }
        powerOnConfig = config
        powerOnComponent = component
    }

    // MARK: Helpers for tests

    func cfg(_ base: Int, _ r: RegisterLayout) -> UInt64 {
        (0..<r.width).reduce(0) { $0 | UInt64(config[base + r.offset + $1]) << UInt64(8 * $1) }
    }
    func comp(_ off: Int) -> UInt64 { (0..<4).reduce(0) { $0 | UInt64(component[off + $1]) << UInt64(8 * $1) } }
    func decoderOffset(_ n: Int, _ reg: Int) -> Int { Self.hdm + HDMDecoderCapability.firstDecoderOffset + HDMDecoderCapability.decoderStride * n + reg }
    var isLocked: Bool { cfg(Self.dvsec, CXLDeviceDVSEC.lock) & 1 != 0 }

    /// Program the device the way firmware would: BARs, Command, DVSEC Range 1 and
    /// Mem_Enable, HDM Decoder Enable, decoders 0 and 1 committed (optionally with
    /// Lock On Commit), then CONFIG_LOCK.
    func programLikeFirmware(lockOnCommit: Bool = false, configLock: Bool = true, commitDecoder1: Bool = true) {
        try! configWrite(0x18, width: 4, value: 0xE000_0004)
        try! configWrite(0x1C, width: 4, value: 0x0000_0020)
        try! configWrite(4, width: 2, value: 0x0006)
        try! configWrite(Self.pcie + 8, width: 2, value: 0x2850)
        try! configWrite(Self.msi + 4, width: 4, value: 0xFEE0_0000)
        try! configWrite(Self.msi + 0xC, width: 2, value: 0x4041)
        try! configWrite(Self.msi + 2, width: 2, value: 0x0181)
        let d = Self.dvsec
        try! configWrite(d + 0x20, width: 4, value: 0x0000_0010)  // Range 1 Base High
        try! configWrite(d + 0x24, width: 4, value: 0x0000_0000)
        try! configWrite(d + 0x10, width: 2, value: 0x0010)       // Control2: Desired Volatile HDM State
        try! barWrite(2, offset: UInt64(Self.hdm + 4), width: 4, value: 0x2)  // HDM Decoder Enable
        let loc: UInt64 = lockOnCommit ? StateCatalog.lockOnCommitBit : 0
        for (n, base, size, skip) in [(0, UInt64(0x10_0000_0000), UInt64(0x1000_0000), UInt64(0)),
                                      (1, UInt64(0x10_1000_0000), UInt64(0x2000_0000), UInt64(0x1000_0000))] {
            if n == 1 && !commitDecoder1 { continue }
            try! barWrite(2, offset: UInt64(decoderOffset(n, 0x0)), width: 4, value: base & 0xFFFF_FFFF)
            try! barWrite(2, offset: UInt64(decoderOffset(n, 0x4)), width: 4, value: base >> 32)
            try! barWrite(2, offset: UInt64(decoderOffset(n, 0x8)), width: 4, value: size & 0xFFFF_FFFF)
            try! barWrite(2, offset: UInt64(decoderOffset(n, 0xC)), width: 4, value: size >> 32)
            try! barWrite(2, offset: UInt64(decoderOffset(n, 0x14)), width: 4, value: skip & 0xFFFF_FFFF)
            try! barWrite(2, offset: UInt64(decoderOffset(n, 0x18)), width: 4, value: skip >> 32)
            try! barWrite(2, offset: UInt64(decoderOffset(n, 0x10)), width: 4, value: StateCatalog.commitBit | loc)
        }
        try! configWrite(d + 0x0C, width: 2, value: 0x0007)       // Cache_Enable, Mem_Enable
        if configLock { try! configWrite(d + 0x14, width: 2, value: 1) }
        log = []
    }

    // MARK: PCIFunction

    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        guard [1, 2, 4].contains(width), offset >= 0, offset + width <= 4096, offset % width == 0 else {
            throw .badAccess("config \(offset)/\(width)")
        }
        log.append(Access(write: false, space: .config, offset: UInt64(offset), width: width))
        return UInt32((0..<width).reduce(UInt64(0)) { $0 | UInt64(config[offset + $1]) << UInt64(8 * $1) })
    }

    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        guard [1, 2, 4].contains(width), offset >= 0, offset + width <= 4096, offset % width == 0 else {
            throw .badAccess("config \(offset)/\(width)")
        }
        log.append(Access(write: true, space: .config, offset: UInt64(offset), width: width))
        let d = Self.dvsec
        let lockable = CXLDeviceDVSEC.layout(revision: 2).byteMasks { $0.lockableMask }
        for i in 0..<width {
            let o = offset + i
            let b = UInt8(truncatingIfNeeded: value >> UInt32(8 * i))
            var mask = configMask[o]
            if o >= d, o < d + lockable.count, isLocked { mask &= ~lockable[o - d] }
            if o == d + CXLDeviceDVSEC.lock.offset { if lockWritten { continue }; lockWritten = true }
            config[o] = (config[o] & ~mask) | (b & mask)
        }
        // Doorbells.
        let c2 = d + CXLDeviceDVSEC.control2.offset
        if offset <= c2 && c2 < offset + width {
            let v = cfg(d, CXLDeviceDVSEC.control2)
            if v & 0x2 != 0 { setCfg(d, CXLDeviceDVSEC.status2, cfg(d, CXLDeviceDVSEC.status2) | 0x1) }
            if v & 0x4 != 0 { initiateCXLReset() }
            setCfg(d, CXLDeviceDVSEC.control2, v & ~CXLDeviceDVSEC.control2Doorbells)
        }
    }

    private func setCfg(_ base: Int, _ r: RegisterLayout, _ v: UInt64) {
        for i in 0..<r.width { config[base + r.offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
    }

    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        guard bar == Self.componentBAR else { throw .noSuchBAR(bar) }
        guard width == 4, offset % 4 == 0, offset + 4 <= UInt64(component.count) else { throw .badAccess("bar \(offset)/\(width)") }
        log.append(Access(write: false, space: .bar(bar), offset: offset, width: width))
        return comp(Int(offset))
    }

    /// One bulk access, logged once.
    func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        guard offset >= 0, offset % 4 == 0, count % 4 == 0, count >= 0, offset + count <= 4096 else { throw .badAccess("config bulk \(offset)/\(count)") }
        log.append(Access(write: false, space: .config, offset: UInt64(offset), width: count, bulk: true))
        return Array(config[offset..<(offset + count)])
    }

    func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        guard bar == Self.componentBAR else { throw .noSuchBAR(bar) }
        guard offset % 4 == 0, count % 4 == 0, count >= 0, offset + UInt64(count) <= UInt64(component.count) else { throw .badAccess("bar bulk \(offset)/\(count)") }
        log.append(Access(write: false, space: .bar(bar), offset: offset, width: count, bulk: true))
        return Array(component[Int(offset)..<(Int(offset) + count)])
    }

    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        guard bar == Self.componentBAR else { throw .noSuchBAR(bar) }
        guard width == 4, offset % 4 == 0, offset + 4 <= UInt64(component.count) else { throw .badAccess("bar \(offset)/\(width)") }
        log.append(Access(write: true, space: .bar(bar), offset: offset, width: width))
        let o = Int(offset)
        // Which decoder, if any.
        let first = Self.hdm + HDMDecoderCapability.firstDecoderOffset
        var decoder: Int?
        if o >= first, o < first + HDMDecoderCapability.decoderStride * Self.decoderCount {
            decoder = (o - first) / HDMDecoderCapability.decoderStride
        }
        if let n = decoder {
            let control = comp(decoderOffset(n, 0x10))
            if control & StateCatalog.lockOnCommitBit != 0 && control & StateCatalog.committedBit != 0 { return }
        }
        let old = comp(o)
        var new = old
        for i in 0..<4 {
            let m = componentMask[o + i], b = UInt8(truncatingIfNeeded: value >> UInt64(8 * i))
            component[o + i] = (component[o + i] & ~m) | (b & m)
        }
        new = comp(o)
        if let n = decoder, o == decoderOffset(n, 0x10) { controlWritten(n, old: old, new: new) }
    }

    private func setComp(_ off: Int, _ v: UInt64) {
        for i in 0..<4 { component[off + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
    }

    private func controlWritten(_ n: Int, old: UInt64, new: UInt64) {
        let commit = StateCatalog.commitBit, committed = StateCatalog.committedBit, error = StateCatalog.errorNotCommittedBit
        var v = new
        if old & commit == 0 && new & commit != 0 {
            switch commitBehaviour {
            case .instant:
                let orderOK = n == 0 || comp(decoderOffset(n - 1, 0x10)) & committed != 0
                if new & StateCatalog.lockOnCommitBit != 0 && !orderOK { v = (v | error) & ~committed }
                else { v = (v | committed) & ~error; if qemuCommitStyle { v &= ~commit } }
            case .error: v = (v | error) & ~committed
            case .never: break
            }
        } else if (old & commit != 0 || old & committed != 0) && new & commit == 0 {
            v &= ~(committed | error)
        }
        setComp(decoderOffset(n, 0x10), v)
    }

    // MARK: Resets

    /// Function-scope state: everything in config space but the CXL DVSEC.
    private func resetFunctionScope() {
        let d = Self.dvsec
        for o in 0..<4096 where !(o >= d && o < d + 0x3C) { config[o] = powerOnConfig[o] }
    }

    private func resetConventional() {
        config = powerOnConfig
        component = powerOnComponent
        lockWritten = false
    }

    private func initiateCXLReset() {
        let d = Self.dvsec
        var s2 = cfg(d, CXLDeviceDVSEC.status2) & ~UInt64(0x6)
        switch cxlResetBehaviour {
        case .complete:
            resets.append("cxl")
            // CXL.io (FLR scope) plus CXL.cache/mem; CONFIG_LOCK and the fields it locks stay.
            let locked = isLocked
            let keep = config
            resetFunctionScope()
            let lockable = CXLDeviceDVSEC.layout(revision: 2).byteMasks { $0.lockableMask }
            let sticky = CXLDeviceDVSEC.layout(revision: 2).byteMasks { $0.stickyMask }
            for i in 0..<0x3C {
                let o = d + i
                var keepMask = sticky[safe: i]
                if locked { keepMask |= lockable[safe: i] }
                if o == d + CXLDeviceDVSEC.lock.offset { keepMask = 0xFF }
                config[o] = (powerOnConfig[o] & ~keepMask) | (keep[o] & keepMask)
            }
            component = powerOnComponent
            s2 = cfg(d, CXLDeviceDVSEC.status2) & ~UInt64(0x7) | 0x2
        case .error:
            s2 |= 0x4
        case .never:
            break
        }
        setCfg(d, CXLDeviceDVSEC.status2, s2)
    }

    func reset(_ method: PCIResetMethod) throws(PCIError) {
        guard resetMethods.contains(method) else { throw .resetUnsupported(method.rawValue) }
        resets.append(method.rawValue)
        switch method {
        case .flr: if flrLosesState { resetConventional() } else { resetFunctionScope() }
        default: resetConventional()
        }
    }
}

extension Array where Element == UInt8 {
    subscript(safe i: Int) -> UInt8 { i < count ? self[i] : 0 }
}
