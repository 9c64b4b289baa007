import CSwiftCXLSystem
import Foundation
import PCI

/// How the backend reached the device (linux Documentation/driver-api/vfio.rst).
public enum VFIOKernelAccess: Sendable, Equatable {
    /// The legacy container/group path: `/dev/vfio/vfio` with a TYPE1 IOMMU, `/dev/vfio/GROUP`.
    case type1(container: Int32, group: Int32, groupID: String)
    /// The cdev path: `/dev/iommu`, an IOAS, `/dev/vfio/devices/vfioN` bound with VFIO_DEVICE_BIND_IOMMUFD.
    case iommufd(iommufd: Int32, ioas: UInt32, deviceID: UInt32)
}

/// Which path `VFIOKernelDevice.open` takes.
public enum VFIOKernelPath: String, Sendable {
    /// The cdev path when the kernel offers it (`vfio-dev/vfioN` in sysfs, `/dev/iommu`), else the group path.
    case auto
    case group
    case cdev
}

/// Where the backend looks (tests point these at fake trees) and which path it takes.
public struct VFIOKernelOpenOptions: Sendable {
    public var sysfsRoot: String = "/sys"
    public var devRoot: String = "/dev"
    public var path: VFIOKernelPath = .auto
    public init(sysfsRoot: String = "/sys", devRoot: String = "/dev", path: VFIOKernelPath = .auto) {
        self.sysfsRoot = sysfsRoot; self.devRoot = devRoot; self.path = path
    }
}

/// A region of a kernel VFIO device: its info as the kernel reported it (with `mapping` = the device fd at the
/// region's file offset when the kernel allows mmap).
public struct VFIOKernelRegion: Sendable, Equatable {
    public var info: VFIORegionInfo
    /// The offset of the region within the device fd (`vfio_region_info.offset`).
    public var offset: UInt64 { info.offset }
    /// The sparse-mmap areas, or the whole region when it is mmappable without a sparse capability.
    public var mmapAreas: [VFIOSparseArea] {
        guard info.flags.contains(.mmap) else { return [] }
        if let cap = info.capabilities.first(where: { $0.id == VFIORegionCapabilityID.sparseMMap }),
           let s = try? VFIOSparseMMapCapability(parsing: cap, regionSize: info.size) {
            return s.areas.filter { $0.size > 0 }
        }
        return info.size > 0 ? [VFIOSparseArea(offset: 0, size: info.size)] : []
    }
}

/// A function another hot reset would also reset (`struct vfio_pci_dependent_device`).
public struct VFIOPCIDependentDevice: Sendable, Equatable {
    /// The IOMMU group id (group path) or device id (cdev path).
    public var groupOrDeviceID: UInt32
    public var address: PCIAddress
}

/// A PCI device the kernel's vfio-pci owns, opened through the legacy container/group path or the iommufd cdev
/// path: the user-space side of linux/vfio.h. Every system call goes through `VFIOKernelSystem`.
///
/// No CXL here: this is the VFIO library's kernel backend; `VFIOKernelPCIFunction` exposes it as a `PCIFunction`.
public final class VFIOKernelDevice: @unchecked Sendable {
    public let address: PCIAddress
    /// The function's sysfs directory (`/sys/bus/pci/devices/BDF`).
    public let sysfsPath: String
    public let system: any VFIOKernelSystem
    public let deviceFD: Int32
    public let access: VFIOKernelAccess
    /// DEVICE_GET_INFO, read at open.
    public let info: VFIODeviceInfo
    private let lock = NSLock()
    private var closed = false

    /// Upper bound on argsz the backend follows for info re-queries (capability chains).
    public static let maxArgsz = 65536

    init(address: PCIAddress, sysfsPath: String, system: any VFIOKernelSystem, deviceFD: Int32, access: VFIOKernelAccess) throws(VFIOKernelError) {
        self.address = address; self.sysfsPath = sysfsPath; self.system = system; self.deviceFD = deviceFD; self.access = access
        do { info = try Self.queryDeviceInfo(system, deviceFD) } catch {
            Self.release(system, deviceFD, access)
            throw error
        }
    }

