import CSwiftCXLSystem
import Testing
import PCI
@testable import VFIO
import VFIOTestSupport
#if canImport(Glibc)
import Glibc
#endif

private func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(8 * $0)) } }
private func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * $0)) } }
private func open(_ k: FakeVFIOKernel, _ path: VFIOKernelPath = .auto) throws(VFIOKernelError) -> VFIOKernelDevice {
    try VFIOKernelDevice.open("01:00.0", options: VFIOKernelOpenOptions(path: path), system: k)
}
/// `_IO(';', nr)`: the uAPI's request numbers carry no size or direction.
private func io(_ nr: UInt) -> UInt { 0x3B << 8 | nr }

/// The uAPI declared once in the C target: numbers and sizes as linux/vfio.h and linux/iommufd.h lay them out,
/// and each Swift encoder produces exactly the struct's bytes.
@Suite struct VFIOKernelUAPITests {
    @Test func ioctlNumbersAreTheKernels() {
        #expect(VFIOKernelUAPI.getAPIVersion == io(100))
        #expect(VFIOKernelUAPI.checkExtension == io(101))
        #expect(VFIOKernelUAPI.setIOMMU == io(102))
        #expect(VFIOKernelUAPI.groupGetStatus == io(103))
        #expect(VFIOKernelUAPI.groupSetContainer == io(104))
        #expect(VFIOKernelUAPI.groupGetDeviceFD == io(106))
        #expect(VFIOKernelUAPI.deviceGetInfo == io(107))
        #expect(VFIOKernelUAPI.deviceGetRegionInfo == io(108))
        #expect(VFIOKernelUAPI.deviceGetIRQInfo == io(109))
        #expect(VFIOKernelUAPI.deviceSetIRQs == io(110))
        #expect(VFIOKernelUAPI.deviceReset == io(111))
        #expect(VFIOKernelUAPI.deviceGetPCIHotResetInfo == io(112))
        #expect(VFIOKernelUAPI.devicePCIHotReset == io(113))
        #expect(VFIOKernelUAPI.iommuMapDMA == io(113))
        #expect(VFIOKernelUAPI.iommuUnmapDMA == io(114))
        #expect(VFIOKernelUAPI.deviceBindIOMMUFD == io(118))
        #expect(VFIOKernelUAPI.deviceAttachIOMMUFDPT == io(119))
        #expect(VFIOKernelUAPI.iommuDestroy == io(0x80))
        #expect(VFIOKernelUAPI.ioasAlloc == io(0x81))
        #expect(VFIOKernelUAPI.ioasMap == io(0x85))
        #expect(VFIOKernelUAPI.ioasUnmap == io(0x86))
        #expect(VFIOKernelUAPI.ioasMapFile == io(0x8f))
        #expect(VFIOKernelUAPI.apiVersion == 0 && VFIOKernelUAPI.type1IOMMU == 1 && VFIOKernelUAPI.type1v2IOMMU == 3)
    }

    @Test func encodersMatchTheKernelStructSizes() {
        let size = VFIOKernelUAPI.size
        #expect(VFIOKernelUAPI.groupStatus().count == size(CSYSTEM_VFIO_GROUP_STATUS))
        // 20 bytes in Linux 6.1's header (cap_offset last), 24 once the trailing pad was added.
        #expect([20, 24].contains(size(CSYSTEM_VFIO_DEVICE_INFO)))
        #expect(VFIOKernelUAPI.deviceInfo(argsz: size(CSYSTEM_VFIO_DEVICE_INFO)).count == size(CSYSTEM_VFIO_DEVICE_INFO))
        #expect(VFIOKernelUAPI.regionInfo(index: 0, argsz: 32).count == size(CSYSTEM_VFIO_REGION_INFO))
        #expect(size(CSYSTEM_VFIO_INFO_CAP_HEADER) == VFIOCapability.headerSize)
        #expect(size(CSYSTEM_VFIO_REGION_SPARSE_MMAP_AREA) == VFIOSparseMMapCapability.areaSize)
        #expect(size(CSYSTEM_VFIO_REGION_INFO_CAP_SPARSE_MMAP) == VFIOCapability.headerSize + 8)
        #expect(size(CSYSTEM_VFIO_REGION_INFO_CAP_TYPE) == VFIORegionTypeCapability(type: 1, subtype: 2).capability.encodedSize)
        #expect(VFIOKernelUAPI.irqInfo(index: 0).count == size(CSYSTEM_VFIO_IRQ_INFO))
        #expect(VFIOKernelUAPI.irqSet(index: 0, start: 0, count: 0, action: .trigger, data: .none).count == size(CSYSTEM_VFIO_IRQ_SET))
        #expect(VFIOKernelUAPI.hotResetInfo(room: 0).count == size(CSYSTEM_VFIO_PCI_HOT_RESET_INFO))
        #expect(VFIOKernelUAPI.hotResetInfo(room: 1).count == size(CSYSTEM_VFIO_PCI_HOT_RESET_INFO) + size(CSYSTEM_VFIO_PCI_DEPENDENT_DEVICE))
        #expect(VFIOKernelUAPI.hotReset(groupFDs: []).count == size(CSYSTEM_VFIO_PCI_HOT_RESET))
        #expect(VFIOKernelUAPI.type1DMAMap(vaddr: 0, iova: 0, size: 0, writable: true).count == size(CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP))
        #expect(VFIOKernelUAPI.type1DMAUnmap(iova: 0, size: 0).count == size(CSYSTEM_VFIO_IOMMU_TYPE1_DMA_UNMAP))
        #expect(VFIOKernelUAPI.bindIOMMUFD(3).count == size(CSYSTEM_VFIO_DEVICE_BIND_IOMMUFD_S))
        #expect(VFIOKernelUAPI.attachIOMMUFDPT(1).count == size(CSYSTEM_VFIO_DEVICE_ATTACH_IOMMUFD_PT_S))
        #expect(VFIOKernelUAPI.destroy(1).count == size(CSYSTEM_IOMMU_DESTROY_S))
        #expect(VFIOKernelUAPI.ioasAllocArgs().count == size(CSYSTEM_IOMMU_IOAS_ALLOC_S))
        #expect(VFIOKernelUAPI.ioasMapArgs(ioas: 0, userVA: 0, length: 0, iova: 0, writable: true).count == size(CSYSTEM_IOMMU_IOAS_MAP_S))
        #expect(VFIOKernelUAPI.ioasMapFileArgs(ioas: 0, fd: 0, start: 0, length: 0, iova: 0, writable: true).count == size(CSYSTEM_IOMMU_IOAS_MAP_FILE_S))
        #expect(VFIOKernelUAPI.ioasUnmapArgs(ioas: 0, iova: 0, length: 0).count == size(CSYSTEM_IOMMU_IOAS_UNMAP_S))
    }

