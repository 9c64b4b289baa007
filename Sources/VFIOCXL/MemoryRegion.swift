#if canImport(Glibc)
import PCI
import Glibc
#endif
import CXL
import Foundation
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
    private let lock = NSLock()
    private var active = true

    init(memory: any CXLDeviceMemory) { self.memory = memory }

    var isActive: Bool { lock.lock(); defer { lock.unlock() }; return active }
    func setActive(_ on: Bool) { lock.lock(); active = on; lock.unlock() }

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

    func read(offset: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        try check(offset, count)
        do { return try memory.readMemory(at: offset, count: count) } catch { throw .system(errno: VFIOErrno.EIO, "device memory read: \(error)") }
    }

    /// Straight into the caller's buffer (vfio-user's server: its send buffer), no array.
    func read(offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        try check(offset, buffer.count)
        guard buffer.count > 0 else { return }
        let n = pread(memory.memoryFD, buffer.baseAddress, buffer.count, off_t(offset))
        guard n == buffer.count else { throw .system(errno: VFIOErrno.EIO, "device memory read: \(n < 0 ? systemErrorText(errno) : "short")") }
    }

    /// Straight from the caller's buffer (vfio-user's server: its receive buffer), no array.
    func write(offset: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        try check(offset, buffer.count)
        guard buffer.count > 0 else { return }
        let n = pwrite(memory.memoryFD, buffer.baseAddress, buffer.count, off_t(offset))
        guard n == buffer.count else { throw .system(errno: VFIOErrno.EIO, "device memory write: \(n < 0 ? systemErrorText(errno) : "short")") }
    }

    func write(offset: UInt64, data: [UInt8]) throws(VFIOError) {
        try check(offset, data.count)
        do { try memory.writeMemory(at: offset, data) } catch { throw .system(errno: VFIOErrno.EIO, "device memory write: \(error)") }
    }
}
