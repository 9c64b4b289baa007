import CXL
import CXLEmulator
import PCI
import Testing
@testable import VFIOCXL

/// The two users of the device-side models (`HDMDecoderDevice`,
/// `CXLDeviceDVSECDevice`): the emulated device's own registers, and vfio-cxl's
/// guest shadow of them. Every test here runs against both, so the shadow is held
/// to the same commit table and lock rules as the emulator.
enum ModelUser: String, CaseIterable, Sendable, CustomStringConvertible {
    case emulator
    case vfioCXLShadow
    var description: String { rawValue }
}

/// One user's HDM decoders and DVSEC, driven through registers only.
final class DecoderBench: @unchecked Sendable {
    let user: ModelUser
    let device: EmulatedCXLDevice
    let clock = ManualClock()
    let layout: CXLPassthroughLayout
    let hdmShadow: ComponentShadow?
    let dvsecShadow: DVSECShadow?

    init(_ user: ModelUser, profile configure: (inout DeviceProfile) -> Void = { _ in }) throws {
        var p = DeviceProfile()
        p.name = "model-test"
        configure(&p)
        self.user = user
        device = try EmulatedCXLDevice(profile: p, clock: clock)
        layout = try CXLPassthroughLayout.discover(device)
        if user == .vfioCXLShadow {
            hdmShadow = try ComponentShadow(function: device, layout: layout, memorySize: p.memorySize)
            dvsecShadow = try DVSECShadow(function: device, layout: layout)
        } else {
            hdmShadow = nil
            dvsecShadow = nil
        }
    }

    // MARK: HDM decoders (offsets relative to the HDM Decoder Capability structure)

    func write(_ r: RegisterLayout, _ v: UInt64) throws {
        if let s = hdmShadow { try s.write32(layout.hdmOffset + r.offset, UInt32(truncatingIfNeeded: v)); return }
        try device.barWrite(layout.componentBAR, offset: layout.componentOffset + UInt64(layout.hdmOffset + r.offset), width: 4, value: v)
    }

    func read(_ r: RegisterLayout) throws -> UInt64 {
        if let s = hdmShadow { return UInt64(try s.read32(layout.hdmOffset + r.offset)) }
        return try device.barRead(layout.componentBAR, offset: layout.componentOffset + UInt64(layout.hdmOffset + r.offset), width: 4)
    }

    /// Program decoder n in Linux's order (Base, Size, DPA Skip), then Control.
    func program(_ n: Int, base: UInt64, size: UInt64, skip: UInt64 = 0, iw: UInt8 = 0, ig: UInt8 = 0,
                 position: Int = 0, lock: Bool = false, commit: Bool = true) throws {
        let r = HDMDecoderRegisters(n)
        let b = SplitAddress(base), s = SplitAddress(size), k = SplitAddress(skip)
        try write(r.baseHigh, UInt64(b.high)); try write(r.baseLow, UInt64(b.low))
        try write(r.sizeHigh, UInt64(s.high)); try write(r.sizeLow, UInt64(s.low))
        try write(r.skipOrTargetHigh, UInt64(k.high)); try write(r.skipOrTargetLow, UInt64(k.low))
        typealias C = HDMDecoderCapability.Control
        var control = C.ig.insert(UInt64(ig), into: 0)
        control = C.iw.insert(UInt64(iw), into: control)
        control = C.interleaveSetPosition.insert(UInt64(position), into: control)
        control = C.lockOnCommit.insert(lock ? 1 : 0, into: control)
        control = C.commit.insert(commit ? 1 : 0, into: control)
        try write(r.control, control)
    }

    func control(_ n: Int) throws -> UInt64 { try read(HDMDecoderRegisters(n).control) }
    func committed(_ n: Int) throws -> Bool { HDMDecoderCapability.Control.committed.extract(try control(n)) != 0 }
    func commitError(_ n: Int) throws -> Bool { HDMDecoderCapability.Control.errorNotCommitted.extract(try control(n)) != 0 }
    func commitFailure(_ n: Int) -> CommitFailure? { hdmShadow?.commitFailure(decoder: n) ?? (hdmShadow == nil ? device.commitFailure(decoder: n) : nil) }

    // MARK: DVSEC (offsets relative to the DVSEC)

