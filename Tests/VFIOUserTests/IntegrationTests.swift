import Foundation
import Testing
import PCI
import VFIO
import VFIOTestSupport
import TestSupport
@testable import VFIOUser

private let cfg = VFIOPCIRegion.config.rawValue
private let bar2: UInt32 = 2
private typealias Reg = TestPCIFunction.Reg

@Suite(.serialized) struct ClientServerTests {
    @Test func negotiationAndInfo() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        #expect(c.serverVersion.major == 0 && c.serverVersion.minor == 2)
        #expect(c.serverCapabilities.maxMsgFDs == 8)
        #expect(c.serverCapabilities.writeMultiple == true)
        let info = try c.deviceInfo()
        #expect(info.flags == [.pci, .reset] && info.numRegions == 9 && info.numIRQs == 5)
        let r0 = try c.regionInfo(0)
        #expect(r0.size == 0x8000 && r0.fd != nil)
        #expect(r0.flags.contains([.read, .write, .mmap, .caps]))
        #expect(r0.info.argsz == 32 + 8 + 8 + 32)
        #expect(r0.sparseAreas == [VFIOSparseArea(offset: 0, size: 0x2000), VFIOSparseArea(offset: 0x4000, size: 0x4000)])
        let r2 = try c.regionInfo(2)
        #expect(r2.fd == nil && r2.flags == [.read, .write])
        #expect(try c.regionInfo(7).size == 4096)
        #expect(try c.irqInfo(2).count == 4)
        #expect(try c.regionIOFDs(0).entries.isEmpty)
        #expect(try c.read(region: cfg, offset: 0, count: 4) == le32(0x5678_1234))
        // Unknown region index and out-of-range access are EINVAL error replies; the connection stays usable.
        #expect(throws: VFIOUserError.peer(errno: 22, command: 5)) { try c.regionInfo(42) }
        #expect(throws: VFIOUserError.peer(errno: 22, command: 9)) { try c.read(region: bar2, offset: 0xFFE, count: 4) }
        #expect(try c.read(region: bar2, offset: 0, count: 4) == [0, 0, 0, 0])
        // Feature: migration unsupported.
        #expect(throws: VFIOUserError.peer(errno: VFIOErrno.ENOTTY, command: 16)) {
            try c.feature(flags: VFIODeviceFeatureFlags.get | VFIODeviceFeature.migration)
        }
    }

    @Test func sparseMmapWritesAreSeenByTheDevice() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        let r0 = try c.regionInfo(0)
        let maps = try c.mapRegion(r0)
        #expect(maps.map(\.regionOffset) == [0, 0x4000])
        // Write through the mapping; the device (and REGION_READ) sees it.
        maps[1].memory.write(offset: 0x10, data: [1, 2, 3, 4])
        #expect(h.function.bar0.read(offset: 0x4010, count: 4) == [1, 2, 3, 4])
        #expect(try c.read(region: 0, offset: 0x4010, count: 4) == [1, 2, 3, 4])
        // REGION_WRITE lands in the mapping.
        try c.write(region: 0, offset: 0x20, data: [9, 8, 7])
        #expect(maps[0].memory.read(offset: 0x20, count: 3) == [9, 8, 7])
        // Posted writes (NO_REPLY) are applied in order before a later read.
        try c.write(region: 0, offset: 0x30, data: [0x55], posted: true)
        #expect(try c.read(region: 0, offset: 0x30, count: 1) == [0x55])
    }

    @Test func irqDeliveryThroughEventfds() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client { $0.maxMsgFDs = 16 }
        let fds = try (0..<4).map { _ in try VFIOEventFD.create(nonBlocking: true) }
        try c.setIRQEventFDs(index: VFIOPCIIRQ.msix.rawValue, fds)
        try c.write(region: cfg, offset: 0x7a, data: [0x03, 0x80])                 // MSI-X enable
        for v in 0..<4 { try c.write(region: 0, offset: UInt64(0x2000 + 16 * v + 12), data: le32(0)) }   // unmask
        try c.write(region: bar2, offset: Reg.raise, data: le32(3))
        #expect(fds[3].wait(timeoutMilliseconds: 2000) == 1)
        #expect(fds[0].wait(timeoutMilliseconds: 0) == nil)
        // Mask through SET_IRQS, trigger, no delivery until unmask.
        try c.setIRQs(index: VFIOPCIIRQ.msix.rawValue, start: 2, count: 1, action: .mask)
        try c.write(region: bar2, offset: Reg.raise, data: le32(2))
        #expect(fds[2].wait(timeoutMilliseconds: 50) == nil)
        try c.setIRQs(index: VFIOPCIIRQ.msix.rawValue, start: 2, count: 1, action: .unmask)
        #expect(fds[2].wait(timeoutMilliseconds: 2000) == 1)
        // Trigger from the client (DATA_BOOL).
        try c.setIRQs(index: VFIOPCIIRQ.msix.rawValue, start: 0, count: 2, action: .trigger, bools: [false, true])
        #expect(fds[1].wait(timeoutMilliseconds: 2000) == 1)
        // De-assign vector 1, then disable the index.
        try c.setIRQEventFDs(index: VFIOPCIIRQ.msix.rawValue, start: 1, [nil])
        #expect(h.device.irqs.eventfd(index: 2, vector: 1) == nil)
        #expect(h.device.irqs.eventfd(index: 2, vector: 0) != nil)
        try c.disableIRQs(index: VFIOPCIIRQ.msix.rawValue)
        #expect(!h.device.irqs.isEnabled(2))
    }

    @Test func batchesEventfdsByServerMaxMsgFDs() throws {
        var conf = VFIOUserServerConfiguration()
        conf.maxMsgFDs = 1
        let h = try ServerHarness(configuration: conf)
        defer { _ = h.stop() }
        let c = try h.client()
        let fds = try (0..<4).map { _ in try VFIOEventFD.create(nonBlocking: true) }
        try c.setIRQEventFDs(index: VFIOPCIIRQ.msix.rawValue, fds)
        for v in 0..<4 { #expect(h.device.irqs.eventfd(index: 2, vector: v) != nil) }
    }

    private func runDMA(_ c: VFIOUserClient, _ h: ServerHarness, src: UInt64, dst: UInt64, len: UInt32) throws -> UInt32 {
        try c.write(region: bar2, offset: Reg.src, data: le64(src))
        try c.write(region: bar2, offset: Reg.dst, data: le64(dst))
        try c.write(region: bar2, offset: Reg.len, data: le32(len))
        try c.write(region: bar2, offset: Reg.status, data: le32(0))
        try c.write(region: bar2, offset: Reg.doorbell, data: le32(1))
        // The write is acknowledged before a message-based DMA completes: poll like a driver.
        for _ in 0..<1000 {
            let s = u32(try c.read(region: bar2, offset: Reg.status, count: 4))
            if s != 0 { return s }
            try c.serviceServerRequests(timeoutMilliseconds: 1)
        }
        return 0
    }

    @Test func dmaThroughSharedFD() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        let mem = try VFIOSharedMemory(name: "guest", size: 0x10000)
        mem.write(offset: 0x100, data: Array(0..<64))
        try c.dmaMap(address: 0x1_0000_0000, size: 0x10000, memory: mem)
        #expect(try runDMA(c, h, src: 0x1_0000_0100, dst: 0x1_0000_8000, len: 64) == 1)
        #expect(mem.read(offset: 0x8000, count: 64) == Array(0..<64))
        #expect(c.dmaRequestsServed == 0)   // no messages needed
        // Overlap rejected (EEXIST), identical re-map accepted; unmaps as the kernel's type1 IOMMU: a range cutting
        // a mapping is refused (EINVAL), a range holding no mapping succeeds and unmaps nothing.
        let other = try VFIOSharedMemory(name: "guest2", size: 0x1000)
        #expect(throws: VFIOUserError.peer(errno: VFIOErrno.EEXIST, command: 2)) {
            try c.dmaMap(address: 0x1_0000_F000, size: 0x1000, memory: other)
        }
        #expect(throws: VFIOUserError.peer(errno: VFIOErrno.EINVAL, command: 3)) {
            try c.dmaUnmap(address: 0x1_0000_0000, size: 0x1000)
        }
        try c.dmaUnmap(address: 0x2_0000_0000, size: 0x1000)
        #expect(try runDMA(c, h, src: 0x1_0000_0100, dst: 0x1_0000_8000, len: 64) == 1)   // still mapped
        try c.dmaUnmap(address: 0x1_0000_0000, size: 0x10000)
        #expect(try runDMA(c, h, src: 0x1_0000_0100, dst: 0x1_0000_8000, len: 64) == 2)   // unmapped: DMA error
    }

    @Test func dmaThroughMessages() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        let mem = try VFIOSharedMemory(name: "guest", size: 0x4000)
        let pattern = (0..<3000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        mem.write(offset: 0, data: pattern)
        try c.dmaMap(address: 0x8000_0000, size: 0x4000, memory: mem, shareFD: false)
        #expect(try runDMA(c, h, src: 0x8000_0000, dst: 0x8000_1000, len: 3000) == 1)
        #expect(mem.read(offset: 0x1000, count: 3000)! == pattern, "DMA result")
        #expect(c.dmaRequestsServed >= 2)   // one DMA_READ and one DMA_WRITE at least
        try c.dmaUnmapAll()
        #expect(try runDMA(c, h, src: 0x8000_0000, dst: 0x8000_1000, len: 16) == 2)
    }

    /// A client negotiating 0.0 (as QEMU does) gets QEMU's DMA message layout; the Swift client follows it.
    @Test func dmaThroughMessagesWithQEMULayout() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client { $0.minor = 0 }
        #expect(c.serverVersion.minor == 0 && c.dmaLayout == .qemu)
        let mem = try VFIOSharedMemory(name: "guest", size: 0x2000)
        let pattern = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        mem.write(offset: 0, data: pattern)
        try c.dmaMap(address: 0x9000_0000, size: 0x2000, memory: mem, shareFD: false)
        #expect(try runDMA(c, h, src: 0x9000_0000, dst: 0x9000_1000, len: 1000) == 1)
        #expect(mem.read(offset: 0x1000, count: 1000)! == pattern, "DMA result")
    }

    /// Scatter-gather DMA by message: every piece's DMA_READ (then DMA_WRITE) goes out before the first reply is
    /// awaited, in windows of at most 64 messages and about 128 KiB; each reply is matched to its piece by message
    /// ID (the pieces are written back in reverse order, so a mix-up shows), in both DMA layouts, across window
    /// boundaries, and the connection serves the next request normally afterwards.
    @Test(arguments: [(512, 70, false), (4096, 40, false), (100, 3, false), (4096, 40, true), (65536, 4, false)])
    func scatterGatherDMAIsPipelinedAndMatchedByID(segment: Int, pieces: Int, qemuLayout: Bool) throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client { if qemuLayout { $0.minor = 0 } }
        let len = segment * pieces
        let size = (2 * len + 0xFFF) & ~0xFFF
        let mem = try VFIOSharedMemory(name: "guest", size: size)
        var rng = SplitMix64(seed: UInt64(segment * 1000 + pieces))
        print("scatterGatherDMA seed \(segment * 1000 + pieces)")
        let pattern = (0..<len).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        mem.write(offset: 0, data: pattern)
        try c.dmaMap(address: 0x4000_0000, size: UInt64(size), memory: mem, shareFD: false)
        let served = c.dmaRequestsServed
        try c.write(region: bar2, offset: Reg.src, data: le64(0x4000_0000))
        try c.write(region: bar2, offset: Reg.dst, data: le64(0x4000_0000 + UInt64(len)))
        try c.write(region: bar2, offset: Reg.len, data: le32(UInt32(len)))
        try c.write(region: bar2, offset: Reg.segment, data: le32(UInt32(segment)))
        try c.write(region: bar2, offset: Reg.status, data: le32(0))
        try c.write(region: bar2, offset: Reg.doorbell, data: le32(3))
        var status: UInt32 = 0
        for _ in 0..<2000 where status == 0 {
            status = u32(try c.read(region: bar2, offset: Reg.status, count: 4))
            if status == 0 { try c.serviceServerRequests(timeoutMilliseconds: 1) }
        }
        #expect(status == 1)
        var expected: [UInt8] = []
        for i in (0..<pieces).reversed() { expected += pattern[(i * segment)..<((i + 1) * segment)] }
        #expect(mem.read(offset: len, count: len)! == expected, "pieces written back in reverse order")
        #expect(c.dmaRequestsServed - served == 2 * pieces)
        #expect(try c.read(region: cfg, offset: 0, count: 4) == le32(0x5678_1234))
    }

    @Test func resetAndFLR() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        try c.write(region: bar2, offset: Reg.scratch, data: le32(0xFEED))
        try c.reset()
        #expect(h.function.resets == 1)
        #expect(try c.read(region: bar2, offset: Reg.scratch, count: 4) == le32(0))
        try c.write(region: cfg, offset: 0x48, data: [0x10, 0xA8])   // Initiate FLR
        #expect(h.function.resets == 2)
    }

    @Test func disconnectKeepsDeviceStateAndDropsDMAAndIRQs() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        do {
            let c = try h.client()
            try c.write(region: bar2, offset: Reg.scratch, data: le32(0x1234))
            let mem = try VFIOSharedMemory(name: "guest", size: 0x1000)
            try c.dmaMap(address: 0x1000, size: 0x1000, memory: mem)
            try c.setIRQEventFDs(index: VFIOPCIIRQ.msix.rawValue, [try VFIOEventFD.create()])
            #expect(h.device.irqs.isEnabled(2))
            c.close()
        }
        #expect(h.waitClientsServed(1))
        #expect(!h.device.irqs.isEnabled(2))
        #expect(h.device.dma == nil)
        let c2 = try h.client()
        #expect(try c2.read(region: bar2, offset: Reg.scratch, count: 4) == le32(0x1234))
        // The old DMA mapping is gone.
        #expect(try runDMA(c2, h, src: 0x1000, dst: 0x1800, len: 8) == 2)
        // Same for a third client after an abrupt close mid-stream.
        c2.close()
        #expect(h.waitClientsServed(2))
        let c3 = try h.client()
        #expect(try c3.read(region: bar2, offset: Reg.scratch, count: 4) == le32(0x1234))
    }

    @Test func writeMultiple() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        try c.writeMultiple([(bar2, Reg.scratch, le32(0xAA)), (bar2, 0x40, [1, 2, 3, 4, 5, 6, 7, 8])])
        #expect(try c.read(region: bar2, offset: 0x40, count: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(try c.read(region: bar2, offset: 0, count: 1) == [0xAA])
        // Not negotiated: the server neither advertises nor accepts it.
        let h2 = try ServerHarness()
        defer { _ = h2.stop() }
        let c2 = try h2.client { $0.writeMultiple = false }
        #expect(c2.serverCapabilities.writeMultiple == nil)
        #expect(throws: VFIOUserError.self) { try c2.writeMultiple([(bar2, 0, [1])]) }
    }

    /// A posted REGION_WRITE_MULTI gets no reply, is performed in order (the later write to the same register
    /// wins) and before the next message: the read after it sees every write.
    @Test func postedWriteMultipleIsOrderedBeforeTheNextRead() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        try c.writeMultiple([(bar2, Reg.scratch, le32(0x11)), (bar2, 0x40, le64(0x0807_0605_0403_0201)), (bar2, Reg.scratch, le32(0x22))],
                            posted: true)
        #expect(try c.read(region: bar2, offset: 0x40, count: 8) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(try c.read(region: bar2, offset: Reg.scratch, count: 4) == le32(0x22))
        // The connection is still in step: the next call gets its own reply.
        #expect(try c.read(region: cfg, offset: 0, count: 4) == le32(0x5678_1234))
    }

    /// `PCIFunction.barWritePosted(_:_:)` over vfio-user: one REGION_WRITE_MULTI when negotiated, one posted
    /// REGION_WRITE each when not; the device ends up the same either way, and a bad entry fails before sending.
    @Test func postedBARWriteBatchWithAndWithoutWriteMultiple() throws {
        for multiple in [true, false] {
            let h = try ServerHarness()
            defer { _ = h.stop() }
            let f = try VFIOUserPCIFunction(client: try h.client { $0.writeMultiple = multiple }, address: "test")
            #expect(f.client.serverCapabilities.effectiveWriteMultiple == multiple)
            try f.barWritePosted(2, [PostedBARWrite(offset: Reg.scratch, width: 4, value: 0x33),
                                     PostedBARWrite(offset: 0x40, width: 8, value: 0x1122_3344_5566_7788),
                                     PostedBARWrite(offset: Reg.scratch, width: 4, value: 0x44)])
            #expect(try f.barRead(2, offset: 0x40, width: 8) == 0x1122_3344_5566_7788)
            #expect(try f.barRead(2, offset: Reg.scratch, width: 4) == 0x44)
            #expect(throws: PCIError.self) {
                try f.barWritePosted(2, [PostedBARWrite(offset: Reg.scratch, width: 4, value: 0x55), PostedBARWrite(offset: 0x10_0000, width: 4, value: 1)])
            }
            #expect(try f.barRead(2, offset: Reg.scratch, width: 4) == 0x44, "nothing of a refused batch is sent")
        }
    }

    @Test func stopRemovesSocketFile() throws {
        let h = try ServerHarness()
        let c = try h.client()
        _ = try c.deviceInfo()
        #expect(FileManager.default.fileExists(atPath: h.path))
        #expect(h.stop())
        #expect(!FileManager.default.fileExists(atPath: h.path))
        #expect(throws: VFIOUserError.self) { _ = try c.deviceInfo() }
    }
}

