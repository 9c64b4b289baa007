import CMallocCounter
import CXL
@testable import CXLEmulator  // its BAR0 layout (`Layout`), so the offsets below are the device's own
import Foundation
import Logging
import PCI
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
        cmalloc_counter_track_this_thread(memory == nil ? 0 : deviceAllocationTag)
    }
    func clientDisconnected() { cmalloc_counter_track_this_thread(0); inner.clientDisconnected() }
}

/// A `VFIOCXLDevice` over the emulated device (with `adjust` applied to the `type2` profile), served in-process,
/// and a connected client; `stop` ends both.
private struct ServedDevice {
    let device: VFIOCXLDevice
    let client: VFIOUserClient
    let profile: DeviceProfile
    let stop: () -> Void

    init(_ adjust: (inout DeviceProfile) -> Void = { _ in }) throws {
        var profile = try DeviceProfile.named("type2")
        profile.timing.timeFactor = 0.01
        adjust(&profile)
        self.profile = profile
        let emulated = try EmulatedCXLDevice(profile: profile)
        var options = VFIOCXLOptions()
        options.logger.logLevel = .critical
        device = try VFIOCXLDevice(function: emulated, memory: emulated, options: options)
        let path = NSTemporaryDirectory() + "vfio-cxl-alloc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var logger = Logger(label: "test.vfio-cxl.alloc")
        logger.logLevel = .critical
        let server = try VFIOUserServer(device: CountingDevice(device), socketPath: path, logger: logger)
        let done = DispatchSemaphore(value: 0)
        Thread { try? server.run(); done.signal() }.start()
        stop = { server.stop(); _ = done.wait(timeout: .now() + 10) }
        do { client = try VFIOUserClient(socketPath: path) } catch { stop(); throw error }
    }
}

/// The per-message path through the real device stack (vfio-cxl over the emulated Type-2 device, as
/// `cxlkit serve --profile type2` serves it), counted with the test-only malloc interposer on the server's thread.
/// This suite's tag with the malloc counter (VFIOUserTests' `AllocationTests` uses 1 and may run at the same time).
private let deviceAllocationTag: Int32 = 2

@Suite(.serialized) struct DeviceAllocationTests {
    @Test func configAndDeviceMemoryAccessesAllocateNothingOnTheServer() throws {
        let served = try ServedDevice()
        defer { served.stop() }
        let c = served.client, profile = served.profile
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

        let before = cmalloc_counter_total_for(deviceAllocationTag)
        for _ in 0..<2500 { try round() }
        // One more request answered after the measured ones: the server has finished with them.
        try c.read(region: cfg, offset: 0, into: four)
        let after = cmalloc_counter_total_for(deviceAllocationTag)
        #expect(after - before == 0, "10,000 config and device-memory accesses allocated \(after - before) times on the server thread")
        #expect(page.load(fromByteOffset: 17, as: UInt8.self) == 0xA5)

        // The counter is live on the server thread: REGION_INFO takes the general path and allocates.
        _ = try c.regionInfo(cfg)
        try c.read(region: cfg, offset: 0, into: four)
        #expect(cmalloc_counter_total_for(deviceAllocationTag) - after >= 1)
    }

