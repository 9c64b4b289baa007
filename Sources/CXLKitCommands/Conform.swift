#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PCI
import VFIO
import VFIOCXL
import VFIOUser

/// The conformance checks' view of a device served over vfio-user, through our client as a VMM reaches it.
public final class VFIOUserConformTarget: CXLConformTarget {
    public let socketPath: String
    public private(set) var client: VFIOUserClient
    public init(socketPath: String) throws(VFIOUserError) {
        self.socketPath = socketPath
        client = try VFIOUserClient(socketPath: socketPath)
    }
    deinit { client.close() }

    /// A new connection: the server serves one client at a time and starts the device's per-open state over.
    public func reopen() throws {
        client.close()
        client = try VFIOUserClient(socketPath: socketPath)
    }

    public var transport: String { "vfio-user" }
    /// The client maps the fd the server sent; nothing refuses an mmap of an excluded range.
    public var mmapRefusesExcludedRanges: Bool { false }
    /// No iommufd behind a vfio-user socket.
    public var canMapDMABuf: Bool { false }

    public func deviceInfo() throws -> VFIODeviceInfo { try client.deviceInfo() }

    public func regionInfo(_ index: UInt32) throws -> CXLConformRegion {
        let r = try client.regionInfo(index)
        return CXLConformRegion(index: index, flags: r.flags, size: r.size, capabilities: r.info.capabilities)
    }

    public func read(region: UInt32, offset: UInt64, count: Int) throws -> [UInt8] { try client.read(region: region, offset: offset, count: count) }
    public func write(region: UInt32, offset: UInt64, data: [UInt8]) throws { try client.write(region: region, offset: offset, data: data) }
    public func reset() throws { try client.reset() }
    public func feature(flags: UInt32, data: [UInt8]) throws -> [UInt8] { try client.feature(flags: flags, data: data) }

    /// Maps through the fd sent with the region info. The window must lie in the region, and the fd must be long
    /// enough to back it (a server handing out a short file would otherwise make the first touch SIGBUS).
    public func map(region: UInt32, offset: UInt64, length: Int) throws -> VFIOSharedMemory {
        let r = try client.regionInfo(region)
        guard r.flags.contains(.mmap), let fd = r.fd else { throw CommandError("region \(region) is not mmap-able (no MMAP flag or no fd)") }
        let (end, o) = offset.addingReportingOverflow(UInt64(length))
        guard !o, end <= r.size else { throw CommandError("window 0x\(String(offset, radix: 16))+0x\(String(length, radix: 16)) outside region \(region)") }
        let (fileOffset, o2) = r.info.offset.addingReportingOverflow(offset)
        guard !o2, fileOffset <= UInt64(Int64.max) - UInt64(length) else { throw CommandError("region \(region) file offset overflows") }
        var st = stat()
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG {
            guard UInt64(st.st_size) >= fileOffset + UInt64(length) else {
                throw CommandError("region \(region): the fd holds 0x\(String(st.st_size, radix: 16)) bytes, the window ends at 0x\(String(fileOffset + UInt64(length), radix: 16))")
            }
        }
        return try VFIOSharedMemory(mapping: fd, offset: fileOffset, size: length, writable: true, takeOwnership: false)
    }
}

/// The conformance checks' view of a device the kernel's VFIO owns (`vfio:BDF`): a kernel vfio-cxl driver (the v4
/// series' `vfio-cxl` variant of vfio-pci) reached through the VFIO backend as a VMM reaches it. Region reads, writes
/// and mmaps go straight to the kernel (pread/pwrite/mmap of the device fd at the region's offset), without the
/// backend's own bounds and sparse-area checks, so that what is refused is refused by the kernel under test.
public final class VFIOKernelConformTarget: CXLConformTarget {
    public let address: String
    let open: () throws(CommandError) -> VFIOKernelDevice
    public private(set) var device: VFIOKernelDevice
    private var regions: [UInt32: VFIOKernelRegion] = [:]

    public init(address: String, open: @escaping () throws(CommandError) -> VFIOKernelDevice) throws(CommandError) {
        self.address = address
        self.open = open
        device = try open()
    }
    deinit { device.close() }

    /// Closes the device fd (the kernel's close_device: per-open state goes) and opens it again.
    public func reopen() throws {
        device.close()
        regions = [:]
        device = try open()
    }

    public var transport: String { "kernel VFIO" }
    /// vfio-pci's mmap checks the sparse areas itself (`vfio_pci_core_mmap`).
    public var mmapRefusesExcludedRanges: Bool { true }
    /// A dma-buf export plus IOMMU_IOAS_MAP_FILE is the kernel's path; the check says it is not implemented here yet.
    public var canMapDMABuf: Bool { true }

    public func deviceInfo() throws -> VFIODeviceInfo { device.info }

    private func region(_ index: UInt32) throws -> VFIOKernelRegion {
        if let r = regions[index] { return r }
        let r = try device.regionInfo(index)
        regions[index] = r
        return r
    }

    public func regionInfo(_ index: UInt32) throws -> CXLConformRegion {
        let r = try device.regionInfo(index)
        regions[index] = r
        return CXLConformRegion(index: index, flags: r.info.flags, size: r.info.size, capabilities: r.info.capabilities)
    }

