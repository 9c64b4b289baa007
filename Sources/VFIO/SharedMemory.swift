import CSwiftCXLSystem
#if canImport(Glibc)
import Glibc
#endif

/// A memfd-backed, mmap'ed shared memory object: the backing of mmap-able regions (BARs) and of DMA memory that is
/// shared through a file descriptor. Thread-safe for concurrent byte access only in the sense of the hardware it
/// models (no locking: it is memory).
public final class VFIOSharedMemory: @unchecked Sendable {
    public let fd: Int32
    public let size: Int
    public let base: UnsafeMutableRawPointer
    /// Whether the file behind the mapping is sealed against shrinking (ours always are): only then may its pages be
    /// handed to a system call or touched unguarded although a peer holds the fd.
    public let sizeIsSealed: Bool
    private let ownsFD: Bool

    /// Creates a memfd of `size` bytes, its size sealed (a peer given the fd cannot shrink it under our mapping), and
    /// maps it read/write, shared.
    public init(name: String, size: Int) throws(VFIOError) {
        guard size > 0 else { throw .invalidArgument("shared memory size 0") }
        let fd = csystem_memfd_create_fixed(name, UInt64(size))
        guard fd >= 0 else { throw .system(errno: errno, "memfd_create") }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else { let e = errno; close(fd); throw .system(errno: e, "mmap") }
        self.fd = fd; self.size = size; self.base = p; self.sizeIsSealed = true; self.ownsFD = true
    }

    /// Maps `size` bytes of `fd` at `offset` (the fd stays owned by the caller unless `takeOwnership`).
    public init(mapping fd: Int32, offset: UInt64, size: Int, writable: Bool, takeOwnership: Bool) throws(VFIOError) {
        guard size > 0 else { throw .invalidArgument("mapping size 0") }
        let prot = PROT_READ | (writable ? PROT_WRITE : 0)
        let p = mmap(nil, size, prot, MAP_SHARED, fd, off_t(bitPattern: UInt(offset)))
        guard let p, p != MAP_FAILED else { throw .system(errno: errno, "mmap") }
        self.fd = fd; self.size = size; self.base = p; self.sizeIsSealed = Self.sizeIsSealed(fd: fd); self.ownsFD = takeOwnership
    }

    /// Adopts an existing shared mapping of `size` bytes at `base` (e.g. a VFIO region mapped through the kernel
    /// backend's system), unmapped on deinit; `fd` is the caller's.
    public init(adopting base: UnsafeMutableRawPointer, size: Int, fd: Int32) {
        self.fd = fd; self.size = size; self.base = base; self.sizeIsSealed = false; self.ownsFD = false
    }

    /// Whether `fd`'s size is sealed against shrinking (F_SEAL_SHRINK), as ours are: only then can its pages be mapped
    /// and touched without a peer holding the same fd being able to make the touch SIGBUS.
    public static func sizeIsSealed(fd: Int32) -> Bool { csystem_fd_size_is_sealed(fd) != 0 }

    /// Copies `count` bytes at `offset` of the mapping to `destination`. A mapping of a file a peer can still shrink (a
    /// vfio-user client's unsealed guest memory) loses its pages when the peer truncates the file; the copy then fails
    /// with EFAULT instead of killing the process with SIGBUS (`csystem_guarded_copy`). A range outside the mapping
    /// is `invalidArgument`.
    public func copy(at offset: Int, to destination: UnsafeMutableRawPointer, count: Int) throws(VFIOError) {
        try checkRange(offset, count)
        guard csystem_guarded_copy(destination, base + offset, count) == 0 else { throw gone(offset, count) }
    }

    /// Copies `count` bytes from `source` to `offset` of the mapping, as `copy(at:to:count:)` does the other way.
    public func copy(at offset: Int, from source: UnsafeRawPointer, count: Int) throws(VFIOError) {
        try checkRange(offset, count)
        guard csystem_guarded_copy(base + offset, source, count) == 0 else { throw gone(offset, count) }
    }

    private func checkRange(_ offset: Int, _ count: Int) throws(VFIOError) {
        guard offset >= 0, count >= 0, offset <= size, count <= size - offset else {
            throw .invalidArgument("0x\(String(offset, radix: 16))+\(count) outside a \(size)-byte mapping")
        }
    }

    private func gone(_ offset: Int, _ count: Int) -> VFIOError {
        let e = errno
        guard e == EFAULT else { return .system(errno: e, "guarded copy") }
        return .system(errno: e, "shared memory 0x\(String(offset, radix: 16))+\(count) is gone: the file behind the mapping shrank")
    }

    deinit {
        munmap(base, size)
        if ownsFD { close(fd) }
    }

    /// `count` bytes at `offset`; nil when the range is outside the mapping or its pages are gone (a guarded copy: a
    /// peer's file that shrank, a kernel VFIO BAR mapping that faults while Memory Space is disabled).
    public func read(offset: Int, count: Int) -> [UInt8]? {
        guard offset >= 0, count >= 0, offset <= size, size - offset >= count else { return nil }
        guard count > 0 else { return [] }
        return try? [UInt8](unsafeUninitializedCapacity: count) { (buffer, initialized) throws(VFIOError) in
            try copy(at: offset, to: buffer.baseAddress!, count: count)
            initialized = count
        }
    }

    /// Writes `data` at `offset`; false when the range is outside the mapping or its pages are gone (as `read`).
    @discardableResult
    public func write(offset: Int, data: [UInt8]) -> Bool {
        guard offset >= 0, offset <= size, size - offset >= data.count else { return false }
        guard !data.isEmpty else { return true }
        return data.withUnsafeBytes { d in (try? copy(at: offset, from: d.baseAddress!, count: d.count)) != nil }
    }
}