/// A composing device (as vfio-cxl will be): device-info capabilities, an extra typed region, and ioeventfds.
final class ComposedDevice: VFIOPCIDevice, @unchecked Sendable {
    let doorbellFD: VFIOEventFD
    init(function: TestPCIFunction) throws {
        doorbellFD = try VFIOEventFD.create()
        try super.init(function: function)
        deviceInfoCapabilities = [VFIOCapability(id: 6, version: 1, payload: [1, 0, 0, 0, 9, 0, 0, 0])]
        final class Const: VFIORegionAccessHandler, @unchecked Sendable {
            func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: Int(offset) + $0) } }
            func write(offset: UInt64, data: [UInt8]) throws(VFIOError) { throw .invalidArgument("read-only") }
        }
        addRegion(VFIOExtraRegion(info: VFIORegionInfo(index: 9, flags: [.read], size: 0x100,
                                                       capabilities: [VFIORegionTypeCapability(type: 0x8000_1E98, subtype: 2).capability]),
                                  handler: Const()))
    }
    override func regionIOFDs(_ index: UInt32) throws(VFIOError) -> [VFIORegionIOFD] {
        index == 2 ? [VFIORegionIOFD(offset: TestPCIFunction.Reg.doorbell, size: 4, fd: doorbellFD.fd, datamatch: 1)] : []
    }
}

