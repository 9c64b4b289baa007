import Foundation
import VFIO

/// A regular file, unlinked at once, that its holder can still shrink: guest memory as QEMU's is to a vfio-user
/// server (QEMU does not seal guest RAM), unlike the size-sealed memfds `VFIOSharedMemory(name:size:)` makes. Tests
/// map it, hand its fd to a peer, then `shrink(to:)` it to take pages away from every mapping.
package final class ShrinkableFile {
    package let fd: Int32

    package init(size: Int) throws {
        let path = NSTemporaryDirectory() + "/swift-cxl-shrinkable-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw VFIOError.system(errno: errno, "open \(path)") }
        unlink(path)
        guard ftruncate(fd, off_t(size)) == 0 else { let e = errno; close(fd); throw VFIOError.system(errno: e, "ftruncate") }
    }

    /// A shared mapping of the first `size` bytes (the fd stays this object's).
    package func map(size: Int) throws -> VFIOSharedMemory {
        try VFIOSharedMemory(mapping: fd, offset: 0, size: size, writable: true, takeOwnership: false)
    }

    /// Truncates the file to `size` bytes: pages past it leave every mapping, and the next touch of them is a SIGBUS.
    package func shrink(to size: Int) -> Bool { ftruncate(fd, off_t(size)) == 0 }

    deinit { close(fd) }
}