    deinit { close() }

    /// Closes the device, then its group and container (or iommufd).
    public func close() {
        lock.lock(); defer { lock.unlock() }
        guard !closed else { return }
        closed = true
        Self.release(system, deviceFD, access)
    }

    private static func release(_ system: any VFIOKernelSystem, _ deviceFD: Int32, _ access: VFIOKernelAccess) {
        system.close(deviceFD)
        switch access {
        case .type1(let c, let g, _): system.close(g); system.close(c)
        case .iommufd(let fd, _, _): system.close(fd)
        }
    }

    // MARK: Open

    /// Opens the vfio-pci device at `address`: checks sysfs (exists, bound to vfio-pci, IOMMU group), then takes
    /// the cdev or group path. Each failure is a `VFIOKernelError` naming what to fix.
    public static func open(_ address: String, options: VFIOKernelOpenOptions = VFIOKernelOpenOptions(),
                            system: any VFIOKernelSystem = LinuxVFIOSystem()) throws(VFIOKernelError) -> VFIOKernelDevice {
        guard let addr = PCIAddress(address) else { throw .badAddress(address) }
        let bdf = addr.description
        let devices = options.sysfsRoot + "/bus/pci/devices"
        let dir = devices + "/" + bdf
        guard system.exists(dir) else { throw .noSuchDevice(address: bdf, sysfs: devices) }
        let driver = system.readLink(dir + "/driver").map(basename)
        guard let driver, driver.hasPrefix("vfio") else { throw .notBound(address: bdf, driver: driver) }
        let vfioDir = options.devRoot + "/vfio"
        var cdev: String? = nil
        if options.path != .group, let n = system.listDirectory(dir + "/vfio-dev")?.first(where: { $0.hasPrefix("vfio") }) {
            let node = vfioDir + "/devices/" + n
            if system.exists(node) && system.exists(options.devRoot + "/iommu") { cdev = node }
        }
        if options.path == .cdev && cdev == nil {
            throw .unsupported("\(bdf): no VFIO cdev (needs Linux >= 6.6 with CONFIG_VFIO_DEVICE_CDEV and /dev/iommu)")
        }
        if let cdev { return try openCDev(addr, sysfsPath: dir, node: cdev, iommuPath: options.devRoot + "/iommu", system: system) }
        guard let group = system.readLink(dir + "/iommu_group").map(basename) else { throw .noIOMMUGroup(address: bdf) }
        guard system.exists(vfioDir) else { throw .vfioMissing(path: vfioDir) }
        return try openGroup(addr, sysfsPath: dir, group: group, vfioDir: vfioDir, sysfsRoot: options.sysfsRoot, system: system)
    }

    static func basename(_ p: String) -> String { String(p.split(separator: "/").last ?? Substring(p)) }

    private static func openNode(_ system: any VFIOKernelSystem, _ path: String) throws(VFIOKernelError) -> Int32 {
        switch system.open(path) {
        case .success(let fd): return fd
        case .failure(let e):
            switch e.code {
            case VFIOErrno.ENOENT: throw .vfioMissing(path: path)
            case VFIOErrno.EPERM, 13 /* EACCES */: throw .permission(path: path, errno: e.code)
            case VFIOErrno.EBUSY: throw .busy(path: path)
            default: throw .system("open \(path)", errno: e.code)
            }
        }
    }

