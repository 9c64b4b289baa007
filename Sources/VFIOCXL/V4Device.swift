#if canImport(Glibc)
import Glibc
#endif
import CXL
import Foundation
import Logging
import PCI
import VFIO

/// A deliberately broken rule of the v4 contract, one per `vfio_cxl_type2_test` check (`VFIOCXLConformance`), so a
/// test can show that each check catches the server that breaks it. Never set in production (`cxlkit serve` has no
/// option for them).
public enum VFIOCXLv4Fault: String, Sendable, CaseIterable, Codable {
    /// DEVICE_GET_INFO leaves out VFIO_DEVICE_FLAGS_CXL (bit 9).
    case noCXLFlag
    /// The component BAR's sparse mmap offers the whole BAR, HDM decoder page included.
    case sparseMMapCoversHDM
    /// The CXL_MEM region's mmap fd is handed out one page past the decoder's base.
    case memoryMMapSkewed
    /// The CXL_MEM region offers mmap only for its first 1 MiB (sparse), so no 2 MiB window maps.
    case memoryMMapUnder2MiB
    /// DEVICE_FEATURE DMA_BUF answers success, an export nothing over vfio-user can use.
    case dmaBufAccepted
    /// CXL_COMP_REGS reports one decoder slot more than the HDM Decoder Count.
    case compRegsSizeWrong
    /// CXL_COMP_REGS accepts unaligned and 2-byte accesses.
    case compRegsAcceptUnaligned
    /// CXL_COMP_REGS reads past its end return zeros instead of an error.
    case compRegsAcceptOutOfRange
    /// A guest write that clears Commit decommits the decoder (in the guest's view).
    case decommitHonoured
    /// Decoder Control reads with Lock On Commit cleared (v2's shadow does this).
    case lockHidden
    /// A guest write to Base Low reads back (an overlay instead of absorbing it).
    case baseWritable
    /// The DVSEC Range registers read all-ones.
    case dvsecRangeAllOnes
    /// A guest Initiate CXL Reset self-clears but Status2 never shows CXL Reset Complete.
    case guestResetNoComplete
    /// DEVICE_RESET fails with EIO.
    case deviceResetFails
    /// The HDM decoder block reads live through the component BAR region.
    case barExposesHDM
    /// The CXL_COMP_REGS capability's offset is 0x10 past the HDM Decoder Capability block.
    case compRegsOffsetWrong
    /// The CXL_MEM region reports half the committed decoder's size.
    case memorySizeMismatch
    /// Guest writes to DVSEC Control are dropped (not shadowed).
    case dvsecControlNotShadowed
    /// CXL_COMP_REGS advertises MMAP.
    case compRegsMMapFlag
}

/// Options of the v4 device.
public struct VFIOCXLv4Options: Sendable {
    public var state = CXLStateOptions()
    public var logger = Logger(label: "vfio-cxl-v4")
    /// Broken rules, for conformance tests only.
    public var faults: Set<VFIOCXLv4Fault> = []
    public init() {}
}

/// vfio-cxl as the v4 kernel series defines it (`cxlkit serve --uapi v4`), for a CXL-aware VMM:
///
/// - `DEVICE_GET_INFO`: PCI | RESET | CXL (bit 9), no device capability;
/// - region 9, `CXL_MEM` (type 0x80001E98 subtype 1): READ | WRITE | MMAP, size = the committed decoder's size,
///   offset 0 = the decoder's base (its DPA Skip in the memory fd); gated (`hdm_valid`) while a reset runs;
/// - region 10, `CXL_COMP_REGS` (subtype 2): READ | WRITE only, starts at the HDM Decoder Capability block,
///   0x10 + 0x20 x decoders bytes, aligned dword accesses only; reads are live, writes are absorbed (the host
///   committed and locked the decoder); region capability `CXL_COMP_REGS` {bar, offset};
/// - the component BAR: the HDM block reads all-ones and drops writes, its page is left out of the sparse mmap;
/// - the DVSEC: a per-open shadow (`V4DVSECShadow`);
/// - `DEVICE_RESET` (and a guest FLR): the real CXL Reset, memory always cleared, the decoder restored through the
///   CXL library, memory gated until it is committed again;
/// - `DEVICE_FEATURE` DMA_BUF (11): refused; over vfio-user the memory fd already travels with the region info.
///
/// The base the decoder reads is the host's: hiding it from the guest is the VMM's job in v4.
public final class VFIOCXLv4Device: VFIOPCIDevice, @unchecked Sendable {
    public let layout: CXLPassthroughLayout
    public let options: VFIOCXLv4Options
    /// The decoder the host committed and locked (v4 binds exactly one).
    public let decoder: Int
    public let programming: DecoderProgramming
    let memory: any CXLDeviceMemory
    let dvsec: V4DVSECShadow
    private let memoryRegion: V4MemoryRegion
    private let compRegs: V4CompRegsRegion
    public let memClearCapable: Bool

