import Testing
import PCI
import CXL
@testable import CXLEmulator

@Suite("Emulated device: what a consumer finds by walking config space")
struct DiscoveryTests {
    @Test func capabilityLists() throws {
        let (_, d, _) = try makeDevice()
        #expect(d.caps.findings.isEmpty)
        #expect(d.caps.standard.map(\.id) == [0x01, 0x11, 0x10])
        #expect(d.caps.standard.map(\.offset) == [Layout.powerManagement, Layout.msix, Layout.pciExpress])
        #expect(d.caps.extended.map(\.id) == [0x0003, 0x0023, 0x0023, 0x0023, 0x0023])
        let dvsecs = d.caps.dvsecs(in: d.config)
        #expect(dvsecs.map(\.dvsecID) == [0, 5, 7, 8])
        #expect(dvsecs.map(\.revision) == [2, 0, 2, 0])
        #expect(dvsecs.map(\.length) == [0x3C, 0x10, 0x20, 0x1C])
        #expect(dvsecs.allSatisfy { $0.vendorID == 0x1E98 && $0.fitsInConfigSpace })
    }

    @Test func headerIdentityAndClass() throws {
        let (dev, d, _) = try makeDevice { $0.vendorID = 0x1234; $0.deviceID = 0x5678; $0.classCode = 0x0302_00 }
        #expect(d.config.vendorID == 0x1234)
        #expect(d.config.deviceID == 0x5678)
        #expect(d.config.classCode == 0x030200)
        #expect(d.config.headerType == 0)
        let (_, def, _) = try makeDevice()
        #expect(def.config.classCode == 0x120000)
        // PCIe capability: v2 Endpoint, FLR capable.
        let pcie = Layout.pciExpress
        #expect(try dev.cfg16(pcie + 2) & 0xFF == 0x02)
        #expect(try dev.cfg32(pcie + 4) & (1 << 28) != 0)
    }

    @Test func registerLocatorPointsIntoBAR0() throws {
        let (dev, d, _) = try makeDevice()
        #expect(d.componentBAR == 0)
        #expect(d.componentOffset == Layout.componentBlock)
        #expect(d.deviceRegsOffset == Layout.deviceRegisterBlock)
        #expect(dev.bars.first?.kind == .memory64)
        #expect(dev.bars.first?.size == Layout.bar0Size)
        // CXL capability header: ID 1, version 1, cachemem version 1, 3 elements.
        #expect(try dev.bar32(d.cacheMem) == 0x0311_0001)
        #expect(d.hdm == d.cacheMem + UInt64(Layout.hdmCapability))
        // Device register block: capabilities array with Device Status and Memory Device Status.
        let arr = try dev.barRead(0, offset: d.deviceRegsOffset, width: 8)
        #expect(arr & 0xFFFF == 0 && (arr >> 32) & 0xFFFF == 2)
        let ids = try (1...2).map { try dev.bar32(d.deviceRegsOffset + UInt64(0x10 * $0)) & 0xFFFF }
        #expect(ids == [0x0001, 0x4000])
        // Media Status Ready once Memory_Active (no delay in the default profile).
        let mds = try dev.bar32(d.deviceRegsOffset + UInt64(try dev.bar32(d.deviceRegsOffset + 0x24)))
        #expect((mds >> 2) & 3 == 1)
    }

    @Test func msixTableAndPBAFromCapability() throws {
        let (dev, _, _) = try makeDevice { $0.msixVectors = 70 }
        let mc = try dev.cfg16(Layout.msix + 2)
        #expect(mc & 0x7FF == 69)
        let table = try dev.cfg32(Layout.msix + 4), pba = try dev.cfg32(Layout.msix + 8)
        #expect(table & 7 == 0 && UInt64(table & ~7) == Layout.msixTable)
        #expect(pba & 7 == 0 && UInt64(pba & ~7) == Layout.msixPBA)
        // Vector Control Mask Bit resets to 1 in every entry.
        for v in [0, 69] { #expect(try dev.bar32(UInt64(table & ~7) + UInt64(16 * v) + 0xC) == 1) }
    }

    /// §8.2.4.20.1: the Decoder Count encoding, not 2n beyond 16.
    @Test(arguments: [1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32])
    func decoderCountEncoding(count: Int) throws {
        let (dev, d, _) = try makeDevice { $0.decoderCount = count }
        let cap = try dev.bar32(d.hdm)
        #expect(HDMDecoderCountEncoding.decoders(forEncoding: UInt8(cap & 0xF)) == count)
        // The last decoder's control register is there and writable; the next one is not.
        try dev.setBar32(d.control(count - 1), 0x1)
        #expect(try dev.decoderControl(d, count - 1) == 0x1)
        if count < 32 {
            try dev.setBar32(d.control(count), 0x1)
            #expect(try dev.bar32(d.control(count)) == 0)
        }
    }

    @Test func dvsecCapabilityReflectsProfile() throws {
        let (dev, d, _) = try makeDevice {
            $0.capabilities.cache = true
            $0.capabilities.cxlResetTimeoutMilliseconds = 10_000
            $0.capabilities.memClear = false
            $0.firmware = DeviceProfile.FirmwareState()
        }
        let cap = try dev.cfg16(d.dvsec(CXLDeviceDVSEC.capability))
        #expect(cap & 0x1 != 0)              // Cache_Capable
        #expect(cap & 0x2 != 0)              // IO_Capable
        #expect(cap & 0x4 != 0)              // Mem_Capable
        #expect(cap & 0x8 != 0)              // Mem_HwInit_Mode
        #expect((cap >> 4) & 3 == 1)         // HDM_Count
        #expect((cap >> 8) & 7 == 3)         // 10 s
        #expect(cap & (1 << 11) == 0)        // no Mem Clr
        // Range 1 size = memory size, valid and active at once.
        let sizeLow = try dev.cfg32(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).sizeLow))
        #expect(sizeLow & 0xF000_0000 == 0x4000_0000 && sizeLow & 3 == 3)
        #expect(try dev.cfg32(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).sizeHigh)) == 0)
    }
}
