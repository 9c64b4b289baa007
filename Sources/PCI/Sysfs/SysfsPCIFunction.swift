// Real PCI functions through Linux sysfs (/sys/bus/pci/devices/DDDD:BB:DD.F).
import SystemPackage
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A sysfs tree: `root` is where sysfs is mounted (`/sys`), or a fake tree in tests
/// laid out the same way (`ROOT/bus/pci/devices/ADDR/{config,resource,resourceN}`).
public struct SysfsTree: Sendable {
    public let root: String
    public init(root: String = "/sys") { self.root = root.hasSuffix("/") && root.count > 1 ? String(root.dropLast()) : root }

    public var devicesDirectory: String { root + "/bus/pci/devices" }

    public func path(of address: PCIAddress) -> String { devicesDirectory + "/" + address.description }

    /// Every function under the devices directory, sorted by address. Entries that
    /// are not addresses are ignored.
    public func functionAddresses() throws(PCIError) -> [PCIAddress] {
        guard let dir = opendir(devicesDirectory) else {
            throw .io("cannot list \(devicesDirectory): \(systemErrorText(errno))")
        }
        defer { closedir(dir) }
        var out: [PCIAddress] = []
        while let ent = readdir(dir) {
            let name = withUnsafePointer(to: ent.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if let a = PCIAddress(name), a.description == name { out.append(a) }
        }
        return out.sorted()
    }

    public func exists(_ address: PCIAddress) -> Bool { access(path(of: address) + "/config", F_OK) == 0 }

    public func open(_ address: PCIAddress) throws(PCIError) -> SysfsPCIFunction {
        try SysfsPCIFunction(tree: self, address: address)
    }
}

/// Reads a whole small file (sysfs attributes, fixture files). Nil if it cannot be read.
/// `errno` is left set to why when the answer is nil.
public func readWholeFile(_ path: String, limit: Int = 1 << 26) -> [UInt8]? {
    do throws(Errno) {
        return try FileDescriptor.withOpened(path, .readOnly, onOpenFailure: { $0 }) { (fd) throws(Errno) in
            try fd.readToEnd(limit: limit).get()
        }
    } catch {
        errno = error.rawValue
        return nil
    }
}

/// A function's config space through `config` and its memory BARs through `resourceN`
/// (mapped with mmap per access; root is needed for both beyond the first 64 bytes).
public final class SysfsPCIFunction: PCIFunction {
    public let tree: SysfsTree
    public let pciAddress: PCIAddress
    public let directory: String
    public let configSize: Int
    public let bars: [BARDescription]
    /// Physical start address of each BAR (from `resource`), for display.
    public let barStarts: [Int: UInt64]
    /// Bridge windows (I/O, memory, prefetchable: `resource` lines 13-15) as
    /// (start, size, flags); size 0 when the kernel assigned none.
    public let bridgeWindows: [(start: UInt64, size: UInt64, flags: UInt64)]
    /// The IRQ the kernel routed (`irq`), which lspci prints instead of Interrupt Line.
    public let irq: UInt32?
    /// Expansion ROM size (`resource` line 6), 0 when none.
    public let romSize: UInt64

    public var address: String { pciAddress.description }

    init(tree: SysfsTree, address: PCIAddress) throws(PCIError) {
        self.tree = tree
        self.pciAddress = address
        self.directory = tree.path(of: address)
        var st = stat()
        guard stat(directory + "/config", &st) == 0 else {
            throw .io("\(address): no such PCI function (\(directory)/config: \(systemErrorText(errno)))")
        }
        // sysfs reports 256 or 4096; fake trees hold the real number of bytes.
        let size = Int(st.st_size)
        self.configSize = size >= pcieConfigSpaceSize ? pcieConfigSpaceSize : (size >= pciConfigSpaceSize ? pciConfigSpaceSize : size)
        var bars: [BARDescription] = []
        var starts: [Int: UInt64] = [:]
        var windows: [(start: UInt64, size: UInt64, flags: UInt64)] = []
        var rom: UInt64 = 0
        if let res = readWholeFile(directory + "/resource") {
            let lines = String(decoding: res, as: UTF8.self).split(separator: "\n")
            if lines.count > 6 {
                let f = lines[6].split(separator: " ").compactMap { UInt64($0.dropFirst(2), radix: 16) }
                if f.count == 3, f[1] > f[0] { rom = f[1] - f[0] + 1 }
            }
            for line in lines.dropFirst(13).prefix(3) {
                let f = line.split(separator: " ").compactMap { UInt64($0.dropFirst(2), radix: 16) }
                guard f.count == 3 else { continue }
                windows.append((f[0], f[1] > f[0] ? f[1] - f[0] + 1 : 0, f[2]))
            }
            for (i, line) in lines.prefix(6).enumerated() {
                let f = line.split(separator: " ").compactMap { UInt64($0.dropFirst(2), radix: 16) }
                guard f.count == 3, f[1] > f[0] || (f[0] != 0 && f[1] == f[0]) else { continue }
                let flags = f[2]
                let r = SysfsResourceFlags(rawValue: flags)
                let kind: BARKind = r.contains(.io) ? .io : (r.contains(.memory64) ? .memory64 : .memory32)
                bars.append(BARDescription(index: i, kind: kind, prefetchable: r.contains(.prefetch), size: f[1] - f[0] + 1))
                starts[i] = f[0]
            }
        }
        self.bars = bars
        self.barStarts = starts
        self.bridgeWindows = windows
        self.romSize = rom
        self.irq = readWholeFile(directory + "/irq").flatMap {
            UInt32(String(decoding: $0, as: UTF8.self).trimmingWhitespace())
        }
    }

