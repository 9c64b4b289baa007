import Testing
import Foundation
import PCI
import CXL
import CXLEmulator
import VFIO
import VFIOCXL
@testable import CXLKitCommands

/// The v4 device's rules that the selftest checks do not reach: what happens on the host side.
@Suite("vfio-cxl v4 device")
struct V4DeviceTests {
    func v4(_ profile: DeviceProfile) throws -> (VFIOCXLv4Device, EmulatedCXLDevice) {
        let emulated = try EmulatedCXLDevice(profile: profile)
        var o = VFIOCXLv4Options()
        o.logger.logLevel = .critical
        return (try VFIOCXLv4Device(function: emulated, memory: emulated, options: o), emulated)
    }

    func accel() throws -> DeviceProfile { try DeviceProfile.named("cxl-accel") }

    let cfg = VFIOPCIRegion.config.rawValue
    let mem = VFIOCXLv4Device.memoryRegionIndex
    let comp = VFIOCXLv4Device.componentRegionIndex
    func le32(_ b: [UInt8]) -> UInt32 { b.enumerated().reduce(0) { $0 | UInt32($1.element) << UInt32(8 * $1.offset) } }
    func bytes(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(8 * $0)) } }

    func refusal(_ profile: DeviceProfile) -> String? {
        do { _ = try v4(profile); return nil } catch { return "\(error)" }
    }

    @Test func bindRefusesWhatV4Refuses() throws {
        // No committed decoder (software-programmed type2).
        #expect(refusal(try DeviceProfile.named("type2"))?.contains("no HDM decoder is committed") == true)
        var p = try accel()
        p.capabilities.cxlReset = false
        p.capabilities.memClear = false
        #expect(refusal(p)?.contains("no CXL Reset capability") == true, "\(refusal(p) ?? "bound")")
        p = try accel()
        p.firmware?.lockDecoder = false
        #expect(refusal(p)?.contains("without Lock On Commit") == true)
        // The shipped v4 profile and the firmware-committed GPU bind.
        #expect(refusal(try accel()) == nil)
        #expect(refusal(try DeviceProfile.named("gpu-fw-committed")) == nil)
    }

    @Test func twoCommittedDecodersAreRefused() throws {
        var p = try DeviceProfile.named("gpu-fw-committed")
        p.firmware?.size = 512 << 20  // leave DPA for decoder 1
        let emulated = try EmulatedCXLDevice(profile: p)
        let l = try CXLPassthroughLayout.discover(emulated)
        // Commit decoder 1 on the host after decoder 0 (256 MiB above it).
        let r = HDMDecoderRegisters(1)
        let hdm = l.componentOffset + UInt64(l.hdmOffset)
        func w(_ reg: RegisterLayout, _ v: UInt64) throws { try emulated.barWrite(l.componentBAR, offset: hdm + UInt64(reg.offset), width: 4, value: v) }
        try w(r.baseLow, 0x8000_0000); try w(r.baseHigh, 0x40); try w(r.sizeLow, 0x1000_0000); try w(r.sizeHigh, 0)
        try w(r.control, HDMDecoderCapability.Control.commit.mask)
        #expect(try emulated.barRead(l.componentBAR, offset: hdm + UInt64(r.control.offset), width: 4) & HDMDecoderCapability.Control.committed.mask != 0)
        var o = VFIOCXLv4Options(); o.logger.logLevel = .critical
        #expect(throws: VFIOCXLError.self) { try VFIOCXLv4Device(function: emulated, memory: emulated, options: o) }
        do { _ = try VFIOCXLv4Device(function: emulated, memory: emulated, options: o) } catch {
            #expect("\(error)".contains("2 HDM decoders are committed"))
        }
    }

    /// The v4 series binds only a decoder with a real, non-interleaved range: decoder 0 committed (and locked) by
    /// the host with zero size, or 2-way interleaved, is refused at bind with the reason.
    @Test(arguments: [(iw: UInt64(0), size: UInt64(0), reason: "decoder 0 has zero HDM size"),
                      (iw: UInt64(1), size: UInt64(512 << 20), reason: "decoder 0 is interleaved (IW encoding 1)")])
    func zeroSizeAndInterleavedDecodersAreRefused(iw: UInt64, size: UInt64, reason: String) throws {
        let emulated = try EmulatedCXLDevice("type2")
        let l = try CXLPassthroughLayout.discover(emulated)
        let hdm = l.componentOffset + UInt64(l.hdmOffset)
        let global = HDMDecoderCapability.globalControl
        try emulated.barWrite(l.componentBAR, offset: hdm + UInt64(global.offset), width: 4, value: HDMDecoderCapability.hdmDecoderEnable.mask)
        let r = HDMDecoderRegisters(0)
        func w(_ reg: RegisterLayout, _ v: UInt64) throws { try emulated.barWrite(l.componentBAR, offset: hdm + UInt64(reg.offset), width: 4, value: v) }
        let sz = SplitAddress(size)
        try w(r.baseLow, 0); try w(r.baseHigh, 0x40); try w(r.sizeLow, UInt64(sz.low)); try w(r.sizeHigh, UInt64(sz.high))
        typealias C = HDMDecoderCapability.Control
        try w(r.control, C.iw.insert(iw, into: 0) | C.lockOnCommit.mask | C.commit.mask)
        let ctl = try emulated.barRead(l.componentBAR, offset: hdm + UInt64(r.control.offset), width: 4)
        #expect(ctl & HDMDecoderCapability.Control.committed.mask != 0, "the device did not commit: 0x\(String(ctl, radix: 16))")
        var o = VFIOCXLv4Options(); o.logger.logLevel = .critical
        do {
            _ = try VFIOCXLv4Device(function: emulated, memory: emulated, options: o)
            Issue.record("bound a decoder v4 refuses (\(reason))")
        } catch {
            #expect(error.description.contains(reason), "\(error)")
        }
    }

    @Test func guestDecoderWritesNeverReachTheHost() throws {
        let (d, emulated) = try v4(try accel())
        let l = d.layout
        let hdm = l.componentOffset + UInt64(l.hdmOffset)
        func host() throws -> [UInt64] { try (0..<l.hdmLength / 4).map { try emulated.barRead(l.componentBAR, offset: hdm + UInt64(4 * $0), width: 4) } }
        let before = try host()
        for off in stride(from: 0, to: l.hdmLength, by: 4) {
            try d.write(region: comp, offset: UInt64(off), data: bytes(0))
            try d.write(region: comp, offset: UInt64(off), data: bytes(0xFFFF_FFFF))
        }
        #expect(try host() == before)
        // Reads are live: the host's base, not a hidden one (hiding it is the VMM's job in v4).
        let baseHigh = HDMDecoderCapability.decoderRegisters(0, endpoint: true)[1].offset
        #expect(UInt64(le32(try d.read(region: comp, offset: UInt64(baseHigh), count: 4))) == before[baseHigh / 4])
        #expect(before[baseHigh / 4] == 0x40)
        // Through the BAR the block reads all-ones and writes are dropped.
        #expect(try d.read(region: UInt32(l.componentBAR), offset: hdm, count: 8) == [UInt8](repeating: 0xFF, count: 8))
        try d.write(region: UInt32(l.componentBAR), offset: hdm + 0x20, data: bytes(0))
        #expect(try host() == before)
    }

    @Test func guestCXLResetIsAnsweredInTheShadowAndNeverReachesTheDevice() throws {
        let (d, emulated) = try v4(try accel())
        let dvsec = d.layout.dvsecOffset
        try d.write(region: mem, offset: 0x2000, data: [1, 2, 3, 4])
        let ctrl2 = CXLDeviceDVSEC.control2
        let v = CXLDeviceDVSEC.Control2.initiateCXLReset.mask | CXLDeviceDVSEC.Control2.memClearEnable.mask
        try d.write(region: cfg, offset: UInt64(dvsec + ctrl2.offset), data: [UInt8(v), 0])
        let s2 = try d.read(region: cfg, offset: UInt64(dvsec + CXLDeviceDVSEC.status2.offset), count: 2)
        #expect(UInt64(s2[0]) & CXLDeviceDVSEC.Status2.resetComplete.mask != 0)
        #expect(try d.read(region: cfg, offset: UInt64(dvsec + ctrl2.offset), count: 2)[0] & UInt8(CXLDeviceDVSEC.Control2.initiateCXLReset.mask) == 0)
        // The device saw nothing: memory intact, its own Control2 without Mem Clr Enable, Status2 without Reset Complete.
        #expect(try emulated.readDPA(0x2000, count: 4) == [1, 2, 3, 4])
        #expect(try emulated.read(ctrl2, base: dvsec) & CXLDeviceDVSEC.Control2.memClearEnable.mask == 0)
        #expect(try emulated.read(CXLDeviceDVSEC.status2, base: dvsec) & CXLDeviceDVSEC.Status2.resetComplete.mask == 0)
    }

    @Test func dvsecControlIsAPerOpenShadow() throws {
        let (d, emulated) = try v4(try accel())
        let off = UInt64(d.layout.dvsecOffset + CXLDeviceDVSEC.control.offset)
        let firmware = try d.read(region: cfg, offset: off, count: 2)
        try d.write(region: cfg, offset: off, data: [firmware[0] ^ 0x1, firmware[1]])
        #expect(try d.read(region: cfg, offset: off, count: 2) == [firmware[0] ^ 0x1, firmware[1]])
        #expect(try emulated.configRead(Int(off), width: 2) == UInt32(firmware[0]) | UInt32(firmware[1]) << 8)
        d.clientDisconnected()  // the next open samples the device again
        #expect(try d.read(region: cfg, offset: off, count: 2) == firmware)
    }

    @Test(arguments: ["cxl-accel", "gpu-fw-committed"])
    func deviceResetClearsMemoryAndRestoresTheLockedDecoder(profile: String) throws {
        let (d, emulated) = try v4(try DeviceProfile.named(profile))
        let l = d.layout
        let ctl = HDMDecoderCapability.decoderRegisters(0, endpoint: true)[4]
        let hostCtl = { try emulated.barRead(l.componentBAR, offset: l.componentOffset + UInt64(l.hdmOffset + ctl.offset), width: 4) }
        let before = try hostCtl()
        try d.write(region: mem, offset: 0x10_0000, data: [9, 8, 7, 6])
        try d.reset()
        #expect(d.hdmValid)
        #expect(try hostCtl() == before)  // committed and locked again
        #expect(try d.read(region: mem, offset: 0x10_0000, count: 4) == [0, 0, 0, 0])
        #expect(try emulated.readDPA(0x10_0000, count: 4) == [0, 0, 0, 0])
        #expect(try d.regionInfo(mem).flags.contains(.mmap))
    }

    @Test func memoryStaysGatedWhenTheDecoderDoesNotComeBack() throws {
        var p = try accel()
        p.faults.commitNeverCompletes = true  // firmware's commit stands; the restore's re-commit never completes
        let (d, _) = try v4(p)
        try d.write(region: mem, offset: 0, data: [1, 2, 3, 4])
        #expect(throws: VFIOError.self) { try d.reset() }
        #expect(!d.hdmValid)
        #expect(throws: VFIOError.self) { try d.read(region: mem, offset: 0, count: 4) }
        #expect(!(try d.regionInfo(mem).flags.contains(.mmap)))
    }

    @Test func dmaBufIsRefusedWithAClearError() throws {
        let (d, _) = try v4(try accel())
        do {
            _ = try d.feature(flags: VFIODeviceFeatureFlags.get | VFIOCXLUAPI.dmaBufFeature, data: [])
            Issue.record("DMA_BUF answered")
        } catch {
            #expect("\(error)".contains("DMA_BUF"))
        }
    }

    @Test func componentBARMapsOnlyTheSRAMWindow() throws {
        let (d, emulated) = try v4(try accel())
        let bar = UInt32(d.layout.componentBAR)
        let info = try d.regionInfo(bar)
        let mapping = try #require(info.mapping)
        let areas = try VFIOSparseMMapCapability(parsing: #require(info.capabilities.first { $0.id == VFIORegionCapabilityID.sparseMMap }),
                                                 regionSize: info.size).areas
        let window = try #require(emulated.sramWindow)
        #expect(areas == [VFIOSparseArea(offset: window.lowerBound, size: window.upperBound - window.lowerBound)])
        // The mapping and the BAR region's read/write path are the same memory.
        let m = try VFIOSharedMemory(mapping: mapping.fd, offset: mapping.fileOffset + window.lowerBound, size: 4096, writable: true, takeOwnership: false)
        try d.write(region: bar, offset: window.lowerBound + 16, data: [0xAA, 0xBB])
        #expect(m.read(offset: 16, count: 2) == [0xAA, 0xBB])
        #expect(m.write(offset: 32, data: [1, 2, 3]))
        #expect(try d.read(region: bar, offset: window.lowerBound + 32, count: 3) == [1, 2, 3])
    }
}