    public static let memoryRegionIndex = VFIOCXLUAPI.memoryRegionIndex
    public static let componentRegionIndex = VFIOCXLUAPI.componentRegionIndex

    /// Binds `function` or refuses it as the v4 series does: not exactly one committed decoder, an interleaved one,
    /// no CXL Reset capability, or zero HDM size.
    public init(function: any PCIFunction, memory: any CXLDeviceMemory, options: VFIOCXLv4Options = VFIOCXLv4Options()) throws(VFIOCXLError) {
        self.options = options
        self.memory = memory
        let l = try CXLPassthroughLayout.discover(function)
        layout = l
        guard CXLDeviceDVSEC.cxlResetCapable.extract(l.capability) != 0 else {
            throw .refused("no CXL Reset capability (DVSEC CXL Capability bit 7): a guest would poll a reset forever")
        }
        memClearCapable = CXLDeviceDVSEC.memClearCapable.extract(l.capability) != 0
        let hdm = l.componentOffset + UInt64(l.hdmOffset)
        func hostRead(_ off: Int) throws(VFIOCXLError) -> UInt64 {
            do { return try function.barRead(l.componentBAR, offset: hdm + UInt64(off), width: 4) }
            catch { throw .access("HDM register 0x\(String(off, radix: 16)): \(error)") }
        }
        var committed: [Int] = []
        var values: [Int: [Int: UInt64]] = [:]
        for n in 0..<l.decoderCount {
            var regs: [Int: UInt64] = [:]
            for r in HDMDecoderCapability.decoderRegisters(n, endpoint: true) { regs[r.offset] = try hostRead(r.offset) }
            values[n] = regs
            let ctl = regs[HDMDecoderRegisters(n).control.offset] ?? 0
            if ctl & HDMDecoderCapability.Control.committed.mask != 0 { committed.append(n) }
        }
        guard committed.count == 1, let n = committed.first, let regs = values[n] else {
            let which = committed.isEmpty ? "no HDM decoder is committed" : "\(committed.count) HDM decoders are committed (\(committed.map(String.init).joined(separator: ", ")))"
            throw .refused("\(which); v4 binds exactly one, committed and locked by the host before open")
        }
        let p = DecoderProgramming(decoder: n) { off, _ in regs[off] ?? 0 }
        guard p.iw == 0 else { throw .refused("decoder \(n) is interleaved (IW encoding \(p.iw)); v4 binds a non-interleaved decoder") }
        guard p.size > 0 else { throw .refused("decoder \(n) has zero HDM size") }
        guard p.lockOnCommit else { throw .refused("decoder \(n) is committed without Lock On Commit; v4 needs it committed and locked before open") }
        let (end, o) = p.dpaSkip.addingReportingOverflow(p.size)
        guard !o, end <= memory.memorySize else {
            throw .refused("decoder \(n) decodes DPA 0x\(String(p.dpaSkip, radix: 16))+0x\(String(p.size, radix: 16)), past the device memory (0x\(String(memory.memorySize, radix: 16)))")
        }
        decoder = n
        programming = p
        dvsec = try V4DVSECShadow(function: function, layout: l, faults: options.faults)
        memoryRegion = V4MemoryRegion(memory: memory, dpaBase: p.dpaSkip, size: p.size, faults: options.faults)
        compRegs = V4CompRegsRegion(function: function, layout: l, faults: options.faults)
        do { try super.init(function: function) } catch { throw .access("\(error)") }

        overrideConfig(range: l.dvsecOffset..<(l.dvsecOffset + dvsec.length), handler: dvsec)
        trap(region: UInt32(l.componentBAR), range: hdm..<(hdm + UInt64(l.hdmLength)),
             handler: V4BARHDMBlock(function: function, bar: l.componentBAR, base: hdm, exposed: options.faults.contains(.barExposesHDM)))
        addRegion(VFIOExtraRegion(info: memoryRegion.info(), handler: memoryRegion))
        addRegion(VFIOExtraRegion(info: compRegs.info(), handler: compRegs))
        options.logger.info("vfio-cxl v4: \(function.address) decoder \(n) committed and locked, HDM block BAR\(l.componentBAR)+0x\(String(hdm, radix: 16)), \(p.size) bytes at DPA 0x\(String(p.dpaSkip, radix: 16))")
    }

    // MARK: VFIODevice