    /// The argument structs the kernel backend and vfio-user share (`VFIO/InfoStructs.swift`) read each field at the
    /// C struct's offsetof, capability chain included, and encode the same bytes back.
    @Test func sharedInfoStructsDecodeAtTheKernelOffsets() throws {
        func off(_ s: csystem_vfio_struct, _ f: Int32) -> Int { Int(csystem_vfio_field_offset(Int32(s.rawValue), f)) }
        func put(_ b: inout [UInt8], _ at: Int, _ v: [UInt8]) { b.replaceSubrange(at..<(at + v.count), with: v) }
        let cap = VFIORegionTypeCapability(type: 7, subtype: 9).capability
        let chain = VFIOCapabilityChain.encode([cap], baseOffset: 32)
        var r = [UInt8](repeating: 0, count: 32) + chain
        let flags: VFIORegionFlags = [.read, .mmap, .caps]
        put(&r, off(CSYSTEM_VFIO_REGION_INFO, 0), le32(UInt32(r.count)))
        put(&r, off(CSYSTEM_VFIO_REGION_INFO, 1), le32(flags.rawValue))
        put(&r, off(CSYSTEM_VFIO_REGION_INFO, 2), le32(3))
        put(&r, off(CSYSTEM_VFIO_REGION_INFO, 3), le32(32))
        put(&r, off(CSYSTEM_VFIO_REGION_INFO, 4), le64(0x1000))
        put(&r, off(CSYSTEM_VFIO_REGION_INFO, 5), le64(0x7_0000_0000))
        let region = try VFIORegionInfo(decoding: r)
        #expect(region == VFIORegionInfo(argsz: UInt32(r.count), flags: flags, index: 3, capOffset: 32,
                                         size: 0x1000, offset: 0x7_0000_0000, capabilities: [cap]))
        #expect(region.encode() == r)
        let fixed = VFIOKernelUAPI.size(CSYSTEM_VFIO_DEVICE_INFO)
        var d = [UInt8](repeating: 0, count: 24) + VFIOCapabilityChain.encode([cap], baseOffset: 24)
        put(&d, off(CSYSTEM_VFIO_DEVICE_INFO, 0), le32(UInt32(d.count)))
        put(&d, off(CSYSTEM_VFIO_DEVICE_INFO, 1), le32(VFIODeviceFlags([.pci, .caps]).rawValue))
        put(&d, off(CSYSTEM_VFIO_DEVICE_INFO, 2), le32(9))
        put(&d, off(CSYSTEM_VFIO_DEVICE_INFO, 3), le32(5))
        put(&d, off(CSYSTEM_VFIO_DEVICE_INFO, 4), le32(24))
        let device = try VFIODeviceInfo(decoding: d, fixedSize: fixed)
        #expect(device.numRegions == 9 && device.numIRQs == 5 && device.capOffset == 24 && device.capabilities == [cap])
        // A chain that starts inside the fixed part is refused, as vfio-user refuses it.
        put(&d, off(CSYSTEM_VFIO_DEVICE_INFO, 4), le32(8))
        #expect(throws: VFIOError.self) { try VFIODeviceInfo(decoding: d, fixedSize: fixed) }
        let irq = VFIOIRQInfo(decoding: VFIOIRQInfo(flags: VFIOIRQInfoFlags(rawValue: 0x7), index: 2, count: 4).encode())
        #expect(irq == VFIOIRQInfo(argsz: UInt32(VFIOKernelUAPI.size(CSYSTEM_VFIO_IRQ_INFO)), flags: VFIOIRQInfoFlags(rawValue: 0x7), index: 2, count: 4))
        let unmap = VFIOKernelUAPI.type1DMAUnmap(iova: 0x10_0000, size: 0x2000)
        #expect(VFIODMAUnmap(decoding: unmap) == VFIODMAUnmap(address: 0x10_0000, size: 0x2000))
        for action in [VFIOIRQAction.mask, .unmask, .trigger] {
            let set = VFIOIRQSet(decoding: VFIOKernelUAPI.irqSet(index: 1, start: 2, count: 2, action: action, data: .bool([true, false])))
            #expect(VFIOIRQAction(setFlags: set.flags) == action && set.flags.contains(.dataBool) && set.bools == [true, false])
            #expect(set.index == 1 && set.start == 2 && set.count == 2 && set.argsz == UInt32(VFIOKernelUAPI.size(CSYSTEM_VFIO_IRQ_SET) + 2))
        }
    }

    /// An info as a device describes it (capabilities, no `cap_offset`: that is the transport's) encodes to bytes that
    /// decode to the same capabilities: `cap_offset` and every `next` name where the encoder put the chain.
    @Test func deviceDescribedInfosEncodeAReadableChain() throws {
        let caps = [VFIORegionTypeCapability(type: 7, subtype: 9).capability, VFIORegionTypeCapability(type: 3, subtype: 1).capability]
        let region = VFIORegionInfo(index: 2, flags: [.read, .caps], size: 0x1000, capabilities: caps)
        let r = region.encode()
        #expect(Array(r[12..<16]) == le32(UInt32(VFIORegionInfo.size)))
        #expect(try VFIORegionInfo(decoding: r).capabilities == caps)
        let device = VFIODeviceInfo(flags: [.pci, .caps], numRegions: 9, numIRQs: 5, capabilities: caps)
        let d = device.encode()
        #expect(Array(d[16..<20]) == le32(UInt32(VFIODeviceInfo.sizeWithCaps)))
        #expect(try VFIODeviceInfo(decoding: d).capabilities == caps)
        // A reply that leaves the chain out (the caller's argsz was too small) keeps `cap_offset` as given: 0.
        #expect(Array(VFIORegionInfo(argsz: 80, flags: [.read, .caps], index: 2, size: 0x1000).encode()[12..<16]) == le32(0))
    }

    /// Each field lands at the C struct's offsetof.
    @Test func fieldsAtTheKernelOffsets() {
        func off(_ s: csystem_vfio_struct, _ f: Int32) -> Int { Int(csystem_vfio_field_offset(Int32(s.rawValue), f)) }
        let map = VFIOKernelUAPI.type1DMAMap(vaddr: 0x1111_2222_3333_4444, iova: 0x5555_6666_7777_8888, size: 0x9999_0000, writable: true)
        #expect(Array(map[off(CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP, 1)..<off(CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP, 1) + 4]) == le32(3))
        #expect(Array(map[off(CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP, 2)...].prefix(8)) == le64(0x1111_2222_3333_4444))
        #expect(Array(map[off(CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP, 3)...].prefix(8)) == le64(0x5555_6666_7777_8888))
        #expect(Array(map[off(CSYSTEM_VFIO_IOMMU_TYPE1_DMA_MAP, 4)...].prefix(8)) == le64(0x9999_0000))
        let r = VFIOKernelUAPI.regionInfo(index: 7, argsz: 32)
        #expect(Array(r[off(CSYSTEM_VFIO_REGION_INFO, 2)...].prefix(4)) == le32(7))
        #expect(off(CSYSTEM_VFIO_REGION_INFO, 4) == 16 && off(CSYSTEM_VFIO_REGION_INFO, 5) == 24)
        #expect(off(CSYSTEM_VFIO_DEVICE_INFO, 4) == 16)
        let s = VFIOKernelUAPI.irqSet(index: 2, start: 1, count: 2, action: .trigger, data: .eventfds([7, -1]))
        #expect(Array(s[off(CSYSTEM_VFIO_IRQ_SET, 2)...].prefix(4)) == le32(2))
        #expect(Array(s[off(CSYSTEM_VFIO_IRQ_SET, 3)...].prefix(4)) == le32(1))
        #expect(Array(s[off(CSYSTEM_VFIO_IRQ_SET, 4)...].prefix(4)) == le32(2))
        #expect(Array(s[off(CSYSTEM_VFIO_IRQ_SET, 5)...]) == le32(7) + le32(0xFFFF_FFFF))
        #expect(off(CSYSTEM_VFIO_PCI_DEPENDENT_DEVICE, 1) == 4 && off(CSYSTEM_VFIO_PCI_DEPENDENT_DEVICE, 2) == 6
                && off(CSYSTEM_VFIO_PCI_DEPENDENT_DEVICE, 3) == 7)
        let m = VFIOKernelUAPI.ioasMapArgs(ioas: 9, userVA: 0xAAAA, length: 0x2000, iova: 0xBBBB_0000, writable: false)
        #expect(Array(m[off(CSYSTEM_IOMMU_IOAS_MAP_S, 1)...].prefix(4)) == le32(1 | 4))
        #expect(Array(m[off(CSYSTEM_IOMMU_IOAS_MAP_S, 2)...].prefix(4)) == le32(9))
        #expect(Array(m[off(CSYSTEM_IOMMU_IOAS_MAP_S, 4)...].prefix(8)) == le64(0xAAAA))
        #expect(Array(m[off(CSYSTEM_IOMMU_IOAS_MAP_S, 5)...].prefix(8)) == le64(0x2000))
        #expect(Array(m[off(CSYSTEM_IOMMU_IOAS_MAP_S, 6)...].prefix(8)) == le64(0xBBBB_0000))
        let f = VFIOKernelUAPI.ioasMapFileArgs(ioas: 9, fd: 12, start: 0x3000, length: 0x1000, iova: 0x4000, writable: true)
        #expect(Array(f[off(CSYSTEM_IOMMU_IOAS_MAP_FILE_S, 3)...].prefix(4)) == le32(12))
        #expect(Array(f[off(CSYSTEM_IOMMU_IOAS_MAP_FILE_S, 4)...].prefix(8)) == le64(0x3000))
        #expect(Array(f[off(CSYSTEM_IOMMU_IOAS_MAP_FILE_S, 6)...].prefix(8)) == le64(0x4000))
    }
}

