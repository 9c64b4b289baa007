import Foundation
import PCI

/// A PCI function the kernel's vfio-pci owns, as a `PCIFunction`, so every tool written against `PCIFunction`
/// (decoders, the state engine, `VFIOPCIDevice`/vfio-cxl for serving) works on real hardware through VFIO:
///
/// - config space: region 7 by pread/pwrite, one access of the access's width (the kernel virtualises parts of
///   it as vfio-pci does: BARs, Command's INTx disable, MSI/MSI-X);
/// - BARs: regions 0-5, through an mmap of each sparse area (mapped on first use) and pread/pwrite elsewhere
///   (the MSI-X table, areas the kernel keeps trapped); kind and prefetchability from the BAR registers, the size
///   from the region info;
/// - resets: `.flr` is VFIO_DEVICE_RESET (the kernel's chosen method: FLR when the function has it, else PM or a
///   slot/bus reset it may do alone), `.bus` is VFIO_DEVICE_PCI_HOT_RESET (a secondary bus reset), offered when
///   GET_PCI_HOT_RESET_INFO answers;
/// - interrupts: SET_IRQS with the client's eventfds (`VFIOIRQForwardingFunction`);
/// - DMA: client memory into the IOMMU at the client's IOVA (`VFIODMAMappingFunction`).
public final class VFIOKernelPCIFunction: VFIOMappablePCIFunction, VFIOIRQForwardingFunction, VFIODMAMappingFunction, @unchecked Sendable {
    public let device: VFIOKernelDevice
    public let address: String
    public let configSize: Int
    public let bars: [BARDescription]
    public let resetMethods: [PCIResetMethod]
    private let config: VFIOKernelRegion
    /// Extended capabilities the kernel's vfio-pci hides from user space (offsets), e.g. every DVSEC before Linux 6.2
    /// (its `pci_ext_cap_length` has no DVSEC entry, so `vfio_ecap_init` drops them from the chain).
    public var hiddenByVFIO: [Int] { hiddenRanges.map(\.lowerBound) }
    /// When vfio-pci hides capabilities: the sysfs `config` file, from which extended config space is read (so the
    /// chain is whole) and to which writes inside the hidden capabilities go. Needs root, as sysfs config does.
    private let sysfsConfigFD: Int32?
    /// Each hidden capability, from its header to the next capability in the raw chain (or its DVSEC Length).
    private let hiddenRanges: [Range<Int>]
    private var barRegions: [Int: VFIOKernelRegion] = [:]
    /// mmaps of BAR areas: bar -> [(area, base)].
    private var mappings: [Int: [(VFIOSparseArea, UnsafeMutableRawPointer)]] = [:]
    private let lock = NSLock()
    /// Memory Space Enable in the kernel's view of Command. vfio-pci makes a BAR mmap fault (SIGBUS) while it is
    /// clear, so BAR accesses then go through pread/pwrite, which fail with EIO instead.
    private var memoryEnabled = true
    /// Keep Memory Space Enable set whatever Command a writer asks for: for serving, where the client's Command is
    /// virtual (`VFIOPCIDevice`) and this process's own register accesses (vfio-cxl's host side, as the kernel's
    /// ioremap does) need the BARs decoded.
    public var keepMemoryEnabled = false {
        didSet { if keepMemoryEnabled { try? enableMemory() } }
    }

    /// Opens `address` (see `VFIOKernelDevice.open`).
    public convenience init(address: String, options: VFIOKernelOpenOptions = VFIOKernelOpenOptions(),
                            system: any VFIOKernelSystem = LinuxVFIOSystem()) throws(VFIOKernelError) {
        try self.init(device: try VFIOKernelDevice.open(address, options: options, system: system))
    }

