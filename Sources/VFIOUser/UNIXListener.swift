import CSwiftCXLSystem
#if canImport(Glibc)
import Glibc
#endif

/// Who may connect to a listening socket file: its mode and group. QEMU under libvirt runs as its own user
/// (e.g. `libvirt-qemu`), so a server started as root must be able to hand it the socket (e.g. mode 0660, group
/// `kvm`). nil keeps what bind(2) gives (0777 masked by the umask; owner and group of the process).
public struct VFIOUserSocketPermissions: Sendable, Equatable {
    public var mode: mode_t?
    public var group: gid_t?
    public init(mode: mode_t? = nil, group: gid_t? = nil) {
        self.mode = mode
        self.group = group
    }
}

/// A listening UNIX stream socket bound at a path, claimed safely next to other servers:
///
/// - A path where a server answers (a probe connect succeeds, or its backlog is full) is refused: two servers on
///   one path would leave one of them unreachable.
/// - A stale socket (nothing answers: ECONNREFUSED) is replaced; anything that is not a socket is an error.
/// - The socket is bound and listening under a temporary name, given its mode and group, then moved into place
///   without replacing anything (renameat2 RENAME_NOREPLACE), so the path appears only once it accepts
///   connections (launchers connect as soon as it exists) and a server that appeared meanwhile is never
///   replaced.
/// - `close()` unlinks the path only while it is still the inode this listener created: a later server that
///   took over a path after we stopped answering keeps its socket.
/// Public for `cxlkit serve --control` (issue 18), which claims its socket the same way.
public struct UNIXListener: Sendable {
    public let fd: Int32
    public let path: String
    private let device: UInt64
    private let inode: UInt64

    /// Binds and listens at `path`.
    public static func bind(path: String, permissions: VFIOUserSocketPermissions = .init(), backlog: Int32 = 8) throws(VFIOUserError) -> UNIXListener {
        _ = try VFIOUserSocket.unixAddress(path)
        for _ in 0..<4 {
            if let listener = try attempt(path: path, permissions: permissions, backlog: backlog) { return listener }
        }
        throw .system(errno: EEXIST, "bind \(path): the path keeps changing under us (another server starting?)")
    }

    /// One try: nil when the path changed between the probe and the rename, to be probed again.
    private static func attempt(path: String, permissions: VFIOUserSocketPermissions, backlog: Int32) throws(VFIOUserError) -> UNIXListener? {
        switch try probe(path) {
        case .absent: break
        case .live: throw .system(errno: EADDRINUSE, "\(path): a server is already listening there (stop it first, or pick another path)")
        case .notSocket: throw .system(errno: EEXIST, "\(path): exists and is not a socket")
        case .stale:
            // Only a socket nobody answers on is removed; a socket that went live meanwhile is refused next try.
            if unlink(path) != 0 && errno != ENOENT { throw .system(errno: errno, "remove stale socket \(path)") }
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(errno: errno, "socket") }
        // The temporary name must fit sun_path too; without room for it, bind in place (the path was free above).
        let tmp = path + ".\(getpid()).tmp"
        let inPlace = (try? VFIOUserSocket.unixAddress(tmp)) == nil
        let bindPath = inPlace ? path : tmp
        if !inPlace { unlink(tmp) }   // ours from a crashed run with the same pid: a path only this process uses
        var bound = false
        do throws(VFIOUserError) {
            var addr = try VFIOUserSocket.unixAddress(bindPath)
            let r = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            guard r == 0 else {
                if inPlace && errno == EADDRINUSE { Glibc.close(fd); return nil }
                throw VFIOUserError.system(errno: errno, "bind \(bindPath)")
            }
            bound = true
            if let mode = permissions.mode, chmod(bindPath, mode) != 0 { throw VFIOUserError.system(errno: errno, "chmod \(bindPath)") }
            if let group = permissions.group, lchown(bindPath, uid_t.max, group) != 0 {   // (uid_t)-1: owner unchanged
                throw VFIOUserError.system(errno: errno, "chown :\(group) \(bindPath)")
            }
            guard listen(fd, backlog) == 0 else { throw VFIOUserError.system(errno: errno, "listen \(bindPath)") }
            var st = stat()
            guard lstat(bindPath, &st) == 0 else { throw VFIOUserError.system(errno: errno, "stat \(bindPath)") }
            if !inPlace {
                guard csystem_rename_noreplace(tmp, path) == 0 else {
                    let e = errno
                    unlink(tmp); Glibc.close(fd)
                    if e == EEXIST { return nil }   // someone created the path meanwhile: probe again
                    throw VFIOUserError.system(errno: e, "rename \(tmp) to \(path)")
                }
            }
            return UNIXListener(fd: fd, path: path, device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
        } catch {
            if bound { unlink(bindPath) }   // bind succeeded, so the file at bindPath is the one we created
            Glibc.close(fd)
            throw error
        }
    }

    /// Closes the listening socket and removes the path if it still names our socket.
    public func close() {
        Glibc.close(fd)
        var st = stat()
        if lstat(path, &st) == 0, UInt64(st.st_dev) == device, UInt64(st.st_ino) == inode { unlink(path) }
    }

    /// What is at a path a server wants to listen on.
    enum PathState: Equatable { case absent, live, stale, notSocket }

    /// Looks at `path` and, when it is a socket, knocks: a server that accepts (or whose backlog is full,
    /// EAGAIN) is live; ECONNREFUSED means nobody listens.
    static func probe(_ path: String) throws(VFIOUserError) -> PathState {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return .absent }
            throw .system(errno: errno, "stat \(path)")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else { return .notSocket }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw .system(errno: errno, "socket") }
        defer { Glibc.close(fd) }
        var addr = try VFIOUserSocket.unixAddress(path)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if r == 0 { return .live }
        switch errno {
        case EAGAIN, EINPROGRESS: return .live
        case ECONNREFUSED: return .stale
        case ENOENT: return .absent
        default: throw .system(errno: errno, "probe \(path)")
        }
    }
}
