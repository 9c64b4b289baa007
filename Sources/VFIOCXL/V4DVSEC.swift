import CXL
import Foundation
import PCI
import VFIO

/// The v4 contract's view of the PCIe DVSEC for CXL Devices (CXL 3.1 §8.1.3): a per-open shadow of the DVSEC body,
/// sampled from the device when a client opens it (and after every reset). Nothing a guest writes reaches the
/// device:
/// - Capability, Capability2/3, the headers and the Range Size registers keep the sampled values (the catalog marks
///   them read-only, so writes are absorbed);
/// - Control, Lock, Control2's enables and the Range Base registers are guest-writable shadow (CONFIG_LOCK freezes
///   the RWL ones, §8.1.3.6);
/// - Initiate CXL Reset and Initiate Cache Write Back and Invalidation (Control2 doorbells) are answered here: the
///   bit self-clears, Status2 shows CXL Reset Complete with no Reset Error (or Cache Invalid). The real CXL Reset
///   runs at DEVICE_RESET.
/// Status2's Power Management Initialization Complete and Volatile HDM Preservation Error read live.
final class V4DVSECShadow: VFIOConfigAccessHandler, @unchecked Sendable {
    let function: any PCIFunction
    let base: Int
    let length: Int
    let revision: UInt8
    let faults: Set<VFIOCXLv4Fault>
    private var file: RegisterFile
    private let lock = NSRecursiveLock()

    static let status2 = CXLDeviceDVSEC.status2
    static let control2 = CXLDeviceDVSEC.control2
    static func bit(_ r: RegisterLayout, _ name: String) -> UInt64 { r.field(name)!.mask }
    static let liveStatus2 = bit(status2, "Power Management Initialization Complete") | bit(status2, "Volatile HDM Preservation Error")
    static let rangeRegisters: [RegisterLayout] = [
        CXLDeviceDVSEC.range1.sizeHigh, CXLDeviceDVSEC.range1.sizeLow, CXLDeviceDVSEC.range1.baseHigh, CXLDeviceDVSEC.range1.baseLow,
        CXLDeviceDVSEC.range2.sizeHigh, CXLDeviceDVSEC.range2.sizeLow, CXLDeviceDVSEC.range2.baseHigh, CXLDeviceDVSEC.range2.baseLow,
    ]

    init(function: any PCIFunction, layout: CXLPassthroughLayout, faults: Set<VFIOCXLv4Fault>) throws(VFIOCXLError) {
        self.function = function
        base = layout.dvsecOffset
        revision = layout.dvsecRevision
        length = min(layout.dvsecLength, CXLDeviceDVSEC.length(revision: layout.dvsecRevision))
        self.faults = faults
        file = try Self.sample(function: function, base: base, length: length, revision: revision)
    }

    private static func sample(function: any PCIFunction, base: Int, length: Int, revision: UInt8) throws(VFIOCXLError) -> RegisterFile {
        let block = CXLDeviceDVSEC.layout(revision: revision)
        var file = RegisterFile(size: length)
        file.place(block, at: 0)
        for r in block.registers where r.offset + r.width <= length {
            let v: UInt64
            do { v = try function.read(r, base: base) } catch { throw .access("DVSEC \(r.name): \(error)") }
            file.store(r.offset, width: r.width, value: v)
        }
        file.store(control2.offset, width: 2, value: file.read(control2, base: 0) & ~CXLDeviceDVSEC.control2Doorbells)
        let locked = file.read(CXLDeviceDVSEC.lock, base: 0) & bit(CXLDeviceDVSEC.lock, "CONFIG_LOCK") != 0
        for r in [CXLDeviceDVSEC.control, CXLDeviceDVSEC.range1.baseHigh, CXLDeviceDVSEC.range1.baseLow,
                  CXLDeviceDVSEC.range2.baseHigh, CXLDeviceDVSEC.range2.baseLow] where r.offset + r.width <= length {
            file.setLock(r.offset..<(r.offset + r.width), locked)
        }
        return file
    }

