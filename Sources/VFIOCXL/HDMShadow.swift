import CXL
import Foundation
import PCI
import VFIO

/// The guest's view of the component register block (CXL 3.1 §8.2.4), served for
/// both the trapped range of the component BAR and the COMP_REGS region.
///
/// The HDM Decoder Capability structure is a shadow register file built from the
/// catalog: the guest programs decoders in its own address space, a guest Commit
/// goes through the same device model the emulator uses (`HDMDecoderDevice`:
/// §8.2.4.20.12 checks, Committed or Error Not Committed, Lock On Commit freezes the
/// decoder), and reserved / read-only bits hold. Guest activity never writes the
/// host's decoders. Decoders firmware committed on the host appear committed with
/// Lock cleared and Base zeroed, so the host physical address never shows.
/// The rest of the block (capability array, RAS, Link) passes through.
final class ComponentShadow: @unchecked Sendable {
    let function: any PCIFunction
    let layout: CXLPassthroughLayout
    /// The device-side decoder model the emulator uses too.
    private(set) var hdm: HDMDecoderDevice
    private var file: RegisterFile
    private let hdmBlock: RegisterBlockLayout
    private let lock = VFIORecursiveLock()
    /// Decoders firmware committed before vfio-cxl took the device (their shadow
    /// returns to "committed" on every reset).
    let firmwareCommitted: [Int]
    private let firmwareImage: [Int: [UInt64]]
    /// HDM Decoder Global Control as firmware left it (the guest's view after every reset, as at start).
    private let firmwareGlobalControl: UInt64

    init(function: any PCIFunction, layout: CXLPassthroughLayout, memorySize: UInt64) throws(VFIOCXLError) {
        self.function = function
        self.layout = layout
        let cap = HDMDecoderCapability.capability
        let global = HDMDecoderCapability.globalControl
        hdm = HDMDecoderDevice(rules: HDMDecoderDevice.rules(capability: layout.hdmCapability, capacity: memorySize),
                               decoderCount: layout.decoderCount)
        hdmBlock = HDMDecoderCapability.layout(decoders: layout.decoderCount, endpoint: true)
        hdmRange = layout.hdmOffset..<(layout.hdmOffset + hdmBlock.length)
        var file = RegisterFile(size: hdmBlock.length)
        file.place(hdmBlock, at: 0)
        hdm.restrictWritableMasks(&file, capability: layout.hdmCapability)
        func hostRead(_ off: Int) throws(VFIOCXLError) -> UInt64 {
            do { return try function.barRead(layout.componentBAR, offset: layout.componentOffset + UInt64(layout.hdmOffset + off), width: 4) }
            catch { throw .access("HDM register 0x\(String(off, radix: 16)): \(error)") }
        }
        file.store(cap.offset, width: 4, value: layout.hdmCapability)
        let hostGlobal = try hostRead(global.offset)
        firmwareGlobalControl = hostGlobal
        file.store(global.offset, width: 4, value: hostGlobal)
        var fw: [Int] = []
        var image: [Int: [UInt64]] = [:]
        for n in 0..<layout.decoderCount {
            let regs = HDMDecoderCapability.decoderRegisters(n, endpoint: true)
            let ctrl = try hostRead(HDMDecoderRegisters(n).control.offset)
            guard HDMDecoderCapability.Control.committed.extract(ctrl) != 0 else { continue }
            fw.append(n)
            var values: [UInt64] = []
            for r in regs { values.append(try hostRead(r.offset)) }
            image[n] = values
        }
        firmwareCommitted = fw
        firmwareImage = image
        self.file = file
        applyFirmwareImage()
    }

    /// Firmware-committed decoders as the guest sees them: committed, Lock On Commit
    /// clear, Base zero (the guest writes its own GPA there).
    private func applyFirmwareImage() {
        for n in firmwareCommitted {
            guard let values = firmwareImage[n] else { continue }
            let named = HDMDecoderRegisters(n)
            var control: UInt64 = 0
            for (r, v) in zip(HDMDecoderCapability.decoderRegisters(n, endpoint: true), values) {
                file.store(r.offset, width: r.width, value: v)
                if r.offset == named.control.offset { control = v }
            }
            file.store(named.baseLow.offset, width: 4, value: 0)
            file.store(named.baseHigh.offset, width: 4, value: 0)
            file.store(named.control.offset, width: 4,
                       value: control & ~HDMDecoderCapability.Control.lockOnCommit.mask & ~HDMDecoderCapability.Control.errorNotCommitted.mask)
            file.setLock(hdm.lockedRange(n), false)
        }
    }

    /// Virtual decoders back to reset values; firmware-committed ones back to the
    /// shadowed committed state.
    func reset() {
        lock.lock(); defer { lock.unlock() }
        file.reset(keeping: [])
        hdm.forgetFailures()
        file.store(HDMDecoderCapability.capability.offset, width: 4, value: layout.hdmCapability)
        file.store(HDMDecoderCapability.globalControl.offset, width: 4, value: firmwareGlobalControl)
        applyFirmwareImage()
    }

    // MARK: Access (offsets relative to the component block)

