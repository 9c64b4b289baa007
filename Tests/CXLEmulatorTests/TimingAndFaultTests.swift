import Testing
import PCI
import CXL
@testable import CXLEmulator

@Suite("CXL Reset, doorbells, memory status, faults")
struct TimingAndFaultTests {
    static let base: UInt64 = 0x40_0000_0000

    func status2(_ dev: EmulatedCXLDevice, _ d: Discovered) throws -> UInt16 { try dev.cfg16(d.dvsec(CXLDeviceDVSEC.status2)) }

    /// §8.1.3.4: completion after the Capability timeout times the time factor.
    @Test(arguments: [(UInt64(10), 1.0), (10_000, 0.001), (100_000, 0.0001), (1000, 0.5)])
    func cxlResetCompletesAfterScaledTimeout(timeoutMs: UInt64, factor: Double) throws {
        let (dev, d, clock) = try makeDevice {
            $0.capabilities.cxlResetTimeoutMilliseconds = timeoutMs
            $0.timing.timeFactor = factor
        }
        let ns = UInt64((Double(timeoutMs) * 1_000_000 * factor).rounded())
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x4)
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.control2)) & 0x4 == 0)     // doorbell reads 0
        #expect(dev.nextEventDeadline == ns)
        clock.advance(nanoseconds: ns - 1)
        #expect(try status2(dev, d) & 0x6 == 0)
        #expect(dev.isCXLResetInProgress)
        clock.advance(nanoseconds: 1)
        #expect(try status2(dev, d) & 0x6 == 0x2)
        #expect(!dev.isCXLResetInProgress)
        // A second reset clears Complete at initiation.
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x4)
        #expect(try status2(dev, d) & 0x6 == 0)
    }

    @Test func cxlResetDurationOverride() throws {
        let (dev, d, clock) = try makeDevice { $0.timing.cxlResetMilliseconds = 3; $0.timing.timeFactor = 2 }
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x4)
        clock.advance(milliseconds: 5.999)
        #expect(try status2(dev, d) & 0x2 == 0)
        clock.advance(milliseconds: 0.001)
        #expect(try status2(dev, d) & 0x2 == 0x2)
    }

    @Test func cxlResetNotCapableIgnoresDoorbell() throws {
        let (dev, d, clock) = try makeDevice { $0.capabilities.cxlReset = false; $0.capabilities.memClear = false }
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0xC)
        clock.advance(milliseconds: 1000)
        #expect(!dev.isCXLResetInProgress)
        #expect(try status2(dev, d) & 0x6 == 0)
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.control2)) & 0xC == 0)
    }

    @Test func memoryIsUnreachableDuringCXLReset() throws {
        let (dev, d, clock) = try makeDevice()
        try dev.program(d, decoder: 0, base: Self.base, size: granule)
        try dev.enableHDM(d)
        try dev.enableMem(d)
        try dev.writeMemory(hpa: Self.base, bytes: [1])
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x4)
        #expect(throws: DeviceMemoryError.resetInProgress) { try dev.readMemory(hpa: Self.base, count: 1) }
        clock.advance(milliseconds: 100)
        // CXL Reset uncommitted the decoder and cleared Mem_Enable; memory (no Mem Clr) kept.
        #expect(throws: DeviceMemoryError.memDisabled) { try dev.readMemory(hpa: Self.base, count: 1) }
        #expect(try dev.readDPA(0, count: 1) == [1])
    }

    @Test func faultCXLResetNeverCompletes() throws {
        let (dev, d, clock) = try makeDevice { $0.faults.cxlResetNeverCompletes = true }
        try dev.program(d, decoder: 0, base: Self.base, size: granule)
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x4)
        clock.advance(milliseconds: 1_000_000)
        #expect(try status2(dev, d) & 0x6 == 0)
        #expect(dev.isCXLResetInProgress)
        #expect(try dev.committed(d, 0))
        // Only a conventional reset gets the device back.
        try dev.reset(.bus)
        #expect(!dev.isCXLResetInProgress)
    }

    @Test func faultCXLResetReportsError() throws {
        let (dev, d, clock) = try makeDevice { $0.faults.cxlResetReportsError = true }
        try dev.program(d, decoder: 0, base: Self.base, size: granule)
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x4)
        clock.advance(milliseconds: 100)
        #expect(try status2(dev, d) & 0x6 == 0x4)
        #expect(!dev.isCXLResetInProgress)
        #expect(try dev.committed(d, 0))     // nothing was reset
    }

    /// Memory_Info_Valid then Memory_Active after their (scaled) delays, after power-on
    /// and again after a conventional reset.
    @Test func memoryValidAndActiveDelays() throws {
        let (dev, d, clock) = try makeDevice {
            $0.timing.memoryInfoValidMilliseconds = 1000
            $0.timing.memoryActiveMilliseconds = 2000
            $0.timing.timeFactor = 0.5
        }
        let sizeLow = d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).sizeLow)
        func mds() throws -> UInt64 { try dev.barRead(0, offset: d.deviceRegsOffset + UInt64(Layout.memoryDeviceStatusRegisters), width: 8) }
        for _ in 0..<2 {
            #expect(try dev.cfg32(sizeLow) & 3 == 0)
            #expect(try (mds() >> 2) & 3 == 0)
            clock.advance(milliseconds: 500)
            #expect(try dev.cfg32(sizeLow) & 3 == 1)
            clock.advance(milliseconds: 499)
            #expect(try dev.cfg32(sizeLow) & 3 == 1)
            clock.advance(milliseconds: 1)
            #expect(try dev.cfg32(sizeLow) & 3 == 3)
            #expect(try (mds() >> 2) & 3 == 1)
            try dev.reset(.link)
        }
    }

    @Test func faultMemoryNeverActive() throws {
        let (dev, d, clock) = try makeDevice { $0.faults.memoryNeverActive = true }
        clock.advance(milliseconds: 1_000_000)
        #expect(try dev.cfg32(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).sizeLow)) & 3 == 1)
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).baseHigh), width: 4, value: 0x40)
        try dev.enableMem(d)
        #expect(throws: DeviceMemoryError.memoryNotActive) { try dev.readMemory(hpa: Self.base, count: 1) }
    }

    /// §8.1.3.4/.5: Initiate Cache Write Back and Invalidation clears, then sets Cache Invalid.
    @Test func cacheWritebackInvalidate() throws {
        let (dev, d, clock) = try makeDevice {
            $0.capabilities.cache = true
            $0.capabilities.cacheWritebackInvalidate = true
            $0.timing.cacheWritebackInvalidateMicroseconds = 50
        }
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0x3)   // Disable Caching + Initiate WB&I
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.control2)) == 0x1)
        #expect(try status2(dev, d) & 0x1 == 0)
        clock.advance(nanoseconds: 49_999)
        #expect(try status2(dev, d) & 0x1 == 0)
        clock.advance(nanoseconds: 1)
        #expect(try status2(dev, d) & 0x1 == 1)
    }

    /// The seed thread's device: FLR wipes DVSEC and HDM state (and CONFIG_LOCK).
    @Test func faultFLRLosesCXLState() throws {
        for name in ["type2", "flr-loses-state"] {
            let dev = try EmulatedCXLDevice(profile: DeviceProfile.named(name), clock: ManualClock())
            let d = try Discovered(dev)
            try dev.program(d, decoder: 0, base: Self.base, size: granule, lock: true)
            try dev.enableHDM(d)
            try dev.enableMem(d)
            try dev.configWrite(d.dvsec(CXLDeviceDVSEC.lock), width: 2, value: 1)
            try dev.writeMemory(hpa: Self.base, bytes: [9])
            try dev.reset(.flr)
            let loses = name == "flr-loses-state"
            #expect(try dev.committed(d, 0) == !loses, "\(name)")
            #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.lock)) == (loses ? 0 : 1), "\(name)")
            #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.control)) & 0x4 == (loses ? 0 : 4), "\(name)")
            #expect(try dev.readDPA(0, count: 1) == [9], "\(name): memory contents survive FLR")
            if !loses { #expect(try dev.readMemory(hpa: Self.base, count: 1) == [9]) }
        }
    }

    @Test func advanceTimeOnAManualClock() throws {
        let (dev, d, _) = try makeDevice { $0.timing.commitLatencyMicroseconds = 20_000 }
        try dev.program(d, decoder: 0, base: Self.base, size: granule)
        #expect(!dev.waitForPendingEvents(timeoutNanoseconds: 1_000_000_000))   // manual: never sleeps
        dev.advanceTime(milliseconds: 19)
        #expect(try !dev.committed(d, 0))
        dev.advanceTime(milliseconds: 1)
        #expect(try dev.committed(d, 0))
        #expect(dev.waitForPendingEvents(timeoutNanoseconds: 0))
    }

    @Test func invalidProfileIsAProfileError() {
        var p = DeviceProfile()
        p.memorySize = 3
        #expect(throws: EmulatorError.self) { try EmulatedCXLDevice(profile: p) }
        do { _ = try EmulatedCXLDevice(profile: p) } catch {
            guard case .profile(.invalid) = error else { Issue.record("\(error)"); return }
        }
    }

    @Test func waitForPendingEventsOnARealClock() throws {
        var p = DeviceProfile()
        p.timing.commitLatencyMicroseconds = 2_000
        let dev = try EmulatedCXLDevice(profile: p)
        let d = try Discovered(dev)
        try dev.program(d, decoder: 0, base: Self.base, size: granule)
        #expect(dev.waitForPendingEvents(timeoutNanoseconds: 5_000_000_000))
        #expect(try dev.committed(d, 0))
    }
}
