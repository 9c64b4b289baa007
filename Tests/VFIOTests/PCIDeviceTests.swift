import Testing
import PCI
@testable import VFIO
import VFIOTestSupport

private func makeDevice() throws -> (TestPCIFunction, VFIOPCIDevice) {
    let f = try TestPCIFunction()
    let d = try VFIOPCIDevice(function: f)
    return (f, d)
}

private func cfg32(_ d: VFIOPCIDevice, _ o: UInt64) throws -> UInt32 {
    let b = try d.read(region: VFIOPCIRegion.config.rawValue, offset: o, count: 4)
    return b.enumerated().reduce(0) { $0 | UInt32($1.element) << UInt32(8 * $1.offset) }
}
private func le(_ v: UInt32, _ n: Int = 4) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> UInt32(8 * $0)) } }

@Suite struct VFIOPCIDeviceTests {
    @Test func deviceAndRegionInfo() throws {
        let (_, d) = try makeDevice()
        let info = d.deviceInfo()
        #expect(info.flags == [.pci, .reset])
        #expect(info.numRegions == 9 && info.numIRQs == 5)
        let bar0 = try d.regionInfo(0)
        #expect(bar0.size == 0x8000)
        #expect(bar0.flags.contains([.read, .write, .mmap, .caps]))
        let sparse = try VFIOSparseMMapCapability(parsing: bar0.capabilities[0], regionSize: bar0.size)
        #expect(sparse.areas == [VFIOSparseArea(offset: 0, size: 0x2000), VFIOSparseArea(offset: 0x4000, size: 0x4000)])
        let bar2 = try d.regionInfo(2)
        #expect(bar2.flags == [.read, .write] && bar2.size == 0x1000)
        #expect(try d.regionInfo(1).size == 0)   // upper half of BAR0
        #expect(try d.regionInfo(7).size == 4096)
        #expect(throws: VFIOError.self) { try d.regionInfo(9) }
        #expect(try d.irqInfo(1).count == 4)
        #expect(try d.irqInfo(2).count == 4)
        #expect(try d.irqInfo(0).flags.contains(.automasked))
    }

    @Test func barSizingAndProgramming() throws {
        let (_, d) = try makeDevice()
        let cfg = VFIOPCIRegion.config.rawValue
        #expect(try cfg32(d, 0x10) == 0xC)         // 64-bit prefetchable, base 0
        try d.write(region: cfg, offset: 0x10, data: le(0xFFFF_FFFF))
        try d.write(region: cfg, offset: 0x14, data: le(0xFFFF_FFFF))
        #expect(try cfg32(d, 0x10) == 0xFFFF_800C)
        #expect(try cfg32(d, 0x14) == 0xFFFF_FFFF)
        try d.write(region: cfg, offset: 0x10, data: le(0xFEB0_0000))
        #expect(try cfg32(d, 0x10) == 0xFEB0_000C)
        try d.write(region: cfg, offset: 0x18, data: le(0xFFFF_FFFF))
        #expect(try cfg32(d, 0x18) == 0xFFFF_F000)
        try d.write(region: cfg, offset: 0x30, data: le(0xFFFF_FFFF))
        #expect(try cfg32(d, 0x30) == 0)            // no ROM
        #expect(try cfg32(d, 0) == 0x5678_1234)     // IDs pass through
    }

    @Test func commandIsEmulatedWithCatalogMask() throws {
        let (f, d) = try makeDevice()
        let cfg = VFIOPCIRegion.config.rawValue
        try d.write(region: cfg, offset: 4, data: [0xFF, 0xFF])
        // RW bits of the catalog: IO, MEM, BME, parity, SERR, INTx disable = 0x547
        let v = try d.read(region: cfg, offset: 4, count: 2)
        #expect(UInt16(v[0]) | UInt16(v[1]) << 8 == 0x0547)
        #expect(f.config[4] == 0xFF)   // forwarded
    }