@Suite struct VFIOKernelBackendTests {
    /// The container/group path issues exactly these ioctls, with these argument bytes, in this order.
    @Test func groupPathOpensThroughContainerAndGroup() throws {
        let k = try FakeVFIOKernel()
        let d = try open(k)
        #expect(d.access == .type1(container: FakeVFIOKernel.containerFD, group: FakeVFIOKernel.groupFD, groupID: "7"))
        let c = FakeVFIOKernel.containerFD, g = FakeVFIOKernel.groupFD
        let infoSize = VFIOKernelUAPI.size(CSYSTEM_VFIO_DEVICE_INFO)
        let expected: [FakeVFIOKernel.Call] = [
            .init(fd: c, request: VFIOKernelUAPI.getAPIVersion, bytes: nil, value: 0),
            .init(fd: c, request: VFIOKernelUAPI.checkExtension, bytes: nil, value: 3),
            .init(fd: g, request: VFIOKernelUAPI.groupGetStatus, bytes: le32(8) + le32(0), value: nil),
            .init(fd: g, request: VFIOKernelUAPI.groupSetContainer, bytes: le32(UInt32(c)), value: nil),
            .init(fd: c, request: VFIOKernelUAPI.setIOMMU, bytes: nil, value: 3),
            .init(fd: g, request: VFIOKernelUAPI.groupGetDeviceFD, bytes: Array("0000:01:00.0".utf8) + [0], value: nil),
            .init(fd: k.deviceFD, request: VFIOKernelUAPI.deviceGetInfo, bytes: le32(UInt32(infoSize)) + [UInt8](repeating: 0, count: infoSize - 4), value: nil),
        ]
        #expect(k.calls == expected)
        #expect(d.info.flags == [.pci, .reset] && d.info.numRegions == 9 && d.info.numIRQs == 5)
        d.close()
        #expect(k.closed == [k.deviceFD, g, c])
    }

