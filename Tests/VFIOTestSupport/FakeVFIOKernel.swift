import Foundation
import PCI
import VFIO
#if canImport(Glibc)
import Glibc
#endif

/// A fake Linux kernel for the VFIO kernel backend: sysfs and /dev nodes, the container/group and iommufd cdev
/// ioctls, and a vfio-pci device in front of any `PCIFunction`: its config space (region 7), its BARs (regions
/// 0-5, one access of the pread/pwrite's width as vfio-pci does for aligned accesses), mmappable where the function
/// has an mmap backing (really mmapped, within `sparseAreas`). The default function is `TestPCIFunction` (BAR0
/// memfd with the MSI-X page left out of the sparse areas, BAR2 registers). Every call is recorded with its
/// argument bytes; any ioctl or open can be made to fail with an errno.
package final class FakeVFIOKernel: VFIOKernelSystem, @unchecked Sendable {
    package struct Call: Equatable, CustomStringConvertible {
        package var fd: Int32
        package var request: UInt
        /// The argument bytes as passed in (nil for a value ioctl).
        package var bytes: [UInt8]?
        package var value: UInt?
        package init(fd: Int32, request: UInt, bytes: [UInt8]?, value: UInt?) {
            self.fd = fd; self.request = request; self.bytes = bytes; self.value = value
        }
        package var description: String { "fd \(fd) req 0x\(String(request, radix: 16)) \(bytes.map { "\($0)" } ?? "value \(value ?? 0)")" }
    }

    package static let containerFD: Int32 = 100, groupFD: Int32 = 101, iommuFD: Int32 = 103, sysfsConfigFD: Int32 = 104
    /// Extended capabilities (offsets) this vfio-pci hides, as Linux 6.1's does with every DVSEC: dropped from the
    /// chain and read as zeros through the config region; the sysfs config file shows them.
    package var hiddenExtCaps: Set<Int> = []
    /// A real fd (a dup of BAR0's memfd, region 0 sits at file offset 0), so a server can pass it with SCM_RIGHTS.
    package let deviceFD: Int32
    package static let ioasID: UInt32 = 9, devID: UInt32 = 5
    /// The region at file offset 0 of the device fd (its slot swapped with region 0's), so that a BAR whose backing
    /// is the device fd (`init(function:fdRegion:)`) can be mapped by a client through the fd it is handed.
    package let fdRegion: UInt32
    /// The region's slot in the device fd (region offset = slot << 40); a swap, so also the region at a slot.
    package func slot(_ region: UInt32) -> UInt32 { region == fdRegion ? 0 : region == 0 ? fdRegion : region }
    package func regionOffset(_ region: UInt32) -> UInt64 { UInt64(slot(region)) << 40 }

    package let lock = NSRecursiveLock()
    package let function: any PCIFunction
    /// The TestPCIFunction behind the default fake (nil for another function).
    package var test: TestPCIFunction? { function as? TestPCIFunction }
    /// Mappable areas per BAR of a mappable function (absent: the whole BAR).
    package var sparseAreas: [Int: [VFIOSparseArea]] = [:]
    package let bdf = "0000:01:00.0"
    package let group = "7"
    package var calls: [Call] = []
    package var paths: Set<String>
    package var links: [String: String]
    package var dirs: [String: [String]] = [:]
    package var openErrors: [String: Int32] = [:]
    package var ioctlErrors: [UInt: Int32] = [:]
    package var groupViable = true
    package var apiVersion: Int32 = 0
    package var hasType1: Bool = true
    package var hotResetDeps: [(UInt32, PCIAddress)] = []
    /// DMA mappings: iova -> (size, vaddr).
    package var dmaMaps: [UInt64: (size: UInt64, vaddr: UInt64)] = [:]
    /// Eventfds per IRQ index, as the last SET_IRQS left them.
    package var irqFDs: [UInt32: [Int32]] = [:]
    package var resets = 0, hotResets = 0, sysfsConfigWrites = 0
    /// Every config write, in order (config region and sysfs file): offset and bytes.
    package var configWrites: [(offset: Int, bytes: [UInt8])] = []
    /// pread/pwrite calls on the device fd per region index.
    package var regionIO: [UInt32: Int] = [:]
    package var closed: Set<Int32> = []
    /// A kernel VFIO driver implemented by a `VFIODevice` (e.g. a kernel vfio-cxl stood in for by our v4 device):
    /// when set, the device fd's GET_INFO, GET_REGION_INFO, RESET, pread/pwrite and mmap are answered by it, as the
    /// kernel answers them from a variant driver's ops (region i at offset i << 40; mmap only inside the region's
    /// sparse areas, or the whole region without them, as vfio_pci_core_mmap checks), and closing the device fd is
    /// its close_device (`clientDisconnected`: per-open state goes).
    package var vfioDevice: (any VFIODevice)?
    /// Make BAR0's capability chain hostile (next pointer loops back).
    package var hostileChain = false

    package convenience init(cdev: Bool = false) throws {
        let f = try TestPCIFunction()
        self.init(function: f, deviceFD: dup(f.bar0.fd), fdRegion: 0, cdev: cdev)
        sparseAreas[0] = [VFIOSparseArea(offset: 0, size: 0x2000), VFIOSparseArea(offset: 0x4000, size: 0x4000)]
    }

    /// A fake vfio-pci device in front of `function` (its device fd is /dev/null: nothing to pass on).
    package convenience init(function: any PCIFunction, cdev: Bool = false) {
        self.init(function: function, deviceFD: Glibc.open("/dev/null", O_RDWR | O_CLOEXEC), fdRegion: 0, cdev: cdev)
    }

    /// A fake vfio-pci device whose device fd is BAR `fdRegion`'s backing (a dup of its fd, which must start at file
    /// offset 0): the BAR sits at offset 0 of the device fd, as a real device fd maps each region at its offset.
    package convenience init(function: any VFIOMappablePCIFunction, fdRegion: UInt32, cdev: Bool = false) {
        let fd = function.mmapBacking(bar: Int(fdRegion)).map { dup($0.fd) } ?? Glibc.open("/dev/null", O_RDWR | O_CLOEXEC)
        self.init(function: function, deviceFD: fd, fdRegion: fdRegion, cdev: cdev)
    }

    private init(function: any PCIFunction, deviceFD: Int32, fdRegion: UInt32, cdev: Bool) {
        self.function = function
        self.deviceFD = deviceFD
        self.fdRegion = fdRegion
        let dev = "/sys/bus/pci/devices/\(bdf)"
        paths = [dev, "\(dev)/config", "/dev/vfio", "/dev/vfio/vfio", "/dev/vfio/7"]
        links = ["\(dev)/driver": "../../../bus/pci/drivers/vfio-pci", "\(dev)/iommu_group": "../../../kernel/iommu_groups/7"]
        dirs["/sys/kernel/iommu_groups/7/devices"] = [bdf]
        if cdev {
            paths.formUnion(["/dev/iommu", "/dev/vfio/devices/vfio0"])
            dirs["\(dev)/vfio-dev"] = ["vfio0"]
        }
    }

    deinit { Glibc.close(deviceFD) }

    package func ioctlCalls(_ request: UInt) -> [Call] { lock.lock(); defer { lock.unlock() }; return calls.filter { $0.request == request } }

    // MARK: VFIOKernelSystem

    package func open(_ path: String) -> Result<Int32, VFIOSystemErrno> {
        lock.lock(); defer { lock.unlock() }
        if let e = openErrors[path] { return .failure(VFIOSystemErrno(e)) }
        guard paths.contains(path) else { return .failure(VFIOSystemErrno(ENOENT)) }
        switch path {
        case "/dev/vfio/vfio": return .success(Self.containerFD)
        case "/dev/vfio/7": return .success(Self.groupFD)
        case "/dev/vfio/devices/vfio0": return .success(deviceFD)
        case "/dev/iommu": return .success(Self.iommuFD)
        case "/sys/bus/pci/devices/\(bdf)/config": return .success(Self.sysfsConfigFD)
        default: return .failure(VFIOSystemErrno(EACCES))
        }
    }

    package func close(_ fd: Int32) {
        lock.lock(); closed.insert(fd); let d = fd == deviceFD ? vfioDevice : nil; lock.unlock()
        d?.clientDisconnected()
    }
    package func readLink(_ path: String) -> String? { lock.lock(); defer { lock.unlock() }; return links[path] }
    package func listDirectory(_ path: String) -> [String]? { lock.lock(); defer { lock.unlock() }; return dirs[path] }
    package func exists(_ path: String) -> Bool { lock.lock(); defer { lock.unlock() }; return paths.contains(path) || dirs[path] != nil }

    package func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int32 {
        lock.lock(); defer { lock.unlock() }
        calls.append(Call(fd: fd, request: request, bytes: nil, value: value))
        if let e = ioctlErrors[request] { return -e }
        switch (fd, request) {
        case (Self.containerFD, VFIOKernelUAPI.getAPIVersion): return apiVersion
        case (Self.containerFD, VFIOKernelUAPI.checkExtension): return hasType1 && (value == 1 || value == 3) ? 1 : 0
        case (Self.containerFD, VFIOKernelUAPI.setIOMMU): return value == 3 ? 0 : -EINVAL
        case (deviceFD, VFIOKernelUAPI.deviceReset) where vfioDevice != nil:
            resets += 1
            do { try vfioDevice?.reset() } catch { return -error.errno }
            return 0
        case (deviceFD, VFIOKernelUAPI.deviceReset):
            // The kernel's choice: FLR when the function has it, else a bus reset.
            resets += 1
            try? function.reset(function.resetMethods.contains(.flr) ? .flr : .bus)
            return 0
        default: return -ENOTTY
        }
    }

    private func u32(_ b: [UInt8], _ o: Int) -> UInt32 { UInt32(ByteReader.le(b, at: o, size: 4) ?? 0xdead_beef) }
    private func u64(_ b: [UInt8], _ o: Int) -> UInt64 { ByteReader.le(b, at: o, size: 8) ?? 0xdead_beef }
    private func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) } }
    private func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) } }

    package func ioctl(_ fd: Int32, _ request: UInt, _ b: inout [UInt8]) -> Int32 {
        lock.lock(); defer { lock.unlock() }
        calls.append(Call(fd: fd, request: request, bytes: b, value: nil))
        if let e = ioctlErrors[request] { return -e }
        // Every struct starts with argsz/size, which must equal the buffer handed in.
        guard b.count >= 4, Int(u32(b, 0)) == b.count || request == VFIOKernelUAPI.groupSetContainer || request == VFIOKernelUAPI.groupGetDeviceFD
        else { return -EINVAL }
        switch (fd, request) {
        case (Self.groupFD, VFIOKernelUAPI.groupGetStatus):
            put32(&b, 4, groupViable ? 1 : 0); return 0
        case (Self.groupFD, VFIOKernelUAPI.groupSetContainer):
            return b.count == 4 && Int32(bitPattern: u32(b, 0)) == Self.containerFD ? 0 : -EBADF
        case (Self.groupFD, VFIOKernelUAPI.groupGetDeviceFD):
            return b == Array(bdf.utf8) + [0] ? deviceFD : -ENODEV
        case (deviceFD, VFIOKernelUAPI.deviceGetInfo) where vfioDevice != nil:
            guard b.count >= 20, let d = vfioDevice else { return -EINVAL }
            let info = d.deviceInfo()
            put32(&b, 4, info.flags.subtracting(.caps).rawValue); put32(&b, 8, info.numRegions); put32(&b, 12, info.numIRQs)
            guard !info.capabilities.isEmpty else { return 0 }
            let caps = VFIOCapabilityChain.encode(info.capabilities, baseOffset: 24)
            if b.count < 24 + caps.count { put32(&b, 0, UInt32(24 + caps.count)); return 0 }
            put32(&b, 4, info.flags.union(.caps).rawValue); put32(&b, 16, 24); b.replaceSubrange(24..<(24 + caps.count), with: caps)
            return 0
        case (deviceFD, VFIOKernelUAPI.deviceGetRegionInfo) where vfioDevice != nil: return deviceRegionInfo(&b)
        case (deviceFD, VFIOKernelUAPI.deviceGetInfo):
            guard b.count >= 16 else { return -EINVAL }
            put32(&b, 4, VFIODeviceFlags([.pci, .reset]).rawValue); put32(&b, 8, 9); put32(&b, 12, 5); return 0
        case (deviceFD, VFIOKernelUAPI.deviceGetRegionInfo): return regionInfo(&b)
        case (deviceFD, VFIOKernelUAPI.deviceGetIRQInfo):
            let idx = u32(b, 8)
            guard idx < 5 else { return -EINVAL }
            put32(&b, 4, VFIOIRQInfoFlags.eventfd.rawValue | (idx == 0 ? 6 : 8)); put32(&b, 12, [1, 4, 4, 1, 1][Int(idx)]); return 0
        case (deviceFD, VFIOKernelUAPI.deviceSetIRQs):
            let flags = VFIOIRQSetFlags(rawValue: u32(b, 4)), idx = u32(b, 8), start = u32(b, 12), count = u32(b, 16)
            if flags.contains(.dataEventFD) {
                guard b.count == 20 + 4 * Int(count) else { return -EINVAL }
                var fds = irqFDs[idx] ?? []
                while fds.count < Int(start + count) { fds.append(-1) }
                for i in 0..<Int(count) { fds[Int(start) + i] = Int32(bitPattern: u32(b, 20 + 4 * i)) }
                irqFDs[idx] = fds
            } else if flags.contains(.dataNone) && flags.contains(.actionTrigger) && count == 0 {
                irqFDs[idx] = nil
            }
            return 0
        case (deviceFD, VFIOKernelUAPI.deviceGetPCIHotResetInfo):
            let n = hotResetDeps.count
            put32(&b, 8, UInt32(n))
            guard b.count >= 12 + 8 * n else { return -ENOSPC }
            for (i, d) in hotResetDeps.enumerated() {
                put32(&b, 12 + 8 * i, d.0)
                b[16 + 8 * i] = UInt8(d.1.domain & 0xff); b[17 + 8 * i] = UInt8(d.1.domain >> 8)
                b[18 + 8 * i] = d.1.bus; b[19 + 8 * i] = d.1.device << 3 | d.1.function
            }
            return hotResetDeps.isEmpty ? -ENODEV : 0
        case (deviceFD, VFIOKernelUAPI.devicePCIHotReset):
            hotResets += 1
            try? function.reset(.bus)
            return 0
        case (Self.containerFD, VFIOKernelUAPI.iommuMapDMA):
            dmaMaps[u64(b, 16)] = (u64(b, 24), u64(b, 8)); return 0
        case (Self.containerFD, VFIOKernelUAPI.iommuUnmapDMA):
            let iova = u64(b, 8), size = u64(b, 16)
            var gone: UInt64 = 0
            for (k, v) in dmaMaps where k >= iova && k + v.size <= iova + size { gone += v.size; dmaMaps[k] = nil }
            put64(&b, 16, gone); return 0
        case (deviceFD, VFIOKernelUAPI.deviceBindIOMMUFD):
            guard Int32(bitPattern: u32(b, 8)) == Self.iommuFD else { return -EBADF }
            put32(&b, 12, Self.devID); return 0
        case (Self.iommuFD, VFIOKernelUAPI.ioasAlloc): put32(&b, 8, Self.ioasID); return 0
        case (deviceFD, VFIOKernelUAPI.deviceAttachIOMMUFDPT): return u32(b, 8) == Self.ioasID ? 0 : -ENOENT
        case (Self.iommuFD, VFIOKernelUAPI.ioasMap), (Self.iommuFD, VFIOKernelUAPI.ioasMapFile):
            guard u32(b, 8) == Self.ioasID else { return -ENOENT }
            dmaMaps[u64(b, 32)] = (u64(b, 24), u64(b, 16)); return 0
        case (Self.iommuFD, VFIOKernelUAPI.ioasUnmap):
            let iova = u64(b, 8), size = u64(b, 16)
            var gone: UInt64 = 0
            for (k, v) in dmaMaps where k >= iova && k + v.size <= iova + size { gone += v.size; dmaMaps[k] = nil }
            if gone == 0 { return -ENOENT }
            put64(&b, 16, gone); return 0
        default: return -ENOTTY
        }
    }

    /// GET_REGION_INFO answered by `vfioDevice`: its flags, size and capability chain (argsz two-step).
    private func deviceRegionInfo(_ b: inout [UInt8]) -> Int32 {
        guard b.count >= 32, let d = vfioDevice else { return -EINVAL }
        let idx = u32(b, 8)
        let info: VFIORegionInfo
        do { info = try d.regionInfo(idx) } catch { return -error.errno }
        let caps = info.capabilities.isEmpty ? [] : VFIOCapabilityChain.encode(info.capabilities, baseOffset: 32)
        put32(&b, 4, info.flags.subtracting(.caps).rawValue); put64(&b, 16, info.size); put64(&b, 24, UInt64(idx) << 40)
        guard !caps.isEmpty else { return 0 }
        if b.count < 32 + caps.count { put32(&b, 0, UInt32(32 + caps.count)); return 0 }
        put32(&b, 4, info.flags.union(.caps).rawValue); put32(&b, 12, 32); b.replaceSubrange(32..<(32 + caps.count), with: caps)
        return 0
    }

    /// mmap through `vfioDevice`: the region must offer MMAP and the window lie inside one sparse area (or the
    /// region), as vfio_pci_core_mmap and the v4 driver check; then the region's backing fd is mapped for real.
    private func deviceMMap(_ d: any VFIODevice, size: Int, offset: UInt64) -> Result<UnsafeMutableRawPointer, VFIOSystemErrno> {
        let idx = UInt32(truncatingIfNeeded: offset >> 40), off = offset & ((1 << 40) - 1)
        guard let info = try? d.regionInfo(idx), info.flags.contains(.mmap), let m = info.mapping else { return .failure(VFIOSystemErrno(EINVAL)) }
        var areas = [VFIOSparseArea(offset: 0, size: info.size)]
        if let c = info.capabilities.first(where: { $0.id == VFIORegionCapabilityID.sparseMMap }) {
            guard let sp = try? VFIOSparseMMapCapability(parsing: c, regionSize: info.size) else { return .failure(VFIOSystemErrno(EINVAL)) }
            areas = sp.areas
        }
        guard areas.contains(where: { off >= $0.offset && off + UInt64(size) <= $0.offset + $0.size }) else { return .failure(VFIOSystemErrno(EINVAL)) }
        let p = Glibc.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, off_t(m.fileOffset + off))
        guard let p, p != MAP_FAILED else { return .failure(VFIOSystemErrno(errno)) }
        return .success(p)
    }

    /// vfio-pci's region layout: a BAR with an mmap backing is mmappable, with a sparse capability when
    /// `sparseAreas` names its areas (which needs the argsz two-step); other BARs and the config region are
    /// read/write only; the rest absent.
    private func regionInfo(_ b: inout [UInt8]) -> Int32 {
        let idx = u32(b, 8)
        guard idx < 9, b.count >= 32 else { return -EINVAL }
        var flags: VFIORegionFlags = []
        var size: UInt64 = 0
        var caps: [UInt8] = []
        if idx < 6, let bar = function.bars.first(where: { $0.index == Int(idx) }) {
            flags = [.read, .write]; size = bar.size
            if (function as? any VFIOMappablePCIFunction)?.mmapBacking(bar: Int(idx)) != nil {
                flags.insert(.mmap)
                if let areas = sparseAreas[Int(idx)] {
                    flags.insert(.caps)
                    var c = VFIOCapabilityChain.encode([VFIOSparseMMapCapability(areas: areas).capability], baseOffset: 32)
                    if hostileChain { put32(&c, 4, 32) }
                    caps = c
                }
            }
        } else if idx == 7 {
            flags = [.read, .write]; size = UInt64(function.configSize)
        }
        let need = 32 + caps.count
        put32(&b, 4, flags.rawValue); put64(&b, 16, size); put64(&b, 24, regionOffset(idx))
        if b.count < need { put32(&b, 0, UInt32(need)); put32(&b, 4, flags.subtracting(.caps).rawValue); return 0 }
        if !caps.isEmpty { put32(&b, 12, 32); b.replaceSubrange(32..<need, with: caps) }
        return 0
    }

    /// One access of `count` bytes when naturally aligned (1/2/4 for config, 1/2/4/8 for BARs), else bytewise.
    private func access(_ idx: UInt32, _ off: UInt64, _ count: Int, write: [UInt8]?) -> [UInt8]? {
        let widths = idx == 7 ? [1, 2, 4] : [1, 2, 4, 8]
        let pieces: [(UInt64, Int)] = widths.contains(count) && off % UInt64(count) == 0
            ? [(off, count)] : (0..<count).map { (off + UInt64($0), 1) }
        var out: [UInt8] = []
        for (o, w) in pieces {
            var v: UInt64 = 0
            if let d = write { for i in 0..<w { v |= UInt64(d[Int(o - off) + i]) << UInt64(8 * i) } }
            do {
                if idx == 7 {
                    if write != nil { try function.configWrite(Int(o), width: w, value: UInt32(truncatingIfNeeded: v)) }
                    else { v = UInt64(try function.configRead(Int(o), width: w)) }
                } else {
                    if write != nil { try function.barWrite(Int(idx), offset: o, width: w, value: v) }
                    else { v = try function.barRead(Int(idx), offset: o, width: w) }
                }
            } catch { return nil }
            if write == nil { for i in 0..<w { out.append(UInt8(truncatingIfNeeded: v >> UInt64(8 * i))) } }
        }
        return out
    }

    /// Extended config space as this vfio-pci shows it: hidden capabilities cut out of the chain and zeroed.
    private func vfioExtendedView() -> [UInt8]? {
        var img: [UInt8] = []
        for o in stride(from: 0x100, to: function.configSize, by: 4) {
            guard let v = try? function.configRead(o, width: 4) else { return nil }
            img += (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(8 * $0)) }
        }
        func header(_ o: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(img[o - 0x100 + $1]) << UInt32(8 * $1) } }
        var chain: [Int] = [], off = 0x100
        while off >= 0x100, off + 4 <= function.configSize, !chain.contains(off), header(off) != 0 { chain.append(off); off = Int(header(off) >> 20) & ~3 }
        let visible = chain.filter { !hiddenExtCaps.contains($0) }
        for o in chain where hiddenExtCaps.contains(o) {
            let end = chain.filter { $0 > o }.min() ?? function.configSize
            for i in o..<end { img[i - 0x100] = 0 }
        }
        for (i, o) in visible.enumerated() {
            let next = i + 1 < visible.count ? UInt32(visible[i + 1]) : 0
            let h = header(o) & 0x000F_FFFF | next << 20
            for b in 0..<4 { img[o - 0x100 + b] = UInt8(truncatingIfNeeded: h >> UInt32(8 * b)) }
        }
        return img
    }

    package func pread(_ fd: Int32, count: Int, offset: UInt64) -> Result<[UInt8], VFIOSystemErrno> {
        if fd == Self.sysfsConfigFD {
            guard let b = access(7, offset, count, write: nil) else { return .failure(VFIOSystemErrno(EIO)) }
            return .success(b)
        }
        guard fd == deviceFD else { return .failure(VFIOSystemErrno(EBADF)) }
        if let d = vfioDevice {
            do { return .success(try d.read(region: UInt32(truncatingIfNeeded: offset >> 40), offset: offset & ((1 << 40) - 1), count: count)) } catch {
                return .failure(VFIOSystemErrno(error.errno))
            }
        }
        let region = slot(UInt32(truncatingIfNeeded: offset >> 40))
        lock.lock(); regionIO[region, default: 0] += 1; lock.unlock()
        if region == 7, !hiddenExtCaps.isEmpty, offset & 0xFFF >= 0x100 || Int(offset & 0xFFF) + count > 0x100,
           let ext = vfioExtendedView(), let std = access(7, 0, 0x100, write: nil) {
            // The header and standard capabilities as they are, the extended part as this vfio-pci shows it.
            let img = std + ext, o = Int(offset & 0xFFF)
            guard o + count <= img.count else { return .failure(VFIOSystemErrno(EINVAL)) }
            return .success(Array(img[o..<(o + count)]))
        }
        guard let b = access(region, offset & ((1 << 40) - 1), count, write: nil) else { return .failure(VFIOSystemErrno(EIO)) }
        return .success(b)
    }

    package func pwrite(_ fd: Int32, _ data: [UInt8], offset: UInt64) -> Result<Int, VFIOSystemErrno> {
        if fd == Self.sysfsConfigFD {
            lock.lock(); sysfsConfigWrites += 1; configWrites.append((Int(offset), data)); lock.unlock()
            guard access(7, offset, data.count, write: data) != nil else { return .failure(VFIOSystemErrno(EIO)) }
            return .success(data.count)
        }
        guard fd == deviceFD else { return .failure(VFIOSystemErrno(EBADF)) }
        if let d = vfioDevice {
            do { try d.write(region: UInt32(truncatingIfNeeded: offset >> 40), offset: offset & ((1 << 40) - 1), data: data) } catch {
                return .failure(VFIOSystemErrno(error.errno))
            }
            return .success(data.count)
        }
        let region = slot(UInt32(truncatingIfNeeded: offset >> 40))
        if region == 7 { lock.lock(); configWrites.append((Int(offset & 0xFFF), data)); lock.unlock() }
        if region == 7, !hiddenExtCaps.isEmpty {
            // vfio-pci drops writes to what it hides: from a hidden capability to the next one in the raw chain.
            var chain: [Int] = [], o = 0x100
            while o >= 0x100, o + 4 <= function.configSize, !chain.contains(o), let h = try? function.configRead(o, width: 4), h != 0 {
                chain.append(o); o = Int(h >> 20) & ~3
            }
            let off = Int(offset & 0xFFF)
            if hiddenExtCaps.contains(where: { h in off >= h && off < (chain.filter { $0 > h }.min() ?? function.configSize) }) {
                return .success(data.count)
            }
        }
        guard access(region, offset & ((1 << 40) - 1), data.count, write: data) != nil else { return .failure(VFIOSystemErrno(EIO)) }
        return .success(data.count)
    }

    /// Maps the BAR's backing for real (vfio-pci refuses regions without mmap).
    package func mmap(_ fd: Int32, size: Int, offset: UInt64) -> Result<UnsafeMutableRawPointer, VFIOSystemErrno> {
        if fd == deviceFD, let d = vfioDevice { return deviceMMap(d, size: size, offset: offset) }
        let bar = Int(slot(UInt32(truncatingIfNeeded: offset >> 40)))
        guard fd == deviceFD, bar < 6, let m = (function as? any VFIOMappablePCIFunction)?.mmapBacking(bar: bar) else {
            return .failure(VFIOSystemErrno(EINVAL))
        }
        let p = Glibc.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, off_t(m.fileOffset + (offset & ((1 << 40) - 1))))
        guard let p, p != MAP_FAILED else { return .failure(VFIOSystemErrno(errno)) }
        return .success(p)
    }

    package func munmap(_ address: UnsafeMutableRawPointer, size: Int) { _ = Glibc.munmap(address, size) }
}