    @Test func msixTableIsTrappedAndDeliveryFollowsSetIRQs() throws {
        let (f, d) = try makeDevice()
        #expect(d.activeInterruptMode == .intx)
        let fd = try VFIOEventFD.create(nonBlocking: true)
        try d.setIRQs(VFIOIRQSet(index: VFIOPCIIRQ.msix.rawValue, start: 0, count: 1, action: .trigger, data: .eventfds([fd])))
        #expect(d.activeInterruptMode == .msix)
        // The guest-visible enable bit is virtualised and reads back.
        try d.write(region: VFIOPCIRegion.config.rawValue, offset: 0x7a, data: [0x03, 0x80])
        #expect(d.msixEnableBit)
        f.sink?(0)
        #expect(fd.wait(timeoutMilliseconds: 1000) == 1)
        // SET_IRQS mask: the vector becomes pending (PBA bit 0), delivered on unmask.
        try d.setIRQs(VFIOIRQSet(index: VFIOPCIIRQ.msix.rawValue, start: 0, count: 1, action: .mask, data: .none))
        f.sink?(0)
        #expect(fd.wait(timeoutMilliseconds: 0) == nil)
        #expect(try d.read(region: 0, offset: 0x3000, count: 8)[0] == 1)
        try d.setIRQs(VFIOIRQSet(index: VFIOPCIIRQ.msix.rawValue, start: 0, count: 1, action: .unmask, data: .none))
        #expect(fd.wait(timeoutMilliseconds: 1000) == 1)
        #expect(try d.read(region: 0, offset: 0x3000, count: 8)[0] == 0)
        // The table is emulated storage: entries reset masked and read back what was written.
        #expect(try d.read(region: 0, offset: 0x2000 + 12, count: 4) == le(1))
        try d.write(region: 0, offset: 0x2000 + 16, data: le(0xFEE0_0000))
        #expect(try d.read(region: 0, offset: 0x2000 + 16, count: 4) == le(0xFEE0_0000))
        #expect(f.bar0.read(offset: 0x2010, count: 4) == [0, 0, 0, 0])   // never reaches the function
    }

    @Test func msiAndIntxDelivery() throws {
        let (f, d) = try makeDevice()
        let intx = try VFIOEventFD.create(nonBlocking: true)
        try d.setIRQs(VFIOIRQSet(index: 0, start: 0, count: 1, action: .trigger, data: .eventfds([intx])))
        f.sink?(0)
        #expect(intx.wait(timeoutMilliseconds: 1000) == 1)
        f.sink?(0)                                                      // automasked
        #expect(intx.wait(timeoutMilliseconds: 0) == nil)
        try d.setIRQs(VFIOIRQSet(index: 0, start: 0, count: 1, action: .unmask, data: .none))
        #expect(intx.wait(timeoutMilliseconds: 1000) == 1)             // the pending assertion, on unmask
        // Interrupt Status (Status bit 3) follows the assertion; the VMM's unmask (EOI) clears it.
        f.sink?(0)
        #expect(try d.read(region: VFIOPCIRegion.config.rawValue, offset: 6, count: 1)[0] & 0x08 == 0x08)
        #expect(intx.wait(timeoutMilliseconds: 1000) == 1)
        try d.setIRQs(VFIOIRQSet(index: 0, start: 0, count: 1, action: .unmask, data: .none))
        #expect(try d.read(region: VFIOPCIRegion.config.rawValue, offset: 6, count: 1)[0] & 0x08 == 0)
        #expect(try d.read(region: VFIOPCIRegion.config.rawValue, offset: 6, count: 1)[0] & 0x10 == 0x10)   // cap list passes through
        // INTx Disable in Command suppresses INTx.
        try d.write(region: VFIOPCIRegion.config.rawValue, offset: 4, data: [0x00, 0x04])
        f.sink?(0)
        #expect(intx.wait(timeoutMilliseconds: 0) == nil)
        // Clearing Interrupt Disable while still asserted delivers it (PCI 2.3).
        try d.write(region: VFIOPCIRegion.config.rawValue, offset: 4, data: [0x00, 0x00])
        #expect(intx.wait(timeoutMilliseconds: 1000) == 1)
        let msi = [try VFIOEventFD.create(nonBlocking: true), try VFIOEventFD.create(nonBlocking: true)]
        try d.setIRQs(VFIOIRQSet(index: 1, start: 0, count: 2, action: .trigger, data: .eventfds(msi)))
        try d.write(region: VFIOPCIRegion.config.rawValue, offset: 0x62, data: [0x01, 0x00])   // MSI enable bit
        #expect(d.activeInterruptMode == .msi && d.msiEnableBit)
        f.sink?(1)
        #expect(msi[1].wait(timeoutMilliseconds: 1000) == 1)
        // Disabling the MSI index (count 0, DATA_NONE) falls back to INTx.
        try d.setIRQs(VFIOIRQSet(index: 1, start: 0, count: 0, action: .trigger, data: .none))
        #expect(d.activeInterruptMode == .intx)
    }

    @Test func flrThroughExpressDeviceControl() throws {
        let (f, d) = try makeDevice()
        let cfg = VFIOPCIRegion.config.rawValue
        try d.write(region: 2, offset: 0, data: le(0xABCD))
        try d.write(region: cfg, offset: 4, data: [0x06, 0x00])
        try d.write(region: cfg, offset: 0x10, data: le(0xFEB0_0000))
        try d.write(region: cfg, offset: 0x48, data: [0x10, 0xA8])   // bit 15: initiate FLR
        #expect(f.resets == 1)
        #expect(try d.read(region: 2, offset: 0, count: 4) == [0, 0, 0, 0])
        #expect(try cfg32(d, 0x10) == 0xC)
        #expect(try d.read(region: cfg, offset: 4, count: 2) == [0, 0])
        try d.reset()
        #expect(f.resets == 2)
    }