@Suite(.serialized) struct CompositionTests {
    @Test func deviceInfoCapsExtraRegionsAndIOFDs() throws {
        let f = try TestPCIFunction()
        let d = try ComposedDevice(function: f)
        let path = NSTemporaryDirectory() + "vfu-comp-\(getpid()).sock"
        let server = try VFIOUserServer(device: d, socketPath: path)
        let t = Thread { try? server.run() }
        t.start()
        defer { server.stop() }
        let c = try VFIOUserClient(socketPath: path)
        let info = try c.deviceInfo()
        #expect(info.flags.contains(.caps) && info.numRegions == 10)
        #expect(info.capabilities == [VFIOCapability(id: 6, version: 1, payload: [1, 0, 0, 0, 9, 0, 0, 0])])
        let r9 = try c.regionInfo(9)
        #expect(r9.size == 0x100 && r9.type == VFIORegionTypeCapability(type: 0x8000_1E98, subtype: 2))
        #expect(try c.read(region: 9, offset: 4, count: 3) == [4, 5, 6])
        #expect(throws: VFIOUserError.peer(errno: 22, command: 10)) { try c.write(region: 9, offset: 0, data: [1]) }
        let io = try c.regionIOFDs(2)
        #expect(io.entries == [VFIOUserRegionIOFDs.Entry(offset: 8, size: 4, fdIndex: 0, type: 0, flags: 0, datamatch: 1)])
        // The fd we got is the device's eventfd: signalling it is seen on the device's side.
        let fd = try #require(io.fds.take(0))
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(fd, $0.baseAddress, 8) }
        close(fd)
        #expect(d.doorbellFD.wait(timeoutMilliseconds: 1000) == 1)
        #expect(try c.regionIOFDs(0).entries.isEmpty)
    }

    @Test func dmaMapMustBePageAligned() throws {
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let c = try h.client()
        let mem = try VFIOSharedMemory(name: "guest", size: 0x3000)
        #expect(throws: VFIOUserError.peer(errno: 22, command: 2)) { try c.dmaMap(address: 0x1800, size: 0x1000, memory: mem) }
        #expect(throws: VFIOUserError.peer(errno: 22, command: 2)) { try c.dmaMap(address: 0x1000, size: 0x800, memory: mem) }
        // Identical re-map is accepted (idempotent, like libvfio-user).
        try c.dmaMap(address: 0x1000, size: 0x1000, memory: mem)
        try c.dmaMap(address: 0x1000, size: 0x1000, memory: mem)
        // A non-page-aligned file offset is fine (mapped page-aligned internally).
        try c.dmaMap(address: 0x10000, size: 0x1000, memory: mem, memoryOffset: 0x800)
    }
}
