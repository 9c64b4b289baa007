import CMallocCounter
import CXLEmulator
import Foundation
import Logging
import Testing
import VFIO
import VFIOUser
@testable import VFIOCXL

/// Marks the thread that serves the connection for allocation counting (`attachDMA` runs there when a client
/// connects) and forwards every call to the real device, direct access included.
private final class CountingDevice: VFIODirectAccessDevice, @unchecked Sendable {
    let inner: VFIOCXLDevice
    init(_ inner: VFIOCXLDevice) { self.inner = inner }
    func deviceInfo() -> VFIODeviceInfo { inner.deviceInfo() }
    func regionInfo(_ index: UInt32) throws(VFIOError) -> VFIORegionInfo { try inner.regionInfo(index) }
    func irqInfo(_ index: UInt32) throws(VFIOError) -> VFIOIRQInfo { try inner.irqInfo(index) }
    func setIRQs(_ request: VFIOIRQSet) throws(VFIOError) { try inner.setIRQs(request) }
    func read(region: UInt32, offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] { try inner.read(region: region, offset: offset, count: count) }
    func write(region: UInt32, offset: UInt64, data: [UInt8]) throws(VFIOError) { try inner.write(region: region, offset: offset, data: data) }
    func read(region: UInt32, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        try inner.read(region: region, offset: offset, into: buffer)
    }
    func write(region: UInt32, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        try inner.write(region: region, offset: offset, from: buffer)
    }
    func reset() throws(VFIOError) { try inner.reset() }
    func attachDMA(_ memory: (any VFIODMAMemory)?) {
        inner.attachDMA(memory)
        cmalloc_counter_track_this_thread(memory == nil ? 0 : 1)
    }
    func clientDisconnected() { cmalloc_counter_track_this_thread(0); inner.clientDisconnected() }
}

/// The per-message path through the real device stack (vfio-cxl over the emulated Type-2 device, as
/// `cxlkit serve --profile type2` serves it), counted with the test-only malloc interposer on the server's thread.
@Suite(.serialized) struct DeviceAllocationTests {
    @Test func configAndDeviceMemoryAccessesAllocateNothingOnTheServer() throws {
        var profile = try DeviceProfile.named("type2")
        profile.timing.timeFactor = 0.01
        let emulated = try EmulatedCXLDevice(profile: profile)
        var options = VFIOCXLOptions()
        options.logger.logLevel = .critical
        let device = CountingDevice(try VFIOCXLDevice(function: emulated, memory: emulated, options: options))
        let path = NSTemporaryDirectory() + "vfio-cxl-alloc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var logger = Logger(label: "test.vfio-cxl.alloc")
        logger.logLevel = .critical
        let server = try VFIOUserServer(device: device, socketPath: path, logger: logger)
        let done = DispatchSemaphore(value: 0)
        Thread { try? server.run(); done.signal() }.start()
        defer { server.stop(); _ = done.wait(timeout: .now() + 10) }
        let c = try VFIOUserClient(socketPath: path)
        let four = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 4)
        let two = UnsafeMutableRawBufferPointer.allocate(byteCount: 2, alignment: 2)
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { four.deallocate(); two.deallocate(); page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0xA5)
        let cfg = VFIOPCIRegion.config.rawValue, mem = VFIOCXLUAPI.memoryRegionIndex
        func round() throws {
            try c.read(region: cfg, offset: 0, into: four)                                     // Vendor ID, Device ID
            try c.read(region: cfg, offset: 0x10, into: two)                                   // BAR0 low half (virtual)
            try c.write(region: mem, offset: 0x2000, from: UnsafeRawBufferPointer(page))       // 4 KiB device memory
            try c.read(region: mem, offset: 0x2000, into: page)
        }
        for _ in 0..<200 { try round() }
        let vendor = UInt16(four[0]) | UInt16(four[1]) << 8
        #expect(vendor == profile.vendorID)

        let before = cmalloc_counter_total()
        for _ in 0..<2500 { try round() }
        // One more request answered after the measured ones: the server has finished with them.
        try c.read(region: cfg, offset: 0, into: four)
        let after = cmalloc_counter_total()
        #expect(after - before == 0, "10,000 config and device-memory accesses allocated \(after - before) times on the server thread")
        #expect(page.load(fromByteOffset: 17, as: UInt8.self) == 0xA5)

        // The counter is live on the server thread: REGION_INFO takes the general path and allocates.
        _ = try c.regionInfo(cfg)
        try c.read(region: cfg, offset: 0, into: four)
        #expect(cmalloc_counter_total() - after >= 1)
    }
}
