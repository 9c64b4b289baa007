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
///
/// This file holds the device's state, its construction and the `VFIODevice` entry points (the `open` methods a
/// composing device overrides, which must be declared in the class body); the work is in one file per concern:
/// `PCIDeviceConfigSpace.swift` (config virtualisation, BAR sizing), `PCIDeviceRegions.swift` (region dispatch,
/// sparse mmap, BAR access split at the MSI-X table, PBA and traps), `PCIDeviceInterrupts.swift` (MSI, MSI-X,
/// INTx). The state they share is module-internal here, guarded by `lock`.
open class VFIOPCIDevice: VFIODirectAccessDevice, @unchecked Sendable {
    public let function: any PCIFunction
    public let irqs: VFIOIRQTable
    /// Serialises config virtualisation state.
    public let lock = VFIORecursiveLock()

    let configSize: Int
    // The state below is guarded by `lock`: dynamic exclusivity checks are off for what a config access touches
    // (they cost more than the access itself on the per-message path).
    /// Virtual config image; bytes selected by `virtualMask` are read from here.
    @exclusivity(unchecked) var vconfig: [UInt8]
    /// Per byte: bits read from `vconfig` instead of the function.
    @exclusivity(unchecked) var virtualMask: [UInt8]
    /// Per byte: bits of `vconfig` a guest write may change.
    @exclusivity(unchecked) var writeMask: [UInt8]
    /// Per byte: forward writes to the function too.
    @exclusivity(unchecked) var forward: [Bool]
    var resetImage: [UInt8]
    let barList: [BARDescription?]

    /// Per config byte, 0xFF when it is virtual and read-only (`virtualiseReadOnly`) and no override covers it;
    /// `readOnlyImage` holds those bytes' values. Both are fixed at init (an override only clears bytes of the
    /// mask), so an aligned read of such bytes takes neither the lock nor the function: a guest's probe of the IDs
    /// and capability walk, and the benchmark's config read.
    let readOnlyMask: UnsafeMutableRawPointer
    let readOnlyImage: UnsafeMutableRawPointer
    /// Offset and width of every capability header (ID and next pointer; the whole header of an extended one).
    var capabilityHeaders: [(offset: Int, width: Int)] = []
    var msiOffset: Int?
    var msiLayout: RegisterBlockLayout?
    var msixOffset: Int?
    var msix: (bar: Int, tableOffset: UInt64, pbaBar: Int, pbaOffset: UInt64, count: Int)?
    var msixTable: [UInt8] = []
    var expressOffset: Int?

    @exclusivity(unchecked) var traps: [UInt32: [(Range<UInt64>, any VFIORegionAccessHandler)]] = [:]
    @exclusivity(unchecked) var configOverrides: [(Range<Int>, any VFIOConfigAccessHandler)] = []
    /// The span of all `configOverrides` (empty: none): an access outside it skips the list.
    @exclusivity(unchecked) var overrideSpan: Range<Int> = 0..<0
    @exclusivity(unchecked) var extraRegions: [UInt32: VFIOExtraRegion] = [:]
    /// The handlers of `extraRegions` by index - `VFIOPCIRegion.count` (indices up to 64 past it), looked up on
    /// every access without hashing; `otherExtras`: some extra region lies outside that (then the dictionary).
    @exclusivity(unchecked) var extraHandlers: [(any VFIORegionAccessHandler)?] = []
    @exclusivity(unchecked) var otherExtras = false
    /// Device-info capabilities reported with `VFIO_DEVICE_FLAGS_CAPS` (for composing devices).
    public var deviceInfoCapabilities: [VFIOCapability] {
        get { lock.lock(); defer { lock.unlock() }; return _deviceInfoCaps }
        set { lock.lock(); _deviceInfoCaps = newValue; lock.unlock() }
    }
    var _deviceInfoCaps: [VFIOCapability] = []
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

    // MARK: VFIODevice

    open func deviceInfo() -> VFIODeviceInfo {
        lock.lock(); defer { lock.unlock() }
        let n = max(VFIOPCIRegion.count, (extraRegions.keys.max() ?? 0) + 1)
        var flags: VFIODeviceFlags = [.pci]
        if !function.resetMethods.isEmpty { flags.insert(.reset) }
        return VFIODeviceInfo(flags: flags, numRegions: n, numIRQs: VFIOPCIIRQ.count, capabilities: _deviceInfoCaps)
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
            return barRegionInfo(index)
        }
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

    /// A virtualised config read (1, 2 or 4 bytes, naturally aligned).
    open func configRead(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 {
        lock.lock(); defer { lock.unlock() }
        try checkConfigAccess(offset, width)
        return try configReadLocked(offset, width: width)
    }

    /// A virtualised config write (1, 2 or 4 bytes, naturally aligned).
    open func configWrite(_ offset: Int, width: Int, value: UInt32) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        try checkConfigAccess(offset, width)
        try configWriteLocked(offset, width: width, value: value)
    }
}