    @Test func cdevPathBindsAndAttachesAnIOAS() throws {
        let k = try FakeVFIOKernel(cdev: true)
        let d = try open(k)
        #expect(d.access == .iommufd(iommufd: FakeVFIOKernel.iommuFD, ioas: FakeVFIOKernel.ioasID, deviceID: FakeVFIOKernel.devID))
        #expect(k.calls.map(\.request) == [VFIOKernelUAPI.deviceBindIOMMUFD, VFIOKernelUAPI.ioasAlloc, VFIOKernelUAPI.deviceAttachIOMMUFDPT, VFIOKernelUAPI.deviceGetInfo])
        #expect(k.calls[0].bytes == le32(16) + le32(0) + le32(UInt32(FakeVFIOKernel.iommuFD)) + le32(0))
        #expect(k.calls[1].bytes == le32(12) + le32(0) + le32(0))
        #expect(k.calls[2].bytes == le32(12) + le32(0) + le32(FakeVFIOKernel.ioasID))
        // Forcing the group path ignores the cdev.
        let k2 = try FakeVFIOKernel(cdev: true)
        #expect(try open(k2, .group).access == .type1(container: FakeVFIOKernel.containerFD, group: FakeVFIOKernel.groupFD, groupID: "7"))
        let k3 = try FakeVFIOKernel()
        #expect(throws: VFIOKernelError.unsupported("0000:01:00.0: no VFIO cdev (needs Linux >= 6.6 with CONFIG_VFIO_DEVICE_CDEV and /dev/iommu)")) { try open(k3, .cdev) }
    }

