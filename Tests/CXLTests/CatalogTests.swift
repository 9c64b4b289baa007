import Testing
import PCI
@testable import CXL

@Suite("CXL register catalog")
struct CXLCatalogTests {
    /// CXL 3.1 §8.1.3.2: the RWL bits of Control are 0, 2, 7:3, 10:8, 11, 12, 14; IO_Enable reads 1.
    @Test func deviceControlMasks() {
        let c = CXLDeviceDVSEC.control
        #expect(c.lockableMask == 0x5FFD)
        #expect(c.writableMask == 0x5FFD)
        #expect(c.resetValue == 0x0002)
    }

    @Test func deviceDVSECLengthsByRevision() {
        #expect(CXLDeviceDVSEC.layout(revision: 1).length == 0x38)
        #expect(CXLDeviceDVSEC.layout(revision: 2).length == 0x3A)
        #expect(CXLDeviceDVSEC.length(revision: 2) == 0x3C)
        #expect(CXLDeviceDVSEC.layout(revision: 1).register(named: "DVSEC CXL Capability3") == nil)
    }

    @Test func rangeRegistersAtSpecOffsets() {
        #expect(CXLDeviceDVSEC.range1.sizeHigh.offset == 0x18)
        #expect(CXLDeviceDVSEC.range1.baseLow.offset == 0x24)
        #expect(CXLDeviceDVSEC.range2.sizeLow.offset == 0x2C)
        #expect(CXLDeviceDVSEC.range2.baseHigh.offset == 0x30)
        #expect(CXLDeviceDVSEC.range1.baseLow.lockableMask == 0xF000_0000)
        #expect(CXLDeviceDVSEC.range1.baseHigh.lockableMask == 0xFFFF_FFFF)
    }

    @Test func lockAndStatusAccessTypes() {
        #expect(CXLDeviceDVSEC.lock.writeOnceMask == 0x1)
        #expect(CXLDeviceDVSEC.status.writeOneToClearMask == 0x4000)
        #expect(CXLDeviceDVSEC.status2.writeOneToClearMask == 0x8)
        #expect(CXLDeviceDVSEC.control2.writableMask == 0x3F)
        #expect(CXLDeviceDVSEC.control2Doorbells == 0x6)
        #expect(CXLDeviceDVSEC.control2.stickyMask == 0x10)
    }

    /// §8.2.4.20.7: Committed and Error Not Committed are RO; the rest of 27:0 but bit 15 is RWL.
    @Test func decoderControlMasks() {
        let c = HDMDecoderCapability.control
        #expect(c.lockableMask == 0x0FFF_73FF)
        #expect(c.mask([.ro]) == 0x0C00)
    }

    @Test func decoderRegisterOffsets() {
        let regs = HDMDecoderCapability.decoderRegisters(3, endpoint: true)
        #expect(regs.map(\.offset) == [0x70, 0x74, 0x78, 0x7C, 0x80, 0x84, 0x88])
        #expect(regs[5].name == "Decoder 3 DPA Skip Low")
        #expect(HDMDecoderCapability.decoderRegisters(0, endpoint: false)[5].name == "Decoder 0 Target List Low")
        #expect(HDMDecoderCapability.layout(decoders: 32, endpoint: true).length == 0x10 + 0x20 * 31 + 0x1C)
    }

    @Test func registerLocatorEntries() {
        #expect(RegisterLocatorDVSEC.entryCount(length: 0x24) == 3)
        #expect(RegisterLocatorDVSEC.entryCount(length: 0x0C) == 0)
        #expect(RegisterLocatorDVSEC.entryCount(length: 4) == 0)
        let l = RegisterLocatorDVSEC.layout(entries: 2)
        #expect(l.register(named: "Register Block 2 Offset High")?.offset == 0x18)
        #expect(RegisterLocatorDVSEC.blockOffsetLow.mask == 0xFFFF_0000)
    }

    @Test func everyDVSECIDHasALayout() {
        for id in CXLDVSECID.allCases {
            let l = id.layout(revision: 2, length: 0x3C)
            #expect(l.register(named: "Designated Vendor-Specific Header 1")?.offset == 4)
        }
        #expect(FlexBusPortDVSEC.layout(revision: 2).length == 0x20)
        #expect(FlexBusPortDVSEC.layout(revision: 1).length == 0x14)
    }

    @Test func rasMasksMatchLinux() {
        // Linux cxl.h: CXL_RAS_UNCORRECTABLE_STATUS_MASK = GENMASK(16,14) | GENMASK(11,0)
        #expect(RASCapability.uncorrectableStatus.writeOneToClearMask == 0x1_CFFF)
        #expect(RASCapability.correctableStatus.writeOneToClearMask == 0x7F)
        #expect(RASCapability.layout.length == RASCapability.length)
    }
}
