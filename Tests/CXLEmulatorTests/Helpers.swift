import Testing
import PCI
import CXL
@testable import CXLEmulator

/// What a consumer learns by walking the device's config space, as with hardware.
struct Discovered {
    let caps: CapabilityList
    let config: ConfigSpace
    let cxlDevice: Int
    let componentBAR: Int
    let componentOffset: UInt64
    let deviceRegsOffset: UInt64
    /// BAR0 offset of CXL.cachemem and of the HDM Decoder Capability.
    let cacheMem: UInt64
    let hdm: UInt64
    let ras: UInt64

    init(_ dev: EmulatedCXLDevice) throws {
        config = try dev.configSnapshot()
        caps = CapabilityList(walking: config)
        let dvsecs = caps.dvsecs(in: config)
        cxlDevice = try #require(dvsecs.first { $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.device.rawValue }).offset
        let rl = try #require(dvsecs.first { $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.registerLocator.rawValue })
        var comp: (Int, UInt64)? = nil, devr: UInt64? = nil
        for i in 0..<RegisterLocatorDVSEC.entryCount(length: rl.length) {
            let e = rl.offset + RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * i
            let lo = UInt64(config.read32(e)!), hi = UInt64(config.read32(e + 4)!)
            let off = hi << 32 | (lo & 0xFFFF_0000)
            switch (lo >> 8) & 0xFF {
            case 1: comp = (Int(lo & 7), off)
            case 3: devr = off
            default: break
            }
        }
        let c = try #require(comp)
        componentBAR = c.0
        componentOffset = c.1
        deviceRegsOffset = try #require(devr)
        cacheMem = componentOffset + UInt64(ComponentRegisterBlock.cacheMemOffset)
        let header = try dev.barRead(componentBAR, offset: cacheMem, width: 4)
        var found: [UInt16: UInt64] = [:]
        for i in 1...Int(header >> 24) {
            let el = try dev.barRead(componentBAR, offset: cacheMem + UInt64(4 * i), width: 4)
            found[UInt16(el & 0xFFFF)] = cacheMem + (el >> 20)
        }
        hdm = try #require(found[CacheMemCapabilityID.hdmDecoder.rawValue])
        ras = try #require(found[CacheMemCapabilityID.ras.rawValue])
    }

    func decoder(_ n: Int) -> UInt64 { hdm + UInt64(HDMDecoderCapability.firstDecoderOffset + HDMDecoderCapability.decoderStride * n) }
    func control(_ n: Int) -> UInt64 { hdm + UInt64(HDMDecoderRegisters(n).control.offset) }
    /// Config offset of a register of the PCIe DVSEC for CXL Devices.
    func dvsec(_ r: RegisterLayout) -> Int { cxlDevice + r.offset }
}

let GiB: UInt64 = 1 << 30
let MiB: UInt64 = 1 << 20
let granule: UInt64 = 256 << 20

func makeDevice(_ configure: (inout DeviceProfile) -> Void = { _ in }, clock: ManualClock = ManualClock()) throws -> (EmulatedCXLDevice, Discovered, ManualClock) {
    var p = DeviceProfile()
    p.name = "test"
    configure(&p)
    let d = try EmulatedCXLDevice(profile: p, clock: clock)
    return (d, try Discovered(d), clock)
}

extension EmulatedCXLDevice {
    func cfg16(_ o: Int) throws -> UInt16 { UInt16(try configRead(o, width: 2)) }
    func cfg32(_ o: Int) throws -> UInt32 { try configRead(o, width: 4) }
    func bar32(_ o: UInt64) throws -> UInt32 { UInt32(try barRead(0, offset: o, width: 4)) }
    func setBar32(_ o: UInt64, _ v: UInt32) throws { try barWrite(0, offset: o, width: 4, value: UInt64(v)) }

    /// Program decoder n (Linux order: base, size, skip, then control with Commit).
    func program(_ d: Discovered, decoder n: Int, base: UInt64, size: UInt64, skip: UInt64 = 0,
                 iw: UInt8 = 0, ig: UInt8 = 0, position: Int = 0, lock: Bool = false, commit: Bool = true) throws {
        let r = HDMDecoderRegisters(n)
        func set(_ l: RegisterLayout, _ v: UInt64) throws { try setBar32(d.hdm + UInt64(l.offset), UInt32(truncatingIfNeeded: v)) }
        try set(r.baseHigh, base >> 32)
        try set(r.baseLow, base)
        try set(r.sizeHigh, size >> 32)
        try set(r.sizeLow, size)
        try set(r.skipOrTargetHigh, skip >> 32)
        try set(r.skipOrTargetLow, skip)
        typealias C = HDMDecoderCapability.Control
        var ctl = C.ig.insert(UInt64(ig), into: 0)
        ctl = C.iw.insert(UInt64(iw), into: ctl)
        ctl = C.interleaveSetPosition.insert(UInt64(position), into: ctl)
        if lock { ctl |= C.lockOnCommit.mask }
        if commit { ctl |= C.commit.mask }
        try set(r.control, ctl)
    }

    func decoderControl(_ d: Discovered, _ n: Int) throws -> UInt32 { try bar32(d.control(n)) }
    func committed(_ d: Discovered, _ n: Int) throws -> Bool { UInt64(try decoderControl(d, n)) & HDMDecoderCapability.Control.committed.mask != 0 }
    func commitError(_ d: Discovered, _ n: Int) throws -> Bool {
        UInt64(try decoderControl(d, n)) & HDMDecoderCapability.Control.errorNotCommitted.mask != 0
    }

    func enableHDM(_ d: Discovered) throws {
        try setBar32(d.hdm + UInt64(HDMDecoderCapability.globalControl.offset), UInt32(HDMDecoderCapability.hdmDecoderEnable.mask))
    }

    /// DVSEC Control Mem_Enable (keeping the other bits).
    func enableMem(_ d: Discovered, cache: Bool = false) throws {
        let c = try cfg16(d.dvsec(CXLDeviceDVSEC.control))
        let enable = CXLDeviceDVSEC.memEnable.mask | (cache ? CXLDeviceDVSEC.Control.cacheEnable.mask : 0)
        try configWrite(d.dvsec(CXLDeviceDVSEC.control), width: 2, value: UInt32(UInt64(c) | enable))
    }
}
