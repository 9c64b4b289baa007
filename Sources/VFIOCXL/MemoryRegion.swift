#if canImport(Glibc)
import PCI
import Glibc
#endif
import CXL
import Foundation
import Synchronization
import VFIO

/// The device-memory region (subtype 1): DPA 0 ... size, read and written through
/// the backing (`CXLDeviceMemory.readMemory`/`writeMemory`), mmappable through its fd
/// at `memoryFileOffset` for zero-copy access.
///
/// The region is gated from the start of a reset until decoder 0 is committed again
/// (as the posted series' `region_active`): accesses then fail with EIO and the
/// region info stops offering mmap. vfio-user cannot revoke a mapping already handed
/// out with SCM_RIGHTS; a client must re-query the region info after a reset (our
/// client does) — the kernel's PTE zap has no equivalent over a socket.
final class MemoryRegionHandler: VFIORegionAccessHandler, @unchecked Sendable {
    let memory: any CXLDeviceMemory
    /// Read on every access: an atomic, not a lock.
    private let active = Atomic<Bool>(true)
    /// `memoryFD` mapped once when it is a regular file whose size is sealed against shrinking (the emulated device's
    /// memfd): the server's REGION_READ and REGION_WRITE then copy without a system call. nil for other backings: a
    /// BAR of a kernel device (pread/pwrite keep its access semantics), or a file someone could truncate, which would
    /// turn a copy from the mapping into SIGBUS where pread gives a short read and the client EIO.
    private let mapping: VFIOSharedMemory?

    init(memory: any CXLDeviceMemory) {
        self.memory = memory
        var st = stat()
        let size = memory.memorySize, at = memory.memoryFileOffset
        let (end, o) = at.addingReportingOverflow(size)
        // The seal first: the size fstat then reports can no longer shrink (checked the other way round, a holder of
        // an unsealed fd could truncate it between the two and seal it, and the mapping would reach past its end).
        if size > 0, size <= UInt64(Int.max), !o, VFIOSharedMemory.sizeIsSealed(fd: memory.memoryFD),
           fstat(memory.memoryFD, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG,
           end <= UInt64(max(0, st.st_size)), at % UInt64(sysconf(Int32(_SC_PAGESIZE))) == 0 {
            mapping = try? VFIOSharedMemory(mapping: memory.memoryFD, offset: at, size: Int(size), writable: true, takeOwnership: false)
        } else {
            mapping = nil
        }
    }

    var isActive: Bool { active.load(ordering: .acquiring) }
    func setActive(_ on: Bool) { active.store(on, ordering: .releasing) }

    func info() -> VFIORegionInfo {
        var info = VFIORegionInfo(index: VFIOCXLUAPI.memoryRegionIndex, flags: [.read, .write, .caps], size: memory.memorySize,
                                  capabilities: [VFIORegionTypeCapability(type: VFIOCXLUAPI.regionType, subtype: VFIOCXLUAPI.memorySubtype).capability])
        if isActive {
            info.flags.insert(.mmap)
            info.mapping = VFIORegionMapping(fd: memory.memoryFD, fileOffset: memory.memoryFileOffset)
        }
        return info
    }

    private func check(_ offset: UInt64, _ count: Int) throws(VFIOError) {
        guard isActive else { throw .system(errno: VFIOErrno.EIO, "device memory is gated: a reset is in progress or decoder 0 is not committed") }
        let (end, o) = offset.addingReportingOverflow(UInt64(count))
        guard !o, end <= memory.memorySize else { throw .invalidArgument("device memory access 0x\(String(offset, radix: 16))+\(count) past 0x\(String(memory.memorySize, radix: 16))") }
    }

    /// Where DPA `offset` is in `memoryFD` (DPA 0 is at `memoryFileOffset`).
    private func fileOffset(_ offset: UInt64) throws(VFIOError) -> off_t {
        let (at, o) = memory.memoryFileOffset.addingReportingOverflow(offset)
        guard !o, at <= UInt64(Int64.max) else { throw .invalidArgument("device memory offset 0x\(String(offset, radix: 16))") }
        return off_t(at)
    }

    func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        try check(offset, count)
        do { return try memory.readMemory(at: offset, count: count) } catch { throw .system(errno: VFIOErrno.EIO, "device memory read: \(error)") }
    }

    /// Straight into the caller's buffer (vfio-user's server: its send buffer), no array: a copy from the mapping,
    /// else one pread.
    func read(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        try check(offset, buffer.count)
        guard buffer.count > 0, let dst = buffer.baseAddress else { return }
        if let mapping { dst.copyMemory(from: mapping.base + Int(offset), byteCount: buffer.count); return }
        let n = pread(memory.memoryFD, dst, buffer.count, try fileOffset(offset))
        guard n == buffer.count else { throw .system(errno: VFIOErrno.EIO, "device memory read: \(n < 0 ? systemErrorText(errno) : "short")") }
    }

    /// Straight from the caller's buffer (vfio-user's server: its receive buffer), no array: a copy into the
    /// mapping, else one pwrite.
    func write(offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        try check(offset, buffer.count)
        guard buffer.count > 0, let src = buffer.baseAddress else { return }
        if let mapping { (mapping.base + Int(offset)).copyMemory(from: src, byteCount: buffer.count); return }
        let n = pwrite(memory.memoryFD, src, buffer.count, try fileOffset(offset))
        guard n == buffer.count else { throw .system(errno: VFIOErrno.EIO, "device memory write: \(n < 0 ? systemErrorText(errno) : "short")") }
    }

    func write(offset: UInt64, data: [UInt8]) throws(VFIOError) {
        try check(offset, data.count)
        do { try memory.writeMemory(at: offset, data) } catch { throw .system(errno: VFIOErrno.EIO, "device memory write: \(error)") }
    }
}