    public func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        guard [1, 2, 4].contains(width), offset % width == 0 else { throw .badAccess("config read of \(width) bytes at 0x\(hex(offset, digits: 3))") }
        guard offset >= 0, offset + width <= configSize else { throw .outOfRange("config offset 0x\(hex(offset, digits: 3))") }
        let buf = try preadConfig(offset, count: width)
        var v: UInt32 = 0
        for i in 0..<width { v |= UInt32(buf[i]) << UInt32(8 * i) }
        return v
    }

    /// Config bytes in one pread of the `config` file.
    public func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        guard offset >= 0 else { throw .outOfRange("config offset \(offset)") }
        try Self.checkBulk(UInt64(offset), count, limit: configSize)
        return try preadConfig(offset, count: count)
    }

    /// `count` bytes of the `config` file from `offset` (EINTR retried). Unprivileged readers get only the first
    /// 64 bytes; a short read is not an error lspci makes visible either, but we say so.
    private func preadConfig(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        try FileDescriptor.withOpened(directory + "/config", .readOnly,
                                      onOpenFailure: { PCIError.io("\(address): cannot open config: \($0)") }) { (fd) throws(PCIError) in
            var buf = [UInt8](repeating: 0, count: count)
            let done = buf.withUnsafeMutableBytes { fd.read(fromAbsoluteOffset: Int64(offset), filling: $0) }
            guard case .success(let n) = done, n == count else {
                let got = (try? done.get()) ?? 0
                throw .io("\(address): config read at 0x\(hex(offset + got, digits: 3)) returned \(got) of \(count) bytes (are you root?)")
            }
            return buf
        }
    }

    /// The whole config file in one read (what `configSnapshot` would do in 1024 reads).
    public func readConfigFile() throws(PCIError) -> ConfigSpace {
        guard let bytes = readWholeFile(directory + "/config", limit: pcieConfigSpaceSize) else {
            throw .io("\(address): cannot read \(directory)/config: \(systemErrorText(errno))")
        }
        if let why = Self.shortConfigRead(address: pciAddress, read: bytes.count, size: configSize, privileged: geteuid() == 0) {
            throw .io(why)
        }
        return ConfigSpace(bytes: bytes)
    }

    /// Why a read of the `config` file came back shorter than the file, or nil when it did not. The
    /// kernel gives an unprivileged reader only the first 64 bytes (the header; `pci_read_config` in
    /// drivers/pci/pci-sysfs.c checks CAP_SYS_ADMIN), so the capabilities and every CXL DVSEC are out of
    /// reach: say that root is needed instead of decoding a header as if it were the whole function.
    public static func shortConfigRead(address: PCIAddress, read: Int, size: Int, privileged: Bool) -> String? {
        if read >= size && read >= 64 { return nil }
        if read < 64 { return "\(address): config file holds only \(read) bytes" }
        if !privileged {
            return "\(address): only the first \(read) of \(size) bytes of config space are readable without root; "
                + "the capabilities and CXL DVSECs need root (CAP_SYS_ADMIN): run cxlkit as root"
        }
        return "\(address): config read returned \(read) of \(size) bytes"
    }

    public func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        guard [1, 2, 4].contains(width), offset % width == 0 else { throw .badAccess("config write of \(width) bytes at 0x\(hex(offset, digits: 3))") }
        guard offset >= 0, offset + width <= configSize else { throw .outOfRange("config offset 0x\(hex(offset, digits: 3))") }
        try FileDescriptor.withOpened(directory + "/config", .writeOnly,
                                      onOpenFailure: { PCIError.io("\(address): cannot open config for writing: \($0)") }) { (fd) throws(PCIError) in
            var buf = [UInt8](repeating: 0, count: width)
            for i in 0..<width { buf[i] = UInt8(truncatingIfNeeded: value >> UInt32(8 * i)) }
            if case .failure(let e) = buf.withUnsafeBytes({ fd.writeFully($0, at: Int64(offset)) }) {
                throw .io("\(address): config write at 0x\(hex(offset, digits: 3)) failed: \(e)")
            }
        }
    }

    private func withMappedBAR<T>(_ bar: Int, offset: UInt64, width: Int, writable: Bool,
                                  _ body: (UnsafeMutableRawPointer) -> T) throws(PCIError) -> T {
        guard [1, 2, 4, 8].contains(width), offset % UInt64(width) == 0 else { throw .badAccess("BAR access of \(width) bytes at 0x\(hex(offset, digits: 1))") }
        guard let desc = bars.first(where: { $0.index == bar }) else { throw .noSuchBAR(bar) }
        guard desc.kind != .io else { throw .badAccess("BAR\(bar) is an I/O BAR") }
        guard offset < desc.size, desc.size - offset >= UInt64(width) else {
            throw .outOfRange("BAR\(bar) offset 0x\(hex(offset, digits: 1)) past its \(desc.size) bytes")
        }
        let path = directory + "/resource\(bar)"
        return try FileDescriptor.withOpened(path, writable ? .readWrite : .readOnly, options: FileDescriptor.OpenOptions(rawValue: O_SYNC),
                                             onOpenFailure: { PCIError.io("\(address): cannot open \(path): \($0)") }) { (descriptor) throws(PCIError) in
            let fd = descriptor.rawValue
            // sysfs sizes resourceN as the BAR; a shorter regular file (a copied or fake
            // tree) would SIGBUS when touched past its end, so refuse instead.
            var st = stat()
            if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, UInt64(max(st.st_size, 0)) < offset + UInt64(width) {
                throw .outOfRange("\(path) holds \(st.st_size) bytes, BAR\(bar) offset 0x\(hex(offset, digits: 1)) is past its end")
            }
            let page = UInt64(sysconf(Int32(_SC_PAGESIZE)))
            let base = offset & ~(page - 1)
            let prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
            guard let p = mmap(nil, Int(page), prot, MAP_SHARED, fd, off_t(base)), p != MAP_FAILED else {
                throw .io("\(address): cannot map \(path): \(systemErrorText(errno))")
            }
            defer { munmap(p, Int(page)) }
            return body(p + Int(offset - base))
        }
    }

    public func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        try withMappedBAR(bar, offset: offset, width: width, writable: false) { p in
            switch width {
            case 1: return UInt64(p.assumingMemoryBound(to: UInt8.self).pointee)
            case 2: return UInt64(p.assumingMemoryBound(to: UInt16.self).pointee)
            case 4: return UInt64(p.assumingMemoryBound(to: UInt32.self).pointee)
            default: return p.assumingMemoryBound(to: UInt64.self).pointee
            }
        }
    }

    public func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        try withMappedBAR(bar, offset: offset, width: width, writable: true) { p in
            switch width {
            case 1: p.assumingMemoryBound(to: UInt8.self).pointee = UInt8(truncatingIfNeeded: value)
            case 2: p.assumingMemoryBound(to: UInt16.self).pointee = UInt16(truncatingIfNeeded: value)
            case 4: p.assumingMemoryBound(to: UInt32.self).pointee = UInt32(truncatingIfNeeded: value)
            default: p.assumingMemoryBound(to: UInt64.self).pointee = value
            }
        }
    }

    public var resetMethods: [PCIResetMethod] {
        guard let b = readWholeFile(directory + "/reset_method") else { return [] }
        return String(decoding: b, as: UTF8.self).split(whereSeparator: { $0 == " " || $0 == "\n" }).map { PCIResetMethod(rawValue: String($0)) }
    }

    public func reset(_ method: PCIResetMethod) throws(PCIError) {
        guard resetMethods.contains(method) else { throw .resetUnsupported(method.rawValue) }
        try writeAttribute("reset_method", method.rawValue)
        try writeAttribute("reset", "1")
    }

    private func writeAttribute(_ name: String, _ value: String) throws(PCIError) {
        try FileDescriptor.withOpened(directory + "/" + name, .writeOnly,
                                      onOpenFailure: { PCIError.io("\(address): cannot open \(name): \($0)") }) { (fd) throws(PCIError) in
            // sysfs takes an attribute in one write(2); writeFully retries only EINTR and the tail of a short write.
            if case .failure(let e) = Array(value.utf8).withUnsafeBytes({ fd.writeFully($0) }) {
                throw .io("\(address): write to \(name) failed: \(e)")
            }
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        String(drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\n" || $0 == "\t" }.reversed())
    }
}

/// The flags column of sysfs `resource` (the kernel's `IORESOURCE_*`, include/linux/ioport.h): not register bits, the
/// kernel's own summary of each BAR.
struct SysfsResourceFlags: OptionSet {
    let rawValue: UInt64
    /// `IORESOURCE_IO`: an I/O space BAR.
    static let io = SysfsResourceFlags(rawValue: 0x100)
    /// `IORESOURCE_PREFETCH`.
    static let prefetch = SysfsResourceFlags(rawValue: 0x2000)
    /// `IORESOURCE_MEM_64`: a 64-bit memory BAR (it takes the next BAR slot too).
    static let memory64 = SysfsResourceFlags(rawValue: 0x10_0000)
}
