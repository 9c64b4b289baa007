import CXL
import Foundation
import PCI
import VFIO

/// The guest's view of the PCIe DVSEC for CXL Devices (CXL 3.1 §8.1.3).
///
/// Control, Status, Control2, Lock and the Range Base registers live in a shadow
/// register file built from the catalog, so RWL / RW1CS / RWO behave as the spec
/// says and byte lanes merge exactly; CONFIG_LOCK (guest-owned, one-shot) and the
/// Control2 doorbells go through the device model the emulator uses
/// (`CXLDeviceDVSECDevice`).
/// The headers, capabilities and Range Size registers are read live from the
/// device; Status2 merges the live Cache Invalid, Volatile HDM Preservation Error
/// and PM Initialization Complete bits with the shadow's Reset Complete / Reset
/// Error, so a guest polling a 32-bit read at Control2 sees live progress.
/// The Range Base registers start at 0: the host physical address never shows.
final class DVSECShadow: VFIOConfigAccessHandler, @unchecked Sendable {
    let function: any PCIFunction
    let base: Int
    let length: Int
    private var file: RegisterFile
    /// CONFIG_LOCK and the doorbells: the emulator's model.
    private let model: CXLDeviceDVSECDevice
    /// Per byte: bits read live from the device instead of the shadow.
    private let liveMask: [UInt8]
    private let lock = VFIORecursiveLock()
    /// Runs a host-side CXL Reset (with save/restore) for a guest Initiate CXL Reset;
    /// returns whether it succeeded. Set by the device.
    var onCXLReset: (@Sendable (_ memClear: Bool) -> Bool)?
    /// DVSEC Control as firmware left it: the guest's view after every conventional reset, as at start (the HDM
    /// shadow does the same with firmware-committed decoders).
    private var firmwareControl: UInt64 = 0

    static let control = CXLDeviceDVSEC.control
    static let control2 = CXLDeviceDVSEC.control2
    static let status2 = CXLDeviceDVSEC.status2

    /// Registers whose every byte reads live.
    static let liveRegisters: [RegisterLayout] = DVSECHeader.registers + [
        CXLDeviceDVSEC.capability, CXLDeviceDVSEC.capability2, CXLDeviceDVSEC.capability3,
        CXLDeviceDVSEC.range1.sizeHigh, CXLDeviceDVSEC.range1.sizeLow, CXLDeviceDVSEC.range2.sizeHigh, CXLDeviceDVSEC.range2.sizeLow,
    ]
    static let liveStatus2Bits = CXLDeviceDVSEC.Status2.cacheInvalid.mask | CXLDeviceDVSEC.Status2.volatileHDMPreservationError.mask
        | CXLDeviceDVSEC.Status2.pmInitializationComplete.mask

    init(function: any PCIFunction, layout: CXLPassthroughLayout) throws(VFIOCXLError) {
        self.function = function
        base = layout.dvsecOffset
        length = min(layout.dvsecLength, CXLDeviceDVSEC.length(revision: layout.dvsecRevision))
        model = CXLDeviceDVSECDevice(length: length)
        let block = CXLDeviceDVSEC.layout(revision: layout.dvsecRevision)
        var file = RegisterFile(size: length)
        file.place(block, at: 0)
        var live = [UInt8](repeating: 0, count: length)
        for r in Self.liveRegisters where r.offset + r.width <= length {
            for i in 0..<r.width { live[r.offset + i] = 0xFF }
        }
        for i in 0..<Self.status2.width {
            live[Self.status2.offset + i] = UInt8(truncatingIfNeeded: Self.liveStatus2Bits >> UInt64(8 * i))
        }
        liveMask = live
        // Start from what the device holds, minus what the guest must not see.
        for r in block.registers where r.offset + r.width <= length {
            let v: UInt64
            do { v = try function.read(r, base: layout.dvsecOffset) } catch { throw .access("DVSEC \(r.name): \(error)") }
            file.store(r.offset, width: r.width, value: v)
        }
        for r in [CXLDeviceDVSEC.range1.baseHigh, CXLDeviceDVSEC.range1.baseLow, CXLDeviceDVSEC.range2.baseHigh, CXLDeviceDVSEC.range2.baseLow] {
            file.store(r.offset, width: r.width, value: 0)
        }
        file.store(Self.control2.offset, width: 2, value: file.read(Self.control2, base: 0) & ~CXLDeviceDVSEC.control2Doorbells)
        firmwareControl = file.read(Self.control, base: 0)
        self.file = file
        model.applyConfigLock(&file)
    }

