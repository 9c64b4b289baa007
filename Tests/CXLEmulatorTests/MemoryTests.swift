import Testing
import PCI
import CXL
@testable import CXLEmulator

@Suite("Device memory by HPA")
struct MemoryTests {
    static let base: UInt64 = 0x20_0000_0000

    /// An interleave set of N emulated devices sharing one HPA range, each at its own
    /// Interleave Set Position. Writing a pattern through whichever device claims each
    /// 256-byte piece must leave, on device p, HPA chunk k*N + p at DPA row k — the
    /// "chunk mod N" definition, independent of the library's bit-slicing.
    @Test(arguments: [(1, UInt8(0)), (2, 1), (3, 8), (4, 2), (6, 9), (8, 3), (12, 0xA), (16, 4)])
    func interleaveSet(ways: Int, iw: UInt8) throws {
        let ig: UInt8 = ways % 3 == 0 ? 1 : 0        // 512 B for 3/6/12-way, 256 B otherwise
        let g = 256 << Int(ig)
        let size = (ways % 3 == 0 ? 3 : 1) * granule * UInt64(ways > 4 ? ways / (ways % 3 == 0 ? 3 : 1) : 1)
        var devices: [(EmulatedCXLDevice, Discovered)] = []
        for p in 0..<ways {
            let (dev, d, _) = try makeDevice { $0.memorySize = 256 * MiB * UInt64(max(1, ways / 4)) ; $0.decoderCount = 1 }
            try dev.program(d, decoder: 0, base: Self.base, size: size, iw: iw, ig: ig, position: p)
            #expect(try dev.committed(d, 0), "position \(p): \(String(describing: dev.commitFailure(decoder: 0)))")
            try dev.enableHDM(d)
            try dev.enableMem(d)
            devices.append((dev, d))
        }
        let chunks = 3 * ways + 1
        for c in 0..<chunks {
            let hpa = Self.base + UInt64(c * g)
            let pattern = (0..<g).map { UInt8(truncatingIfNeeded: c &* 31 &+ $0) }
            var claimed = 0
            for (p, (dev, _)) in devices.enumerated() {
                do {
                    try dev.writeMemory(hpa: hpa, bytes: pattern)
                    claimed += 1
                    #expect(c % ways == p)
                } catch {
                    guard case .otherInterleavePosition(_, let pos, let mine) = error else { Issue.record("\(error)"); continue }
                    #expect(pos == c % ways && mine == p)
                }
            }
            #expect(claimed == 1)
            let (owner, _) = devices[c % ways]
            #expect(try owner.readDPA(UInt64((c / ways) * g), count: g) == pattern)
            #expect(try owner.readMemory(hpa: hpa, count: g) == pattern)
        }
    }