@Suite("vfio-cxl v4 DVSEC Status2")
struct V4Status2Tests {
    @Test func status2ByteLanesAgreeAtEveryWidth() throws {
        let emulated = try EmulatedCXLDevice(profile: try DeviceProfile.named("cxl-accel"))
        var o = VFIOCXLv4Options(); o.logger.logLevel = .critical
        let d = try VFIOCXLv4Device(function: emulated, memory: emulated, options: o)
        let s2 = d.layout.dvsecOffset + CXLDeviceDVSEC.status2.offset
        let pm = CXLDeviceDVSEC.Status2.pmInitializationComplete.mask
        let live = UInt64(try emulated.configRead(s2, width: 2))
        #expect(live & pm != 0)
        let cfg = VFIOPCIRegion.config.rawValue
        let word = try d.read(region: cfg, offset: UInt64(s2), count: 2)
        let high = try d.read(region: cfg, offset: UInt64(s2 + 1), count: 1)
        let dword = try d.read(region: cfg, offset: UInt64(s2 - 2), count: 4)  // Control2 | Status2
        #expect(UInt64(word[1]) << 8 & pm != 0)
        #expect(UInt64(high[0]) << 8 & pm != 0)
        #expect(UInt64(dword[3]) << 8 & pm != 0)
    }
}