    func dvsecWrite(_ r: RegisterLayout, _ v: UInt64) throws {
        if let s = dvsecShadow { try s.configWrite(layout.dvsecOffset + r.offset, width: r.width, value: UInt32(v)); return }
        try device.configWrite(layout.dvsecOffset + r.offset, width: r.width, value: UInt32(v))
    }

    func dvsecRead(_ r: RegisterLayout) throws -> UInt64 {
        if let s = dvsecShadow { return UInt64(try s.configRead(layout.dvsecOffset + r.offset, width: r.width)) }
        return UInt64(try device.configRead(layout.dvsecOffset + r.offset, width: r.width))
    }
}

/// HDM decoder commit (CXL 3.1 §8.2.4.20.7, §8.2.4.20.12; reference §5.5): the
/// 26-case table, against the emulator and against vfio-cxl's shadow.
@Suite("HDM decoder commit, emulator and vfio-cxl shadow")
struct CommitTableTests {
    static let granule: UInt64 = 256 << 20
    static let GiB: UInt64 = 1 << 30
    static let base0: UInt64 = 0x10_0000_0000

    struct Case: Sendable, CustomStringConvertible {
        let name: String
        /// Profile changes (memory 1 GiB, 2 decoders, all interleave capabilities by default).
        var profile: @Sendable (inout DeviceProfile) -> Void = { _ in }
        /// Commit decoder 0 (1-way, 256 MB at base0) first.
        var commitDecoder0 = true
        let decoder: Int
        let base: UInt64, size: UInt64
        var skip: UInt64 = 0, iw: UInt8 = 0, ig: UInt8 = 0, position: Int = 0
        let expected: CommitFailure?
        var description: String { name }
    }

