import Testing
import TestSupport
import PCI
import CXL
@testable import CXLEmulator

/// The register-file engine, one access type at a time (PCIe 6.0 §7.4, CXL 3.1 §8.2.2).
@Suite("RegisterFile access types")
struct RegisterFileTests {
    struct Case: Sendable, CustomStringConvertible {
        let access: RegisterAccess
        /// Field value after: reset 0xA5, write 0xFF, write 0x0F.
        let afterFirst: UInt64, afterSecond: UInt64
        /// After a conventional-style reset (keeping sticky) that follows.
        let afterReset: UInt64
        var description: String { access.rawValue }
    }

    static let cases: [Case] = [
        Case(access: .ro, afterFirst: 0xA5, afterSecond: 0xA5, afterReset: 0xA5),
        Case(access: .hwInit, afterFirst: 0xA5, afterSecond: 0xA5, afterReset: 0xA5),
        Case(access: .rw, afterFirst: 0xFF, afterSecond: 0x0F, afterReset: 0xA5),
        Case(access: .rws, afterFirst: 0xFF, afterSecond: 0x0F, afterReset: 0x0F),
        Case(access: .rwl, afterFirst: 0xFF, afterSecond: 0x0F, afterReset: 0xA5),
        Case(access: .rwo, afterFirst: 0xFF, afterSecond: 0xFF, afterReset: 0xA5),
        Case(access: .rw1c, afterFirst: 0x00, afterSecond: 0x00, afterReset: 0xA5),
        Case(access: .rw1cs, afterFirst: 0x00, afterSecond: 0x00, afterReset: 0x00),
        Case(access: .rsvdP, afterFirst: 0xA5, afterSecond: 0xA5, afterReset: 0xA5),
        Case(access: .rsvdZ, afterFirst: 0xA5, afterSecond: 0xA5, afterReset: 0xA5),
    ]

    @Test(arguments: cases)
    func accessType(_ c: Case) {
        var f = RegisterFile(size: 8)
        f.place(RegisterLayout("R", offset: 0, width: 2, [.init("F", 11, 4, c.access, reset: 0xA5)]))
        let field = RegisterField("F", 11, 4, c.access)
        #expect(field.extract(f.read(0, width: 2)) == 0xA5)
        f.write(0, width: 2, value: 0xFFFF)
        #expect(field.extract(f.read(0, width: 2)) == c.afterFirst)
        // Bits outside the field are reserved: never written.
        #expect(f.read(0, width: 2) & ~field.mask == 0)
        f.write(0, width: 2, value: 0x00F0)
        #expect(field.extract(f.read(0, width: 2)) == c.afterSecond)
        f.reset(keeping: [.sticky])
        #expect(field.extract(f.read(0, width: 2)) == c.afterReset)
    }

    @Test func rwlFreezesOnlyWhileLocked() {
        var f = RegisterFile(size: 4)
        f.place(RegisterLayout("R", offset: 0, width: 4, [.init("L", 7, 0, .rwl), .init("W", 15, 8, .rw)]))
        f.setLock(0..<4, true)
        f.write(0, width: 4, value: 0xFFFF)
        #expect(f.read(0, width: 4) == 0xFF00)
        f.setLock(0..<4, false)
        f.write(0, width: 4, value: 0x1234)
        #expect(f.read(0, width: 4) == 0x1234)
        // A reset keeping locked fields keeps them (and the lock); a plain one does not.
        f.setLock(0..<4, true)
        f.reset(keeping: [.sticky, .lockedFields])
        #expect(f.read(0, width: 4) == 0x34)
        #expect(f.isLocked(0))
        f.reset(keeping: [.sticky])
        #expect(f.read(0, width: 4) == 0 && !f.isLocked(0))
    }

    @Test func rwoFirstWriteSticksUntilReset() {
        var f = RegisterFile(size: 2)
        f.place(RegisterLayout("Lock", offset: 0, width: 2, [.init("L", bit: 0, .rwo)]))
        f.write(0, width: 2, value: 1)
        f.write(0, width: 2, value: 0)
        #expect(f.read(0, width: 2) == 1)
        f.reset(keeping: [.sticky, .writeOnce])
        #expect(f.read(0, width: 2) == 1)
        f.reset(keeping: [.sticky])
        #expect(f.read(0, width: 2) == 0)
        // Written 0 first: that write is the one that sticks.
        f.write(0, width: 2, value: 0)
        f.write(0, width: 2, value: 1)
        #expect(f.read(0, width: 2) == 0)
    }