    /// Every way opening fails is one line naming what to fix, and leaves no fd open.
    @Test func everyOpenFailureIsOneClearLine() throws {
        let dev = "/sys/bus/pci/devices/0000:01:00.0"
        func failure(_ setUp: (FakeVFIOKernel) -> Void, cdev: Bool = false) throws -> VFIOKernelError {
            let k = try FakeVFIOKernel(cdev: cdev)
            setUp(k)
            do { _ = try open(k); Issue.record("opened"); return .invalid("opened") } catch {
                #expect(!error.description.contains("\n"))
                let opened: Set<Int32> = Set(k.calls.map(\.fd))
                #expect(opened.isSubset(of: k.closed), "fds left open: \(opened.subtracting(k.closed))")
                return error
            }
        }
        #expect(throws: VFIOKernelError.badAddress("nope")) { try VFIOKernelDevice.open("nope", system: try FakeVFIOKernel()) }
        #expect(try failure { $0.paths.remove(dev) } == .noSuchDevice(address: "0000:01:00.0", sysfs: "/sys/bus/pci/devices"))
        let unbound = try failure { $0.links["\(dev)/driver"] = nil }
        #expect(unbound == .notBound(address: "0000:01:00.0", driver: nil))
        #expect(unbound.description.contains("bound to no driver, not vfio-pci") && unbound.description.contains("driver_override"))
        #expect(try failure { $0.links["\(dev)/driver"] = "../../../bus/pci/drivers/nvme" } == .notBound(address: "0000:01:00.0", driver: "nvme"))
        #expect(try failure { $0.links["\(dev)/iommu_group"] = nil } == .noIOMMUGroup(address: "0000:01:00.0"))
        #expect(try failure { $0.paths.remove("/dev/vfio") } == .vfioMissing(path: "/dev/vfio"))
        #expect(try failure { $0.paths.remove("/dev/vfio/vfio") } == .vfioMissing(path: "/dev/vfio/vfio"))
        let perm = try failure { $0.openErrors["/dev/vfio/7"] = EACCES }
        #expect(perm == .permission(path: "/dev/vfio/7", errno: EACCES))
        #expect(perm.description == "/dev/vfio/7: Permission denied (run as root, or give your user the group's device node: chown/udev rule on /dev/vfio)")
        #expect(try failure { $0.openErrors["/dev/vfio/vfio"] = EPERM } == .permission(path: "/dev/vfio/vfio", errno: EPERM))
        #expect(try failure { $0.openErrors["/dev/vfio/7"] = EBUSY } == .busy(path: "/dev/vfio/7"))
        let viable = try failure { k in
            k.groupViable = false
            k.dirs["/sys/kernel/iommu_groups/7/devices"] = ["0000:01:00.0", "0000:01:00.1"]
            k.paths.insert("/sys/bus/pci/devices/0000:01:00.1")
            k.links["/sys/bus/pci/devices/0000:01:00.1/driver"] = "../../../bus/pci/drivers/snd_hda_intel"
        }
        #expect(viable == .groupNotViable(group: "7", others: ["0000:01:00.1 (snd_hda_intel)"]))
        #expect(viable.description == "IOMMU group 7 is not viable: bind every function in it to vfio-pci (or unbind them): 0000:01:00.1 (snd_hda_intel)")
        #expect(try failure { $0.apiVersion = 1 } == .unsupported("VFIO API version 1 (expected 0)"))
        #expect(try failure { $0.hasType1 = false } == .unsupported("the container offers no TYPE1 IOMMU (VFIO_CHECK_EXTENSION)"))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.getAPIVersion] = ENOTTY } == .ioctl(name: "VFIO_GET_API_VERSION", errno: ENOTTY))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.groupGetStatus] = EFAULT } == .ioctl(name: "VFIO_GROUP_GET_STATUS", errno: EFAULT))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.groupSetContainer] = EBUSY } == .ioctl(name: "VFIO_GROUP_SET_CONTAINER", errno: EBUSY))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.setIOMMU] = EPERM } == .unsupported("VFIO_SET_IOMMU: EPERM: the platform has no interrupt remapping (vfio_iommu_type1's allow_unsafe_interrupts=1 accepts that, at the cost of MSI isolation)"))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.setIOMMU] = EBUSY } == .ioctl(name: "VFIO_SET_IOMMU", errno: EBUSY))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.groupGetDeviceFD] = EBUSY } == .busy(path: "/dev/vfio/7 device 0000:01:00.0"))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.groupGetDeviceFD] = ENODEV } == .ioctl(name: "VFIO_GROUP_GET_DEVICE_FD 0000:01:00.0", errno: ENODEV))
        #expect(try failure { $0.ioctlErrors[VFIOKernelUAPI.deviceGetInfo] = EIO } == .ioctl(name: "VFIO_DEVICE_GET_INFO", errno: EIO))
        // cdev path
        #expect(try failure({ $0.openErrors["/dev/iommu"] = EACCES }, cdev: true) == .permission(path: "/dev/iommu", errno: EACCES))
        #expect(try failure({ $0.ioctlErrors[VFIOKernelUAPI.deviceBindIOMMUFD] = EBUSY }, cdev: true) == .ioctl(name: "VFIO_DEVICE_BIND_IOMMUFD", errno: EBUSY))
        #expect(try failure({ $0.ioctlErrors[VFIOKernelUAPI.ioasAlloc] = ENOMEM }, cdev: true) == .ioctl(name: "IOMMU_IOAS_ALLOC", errno: ENOMEM))
        #expect(try failure({ $0.ioctlErrors[VFIOKernelUAPI.deviceAttachIOMMUFDPT] = EINVAL }, cdev: true) == .ioctl(name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT", errno: EINVAL))
    }

    @Test func regionInfoFollowsArgszAndDecodesTheSparseCapability() throws {
        let k = try FakeVFIOKernel()
        let d = try open(k)
        k.calls.removeAll()
        let bar0 = try d.regionInfo(0)
        // First with the fixed 32 bytes, then with the argsz the kernel asked for (32 + 8 + 8 + 2 * 16).
        #expect(k.calls.map { $0.bytes?.count } == [32, 80])
        #expect(k.calls[0].bytes == le32(32) + le32(0) + le32(0) + [UInt8](repeating: 0, count: 20))
        #expect(bar0.offset == 0 && bar0.info.size == 0x8000 && bar0.info.flags == [.read, .write, .mmap, .caps])
        #expect(bar0.info.mapping == VFIORegionMapping(fd: k.deviceFD, fileOffset: 0))
        #expect(bar0.mmapAreas == [VFIOSparseArea(offset: 0, size: 0x2000), VFIOSparseArea(offset: 0x4000, size: 0x4000)])
        let cfg = try d.regionInfo(7)
        #expect(cfg.offset == 7 << 40 && cfg.info.size == 4096 && cfg.info.mapping == nil && cfg.mmapAreas.isEmpty)
        #expect(try d.regionInfo(1).info.size == 0)
        #expect(throws: VFIOKernelError.invalid("region 9: the device has 9 regions")) { try d.regionInfo(9) }
        k.hostileChain = true
        #expect(throws: VFIOKernelError.self) { try d.regionInfo(0) }
        k.ioctlErrors[VFIOKernelUAPI.deviceGetRegionInfo] = EINVAL
        #expect(throws: VFIOKernelError.ioctl(name: "VFIO_DEVICE_GET_REGION_INFO 2", errno: EINVAL)) { try d.regionInfo(2) }
    }

