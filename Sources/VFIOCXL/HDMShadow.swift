import CXL
import Foundation
import PCI
import VFIO

/// The guest's view of the component register block (CXL 3.1 §8.2.4), served for
/// both the trapped range of the component BAR and the COMP_REGS region.
///
/// The HDM Decoder Capability structure is a shadow register file built from the
/// catalog: the guest programs decoders in its own address space, a guest Commit
/// is validated with the same rules a device applies (`HDMCommitRules`, §8.2.4.20.12)
/// and mirrored to Committed or Error Not Committed, Lock On Commit freezes the
/// decoder, and reserved / read-only bits hold. Guest activity never writes the
/// host's decoders. Decoders firmware committed on the host appear committed with
/// Lock cleared and Base zeroed, so the host physical address never shows.
/// The rest of the block (capability array, RAS, Link) passes through.
final class ComponentShadow: @unchecked Sendable {
    let function: any PCIFunction
    let layout: CXLPassthroughLayout
    let rules: HDMCommitRules
    private var file: RegisterFile
    private let hdmBlock: RegisterBlockLayout
    private let lock = NSRecursiveLock()
    /// Decoders firmware committed before vfio-cxl took the device (their shadow
    /// returns to "committed" on every reset).
    let firmwareCommitted: [Int]
    private let firmwareImage: [Int: [UInt64]]
    /// HDM Decoder Global Control as firmware left it (the guest's view after every reset, as at start).
    private let firmwareGlobalControl: UInt64

    static let control = HDMDecoderCapability.control
    static func controlBit(_ name: String) -> UInt64 { control.field(name)!.mask }

    init(function: any PCIFunction, layout: CXLPassthroughLayout, memorySize: UInt64) throws(VFIOCXLError) {
        self.function = function
        self.layout = layout
        let cap = HDMDecoderCapability.capability
        func capBit(_ n: String) -> Bool { cap.field(n)!.extract(layout.hdmCapability) != 0 }
        rules = HDMCommitRules(threeSixTwelveWay: capBit("3, 6, 12 Way Interleave Capable"), sixteenWay: capBit("16 Way Interleave Capable"),
                               a11to8: capBit("A11to8 Interleave Capable"), a14to12: capBit("A14to12 Interleave Capable"),
                               capacity: memorySize)
        hdmBlock = HDMDecoderCapability.layout(decoders: layout.decoderCount, endpoint: true)
        var file = RegisterFile(size: hdmBlock.length)
        file.place(hdmBlock, at: 0)
        // Capability-dependent write masks: Poison On Decode Error Enable only when
        // capable (§8.2.4.20.2); UIO fields only when UIO Capable (§8.2.4.20.7).
        let global = HDMDecoderCapability.globalControl
        if !capBit("Poison On Decode Error Capability") {
            file.setWritableMask(global.offset, width: 4, mask: global.writableMask & ~global.field("Poison On Decode Error Enable")!.mask)
        }
        if !capBit("UIO Capable") {
            let uio = Self.controlBit("UIO") | Self.controlBit("Upstream Interleave Granularity") | Self.controlBit("Upstream Interleave Ways")
            for n in 0..<layout.decoderCount {
                let c = HDMDecoderRegisters(n).control
                file.setWritableMask(c.offset, width: 4, mask: c.writableMask & ~uio)
            }
        }
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
            guard ctrl & Self.controlBit("Committed") != 0 else { continue }
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
            file.store(named.control.offset, width: 4, value: control & ~Self.controlBit("Lock On Commit") & ~Self.controlBit("Error Not Committed"))
            file.setLock(decoderRange(n), false)
        }
    }

    private func decoderRange(_ n: Int) -> Range<Int> {
        let start = HDMDecoderCapability.firstDecoderOffset + HDMDecoderCapability.decoderStride * n
        return start..<(start + HDMDecoderCapability.decoderStride)
    }

    /// Virtual decoders back to reset values; firmware-committed ones back to the
    /// shadowed committed state.
    func reset() {
        lock.lock(); defer { lock.unlock() }
        file.reset(keeping: [])
        file.store(HDMDecoderCapability.capability.offset, width: 4, value: layout.hdmCapability)
        file.store(HDMDecoderCapability.globalControl.offset, width: 4, value: firmwareGlobalControl)
        applyFirmwareImage()
    }

    // MARK: Access (offsets relative to the component block)

    private var hdmRange: Range<Int> { layout.hdmOffset..<(layout.hdmOffset + hdmBlock.length) }
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
        let rel = offset - layout.hdmOffset
        let w = file.write(rel, width: 4, value: UInt64(value))
        let first = HDMDecoderCapability.firstDecoderOffset
        guard rel >= first else { return }
        let n = (rel - first) / HDMDecoderCapability.decoderStride
        guard n < layout.decoderCount, rel == HDMDecoderRegisters(n).control.offset else { return }
        let commit = Self.controlBit("Commit"), committed = Self.controlBit("Committed"), error = Self.controlBit("Error Not Committed")
        switch (w.before & commit != 0, w.after & commit != 0) {
        case (false, true):
            // §8.2.4.20.12: the checks run on the 0 -> 1 transition of Commit.
            if rules.check(decoder: n, decoders: programming(), committed: committedBits()) == nil {
                file.setBits(rel, width: 4, mask: error, to: false)
                file.setBits(rel, width: 4, mask: committed, to: true)
                if w.after & Self.controlBit("Lock On Commit") != 0 { file.setLock(decoderRange(n), true) }
            } else {
                file.setBits(rel, width: 4, mask: committed, to: false)
                file.setBits(rel, width: 4, mask: error, to: true)
            }
        case (true, false):
            file.setBits(rel, width: 4, mask: committed | error, to: false)
        default:
            break
        }
    }

    /// Every decoder's programming as the shadow holds it.
    func programming() -> [DecoderProgramming] {
        (0..<layout.decoderCount).map { n in DecoderProgramming(decoder: n) { file.read($0, width: $1) } }
    }

    func committedBits() -> [Bool] {
        (0..<layout.decoderCount).map { n in
            file.read(HDMDecoderRegisters(n).control, base: 0) & Self.controlBit("Committed") != 0
        }
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
        let rel = try check(offset, count, bulk: true)
        var out: [UInt8] = []
        for i in stride(from: 0, to: count, by: 4) {
            let v = try shadow.read32(rel + i)
            for b in 0..<4 { out.append(UInt8(truncatingIfNeeded: v >> UInt32(8 * b))) }
        }
        return out
    }

    func write(offset: UInt64, data: [UInt8]) throws(VFIOError) {
        let rel = try check(offset, data.count)
        for i in stride(from: 0, to: data.count, by: 4) {
            let v = UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
            if !forwardOtherWrites && !shadow.isHDM(rel + i) { continue }
            try shadow.write32(rel + i, v)
        }
    }
}