    private static func openGroup(_ addr: PCIAddress, sysfsPath: String, group: String, vfioDir: String, sysfsRoot: String,
                                  system: any VFIOKernelSystem) throws(VFIOKernelError) -> VFIOKernelDevice {
        let container = try openNode(system, vfioDir + "/vfio")
        var groupFD: Int32 = -1
        var ok = false
        defer { if !ok { if groupFD >= 0 { system.close(groupFD) }; system.close(container) } }
        let v = system.ioctl(container, VFIOKernelUAPI.getAPIVersion, value: 0)
        guard v == VFIOKernelUAPI.apiVersion else {
            if v < 0 { throw .ioctl(name: "VFIO_GET_API_VERSION", errno: -v) }
            throw .unsupported("VFIO API version \(v) (expected \(VFIOKernelUAPI.apiVersion))")
        }
        let iommuType: UInt
        if system.ioctl(container, VFIOKernelUAPI.checkExtension, value: VFIOKernelUAPI.type1v2IOMMU) > 0 { iommuType = VFIOKernelUAPI.type1v2IOMMU }
        else if system.ioctl(container, VFIOKernelUAPI.checkExtension, value: VFIOKernelUAPI.type1IOMMU) > 0 { iommuType = VFIOKernelUAPI.type1IOMMU }
        else { throw .unsupported("the container offers no TYPE1 IOMMU (VFIO_CHECK_EXTENSION)") }

        // The no-IOMMU mode names its group node noiommu-N.
        var node = vfioDir + "/" + group
        if !system.exists(node) && system.exists(vfioDir + "/noiommu-" + group) { node = vfioDir + "/noiommu-" + group }
        groupFD = try openNode(system, node)
        var status = VFIOKernelUAPI.groupStatus()
        let r = system.ioctl(groupFD, VFIOKernelUAPI.groupGetStatus, &status)
        guard r >= 0 else { throw .ioctl(name: "VFIO_GROUP_GET_STATUS", errno: -r) }
        let flags = UInt32(ByteReader.le(status, at: 4, size: 4) ?? 0)
        guard flags & VFIOKernelUAPI.groupFlagViable != 0 else {
            let members = system.listDirectory(sysfsRoot + "/kernel/iommu_groups/\(group)/devices") ?? []
            let others = members.filter { m in
                let d = system.readLink(sysfsRoot + "/bus/pci/devices/\(m)/driver").map(basename)
                return !(d?.hasPrefix("vfio") ?? false) && d != "pci-stub" && d != nil
            }.map { m in "\(m) (\(system.readLink(sysfsRoot + "/bus/pci/devices/\(m)/driver").map(basename) ?? "no driver"))" }
            throw .groupNotViable(group: group, others: others)
        }
        if flags & VFIOKernelUAPI.groupFlagContainerSet == 0 {
            var fdArg = ByteWriter(); fdArg.u32(UInt32(bitPattern: container))
            var b = fdArg.bytes
            let s = system.ioctl(groupFD, VFIOKernelUAPI.groupSetContainer, &b)
            guard s >= 0 else { throw .ioctl(name: "VFIO_GROUP_SET_CONTAINER", errno: -s) }
            let t = system.ioctl(container, VFIOKernelUAPI.setIOMMU, value: iommuType)
            if t == -VFIOErrno.EPERM {
                throw .unsupported("VFIO_SET_IOMMU: EPERM: the platform has no interrupt remapping (vfio_iommu_type1's allow_unsafe_interrupts=1 accepts that, at the cost of MSI isolation)")
            }
            guard t >= 0 else { throw .ioctl(name: "VFIO_SET_IOMMU", errno: -t) }
        }
        var name = Array(addr.description.utf8) + [0]
        let dfd = system.ioctl(groupFD, VFIOKernelUAPI.groupGetDeviceFD, &name)
        guard dfd >= 0 else {
            if -dfd == VFIOErrno.EBUSY { throw .busy(path: "\(node) device \(addr)") }
            throw .ioctl(name: "VFIO_GROUP_GET_DEVICE_FD \(addr)", errno: -dfd)
        }
        ok = true
        return try VFIOKernelDevice(address: addr, sysfsPath: sysfsPath, system: system, deviceFD: dfd,
                                    access: .type1(container: container, group: groupFD, groupID: group))
    }

