import Foundation
import PCI
import CXL
import VFIO
import VFIOCXL

/// Sits between `cxlkit serve`'s vfio-user server and the served device, forwarding
/// every call unchanged, and notes what the control socket reports: whether a client
/// is attached (the transport attaches DMA on connect, detaches on disconnect) and
/// the resets the client asked for: VFIO_USER_DEVICE_RESET, an Initiate Function Level
/// Reset write to the PCI Express Device Control register (PCIe 6.0 §7.5.3.4), an
/// Initiate CXL Reset write to DVSEC CXL Control2 (CXL 3.1 §8.1.3.4).
public final class ServedDeviceMonitor: VFIODevice, @unchecked Sendable {
    public let inner: any VFIODevice
    private let lock = NSLock()
    private var _attached = false
    private var _resets: [String: Int] = [:]
    /// Config offsets (the client's view) of Device Control and DVSEC Control2.
    private let deviceControl: Int?
    private let control2: Int?

    public init(_ inner: any VFIODevice) {
        self.inner = inner
        let function = ServedFunction(device: inner, name: "served")
        let config = try? function.configSnapshot()
        let caps = config.map { CapabilityList(walking: $0) }
        deviceControl = caps?.standard(.pciExpress).map { $0.offset + PCIExpressCapability.deviceControl.offset }
        control2 = config.flatMap { c in
            caps?.dvsecs(in: c).first { $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.device.rawValue }
                .map { $0.offset + CXLDeviceDVSEC.control2.offset }
        }
    }

    public var clientAttached: Bool { lock.lock(); defer { lock.unlock() }; return _attached }
    public var resets: [String: Int] { lock.lock(); defer { lock.unlock() }; return _resets }

    /// vfio-cxl gates its device-memory region (no mmap offered) from a reset until
    /// decoder 0 is committed again (v4: `hdm_valid` false); nil when the device is not vfio-cxl.
    public var memoryGated: Bool? {
        if let v4 = inner as? VFIOCXLv4Device { return !v4.hdmValid }
        guard inner is VFIOCXLDevice, let info = try? inner.regionInfo(VFIOCXLUAPI.memoryRegionIndex) else { return nil }
        return !info.flags.contains(.mmap)
    }

    private func count(_ method: String) { lock.lock(); _resets[method, default: 0] += 1; lock.unlock() }

    /// Whether a config write of `data` at `offset` sets bit `mask` of the 16-bit register at `register`.
    static func sets(_ data: [UInt8], at offset: UInt64, register: Int?, mask: UInt64) -> Bool {
        guard let register else { return false }
        for i in 0..<2 {
            let byte = mask >> UInt64(8 * i) & 0xFF
            guard byte != 0 else { continue }
            let at = Int64(register + i) - Int64(offset)
            if at >= 0, at < Int64(data.count), UInt64(data[Int(at)]) & byte != 0 { return true }
        }
        return false
    }

    public func deviceInfo() -> VFIODeviceInfo { inner.deviceInfo() }
    public func regionInfo(_ index: UInt32) throws(VFIOError) -> VFIORegionInfo { try inner.regionInfo(index) }
    public func regionIOFDs(_ index: UInt32) throws(VFIOError) -> [VFIORegionIOFD] { try inner.regionIOFDs(index) }
    public func irqInfo(_ index: UInt32) throws(VFIOError) -> VFIOIRQInfo { try inner.irqInfo(index) }
    public func setIRQs(_ request: VFIOIRQSet) throws(VFIOError) { try inner.setIRQs(request) }
    public func read(region: UInt32, offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        try inner.read(region: region, offset: offset, count: count)
    }
    public func write(region: UInt32, offset: UInt64, data: [UInt8]) throws(VFIOError) {
        try inner.write(region: region, offset: offset, data: data)
        guard region == VFIOPCIRegion.config.rawValue else { return }
        if Self.sets(data, at: offset, register: deviceControl, mask: PCIExpressCapability.initiateFLR.mask) {
            count("flr")
        }
        if Self.sets(data, at: offset, register: control2, mask: CXLDeviceDVSEC.Control2.initiateCXLReset.mask) {
            count("cxl")
        }
    }
    public func reset() throws(VFIOError) {
        try inner.reset()
        count("device_reset")
    }
    public func feature(flags: UInt32, data: [UInt8]) throws(VFIOError) -> [UInt8] { try inner.feature(flags: flags, data: data) }
    public func attachDMA(_ memory: (any VFIODMAMemory)?) {
        lock.lock(); _attached = memory != nil; lock.unlock()
        inner.attachDMA(memory)
    }
    public func clientDisconnected() {
        lock.lock(); _attached = false; lock.unlock()
        inner.clientDisconnected()
    }
}