    static let next = base0 + granule
    static let cases: [Case] = [
        Case(name: "valid 1-way", decoder: 1, base: next, size: granule, expected: nil),
        Case(name: "valid zero size", decoder: 1, base: next, size: 0, expected: nil),
        Case(name: "valid 3-way 3 granules", decoder: 1, base: next, size: 3 * granule, iw: 8, position: 2, expected: nil),
        Case(name: "valid 16-way", decoder: 1, base: next, size: 4 * granule, iw: 4, ig: 6, position: 15, expected: nil),
        Case(name: "reserved IW", decoder: 1, base: next, size: granule, iw: 5, expected: .reservedInterleaveWays(5)),
        Case(name: "reserved IW 0xB", decoder: 1, base: next, size: granule, iw: 0xB, expected: .reservedInterleaveWays(0xB)),
        Case(name: "reserved IG", decoder: 1, base: next, size: granule, iw: 1, ig: 7, expected: .reservedInterleaveGranularity(7)),
        Case(name: "3-way not capable", profile: { $0.capabilities.interleave3_6_12Way = false },
             decoder: 1, base: next, size: 3 * granule, iw: 8, expected: .interleaveWaysNotCapable(ways: 3)),
        Case(name: "12-way not capable", profile: { $0.capabilities.interleave3_6_12Way = false },
             decoder: 1, base: next, size: 3 * granule, iw: 0xA, expected: .interleaveWaysNotCapable(ways: 12)),
        Case(name: "16-way not capable", profile: { $0.capabilities.interleave16Way = false },
             decoder: 1, base: next, size: granule, iw: 4, expected: .interleaveWaysNotCapable(ways: 16)),
        Case(name: "IG 256 B without A11to8", profile: { $0.capabilities.interleaveA11to8 = false },
             decoder: 1, base: next, size: granule, iw: 1, ig: 0, expected: .interleaveGranularityNotCapable(bytes: 256)),
        Case(name: "IG 4 KB without A14to12", profile: { $0.capabilities.interleaveA14to12 = false },
             decoder: 1, base: next, size: granule, iw: 1, ig: 4, expected: .interleaveGranularityNotCapable(bytes: 4096)),
        Case(name: "position outside the set", decoder: 1, base: next, size: 2 * granule, iw: 1, position: 2,
             expected: .positionOutOfRange(position: 2, ways: 2)),
        Case(name: "previous decoder not committed", commitDecoder0: false, decoder: 1, base: next, size: granule,
             expected: .previousDecoderNotCommitted(0)),
        Case(name: "overlaps previous decoder", decoder: 1, base: base0, size: granule,
             expected: .notAscending(base: base0, previousEnd: next)),
        Case(name: "below previous decoder", decoder: 1, base: base0 - granule, size: granule,
             expected: .notAscending(base: base0 - granule, previousEnd: next)),
        Case(name: "wraps 2^64", commitDecoder0: false, decoder: 0, base: 0xFFFF_FFFF_F000_0000, size: 2 * granule,
             expected: .wrapsAddressSpace),
        Case(name: "3-way size not 3 granules", decoder: 1, base: next, size: 2 * granule, iw: 8,
             expected: .sizeNotMultipleOfThreeGranules(2 * granule)),
        Case(name: "6-way size not 3 granules", decoder: 1, base: next, size: 4 * granule, iw: 9,
             expected: .sizeNotMultipleOfThreeGranules(4 * granule)),
        Case(name: "size beyond capacity", commitDecoder0: false, decoder: 0, base: base0, size: 5 * granule,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "skip pushes past capacity", commitDecoder0: false, decoder: 0, base: base0, size: 2 * granule, skip: 3 * granule,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "capacity in decoder order", decoder: 1, base: next, size: 4 * granule,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "interleaved size counts Size/ways", decoder: 1, base: next, size: 6 * granule, iw: 1,
             expected: nil),
        Case(name: "interleaved size beyond capacity", decoder: 1, base: next, size: 8 * granule, iw: 1, position: 1,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
        Case(name: "8-way, 4 GiB per device share past capacity", decoder: 1, base: next, size: 32 * granule, iw: 3,
             expected: .exceedsDeviceCapacity(dpaEnd: 5 * granule, capacity: GiB)),
    ]

    @Test(arguments: cases, ModelUser.allCases)
    func commitCheck(_ c: Case, _ user: ModelUser) throws {
        let d = try DecoderBench(user) { c.profile(&$0) }
        if c.commitDecoder0 {
            try d.program(0, base: Self.base0, size: Self.granule)
            #expect(try d.committed(0))
        }
        try d.program(c.decoder, base: c.base, size: c.size, skip: c.skip, iw: c.iw, ig: c.ig, position: c.position)
        #expect(try d.committed(c.decoder) == (c.expected == nil))
        #expect(try d.commitError(c.decoder) == (c.expected != nil))
        #expect(d.commitFailure(c.decoder) == c.expected)
    }

    @Test(arguments: ModelUser.allCases)
    func failedCommitRecoversAfterClearAndReprogram(_ user: ModelUser) throws {
        let d = try DecoderBench(user)
        try d.program(0, base: Self.base0, size: 8 * Self.granule)
        #expect(try d.commitError(0))
        #expect(d.commitFailure(0) == .exceedsDeviceCapacity(dpaEnd: 8 * Self.granule, capacity: Self.GiB))
        try d.write(HDMDecoderRegisters(0).control, 0)
        #expect(try !d.commitError(0) && !d.committed(0))
        #expect(d.commitFailure(0) == nil)
        try d.program(0, base: Self.base0, size: 4 * Self.granule)
        #expect(try d.committed(0) && !d.commitError(0))
    }

    /// Lock On Commit (§8.2.4.20.7): a committed, locked decoder ignores writes to
    /// Base, Size, Control (Commit = 0 included) and DPA Skip; the next decoder is not
    /// affected; an unlocked decoder de-commits on Commit = 0.
    @Test(arguments: ModelUser.allCases)
    func decommitAndLockOnCommit(_ user: ModelUser) throws {
        let d = try DecoderBench(user)
        try d.program(0, base: Self.base0, size: Self.granule)
        try d.write(HDMDecoderRegisters(0).control, 0)
        #expect(try !d.committed(0))
        try d.program(0, base: Self.base0, size: Self.granule, lock: true)
        #expect(try d.committed(0))
        let regs = HDMDecoderRegisters(0)
        let all = [regs.baseLow, regs.baseHigh, regs.sizeLow, regs.sizeHigh, regs.control, regs.skipOrTargetLow, regs.skipOrTargetHigh]
        let before = try all.map { try d.read($0) }
        for r in all { try d.write(r, 0) }
        #expect(try all.map { try d.read($0) } == before)
        #expect(try d.committed(0))
        try d.program(1, base: Self.base0 + Self.granule, size: Self.granule)
        #expect(try d.committed(1))
        try d.write(HDMDecoderRegisters(1).control, 0)
        #expect(try !d.committed(1))
    }

    /// Commit 0 -> 1 runs the checks again: a re-commit after a de-commit of decoder
    /// 0 fails for decoder 1 until decoder 0 is committed again (index order).
    @Test(arguments: ModelUser.allCases)
    func decommitOfPreviousDecoderBlocksTheNext(_ user: ModelUser) throws {
        let d = try DecoderBench(user)
        try d.program(0, base: Self.base0, size: Self.granule)
        try d.write(HDMDecoderRegisters(0).control, 0)
        try d.program(1, base: Self.base0 + Self.granule, size: Self.granule)
        #expect(d.commitFailure(1) == .previousDecoderNotCommitted(0))
        try d.program(0, base: Self.base0, size: Self.granule)
        try d.write(HDMDecoderRegisters(1).control, 0)
        try d.program(1, base: Self.base0 + Self.granule, size: Self.granule)
        #expect(try d.committed(1))
    }
}

/// CONFIG_LOCK and the Control2 doorbells (CXL 3.1 §8.1.3.4, §8.1.3.6), against the
/// emulator and vfio-cxl's shadow.
@Suite("DVSEC CONFIG_LOCK and doorbells, emulator and vfio-cxl shadow")
struct DVSECModelTests {
    @Test(arguments: ModelUser.allCases)
    func configLockFreezesControlAndRangeBase(_ user: ModelUser) throws {
        let d = try DecoderBench(user)
        let memEnable = CXLDeviceDVSEC.memEnable.mask
        let control = try d.dvsecRead(CXLDeviceDVSEC.control)
        // Unlocked: Control takes writes both ways.
        try d.dvsecWrite(CXLDeviceDVSEC.control, control | memEnable)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.control) & memEnable != 0)
        try d.dvsecWrite(CXLDeviceDVSEC.control, control & ~memEnable)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.control) & memEnable == 0)
        try d.dvsecWrite(CXLDeviceDVSEC.control, control | memEnable)
        try d.dvsecWrite(CXLDeviceDVSEC.range1.baseLow, 0x3000_0000)
        try d.dvsecWrite(CXLDeviceDVSEC.lock, CXLDeviceDVSEC.configLock.mask)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.lock) & CXLDeviceDVSEC.configLock.mask != 0)
        // Locked: Control and Range 1 Base hold; the write-once lock cannot be cleared.
        try d.dvsecWrite(CXLDeviceDVSEC.control, control & ~memEnable)
        try d.dvsecWrite(CXLDeviceDVSEC.range1.baseLow, 0x1000_0000)
        try d.dvsecWrite(CXLDeviceDVSEC.lock, 0)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.control) & memEnable != 0)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.range1.baseLow) & CXLDeviceDVSEC.rangeBaseLow.mask == 0x3000_0000)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.lock) & CXLDeviceDVSEC.configLock.mask != 0)
        // Control2 is not covered by CONFIG_LOCK.
        let disable = CXLDeviceDVSEC.Control2.disableCaching.mask | CXLDeviceDVSEC.Control2.memClearEnable.mask
        try d.dvsecWrite(CXLDeviceDVSEC.control2, CXLDeviceDVSEC.Control2.memClearEnable.mask)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.control2) & disable == CXLDeviceDVSEC.Control2.memClearEnable.mask)
    }

    /// The doorbells read 0 after a ring; a CXL Reset ends in Reset Complete.
    @Test(arguments: ModelUser.allCases)
    func doorbellsReadZeroAndResetCompletes(_ user: ModelUser) throws {
        let d = try DecoderBench(user)
        if let s = d.dvsecShadow { s.onCXLReset = { _ in true } }
        try d.dvsecWrite(CXLDeviceDVSEC.control2, CXLDeviceDVSEC.control2Doorbells)
        #expect(try d.dvsecRead(CXLDeviceDVSEC.control2) & CXLDeviceDVSEC.control2Doorbells == 0)
        // The emulator completes the reset after its timeout (100 ms); the shadow's host reset has returned.
        d.clock.advance(milliseconds: 1_000)
        d.device.processEvents()
        let status2 = try d.dvsecRead(CXLDeviceDVSEC.status2)
        #expect(CXLDeviceDVSEC.Status2.resetComplete.extract(status2) == 1)
        #expect(CXLDeviceDVSEC.Status2.resetError.extract(status2) == 0)
    }
}