    private static func openCDev(_ addr: PCIAddress, sysfsPath: String, node: String, iommuPath: String,
                                 system: any VFIOKernelSystem) throws(VFIOKernelError) -> VFIOKernelDevice {
        let iommufd = try openNode(system, iommuPath)
        var dfd: Int32 = -1
        var ok = false
        defer { if !ok { if dfd >= 0 { system.close(dfd) }; system.close(iommufd) } }
        dfd = try openNode(system, node)
        var bind = VFIOKernelUAPI.bindIOMMUFD(iommufd)
        let b = system.ioctl(dfd, VFIOKernelUAPI.deviceBindIOMMUFD, &bind)
        guard b >= 0 else { throw .ioctl(name: "VFIO_DEVICE_BIND_IOMMUFD", errno: -b) }
        let devID = UInt32(ByteReader.le(bind, at: 12, size: 4) ?? 0)
        var alloc = VFIOKernelUAPI.ioasAllocArgs()
        let a = system.ioctl(iommufd, VFIOKernelUAPI.ioasAlloc, &alloc)
        guard a >= 0 else { throw .ioctl(name: "IOMMU_IOAS_ALLOC", errno: -a) }
        let ioas = UInt32(ByteReader.le(alloc, at: 8, size: 4) ?? 0)
        var attach = VFIOKernelUAPI.attachIOMMUFDPT(ioas)
        let t = system.ioctl(dfd, VFIOKernelUAPI.deviceAttachIOMMUFDPT, &attach)
        guard t >= 0 else { throw .ioctl(name: "VFIO_DEVICE_ATTACH_IOMMUFD_PT", errno: -t) }
        ok = true
        return try VFIOKernelDevice(address: addr, sysfsPath: sysfsPath, system: system, deviceFD: dfd,
                                    access: .iommufd(iommufd: iommufd, ioas: ioas, deviceID: devID))
    }

    // MARK: Info

    /// An info ioctl with the argsz two-step: `arguments(argsz)` built for the `fixed`-byte structure, then once more
    /// for the argsz the kernel asks for when its answer (a capability chain) did not fit, up to `maxArgsz`. Returns
    /// the buffer as the kernel filled it.
    private static func infoIoctl(_ system: any VFIOKernelSystem, _ fd: Int32, _ request: UInt, _ name: String, fixed: Int,
                                  _ arguments: (Int) -> [UInt8]) throws(VFIOKernelError) -> [UInt8] {
        var buf = arguments(fixed)
        var r = system.ioctl(fd, request, &buf)
        guard r >= 0 else { throw .ioctl(name: name, errno: -r) }
        let need = Int(ByteReader.le(buf, at: 0, size: 4) ?? 0)
        if need > fixed {
            guard need <= maxArgsz else { throw .invalid("\(name): argsz \(need) exceeds \(maxArgsz)") }
            buf = arguments(need)
            r = system.ioctl(fd, request, &buf)
            guard r >= 0 else { throw .ioctl(name: name, errno: -r) }
        }
        return buf
    }

    private static func queryDeviceInfo(_ system: any VFIOKernelSystem, _ fd: Int32) throws(VFIOKernelError) -> VFIODeviceInfo {
        let fixed = VFIOKernelUAPI.size(CSYSTEM_VFIO_DEVICE_INFO)
        let buf = try infoIoctl(system, fd, VFIOKernelUAPI.deviceGetInfo, "VFIO_DEVICE_GET_INFO", fixed: fixed) {
            VFIOKernelUAPI.deviceInfo(argsz: $0)
        }
        do { return try VFIODeviceInfo(decoding: buf, fixedSize: fixed) } catch { throw .invalid("VFIO_DEVICE_GET_INFO: \(error)") }
    }

    /// VFIO_DEVICE_GET_REGION_INFO, re-queried with the argsz the kernel asks for when it has capabilities.
    public func regionInfo(_ index: UInt32) throws(VFIOKernelError) -> VFIOKernelRegion {
        guard index < info.numRegions else { throw .invalid("region \(index): the device has \(info.numRegions) regions") }
        let buf = try Self.infoIoctl(system, deviceFD, VFIOKernelUAPI.deviceGetRegionInfo, "VFIO_DEVICE_GET_REGION_INFO \(index)",
                                     fixed: VFIOKernelUAPI.size(CSYSTEM_VFIO_REGION_INFO)) {
            VFIOKernelUAPI.regionInfo(index: index, argsz: $0)
        }
        var region: VFIORegionInfo
        do {
            region = try VFIORegionInfo(decoding: buf)
            for c in region.capabilities where c.id == VFIORegionCapabilityID.sparseMMap {
                _ = try VFIOSparseMMapCapability(parsing: c, regionSize: region.size)
            }
        } catch {
            throw .invalid("VFIO_DEVICE_GET_REGION_INFO \(index): \(error)")
        }
        region.index = index
        if region.flags.contains(.mmap) { region.mapping = VFIORegionMapping(fd: deviceFD, fileOffset: region.offset) }
        return VFIOKernelRegion(info: region)
    }