    /// Computed once: `RegisterBlockLayout.length` walks the layout's registers (and allocates), and every
    /// component-register access asks.
    private let hdmRange: Range<Int>
    /// Whether a component-block offset falls in the HDM Decoder Capability structure.
    func isHDM(_ offset: Int) -> Bool { hdmRange.contains(offset) }

    func read32(_ offset: Int) throws(VFIOError) -> UInt32 {
        lock.lock(); defer { lock.unlock() }
        if hdmRange.contains(offset) { return UInt32(truncatingIfNeeded: file.read(offset - layout.hdmOffset, width: 4)) }
        do { return UInt32(truncatingIfNeeded: try function.barRead(layout.componentBAR, offset: layout.componentOffset + UInt64(offset), width: 4)) }
        catch { throw .system(errno: VFIOErrno.EIO, "component register read: \(error)") }
    }

    func write32(_ offset: Int, _ value: UInt32) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        guard hdmRange.contains(offset) else {
            do { try function.barWrite(layout.componentBAR, offset: layout.componentOffset + UInt64(offset), width: 4, value: UInt64(value)) }
            catch { throw .system(errno: VFIOErrno.EIO, "component register write: \(error)") }
            return
        }
        for edge in hdm.write(&file, offset: offset - layout.hdmOffset, width: 4, value: UInt64(value)) {
            switch edge {
            // §8.2.4.20.12: the checks run on the 0 -> 1 transition of Commit; the shadow shows the result at once.
            case .commit(let n): hdm.commit(n, in: &file)
            case .decommit(let n): hdm.decommit(n, in: &file)
            }
        }
    }

    /// Why decoder n's last guest commit set Error Not Committed.
    func commitFailure(decoder n: Int) -> CommitFailure? {
        lock.lock(); defer { lock.unlock() }
        return hdm.failures[n]
    }
}

/// (Part of) the component block as a VFIO region handler: region offset `base` is component-block offset
/// `blockStart`, and the handler covers `length` bytes from there. The trapped BAR range covers the whole block
/// (base = the block's offset in the BAR); the v2 COMP_REGS region starts at the CXL.cachemem area and ends with
/// the last HDM decoder, and drops writes outside the HDM Decoder Capability structure (the capability array is
/// read-only there, as in NVIDIA's v2 kernels).
final class ComponentRegionHandler: VFIORegionAccessHandler, @unchecked Sendable {
    let shadow: ComponentShadow
    let base: UInt64
    let blockStart: Int
    let length: Int
    /// COMP_REGS takes aligned 4-byte accesses only; the BAR also takes aligned 8-byte ones.
    let allowQuadword: Bool
    let forwardOtherWrites: Bool

    init(shadow: ComponentShadow, base: UInt64, blockStart: Int = 0, length: Int = ComponentRegisterBlock.size,
         allowQuadword: Bool, forwardOtherWrites: Bool = true) {
        self.shadow = shadow
        self.base = base
        self.blockStart = blockStart
        self.length = length
        self.allowQuadword = allowQuadword
        self.forwardOtherWrites = forwardOtherWrites
    }

    /// A read may also be a run of more than two DWORDs (a bulk REGION_READ, served
    /// as aligned DWORD reads); 8 bytes stay one quadword access.
    private func check(_ offset: UInt64, _ count: Int, bulk: Bool = false) throws(VFIOError) -> Int {
        guard offset >= base, offset % 4 == 0,
              count == 4 || (allowQuadword && count == 8 && offset % 8 == 0) || (bulk && count > 8 && count % 4 == 0) else {
            throw .invalidArgument("component registers take aligned 4-byte\(allowQuadword ? " or 8-byte" : "") accesses (got \(count) bytes at 0x\(String(offset, radix: 16)))")
        }
        let rel = offset - base
        guard rel + UInt64(count) <= UInt64(length) else { throw .invalidArgument("outside the component registers (0x\(String(length, radix: 16)) bytes)") }
        return Int(rel) + blockStart
    }

    func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        _ = try check(offset, count, bulk: true)
        return try InPlaceBytes.read(count: count) { (b) throws(VFIOError) in try read(offset: offset, into: b) }
    }

    func write(offset: UInt64, data: [UInt8]) throws(VFIOError) {
        try InPlaceBytes.write(data) { (b) throws(VFIOError) in try write(offset: offset, from: b) }
    }

    /// In place, DWORD by DWORD (the server's REGION_READ path: no array).
    func read(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        let rel = try check(offset, buffer.count, bulk: true)
        for i in stride(from: 0, to: buffer.count, by: 4) {
            buffer.storeBytes(of: try shadow.read32(rel + i).littleEndian, toByteOffset: i, as: UInt32.self)
        }
    }

    func write(offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        let rel = try check(offset, buffer.count)
        for i in stride(from: 0, to: buffer.count, by: 4) {
            if !forwardOtherWrites && !shadow.isHDM(rel + i) { continue }
            try shadow.write32(rel + i, UInt32(littleEndian: buffer.loadUnaligned(fromByteOffset: i, as: UInt32.self)))
        }
    }
}