    /// An access spanning several granules of a 2-way decoder touches only this
    /// device's granules... and fails as a whole if any byte belongs elsewhere.
    @Test func accessCrossingInterleaveBoundaryFailsAtomically() throws {
        let (dev, d, _) = try makeDevice()
        try dev.program(d, decoder: 0, base: Self.base, size: 2 * granule, iw: 1, position: 0)
        try dev.enableHDM(d)
        try dev.enableMem(d)
        try dev.writeMemory(hpa: Self.base + 0x10, bytes: [1, 2, 3])
        #expect(throws: DeviceMemoryError.otherInterleavePosition(hpa: Self.base + 0x100, position: 1, devicePosition: 0)) {
            try dev.writeMemory(hpa: Self.base + 0xF0, bytes: [UInt8](repeating: 9, count: 0x20))
        }
        #expect(try dev.readDPA(0xF0, count: 0x10) == [UInt8](repeating: 0, count: 0x10))
        #expect(try dev.readMemory(hpa: Self.base + 0x10, count: 3) == [1, 2, 3])
    }

    @Test func multipleDecodersWithSkipAllocateDPAInOrder() throws {
        let (dev, d, _) = try makeDevice()
        try dev.program(d, decoder: 0, base: Self.base, size: granule)
        try dev.program(d, decoder: 1, base: Self.base + 4 * granule, size: granule, skip: 2 * granule)
        try dev.enableHDM(d)
        try dev.enableMem(d)
        try dev.writeMemory(hpa: Self.base + 4 * granule + 8, bytes: [0xEE])
        #expect(try dev.readDPA(3 * granule + 8, count: 1) == [0xEE])
        #expect(try dev.translate(hpa: Self.base + 5) == 5)
        // The gap between the decoders is not claimed: an error, never zeros.
        #expect(throws: DeviceMemoryError.notDecoded(hpa: Self.base + granule)) { try dev.readMemory(hpa: Self.base + granule, count: 1) }
        // An access straddling the end of decoder 0 fails.
        #expect(throws: DeviceMemoryError.self) { try dev.readMemory(hpa: Self.base + granule - 4, count: 8) }
    }

    @Test func uncommittedDecoderDoesNotDecode() throws {
        let (dev, d, _) = try makeDevice()
        try dev.program(d, decoder: 0, base: Self.base, size: granule, commit: false)
        try dev.enableHDM(d)
        try dev.enableMem(d)
        #expect(throws: DeviceMemoryError.notDecoded(hpa: Self.base)) { try dev.readMemory(hpa: Self.base, count: 1) }
    }

    /// §8.1.3.8: DVSEC ranges decode only while HDM Decoder Enable is 0.
    @Test func dvsecRangeDecodesOnlyWithoutHDMDecoderEnable() throws {
        let (dev, d, _) = try makeDevice()
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).baseHigh), width: 4, value: 0x20)
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).baseLow), width: 4, value: 0x1000_0000)
        try dev.enableMem(d)
        let rbase: UInt64 = 0x20_1000_0000
        try dev.writeMemory(hpa: rbase + GiB - 2, bytes: [7, 8])
        #expect(try dev.readDPA(GiB - 2, count: 2) == [7, 8])
        #expect(throws: DeviceMemoryError.notDecoded(hpa: rbase + GiB)) { try dev.readMemory(hpa: rbase + GiB, count: 1) }
        #expect(throws: DeviceMemoryError.notDecoded(hpa: rbase - 1)) { try dev.readMemory(hpa: rbase - 1, count: 1) }
        try dev.enableHDM(d)
        #expect(throws: DeviceMemoryError.notDecoded(hpa: rbase)) { try dev.readMemory(hpa: rbase, count: 1) }
    }

    @Test func memEnableGatesCXLMem() throws {
        let (dev, d, _) = try makeDevice()
        try dev.program(d, decoder: 0, base: Self.base, size: granule)
        try dev.enableHDM(d)
        #expect(throws: DeviceMemoryError.memDisabled) { try dev.readMemory(hpa: Self.base, count: 1) }
        try dev.enableMem(d)
        #expect(try dev.readMemory(hpa: Self.base, count: 1) == [0])
    }

    /// Mem Clr punches the memfd out: zeros through the fd, size unchanged.
    @Test func memClearKeepsTheFileSize() throws {
        let (dev, d, clock) = try makeDevice { $0.memorySize = 512 * MiB }
        try dev.writeDPA(0x10, bytes: [1, 2, 3])
        try dev.writeDPA(512 * MiB - 1, bytes: [4])
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: 0xC)   // Mem Clr Enable + Initiate CXL Reset
        dev.advanceTime(milliseconds: 100)
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.status2)) & 0x2 == 0x2)
        var st = stat()
        #expect(fstat(dev.memoryFD, &st) == 0 && UInt64(st.st_size) == 512 * MiB)
        var b = [UInt8](repeating: 9, count: 3)
        #expect(pread(dev.memoryFD, &b, 3, 0x10) == 3 && b == [0, 0, 0])
        #expect(try dev.readDPA(512 * MiB - 1, count: 1) == [0])
        _ = clock
    }

    @Test func memfdIsTheBackingStore() throws {
        let (dev, _, _) = try makeDevice { $0.memorySize = 256 * MiB }
        #expect(dev.memoryFD >= 0 && dev.memorySize == 256 * MiB)
        try dev.writeDPA(0x1234, bytes: [0x5A])
        var b: UInt8 = 0
        #expect(pread(dev.memoryFD, &b, 1, 0x1234) == 1)
        #expect(b == 0x5A)
    }

    /// The memfd goes to every vfio-user client that maps device memory; none of them can shrink (or grow) it under
    /// the emulator's own mapping, which would SIGBUS the server on its next access.
    @Test func memfdSizeIsSealedAgainstPeers() throws {
        let (dev, _, _) = try makeDevice { $0.memorySize = 256 * MiB }
        try dev.writeDPA(256 * MiB - 1, bytes: [0x77])
        #expect(ftruncate(dev.memoryFD, 0) == -1 && errno == EPERM)
        #expect(ftruncate(dev.memoryFD, off_t(512 * MiB)) == -1 && errno == EPERM)
        #expect(try dev.readDPA(256 * MiB - 1, count: 1) == [0x77])
    }
}

#if canImport(Glibc)
import Glibc
#endif