/// A BAR range the control socket may read.
public struct ControlBARWindow: Sendable, Hashable {
    public var bar: Int
    public var range: Range<UInt64>
    public init(bar: Int, range: Range<UInt64>) { self.bar = bar; self.range = range }

    /// The CXL component register blocks `function`'s Register Locator names (CXL 3.1 §8.1.9, each 64 KiB,
    /// §8.2.3): the only BAR registers the CXL readers (decode, save, check, metrics) touch. Empty without any.
    public static func componentBlocks(of function: any PCIFunction) -> [ControlBARWindow] {
        guard let config = try? function.configSnapshot(), let map = try? CXLDeviceMap(config: config) else { return [] }
        return map.registerBlocks.compactMap { e in
            guard e.identifier == RegisterLocatorDVSEC.BlockIdentifier.componentRegisters.rawValue, (0..<6).contains(e.bir) else { return nil }
            let (end, o) = e.offset.addingReportingOverflow(UInt64(ComponentRegisterBlock.size))
            return o ? nil : ControlBARWindow(bar: e.bir, range: e.offset..<end)
        }
    }
}

/// A BAR range whose registers a client reads through another region instead: v4's CXL_COMP_REGS holds the HDM
/// Decoder Capability block that the component BAR reads as all-ones (its region capability names the BAR and
/// offset, `VFIOCXLCompRegsCapability`).
public struct ServedRegionAlias: Sendable, Hashable {
    public var bar: Int
    public var range: Range<UInt64>
    public var region: UInt32

    /// The aliases `device` advertises: each region of the vfio-cxl type whose CXL_COMP_REGS capability places it in
    /// a BAR (v4; v2's COMP_REGS region has no such capability and its BAR shows the decoders).
    public static func advertised(by device: any VFIODevice) -> [ServedRegionAlias] {
        let info = device.deviceInfo()
        var out: [ServedRegionAlias] = []
        for i in VFIOPCIRegion.count..<min(info.numRegions, 64) {
            guard let r = try? device.regionInfo(i),
                  let t = r.capabilities.first(where: { $0.id == VFIORegionCapabilityID.type }).flatMap({ try? VFIORegionTypeCapability(parsing: $0) }),
                  t.type == VFIOCXLUAPI.regionType, t.subtype == VFIOCXLUAPI.componentRegistersSubtype,
                  let c = r.capabilities.first(where: { $0.id == VFIOCXLUAPI.compRegsCapabilityID }),
                  let g = try? VFIOCXLCompRegsCapability(parsing: c), g.bar < 6 else { continue }
            let (end, o) = g.offset.addingReportingOverflow(r.size)
            if !o { out.append(ServedRegionAlias(bar: Int(g.bar), range: g.offset..<end, region: i)) }
        }
        return out
    }
}

/// The served device as a client sees it, read-only, as a `PCIFunction`: config space
/// through the config region, BARs through regions 0-5, in process (no vfio-user
/// message, so the attached client is not disturbed). Writes and resets are refused:
/// the control socket only looks.
public final class ServedFunction: PCIFunction, @unchecked Sendable {
    public let device: any VFIODevice
    public let address: String
    public let configSize: Int
    public let bars: [BARDescription]
    /// The BAR ranges reads may touch; nil: all of every BAR (the emulator, whose registers have no read side
    /// effects). A real device's BARs hold device-specific MMIO where a read can clear a status or pop a FIFO under
    /// the VM's driver, so `serve --device` allows only the CXL component register blocks (`componentBlocks`).
    public var readableBARs: [ControlBARWindow]?
    /// BAR ranges read through another region, as a client of the contract reads them (`ServedRegionAlias`).
    public let aliases: [ServedRegionAlias]