    @Test func irqInfoAndSetIRQsCarryEventfds() throws {
        let k = try FakeVFIOKernel()
        let d = try open(k)
        #expect(try d.irqInfo(2) == VFIOIRQInfo(index: 2, flags: [.eventfd, .noresize], count: 4))
        k.calls.removeAll()
        try d.setIRQs(index: 2, start: 0, count: 2, action: .trigger, data: .eventfds([41, 42]))
        #expect(k.calls[0].bytes == le32(28) + le32(VFIOIRQSetFlags([.dataEventFD, .actionTrigger]).rawValue) + le32(2) + le32(0) + le32(2) + le32(41) + le32(42))
        #expect(k.irqFDs[2] == [41, 42])
        try d.setIRQs(index: 0, start: 0, count: 1, action: .unmask, data: .bool([true]))
        #expect(k.calls[1].bytes == le32(21) + le32(VFIOIRQSetFlags([.dataBool, .actionUnmask]).rawValue) + le32(0) + le32(0) + le32(1) + [1])
        try d.disableIRQs(index: 2)
        #expect(k.calls[2].bytes == le32(20) + le32(VFIOIRQSetFlags([.dataNone, .actionTrigger]).rawValue) + le32(2) + le32(0) + le32(0))
        #expect(k.irqFDs[2] == nil)
        #expect(throws: VFIOKernelError.invalid("SET_IRQS: 1 eventfds for 2 vectors")) { try d.setIRQs(index: 2, start: 0, count: 2, action: .trigger, data: .eventfds([1])) }
        #expect(throws: VFIOKernelError.invalid("IRQ index 5: the device has 5")) { try d.irqInfo(5) }
        k.ioctlErrors[VFIOKernelUAPI.deviceSetIRQs] = EINVAL
        #expect(throws: VFIOKernelError.ioctl(name: "VFIO_DEVICE_SET_IRQS index 1", errno: EINVAL)) { try d.disableIRQs(index: 1) }
    }

    @Test func resetAndHotReset() throws {
        let k = try FakeVFIOKernel()
        let d = try open(k)
        try d.reset()
        #expect(k.resets == 1)
        // No dependent devices reported: the kernel has no hot reset for it.
        #expect(throws: VFIOKernelError.ioctl(name: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", errno: ENODEV)) { try d.hotReset() }
        k.hotResetDeps = [(7, PCIAddress("0000:01:00.0")!)]
        k.calls.removeAll()
        try d.hotReset()
        // Info twice (ENOSPC with the count, then with room), then the reset with our group fd.
        #expect(k.calls.map { $0.bytes?.count } == [12, 20, 16])
        #expect(k.calls[2].bytes == le32(16) + le32(0) + le32(1) + le32(UInt32(FakeVFIOKernel.groupFD)))
        #expect(k.hotResets == 1)
        k.hotResetDeps.append((8, PCIAddress("0000:01:00.1")!))
        #expect(throws: VFIOKernelError.unsupported("hot reset of 0000:01:00.0 also resets 0000:01:00.1 (group 8), which this process does not own")) { try d.hotReset() }
        #expect(k.hotResets == 1)
        k.ioctlErrors[VFIOKernelUAPI.deviceReset] = ENOTTY
        #expect(throws: VFIOKernelError.ioctl(name: "VFIO_DEVICE_RESET", errno: ENOTTY)) { try d.reset() }
    }