    public init(device: VFIOKernelDevice) throws(VFIOKernelError) {
        self.device = device
        address = "vfio:" + device.address.description
        guard device.info.flags.contains(.pci) else {
            throw .invalid("\(device.address): not a vfio-pci device (DEVICE_GET_INFO flags 0x\(String(device.info.flags.rawValue, radix: 16)))")
        }
        guard device.info.numRegions > VFIOPCIRegion.config.rawValue else {
            throw .invalid("\(device.address): \(device.info.numRegions) regions, no config region")
        }
        let cfgRegion = try device.regionInfo(VFIOPCIRegion.config.rawValue)
        config = cfgRegion
        guard cfgRegion.info.size >= 64 else { throw .invalid("\(device.address): config region of \(cfgRegion.info.size) bytes") }
        configSize = cfgRegion.info.size >= UInt64(pcieConfigSpaceSize) ? pcieConfigSpaceSize : pciConfigSpaceSize
        func cfg32(_ off: Int) throws(VFIOKernelError) -> UInt64 {
            let b = try device.read(cfgRegion, offset: UInt64(off), count: 4)
            return LittleEndian.load(b)
        }
        var regions: [Int: VFIOKernelRegion] = [:]
        bars = try BARDescription.list(size: { i throws(VFIOKernelError) in
            let r = try device.regionInfo(UInt32(i))
            if r.info.size > 0 { regions[i] = r }
            return r.info.size
        }, register: { i throws(VFIOKernelError) in try cfg32(PCIHeader.bar(i).offset) })
        barRegions = regions
        // Extended capabilities vfio-pci hides: walk its config space and the raw one in sysfs (one read each, the
        // one capability walker) and compare the chains.
        var ranges: [Range<Int>] = [], rawFD: Int32? = nil
        let configSize = Int(min(cfgRegion.info.size, UInt64(pcieConfigSpaceSize)))
        if configSize > pciConfigSpaceSize, case .success(let fd) = device.system.open(device.sysfsPath + "/config") {
            let shown = (try? device.read(cfgRegion, offset: 0, count: configSize))
                .map { Set(CapabilityList(walking: ConfigSpace(bytes: $0)).extended.map(\.offset)) } ?? []
            if case .success(let bytes) = device.system.pread(fd, count: configSize, offset: 0) {
                let raw = ConfigSpace(bytes: bytes)
                let chain = CapabilityList(walking: raw).extended
                let starts = chain.map(\.offset).sorted()
                for cap in chain where !shown.contains(cap.offset) {
                    var end = starts.first(where: { $0 > cap.offset }) ?? configSize
                    // A DVSEC knows its own length (PCIe 6.0 §7.9.6.2, DVSEC Header 1 DVSEC Length).
                    if cap.id == ExtendedCapabilityID.designatedVendorSpecific.rawValue,
                       let h1 = raw.read32(cap.offset + DVSECHeader.header1.offset) {
                        let length = Int(DVSECHeader.length.extract(UInt64(h1)))
                        if length >= DVSECHeader.minimumLength { end = min(end, cap.offset + length) }
                    }
                    ranges.append(cap.offset..<end)
                }
            }
            if ranges.isEmpty { device.system.close(fd) } else { rawFD = fd }
        }
        hiddenRanges = ranges
        sysfsConfigFD = rawFD
        memoryEnabled = (try? device.read(cfgRegion, offset: UInt64(PCIHeader.command.offset), count: 2)).map { LittleEndian.load($0) & Self.memorySpaceEnable != 0 } ?? true

        var methods: [PCIResetMethod] = []
        if device.info.flags.contains(.reset) { methods.append(.flr) }
        if (try? device.hotResetInfo()) != nil { methods.append(.bus) }
        resetMethods = methods
    }

    deinit {
        if let fd = sysfsConfigFD { device.system.close(fd) }
        for (_, list) in mappings { for (a, p) in list { device.system.munmap(p, size: Int(a.size)) } }
    }

    private func pcieError(_ e: VFIOKernelError) -> PCIError { .io("\(address): \(e)") }


    // MARK: Config

    private func checkConfig(_ offset: Int, _ width: Int) throws(PCIError) {
        guard [1, 2, 4].contains(width) else { throw .badAccess("config access width \(width)") }
        guard offset >= 0, offset + width <= configSize else { throw .outOfRange("config offset 0x\(String(offset, radix: 16)) width \(width) (config space \(configSize) bytes)") }
        guard offset % width == 0 else { throw .badAccess("unaligned config access at 0x\(String(offset, radix: 16)) width \(width)") }
    }

