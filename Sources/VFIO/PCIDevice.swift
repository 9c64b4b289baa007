import Foundation
import PCI

/// The vfio-pci-core equivalent: exposes any `PCIFunction` as a `VFIODevice` with VFIO-PCI regions and IRQs.
///
/// Config space is virtualised the way vfio-pci does it (masks derived from the PCI register catalog):
/// - Command is emulated (writable bits per the catalog) and forwarded to the function;
/// - BARs are fully virtual: sizing (write all ones, read back the size mask), programming, 64-bit pairs;
/// - the Expansion ROM BAR reads 0; Interrupt Line is emulated;
/// - MSI and MSI-X capabilities are emulated (enable, multiple-message enable, address/data, per-vector masks,
///   function mask) for read-back, with the MSI-X table and PBA trapped in their BAR and carved out of its
///   sparse mmap;
/// - a write of Initiate FLR in the PCI Express Device Control register performs an FLR.
/// Everything else reads and writes through to the function.
///
/// Interrupts the function raises (`PCIInterruptSink`) are delivered through the eventfds registered with
/// SET_IRQS on the MSI-X, MSI or INTx index — whichever has eventfds, as in kernel vfio-pci — honouring the
/// SET_IRQS masks. The MSI-X table is emulated storage (QEMU emulates its own table and never writes it).
///
/// Composition: subclass and override any `open` method, or register `trap(region:range:handler:)`,
/// `overrideConfig(range:handler:)`, `addRegion(_:)` and `deviceInfoCapabilities` without subclassing.
open class VFIOPCIDevice: VFIODirectAccessDevice, @unchecked Sendable {
    public let function: any PCIFunction
    public let irqs: VFIOIRQTable
    /// Serialises config virtualisation state.
    public let lock = VFIORecursiveLock()

    private let configSize: Int
    // The state below is guarded by `lock`: dynamic exclusivity checks are off for what a config access touches
    // (they cost more than the access itself on the per-message path).
    /// Virtual config image; bytes selected by `virtualMask` are read from here.
    @exclusivity(unchecked) private var vconfig: [UInt8]
    /// Per byte: bits read from `vconfig` instead of the function.
    @exclusivity(unchecked) private var virtualMask: [UInt8]
    /// Per byte: bits of `vconfig` a guest write may change.
    @exclusivity(unchecked) private var writeMask: [UInt8]
    /// Per byte: forward writes to the function too.
    @exclusivity(unchecked) private var forward: [Bool]
    private var resetImage: [UInt8]
    private let barList: [BARDescription?]

    /// Per config byte, 0xFF when it is virtual and read-only (`virtualiseReadOnly`) and no override covers it;
    /// `readOnlyImage` holds those bytes' values. Both are fixed at init (an override only clears bytes of the
    /// mask), so an aligned read of such bytes takes neither the lock nor the function: a guest's probe of the IDs
    /// and capability walk, and the benchmark's config read.
    private let readOnlyMask: UnsafeMutableRawPointer
    private let readOnlyImage: UnsafeMutableRawPointer
    /// Offset and width of every capability header (ID and next pointer; the whole header of an extended one).
    private var capabilityHeaders: [(offset: Int, width: Int)] = []
    private var msiOffset: Int?
    private var msiLayout: RegisterBlockLayout?
    private var msixOffset: Int?
    private var msix: (bar: Int, tableOffset: UInt64, pbaBar: Int, pbaOffset: UInt64, count: Int)?
    private var msixTable: [UInt8] = []
    private var expressOffset: Int?

    @exclusivity(unchecked) private var traps: [UInt32: [(Range<UInt64>, any VFIORegionAccessHandler)]] = [:]
    @exclusivity(unchecked) private var configOverrides: [(Range<Int>, any VFIOConfigAccessHandler)] = []
    /// The span of all `configOverrides` (empty: none): an access outside it skips the list.
    @exclusivity(unchecked) private var overrideSpan: Range<Int> = 0..<0
    @exclusivity(unchecked) private var extraRegions: [UInt32: VFIOExtraRegion] = [:]
    /// The handlers of `extraRegions` by index - `VFIOPCIRegion.count` (indices up to 64 past it), looked up on
    /// every access without hashing; `otherExtras`: some extra region lies outside that (then the dictionary).
    @exclusivity(unchecked) private var extraHandlers: [(any VFIORegionAccessHandler)?] = []
    @exclusivity(unchecked) private var otherExtras = false
    /// Device-info capabilities reported with `VFIO_DEVICE_FLAGS_CAPS` (for composing devices).
    public var deviceInfoCapabilities: [VFIOCapability] {
        get { lock.lock(); defer { lock.unlock() }; return _deviceInfoCaps }
        set { lock.lock(); _deviceInfoCaps = newValue; lock.unlock() }
    }
    private var _deviceInfoCaps: [VFIOCapability] = []
    /// Guest memory access, attached by the transport.
    public private(set) var dma: (any VFIODMAMemory)?