    /// Config writes (virtual, forwarded to the emulated device, and overridden by the DVSEC shadow) and BAR
    /// accesses of every kind `VFIOPCIDevice` dispatches (trapped component registers, the function's registers,
    /// the emulated MSI-X table and PBA, device SRAM, the memory BAR) and the component-register region.
    @Test func configWritesAndBARAccessesAllocateNothingOnTheServer() throws {
        let served = try ServedDevice { p in
            p.prefetchableMemoryBAR = true
            p.deviceSRAM = true
        }
        defer { served.stop() }
        let c = served.client
        let layout = try #require(served.device.layout)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { buf.deallocate() }
        let cfg = VFIOPCIRegion.config.rawValue, bar0 = UInt32(layout.componentBAR), bar2: UInt32 = 2
        let comp = VFIOCXLUAPI.componentRegionIndex
        func write(_ region: UInt32, _ offset: UInt64, _ value: UInt64, _ width: Int) throws {
            buf.storeBytes(of: value.littleEndian, as: UInt64.self)
            try c.write(region: region, offset: offset, from: UnsafeRawBufferPointer(rebasing: buf[0..<width]))
        }
        func read(_ region: UInt32, _ offset: UInt64, _ width: Int) throws -> UInt64 {
            buf.storeBytes(of: 0, as: UInt64.self)
            try c.read(region: region, offset: offset, into: UnsafeMutableRawBufferPointer(rebasing: buf[0..<width]))
            return UInt64(littleEndian: buf.load(as: UInt64.self))
        }
        let dvsecControl = UInt64(layout.dvsecOffset + CXLDeviceDVSEC.control.offset)
        let deviceControl = UInt64(Layout.pciExpress + PCIExpressCapability.deviceControl.offset)
        let flr = PCIExpressCapability.initiateFLR.mask
        let control = try read(cfg, dvsecControl, 2)
        let devctl = try read(cfg, deviceControl, 4) & 0xFFFF & ~flr
        let cachemem = layout.componentOffset + UInt64(ComponentRegisterBlock.cacheMemOffset)
        let hdmBaseLow = cachemem + UInt64(layout.hdmOffset - ComponentRegisterBlock.cacheMemOffset) + UInt64(HDMDecoderRegisters(0).baseLow.offset)
        var i: UInt64 = 0
        let accesses: [(String, () throws -> Void)] = [
            ("Command write (virtual, forwarded)", { try write(cfg, UInt64(PCIHeader.command.offset), 0x0006, 2) }),
            ("Interrupt Line write (virtual)", { try write(cfg, UInt64(PCIHeader.interruptLine.offset), i & 0xFF, 1) }),
            ("Device Control write (the emulated device)", { try write(cfg, deviceControl, devctl, 4) }),
            ("DVSEC Control write (the DVSEC shadow)", { try write(cfg, dvsecControl, control, 2) }),
            ("component register read (trapped, the function)", { _ = try read(bar0, cachemem, 4) }),
            ("HDM decoder write (trapped, the shadow)", { try write(bar0, hdmBaseLow, (i << 28) & 0xF000_0000, 4) }),
            ("device register read (the function)", { _ = try read(bar0, Layout.deviceRegisterBlock, 8) }),
            ("MSI-X table write and read", {
                try write(bar0, Layout.msixTable + 8, i & 0xFFFF_FFFF, 4)
                let v = try read(bar0, Layout.msixTable + 8, 4); #expect(v == i & 0xFFFF_FFFF)
            }),
            ("PBA read", { _ = try read(bar0, Layout.msixPBA, 8) }),
            ("SRAM write and read", { try write(bar0, Layout.sram.lowerBound, i, 8); let v = try read(bar0, Layout.sram.lowerBound, 8); #expect(v == i) }),
            ("memory BAR write and read", { try write(bar2, 0x4000, ~i, 8); let v = try read(bar2, 0x4000, 8); #expect(v == ~i) }),
            ("component-register region read", { _ = try read(comp, 0, 4) }),
        ]
        for _ in 0..<100 { i &+= 1; for (_, access) in accesses { try access() } }
        #expect(try read(bar0, hdmBaseLow, 4) == (i << 28) & 0xF000_0000)

        // Each kind of access 700 times; the count read after one more request (the server is done with them).
        var allocating: [String] = []
        for (name, access) in accesses {
            let before = cmalloc_counter_total_for(deviceAllocationTag)
            for _ in 0..<700 { i &+= 1; try access() }
            _ = try read(cfg, 0, 4)
            let n = cmalloc_counter_total_for(deviceAllocationTag) - before
            if n != 0 { allocating.append("\(name): \(n)") }
        }
        #expect(allocating.isEmpty, "allocations on the server thread per 700 accesses: \(allocating)")
        let after = cmalloc_counter_total_for(deviceAllocationTag)

        // The counter is live: an array-returning read through the general path allocates.
        _ = try c.regionInfo(bar0)
        _ = try read(cfg, 0, 4)
        #expect(cmalloc_counter_total_for(deviceAllocationTag) - after >= 1)
    }
}
