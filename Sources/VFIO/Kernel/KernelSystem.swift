import PCI
import CSwiftCXLSystem
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// An errno from a system call (Linux numbering).
public struct VFIOSystemErrno: Error, Equatable, Sendable {
    public let code: Int32
    public init(_ code: Int32) { self.code = code }
    public var text: String { systemErrorText(code) }
}

/// Every system call the kernel VFIO backend makes, behind one protocol, so tests can run the backend against a
/// fake kernel that checks each ioctl's argument bytes and fails any call with any errno. `LinuxVFIOSystem` is
/// the real one.
///
/// ioctl arguments are byte buffers laid out as the kernel's structs (little endian, see `VFIOKernelUAPI`); the
/// kernel writes its answer back into the same buffer. Calls return the ioctl's result (>= 0) or a negative errno.
public protocol VFIOKernelSystem: AnyObject, Sendable {
    /// open(2) with O_RDWR | O_CLOEXEC: an fd, or the errno.
    func open(_ path: String) -> Result<Int32, VFIOSystemErrno>
    func close(_ fd: Int32)
    /// ioctl(fd, request, buffer): the kernel reads and may write the buffer.
    func ioctl(_ fd: Int32, _ request: UInt, _ buffer: inout [UInt8]) -> Int32
    /// ioctl(fd, request, value) for requests that take an integer (or nothing).
    func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int32
    func pread(_ fd: Int32, count: Int, offset: UInt64) -> Result<[UInt8], VFIOSystemErrno>
    func pwrite(_ fd: Int32, _ data: [UInt8], offset: UInt64) -> Result<Int, VFIOSystemErrno>
    /// mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset).
    func mmap(_ fd: Int32, size: Int, offset: UInt64) -> Result<UnsafeMutableRawPointer, VFIOSystemErrno>
    func munmap(_ address: UnsafeMutableRawPointer, size: Int)
    /// The target of a symbolic link (sysfs `iommu_group`, `driver`), or nil.
    func readLink(_ path: String) -> String?
    /// The entries of a directory (sysfs `vfio-dev`), or nil when it does not exist.
    func listDirectory(_ path: String) -> [String]?
    func exists(_ path: String) -> Bool
}

/// The real system calls.
public final class LinuxVFIOSystem: VFIOKernelSystem, @unchecked Sendable {
    public init() {}
    public func open(_ path: String) -> Result<Int32, VFIOSystemErrno> {
        do { return .success(try FileDescriptor.open(FilePath(path), .readWrite, options: .closeOnExec).rawValue) }
        catch { return .failure(VFIOSystemErrno((error as? Errno ?? .ioError).rawValue)) }
    }
    public func close(_ fd: Int32) { _ = Glibc.close(fd) }
    public func ioctl(_ fd: Int32, _ request: UInt, _ buffer: inout [UInt8]) -> Int32 {
        buffer.withUnsafeMutableBytes { csystem_ioctl_ptr(fd, request, $0.baseAddress) }
    }
    public func ioctl(_ fd: Int32, _ request: UInt, value: UInt) -> Int32 { csystem_ioctl_val(fd, request, value) }
    public func pread(_ fd: Int32, count: Int, offset: UInt64) -> Result<[UInt8], VFIOSystemErrno> {
        guard count > 0 else { return .success([]) }
        var out = [UInt8](repeating: 0, count: count)
        // A region ends where the kernel says; a short read inside it (end of "file") is an I/O error.
        switch out.withUnsafeMutableBytes({ FileDescriptor(rawValue: fd).read(fromAbsoluteOffset: Int64(bitPattern: offset), filling: $0) }) {
        case .success(let n): return n == count ? .success(out) : .failure(VFIOSystemErrno(EIO))
        case .failure(let e): return .failure(VFIOSystemErrno(e.rawValue))
        }
    }
    public func pwrite(_ fd: Int32, _ data: [UInt8], offset: UInt64) -> Result<Int, VFIOSystemErrno> {
        switch data.withUnsafeBytes({ FileDescriptor(rawValue: fd).writeFully($0, at: Int64(bitPattern: offset)) }) {
        case .success: return .success(data.count)
        case .failure(let e): return .failure(VFIOSystemErrno(e.rawValue))
        }
    }
    public func mmap(_ fd: Int32, size: Int, offset: UInt64) -> Result<UnsafeMutableRawPointer, VFIOSystemErrno> {
        let p = Glibc.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(bitPattern: UInt(offset)))
        guard let p, p != MAP_FAILED else { return .failure(VFIOSystemErrno(errno)) }
        return .success(p)
    }
    public func munmap(_ address: UnsafeMutableRawPointer, size: Int) { _ = Glibc.munmap(address, size) }
    public func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    public func listDirectory(_ path: String) -> [String]? {
        guard let d = opendir(path) else { return nil }
        defer { closedir(d) }
        var out: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { out.append(name) }
        }
        return out.sorted()
    }
    public func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}