    public init(function: any PCIFunction) throws(VFIOError) {
        self.function = function
        let snapshot: ConfigSpace
        do { snapshot = try function.configSnapshot() } catch { throw .system(errno: VFIOErrno.EIO, "config snapshot: \(error)") }
        configSize = function.configSize
        vconfig = snapshot.bytes
        virtualMask = Array(repeating: 0, count: configSize)
        writeMask = Array(repeating: 0, count: configSize)
        forward = Array(repeating: true, count: configSize)
        var bl: [BARDescription?] = Array(repeating: nil, count: 6)
        for b in function.bars where b.index >= 0 && b.index < 6 { bl[b.index] = b }
        barList = bl
        let caps = CapabilityList(walking: snapshot)
        capabilityHeaders = caps.all.map { ($0.offset, $0.space == .standard ? 2 : 4) }
        msiOffset = caps.standard(.msi)?.offset
        msixOffset = caps.standard(.msix)?.offset
        expressOffset = caps.standard(.pciExpress)?.offset
        var intxCount: UInt32 = 0
        if let pin = snapshot.read8(PCIHeader.interruptPin.offset), pin != 0 { intxCount = 1 }
        var msiCount: UInt32 = 0
        if let m = msiOffset, let ctl = snapshot.read16(m + MSICapability.messageControl.offset) {
            let c = UInt64(ctl)
            let is64 = MSICapability.Control.is64Bit.extract(c) == 1
            let pvm = MSICapability.Control.perVectorMasking.extract(c) == 1
            msiLayout = MSICapability.layout(is64Bit: is64, perVectorMasking: pvm)
            msiCount = 1 << UInt32(MSICapability.Control.multipleMessageCapable.extract(c))
        }
        var msixCount: UInt32 = 0
        if let x = msixOffset, let ctl = snapshot.read16(x + MSIXCapability.messageControl.offset),
           let t = snapshot.read32(x + MSIXCapability.tableOffset.offset), let p = snapshot.read32(x + MSIXCapability.pbaOffset.offset) {
            let n = Int(MSIXCapability.Control.tableSize.extract(UInt64(ctl))) + 1
            msixCount = UInt32(n)
            let tb = MSIXCapability.tableBIR, pb = MSIXCapability.pbaBIR
            msix = (bar: Int(tb.extract(UInt64(t))), tableOffset: UInt64(t) & ~tb.mask,
                    pbaBar: Int(pb.extract(UInt64(p))), pbaOffset: UInt64(p) & ~pb.mask, count: n)
        }
        irqs = VFIOIRQTable([
            VFIOIRQInfo(index: VFIOPCIIRQ.intx.rawValue, flags: [.eventfd, .maskable, .automasked], count: intxCount),
            VFIOIRQInfo(index: VFIOPCIIRQ.msi.rawValue, flags: [.eventfd, .noresize], count: msiCount),
            VFIOIRQInfo(index: VFIOPCIIRQ.msix.rawValue, flags: [.eventfd, .noresize], count: msixCount),
            VFIOIRQInfo(index: VFIOPCIIRQ.err.rawValue, flags: [.eventfd], count: 0),
            VFIOIRQInfo(index: VFIOPCIIRQ.req.rawValue, flags: [.eventfd], count: 0),
        ])
        resetImage = []
        readOnlyMask = UnsafeMutableRawPointer.allocate(byteCount: configSize + 8, alignment: 8)
        readOnlyMask.initializeMemory(as: UInt8.self, repeating: 0, count: configSize + 8)
        readOnlyImage = UnsafeMutableRawPointer.allocate(byteCount: configSize + 8, alignment: 8)
        readOnlyImage.initializeMemory(as: UInt8.self, repeating: 0, count: configSize + 8)
        setUpVirtualisation()
        resetImage = vconfig
        resetMSIXTable()
        function.setInterruptSink { [weak self] vector in self?.raise(vector: vector) }
    }

    deinit {
        readOnlyMask.deallocate()
        readOnlyImage.deallocate()
    }

    // MARK: Virtualisation set-up (masks from the catalog)