    /// VFIO_DEVICE_GET_IRQ_INFO.
    public func irqInfo(_ index: UInt32) throws(VFIOKernelError) -> VFIOIRQInfo {
        guard index < info.numIRQs else { throw .invalid("IRQ index \(index): the device has \(info.numIRQs)") }
        var buf = VFIOKernelUAPI.irqInfo(index: index)
        let r = system.ioctl(deviceFD, VFIOKernelUAPI.deviceGetIRQInfo, &buf)
        guard r >= 0 else { throw .ioctl(name: "VFIO_DEVICE_GET_IRQ_INFO \(index)", errno: -r) }
        var irq = VFIOIRQInfo(decoding: buf)
        irq.index = index
        return irq
    }

    // MARK: IRQs

    /// VFIO_DEVICE_SET_IRQS. `count` 0 with `.none` and `.trigger` disables the index.
    public func setIRQs(index: UInt32, start: UInt32, count: UInt32, action: VFIOIRQAction, data: VFIOKernelIRQData) throws(VFIOKernelError) {
        switch data {
        case .bool(let b) where b.count != Int(count): throw .invalid("SET_IRQS: \(b.count) flags for \(count) vectors")
        case .eventfds(let f) where f.count != Int(count): throw .invalid("SET_IRQS: \(f.count) eventfds for \(count) vectors")
        default: break
        }
        var buf = VFIOKernelUAPI.irqSet(index: index, start: start, count: count, action: action, data: data)
        let r = system.ioctl(deviceFD, VFIOKernelUAPI.deviceSetIRQs, &buf)
        guard r >= 0 else { throw .ioctl(name: "VFIO_DEVICE_SET_IRQS index \(index)", errno: -r) }
    }

    /// Disables every vector of `index` (DATA_NONE | ACTION_TRIGGER, count 0).
    public func disableIRQs(index: UInt32) throws(VFIOKernelError) {
        try setIRQs(index: index, start: 0, count: 0, action: .trigger, data: .none)
    }

    // MARK: Region access

    private func checkRange(_ region: VFIOKernelRegion, _ offset: UInt64, _ count: Int) throws(VFIOKernelError) {
        let (end, o) = offset.addingReportingOverflow(UInt64(max(0, count)))
        guard count >= 0, !o, end <= region.info.size else {
            throw .invalid("region \(region.info.index): access 0x\(String(offset, radix: 16))+\(count) beyond its 0x\(String(region.info.size, radix: 16)) bytes")
        }
    }

    /// pread at the region's offset in the device fd.
    public func read(_ region: VFIOKernelRegion, offset: UInt64, count: Int) throws(VFIOKernelError) -> [UInt8] {
        try checkRange(region, offset, count)
        guard region.info.flags.contains(.read) else { throw .invalid("region \(region.info.index) is not readable") }
        switch system.pread(deviceFD, count: count, offset: region.offset + offset) {
        case .success(let b): return b
        case .failure(let e): throw .system("pread region \(region.info.index) +0x\(String(offset, radix: 16))/\(count)", errno: e.code)
        }
    }

    /// pwrite at the region's offset in the device fd.
    public func write(_ region: VFIOKernelRegion, offset: UInt64, data: [UInt8]) throws(VFIOKernelError) {
        try checkRange(region, offset, data.count)
        guard region.info.flags.contains(.write) else { throw .invalid("region \(region.info.index) is not writable") }
        switch system.pwrite(deviceFD, data, offset: region.offset + offset) {
        case .success: return
        case .failure(let e): throw .system("pwrite region \(region.info.index) +0x\(String(offset, radix: 16))/\(data.count)", errno: e.code)
        }
    }