    public override func deviceInfo() -> VFIODeviceInfo {
        var info = super.deviceInfo()
        info.flags.insert(.reset)  // the CXL Reset bind insisted on
        if !options.faults.contains(.noCXLFlag) { info.flags.insert(VFIOCXLUAPI.deviceFlag) }
        return info
    }

    public override func regionInfo(_ index: UInt32) throws(VFIOError) -> VFIORegionInfo {
        if index == Self.memoryRegionIndex { return memoryRegion.info() }
        var info = try super.regionInfo(index)
        if index == UInt32(layout.componentBAR), options.faults.contains(.sparseMMapCoversHDM), info.flags.contains(.mmap) {
            info.capabilities.removeAll { $0.id == VFIORegionCapabilityID.sparseMMap }
            info.capabilities.append(VFIOSparseMMapCapability(areas: [VFIOSparseArea(offset: 0, size: info.size)]).capability)
        }
        return info
    }

    public override func feature(flags: UInt32, data: [UInt8]) throws(VFIOError) -> [UInt8] {
        if flags & VFIODeviceFeatureFlags.featureMask == VFIOCXLUAPI.dmaBufFeature {
            if options.faults.contains(.dmaBufAccepted) { return [] }
            throw .notSupported("DMA_BUF (feature 11): no dma-buf over vfio-user; map the CXL_MEM region's fd (sent with its region info) instead")
        }
        return try super.feature(flags: flags, data: data)
    }

    /// DEVICE_RESET: the real CXL Reset.
    public override func reset() throws(VFIOError) { try cxlReset() }

    /// A guest FLR: a CXL Type-2 function must not take one in v4; the virtualized FLR runs the CXL Reset.
    public override func functionLevelReset(_ method: PCIResetMethod = .flr) throws(VFIOError) { try cxlReset() }

    public override func clientDisconnected() {
        super.clientDisconnected()
        dvsec.reopen()
        compRegs.reopen()
    }

    /// Whether device memory is accessible (`hdm_valid`).
    public var hdmValid: Bool { memoryRegion.isActive }

    /// The v4 reset: memory gated; CXL Reset (Mem Clr when capable, else the memory is zeroed through its fd);
    /// save/restore through the CXL library brings back the PCI state and the committed, locked decoder; memory
    /// opens again only when the decoder reads committed.
    func cxlReset() throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        if options.faults.contains(.deviceResetFails) { throw .system(errno: VFIOErrno.EIO, "vfio-cxl v4: CXL Reset failed (injected fault)") }
        memoryRegion.setActive(false)
        let orchestrator = CXLResetOrchestrator(function: function, options: options.state)
        let report: ResetReport
        do { report = try orchestrator.reset(method: .cxl, preserve: true, memClear: memClearCapable) }
        catch { throw .system(errno: VFIOErrno.EIO, "vfio-cxl v4: CXL Reset refused: \(error)") }
        if let e = report.resetError { throw .system(errno: VFIOErrno.EIO, "vfio-cxl v4: CXL Reset: \(e)") }
        if !memClearCapable {
            do throws(VFIOError) { try memoryRegion.zero() } catch { throw .system(errno: VFIOErrno.EIO, "vfio-cxl v4: clearing device memory: \(error)") }
        }
        dvsec.reopen()
        compRegs.reopen()
        // A kernel-owned function (`serve --device vfio:BDF --uapi v4`) lost its MSI/MSI-X programming to the CXL
        // Reset, behind vfio-pci's back: hand the kernel the client's eventfds again (nothing for the emulator).
        do { try rearmForwardedIRQs() } catch {
            throw .system(errno: VFIOErrno.EIO, "vfio-cxl v4: re-arming interrupts after CXL Reset: \(error)")
        }
        guard report.restore?.succeeded ?? false, hostDecoderCommitted() else {
            options.logger.error("vfio-cxl v4: decoder \(decoder) not restored after CXL Reset: \(report.steps.joined(separator: "; "))")
            throw .system(errno: VFIOErrno.EIO, "vfio-cxl v4: decoder \(decoder) not restored after CXL Reset; device memory stays gated")
        }
        memoryRegion.setActive(true)
    }

    private func hostDecoderCommitted() -> Bool {
        let ctl = HDMDecoderRegisters(decoder).control
        let off = layout.componentOffset + UInt64(layout.hdmOffset + ctl.offset)
        guard let v = try? function.barRead(layout.componentBAR, offset: off, width: 4) else { return false }
        return v & HDMDecoderCapability.Control.committed.mask != 0
    }
}

