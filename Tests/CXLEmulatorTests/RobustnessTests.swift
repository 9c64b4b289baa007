import Testing
import TestSupport
import Dispatch
import PCI
import CXL
@testable import CXLEmulator

/// Random software against the device: it must never trap, and invariants the spec
/// makes hardware keep must hold after every access.
@Suite("Robustness")
struct RobustnessTests {
    @Test(arguments: [UInt64(1), 2, 3, 4])
    func randomAccessesKeepInvariants(seed: UInt64) throws {
        var rng = SplitMix64(state: seed)
        let (dev, d, clock) = try makeDevice {
            $0.decoderCount = 4
            $0.memorySize = 512 * MiB
            $0.timing.commitLatencyMicroseconds = 100
            $0.timing.timeFactor = 0.01
        }
        let regions: [ClosedRange<UInt64>] = [d.cacheMem...(d.cacheMem + 0xFFF), d.hdm...(d.hdm + 0x8F),
                                              Layout.deviceRegisterBlock...(Layout.deviceRegisterBlock + 0x2FF),
                                              Layout.msixTable...(Layout.msixPBA + 0xFF), 0...(Layout.bar0Size - 8)]
        for i in 0..<4000 {
            switch rng.next() % 10 {
            case 0...3:
                let width = [1, 2, 4][Int(rng.next() % 3)]
                let off = Int(rng.next() % UInt64(pcieConfigSpaceSize / width)) * width
                // Keep FLR rare: it is tested elsewhere and would hide everything else.
                if off == Layout.pciExpress + 8 || (width == 4 && off == Layout.pciExpress + 8) { continue }
                try dev.configWrite(off, width: width, value: UInt32(truncatingIfNeeded: rng.next()))
            case 4...7:
                let r = regions[Int(rng.next() % UInt64(regions.count))]
                let width = rng.next() % 2 == 0 ? 4 : 8
                let off = (r.lowerBound + rng.next() % (r.upperBound - r.lowerBound + 1)) & ~UInt64(width - 1)
                let v = rng.next() % 4 == 0 ? UInt64(0x200) << UInt64(rng.next() % 2) : rng.next()
                try dev.barWrite(0, offset: off, width: width, value: v)
            case 8:
                clock.advance(nanoseconds: rng.next() % 2_000_000)
            default:
                if rng.next() % 50 == 0 { try dev.reset([PCIResetMethod.flr, .bus, .link][Int(rng.next() % 3)]) }
                _ = try? dev.readMemory(hpa: rng.next() % (1 << 40), count: Int(rng.next() % 64))
            }
            // Invariants.
            let dv = d.cxlDevice
            #expect(try dev.cfg16(dv + 0x0C) & 0x2 == 0x2, "IO_Enable after access \(i)")
            #expect(try dev.cfg16(dv + 0x10) & 0x6 == 0, "Control2 doorbells read 0 after access \(i)")
            #expect(try dev.cfg16(Layout.pciExpress + 8) & 0x8000 == 0)
            #expect(try dev.cfg32(0) == 0x7202_1E98)
            for n in 0..<4 {
                let ctl = try dev.decoderControl(d, n)
                #expect(ctl & 0xC00 != 0xC00, "decoder \(n) both Committed and Error after access \(i)")
                if ctl & 0x400 != 0 { #expect(ctl & 0x200 != 0, "decoder \(n) Committed without Commit after access \(i)") }
            }
        }
    }

    /// One device, many threads: accesses serialise, nothing tears.
    @Test func concurrentAccess() throws {
        let (dev, d, _) = try makeDevice()
        try dev.program(d, decoder: 0, base: 0x40_0000_0000, size: GiB)
        try dev.enableHDM(d)
        try dev.enableMem(d)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for i in 0..<300 {
                let hpa = 0x40_0000_0000 + UInt64(t) * 0x10_0000 + UInt64(i) * 64
                let bytes = (0..<64).map { UInt8(truncatingIfNeeded: $0 &+ t &+ i) }
                try? dev.writeMemory(hpa: hpa, bytes: bytes)
                #expect((try? dev.readMemory(hpa: hpa, count: 64)) == bytes)
                _ = try? dev.configRead(d.dvsec(CXLDeviceDVSEC.control2), width: 4)
                _ = try? dev.barRead(0, offset: d.control(0), width: 4)
            }
        }
        #expect(try dev.committed(d, 0))
    }
}