    /// Hostile offsets and widths never trap: outside bytes read 0, writes drop them.
    @Test func outOfRangeNeverTraps() {
        var f = RegisterFile(size: 4)
        f.place(RegisterLayout("A", offset: 0, width: 4, [.init("A", 31, 0, .rw)]))
        f.write(2, width: 4, value: 0xDDCC_BBAA)
        #expect(f.read(0, width: 4) == 0xBBAA_0000)
        #expect(f.read(2, width: 4) == 0xBBAA)
        #expect(f.read(-1, width: 2) == 0)
        f.write(-2, width: 4, value: 0x4433_2211)
        #expect(f.read(0, width: 4) == 0xBBAA_4433)
        f.write(0, width: 9, value: 0)
        f.write(0, width: 0, value: 0)
        #expect(f.read(0, width: 16) == 0)
        #expect(f.read(0, width: 4) == 0xBBAA_4433)
        #expect(!f.isLocked(-1) && !f.isLocked(4))
    }

    /// Byte lanes: a write touches exactly the bytes it covers.
    @Test(arguments: [(0, 1, UInt64(0xFF), UInt64(0x0000_12FF)), (1, 1, 0xFF, 0x0000_FF34), (2, 2, 0xBEEF, 0xBEEF_1234),
                      (0, 4, 0xCAFE_F00D, 0xCAFE_F00D), (3, 1, 0x77, 0x7700_1234)])
    func byteLanes(offset: Int, width: Int, value: UInt64, expected: UInt64) {
        var f = RegisterFile(size: 4)
        f.place(RegisterLayout("A", offset: 0, width: 2, [.init("A", 15, 0, .rw, reset: 0x1234)]))
        f.place(RegisterLayout("B", offset: 2, width: 2, [.init("B", 15, 0, .rw)]))
        f.write(offset, width: width, value: value)
        #expect(f.read(0, width: 4) == expected)
    }
}

/// A DWORD write takes `RegisterFile`'s four-lanes-at-once path; four one-byte writes
/// of the same bytes take the lane-by-lane path. Byte lanes are independent, so both
/// must leave the same bytes, RWO state and RegisterWrite values, for every access type,
/// lock state and history. Seeded: a failure names its seed.
@Suite("RegisterFile DWORD writes")
struct RegisterFileDWORDTests {
    @Test(arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func dwordWriteEqualsFourByteWrites(seed: UInt64) {
        var rng = SplitMix64(state: seed)
        let accesses: [RegisterAccess] = [.ro, .hwInit, .rw, .rws, .rwl, .rwo, .rw1c, .rw1cs, .rsvdP, .rsvdZ]
        // 16 bytes: four DWORD registers, each four 8-bit fields of random access types and resets.
        var file = RegisterFile(size: 16)
        for r in 0..<4 {
            let fields = (0..<4).map { i in
                RegisterField("F\(i)", 8 * i + 7, 8 * i, accesses[Int(rng.next() % UInt64(accesses.count))], reset: rng.next() & 0xFF)
            }
            file.place(RegisterLayout("R\(r)", offset: 4 * r, width: 4, fields))
        }
        var byDWORD = file, byBytes = file
        for step in 0..<200 {
            if rng.next() % 8 == 0 {
                let lo = Int(rng.next() % 16), len = Int(rng.next() % 8), on = rng.next() % 2 == 0
                byDWORD.setLock(lo..<min(16, lo + len), on)
                byBytes.setLock(lo..<min(16, lo + len), on)
            }
            let offset = 4 * Int(rng.next() % 4)
            let value = rng.next() & 0xFFFF_FFFF
            let w = byDWORD.write(offset, width: 4, value: value)
            let before = byBytes.read(offset, width: 4)
            for i in 0..<4 { byBytes.write(offset + i, width: 1, value: value >> UInt64(8 * i)) }
            #expect(w.before == before && w.after == byBytes.read(offset, width: 4), "seed \(seed) step \(step)")
            #expect(byDWORD.bytes == byBytes.bytes && byDWORD.writeOnceSpent == byBytes.writeOnceSpent, "seed \(seed) step \(step)")
        }
    }
}

@Suite("Emulated device config and BAR accesses")
struct DeviceAccessTests {
    /// A 1-byte write to DVSEC Control must not clobber bits 15:8 (CXL 3.1 §8.1.3.2).
    @Test func oneByteWriteToDVSECControl() throws {
        let (dev, d, _) = try makeDevice { $0.capabilities.cache = true }
        let ctl = d.dvsec(CXLDeviceDVSEC.control)
        try dev.configWrite(ctl, width: 2, value: 0x0300)   // Cache_SF_Granularity = 3
        try dev.configWrite(ctl, width: 1, value: 0x05)     // Cache_Enable + Mem_Enable
        #expect(try dev.cfg16(ctl) == 0x0307)               // IO_Enable reads 1, 15:8 kept
        try dev.configWrite(ctl + 1, width: 1, value: 0x01)
        #expect(try dev.cfg16(ctl) == 0x0107)
    }