    /// A new open (or a reset): the shadow samples the device again.
    func reopen() {
        lock.lock(); defer { lock.unlock() }
        if let f = try? Self.sample(function: function, base: base, length: length, revision: revision) { file = f }
    }

    func configRead(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 {
        lock.lock(); defer { lock.unlock() }
        let rel = offset - base
        guard rel >= 0, rel + width <= length else { throw .invalidArgument("DVSEC access outside the shadow") }
        var v = file.read(rel, width: width)
        let s2 = Self.status2.offset
        if rel < s2 + 2 && s2 < rel + width {
            // Any byte of Status2 in the access: its live bits come from the device (byte by byte, so a 1-byte read
            // of the upper half sees PM Initialization Complete too).
            let live: UInt64
            do { live = UInt64(try function.configRead(base + s2, width: 2)) } catch { throw .system(errno: VFIOErrno.EIO, "DVSEC Status2: \(error)") }
            for i in 0..<width where (s2..<(s2 + 2)).contains(rel + i) {
                let mask = (Self.liveStatus2 >> UInt64(8 * (rel + i - s2))) & 0xFF
                let liveByte = (live >> UInt64(8 * (rel + i - s2))) & 0xFF
                let shift = UInt64(8 * i)
                v = (v & ~(mask << shift)) | ((liveByte & mask) << shift)
            }
        }
        if faults.contains(.dvsecRangeAllOnes) {
            for r in Self.rangeRegisters where r.offset < rel + width && rel < r.offset + r.width {
                for i in 0..<width where (r.offset..<(r.offset + r.width)).contains(rel + i) { v |= 0xFF << UInt64(8 * i) }
            }
        }
        return UInt32(truncatingIfNeeded: v)
    }

    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        let rel = offset - base
        guard rel >= 0, rel + width <= length else { throw .invalidArgument("DVSEC access outside the shadow") }
        let control = CXLDeviceDVSEC.control
        let keepControl = faults.contains(.dvsecControlNotShadowed) ? file.read(control, base: 0) : nil
        let w = file.write(rel, width: width, value: UInt64(value))
        if let keepControl { file.store(control.offset, width: control.width, value: keepControl) }
        if w.covers(CXLDeviceDVSEC.lock.offset, width: 2),
           file.read(CXLDeviceDVSEC.lock, base: 0) & Self.bit(CXLDeviceDVSEC.lock, "CONFIG_LOCK") != 0 {
            for r in [control, CXLDeviceDVSEC.range1.baseHigh, CXLDeviceDVSEC.range1.baseLow,
                      CXLDeviceDVSEC.range2.baseHigh, CXLDeviceDVSEC.range2.baseLow] where r.offset + r.width <= length {
                file.setLock(r.offset..<(r.offset + r.width), true)
            }
        }
        guard w.covers(Self.control2.offset, width: 2) else { return }
        let written = w.writtenBits(ofRegisterAt: Self.control2.offset, width: 2) & w.coveredMask(ofRegisterAt: Self.control2.offset, width: 2)
        file.store(Self.control2.offset, width: 2, value: file.read(Self.control2, base: 0) & ~CXLDeviceDVSEC.control2Doorbells)
        if written & Self.bit(Self.control2, "Initiate CXL Reset") != 0 {
            let complete = Self.bit(Self.status2, "CXL Reset Complete"), error = Self.bit(Self.status2, "CXL Reset Error")
            file.setBits(Self.status2.offset, width: 2, mask: error, to: false)
            file.setBits(Self.status2.offset, width: 2, mask: complete, to: !faults.contains(.guestResetNoComplete))
        }
        if written & Self.bit(Self.control2, "Initiate Cache Write Back and Invalidation") != 0 {
            file.setBits(Self.status2.offset, width: 2, mask: Self.bit(Self.status2, "Cache Invalid"), to: true)
        }
    }
}