    /// mmap of `size` bytes at `offset` within a mappable region (one of its sparse areas).
    public func mmap(_ region: VFIOKernelRegion, offset: UInt64, size: Int) throws(VFIOKernelError) -> UnsafeMutableRawPointer {
        try checkRange(region, offset, size)
        guard region.mmapAreas.contains(where: { offset >= $0.offset && offset + UInt64(size) <= $0.offset + $0.size }) else {
            throw .invalid("region \(region.info.index): 0x\(String(offset, radix: 16))+0x\(String(size, radix: 16)) is not in an mmappable area")
        }
        switch system.mmap(deviceFD, size: size, offset: region.offset + offset) {
        case .success(let p): return p
        case .failure(let e): throw .system("mmap region \(region.info.index)", errno: e.code)
        }
    }

    // MARK: Resets

    /// VFIO_DEVICE_RESET: the kernel picks the method (FLR, PM, slot or bus reset; `reset_method` in sysfs).
    public func reset() throws(VFIOKernelError) {
        guard info.flags.contains(.reset) else { throw .unsupported("\(address): the kernel offers no reset for this device") }
        let r = system.ioctl(deviceFD, VFIOKernelUAPI.deviceReset, value: 0)
        guard r >= 0 else { throw .ioctl(name: "VFIO_DEVICE_RESET", errno: -r) }
    }

    /// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: the functions a bus/slot reset of this device also resets.
    public func hotResetInfo() throws(VFIOKernelError) -> [VFIOPCIDependentDevice] {
        var buf = VFIOKernelUAPI.hotResetInfo(room: 0)
        var r = system.ioctl(deviceFD, VFIOKernelUAPI.deviceGetPCIHotResetInfo, &buf)
        var count = Int(ByteReader.le(buf, at: 8, size: 4) ?? 0)
        if r == -VFIOErrno.ENOSPC {
            guard count > 0, count <= 256 else { throw .invalid("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: \(count) devices") }
            buf = VFIOKernelUAPI.hotResetInfo(room: count)
            r = system.ioctl(deviceFD, VFIOKernelUAPI.deviceGetPCIHotResetInfo, &buf)
            count = min(count, Int(ByteReader.le(buf, at: 8, size: 4) ?? 0))
        }
        guard r >= 0 else { throw .ioctl(name: "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO", errno: -r) }
        var out: [VFIOPCIDependentDevice] = []
        for i in 0..<count {
            let o = 12 + 8 * i
            guard let id = ByteReader.le(buf, at: o, size: 4), let seg = ByteReader.le(buf, at: o + 4, size: 2),
                  let bus = ByteReader.le(buf, at: o + 6, size: 1), let devfn = ByteReader.le(buf, at: o + 7, size: 1)
            else { throw .invalid("VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: truncated") }
            out.append(VFIOPCIDependentDevice(groupOrDeviceID: UInt32(id),
                                              address: PCIAddress(domain: UInt32(seg), bus: UInt8(bus), device: UInt8(devfn >> 3), function: UInt8(devfn & 7))))
        }
        return out
    }

    /// VFIO_DEVICE_PCI_HOT_RESET: a secondary bus (or slot) reset. Group path: every affected group must be ours,
    /// and this backend owns one group, so every dependent function must be in it. cdev path: an empty group list
    /// (the kernel checks the iommufd owns every affected device).
    public func hotReset() throws(VFIOKernelError) {
        let deps = try hotResetInfo()
        var fds: [Int32] = []
        if case .type1(_, let g, let gid) = access {
            let foreign = deps.filter { String($0.groupOrDeviceID) != gid }
            guard foreign.isEmpty else {
                throw .unsupported("hot reset of \(address) also resets \(foreign.map { "\($0.address) (group \($0.groupOrDeviceID))" }.joined(separator: ", ")), which this process does not own")
            }
            fds = [g]
        }
        var buf = VFIOKernelUAPI.hotReset(groupFDs: fds)
        let r = system.ioctl(deviceFD, VFIOKernelUAPI.devicePCIHotReset, &buf)
        guard r >= 0 else { throw .ioctl(name: "VFIO_DEVICE_PCI_HOT_RESET", errno: -r) }
    }