    /// A 4-byte read at Control2 returns Status2 in the upper half.
    @Test func dwordReadAtControl2() throws {
        let (dev, d, _) = try makeDevice { $0.capabilities.cache = true }
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x0009)   // Disable Caching, Mem Clr Enable
        let v = try dev.cfg32(d.dvsec(CXLDeviceDVSEC.control2))
        #expect(v & 0xFFFF == 0x0009)
        #expect(v >> 16 == UInt32(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.status2))))
        #expect(v >> 16 & 0x8000 != 0)   // PM Init Complete
    }

    @Test func ioEnableReadsOneAndIsReadOnly() throws {
        let (dev, d, _) = try makeDevice()
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control), width: 2, value: 0)
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.control)) & 0x2 == 0x2)
    }

    @Test func configLockFreezesRWLUntilConventionalReset() throws {
        let (dev, d, _) = try makeDevice()
        let dv = d.cxlDevice
        try dev.configWrite(dv + 0x20, width: 4, value: 0x10)
        try dev.configWrite(dv + 0x24, width: 4, value: 0x9000_0000)
        try dev.configWrite(dv + 0x0C, width: 2, value: 0x4)
        try dev.configWrite(dv + 0x14, width: 2, value: 1)
        // Control, Range 1 Base frozen; Lock itself write-once; Control2 still RW.
        try dev.configWrite(dv + 0x0C, width: 2, value: 0)
        try dev.configWrite(dv + 0x20, width: 4, value: 0)
        try dev.configWrite(dv + 0x24, width: 4, value: 0)
        try dev.configWrite(dv + 0x14, width: 2, value: 0)
        try dev.configWrite(dv + 0x10, width: 2, value: 0x8)
        #expect(try dev.cfg16(dv + 0x0C) == 0x6)
        #expect(try dev.cfg32(dv + 0x20) == 0x10)
        #expect(try dev.cfg32(dv + 0x24) == 0x9000_0000)
        #expect(try dev.cfg16(dv + 0x14) == 1)
        #expect(try dev.cfg16(dv + 0x10) == 0x8)
        try dev.reset(.bus)
        #expect(try dev.cfg16(dv + 0x14) == 0)
        try dev.configWrite(dv + 0x0C, width: 2, value: 0x4)
        #expect(try dev.cfg16(dv + 0x0C) == 0x6)
    }

    @Test func barSizing() throws {
        let (dev, _, _) = try makeDevice { $0.prefetchableMemoryBAR = true; $0.memorySize = 768 * MiB }
        for o in stride(from: 0x10, to: 0x28, by: 4) { try dev.configWrite(o, width: 4, value: 0xFFFF_FFFF) }
        #expect(try dev.cfg32(0x10) == UInt32(truncatingIfNeeded: ~(Layout.bar0Size - 1)) | 0x4)
        #expect(try dev.cfg32(0x14) == 0xFFFF_FFFF)
        #expect(try dev.cfg32(0x18) == 0xC000_000C)       // 1 GiB, 64-bit, prefetchable
        #expect(try dev.cfg32(0x1C) == 0xFFFF_FFFF)
        #expect(try dev.cfg32(0x20) == 0 && dev.cfg32(0x24) == 0)
        #expect(dev.bars.map(\.index) == [0, 2])
        #expect(dev.bars[1].prefetchable && dev.bars[1].size == GiB)
    }

    @Test func memoryBARReachesDeviceMemory() throws {
        let (dev, _, _) = try makeDevice { $0.prefetchableMemoryBAR = true; $0.memorySize = 256 * MiB }
        try dev.barWrite(2, offset: 0x1003, width: 1, value: 0xAB)
        try dev.barWrite(2, offset: 0x2000, width: 8, value: 0x0102_0304_0506_0708)
        #expect(try dev.readDPA(0x1003, count: 1) == [0xAB])
        #expect(try dev.barRead(2, offset: 0x2004, width: 4) == 0x0102_0304)
        #expect(throws: PCIError.self) { try dev.barRead(2, offset: 256 * MiB, width: 1) }
    }

    @Test(arguments: [(UInt64(0x1000), 1), (0x1000, 2), (0x1002, 4), (0x1004, 8), (0x1001, 4)])
    func componentAccessMustBeAligned32or64(offset: UInt64, width: Int) throws {
        let (dev, _, _) = try makeDevice()
        #expect(throws: PCIError.self) { try dev.barRead(0, offset: offset, width: width) }
        #expect(throws: PCIError.self) { try dev.barWrite(0, offset: offset, width: width, value: 0) }
    }

    @Test func component64BitAccess() throws {
        let (dev, d, _) = try makeDevice()
        try dev.barWrite(0, offset: d.decoder(0), width: 8, value: 0x0000_0012_3000_0000)
        #expect(try dev.barRead(0, offset: d.decoder(0), width: 8) == 0x0000_0012_3000_0000)
        #expect(try dev.bar32(d.decoder(0)) == 0x3000_0000)
    }

    /// A bulk BAR0 read inside the CXL.cachemem registers (copied from the register file at once) gives the
    /// bytes DWORD reads give, as does one straddling the block's end (the per-DWORD path); reads that are not
    /// DWORD-aligned, not whole DWORDs, or past BAR0 are errors.
    @Test func bulkComponentReadsEqualDWORDReads() throws {
        let (dev, d, _) = try makeDevice { $0.decoderCount = 4 }
        try dev.barWrite(0, offset: d.decoder(0), width: 8, value: 0x0000_0012_3000_0000)
        try dev.barWrite(0, offset: d.decoder(1) + 8, width: 4, value: 0x1000_0000)
        func dwords(_ offset: UInt64, _ count: Int) throws -> [UInt8] {
            try stride(from: 0, to: count, by: 4).flatMap { i in
                let v = try dev.barRead(0, offset: offset + UInt64(i), width: 4)
                return (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * $0)) }
            }
        }
        let blockEnd = d.cacheMem + UInt64(ComponentRegisterBlock.cacheMemSize)
        for (offset, count) in [(d.hdm, HDMDecoderCapability.length(decoders: 4)), (d.cacheMem, ComponentRegisterBlock.cacheMemSize),
                                (blockEnd - 16, 32)] {
            #expect(try dev.barReadBytes(0, offset: offset, count: count) == dwords(offset, count), "\(hex64(offset))+\(count)")
        }
        #expect(try dev.barReadBytes(0, offset: d.decoder(0), count: 8) == [0, 0, 0, 0x30, 0x12, 0, 0, 0])
        #expect(throws: PCIError.self) { try dev.barReadBytes(0, offset: d.hdm + 2, count: 8) }
        #expect(throws: PCIError.self) { try dev.barReadBytes(0, offset: d.hdm, count: 6) }
        #expect(throws: PCIError.self) { try dev.barReadBytes(0, offset: Layout.bar0Size - 4, count: 8) }
        #expect(throws: PCIError.self) { try dev.barReadBytes(0, offset: .max - 3, count: 8) }
    }

    /// A batch of posted BAR0 writes (one lock, one device time) applies in order as the same writes one by one;
    /// a write that fails its access check throws that write's error after the writes before it were performed,
    /// and none after it is; a batch for a BAR the device does not have is `noSuchBAR`.
    @Test func postedBatchAppliesInOrderAndStopsAtTheFirstBadWrite() throws {
        let (dev, d, _) = try makeDevice()
        let (one, _, _) = try makeDevice()
        let good = [PostedBARWrite(offset: d.decoder(0), width: 4, value: 0x1000_0000),
                    PostedBARWrite(offset: d.decoder(0), width: 8, value: 0x0000_0012_3000_0000),
                    PostedBARWrite(offset: d.decoder(1), width: 4, value: 0x5000_0000)]
        try dev.barWritePosted(0, good)
        for w in good { try one.barWrite(0, offset: w.offset, width: w.width, value: w.value) }
        for n in 0..<2 { #expect(try dev.barRead(0, offset: d.decoder(n), width: 8) == one.barRead(0, offset: d.decoder(n), width: 8)) }
        #expect(try dev.barRead(0, offset: d.decoder(0), width: 8) == 0x0000_0012_3000_0000)

        let (bad, _, _) = try makeDevice()
        let expected: PCIError
        do { try bad.barWrite(0, offset: d.decoder(0) + 2, width: 4, value: 0); Issue.record("unaligned write accepted"); return }
        catch { expected = error }
        #expect(throws: expected) {
            try bad.barWritePosted(0, [PostedBARWrite(offset: d.decoder(0), width: 4, value: 0x1000_0000),
                                       PostedBARWrite(offset: d.decoder(0) + 2, width: 4, value: 0),
                                       PostedBARWrite(offset: d.decoder(1), width: 4, value: 0x5000_0000)])
        }
        #expect(try bad.bar32(d.decoder(0)) == 0x1000_0000)
        #expect(try bad.bar32(d.decoder(1)) == 0)
        #expect(throws: PCIError.noSuchBAR(3)) { try bad.barWritePosted(3, [PostedBARWrite(offset: 0, width: 4, value: 0)]) }
    }

    @Test(arguments: [(0, 3), (1, 2), (2, 4), (4094, 4), (4096, 1), (-1, 1)])
    func configAccessErrors(offset: Int, width: Int) throws {
        let (dev, _, _) = try makeDevice()
        #expect(throws: PCIError.self) { try dev.configRead(offset, width: width) }
    }

    @Test func otherBARsDoNotExist() throws {
        let (dev, _, _) = try makeDevice()
        #expect(throws: PCIError.noSuchBAR(2)) { try dev.barRead(2, offset: 0, width: 4) }
    }

    @Test func hdmBaseLowReservedBits() throws {
        let (dev, d, _) = try makeDevice()
        try dev.setBar32(d.decoder(0), 0xFFFF_FFFF)
        #expect(try dev.bar32(d.decoder(0)) == 0xF000_0000)
        // Committed / Error Not Committed are RO; UIO fields hard-wired 0.
        try dev.setBar32(d.control(0), 0x0FFF_FDFF)
        #expect(try dev.decoderControl(d, 0) == 0x0F00_31FF)
    }

    @Test func msixDeliveryAndPendingBits() throws {
        let (dev, _, _) = try makeDevice()
        final class Box: @unchecked Sendable { var v: [Int] = [] }
        let got = Box()
        dev.setInterruptSink { got.v.append($0) }
        dev.signal(vector: 1)               // MSI-X disabled: dropped
        try dev.configWrite(Layout.msix + 2, width: 2, value: 0x8000)
        dev.signal(vector: 1)               // masked: pending
        #expect(got.v.isEmpty)
        #expect(try dev.barRead(0, offset: Layout.msixPBA, width: 8) == 0x2)
        try dev.setBar32(Layout.msixTable + 16 + 0xC, 0)   // unmask vector 1
        #expect(got.v == [1])
        #expect(try dev.barRead(0, offset: Layout.msixPBA, width: 8) == 0)
        dev.signal(vector: 1)
        #expect(got.v == [1, 1])
    }
}