    public init(device: any VFIODevice, name: String, readableBARs: [ControlBARWindow]? = nil) {
        self.device = device
        self.readableBARs = readableBARs
        aliases = ServedRegionAlias.advertised(by: device)
        address = name
        configSize = Int((try? device.regionInfo(VFIOPCIRegion.config.rawValue).size) ?? UInt64(pcieConfigSpaceSize))
        bars = BARDescription.list(size: { i in (try? device.regionInfo(UInt32(i)).size) ?? 0 }, register: { i in
            (try? device.read(region: VFIOPCIRegion.config.rawValue, offset: UInt64(PCIHeader.bar(i).offset), count: 4))
                .map(LittleEndian.load) ?? 0
        })
    }


    public func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        guard [1, 2, 4].contains(width), offset >= 0, offset % width == 0, offset + width <= configSize else {
            throw .outOfRange("config \(offset)+\(width)")
        }
        do { return UInt32(truncatingIfNeeded: LittleEndian.load(try device.read(region: VFIOPCIRegion.config.rawValue, offset: UInt64(offset), count: width))) } catch {
            throw .io("config read at 0x\(String(offset, radix: 16)): \(error)")
        }
    }
    public func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        throw .badAccess("read-only view of the served device: config write at 0x\(String(offset, radix: 16)) refused")
    }
    public func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        guard let b = bars.first(where: { $0.index == bar }) else { throw .noSuchBAR(bar) }
        guard [1, 2, 4, 8].contains(width), offset % UInt64(width) == 0, offset <= b.size, UInt64(width) <= b.size - offset else {
            throw .outOfRange("BAR \(bar) \(offset)+\(width)")
        }
        if let windows = readableBARs, !windows.contains(where: { $0.bar == bar && $0.range.contains(offset) && offset + UInt64(width) <= $0.range.upperBound }) {
            throw .badAccess("BAR \(bar) at 0x\(String(offset, radix: 16)) is outside the CXL component register block(s): a served real device's other MMIO is not read (a read can have side effects under the VM's driver)")
        }
        if let a = aliases.first(where: { $0.bar == bar && $0.range.contains(offset) }) {
            // Dword reads only (CXL_COMP_REGS takes nothing else): the dwords covering the access, then its bytes.
            let first = (offset - a.range.lowerBound) & ~3, last = (offset - a.range.lowerBound + UInt64(width) - 1) & ~3
            guard a.range.lowerBound + last + 4 <= a.range.upperBound else { throw .outOfRange("BAR \(bar) \(offset)+\(width): past region \(a.region)") }
            var bytes: [UInt8] = []
            do {
                for d in stride(from: first, through: last, by: 4) { bytes += try device.read(region: a.region, offset: d, count: 4) }
            } catch { throw .io("BAR \(bar) read at 0x\(String(offset, radix: 16)) through region \(a.region): \(error)") }
            let start = Int(offset - a.range.lowerBound - first)
            return LittleEndian.load(bytes, at: start, width: width) ?? 0
        }
        do { return LittleEndian.load(try device.read(region: UInt32(bar), offset: offset, count: width)) } catch {
            throw .io("BAR \(bar) read at 0x\(String(offset, radix: 16)): \(error)")
        }
    }
    public func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        throw .badAccess("read-only view of the served device: BAR \(bar) write refused")
    }
    public var resetMethods: [PCIResetMethod] { [] }
    public func reset(_ method: PCIResetMethod) throws(PCIError) {
        throw .resetUnsupported("read-only view of the served device: no resets")
    }
}