    public func read(region index: UInt32, offset: UInt64, count: Int) throws -> [UInt8] {
        let r = try region(index)
        let (at, o) = r.offset.addingReportingOverflow(offset)
        guard !o else { throw CommandError("region \(index) offset overflows") }
        switch device.system.pread(device.deviceFD, count: count, offset: at) {
        case .success(let b): return b
        case .failure(let e): throw CommandError("pread region \(index) +0x\(String(offset, radix: 16))/\(count): \(e.text)")
        }
    }

    public func write(region index: UInt32, offset: UInt64, data: [UInt8]) throws {
        let r = try region(index)
        let (at, o) = r.offset.addingReportingOverflow(offset)
        guard !o else { throw CommandError("region \(index) offset overflows") }
        switch device.system.pwrite(device.deviceFD, data, offset: at) {
        case .success(let n) where n == data.count: return
        case .success(let n): throw CommandError("pwrite region \(index) +0x\(String(offset, radix: 16)): \(n) of \(data.count) bytes")
        case .failure(let e): throw CommandError("pwrite region \(index) +0x\(String(offset, radix: 16))/\(data.count): \(e.text)")
        }
    }

    public func map(region index: UInt32, offset: UInt64, length: Int) throws -> VFIOSharedMemory {
        let r = try region(index)
        let (at, o) = r.offset.addingReportingOverflow(offset)
        guard !o, length > 0 else { throw CommandError("region \(index): bad window 0x\(String(offset, radix: 16))+0x\(String(length, radix: 16))") }
        switch device.system.mmap(device.deviceFD, size: length, offset: at) {
        case .success(let p): return VFIOSharedMemory(adopting: p, size: length, fd: device.deviceFD)
        case .failure(let e): throw CommandError("mmap region \(index) +0x\(String(offset, radix: 16)): \(e.text)")
        }
    }

    /// VFIO_DEVICE_RESET; EAGAIN (the v4 driver's answer while a reset cannot run yet) is named so the check retries.
    public func reset() throws {
        do { try device.reset() } catch {
            if error.errno == EAGAIN { throw CommandError("VFIO_DEVICE_RESET: EAGAIN") }
            throw error
        }
    }

    public func feature(flags: UInt32, data: [UInt8]) throws -> [UInt8] {
        throw CommandError("VFIO_DEVICE_FEATURE is not implemented in the kernel VFIO backend")
    }
}

extension CXLKit {
    /// `cxlkit conform TARGET`: the 19 `vfio_cxl_type2_test` checks against a vfio-cxl device. Returns the report
    /// and whether every check passed or was skipped. TARGET is `vfio-user:SOCKET` (our client) or `vfio:BDF` (the
    /// kernel's own vfio-cxl, through the kernel VFIO backend; `resolver`'s vfio scheme, so tests can hand in a fake).
    public static func conform(target: String, json: Bool, resolver: TargetResolver = TargetResolver()) throws(CommandError) -> (output: String, ok: Bool) {
        let results: [CXLConformResult]
        if target.hasPrefix("vfio-user:") {
            let path = String(target.dropFirst("vfio-user:".count))
            guard !path.isEmpty else { throw CommandError("vfio-user: needs a socket path (vfio-user:/run/dev.sock)") }
            let t: VFIOUserConformTarget
            do { t = try VFIOUserConformTarget(socketPath: path) } catch { throw CommandError("\(target): \(error)") }
            do { results = try VFIOCXLConformance.run(t) } catch { throw CommandError("\(target): \(error)") }
        } else if target.hasPrefix("vfio:") {
            guard let scheme = resolver.schemes["vfio"] as? VFIOScheme else { throw CommandError("vfio: scheme not registered") }
            let rest = String(target.dropFirst("vfio:".count)), options = resolver.options
            let t = try VFIOKernelConformTarget(address: target) { () throws(CommandError) -> VFIOKernelDevice in try scheme.openDevice(rest, options: options) }
            do { results = try VFIOCXLConformance.run(t) } catch { throw CommandError("\(target): \(error)") }
        } else {
            throw CommandError("\(target): conform takes vfio-user:SOCKET or vfio:BDF")
        }
        return (conformReport(target: target, results: results, json: json), !results.contains { $0.status == .fail })
    }

    /// One line per check and a closing `N passed, N failed, N skipped`; or JSON.
    public static func conformReport(target: String, results: [CXLConformResult], json: Bool) -> String {
        let passed = results.filter { $0.status == .pass }.count
        let failed = results.filter { $0.status == .fail }.count
        let skipped = results.filter { $0.status == .skip }.count
        if json {
            // The envelope every --json output has; a failed check is a problem line.
            return JSONOutput.document(command: "conform", succeeded: failed == 0,
                                       problems: results.filter { $0.status == .fail }.map { "\($0.name): \($0.detail)" }, [
                ("target", .string(target)),
                ("checks", .array(results.map { r in
                    .object([("name", .string(r.name)), ("status", .string(r.status.rawValue)), ("detail", .string(r.detail))])
                })),
                ("passed", .int(Int64(passed))), ("failed", .int(Int64(failed))), ("skipped", .int(Int64(skipped))),
            ])
        }
        let width = results.map(\.name.count).max() ?? 0
        var out = ""
        for r in results {
            let tag = r.status == .pass ? "PASS" : r.status == .fail ? "FAIL" : "SKIP"
            out += "\(tag)  \(r.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(r.detail)\n"
        }
        out += "\(passed) passed, \(failed) failed, \(skipped) skipped\n"
        return out
    }
}