    private func virtualise(_ offset: Int, _ layout: RegisterLayout, writable: UInt64? = nil, initial: UInt64? = nil, forwardWrites: Bool) {
        let wm = writable ?? layout.writableMask
        for i in 0..<layout.width where offset + i < configSize {
            readOnlyMask.storeBytes(of: 0, toByteOffset: offset + i, as: UInt8.self)
            virtualMask[offset + i] = 0xFF
            writeMask[offset + i] = UInt8(truncatingIfNeeded: wm >> UInt64(8 * i))
            forward[offset + i] = forwardWrites
            if let v = initial { vconfig[offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
        }
    }

    /// Bytes read from the snapshot taken at init, never from the function, with guest writes dropped: the
    /// identity and structure of the function, which no write and no event changes.
    private func virtualiseReadOnly(_ offset: Int, width: Int) {
        for i in 0..<width where offset + i >= 0 && offset + i < configSize {
            virtualMask[offset + i] = 0xFF
            writeMask[offset + i] = 0
            forward[offset + i] = false
            readOnlyMask.storeBytes(of: 0xFF, toByteOffset: offset + i, as: UInt8.self)
            readOnlyImage.storeBytes(of: vconfig[offset + i], toByteOffset: offset + i, as: UInt8.self)
        }
    }

    private func setUpVirtualisation() {
        // As vfio-pci (`init_pci_cap_basic_perm`, `vfio_cap_init`, `vfio_ecap_init`): Vendor ID, Device ID, the
        // Capabilities Pointer, Interrupt Pin and every capability header (ID and next pointer; an extended
        // capability's whole header) are virtual and read-only: a config read of them (a guest's probe, a
        // capability walk) is answered from the image without a call into the function (PCI 6.0 §7.5.1.1,
        // §7.5.1.1.11, §7.5.1.3.8, §7.6.3).
        for r in [PCIHeader.vendorID, PCIHeader.deviceID, PCIHeader.capabilitiesPointer, PCIHeader.interruptPin] {
            virtualiseReadOnly(r.offset, width: r.width)
        }
        for (offset, width) in capabilityHeaders { virtualiseReadOnly(offset, width: width) }
        // Command: emulated and forwarded; starts at its reset value.
        virtualise(PCIHeader.command.offset, PCIHeader.command, initial: PCIHeader.command.resetValue, forwardWrites: true)
        // BARs: fully virtual; writable bits are the implemented address bits.
        var i = 0
        while i < 6 {
            let reg = PCIHeader.bar(i)
            guard let b = barList[i] else { virtualise(reg.offset, reg, writable: 0, initial: 0, forwardWrites: false); i += 1; continue }
            let size = max(b.size, b.kind == .io ? 4 : 16)
            let bar = PCIHeader.BAR.self
            let flags: UInt64
            switch b.kind {
            case .io: flags = bar.memorySpaceIndicator.insert(1, into: 0)
            case .memory32: flags = bar.prefetchable.insert(b.prefetchable ? 1 : 0, into: 0)
            case .memory64: flags = bar.memoryType.insert(bar.memoryType64Bit, into: bar.prefetchable.insert(b.prefetchable ? 1 : 0, into: 0))
            }
            let sizing = bar.sizingMask(size: size, io: b.kind == .io)
            virtualise(reg.offset, reg, writable: sizing.low, initial: flags, forwardWrites: false)
            if b.kind == .memory64 && i < 5 {
                let hreg = PCIHeader.bar(i + 1)
                virtualise(hreg.offset, hreg, writable: sizing.high, initial: 0, forwardWrites: false)
                i += 2
            } else { i += 1 }
        }
        // No expansion ROM is exposed.
        let rom = PCIHeader.expansionROM(offset: PCIHeader.type0ExpansionROMOffset)
        virtualise(rom.offset, rom, writable: 0, initial: 0, forwardWrites: false)
        virtualise(PCIHeader.interruptLine.offset, PCIHeader.interruptLine, initial: 0xFF, forwardWrites: false)
        // Status: only Interrupt Status is emulated; the rest (RW1C error bits, capabilities list) passes through.
        let isByte = PCIHeader.status.offset + Self.interruptStatus.lsb / 8
        virtualMask[isByte] |= UInt8(1) << UInt8(Self.interruptStatus.lsb % 8)
        vconfig[isByte] &= ~(UInt8(1) << UInt8(Self.interruptStatus.lsb % 8))
        // MSI: every register after the header, emulated; read-only fields keep the function's values.
        if let m = msiOffset, let layout = msiLayout {
            for r in layout.registers where r.offset >= 2 {
                let ro = readLE(m + r.offset, r.width) & ~r.writableMask
                virtualise(m + r.offset, r, initial: ro | r.resetValue, forwardWrites: false)
            }
        }
        if let x = msixOffset {
            let r = MSIXCapability.messageControl
            let ro = readLE(x + r.offset, r.width) & ~r.writableMask
            virtualise(x + r.offset, r, initial: ro, forwardWrites: false)
        }
    }

    private func readLE(_ offset: Int, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<width where offset + i < configSize { v |= UInt64(vconfig[offset + i]) << UInt64(8 * i) }
        return v
    }

    private func resetMSIXTable() {
        guard let m = msix else { return }
        msixTable = []
        for _ in 0..<m.count { msixTable += MSIXCapability.tableEntry.resetImage }
    }

    // MARK: Extension points

    /// Routes accesses to `range` of `region` to `handler` and keeps that range out of the sparse mmap.
    public func trap(region: UInt32, range: Range<UInt64>, handler: any VFIORegionAccessHandler) {
        lock.lock(); defer { lock.unlock() }
        traps[region, default: []].append((range, handler))
    }

    /// Routes config accesses in `range` to `handler` (e.g. a composing device's DVSEC shadow).
    public func overrideConfig(range: Range<Int>, handler: any VFIOConfigAccessHandler) {
        lock.lock(); defer { lock.unlock() }
        // The override wins over the read-only image too.
        for i in range where i >= 0 && i < configSize { readOnlyMask.storeBytes(of: 0, toByteOffset: i, as: UInt8.self) }
        configOverrides.append((range, handler))
        overrideSpan = overrideSpan.isEmpty ? range
            : min(overrideSpan.lowerBound, range.lowerBound)..<max(overrideSpan.upperBound, range.upperBound)
    }

    /// Adds a device-specific region (index ≥ `VFIOPCIRegion.count`).
    public func addRegion(_ region: VFIOExtraRegion) {
        lock.lock(); defer { lock.unlock() }
        extraRegions[region.info.index] = region
        let i = Int(region.info.index) - Int(VFIOPCIRegion.count)
        if i >= 0 && i < 64 {
            if extraHandlers.count <= i { extraHandlers += Array(repeating: nil, count: i + 1 - extraHandlers.count) }
            extraHandlers[i] = region.handler
        } else {
            otherExtras = true
        }
    }

    // MARK: VFIODevice

    open func deviceInfo() -> VFIODeviceInfo {
        lock.lock(); defer { lock.unlock() }
        let n = max(VFIOPCIRegion.count, (extraRegions.keys.max() ?? 0) + 1)
        var flags: VFIODeviceFlags = [.pci]
        if !function.resetMethods.isEmpty { flags.insert(.reset) }
        return VFIODeviceInfo(flags: flags, numRegions: n, numIRQs: VFIOPCIIRQ.count, capabilities: _deviceInfoCaps)
    }

    /// Ranges of a BAR that must not be mmapped: the MSI-X table and PBA (page-aligned), plus traps.
    private func excludedRanges(bar: Int, size: UInt64) -> [Range<UInt64>] {
        var out: [Range<UInt64>] = []
        let page: UInt64 = 4096
        func pageRange(_ start: UInt64, _ len: UInt64) -> Range<UInt64> {
            let s = start & ~(page - 1)
            let e = min(size, (start + len + page - 1) & ~(page - 1))
            return s..<max(s, e)
        }
        if let m = msix {
            if m.bar == bar { out.append(pageRange(m.tableOffset, UInt64(m.count * MSIXCapability.tableEntrySize))) }
            if m.pbaBar == bar { out.append(pageRange(m.pbaOffset, UInt64((m.count + 63) / 64 * 8))) }
        }
        for (r, _) in traps[UInt32(bar)] ?? [] { out.append(pageRange(r.lowerBound, r.upperBound - r.lowerBound)) }
        return out.sorted { $0.lowerBound < $1.lowerBound }
    }

    open func regionInfo(_ index: UInt32) throws(VFIOError) -> VFIORegionInfo {
        lock.lock(); defer { lock.unlock() }
        if let e = extraRegions[index] { return e.info }
        guard let r = VFIOPCIRegion(rawValue: index) else { throw .invalidArgument("region index \(index)") }
        switch r {
        case .config:
            return VFIORegionInfo(index: index, flags: [.read, .write], size: UInt64(configSize))
        case .rom, .vga:
            return .empty(index)
        default:
            let n = Int(index)
            guard let b = barList[n] else { return .empty(index) }
            var info = VFIORegionInfo(index: index, flags: [.read, .write], size: b.size)
            if let mf = function as? any VFIOMappablePCIFunction, let m = mf.mmapBacking(bar: n), b.kind != .io {
                info.flags.insert(.mmap)
                info.mapping = m
                let excluded = excludedRanges(bar: n, size: b.size)
                let allowed = mf.mmapAreas(bar: n)
                if !excluded.isEmpty || allowed != nil {
                    var areas: [VFIOSparseArea] = []
                    var cursor: UInt64 = 0
                    for ex in excluded {
                        if ex.lowerBound > cursor { areas.append(VFIOSparseArea(offset: cursor, size: ex.lowerBound - cursor)) }
                        cursor = max(cursor, ex.upperBound)
                    }
                    if cursor < b.size { areas.append(VFIOSparseArea(offset: cursor, size: b.size - cursor)) }
                    if let allowed { areas = Self.intersect(areas, allowed) }
                    if areas.isEmpty {
                        info.flags.remove(.mmap)
                        info.mapping = nil
                    } else {
                        info.flags.insert(.caps)
                        info.capabilities.append(VFIOSparseMMapCapability(areas: areas).capability)
                    }
                }
            }
            return info
        }
    }

    /// The parts of `a` inside some area of `b` (both sorted or not; result sorted by offset).
    static func intersect(_ a: [VFIOSparseArea], _ b: [VFIOSparseArea]) -> [VFIOSparseArea] {
        var out: [VFIOSparseArea] = []
        for x in a {
            for y in b {
                let lo = max(x.offset, y.offset)
                let hi = min(x.offset &+ x.size, y.offset &+ y.size)
                if hi > lo { out.append(VFIOSparseArea(offset: lo, size: hi - lo)) }
            }
        }
        return out.sorted { $0.offset < $1.offset }
    }

    /// No ioeventfds by default; composing devices override.
    open func regionIOFDs(_ index: UInt32) throws(VFIOError) -> [VFIORegionIOFD] { [] }

    /// No device features by default (migration included); composing devices override.
    open func feature(flags: UInt32, data: [UInt8]) throws(VFIOError) -> [UInt8] {
        throw .notSupported("device feature \(flags & VFIODeviceFeatureFlags.featureMask)")
    }

    open func irqInfo(_ index: UInt32) throws(VFIOError) -> VFIOIRQInfo { try irqs.info(index) }

    open func setIRQs(_ request: VFIOIRQSet) throws(VFIOError) {
        if let f = function as? any VFIOIRQForwardingFunction {
            // The kernel signals the client's eventfds itself; the table only records which index is in use.
            try f.forwardIRQs(request)
            if case .eventfds = request.data { try? irqs.apply(request) }
            return
        }
        if request.index == VFIOPCIIRQ.intx.rawValue && request.action == .unmask {
            lock.lock(); setINTxStatus(false); lock.unlock()
        }
        try irqs.apply(request)
        if request.index == VFIOPCIIRQ.msix.rawValue { syncFunctionMSIX() }
    }

    /// The host side of MSI-X, as kernel vfio-pci does it on real hardware (`pci_alloc_irq_vectors` when SET_IRQS
    /// assigns MSI-X eventfds): the function itself gets MSI-X Enable, Function Mask clear and every vector
    /// unmasked while any MSI-X eventfd is assigned, and MSI-X disabled otherwise. The guest's view (Message
    /// Control, the table) stays virtual; guest masks act through SET_IRQS. Without this a function that gates
    /// its own interrupts on its MSI-X state (the emulated CXL device) never raises one: QEMU's MSI-X enable
    /// reaches only the virtual Message Control.
    func syncFunctionMSIX() {
        guard !(function is any VFIOIRQForwardingFunction), let x = msixOffset, let m = msix else { return }
        let on = irqs.isEnabled(VFIOPCIIRQ.msix.rawValue)
        let reg = MSIXCapability.messageControl
        guard let cur = try? function.configRead(x + reg.offset, width: reg.width) else { return }
        var v = MSIXCapability.Control.enable.insert(on ? 1 : 0, into: UInt64(cur))
        v = MSIXCapability.Control.functionMask.insert(0, into: v)
        if on {
            let vc = MSIXCapability.tableEntry.registers.first { $0.name == "Vector Control" }!
            for i in 0..<m.count {
                let off = m.tableOffset + UInt64(i * MSIXCapability.tableEntrySize + vc.offset)
                try? function.barWrite(m.bar, offset: off, width: vc.width, value: 0)
            }
        }
        try? function.configWrite(x + reg.offset, width: reg.width, value: UInt32(truncatingIfNeeded: v))
    }

    open func read(region: UInt32, offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        guard count >= 0 else { throw .invalidArgument("region \(region) read of \(count) bytes") }
        return try InPlaceBytes.read(count: count) { (buffer) throws(VFIOError) in try read(region: region, offset: offset, into: buffer) }
    }

    /// `VFIODirectAccessDevice`: every region is read straight into `buffer` (the per-message path of a vfio-user
    /// REGION_READ: no array). Config space under one lock; a BAR under the device lock, checked against the BAR's
    /// size, its MSI-X table, PBA, trapped ranges (`VFIORegionAccessHandler.read(offset:into:)`) and the function's
    /// registers filled in place; extra regions through their handler's `read(offset:into:)`.
    open func read(region: UInt32, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        if region == VFIOPCIRegion.config.rawValue { return try readConfig(offset, into: buffer) }
        lock.lock(); defer { lock.unlock() }
        if let h = extraHandler(region) { return try h.read(offset: offset, into: buffer) }
        let bar = try checkBAR(region, offset, buffer.count)
        try barAccess(bar: bar, offset: offset, buffer, write: false)
    }

    /// `VFIODirectAccessDevice`: config writes are split into naturally aligned accesses of at most 4 bytes, BAR writes go
    /// to the MSI-X table, trapped ranges (`VFIORegionAccessHandler.write(offset:from:)`) and the function's
    /// registers straight from `buffer`: no array.
    open func write(region: UInt32, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        guard region == VFIOPCIRegion.config.rawValue else {
            if let h = extraHandler(region) { return try h.write(offset: offset, from: buffer) }
            let bar = try checkBAR(region, offset, buffer.count)
            return try barAccess(bar: bar, offset: offset, UnsafeMutableRawBufferPointer(mutating: buffer), write: true)
        }
        try checkConfigBounds(offset, buffer.count)
        var off = offset
        var pos = 0
        while pos < buffer.count {
            let width = Self.accessWidth(off, buffer.count - pos, maxWidth: 4)
            var v: UInt32 = 0
            for i in 0..<width { v |= UInt32(buffer[pos + i]) << UInt32(8 * i) }
            try configWrite(Int(off), width: width, value: v)
            off += UInt64(width)
            pos += width
        }
    }

    /// The handler of extra region `region`, if it is one (`lock` held).
    @inline(__always)
    private func extraHandler(_ region: UInt32) -> (any VFIORegionAccessHandler)? {
        if otherExtras { return extraRegions[region]?.handler }
        let i = Int(region) - Int(VFIOPCIRegion.count)
        guard i >= 0, i < extraHandlers.count else { return nil }
        return extraHandlers[i]
    }

    /// The BAR number of `region` after checking [offset, offset + count) against its size (the size
    /// `regionInfo` reports; ROM and VGA have none). Without building the region info (sparse areas).
    private func checkBAR(_ region: UInt32, _ offset: UInt64, _ count: Int) throws(VFIOError) -> Int {
        guard let r = VFIOPCIRegion(rawValue: region), r != .config else { throw .invalidArgument("region index \(region)") }
        let bar = Int(region)
        let size: UInt64 = bar < 6 ? barList[bar]?.size ?? 0 : 0
        let (end, o) = offset.addingReportingOverflow(UInt64(truncatingIfNeeded: count))
        guard count >= 0, !o, end <= size else {
            throw .invalidArgument("region \(region) access 0x\(String(offset, radix: 16))+\(count) beyond 0x\(String(size, radix: 16))")
        }
        return bar
    }

    private func checkConfigBounds(_ offset: UInt64, _ count: Int) throws(VFIOError) {
        let (end, o) = offset.addingReportingOverflow(UInt64(truncatingIfNeeded: count))
        guard count >= 0, !o, end <= UInt64(configSize) else {
            throw .invalidArgument("region \(VFIOPCIRegion.config.rawValue) access 0x\(String(offset, radix: 16))+\(count) beyond 0x\(String(configSize, radix: 16))")
        }
    }

    /// Config bytes [offset, offset + buffer.count) into `buffer`, split into naturally aligned accesses of at most
    /// 4 bytes, under one lock.
    private func readConfig(_ offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        let count = buffer.count
        // One naturally aligned access of 1, 2 or 4 bytes (a guest's config read): no loop, one bounds check.
        if count == 4 || count == 2 || count == 1, offset & UInt64(count - 1) == 0, offset <= UInt64(configSize - count),
           let p = buffer.baseAddress {
            // Read-only virtual bytes only (IDs, capability headers): from the image, no lock, no call.
            let o = Int(offset)
            switch count {
            case 4:
                if readOnlyMask.load(fromByteOffset: o, as: UInt32.self) == ~0 {
                    p.storeBytes(of: readOnlyImage.load(fromByteOffset: o, as: UInt32.self), as: UInt32.self)
                    return
                }
            case 2:
                if readOnlyMask.load(fromByteOffset: o, as: UInt16.self) == ~0 {
                    p.storeBytes(of: readOnlyImage.load(fromByteOffset: o, as: UInt16.self), as: UInt16.self)
                    return
                }
            default:
                if readOnlyMask.load(fromByteOffset: o, as: UInt8.self) == ~0 {
                    p.storeBytes(of: readOnlyImage.load(fromByteOffset: o, as: UInt8.self), as: UInt8.self)
                    return
                }
            }
            lock.lock(); defer { lock.unlock() }
            let v = try configReadLocked(Int(offset), width: count)
            switch count {
            case 4: p.storeBytes(of: v.littleEndian, as: UInt32.self)
            case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian, as: UInt16.self)
            default: p.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
            }
            return
        }
        lock.lock(); defer { lock.unlock() }
        try checkConfigBounds(offset, count)
        var off = offset
        var pos = 0
        while pos < count {
            let width = Self.accessWidth(off, count - pos, maxWidth: 4)
            let v = try configReadLocked(Int(off), width: width)
            for i in 0..<width { buffer[pos + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) }
            off += UInt64(width)
            pos += width
        }
    }

    open func write(region: UInt32, offset: UInt64, data: [UInt8]) throws(VFIOError) {
        try InPlaceBytes.write(data) { (raw) throws(VFIOError) in try write(region: region, offset: offset, from: raw) }
    }

    open func reset() throws(VFIOError) {
        let methods = function.resetMethods
        guard let method = methods.contains(.flr) ? .flr : methods.first else { throw .notSupported("no reset method") }
        try functionLevelReset(method)
    }

    open func attachDMA(_ memory: (any VFIODMAMemory)?) {
        lock.lock(); dma = memory; lock.unlock()
    }

    /// After a reset the kernel did not run itself (a CXL Reset through the DVSEC, CXL 3.1 §9.7, which resets
    /// CXL.io as an FLR does), a kernel-owned function has lost its MSI/MSI-X programming while vfio-pci still
    /// believes its vectors set up, and its own resets (which restore that state) were bypassed. Disables and re-arms
    /// every forwarded index that has eventfds, with the client's same eventfds, so the kernel programs the function
    /// again. Returns the indices re-armed; nothing for a function whose interrupts are not forwarded.
    @discardableResult
    public func rearmForwardedIRQs() throws(VFIOError) -> [UInt32] {
        guard let f = function as? any VFIOIRQForwardingFunction else { return [] }
        var done: [UInt32] = []
        for index in [VFIOPCIIRQ.intx, .msi, .msix].map(\.rawValue) {
            let all = irqs.eventfds(index: index)
            guard let last = all.lastIndex(where: { $0 != nil }) else { continue }
            let fds = Array(all[...last])
            try f.forwardIRQs(VFIOIRQSet(index: index, start: 0, count: 0, action: .trigger, data: .none))
            try f.forwardIRQs(VFIOIRQSet(index: index, start: 0, count: UInt32(fds.count), action: .trigger, data: .eventfds(fds)))
            done.append(index)
        }
        return done
    }

    open func clientDisconnected() {
        irqs.releaseAll()
        (function as? any VFIOIRQForwardingFunction)?.releaseForwardedIRQs()
    }

    /// Client memory for DMA goes into the function's IOMMU domain when the function has one.
    open func dmaMapped(iova: UInt64, size: UInt64, address: UnsafeMutableRawPointer?, writable: Bool) throws(VFIOError) {
        guard let f = function as? any VFIODMAMappingFunction else { return }
        guard let address else {
            throw .notSupported("DMA_MAP without an fd: \(function.address) does DMA through an IOMMU and needs shared memory")
        }
        try f.mapDMA(iova: iova, size: size, address: address, writable: writable)
    }

    open func dmaUnmapped(iova: UInt64, size: UInt64) {
        (function as? any VFIODMAMappingFunction)?.unmapDMA(iova: iova, size: size)
    }

    // MARK: Reset

    /// Resets the function with `method` and returns the virtual config state to its reset image.
    open func functionLevelReset(_ method: PCIResetMethod = .flr) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        do { try function.reset(method) } catch { throw .system(errno: VFIOErrno.EIO, "reset \(method): \(error)") }
        for i in 0..<configSize where virtualMask[i] != 0 { vconfig[i] = resetImage[i] }
        resetMSIXTable()
        // The host keeps its interrupt set-up across a reset (vfio-pci restores the saved MSI-X state).
        syncFunctionMSIX()
    }