    @Test func boundsAreChecked() throws {
        let (_, d) = try makeDevice()
        #expect(throws: VFIOError.self) { try d.read(region: 2, offset: 0xFFC, count: 8) }
        #expect(throws: VFIOError.self) { try d.read(region: 2, offset: UInt64.max, count: 2) }
        #expect(throws: VFIOError.self) { try d.read(region: 7, offset: 4096, count: 1) }
    }

    /// A negative count is refused as an invalid argument (EINVAL), on every region and in `InPlaceBytes.read`
    /// itself; an in-place read that fails gives its error, not bytes.
    @Test func negativeCountsAndFailedInPlaceReadsAreErrors() throws {
        let (_, d) = try makeDevice()
        for region in [VFIOPCIRegion.config.rawValue, 2] {
            #expect { try d.read(region: region, offset: 0, count: -1) } throws: { ($0 as? VFIOError)?.errno == VFIOErrno.EINVAL }
        }
        #expect { try InPlaceBytes.read(count: -4) { _ in } } throws: { ($0 as? VFIOError)?.errno == VFIOErrno.EINVAL }
        #expect(throws: VFIOError.notSupported("x")) {
            try InPlaceBytes.read(count: 4) { (_) throws(VFIOError) in throw .notSupported("x") }
        }
        #expect(try InPlaceBytes.read(count: 3) { $0.copyBytes(from: [7, 8, 9]) } == [7, 8, 9])
        #expect(try d.read(region: VFIOPCIRegion.config.rawValue, offset: 0, count: 0) == [])
    }

    @Test func trapsAndOverridesForComposingDevices() throws {
        final class Trap: VFIORegionAccessHandler, VFIOConfigAccessHandler, @unchecked Sendable {
            var writes: [(UInt64, [UInt8])] = []
            func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] { Array(repeating: 0xEE, count: count) }
            func write(offset: UInt64, data: [UInt8]) throws(VFIOError) { writes.append((offset, data)) }
            func configRead(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 { 0xC0FFEE }
            func configWrite(_ offset: Int, width: Int, value: UInt32) throws(VFIOError) {}
        }
        let (_, d) = try makeDevice()
        let t = Trap()
        d.trap(region: 0, range: 0x5000..<0x5100, handler: t)
        d.overrideConfig(range: 0x100..<0x110, handler: t)
        d.addRegion(VFIOExtraRegion(info: VFIORegionInfo(index: 9, flags: [.read], size: 16,
                                                         capabilities: [VFIORegionTypeCapability(type: 0x8000_1E98, subtype: 1).capability]), handler: t))
        d.deviceInfoCapabilities = [VFIOCapability(id: 6, version: 1, payload: [1, 0, 0, 0])]
        #expect(try d.read(region: 0, offset: 0x4FFE, count: 4) == [0, 0, 0xEE, 0xEE])
        try d.write(region: 0, offset: 0x5000, data: [1, 2])
        #expect(t.writes.count == 1)
        #expect(try cfg32(d, 0x100) == 0xC0FFEE)
        #expect(d.deviceInfo().numRegions == 10)
        #expect(d.deviceInfo().capabilities.count == 1)
        let sparse = try VFIOSparseMMapCapability(parsing: try d.regionInfo(0).capabilities[0], regionSize: 0x8000)
        #expect(sparse.areas == [VFIOSparseArea(offset: 0, size: 0x2000), VFIOSparseArea(offset: 0x4000, size: 0x1000), VFIOSparseArea(offset: 0x6000, size: 0x2000)])
        #expect(try d.read(region: 9, offset: 0, count: 2) == [0xEE, 0xEE])
    }

    /// As vfio-pci: Vendor ID, Device ID, the Capabilities Pointer, Interrupt Pin and the capability headers are
    /// answered from the snapshot taken at init (the function is not asked, so a change behind the device's back
    /// does not show), guest writes to them are dropped, not forwarded; other bytes still reach the function, and
    /// an override registered later wins over the read-only image. Both read paths (in place, lock-free for these
    /// bytes; `configRead`, under the lock) and every width agree.
    @Test func identityAndCapabilityHeadersAreReadOnlyVirtual() throws {
        let (f, d) = try makeDevice()
        func direct(_ o: UInt64, _ n: Int) throws -> UInt32 {
            let raw = UnsafeMutableRawBufferPointer.allocate(byteCount: n, alignment: 8)
            defer { raw.deallocate() }
            try d.read(region: VFIOPCIRegion.config.rawValue, offset: o, into: raw)
            return raw.enumerated().reduce(0) { $0 | UInt32($1.element) << UInt32(8 * $1.offset) }
        }
        // The function changes them behind the device's back (no real function does; it shows who answers).
        f.lock.lock()
        for o in [0, 1, 2, 3, 0x34, 0x3d, 0x40, 0x41, 0x60, 0x61, 0x78, 0x79] { f.config[o] ^= 0xFF }
        f.config[8] = 0x42                       // Revision ID: not virtual
        f.writable[0] = 0xFF; f.writable[1] = 0xFF   // a write forwarded to the function would now change it
        f.lock.unlock()
        let ids = UInt32(TestPCIFunction.device) << 16 | UInt32(TestPCIFunction.vendor)
        #expect(try direct(0, 4) == ids)
        #expect(try direct(0, 2) == UInt32(TestPCIFunction.vendor))
        #expect(try direct(2, 2) == UInt32(TestPCIFunction.device))
        #expect(try direct(1, 1) == UInt32(TestPCIFunction.vendor >> 8))
        #expect(try d.configRead(0, width: 4) == ids)
        #expect(try direct(0x34, 1) == 0x40)
        #expect(try direct(0x3d, 1) == 1)
        #expect(try direct(0x40, 2) == 0x6010)   // PCI Express: ID 0x10, next 0x60
        #expect(try direct(0x60, 2) == 0x7805)   // MSI
        #expect(try direct(0x78, 2) == 0x0011)   // MSI-X, last
        #expect(try direct(8, 1) == 0x42)         // reaches the function
        #expect(try direct(8, 4) & 0xFF == 0x42)
        // A dword mixing read-only virtual bytes with function bytes: one access, merged.
        #expect(try direct(0x34, 4) & 0xFF == 0x40)
        // Writes to them are dropped and not forwarded.
        try d.write(region: VFIOPCIRegion.config.rawValue, offset: 0, data: [0xAA, 0xBB])
        #expect(try direct(0, 2) == UInt32(TestPCIFunction.vendor))
        f.lock.lock(); #expect(f.config[0] == UInt8(TestPCIFunction.vendor & 0xFF) ^ 0xFF); f.lock.unlock()
        // A reset keeps them.
        try d.functionLevelReset()
        #expect(try direct(0, 4) == ids)
        // An override covering them wins.
        final class Shadow: VFIOConfigAccessHandler, @unchecked Sendable {
            func configRead(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 { width == 4 ? 0xC0DE_CAFE : 0x5A }
            func configWrite(_ offset: Int, width: Int, value: UInt32) throws(VFIOError) {}
        }
        d.overrideConfig(range: 0x40..<0x44, handler: Shadow())
        #expect(try direct(0x40, 4) == 0xC0DE_CAFE)
        #expect(try direct(0x40, 1) == 0x5A)
        #expect(try d.configRead(0x40, width: 4) == 0xC0DE_CAFE)
        #expect(try direct(0x60, 2) == 0x7805)
    }

    @Test func capabilityChainRoundTripAndHostileInput() throws {
        let caps = [VFIOSparseMMapCapability(areas: [VFIOSparseArea(offset: 0, size: 0x1000)]).capability,
                    VFIORegionTypeCapability(type: 1, subtype: 2).capability]
        let body = [UInt8](repeating: 0, count: 32) + VFIOCapabilityChain.encode(caps, baseOffset: 32)
        let decoded = try VFIOCapabilityChain.decode(body, firstOffset: 32, minOffset: 32)
        #expect(decoded.count == 2 && decoded[1].id == 2)
        // Self-pointing next: rejected, no loop.
        var loop = body
        loop[32 + 4] = 32
        #expect(throws: VFIOError.self) { try VFIOCapabilityChain.decode(loop, firstOffset: 32, minOffset: 32) }
        // Offset past the end, offset into the fixed part.
        #expect(throws: VFIOError.self) { try VFIOCapabilityChain.decode(body, firstOffset: UInt32(body.count - 4), minOffset: 32) }
        #expect(throws: VFIOError.self) { try VFIOCapabilityChain.decode(body, firstOffset: 8, minOffset: 32) }
        // Area count overflowing the payload; area beyond the region.
        let huge = VFIOCapability(id: 1, version: 1, payload: [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
        #expect(throws: VFIOError.self) { try VFIOSparseMMapCapability(parsing: huge, regionSize: 1 << 20) }
        let outside = VFIOSparseMMapCapability(areas: [VFIOSparseArea(offset: UInt64.max, size: 2)]).capability
        #expect(throws: VFIOError.self) { try VFIOSparseMMapCapability(parsing: outside, regionSize: 1 << 20) }
    }
}
