import Testing
import VFIO
@testable import VFIOCXL

/// The capability layouts byte for byte (header included), as a C VMM reads them.
@Suite("vfio-cxl uAPI layouts")
struct UAPILayoutTests {
    func wire(_ cap: VFIOCapability) -> [UInt8] { VFIOCapabilityChain.encode([cap], baseOffset: 0) }

    @Test func v2DeviceCapabilityMatchesNVIDIAsStruct() throws {
        let cap = VFIOCXLCapability(hdmRegistersBAR: 2, flags: [.firmwareCommitted, .cacheCapable],
                                    hdmRegistersOffset: 0x1_2345_6000_1000, memoryRegionIndex: 9, componentRegionIndex: 10)
        let bytes = wire(cap.capability)
        #expect(bytes == [
            0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // header: id 6, version 1, next 0
            0x02, 0x00, 0x00, 0x00,                          // hdm_regs_bar_index, reserved[3]
            0x03, 0x00, 0x00, 0x00,                          // flags: FIRMWARE_COMMITTED | CACHE_CAPABLE
            0x00, 0x10, 0x00, 0x60, 0x45, 0x23, 0x01, 0x00,  // hdm_regs_offset
            0x09, 0x00, 0x00, 0x00,                          // dpa_region_index
            0x0A, 0x00, 0x00, 0x00,                          // comp_regs_region_index
        ])
        #expect(bytes.count == 32)
        #expect(try VFIOCXLCapability(parsing: cap.capability) == cap)
        var short = cap.capability
        short.payload.removeLast()
        #expect(throws: VFIOError.self) { try VFIOCXLCapability(parsing: short) }
    }

    @Test func v3DeviceCapabilityDecodesWithTheX8664Hole() throws {
        var payload: [UInt8] = []
        func u32(_ v: UInt32) { payload += (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func u64(_ v: UInt64) { payload += (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        u32(1); u32(9); u32(10); u32(0); u32(0)
        u32(0xDEAD_BEEF)  // the hole: whatever the kernel's stack held must not leak into a field
        u64(0x1300); u64(0x50)
        let v3 = try VFIOCXLv3Capability(parsing: VFIOCapability(id: 6, version: 1, payload: payload))
        #expect(v3 == VFIOCXLv3Capability(flags: 1, memoryRegionIndex: 9, componentRegionIndex: 10, componentBAR: 0,
                                          componentOffset: 0x1300, componentSize: 0x50))
        #expect(wire(v3.capability).count == 48)
        // i386 packing (no hole, 36 payload bytes) is refused rather than misread.
        #expect(throws: VFIOError.self) { try VFIOCXLv3Capability(parsing: VFIOCapability(id: 6, version: 1, payload: Array(payload.prefix(36)))) }
    }

    @Test func v4CompRegsRegionCapabilityLayout() throws {
        let cap = VFIOCXLCompRegsCapability(bar: 0, offset: 0x1300)
        #expect(wire(cap.capability) == [
            0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,  // header: id VFIO_REGION_INFO_CAP_CXL_COMP_REGS (6), version 1
            0x00, 0x00, 0x00, 0x00,                          // bar
            0x00, 0x00, 0x00, 0x00,                          // reserved
            0x00, 0x13, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  // offset of the HDM block in the BAR
        ])
        #expect(try VFIOCXLCompRegsCapability(parsing: cap.capability) == cap)
    }
}