    // MARK: Config space

    /// The widest naturally aligned access (at most `maxWidth`, a power of two) at `offset` within `left` bytes.
    @inline(__always)
    static func accessWidth(_ offset: UInt64, _ left: Int, maxWidth: Int) -> Int {
        var w = maxWidth
        while w > 1 && (offset % UInt64(w) != 0 || w > left) { w /= 2 }
        return w
    }

    private func override(_ offset: Int, _ width: Int) -> (any VFIOConfigAccessHandler)? {
        guard offset < overrideSpan.upperBound && offset + width > overrideSpan.lowerBound else { return nil }
        // Indexed, not `for in`: the generic iterator allocates per element in an unoptimised build (the
        // allocation tests run in one), and this is the per-message path of an overridden config access.
        var i = 0
        while i < configOverrides.count {
            let (r, h) = configOverrides[i]
            if r.contains(offset) && r.contains(offset + width - 1) { return h }
            i += 1
        }
        return nil
    }

    private func checkConfigAccess(_ offset: Int, _ width: Int) throws(VFIOError) {
        guard width >= 1 && width <= 4, offset >= 0, offset <= configSize - width else {
            throw .invalidArgument("config access 0x\(String(offset, radix: 16))/\(width)")
        }
    }

    /// A virtualised config read (1, 2 or 4 bytes, naturally aligned).
    open func configRead(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 {
        lock.lock(); defer { lock.unlock() }
        try checkConfigAccess(offset, width)
        return try configReadLocked(offset, width: width)
    }

    /// `configRead` with `lock` held and the access checked: overrides, then the function's bytes merged with the
    /// virtual ones byte by byte (`virtualMask`).
    private func configReadLocked(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 {
        if let h = override(offset, width) { return try h.configRead(offset, width: width) }
        // One load of the mask and one of the image (both arrays have the config size, the access is checked).
        let (vm, vv) = virtualMask.withUnsafeBytes { m in
            vconfig.withUnsafeBytes { c -> (UInt32, UInt32) in
                guard offset >= 0, offset <= m.count - width, offset <= c.count - width else { return (0, 0) }
                switch width {
                case 4: return (UInt32(littleEndian: m.loadUnaligned(fromByteOffset: offset, as: UInt32.self)),
                                UInt32(littleEndian: c.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                case 2: return (UInt32(UInt16(littleEndian: m.loadUnaligned(fromByteOffset: offset, as: UInt16.self))),
                                UInt32(UInt16(littleEndian: c.loadUnaligned(fromByteOffset: offset, as: UInt16.self))))
                default: return (UInt32(m[offset]), UInt32(c[offset]))
                }
            }
        }
        let all: UInt32 = width == 4 ? ~0 : (1 << UInt32(8 * width)) - 1
        var dev: UInt32 = 0
        if vm != all {
            do { dev = try function.configRead(offset, width: width) } catch { throw .system(errno: VFIOErrno.EIO, "config read: \(error)") }
        }
        return ((dev & ~vm) | (vv & vm)) & all
    }

    /// A virtualised config write (1, 2 or 4 bytes, naturally aligned).
    open func configWrite(_ offset: Int, width: Int, value: UInt32) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        try checkConfigAccess(offset, width)
        if let h = override(offset, width) { return try h.configWrite(offset, width: width, value: value) }
        var fwd = false
        for i in 0..<width {
            let o = offset + i
            let b = UInt8(truncatingIfNeeded: value >> UInt32(8 * i))
            if virtualMask[o] != 0 { vconfig[o] = (vconfig[o] & ~writeMask[o]) | (b & writeMask[o]) }
            if forward[o] { fwd = true }
        }
        // Initiate FLR (PCIe Device Control bit 15) is performed here, not forwarded.
        if let e = expressOffset {
            let flrBit = PCIExpressCapability.initiateFLR
            let flrByte = e + PCIExpressCapability.deviceControl.offset + flrBit.lsb / 8
            if flrByte >= offset && flrByte < offset + width {
                let shift = UInt32(8 * (flrByte - offset) + flrBit.lsb % 8)
                if (value >> shift) & 1 == 1 {
                    if fwd { try? function.configWrite(offset, width: width, value: value & ~(UInt32(1) << shift)) }
                    try functionLevelReset(.flr)
                    return
                }
            }
        }
        if fwd {
            do { try function.configWrite(offset, width: width, value: value) } catch { throw .system(errno: VFIOErrno.EIO, "config write: \(error)") }
        }
        // Interrupt Disable cleared while INTx is still asserted: the interrupt goes out now (PCI 2.3 semantics).
        if offset <= PCIHeader.command.offset + 1 && offset + width > PCIHeader.command.offset,
           intxAsserted, !intxDisabled, activeInterruptMode == .intx {
            deliverINTx()
        }
    }

    // MARK: Interrupts

    private var msixControl: UInt64 {
        guard let x = msixOffset else { return 0 }
        return readLE(x + MSIXCapability.messageControl.offset, 2)
    }
    /// The guest-visible MSI-X Enable bit (virtualised; delivery follows SET_IRQS, as in vfio-pci).
    public var msixEnableBit: Bool {
        lock.lock(); defer { lock.unlock() }
        return MSIXCapability.Control.enable.extract(msixControl) == 1
    }
    /// The guest-visible MSI Enable bit.
    public var msiEnableBit: Bool {
        lock.lock(); defer { lock.unlock() }
        guard let m = msiOffset else { return false }
        return MSICapability.Control.enable.extract(readLE(m + MSICapability.messageControl.offset, 2)) == 1
    }

    /// Which index interrupts are delivered on. As in kernel vfio-pci, the mode follows SET_IRQS (the index that has
    /// eventfds: MSI-X, then MSI, else INTx), not the guest's config writes: the VMM (QEMU) emulates the MSI/MSI-X
    /// capability and table itself and expresses enables and masks through SET_IRQS.
    public var activeInterruptMode: VFIOPCIIRQ {
        if irqs.isEnabled(VFIOPCIIRQ.msix.rawValue) { return .msix }
        if irqs.isEnabled(VFIOPCIIRQ.msi.rawValue) { return .msi }
        return .intx
    }

    /// Delivers an interrupt the function raised (MSI/MSI-X vector, or 0 for INTx). Masked vectors (SET_IRQS mask)
    /// become pending and are delivered on unmask; the MSI-X PBA reports them.
    public func raise(vector: Int) {
        switch activeInterruptMode {
        case .msix: irqs.trigger(index: VFIOPCIIRQ.msix.rawValue, vector: vector)
        case .msi: irqs.trigger(index: VFIOPCIIRQ.msi.rawValue, vector: vector)
        default:
            lock.lock()
            setINTxStatus(true)
            let disabled = intxDisabled
            lock.unlock()
            guard !disabled else { return }
            deliverINTx()
        }
    }

    /// Interrupt Status (Status bit 3) is emulated: set while INTx is asserted, so PCI 2.3 INTx masking drivers
    /// (uio_pci_generic, vfio-pci in a nested guest) see their interrupt. It is cleared when the VMM unmasks INTx
    /// (its EOI), i.e. INTx behaves as asserted until acknowledged.
    private static let interruptStatus = PCIHeader.Status.interruptStatus

    private var intxDisabled: Bool {
        PCIHeader.Command.interruptDisable.extract(readLE(PCIHeader.command.offset, 2)) == 1
    }

    private func setINTxStatus(_ on: Bool) {
        let byte = PCIHeader.status.offset + Self.interruptStatus.lsb / 8
        let bit = UInt8(1) << UInt8(Self.interruptStatus.lsb % 8)
        if on { vconfig[byte] |= bit } else { vconfig[byte] &= ~bit }
    }

    private var intxAsserted: Bool {
        let byte = PCIHeader.status.offset + Self.interruptStatus.lsb / 8
        return vconfig[byte] & (UInt8(1) << UInt8(Self.interruptStatus.lsb % 8)) != 0
    }

    private func deliverINTx() {
        // INTx is automasked (VFIO_IRQ_INFO_AUTOMASKED): the client unmasks after handling.
        if irqs.trigger(index: VFIOPCIIRQ.intx.rawValue, vector: 0) {
            try? irqs.apply(VFIOIRQSet(index: VFIOPCIIRQ.intx.rawValue, start: 0, count: 1, action: .mask, data: .none))
        }
    }

    // MARK: BAR access

    private enum Segment { case table(UInt64), pba(UInt64), trap(any VFIORegionAccessHandler), device }

    private func classify(bar: Int, _ off: UInt64) -> (Segment, UInt64) {
        // Indexed loops (see `override`): no iterator on the per-message path.
        let trapped = traps[UInt32(bar)] ?? []
        var i = 0
        while i < trapped.count {
            let (r, h) = trapped[i]
            if r.contains(off) { return (.trap(h), r.upperBound) }
            i += 1
        }
        if let m = msix {
            let tlen = UInt64(m.count * MSIXCapability.tableEntrySize)
            if m.bar == bar, off >= m.tableOffset, off < m.tableOffset + tlen { return (.table(off - m.tableOffset), m.tableOffset + tlen) }
            let plen = UInt64((m.count + 63) / 64 * 8)
            if m.pbaBar == bar, off >= m.pbaOffset, off < m.pbaOffset + plen { return (.pba(off - m.pbaOffset), m.pbaOffset + plen) }
        }
        // The next special range starting after `off` bounds this device segment.
        var end = UInt64.max
        i = 0
        while i < trapped.count {
            let lower = trapped[i].0.lowerBound
            if lower > off { end = min(end, lower) }
            i += 1
        }
        if let m = msix {
            if m.bar == bar && m.tableOffset > off { end = min(end, m.tableOffset) }
            if m.pbaBar == bar && m.pbaOffset > off { end = min(end, m.pbaOffset) }
        }
        return (.device, end)
    }

    /// BAR `bar` [offset, offset + buffer.count) in place: a read fills `buffer`, a write takes it (`buffer` is then
    /// only read). The range is split at the MSI-X table, the PBA and trapped ranges; the function's registers get
    /// naturally aligned accesses of at most 8 bytes. `lock` is held.
    private func barAccess(bar: Int, offset: UInt64, _ buffer: UnsafeMutableRawBufferPointer, write: Bool) throws(VFIOError) {
        guard let base = buffer.baseAddress else { return }
        var off = offset
        let end = offset + UInt64(buffer.count)
        while off < end {
            let (seg, segEnd) = classify(bar: bar, off)
            let n = Int(min(end, segEnd) - off)
            let chunk = base + Int(off - offset)
            switch seg {
            case .trap(let h):
                if write { try h.write(offset: off, from: UnsafeRawBufferPointer(start: chunk, count: n)) }
                else { try h.read(offset: off, into: UnsafeMutableRawBufferPointer(start: chunk, count: n)) }
            case .table(let t):
                msixTable.withUnsafeMutableBytes { table in
                    guard let tb = table.baseAddress, Int(t) + n <= table.count else { return }
                    if write { (tb + Int(t)).copyMemory(from: chunk, byteCount: n) } else { chunk.copyMemory(from: tb + Int(t), byteCount: n) }
                }
            case .pba(let p):
                guard !write else { break }
                for i in 0..<n {
                    var byte: UInt8 = 0
                    for bit in 0..<8 {
                        let v = (Int(p) + i) * 8 + bit
                        if irqs.isPending(index: VFIOPCIIRQ.msix.rawValue, vector: v) { byte |= 1 << UInt8(bit) }
                    }
                    chunk.storeBytes(of: byte, toByteOffset: i, as: UInt8.self)
                }
            case .device:
                var o = off
                var p = 0
                while p < n {
                    let w = Self.accessWidth(o, n - p, maxWidth: 8)
                    do {
                        if write {
                            var v: UInt64 = 0
                            for i in 0..<w { v |= UInt64(chunk.load(fromByteOffset: p + i, as: UInt8.self)) << UInt64(8 * i) }
                            try function.barWrite(bar, offset: o, width: w, value: v)
                        } else {
                            let v = try function.barRead(bar, offset: o, width: w)
                            for i in 0..<w { chunk.storeBytes(of: UInt8(truncatingIfNeeded: v >> UInt64(8 * i)), toByteOffset: p + i, as: UInt8.self) }
                        }
                    } catch {
                        throw .system(errno: VFIOErrno.EIO, "BAR\(bar) \(write ? "write" : "read") 0x\(String(o, radix: 16))/\(w): \(error)")
                    }
                    o += UInt64(w)
                    p += w
                }
            }
            off += UInt64(n)
        }
    }
}
