import Testing
import PCI
import CXL
@testable import CXLEmulator

/// The one discovery (`CXLDeviceMap`) finds the emulated device's structures where
/// the emulator's layout puts them, and stops cleanly on broken capability arrays.
@Suite("CXL device map")
struct DeviceMapTests {
    @Test func mapFindsTheEmulatorLayout() throws {
        for decoders in [1, 4, 32] {
            var profile = try DeviceProfile.named("type2")
            profile.decoderCount = decoders
            profile.memorySize = max(1 << 30, UInt64(decoders) * (256 << 20))
            let dev = try EmulatedCXLDevice(profile: profile)
            let map = try CXLDeviceMap.discover(dev)
            #expect(map.deviceDVSEC.offset == Layout.cxlDevice)
            #expect(map.deviceDVSEC.revision == Layout.cxlDeviceRevision)
            #expect(map.endpoint)
            #expect(map.dvsecs.map(\.dvsecID) == [0, 5, 7, 8])
            let block = try #require(map.componentBlock)
            #expect(block.bir == 0 && block.offset == Layout.componentBlock)
            #expect(map.registerBlocks.count == Layout.registerLocatorEntries)
            let cm = ComponentRegisterBlock.cacheMemOffset
            #expect(map.rasOffset == cm + Layout.rasCapability)
            #expect(map.linkOffset == cm + Layout.linkCapability)
            let hdm = try #require(map.hdm)
            #expect(hdm.offset == cm + Layout.hdmCapability)
            #expect(hdm.decoderCount == decoders)
            #expect(hdm.length == HDMDecoderCapability.length(decoders: decoders))
            #expect(map.cacheMem?.stop == nil)
        }
    }

    /// A block image: CXL Capability Header with `id` and `size`, elements as given.
    func block(id: UInt32 = 1, elements: [(id: UInt32, pointer: UInt32)]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: ComponentRegisterBlock.size)
        func put(_ off: Int, _ v: UInt32) { for i in 0..<4 { bytes[off + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
        let cm = ComponentRegisterBlock.cacheMemOffset
        put(cm, id | 1 << 16 | 1 << 20 | UInt32(elements.count) << 24)
        for (i, e) in elements.enumerated() { put(cm + 4 * (i + 1), e.id | 1 << 16 | e.pointer << 20) }
        return bytes
    }

    @Test func walkRecordsWhyItStopped() {
        let notArray = block(id: 2, elements: [(5, 0x300)])
        let w1 = CacheMemCapabilityList(read32: { (o) throws(PCIError) in try ImageBlockReader(bytes: notArray).read32(o) })
        #expect(w1.stop == .notAnArray(id: 2) && w1.capabilities.isEmpty)

        // Array_Size claims 3 elements; the image ends after the first.
        var short = block(elements: [(2, 0x100), (4, 0x200), (5, 0x300)])
        short = Array(short[0..<(ComponentRegisterBlock.cacheMemOffset + 8)])
        let w2 = CacheMemCapabilityList(read32: { (o) throws(PCIError) in try ImageBlockReader(bytes: short).read32(o) })
        #expect(w2.capabilities.map(\.id) == [2])
        if case .unreadableElement(let i, _)? = w2.stop { #expect(i == 2) } else { Issue.record("stop \(String(describing: w2.stop))") }

        // A null HDM pointer is not an HDM capability; the next one with a pointer is.
        let nullFirst = block(elements: [(5, 0), (5, 0x300)])
        let w3 = CacheMemCapabilityList(read32: { (o) throws(PCIError) in try ImageBlockReader(bytes: nullFirst).read32(o) })
        #expect(w3.first(.hdmDecoder)?.pointer == 0x300 && w3.first(.ras) == nil && w3.stop == nil)
    }

    @Test func configWithoutDeviceDVSECIsRefused() {
        let config = ConfigSpace(bytes: [UInt8](repeating: 0, count: 4096))
        #expect(throws: CXLDeviceMapError.noDeviceDVSEC) { try CXLDeviceMap(config: config) }
    }
}