    func configRead(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 {
        lock.lock(); defer { lock.unlock() }
        let rel = offset - base
        guard rel >= 0, rel + width <= length else { throw .invalidArgument("DVSEC access outside the shadow") }
        var needLive = false
        for i in 0..<width where liveMask[rel + i] != 0 { needLive = true }
        var live: UInt32 = 0
        if needLive {
            do { live = try function.configRead(offset, width: width) } catch { throw .system(errno: VFIOErrno.EIO, "DVSEC read: \(error)") }
        }
        let shadow = file.read(rel, width: width)
        var v: UInt32 = 0
        for i in 0..<width {
            let m = liveMask[rel + i]
            let b = (UInt8(truncatingIfNeeded: live >> UInt32(8 * i)) & m) | (UInt8(truncatingIfNeeded: shadow >> UInt64(8 * i)) & ~m)
            v |= UInt32(b) << UInt32(8 * i)
        }
        return v
    }

    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        let rel = offset - base
        guard rel >= 0, rel + width <= length else { throw .invalidArgument("DVSEC access outside the shadow") }
        let (w, rung) = model.write(&file, offset: rel, width: width, value: UInt64(value))

        if w.covers(Self.status2.offset, width: Self.status2.width) {
            // Volatile HDM Preservation Error is RW1CS on the device: forward a 1.
            let written = w.writtenBits(ofRegisterAt: Self.status2.offset, width: 2)
            let clear = written & CXLDeviceDVSEC.Status2.volatileHDMPreservationError.mask
            if clear != 0 { try? function.configWrite(base + Self.status2.offset, width: 2, value: UInt32(clear)) }
        }
        // Doorbells read 0 (§8.1.3.4); the shadow never keeps them.
        let ctrl2 = file.read(Self.control2, base: 0)
        let wbi = CXLDeviceDVSEC.Control2.initiateWritebackInvalidate.mask
        if rung.contains(.writebackInvalidate) {
            // Forwarded: the device writes back and invalidates its cache; Status2
            // Cache Invalid (read live) reports completion.
            let disable = ctrl2 & CXLDeviceDVSEC.Control2.disableCaching.mask
            do {
                let live = UInt64(try function.configRead(base + Self.control2.offset, width: 2))
                try function.configWrite(base + Self.control2.offset, width: 2, value: UInt32((live & ~CXLDeviceDVSEC.control2Doorbells) | disable | wbi))
            } catch { throw .system(errno: VFIOErrno.EIO, "Write Back and Invalidation: \(error)") }
        }
        if rung.contains(.cxlReset) {
            // Intercepted: the host runs the CXL Reset with save/restore, then the
            // shadow reports Reset Complete or Reset Error (both cleared on 0->1).
            model.beginCXLReset(&file)
            let ok = onCXLReset?(model.memClearRequested(file)) ?? false
            model.finishCXLReset(&file, succeeded: ok)
        }
    }

    /// A conventional reset of the guest's view: everything non-sticky to defaults,
    /// CONFIG_LOCK cleared (CXL 3.1 §8.1.3.6).
    func conventionalReset() {
        lock.lock(); defer { lock.unlock() }
        file.reset(0..<length, keeping: [.sticky])
        file.store(Self.control.offset, width: Self.control.width, value: firmwareControl)
        model.applyConfigLock(&file)
    }

    /// The shadow's stored value of a register (tests, diagnostics).
    func shadowValue(_ r: RegisterLayout) -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        return file.read(r, base: 0)
    }
}