@Suite("Memory Space Enable gating (profile switch)")
struct MemorySpaceGateTests {
    @Test func gatedBARsReadAllOnesAndDropWrites() throws {
        var p = DeviceProfile()
        p.memorySpaceEnableGatesBARs = true
        p.prefetchableMemoryBAR = true
        p.memorySize = 256 * MiB
        let dev = try EmulatedCXLDevice(profile: p, clock: ManualClock())
        try dev.configWrite(0x04, width: 2, value: 0x2)
        let d = try Discovered(dev)
        try dev.configWrite(0x04, width: 2, value: 0x0)
        #expect(try dev.barRead(0, offset: d.cacheMem, width: 4) == 0xFFFF_FFFF)
        #expect(try dev.barRead(0, offset: d.cacheMem, width: 8) == ~0)
        #expect(try dev.barRead(2, offset: 0, width: 2) == 0xFFFF)
        try dev.barWrite(0, offset: d.decoder(0) + 4, width: 4, value: 0x12)
        try dev.barWrite(2, offset: 0, width: 1, value: 0x34)
        try dev.configWrite(0x04, width: 2, value: 0x2)
        #expect(try dev.bar32(d.cacheMem) == 0x0311_0001)
        #expect(try dev.bar32(d.decoder(0) + 4) == 0)
        #expect(try dev.barRead(2, offset: 0, width: 1) == 0)
        // FLR clears Memory Space Enable: gated again.
        try dev.reset(.flr)
        #expect(try dev.bar32(d.cacheMem) == 0xFFFF_FFFF)
    }

    @Test func ungatedByDefault() throws {
        let (dev, d, _) = try makeDevice()
        #expect(try dev.cfg16(0x04) & 0x2 == 0)
        #expect(try dev.bar32(d.cacheMem) == 0x0311_0001)
    }
}