    @Test func dmaMapAndUnmapOnBothPaths() throws {
        let k = try FakeVFIOKernel()
        let d = try open(k)
        k.calls.removeAll()
        try d.mapDMA(iova: 0x10_0000, size: 0x2000, vaddr: 0x7f00_0000_0000, writable: true)
        #expect(k.calls[0].fd == FakeVFIOKernel.containerFD && k.calls[0].request == VFIOKernelUAPI.iommuMapDMA)
        #expect(k.calls[0].bytes == le32(32) + le32(3) + le64(0x7f00_0000_0000) + le64(0x10_0000) + le64(0x2000))
        #expect(try d.unmapDMA(iova: 0x20_0000, size: 0x1000) == 0)   // nothing there: success, nothing unmapped
        #expect(try d.unmapDMA(iova: 0x10_0000, size: 0x2000) == 0x2000)
        #expect(k.calls[2].bytes == le32(24) + le32(0) + le64(0x10_0000) + le64(0x2000))
        #expect(throws: VFIOKernelError.unsupported("IOMMU_IOAS_MAP_FILE needs the iommufd cdev path")) {
            try d.mapDMAFile(iova: 0, size: 0x1000, fd: 3, offset: 0, writable: true)
        }
        k.ioctlErrors[VFIOKernelUAPI.iommuMapDMA] = ENOMEM   // e.g. RLIMIT_MEMLOCK
        #expect(throws: VFIOKernelError.ioctl(name: "VFIO_IOMMU_MAP_DMA iova 0x0+0x1000", errno: ENOMEM)) {
            try d.mapDMA(iova: 0, size: 0x1000, vaddr: 0x1000, writable: false)
        }

        let c = try FakeVFIOKernel(cdev: true)
        let cd = try open(c)
        c.calls.removeAll()
        try cd.mapDMA(iova: 0x10_0000, size: 0x2000, vaddr: 0x7f00_0000_0000, writable: false)
        #expect(c.calls[0].fd == FakeVFIOKernel.iommuFD && c.calls[0].request == VFIOKernelUAPI.ioasMap)
        #expect(c.calls[0].bytes == le32(40) + le32(1 | 4) + le32(FakeVFIOKernel.ioasID) + le32(0) + le64(0x7f00_0000_0000) + le64(0x2000) + le64(0x10_0000))
        try cd.mapDMAFile(iova: 0x40_0000, size: 0x1000, fd: 33, offset: 0x5000, writable: true)
        #expect(c.calls[1].request == VFIOKernelUAPI.ioasMapFile)
        #expect(c.calls[1].bytes == le32(40) + le32(7) + le32(FakeVFIOKernel.ioasID) + le32(33) + le64(0x5000) + le64(0x1000) + le64(0x40_0000))
        #expect(try cd.unmapDMA(iova: 0x90_0000, size: 0x1000) == 0)   // iommufd's ENOENT: nothing there
        #expect(try cd.unmapDMA(iova: 0x10_0000, size: 0x2000) == 0x2000)
        #expect(c.calls[3].bytes == le32(24) + le32(FakeVFIOKernel.ioasID) + le64(0x10_0000) + le64(0x2000))
        c.ioctlErrors[VFIOKernelUAPI.ioasUnmap] = EBUSY
        #expect(throws: VFIOKernelError.ioctl(name: "IOMMU_IOAS_UNMAP iova 0x0+0x1000", errno: EBUSY)) { try cd.unmapDMA(iova: 0, size: 0x1000) }
    }
}