/// CXL_MEM: the committed decoder's range of device memory, `dpaBase` = the decoder's DPA start.
final class V4MemoryRegion: VFIORegionAccessHandler, @unchecked Sendable {
    let memory: any CXLDeviceMemory
    let dpaBase: UInt64
    let size: UInt64
    let faults: Set<VFIOCXLv4Fault>
    private let lock = NSLock()
    private var active = true

    init(memory: any CXLDeviceMemory, dpaBase: UInt64, size: UInt64, faults: Set<VFIOCXLv4Fault>) {
        self.memory = memory; self.dpaBase = dpaBase; self.size = size; self.faults = faults
    }

    var isActive: Bool { lock.lock(); defer { lock.unlock() }; return active }
    func setActive(_ on: Bool) { lock.lock(); active = on; lock.unlock() }

    func info() -> VFIORegionInfo {
        var info = VFIORegionInfo(index: VFIOCXLv4Device.memoryRegionIndex, flags: [.read, .write, .caps],
                                  size: faults.contains(.memorySizeMismatch) ? size / 2 : size,
                                  capabilities: [VFIORegionTypeCapability(type: VFIOCXLUAPI.regionType, subtype: VFIOCXLUAPI.cxlMemSubtype).capability])
        if isActive {
            info.flags.insert(.mmap)
            info.mapping = VFIORegionMapping(fd: memory.memoryFD, fileOffset: memory.memoryFileOffset + dpaBase + (faults.contains(.memoryMMapSkewed) ? 4096 : 0))
            if faults.contains(.memoryMMapUnder2MiB) {
                info.capabilities.append(VFIOSparseMMapCapability(areas: [VFIOSparseArea(offset: 0, size: min(size, 1 << 20))]).capability)
            }
        }
        return info
    }

    private func check(_ offset: UInt64, _ count: Int) throws(VFIOError) -> UInt64 {
        guard isActive else { throw .system(errno: VFIOErrno.EIO, "device memory is gated until the decoder is restored (hdm_valid)") }
        let (end, o) = offset.addingReportingOverflow(UInt64(count))
        guard !o, end <= size else { throw .invalidArgument("CXL_MEM access 0x\(String(offset, radix: 16))+\(count) past 0x\(String(size, radix: 16))") }
        return dpaBase + offset
    }

    func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        let at = try check(offset, count)
        do { return try memory.readMemory(at: at, count: count) } catch { throw .system(errno: VFIOErrno.EIO, "device memory read: \(error)") }
    }

    func write(offset: UInt64, data: [UInt8]) throws(VFIOError) {
        let at = try check(offset, data.count)
        do { try memory.writeMemory(at: at, data) } catch { throw .system(errno: VFIOErrno.EIO, "device memory write: \(error)") }
    }

    /// Zeroes the decoder's range through the fd, writing only chunks that are not zero already (holes in a memfd
    /// stay holes).
    func zero() throws(VFIOError) {
        let chunk = 1 << 20
        let zeros = [UInt8](repeating: 0, count: chunk)
        var off: UInt64 = 0
        while off < size {
            let n = Int(min(UInt64(chunk), size - off))
            let at = dpaBase + off
            let buf: [UInt8]
            do { buf = try memory.readMemory(at: at, count: n) } catch { throw .system(errno: VFIOErrno.EIO, "reading device memory: \(error)") }
            if memcmp(buf, zeros, n) != 0 {
                do { try memory.writeMemory(at: at, Array(zeros[0..<n])) } catch { throw .system(errno: VFIOErrno.EIO, "zeroing device memory: \(error)") }
            }
            off += UInt64(n)
        }
    }
}

/// CXL_COMP_REGS: the HDM Decoder Capability block, read live, guest writes absorbed.
final class V4CompRegsRegion: VFIORegionAccessHandler, @unchecked Sendable {
    let function: any PCIFunction
    let layout: CXLPassthroughLayout
    let faults: Set<VFIOCXLv4Fault>
    private let lock = NSLock()
    /// Guest writes the injected faults keep (register offset -> value); empty without faults.
    private var overlay: [Int: UInt32] = [:]

    init(function: any PCIFunction, layout: CXLPassthroughLayout, faults: Set<VFIOCXLv4Fault>) {
        self.function = function; self.layout = layout; self.faults = faults
    }

    var size: Int { layout.hdmLength + (faults.contains(.compRegsSizeWrong) ? HDMDecoderCapability.decoderStride : 0) }

