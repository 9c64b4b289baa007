import CXL
import CXLEmulator
import Foundation
import Logging
import PCI
import Testing
import VFIO
import VFIOUser
@testable import VFIOCXL


/// vfio-cxl over a real UNIX socket: the emulated device behind VFIOCXLDevice,
/// served by VFIOUserServer, driven by VFIOUserClient.
final class CXLServer: @unchecked Sendable {
    let emulated: EmulatedCXLDevice
    let device: VFIOCXLDevice
    let server: VFIOUserServer
    let path: String
    private let done = DispatchSemaphore(value: 0)

    init(_ profileName: String, fast: Bool = true, configure: (inout DeviceProfile) -> Void = { _ in }) throws {
        var profile = try DeviceProfile.named(profileName)
        if fast { profile.timing.timeFactor = 0.01 }
        configure(&profile)
        emulated = try EmulatedCXLDevice(profile: profile)
        var options = VFIOCXLOptions()
        options.state.resetQuietTime = .milliseconds(1)
        options.state.resetPollInterval = .milliseconds(1)
        options.logger.logLevel = .critical
        device = try VFIOCXLDevice(function: emulated, memory: emulated, options: options)
        path = NSTemporaryDirectory() + "vfio-cxl-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var logger = Logger(label: "test.vfio-cxl")
        logger.logLevel = .critical
        server = try VFIOUserServer(device: device, socketPath: path, logger: logger)
        let t = Thread { [self] in
            try? server.run()
            done.signal()
        }
        t.start()
    }

    func client() throws -> VFIOUserClient {
        var c = VFIOUserClientConfiguration()
        c.timeoutMilliseconds = 10_000
        return try VFIOUserClient(socketPath: path, configuration: c)
    }

    func stop() { server.stop(); _ = done.wait(timeout: .now() + 10) }

    var layout: CXLPassthroughLayout { device.layout! }
    /// Host (emulated device) decoder n register, read directly.
    func hostDecoder(_ n: Int, _ i: Int) throws -> UInt64 {
        let r = HDMDecoderCapability.decoderRegisters(n, endpoint: true)[i]
        return try emulated.barRead(layout.componentBAR, offset: layout.componentOffset + UInt64(layout.hdmOffset + r.offset), width: 4)
    }
}

extension VFIOUserClient {
    func read32(region: UInt32, _ offset: Int) throws -> UInt32 {
        let b = try read(region: region, offset: UInt64(offset), count: 4)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }
    func write32(region: UInt32, _ offset: Int, _ v: UInt32) throws {
        try write(region: region, offset: UInt64(offset), data: (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(8 * $0)) })
    }
    func config16(_ offset: Int) throws -> UInt16 {
        let b = try read(region: VFIOPCIRegion.config.rawValue, offset: UInt64(offset), count: 2)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }
}

let comp = VFIOCXLUAPI.componentRegionIndex
let mem = VFIOCXLUAPI.memoryRegionIndex
let cfg = VFIOPCIRegion.config.rawValue

/// COMP_REGS offset of HDM decoder n register i (the v2 region starts at the CXL.cachemem area).
func hdmReg(_ s: CXLServer, _ n: Int, _ i: Int) -> Int {
    s.layout.hdmOffset - ComponentRegisterBlock.cacheMemOffset + HDMDecoderCapability.decoderRegisters(n, endpoint: true)[i].offset
}

func programDecoder(_ c: VFIOUserClient, _ s: CXLServer, _ n: Int, base: UInt64, size: UInt64, control: UInt32) throws {
    try c.write32(region: comp, hdmReg(s, n, 0), UInt32(base & 0xF000_0000))
    try c.write32(region: comp, hdmReg(s, n, 1), UInt32(base >> 32))
    try c.write32(region: comp, hdmReg(s, n, 2), UInt32(size & 0xF000_0000))
    try c.write32(region: comp, hdmReg(s, n, 3), UInt32(size >> 32))
    try c.write32(region: comp, hdmReg(s, n, 4), control)
}

let commitBit = UInt32(HDMDecoderCapability.Control.commit.mask)
let committedBit = UInt32(HDMDecoderCapability.Control.committed.mask)
let errorBit = UInt32(HDMDecoderCapability.Control.errorNotCommitted.mask)
let lockOnCommitBit = UInt32(HDMDecoderCapability.Control.lockOnCommit.mask)

