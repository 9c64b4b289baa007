#if canImport(Glibc)
import Glibc
#endif
import SystemPackage

/// strerror(3) text for an errno: every message that reports a failed system call says it in words
/// ("No such file or directory"), never "errno 2".
public func systemErrorText(_ code: Int32) -> String { String(cString: strerror(code)) }

// File I/O goes through apple/swift-system's `FileDescriptor`: the library retries EINTR for every call
// (`retryOnInterrupt`, on by default) and reports failures as typed `Errno`s. What it leaves to callers, and
// what every file this project touches needs, is here once: O_CLOEXEC on every open (cxlkit runs next to
// QEMU and hands fds to children), a descriptor closed on every path, and short reads and writes completed.
// Sockets that need poll/accept/recvmsg (vfio-user, the control socket) stay with Glibc: swift-system does not
// wrap those calls.
extension FileDescriptor {
    /// open(2) with O_CLOEXEC added, then `body` with the descriptor, which is closed on every path.
    public static func withOpened<R, E: Error>(
        _ path: String, _ mode: AccessMode, options: OpenOptions = [], permissions: FilePermissions? = nil,
        onOpenFailure: (Errno) -> E, _ body: (FileDescriptor) throws(E) -> R
    ) throws(E) -> R {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), mode, options: options.union(.closeOnExec), permissions: permissions)
        } catch {
            throw onOpenFailure(error as? Errno ?? .ioError)
        }
        defer { try? fd.close() }
        return try body(fd)
    }

    /// pread(2) until `buffer` is full or the file ends: the number of bytes read (less than `buffer.count` only
    /// at end of file).
    public func read(fromAbsoluteOffset offset: Int64, filling buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        var done = 0
        while done < buffer.count {
            let n: Int
            do { n = try read(fromAbsoluteOffset: offset + Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...])) }
            catch { return .failure(error as? Errno ?? .ioError) }
            if n == 0 { break }
            done += n
        }
        return .success(done)
    }

    /// read(2) to end of file, at most `limit` bytes.
    public func readToEnd(limit: Int) -> Result<[UInt8], Errno> {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while out.count < limit {
            let n: Int
            do { n = try chunk.withUnsafeMutableBytes { try read(into: $0) } }
            catch { return .failure(error as? Errno ?? .ioError) }
            if n == 0 { break }
            out.append(contentsOf: chunk[0..<min(n, limit - out.count)])
        }
        return .success(out)
    }

    /// write(2), or pwrite(2) at `offset`, until every byte is written. A call that writes nothing (a device
    /// file at its end) is EIO rather than a retry forever.
    public func writeFully(_ bytes: UnsafeRawBufferPointer, at offset: Int64? = nil) -> Result<Void, Errno> {
        var done = 0
        while done < bytes.count {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[done...])
            let n: Int
            do { n = try offset.map { try write(toAbsoluteOffset: $0 + Int64(done), rest) } ?? write(rest) }
            catch { return .failure(error as? Errno ?? .ioError) }
            if n == 0 { return .failure(.ioError) }
            done += n
        }
        return .success(())
    }
}