    public func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        try checkConfig(offset, width)
        if let fd = sysfsConfigFD, offset >= pciConfigSpaceSize {
            switch device.system.pread(fd, count: width, offset: UInt64(offset)) {
            case .success(let b): return UInt32(truncatingIfNeeded: LittleEndian.load(b))
            case .failure(let e): throw .io("\(address): sysfs config read 0x\(String(offset, radix: 16)): \(e.text)")
            }
        }
        do { return UInt32(truncatingIfNeeded: LittleEndian.load(try device.read(config, offset: UInt64(offset), count: width))) } catch { throw pcieError(error) }
    }

    private static let memorySpaceEnable = PCIHeader.Command.memorySpaceEnable.mask

    /// Re-reads Memory Space Enable from the kernel's Command.
    private func refreshMemoryEnabled() {
        let on = (try? device.read(config, offset: UInt64(PCIHeader.command.offset), count: 2)).map { LittleEndian.load($0) & Self.memorySpaceEnable != 0 } ?? false
        lock.lock(); memoryEnabled = on; lock.unlock()
    }

    private func enableMemory() throws(PCIError) {
        let cmd = UInt64(try configRead(PCIHeader.command.offset, width: 2))
        if cmd & Self.memorySpaceEnable == 0 { try configWrite(PCIHeader.command.offset, width: 2, value: UInt32(cmd | Self.memorySpaceEnable)) }
        refreshMemoryEnabled()
    }

    public func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        try checkConfig(offset, width)
        let command = PCIHeader.command.offset
        if offset <= command && command < offset + width {
            var v = value
            if keepMemoryEnabled { v |= UInt32(Self.memorySpaceEnable) << UInt32(8 * (command - offset)) }
            do { try device.write(config, offset: UInt64(offset), data: LittleEndian.bytes(UInt64(v), width: width)) } catch { throw pcieError(error) }
            refreshMemoryEnabled()
            return
        }
        if let fd = sysfsConfigFD, hiddenRanges.contains(where: { $0.contains(offset) }) {
            if case .failure(let e) = device.system.pwrite(fd, LittleEndian.bytes(UInt64(value), width: width), offset: UInt64(offset)) {
                throw .io("\(address): sysfs config write 0x\(String(offset, radix: 16)): \(e.text)")
            }
            return
        }
        do { try device.write(config, offset: UInt64(offset), data: LittleEndian.bytes(UInt64(value), width: width)) } catch { throw pcieError(error) }
    }

    // MARK: BARs

    private func checkBAR(_ bar: Int, _ offset: UInt64, _ width: Int) throws(PCIError) -> VFIOKernelRegion {
        guard let r = barRegions[bar] else { throw .noSuchBAR(bar) }
        guard [1, 2, 4, 8].contains(width) else { throw .badAccess("BAR\(bar) access width \(width)") }
        guard offset < r.info.size, UInt64(width) <= r.info.size - offset else {
            throw .outOfRange("BAR\(bar) offset 0x\(String(offset, radix: 16)) width \(width) (BAR size 0x\(String(r.info.size, radix: 16)))")
        }
        return r
    }

    /// The mapped address of [offset, offset+width) in BAR `bar`, mapping its area on first use; nil when that
    /// range is not in an mmappable area (or the mmap failed: the access then goes through pread/pwrite).
    private func mapped(_ bar: Int, _ r: VFIOKernelRegion, _ offset: UInt64, _ width: Int) -> UnsafeMutableRawPointer? {
        guard bars.first(where: { $0.index == bar })?.kind != .io, offset % UInt64(width) == 0 else { return nil }
        lock.lock(); defer { lock.unlock() }
        guard memoryEnabled else { return nil }
        if let (a, p) = mappings[bar]?.first(where: { offset >= $0.0.offset && offset + UInt64(width) <= $0.0.offset + $0.0.size }) {
            return p + Int(offset - a.offset)
        }
        guard let area = r.mmapAreas.first(where: { offset >= $0.offset && offset + UInt64(width) <= $0.offset + $0.size }),
              area.size <= UInt64(Int.max), let p = try? device.mmap(r, offset: area.offset, size: Int(area.size)) else { return nil }
        mappings[bar, default: []].append((area, p))
        return p + Int(offset - area.offset)
    }

    public func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        let r = try checkBAR(bar, offset, width)
        if let p = mapped(bar, r, offset, width) {
            switch width {
            case 1: return UInt64(p.load(as: UInt8.self))
            case 2: return UInt64(p.load(as: UInt16.self))
            case 4: return UInt64(p.load(as: UInt32.self))
            default: return p.load(as: UInt64.self)
            }
        }
        do { return LittleEndian.load(try device.read(r, offset: offset, count: width)) } catch { throw pcieError(error) }
    }

    public func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        let r = try checkBAR(bar, offset, width)
        if let p = mapped(bar, r, offset, width) {
            switch width {
            case 1: p.storeBytes(of: UInt8(truncatingIfNeeded: value), as: UInt8.self)
            case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: value), as: UInt16.self)
            case 4: p.storeBytes(of: UInt32(truncatingIfNeeded: value), as: UInt32.self)
            default: p.storeBytes(of: value, as: UInt64.self)
            }
            return
        }
        do { try device.write(r, offset: offset, data: LittleEndian.bytes(value, width: width)) } catch { throw pcieError(error) }
    }

    // MARK: VFIOMappablePCIFunction (serving: the client maps the device fd itself)

    public func mmapBacking(bar: Int) -> VFIORegionMapping? { barRegions[bar]?.info.mapping }
    public func mmapAreas(bar: Int) -> [VFIOSparseArea]? { barRegions[bar]?.mmapAreas }

    // MARK: Resets

    public func reset(_ method: PCIResetMethod) throws(PCIError) {
        guard resetMethods.contains(method) else { throw .resetUnsupported(method.rawValue) }
        guard method == .flr || method == .bus else { throw .resetUnsupported(method.rawValue) }
        defer { refreshMemoryEnabled() }
        do throws(VFIOKernelError) {
            if method == .flr { try device.reset() } else { try device.hotReset() }
        } catch { throw pcieError(error) }
        if keepMemoryEnabled { try enableMemory() }
    }

    // MARK: Interrupts

    public func forwardIRQs(_ request: VFIOIRQSet) throws(VFIOError) {
        let data: VFIOKernelIRQData
        switch request.data {
        case .none: data = .none
        case .bool(let b): data = .bool(b)
        case .eventfds(let fds) where fds.isEmpty:
            // De-assigning takes one -1 per vector: `count` (a peer's, up to 2^32-1) is held to the index's vectors
            // first, as the kernel holds it (vfio_set_irqs_validate_and_prepare), before it sizes anything.
            let vectors: UInt32
            do { vectors = try device.irqInfo(request.index).count } catch { throw error.vfioError }
            guard UInt64(request.start) + UInt64(request.count) <= UInt64(vectors) else {
                throw .invalidArgument("SET_IRQS index \(request.index): vectors \(request.start)+\(request.count) exceed \(vectors)")
            }
            data = .eventfds(Array(repeating: -1, count: Int(request.count)))
        case .eventfds(let fds):
            data = .eventfds(fds.map { $0?.fd ?? -1 })
        }
        do {
            try device.setIRQs(index: request.index, start: request.start, count: request.count, action: request.action, data: data)
        } catch { throw error.vfioError }
    }

    public func releaseForwardedIRQs() {
        for i in [VFIOPCIIRQ.intx, .msi, .msix] where i.rawValue < device.info.numIRQs {
            try? device.disableIRQs(index: i.rawValue)
        }
    }

    // MARK: DMA

    public func mapDMA(iova: UInt64, size: UInt64, address: UnsafeMutableRawPointer, writable: Bool) throws(VFIOError) {
        do { try device.mapDMA(iova: iova, size: size, vaddr: UInt64(UInt(bitPattern: address)), writable: writable) } catch { throw error.vfioError }
    }

    public func unmapDMA(iova: UInt64, size: UInt64) { _ = try? device.unmapDMA(iova: iova, size: size) }
}
