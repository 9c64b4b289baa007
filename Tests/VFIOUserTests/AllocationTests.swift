import CMallocCounter
import Foundation
import Logging
import Testing
import VFIO
@testable import VFIOUser

/// A device that serves its regions from plain memory through `VFIOUserDirectAccessDevice`: region 7 is a 4 KiB
/// config space, region 0 a 64 KiB BAR. Only what the allocation test needs.
private final class DirectMemoryDevice: VFIOUserDirectAccessDevice, @unchecked Sendable {
    let config = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    let bar0 = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
    init() {
        config.initializeMemory(as: UInt8.self, repeating: 0)
        bar0.initializeMemory(as: UInt8.self, repeating: 0)
        config.storeBytes(of: UInt32(0x1234_1AF4).littleEndian, toByteOffset: 0, as: UInt32.self)
    }
    deinit { config.deallocate(); bar0.deallocate() }

    private func memory(_ region: UInt32) throws(VFIOError) -> UnsafeMutableRawBufferPointer {
        switch region {
        case 7: return config
        case 0: return bar0
        default: throw .invalidArgument("region \(region)")
        }
    }
    func deviceInfo() -> VFIODeviceInfo { VFIODeviceInfo(flags: [.pci], numRegions: 9, numIRQs: 0) }
    func regionInfo(_ index: UInt32) throws(VFIOError) -> VFIORegionInfo {
        switch index {
        case 7: return VFIORegionInfo(index: 7, flags: [.read, .write], size: 4096)
        case 0: return VFIORegionInfo(index: 0, flags: [.read, .write], size: 65536)
        default: return VFIORegionInfo(index: index, flags: [], size: 0)
        }
    }
    func irqInfo(_ index: UInt32) throws(VFIOError) -> VFIOIRQInfo { throw .invalidArgument("no IRQs") }
    func setIRQs(_ request: VFIOIRQSet) throws(VFIOError) { throw .invalidArgument("no IRQs") }
    func read(region: UInt32, offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        let m = try memory(region)
        return Array(m[Int(offset)..<(Int(offset) + count)])
    }
    func write(region: UInt32, offset: UInt64, data: [UInt8]) throws(VFIOError) {
        let m = try memory(region)
        for (i, b) in data.enumerated() { m[Int(offset) + i] = b }
    }
    func reset() throws(VFIOError) {}
    /// Called on the thread that serves the connection when it starts (and with nil when it ends): that thread's
    /// allocations are counted.
    func attachDMA(_ memory: (any VFIODMAMemory)?) { cmalloc_counter_track_this_thread(memory == nil ? 0 : 1) }
    func clientDisconnected() { cmalloc_counter_track_this_thread(0) }
    func read(region: UInt32, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        let m = try memory(region)
        buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: m[Int(offset)..<(Int(offset) + buffer.count)]))
    }
    func write(region: UInt32, offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        let m = try memory(region)
        UnsafeMutableRawBufferPointer(rebasing: m[Int(offset)..<(Int(offset) + buffer.count)]).copyMemory(from: buffer)
    }
}

/// Counts allocations with the test-only malloc interposer (`Tests/CMallocCounter`), per thread: the server's
/// thread and the client's calling thread. Not by eye, and not timed.
@Suite(.serialized) struct AllocationTests {
    /// A server run on its own thread; the device marks the connection's thread for counting (`attachDMA`).
    private final class CountingServer: @unchecked Sendable {
        let server: VFIOUserServer
        let path = NSTemporaryDirectory() + "vfu-alloc-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        private let done = DispatchSemaphore(value: 0)
        init(device: any VFIODevice) throws {
            var logger = Logger(label: "test.vfio-user.alloc")
            logger.logLevel = .warning
            server = try VFIOUserServer(device: device, socketPath: path, logger: logger)
            let t = Thread { [self] in
                try? server.run()
                done.signal()
            }
            t.start()
        }
        func stop() { server.stop(); _ = done.wait(timeout: .now() + 10) }
    }

    @Test func regionReadAndWriteAllocateNothingInServerOrClient() throws {
        let device = DirectMemoryDevice()
        let s = try CountingServer(device: device)
        defer { s.stop() }
        let c = try VFIOUserClient(socketPath: s.path)
        let four = UnsafeMutableRawBufferPointer.allocate(byteCount: 4, alignment: 4)
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { four.deallocate(); page.deallocate() }
        page.initializeMemory(as: UInt8.self, repeating: 0x5A)
        func round() throws {
            try c.read(region: 7, offset: 0, into: four)                                   // 4-byte config read
            try c.write(region: 7, offset: 0x40, from: UnsafeRawBufferPointer(four))       // 4-byte config write
            try c.write(region: 0, offset: 0x1000, from: UnsafeRawBufferPointer(page))     // 4 KiB BAR write
            try c.read(region: 0, offset: 0x1000, into: page)                              // 4 KiB BAR read
            try c.write(region: 0, offset: 8, from: UnsafeRawBufferPointer(rebasing: page[0..<8]), posted: true)
        }
        for _ in 0..<200 { try round() }                    // warm-up: buffers reach their sizes
        #expect(four.load(as: UInt32.self) == UInt32(0x1234_1AF4).littleEndian)

        let before = cmalloc_counter_total_for(1)
        cmalloc_counter_track_this_thread(1)
        for _ in 0..<2000 { try round() }
        cmalloc_counter_track_this_thread(0)
        // One more request answered after the measured ones: the server has finished with them.
        try c.read(region: 7, offset: 0, into: four)
        let after = cmalloc_counter_total_for(1)
        #expect(after - before == 0, "10,000 REGION_READ/WRITEs allocated \(after - before) times (server thread and client)")
        #expect(device.bar0.load(fromByteOffset: 0x1000, as: UInt8.self) == 0x5A)

        // The counter is live: a command on the general path (values, arrays) allocates on the server thread,
        // and an array-returning read allocates on the client.
        let generalBefore = cmalloc_counter_total_for(1)
        _ = try c.regionInfo(7)
        cmalloc_counter_track_this_thread(1)
        let bytes = try c.read(region: 7, offset: 0, count: 4)
        cmalloc_counter_track_this_thread(0)
        #expect(bytes == [0xF4, 0x1A, 0x34, 0x12])
        #expect(cmalloc_counter_active() == 1)
        #expect(cmalloc_counter_total_for(1) - generalBefore >= 2)
    }
}
