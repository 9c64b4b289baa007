import Foundation
import Logging
import PCI
import Testing
import VFIO
import VFIOTestSupport
@testable import VFIOUser

/// A kernel VFIO device (the fake kernel) served over vfio-user: the client's DMA_MAP lands in the device's IOMMU
/// at the client's IOVA, DMA_UNMAP and the disconnect take it out, and a range never mapped unmaps as the
/// kernel's type1 IOMMU does (success, nothing unmapped; QEMU with a vIOMMU sends these).
@Suite struct KernelDeviceServedTests {
    @Test func clientDMAReachesTheIOMMUAndLeavesIt() throws {
        let k = try FakeVFIOKernel()
        let fn = try VFIOKernelPCIFunction(device: try VFIOKernelDevice.open("0000:01:00.0", system: k))
        let device = try VFIOPCIDevice(function: fn)
        let path = NSTemporaryDirectory() + "vfu-kernel-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var logger = Logger(label: "test.kernel-serve")
        logger.logLevel = .warning
        let server = try VFIOUserServer(device: device, socketPath: path, logger: logger)
        let done = DispatchSemaphore(value: 0)
        Thread { try? server.run(); done.signal() }.start()
        defer { server.stop(); done.wait() }

        var cfg = VFIOUserClientConfiguration()
        cfg.timeoutMilliseconds = 5000
        let c = try VFIOUserClient(socketPath: path, configuration: cfg)
        // BAR0's mmap is the kernel device fd at the region offset, in the kernel's sparse areas.
        let bar0 = try c.regionInfo(0)
        #expect(bar0.info.flags.rawValue & VFIORegionFlags.mmap.rawValue != 0 && bar0.sparseAreas?.count == 2)
        let mem = try VFIOSharedMemory(name: "guest", size: 0x8000)
        try c.dmaMap(address: 0x1_0000_0000, size: 0x8000, memory: mem)
        let m = k.dmaMaps[0x1_0000_0000]
        #expect(m?.size == 0x8000)
        #expect(m.map { $0.vaddr != 0 && $0.vaddr != UInt64(UInt(bitPattern: mem.base)) } == true)   // the server's own mmap of the fd
        try c.dmaUnmap(address: 0x3_0000_0000, size: 0x1000)          // never mapped: success, nothing unmapped
        #expect(k.dmaMaps.count == 1)
        #expect(k.ioctlCalls(VFIOKernelUAPI.iommuUnmapDMA).isEmpty)
        try c.dmaUnmap(address: 0x1_0000_0000, size: 0x8000)
        #expect(k.dmaMaps.isEmpty)
        try c.dmaUnmap(address: 0xfef0_0000, size: 0xffff_ffff_0110_0000)   // QEMU's: up to the top of the address space
        #expect(k.ioctlCalls(VFIOKernelUAPI.iommuUnmapDMA).count == 1)
        try c.dmaMap(address: 0x2_0000_0000, size: 0x4000, memory: mem)
        #expect(k.dmaMaps.count == 1)
        // MSI-X eventfds go to the kernel.
        let e = try VFIOEventFD.create()
        try c.setIRQEventFDs(index: VFIOPCIIRQ.msix.rawValue, start: 0, [e])
        #expect(k.irqFDs[VFIOPCIIRQ.msix.rawValue]?.count == 1)
        // A map the IOMMU refuses (e.g. RLIMIT_MEMLOCK) is refused to the client and not kept.
        k.ioctlErrors[VFIOKernelUAPI.iommuMapDMA] = VFIOErrno.ENOMEM
        #expect(throws: VFIOUserError.peer(errno: VFIOErrno.ENOMEM, command: 2)) {
            try c.dmaMap(address: 0x5_0000_0000, size: 0x1000, memory: mem)
        }
        k.ioctlErrors[VFIOKernelUAPI.iommuMapDMA] = nil
        try c.dmaMap(address: 0x5_0000_0000, size: 0x1000, memory: mem)   // the failed one left nothing behind
        // The disconnect unmaps everything and disables the interrupts.
        c.close()
        while server.clientsServed < 1 { usleep(1000) }
        #expect(k.dmaMaps.isEmpty)
        #expect(k.irqFDs.isEmpty)
    }
}
