import PCI

/// The device side of the PCIe DVSEC for CXL Devices (CXL 3.1 §8.1.3): CONFIG_LOCK
/// and the Control2 doorbells. The one model, used by the emulated device
/// (`CXLEmulator`) and vfio-cxl's guest shadow (`VFIOCXL`); both keep the DVSEC in
/// a `RegisterFile` built from the catalog and hand it to this model.
///
/// - CONFIG_LOCK (§8.1.3.6, RWO): once set, every RWL field of the DVSEC (Control
///   but IO_Enable, Range Base High/Low) is read-only until a conventional reset.
/// - Initiate Cache Write Back and Invalidation and Initiate CXL Reset (§8.1.3.4)
///   are doorbells: a write of 1 rings them and they always read 0. What a ring
///   does is the user's: the emulator runs it, the shadow forwards or intercepts it.
/// - CXL Reset Complete / CXL Reset Error (§8.1.3.5) clear when a reset starts and
///   one of them sets when it ends.
public struct CXLDeviceDVSECDevice: Sendable, Hashable {
    /// Offset of the DVSEC inside the register file.
    public let origin: Int
    /// Bytes of the DVSEC the file holds.
    public let length: Int

    public init(origin: Int = 0, length: Int) {
        self.origin = origin
        self.length = length
    }

    public var range: Range<Int> { origin ..< origin + length }
    public var control2Offset: Int { origin + CXLDeviceDVSEC.control2.offset }
    public var status2Offset: Int { origin + CXLDeviceDVSEC.status2.offset }
    public var lockOffset: Int { origin + CXLDeviceDVSEC.lock.offset }
    public var controlOffset: Int { origin + CXLDeviceDVSEC.control.offset }

    /// The doorbells a write rang.
    public struct Doorbells: OptionSet, Sendable, Hashable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let writebackInvalidate = Doorbells(rawValue: CXLDeviceDVSEC.Control2.initiateWritebackInvalidate.mask)
        public static let cxlReset = Doorbells(rawValue: CXLDeviceDVSEC.Control2.initiateCXLReset.mask)
    }

    public func isConfigLocked(_ file: RegisterFile) -> Bool {
        CXLDeviceDVSEC.configLock.extract(file.read(lockOffset, width: CXLDeviceDVSEC.lock.width)) != 0
    }

    /// CONFIG_LOCK freezes (or, clear after a reset, thaws) the DVSEC's RWL fields.
    public func applyConfigLock(_ file: inout RegisterFile) {
        file.setLock(range, isConfigLocked(file))
    }

    /// Apply a software write at `offset` (file-relative): CONFIG_LOCK takes effect,
    /// the doorbells read 0 again; returns the write and the doorbells it rang.
    public func write(_ file: inout RegisterFile, offset: Int, width: Int, value: UInt64) -> (RegisterWrite, Doorbells) {
        let w = file.write(offset, width: width, value: value)
        if w.covers(lockOffset, width: CXLDeviceDVSEC.lock.width) { applyConfigLock(&file) }
        guard w.covers(control2Offset, width: CXLDeviceDVSEC.control2.width) else { return (w, []) }
        let rung = w.writtenBits(ofRegisterAt: control2Offset, width: CXLDeviceDVSEC.control2.width) & CXLDeviceDVSEC.control2Doorbells
        file.setBits(control2Offset, width: CXLDeviceDVSEC.control2.width, mask: CXLDeviceDVSEC.control2Doorbells, to: false)
        return (w, Doorbells(rawValue: rung))
    }

    /// Control2 CXL Reset Mem Clr Enable as the file holds it.
    public func memClearRequested(_ file: RegisterFile) -> Bool {
        CXLDeviceDVSEC.Control2.memClearEnable.extract(file.read(control2Offset, width: CXLDeviceDVSEC.control2.width)) != 0
    }

    /// A CXL Reset starts: Reset Complete and Reset Error clear.
    public func beginCXLReset(_ file: inout RegisterFile) {
        let s = CXLDeviceDVSEC.Status2.self
        file.setBits(status2Offset, width: CXLDeviceDVSEC.status2.width, mask: s.resetComplete.mask | s.resetError.mask, to: false)
    }

    /// A CXL Reset ends: Reset Complete, or Reset Error.
    public func finishCXLReset(_ file: inout RegisterFile, succeeded: Bool) {
        let s = CXLDeviceDVSEC.Status2.self
        file.setBits(status2Offset, width: CXLDeviceDVSEC.status2.width, mask: succeeded ? s.resetComplete.mask : s.resetError.mask, to: true)
    }
}
