import PCI
import Foundation
import SystemPackage
#if canImport(Glibc)
import Glibc
#endif

/// Writes a file a command produces (a state file, `reset --state-file`) without ever replacing something the
/// command did not mean to replace. cxlkit runs as root next to production VMs, where `-o /dev/stdout` or a
/// symlink into /etc must not turn into a fresh regular file:
///
/// - nothing at the path: a new file is written beside it and moved into place without replacing anything
///   (`link(2)`, which fails rather than replace), so the path never holds a half-written file;
/// - a regular file: replaced atomically (temporary file in the same directory, fsync, rename, directory fsync),
///   keeping its permission bits and, as root, its owner and group;
/// - a symlink: followed, and its target handled by these rules (a dangling symlink is refused);
/// - a FIFO or a character device (`/dev/stdout`, a terminal, a pipe): written through, never renamed over;
/// - a directory, socket or block device: refused.
///
/// On any failure the previous file at the path, if any, is untouched.
public enum OutputFile {
    /// How the bytes reached the path.
    public enum Disposition: Sendable, Equatable {
        case created, replaced, wroteThrough
    }

    /// Writes `data` to `path` under the rules above.
    @discardableResult
    public static func write(_ data: Data, to path: String) throws(CXLStateError) -> Disposition {
        guard !path.isEmpty else { throw .fileIO("empty output path") }
        var st = stat()
        if lstat(path, &st) != 0 {
            guard errno == ENOENT else { throw .fileIO("\(path): \(systemErrorText(errno))") }
            try writeViaRename(data, to: path, replacing: nil)
            return .created
        }
        var target = path
        if (st.st_mode & S_IFMT) == S_IFLNK {
            // Follow the whole chain to the file it names; the target is then judged like any path.
            guard stat(path, &st) == 0 else {
                throw .fileIO("\(path): symlink to a missing target (\(systemErrorText(errno))); refusing to write through it")
            }
            guard let resolved = realpath(path, nil) else {
                // A link into /proc/self/fd to a pipe has no path to resolve: only writing through is possible.
                if isWriteThrough(st.st_mode) { return try writeThrough(data, to: path) }
                throw .fileIO("\(path): cannot resolve symlink: \(systemErrorText(errno))")
            }
            target = String(cString: resolved)
            free(resolved)
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            try writeViaRename(data, to: target, replacing: st)
            return .replaced
        case _ where isWriteThrough(st.st_mode):
            return try writeThrough(data, to: target)
        case S_IFDIR:
            throw .fileIO("\(path): is a directory")
        default:
            throw .fileIO("\(path): not a regular file, FIFO or character device; refusing to replace it")
        }
    }

    private static func isWriteThrough(_ mode: mode_t) -> Bool {
        (mode & S_IFMT) == S_IFIFO || (mode & S_IFMT) == S_IFCHR
    }

    private static func writeThrough(_ data: Data, to path: String) throws(CXLStateError) -> Disposition {
        try FileDescriptor.withOpened(path, .writeOnly, options: FileDescriptor.OpenOptions(rawValue: O_NOCTTY),
                                      onOpenFailure: { CXLStateError.fileIO("\(path): \($0)") }) { (fd) throws(CXLStateError) in
            try writeAll(fd, data, name: path)
        }
        return .wroteThrough
    }

    /// A new file beside `path`, then renamed into place: over `existing` (a regular file, whose mode and owner
    /// the new one takes), or, when nothing was there, without replacing anything that appeared meanwhile.
    private static func writeViaRename(_ data: Data, to path: String, replacing existing: stat?) throws(CXLStateError) {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let tmp = (dir.isEmpty ? "." : dir) + "/." + url.lastPathComponent + ".tmp-\(getpid())"
        let mode: mode_t = existing.map { $0.st_mode & 0o7777 } ?? 0o644
        var placed = false
        defer { if !placed { unlink(tmp) } }
        try FileDescriptor.withOpened(tmp, .writeOnly, options: [.create, .exclusiveCreate, .noFollow],
                                      permissions: FilePermissions(rawValue: mode),
                                      onOpenFailure: { CXLStateError.fileIO("cannot create \(tmp): \($0)") }) { (fd) throws(CXLStateError) in
            if let existing {
                _ = fchmod(fd.rawValue, existing.st_mode & 0o7777)   // open's mode is masked by the umask
                if geteuid() == 0 { _ = fchown(fd.rawValue, existing.st_uid, existing.st_gid) }
            }
            try writeAll(fd, data, name: tmp)
            guard fsync(fd.rawValue) == 0 else { throw .fileIO("fsync \(tmp): \(systemErrorText(errno))") }
        }
        if existing != nil {
            guard rename(tmp, path) == 0 else { throw .fileIO("rename to \(path): \(systemErrorText(errno))") }
        } else {
            // link(2) never replaces: EEXIST if something appeared at the path meanwhile. File systems without
            // hard links (EPERM, ENOTSUP) get a plain rename after checking the path is still free.
            if link(tmp, path) == 0 {
                unlink(tmp)
            } else {
                let e = errno
                var st = stat()
                guard e != EEXIST, lstat(path, &st) != 0, rename(tmp, path) == 0 else {
                    throw .fileIO(e == EEXIST ? "\(path): appeared while writing; not replaced (run again)" : "rename to \(path): \(systemErrorText(errno))")
                }
            }
        }
        placed = true
        // The rename is durable once the directory is: fsync it, best effort (some file systems refuse).
        try? FileDescriptor.withOpened(dir.isEmpty ? "." : dir, .readOnly, options: .directory,
                                       onOpenFailure: { $0 }) { (dfd) throws(Errno) in _ = fsync(dfd.rawValue) }
    }

    private static func writeAll(_ fd: FileDescriptor, _ data: Data, name: String) throws(CXLStateError) {
        if case .failure(let e) = data.withUnsafeBytes({ fd.writeFully($0) }) { throw .fileIO("cannot write \(name): \(e)") }
    }
}