@Suite("vfio-cxl end to end over a UNIX socket", .serialized)
struct VFIOCXLEndToEndTests {
    @Test func discoversTheCXLCapabilityAndBothRegions() throws {
        let s = try CXLServer("type2"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let info = try c.deviceInfo()
        #expect(info.flags.contains(.pci) && info.flags.contains(VFIOCXLUAPI.deviceFlag) && info.flags.contains(.caps))
        let cap = try VFIOCXLCapability(parsing: #require(info.capabilities.first { $0.id == VFIOCXLUAPI.capabilityID }))
        #expect(Int(cap.hdmRegistersBAR) == s.layout.componentBAR)
        #expect(cap.hdmRegistersOffset == s.layout.componentOffset + UInt64(ComponentRegisterBlock.cacheMemOffset))
        #expect(!cap.flags.contains(.firmwareCommitted))
        // COMP_REGS starts at the CXL.cachemem area: the CXL Capability Array Header (id 1) is at offset 0, and
        // the region ends with the last decoder; the HDM Decoder Count there says 2 decoders.
        #expect(try c.read32(region: comp, 0) & 0xFFFF == UInt32(CacheMemCapabilityID.capability.rawValue))
        #expect(try c.regionInfo(comp).size == UInt64(hdmReg(s, 1, 6) + 4 + 4))
        #expect(throws: (any Error).self) { try c.read32(region: comp, hdmReg(s, 1, 6) + 8) }
        for (index, subtype) in [(cap.memoryRegionIndex, VFIOCXLUAPI.memorySubtype), (cap.componentRegionIndex, VFIOCXLUAPI.componentRegistersSubtype)] {
            let r = try c.regionInfo(index)
            let t = try VFIORegionTypeCapability(parsing: #require(r.info.capabilities.first { $0.id == VFIORegionCapabilityID.type }))
            #expect(t.type == VFIOCXLUAPI.regionType && t.subtype == subtype)
        }
        #expect(try c.regionInfo(mem).info.size == s.emulated.memorySize)
    }

    @Test func deviceMemoryIsReadWriteAndMappedWithZeroCopy() throws {
        let s = try CXLServer("type2"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        try c.write(region: mem, offset: 0x1000, data: [1, 2, 3, 4])
        #expect(try s.emulated.readDPA(0x1000, count: 4) == [1, 2, 3, 4])
        let region = try c.regionInfo(mem)
        #expect(region.flags.contains(.mmap))
        let maps = try c.mapRegion(region)
        let m = try #require(maps.first)
        (m.memory.base + 0x2000).storeBytes(of: 0xCAFE_F00D as UInt32, as: UInt32.self)
        #expect(try s.emulated.readDPA(0x2000, count: 4) == [0x0D, 0xF0, 0xFE, 0xCA])
        #expect(try c.read(region: mem, offset: 0x2000, count: 4) == [0x0D, 0xF0, 0xFE, 0xCA])
        #expect(throws: (any Error).self) { try c.read(region: mem, offset: s.emulated.memorySize - 2, count: 4) }
    }

    /// A hostile client holding the device-memory fd it was handed for mmap cannot shrink or grow it (the memfd's
    /// size is sealed), so the server's own mapping never faults: it keeps serving the memory region.
    @Test func clientCannotTruncateTheDeviceMemoryFD() throws {
        let s = try CXLServer("type2"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let region = try c.regionInfo(mem)
        let fd = try #require(region.fd)
        #expect(ftruncate(fd, 0) == -1 && errno == EPERM)
        #expect(ftruncate(fd, off_t(2 * s.emulated.memorySize)) == -1 && errno == EPERM)
        try c.write(region: mem, offset: s.emulated.memorySize - 4, data: [9, 8, 7, 6])
        #expect(try c.read(region: mem, offset: s.emulated.memorySize - 4, count: 4) == [9, 8, 7, 6])
    }

    @Test func guestCommitIsValidatedAndNeverReachesTheHost() throws {
        let s = try CXLServer("type2"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let hostBefore = try (0..<7).map { try s.hostDecoder(0, $0) }
        // Guest decoder 0 at a guest physical address, 512 MiB.
        try programDecoder(c, s, 0, base: 0x1_0000_0000, size: 512 << 20, control: commitBit)
        let ctrl = try c.read32(region: comp, hdmReg(s, 0, 4))
        #expect(ctrl & committedBit != 0 && ctrl & errorBit == 0)
        #expect(try c.read32(region: comp, hdmReg(s, 0, 0)) == 0)
        #expect(try c.read32(region: comp, hdmReg(s, 0, 1)) == 1)
        #expect(try (0..<7).map { try s.hostDecoder(0, $0) } == hostBefore)
        // The same registers through the trapped BAR range.
        let barOffset = Int(s.layout.componentOffset) + ComponentRegisterBlock.cacheMemOffset + hdmReg(s, 0, 4)
        #expect(try c.read32(region: UInt32(s.layout.componentBAR), barOffset) == ctrl)
        // Decoder 1 below decoder 0's end: not ascending -> Error Not Committed.
        try programDecoder(c, s, 1, base: 0x1_0000_0000, size: 256 << 20, control: commitBit)
        let bad = try c.read32(region: comp, hdmReg(s, 1, 4))
        #expect(bad & errorBit != 0 && bad & committedBit == 0)
        // De-commit decoder 0.
        try c.write32(region: comp, hdmReg(s, 0, 4), 0)
        #expect(try c.read32(region: comp, hdmReg(s, 0, 4)) & committedBit == 0)
    }

    @Test func lockOnCommitFreezesTheShadowDecoder() throws {
        let s = try CXLServer("type2"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        try programDecoder(c, s, 0, base: 0x2_0000_0000, size: 256 << 20, control: commitBit | lockOnCommitBit)
        try c.write32(region: comp, hdmReg(s, 0, 1), 7)
        try c.write32(region: comp, hdmReg(s, 0, 4), 0)
        #expect(try c.read32(region: comp, hdmReg(s, 0, 1)) == 2)
        #expect(try c.read32(region: comp, hdmReg(s, 0, 4)) & committedBit != 0)
    }

    @Test func componentRegionTakesAlignedDwordsOnly() throws {
        let s = try CXLServer("type2"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        #expect(throws: (any Error).self) { try c.read(region: comp, offset: UInt64(hdmReg(s, 0, 4)), count: 2) }
        #expect(throws: (any Error).self) { try c.read(region: comp, offset: UInt64(hdmReg(s, 0, 4) + 1), count: 4) }
        #expect(throws: (any Error).self) { try c.read(region: comp, offset: UInt64(hdmReg(s, 0, 4)), count: 8) }
        _ = try c.read32(region: comp, hdmReg(s, 0, 4))
    }

    @Test func firmwareCommittedDecoderHidesTheHostAddress() throws {
        let s = try CXLServer("gpu-fw-committed"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let cap = try VFIOCXLCapability(parsing: #require(try c.deviceInfo().capabilities.first { $0.id == VFIOCXLUAPI.capabilityID }))
        #expect(cap.flags.contains(.firmwareCommitted) && cap.flags.contains(.cacheCapable))
        let hostBase = try s.hostDecoder(0, 1) << 32 | s.hostDecoder(0, 0)
        #expect(hostBase != 0)
        let ctrl = try c.read32(region: comp, hdmReg(s, 0, 4))
        #expect(ctrl & committedBit != 0 && ctrl & lockOnCommitBit == 0)
        // No register read anywhere returns the host physical address.
        let hi = UInt32(hostBase >> 32), lo = UInt32(hostBase & 0xFFFF_FFFF)
        for off in stride(from: 0, to: Int(try c.regionInfo(comp).size), by: 4) {
            let v = try c.read32(region: comp, off)
            #expect(!(v == hi && hi != 0 && off == hdmReg(s, 0, 1)))
            #expect(!(v == lo && lo != 0 && off == hdmReg(s, 0, 0)))
        }
        let dvsec = s.layout.dvsecOffset
        for r in [CXLDeviceDVSEC.range1.baseHigh, CXLDeviceDVSEC.range1.baseLow] {
            #expect(try c.read32(region: cfg, dvsec + r.offset) == 0)
        }
        #expect(try s.emulated.read(CXLDeviceDVSEC.range1.baseHigh, base: dvsec) != 0)
        // The guest may write its own GPA into the shadow base.
        try c.write32(region: comp, hdmReg(s, 0, 1), 0x10)
        #expect(try c.read32(region: comp, hdmReg(s, 0, 1)) == 0x10)
        #expect(try s.hostDecoder(0, 1) == UInt64(hi))
    }

    @Test func dvsecByteLanesMergeAndStatus2IsLive() throws {
        let s = try CXLServer("gpu-fw-committed"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let dvsec = s.layout.dvsecOffset
        let ctrlOff = dvsec + CXLDeviceDVSEC.control.offset
        try c.write(region: cfg, offset: UInt64(ctrlOff), data: [0x00, 0x40])  // Viral_Enable (bit 14)
        try c.write(region: cfg, offset: UInt64(ctrlOff), data: [0x05])          // Cache_Enable | Mem_Enable, 1 byte
        #expect(try c.config16(ctrlOff) == 0x4007)  // IO_Enable reads 1; bits 15:8 kept
        // Write Back and Invalidation is forwarded; a 32-bit read at Control2 shows live Status2.
        let ctrl2 = dvsec + CXLDeviceDVSEC.control2.offset
        try c.write(region: cfg, offset: UInt64(ctrl2), data: [0x03, 0x00])
        var status2: UInt32 = 0
        for _ in 0..<200 {
            status2 = try c.read32(region: cfg, ctrl2) >> 16
            if status2 & 1 != 0 { break }
            usleep(1000)
        }
        #expect(status2 & 1 == 1)  // Cache Invalid
        #expect(try c.config16(ctrl2) & 0x6 == 0)  // doorbells read 0
    }

    @Test func configLockIsOneShotInTheShadow() throws {
        let s = try CXLServer("type2"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let dvsec = s.layout.dvsecOffset
        let base = dvsec + CXLDeviceDVSEC.range1.baseHigh.offset
        try c.write32(region: cfg, base, 0x42)
        try c.write(region: cfg, offset: UInt64(dvsec + CXLDeviceDVSEC.lock.offset), data: [1, 0])
        try c.write32(region: cfg, base, 0x43)
        #expect(try c.read32(region: cfg, base) == 0x42)
        try c.write(region: cfg, offset: UInt64(dvsec + CXLDeviceDVSEC.lock.offset), data: [0, 0])
        #expect(try c.config16(dvsec + CXLDeviceDVSEC.lock.offset) & 1 == 1)
        #expect(try s.emulated.read(CXLDeviceDVSEC.lock, base: dvsec) & 1 == 0)  // the host's lock is untouched
    }

    @Test(arguments: ["flr", "reset"])
    func resetRestoresHostDecodersAndGatesMemory(via: String) throws {
        let s = try CXLServer("flr-loses-state"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let host = try (0..<7).map { try s.hostDecoder(0, $0) }
        #expect(UInt32(host[4]) & committedBit != 0)
        try c.write(region: mem, offset: 0, data: [9, 9, 9, 9])
        try programDecoder(c, s, 0, base: 0x1_0000_0000, size: 256 << 20, control: commitBit)
        if via == "flr" {
            let express = try #require(CapabilityList(walking: try s.emulated.configSnapshot()).standard(.pciExpress)).offset
            let devctl = express + PCIExpressCapability.deviceControl.offset
            let v = try c.config16(devctl)
            try c.write(region: cfg, offset: UInt64(devctl), data: [UInt8(v & 0xFF), UInt8(v >> 8) | 0x80])
        } else {
            try c.reset()
        }
        // The non-compliant device lost its decoders; vfio-cxl restored them.
        #expect(try (0..<7).map { try s.hostDecoder(0, $0) } == host)
        #expect(s.device.lastRestore?.succeeded == true)
        // A guest FLR keeps the guest's decoders (CXL 3.1 §9.5: FLR does not affect CXL.mem state); DEVICE_RESET
        // (QEMU: system reset, SBR) is a conventional reset of the guest's view: back to reset values.
        // Memory is open again, contents kept.
        let guestCommitted = try c.read32(region: comp, hdmReg(s, 0, 4)) & committedBit != 0
        #expect(guestCommitted == (via == "flr"))
        #expect(try c.read(region: mem, offset: 0, count: 4) == [9, 9, 9, 9])
        #expect(try c.regionInfo(mem).flags.contains(.mmap))
    }

    @Test func memoryStaysGatedWhenDecoder0CannotComeBack() throws {
        let emulated = try EmulatedCXLDevice(profile: DeviceProfile.named("flr-loses-state"))
        let faulty = NeverCommitsAfterArming(emulated)
        var options = VFIOCXLOptions()
        options.logger.logLevel = .critical
        let d = try VFIOCXLDevice(function: faulty, memory: emulated, options: options)
        #expect(d.isCXL)
        #expect(try d.read(region: mem, offset: 0, count: 4).count == 4)
        faulty.armed = true  // from now on the device never commits a decoder
        #expect(throws: VFIOError.self) { try d.reset() }
        #expect(d.lastRestore?.succeeded == false)
        #expect(throws: VFIOError.system(errno: VFIOErrno.EIO, "device memory is gated: a reset is in progress or decoder 0 is not committed")) {
            try d.read(region: mem, offset: 0, count: 4)
        }
        #expect(try !d.regionInfo(mem).flags.contains(.mmap))
    }

    @Test func guestCXLResetRunsTheHostFlowAndStampsStatus2() throws {
        let s = try CXLServer("gpu-fw-committed"); defer { s.stop() }
        let c = try s.client(); defer { c.close() }
        let host = try (0..<7).map { try s.hostDecoder(0, $0) }
        let ctrl2 = s.layout.dvsecOffset + CXLDeviceDVSEC.control2.offset
        try c.write(region: cfg, offset: UInt64(ctrl2), data: [0x04, 0x00])
        let status2 = try c.config16(s.layout.dvsecOffset + CXLDeviceDVSEC.status2.offset)
        #expect(status2 & 0x2 != 0 && status2 & 0x4 == 0)  // Reset Complete, no Reset Error
        #expect(try (0..<7).map { try s.hostDecoder(0, $0) } == host)
        #expect(try c.regionInfo(mem).flags.contains(.mmap))
    }

    @Test func withoutCXLStateTheDeviceDegradesToPlainPCI() throws {
        let emulated = try EmulatedCXLDevice(profile: DeviceProfile.named("type2"))
        var options = VFIOCXLOptions()
        options.logger.logLevel = .critical
        let d = try VFIOCXLDevice(function: emulated, memory: nil, options: options)
        #expect(!d.isCXL)
        #expect(d.cxlDisabledReason?.contains("no device memory") == true)
        #expect(!d.deviceInfo().flags.contains(VFIOCXLUAPI.deviceFlag))
        #expect(d.deviceInfo().numRegions == UInt32(VFIOPCIRegion.count))
    }
}

/// Forwards to the emulated device, but once armed drops every write that sets
/// Commit in a decoder Control register: a device that never commits again.
final class NeverCommitsAfterArming: PCIFunction, @unchecked Sendable {
    let inner: EmulatedCXLDevice
    var armed = false
    init(_ inner: EmulatedCXLDevice) { self.inner = inner }
    var address: String { inner.address }
    var configSize: Int { inner.configSize }
    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 { try inner.configRead(offset, width: width) }
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) { try inner.configWrite(offset, width: width, value: value) }
    var bars: [BARDescription] { inner.bars }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 { try inner.barRead(bar, offset: offset, width: width) }
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        if armed, let l = try? CXLPassthroughLayout.discover(inner), bar == l.componentBAR,
           (0..<l.decoderCount).contains(where: { offset == l.componentOffset + UInt64(l.hdmOffset + HDMDecoderCapability.decoderRegisters($0, endpoint: true)[4].offset) }),
           UInt32(truncatingIfNeeded: value) & commitBit != 0 {
            return
        }
        try inner.barWrite(bar, offset: offset, width: width, value: value)
    }
    var resetMethods: [PCIResetMethod] { inner.resetMethods }
    func reset(_ method: PCIResetMethod) throws(PCIError) { try inner.reset(method) }
}

/// The emulated device with BAR0 declared mappable (backed by a scratch memfd), to
/// check the region info vfio-cxl gives a mappable component BAR.
final class MappableBAR0: PCIFunction, VFIOMappablePCIFunction, @unchecked Sendable {
    let inner: EmulatedCXLDevice
    let scratch: VFIOSharedMemory
    init(_ inner: EmulatedCXLDevice) throws {
        self.inner = inner
        scratch = try VFIOSharedMemory(name: "bar0", size: Int(inner.bars.first { $0.index == 0 }!.size))
    }
    var address: String { inner.address }
    var configSize: Int { inner.configSize }
    func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 { try inner.configRead(offset, width: width) }
    func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) { try inner.configWrite(offset, width: width, value: value) }
    var bars: [BARDescription] { inner.bars }
    func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 { try inner.barRead(bar, offset: offset, width: width) }
    func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) { try inner.barWrite(bar, offset: offset, width: width, value: value) }
    var resetMethods: [PCIResetMethod] { inner.resetMethods }
    func reset(_ method: PCIResetMethod) throws(PCIError) { try inner.reset(method) }
    func mmapBacking(bar: Int) -> VFIORegionMapping? { bar == 0 ? VFIORegionMapping(fd: scratch.fd, fileOffset: 0) : nil }
}

@Suite("vfio-cxl register pitfalls")
struct VFIOCXLPitfallTests {
    func device(_ profile: String = "type2") throws -> (VFIOCXLDevice, EmulatedCXLDevice) {
        let emulated = try EmulatedCXLDevice(profile: DeviceProfile.named(profile))
        var options = VFIOCXLOptions()
        options.logger.logLevel = .critical
        return (try VFIOCXLDevice(function: emulated, memory: emulated, options: options), emulated)
    }

    @Test func componentBlockIsLeftOutOfTheSparseMMap() throws {
        let emulated = try EmulatedCXLDevice(profile: DeviceProfile.named("type2"))
        var options = VFIOCXLOptions()
        options.logger.logLevel = .critical
        let d = try VFIOCXLDevice(function: MappableBAR0(emulated), memory: emulated, options: options)
        let l = try #require(d.layout)
        let info = try d.regionInfo(UInt32(l.componentBAR))
        #expect(info.flags.contains(.mmap) && info.flags.contains(.caps))
        let sparse = try VFIOSparseMMapCapability(parsing: #require(info.capabilities.first { $0.id == VFIORegionCapabilityID.sparseMMap }),
                                                  regionSize: info.size)
        #expect(!sparse.areas.isEmpty)
        for a in sparse.areas {
            #expect(a.offset + a.size <= l.componentRange.lowerBound || a.offset >= l.componentRange.upperBound)
        }
    }

    @Test func readOnlyAndReservedDecoderBitsHold() throws {
        let (d, _) = try device()
        let l = try #require(d.layout)
        let hdm = l.hdmOffset - ComponentRegisterBlock.cacheMemOffset  // COMP_REGS starts at the CXL.cachemem area
        let ctrl = hdm + HDMDecoderCapability.decoderRegisters(0, endpoint: true)[4].offset
        let baseLow = hdm + HDMDecoderCapability.decoderRegisters(0, endpoint: true)[0].offset
        try d.write(region: comp, offset: UInt64(baseLow), data: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(try d.read(region: comp, offset: UInt64(baseLow), count: 4) == [0, 0, 0, 0xF0])  // bits 27:0 reserved
        // Everything but Commit: RO Committed / Error Not Committed, reserved 15 and 31:28, UIO not capable.
        try d.write(region: comp, offset: UInt64(ctrl), data: [0xFF, 0xFD, 0xFF, 0xFF])
        let v = try d.read(region: comp, offset: UInt64(ctrl), count: 4)
        let value = UInt32(v[0]) | UInt32(v[1]) << 8 | UInt32(v[2]) << 16 | UInt32(v[3]) << 24
        #expect(value & (committedBit | errorBit) == 0)
        #expect(value & 0xF000_8000 == 0)
        #expect(value & commitBit == 0)
        // The HDM Decoder Capability register is read-only.
        let before = try d.read(region: comp, offset: UInt64(hdm), count: 4)
        try d.write(region: comp, offset: UInt64(hdm), data: [0, 0, 0, 0])
        #expect(try d.read(region: comp, offset: UInt64(hdm), count: 4) == before)
        // The capability array below the HDM structure is read-only in COMP_REGS.
        let header = try d.read(region: comp, offset: 0, count: 4)
        try d.write(region: comp, offset: 0, data: [0, 0, 0, 0])
        #expect(try d.read(region: comp, offset: 0, count: 4) == header)
    }
}