/// The kernel device as a PCIFunction: what the decoders, the state engine and VFIOPCIDevice see.
@Suite struct VFIOKernelPCIFunctionTests {
    @Test func configAndBARsThroughTheDeviceFD() throws {
        let k = try FakeVFIOKernel()
        let f = try VFIOKernelPCIFunction(device: try open(k))
        #expect(f.address == "vfio:0000:01:00.0" && f.configSize == 4096)
        #expect(f.bars == [BARDescription(index: 0, kind: .memory64, prefetchable: false, size: 0x8000),
                           BARDescription(index: 2, kind: .memory32, prefetchable: false, size: 0x1000)])
        #expect(f.resetMethods == [.flr])
        #expect(try f.configRead(0, width: 4) == 0x5678_1234)
        #expect(try f.configRead(0x44, width: 4) == 1 << 28)
        try f.configWrite(0x04, width: 2, value: 0x0006)
        #expect(try k.test!.configRead(0x04, width: 2) == 0x0006)
        // BAR0 through the mmap of its first sparse area: a write lands in the device memory.
        try f.barWrite(0, offset: 0x100, width: 8, value: 0x0102_0304_0506_0708)
        #expect(k.test!.bar0.read(offset: 0x100, count: 8) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(k.calls.filter { $0.request == 0 }.isEmpty)
        k.test!.bar0.write(offset: 0x4010, data: [0xAA, 0xBB])
        #expect(try f.barRead(0, offset: 0x4010, width: 2) == 0xBBAA)
        // The MSI-X page (outside the areas) and BAR2 (not mmappable) go through pread/pwrite.
        try f.barWrite(2, offset: 0, width: 4, value: 0xCAFE)
        #expect(try f.barRead(2, offset: 0, width: 4) == 0xCAFE)
        #expect(k.test!.reg64(0) & 0xFFFF_FFFF == 0xCAFE)
        #expect(try f.barRead(0, offset: 0x2000, width: 4) == 0)
        #expect(throws: PCIError.noSuchBAR(1)) { try f.barRead(1, offset: 0, width: 4) }
        #expect(throws: PCIError.outOfRange("BAR2 offset 0x1000 width 4 (BAR size 0x1000)")) { try f.barRead(2, offset: 0x1000, width: 4) }
        #expect(throws: PCIError.badAccess("unaligned config access at 0x1 width 2")) { try f.configRead(1, width: 2) }
        try f.reset(.flr)
        #expect(k.resets == 1)
        #expect(throws: PCIError.resetUnsupported("bus")) { try f.reset(.bus) }
        k.ioctlErrors[VFIOKernelUAPI.deviceReset] = EIO
        #expect(throws: PCIError.self) { try f.reset(.flr) }
    }

    /// vfio-pci makes a BAR mmap fault while Memory Space Enable is clear: accesses then go through pread (EIO from
    /// the kernel, never SIGBUS); a serving process keeps memory decode on whatever Command a client writes.
    @Test func barMmapOnlyWhileMemorySpaceIsEnabled() throws {
        let k = try FakeVFIOKernel()
        let f = try VFIOKernelPCIFunction(device: try open(k))
        #expect(try f.configRead(0x04, width: 2) & 2 == 0)
        _ = try f.barRead(0, offset: 0x100, width: 4)
        #expect(k.regionIO[0] == 1)
        try f.configWrite(0x04, width: 2, value: 0x0002)
        _ = try f.barRead(0, offset: 0x100, width: 4)
        #expect(k.regionIO[0] == 1)                 // through the mmap
        try f.configWrite(0x04, width: 2, value: 0x0000)
        _ = try f.barRead(0, offset: 0x100, width: 4)
        #expect(k.regionIO[0] == 2)
        f.keepMemoryEnabled = true
        #expect(try k.test!.configRead(0x04, width: 2) & 2 == 2)
        try f.configWrite(0x04, width: 2, value: 0x0004)
        #expect(try k.test!.configRead(0x04, width: 2) == 0x0006)
        _ = try f.barRead(0, offset: 0x100, width: 4)
        #expect(k.regionIO[0] == 2)
    }

    /// DATA_EVENTFD without eventfds de-assigns `count` vectors, which the ioctl takes as one -1 each: a count past
    /// the index's vectors (a vfio-user client's, up to 2^32-1: 16 GiB of -1s) is refused before anything is built
    /// or sent, as the kernel refuses it (vfio_set_irqs_validate_and_prepare); one inside is de-assigned.
    @Test func deassignPastTheIndexIsRefusedBeforeTheIoctl() throws {
        let k = try FakeVFIOKernel()
        let f = try VFIOKernelPCIFunction(device: try open(k))
        for (start, count) in [(0, 5), (3, 2), (1, 1 << 16), (4, 1)] as [(UInt32, UInt32)] {
            #expect(throws: VFIOError.self, "\(start)+\(count)") {
                try f.forwardIRQs(VFIOIRQSet(index: 2, start: start, count: count, action: .trigger, data: .eventfds([])))
            }
        }
        #expect(throws: VFIOError.self) { try f.forwardIRQs(VFIOIRQSet(index: 9, start: 0, count: 1, action: .trigger, data: .eventfds([]))) }
        #expect(k.ioctlCalls(VFIOKernelUAPI.deviceSetIRQs).count == 0)
        try f.forwardIRQs(VFIOIRQSet(index: 2, start: 1, count: 3, action: .trigger, data: .eventfds([])))
        #expect(k.irqFDs[2] == [-1, -1, -1, -1])
    }

    @Test func busResetOfferedWhenTheKernelHasAHotReset() throws {
        let k = try FakeVFIOKernel()
        k.hotResetDeps = [(7, PCIAddress("0000:01:00.0")!)]
        let f = try VFIOKernelPCIFunction(device: try open(k))
        #expect(f.resetMethods == [.flr, .bus])
        try f.reset(.bus)
        #expect(k.hotResets == 1)
    }

    /// Served through VFIOPCIDevice: the client's eventfds go to the kernel (which signals them), BAR0's sparse
    /// areas are the kernel's intersected with the adapter's own exclusions, and DMA maps reach the IOMMU.
    @Test func servedThroughVFIOPCIDevice() throws {
        let k = try FakeVFIOKernel()
        let f = try VFIOKernelPCIFunction(device: try open(k))
        let d = try VFIOPCIDevice(function: f)
        let bar0 = try d.regionInfo(0)
        #expect(bar0.mapping == VFIORegionMapping(fd: k.deviceFD, fileOffset: 0))
        let sparse = try VFIOSparseMMapCapability(parsing: bar0.capabilities[0], regionSize: bar0.size)
        #expect(sparse.areas == [VFIOSparseArea(offset: 0, size: 0x2000), VFIOSparseArea(offset: 0x4000, size: 0x4000)])
        #expect(try d.regionInfo(2).mapping == nil)
        let e0 = try VFIOEventFD.create(), e1 = try VFIOEventFD.create()
        try d.setIRQs(VFIOIRQSet(index: 2, start: 0, count: 2, action: .trigger, data: .eventfds([e0, e1])))
        #expect(k.irqFDs[2] == [e0.fd, e1.fd])
        #expect(d.activeInterruptMode == .msix)
        try d.setIRQs(VFIOIRQSet(index: 2, start: 0, count: 1, action: .mask, data: .none))
        #expect(k.calls.last?.bytes == le32(20) + le32(VFIOIRQSetFlags([.dataNone, .actionMask]).rawValue) + le32(2) + le32(0) + le32(1))
        // The adapter never writes the kernel's MSI-X control itself (the kernel enables MSI-X on SET_IRQS).
        #expect(try k.test!.configRead(0x7a, width: 2) == 3)
        let mem = try VFIOSharedMemory(name: "guest", size: 0x4000)
        try d.dmaMapped(iova: 0x1_0000_0000, size: 0x4000, address: mem.base, writable: true)
        #expect(k.dmaMaps[0x1_0000_0000]?.size == 0x4000 && k.dmaMaps[0x1_0000_0000]?.vaddr == UInt64(UInt(bitPattern: mem.base)))
        #expect(throws: VFIOError.self) { try d.dmaMapped(iova: 0x2_0000_0000, size: 0x1000, address: nil, writable: true) }
        d.dmaUnmapped(iova: 0x1_0000_0000, size: 0x4000)
        #expect(k.dmaMaps.isEmpty)
        d.clientDisconnected()
        #expect(k.irqFDs.isEmpty)
        #expect(k.calls.suffix(3).map { $0.bytes.map { Array($0[8..<12]) } } == [le32(0), le32(1), le32(2)])
    }
}