    func info() -> VFIORegionInfo {
        var flags: VFIORegionFlags = [.read, .write, .caps]
        if faults.contains(.compRegsMMapFlag) { flags.insert(.mmap) }
        let offset = layout.componentOffset + UInt64(layout.hdmOffset) + (faults.contains(.compRegsOffsetWrong) ? 0x10 : 0)
        return VFIORegionInfo(index: VFIOCXLv4Device.componentRegionIndex, flags: flags, size: UInt64(size), capabilities: [
            VFIORegionTypeCapability(type: VFIOCXLUAPI.regionType, subtype: VFIOCXLUAPI.componentRegistersSubtype).capability,
            VFIOCXLCompRegsCapability(bar: UInt32(layout.componentBAR), offset: offset).capability,
        ])
    }

    func reopen() { lock.lock(); overlay = [:]; lock.unlock() }

    private func check(_ offset: UInt64, _ count: Int) throws(VFIOError) -> Int? {
        if !faults.contains(.compRegsAcceptUnaligned) {
            guard count == 4, offset % 4 == 0 else {
                throw .invalidArgument("CXL_COMP_REGS takes aligned 4-byte accesses (got \(count) bytes at 0x\(String(offset, radix: 16)))")
            }
        }
        let (end, o) = offset.addingReportingOverflow(UInt64(count))
        guard !o, end <= UInt64(size) else {
            if faults.contains(.compRegsAcceptOutOfRange) { return nil }
            throw .invalidArgument("CXL_COMP_REGS access 0x\(String(offset, radix: 16))+\(count) past 0x\(String(size, radix: 16))")
        }
        return Int(offset)
    }

    private var control0: Int { HDMDecoderRegisters(0).control.offset }
    private var baseLow0: Int { HDMDecoderRegisters(0).baseLow.offset }

    private func live32(_ off: Int) throws(VFIOError) -> UInt32 {
        guard off + 4 <= layout.hdmLength else { return 0 }
        let base = layout.componentOffset + UInt64(layout.hdmOffset)
        do { return UInt32(truncatingIfNeeded: try function.barRead(layout.componentBAR, offset: base + UInt64(off), width: 4)) }
        catch { throw .system(errno: VFIOErrno.EIO, "HDM register read: \(error)") }
    }

    func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        guard let off = try check(offset, count) else { return [UInt8](repeating: 0, count: count) }
        lock.lock(); defer { lock.unlock() }
        let dword = off & ~3
        var v = try live32(dword)
        if let o = overlay[dword] { v = o }
        if dword == control0 && faults.contains(.lockHidden) { v &= ~UInt32(HDMDecoderCapability.Control.lockOnCommit.mask) }
        let bytes = LittleEndian.bytes(UInt64(v), width: 4)
        let start = off - dword
        return (0..<count).map { start + $0 < 4 ? bytes[start + $0] : 0 }
    }

    /// Absorbed: the host committed and locked the decoder, and the guest changes nothing.
    func write(offset: UInt64, data: [UInt8]) throws(VFIOError) {
        guard let off = try check(offset, data.count), data.count == 4, off % 4 == 0 else { return }
        let v = UInt32(data[0]) | UInt32(data[1]) << 8 | UInt32(data[2]) << 16 | UInt32(data[3]) << 24
        lock.lock(); defer { lock.unlock() }
        if off == baseLow0 && faults.contains(.baseWritable) { overlay[off] = v }
        if off == control0 && faults.contains(.decommitHonoured) {
            let commit = UInt32(HDMDecoderCapability.Control.commit.mask)
            let committed = UInt32(HDMDecoderCapability.Control.committed.mask)
            if v & commit == 0 { overlay[off] = (try live32(off)) & ~(commit | committed) } else { overlay[off] = nil }
        }
    }
}

/// The HDM block inside the component BAR region: reads all-ones, writes dropped (VFIO_PCI_EXCLUDE_READ|WRITE);
/// the block is reached only through CXL_COMP_REGS.
final class V4BARHDMBlock: VFIORegionAccessHandler, @unchecked Sendable {
    let function: any PCIFunction
    let bar: Int
    let base: UInt64
    let exposed: Bool
    init(function: any PCIFunction, bar: Int, base: UInt64, exposed: Bool) {
        self.function = function; self.bar = bar; self.base = base; self.exposed = exposed
    }

    func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        guard exposed, offset % 4 == 0, count % 4 == 0 else { return [UInt8](repeating: 0xFF, count: count) }
        var out: [UInt8] = []
        for i in stride(from: 0, to: count, by: 4) {
            let v: UInt64
            do { v = try function.barRead(bar, offset: offset + UInt64(i), width: 4) } catch { throw .system(errno: VFIOErrno.EIO, "\(error)") }
            out += LittleEndian.bytes(v, width: 4)
        }
        return out
    }

    func write(offset: UInt64, data: [UInt8]) throws(VFIOError) {}
}