    // MARK: DMA

    /// Maps `size` bytes of this process's memory at `vaddr` for device DMA at `iova` (TYPE1 MAP_DMA by vaddr, or
    /// IOMMU_IOAS_MAP at a fixed IOVA). The kernel pins the pages (RLIMIT_MEMLOCK).
    public func mapDMA(iova: UInt64, size: UInt64, vaddr: UInt64, writable: Bool) throws(VFIOKernelError) {
        switch access {
        case .type1(let c, _, _):
            var buf = VFIOKernelUAPI.type1DMAMap(vaddr: vaddr, iova: iova, size: size, writable: writable)
            let r = system.ioctl(c, VFIOKernelUAPI.iommuMapDMA, &buf)
            guard r >= 0 else { throw .ioctl(name: "VFIO_IOMMU_MAP_DMA iova 0x\(String(iova, radix: 16))+0x\(String(size, radix: 16))", errno: -r) }
        case .iommufd(let fd, let ioas, _):
            var buf = VFIOKernelUAPI.ioasMapArgs(ioas: ioas, userVA: vaddr, length: size, iova: iova, writable: writable)
            let r = system.ioctl(fd, VFIOKernelUAPI.ioasMap, &buf)
            guard r >= 0 else { throw .ioctl(name: "IOMMU_IOAS_MAP iova 0x\(String(iova, radix: 16))+0x\(String(size, radix: 16))", errno: -r) }
        }
    }

    /// Maps `size` bytes of file `fd` from `offset` at `iova` without a user mapping (IOMMU_IOAS_MAP_FILE, cdev
    /// path, Linux >= 6.13). The group path has no equivalent: callers mmap and use `mapDMA(vaddr:)`.
    public func mapDMAFile(iova: UInt64, size: UInt64, fd: Int32, offset: UInt64, writable: Bool) throws(VFIOKernelError) {
        guard case .iommufd(let ifd, let ioas, _) = access else { throw .unsupported("IOMMU_IOAS_MAP_FILE needs the iommufd cdev path") }
        var buf = VFIOKernelUAPI.ioasMapFileArgs(ioas: ioas, fd: fd, start: offset, length: size, iova: iova, writable: writable)
        let r = system.ioctl(ifd, VFIOKernelUAPI.ioasMapFile, &buf)
        guard r >= 0 else { throw .ioctl(name: "IOMMU_IOAS_MAP_FILE iova 0x\(String(iova, radix: 16))+0x\(String(size, radix: 16))", errno: -r) }
    }

    /// Unmaps every mapping inside [iova, iova+size); returns the bytes the kernel unmapped (0 when none: the
    /// kernel's type1 IOMMU answers an unmap of nothing with success).
    @discardableResult
    public func unmapDMA(iova: UInt64, size: UInt64) throws(VFIOKernelError) -> UInt64 {
        switch access {
        case .type1(let c, _, _):
            var buf = VFIOKernelUAPI.type1DMAUnmap(iova: iova, size: size)
            let r = system.ioctl(c, VFIOKernelUAPI.iommuUnmapDMA, &buf)
            guard r >= 0 else { throw .ioctl(name: "VFIO_IOMMU_UNMAP_DMA iova 0x\(String(iova, radix: 16))+0x\(String(size, radix: 16))", errno: -r) }
            return VFIODMAUnmap(decoding: buf).size
        case .iommufd(let fd, let ioas, _):
            var buf = VFIOKernelUAPI.ioasUnmapArgs(ioas: ioas, iova: iova, length: size)
            let r = system.ioctl(fd, VFIOKernelUAPI.ioasUnmap, &buf)
            if r == -VFIOErrno.ENOENT { return 0 }   // iommufd: nothing mapped there
            guard r >= 0 else { throw .ioctl(name: "IOMMU_IOAS_UNMAP iova 0x\(String(iova, radix: 16))+0x\(String(size, radix: 16))", errno: -r) }
            return ByteReader.le(buf, at: 16, size: 8) ?? 0
        }
    }
}
