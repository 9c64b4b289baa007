// Hot-path state of the framer and send buffer is used by one thread at a time (the connection's, or the
// client's under its lock): dynamic exclusivity checks are turned off for it (@exclusivity(unchecked)).
import CSwiftCXLSystem
import VFIO
#if canImport(Glibc)
import Glibc
#endif

/// Owned file descriptors received with a message. Unclaimed ones are closed when this goes away.
public final class VFIOUserFDs: @unchecked Sendable {
    private var fds: [Int32?]
    public init(_ fds: [Int32]) { self.fds = fds }
    public var count: Int { fds.count }
    /// Takes ownership of fd `i` (nil when out of range or already taken).
    public func take(_ i: Int) -> Int32? {
        guard i >= 0, i < fds.count, let fd = fds[i] else { return nil }
        fds[i] = nil
        return fd
    }
    public func takeAll() -> [Int32] { (0..<fds.count).compactMap { take($0) } }
    deinit { for case let fd? in fds { close(fd) } }
}

/// A received message: header, payload and the fds that arrived with it.
public struct VFIOUserReceived: @unchecked Sendable {
    public var header: VFIOUserHeader
    public var payload: [UInt8]
    public var fds: VFIOUserFDs
}

/// A connected AF_UNIX stream socket speaking vfio-user framing (vfio-user spec, "Socket Message Format";
/// fds are sent with the first bytes of a message, as libvfio-user requires).
public final class VFIOUserSocket: @unchecked Sendable {
    public let fd: Int32
    private var closed = false
    /// SO_SNDTIMEO as set by `setSendTimeout` (0: none): it also bounds a whole message, not each sendmsg.
    private(set) var sendTimeoutMilliseconds = 0

    public init(owning fd: Int32) { self.fd = fd }
    deinit { if !closed { Glibc.close(fd) } }

    /// Connects to a UNIX socket path.
    public static func connect(path: String) throws(VFIOUserError) -> VFIOUserSocket {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw .system(errno: errno, "socket") }
        let s = VFIOUserSocket(owning: fd)
        var addr = try unixAddress(path)
        let r = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard r == 0 else { throw .system(errno: errno, "connect \(path)") }
        return s
    }

    static func unixAddress(_ path: String) throws(VFIOUserError) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let cap = MemoryLayout.size(ofValue: addr.sun_path)
        guard !bytes.isEmpty, bytes.count < cap else { throw .system(errno: VFIOErrno.EINVAL, "socket path length \(bytes.count)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
            raw[bytes.count] = 0
        }
        return addr
    }

    public func close() {
        guard !closed else { return }
        closed = true
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }

    /// Bounds how long one sendmsg may block on a peer that stops reading (SO_SNDTIMEO); a send that times out
    /// fails with EAGAIN and the connection is dropped.
    public func setSendTimeout(milliseconds: Int) {
        guard milliseconds > 0 else { return }
        sendTimeoutMilliseconds = milliseconds
        var tv = timeval(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Shuts the socket down without closing the fd (wakes a blocked reader).
    public func shutdownBoth() { shutdown(fd, Int32(SHUT_RDWR)) }

    /// Sends one message; `fds` ride on the first sendmsg together with the header.
    public func send(_ bytes: [UInt8], fds: [Int32] = []) throws(VFIOUserError) {
        guard fds.count <= VFIOUserLimits.fdsPerMessageHardLimit else { throw .system(errno: VFIOErrno.EINVAL, "too many fds") }
        var sent = 0
        var first = true
        let started = monotonicMilliseconds()
        while sent < bytes.count || first {
            let n: Int = bytes.withUnsafeBytes { raw in
                let p = raw.baseAddress!.advanced(by: sent)
                if first && !fds.isEmpty {
                    return fds.withUnsafeBufferPointer { csystem_sendmsg_fds(fd, p, raw.count - sent, $0.baseAddress, Int32(fds.count)) }
                }
                return csystem_send(fd, p, raw.count - sent)
            }
            if n < 0 {
                let e = errno
                if e == EPIPE || e == ECONNRESET { throw .disconnected }
                throw .system(errno: e, "sendmsg")
            }
            sent += n
            first = false
            try checkSendDeadline(sent: sent, total: bytes.count, started: started)
        }
    }

    /// Waits until readable. Returns false on timeout. `wakeFD`, when readable, aborts the wait (returns false).
    public func waitReadable(timeoutMilliseconds: Int32, wakeFD: Int32? = nil) throws(VFIOUserError) -> Bool {
        var p = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
        if let w = wakeFD { p.append(pollfd(fd: w, events: Int16(POLLIN), revents: 0)) }
        while true {
            let r = poll(&p, nfds_t(p.count), timeoutMilliseconds)
            if r < 0 { if errno == EINTR { continue }; throw .system(errno: errno, "poll") }
            if r == 0 { return false }
            if p.count > 1 && p[1].revents != 0 { return false }
            return true
        }
    }

    /// Reads exactly `count` bytes, collecting any fds. Returns nil on EOF before the first byte.
    private func readExactly(_ count: Int, fds: inout [Int32], maxFDs: Int, deadline: Int64?, truncated: inout Bool) throws(VFIOUserError) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: count)
        var got = 0
        var fdBuf = [Int32](repeating: -1, count: VFIOUserLimits.fdsPerMessageHardLimit)
        while got < count {
            var nfds: Int32 = 0
            var trunc: Int32 = 0
            let room = max(0, min(maxFDs - fds.count, fdBuf.count))
            // With a deadline: try first without waiting (the bytes are usually there already: the peer sent the
            // message in one sendmsg, or the caller polled), and poll only when nothing is queued. Saves a poll
            // per read on the request/reply path.
            let n = buf.withUnsafeMutableBytes { raw in
                fdBuf.withUnsafeMutableBufferPointer { fb in
                    csystem_recvmsg_fds_nb(fd, raw.baseAddress!.advanced(by: got), count - got, fb.baseAddress, Int32(room), &nfds, &trunc,
                                           deadline == nil ? 0 : 1)
                }
            }
            if n < 0 {
                let e = errno
                if let deadline, e == EAGAIN || e == EWOULDBLOCK {
                    let left = deadline - monotonicMilliseconds()
                    guard left > 0, try waitReadable(timeoutMilliseconds: Int32(clamping: left)) else { throw .timeout(command: 0) }
                    continue
                }
                if e == ECONNRESET { throw .disconnected }
                throw .system(errno: e, "recvmsg")
            }
            for i in 0..<Int(nfds) { fds.append(fdBuf[i]) }
            if trunc != 0 { truncated = true }
            if n == 0 {
                if got == 0 { return nil }
                throw .fatal("connection closed mid-message")
            }
            got += n
        }
        return buf
    }

    /// Receives one message. Header-level problems are `.fatal` (the stream cannot be trusted). Returns nil on
    /// orderly EOF between messages. `timeoutMilliseconds` bounds the whole message.
    public func receive(maxFDs: Int, maxMessageSize: Int = VFIOUserLimits.maxMessageSize,
                        timeoutMilliseconds: Int? = nil) throws(VFIOUserError) -> VFIOUserReceived? {
        let deadline = timeoutMilliseconds.map { monotonicMilliseconds() + Int64($0) }
        var fds: [Int32] = []
        var truncated = false
        do throws(VFIOUserError) {
            guard let hb = try readExactly(VFIOUserLimits.headerSize, fds: &fds, maxFDs: maxFDs, deadline: deadline, truncated: &truncated) else {
                return nil
            }
            let header = try VFIOUserHeader.decode(hb, maxMessageSize: maxMessageSize)
            let bodySize = Int(header.messageSize) - VFIOUserLimits.headerSize
            var body: [UInt8] = []
            if bodySize > 0 {
                guard let b = try readExactly(bodySize, fds: &fds, maxFDs: maxFDs, deadline: deadline, truncated: &truncated) else {
                    throw VFIOUserError.fatal("connection closed mid-message")
                }
                body = b
            }
            let box = VFIOUserFDs(fds)
            fds = []
            if truncated { throw VFIOUserError.malformed("more than \(maxFDs) fds attached (msg \(header.messageID))") }
            return VFIOUserReceived(header: header, payload: body, fds: box)
        } catch {
            for f in fds { Glibc.close(f) }
            throw error
        }
    }
}

/// Milliseconds on the monotonic clock.
public func monotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Milliseconds on the coarse monotonic clock (CLOCK_MONOTONIC_COARSE: read without a timer read, resolution one
/// kernel tick): for timeouts of whole messages on the per-message path.
public func coarseMonotonicMilliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

/// Nanoseconds on the monotonic clock.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A message framed in place in a `VFIOUserFramer`'s receive buffer. `payload` stays valid until the framer reads
/// again (or, while the framer is pinned, until it is unpinned).
public struct VFIOUserFramedMessage {
    public var header: VFIOUserHeader
    public var payload: UnsafeRawBufferPointer
    /// The fds that arrived with the first bytes of this message (owned by the receiver).
    public var fds: [Int32]
}

/// What one `VFIOUserFramer.fill` got.
public enum VFIOUserFill: Equatable {
    case bytes(Int)
    case endOfStream
    /// Nothing arrived within the socket's SO_RCVTIMEO, or a signal interrupted the wait.
    case wouldBlock
}

/// The receive side of a connection in the style of swift-nio's `ByteToMessageDecoder`: one reusable buffer, one
/// `recvmsg` that takes whatever is queued (a message's header and body, and the next messages when they are
/// already there), messages decoded in place.
///
/// Descriptors (SCM_RIGHTS) are accepted only with the first bytes of a message (vfio-user spec, "Socket Message
/// Format"; libvfio-user requires it): Linux ends a `recvmsg` after the segment that carried descriptors, so they
/// belong to the last message that starts among the bytes of that read. Descriptors that came only with the
/// continuation of a message that started earlier make the stream untrusted (`.fatal`), as do more descriptors
/// than allowed (MSG_CTRUNC) and a header that fails `VFIOUserHeader.decode`.
public final class VFIOUserFramer {
    @exclusivity(unchecked) private var storage: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var capacity: Int
    @exclusivity(unchecked) private var readIndex = 0
    @exclusivity(unchecked) private var writeIndex = 0
    /// While > 0, bytes already in the buffer never move (a handler holds a pointer into them).
    @exclusivity(unchecked) private var pins = 0
    private var retired: [UnsafeMutableRawPointer] = []
    /// Descriptors waiting for the message they belong to: the byte range of the read that brought them.
    @exclusivity(unchecked) private var fdChunks: [(start: Int, end: Int, fds: [Int32])] = []
    private let fdScratch: UnsafeMutablePointer<Int32>
    public static let initialCapacity = 64 << 10

    public init(capacity: Int = VFIOUserFramer.initialCapacity) {
        self.capacity = max(capacity, 256)
        storage = UnsafeMutableRawPointer.allocate(byteCount: self.capacity, alignment: 16)
        fdScratch = UnsafeMutablePointer<Int32>.allocate(capacity: VFIOUserLimits.fdsPerMessageHardLimit)
    }

    deinit {
        storage.deallocate()
        for r in retired { r.deallocate() }
        fdScratch.deallocate()
        for c in fdChunks { for fd in c.fds { Glibc.close(fd) } }
    }

    /// Bytes received and not yet framed (the beginning of a message).
    public var buffered: Int { writeIndex - readIndex }

    /// Keeps the bytes of messages already returned in place until `unpin()` (a handler that passes a pointer to
    /// its payload on while the connection goes on reading, e.g. a write whose handler does DMA by message).
    public func pin() { pins += 1 }
    public func unpin() {
        pins -= 1
        if pins == 0 && !retired.isEmpty { for r in retired { r.deallocate() }; retired.removeAll(keepingCapacity: true) }
    }

    /// Closes any descriptors not yet claimed by a message (the stream is being dropped).
    public func discardFDs() {
        for c in fdChunks { for fd in c.fds { Glibc.close(fd) } }
        fdChunks.removeAll()
    }

    /// The next complete message, or nil when more bytes are needed. `maxMessageSize` is checked as soon as the
    /// header is there, before any room is made for the body.
    public func next(maxMessageSize: Int = VFIOUserLimits.maxMessageSize) throws(VFIOUserError) -> VFIOUserFramedMessage? {
        var m = VFIOUserFramedMessage(header: VFIOUserHeader(messageID: 0, command: 0, messageSize: 0, flags: 0),
                                      payload: UnsafeRawBufferPointer(start: nil, count: 0), fds: [])
        return try next(into: &m, maxMessageSize: maxMessageSize) ? m : nil
    }

    /// `next(maxMessageSize:)` into `message` (true: a message was framed): a server's per-message loop overwrites
    /// one variable, where an optional per message is destroyed through the runtime's generic value witness.
    public func next(into message: inout VFIOUserFramedMessage, maxMessageSize: Int = VFIOUserLimits.maxMessageSize) throws(VFIOUserError) -> Bool {
        let avail = writeIndex - readIndex
        guard avail >= VFIOUserLimits.headerSize else { return false }
        let base = storage + readIndex
        let header: VFIOUserHeader
        do { header = try VFIOUserHeader.decode(UnsafeRawBufferPointer(start: base, count: avail), maxMessageSize: maxMessageSize) }
        catch { discardFDs(); throw error }
        let size = Int(header.messageSize)
        guard avail >= size else { return false }
        if !fdChunks.isEmpty {
            try claimFDs(size, into: &message)
        } else if !message.fds.isEmpty {
            message.fds = []
        }
        // (Without descriptors no array is made or released: the per-message path.)
        readIndex += size
        message.header = header
        message.payload = UnsafeRawBufferPointer(start: base + VFIOUserLimits.headerSize, count: size - VFIOUserLimits.headerSize)
        return true
    }

    /// The descriptors of the message of `size` bytes at `readIndex` into `message.fds`: those of the read that
    /// brought its first bytes when it is the last message starting in that read; an error when descriptors came
    /// with the continuation of a message.
    @inline(never)
    private func claimFDs(_ size: Int, into message: inout VFIOUserFramedMessage) throws(VFIOUserError) {
        var fds: [Int32] = []
        let s = readIndex, e = readIndex + size
        let c = fdChunks[0]
        if s >= c.start && s < c.end {
            if e >= c.end { fds = c.fds; fdChunks.removeFirst() }    // the last message starting in that read
        } else if s < c.start {
            if e >= c.end { discardFDs(); throw .fatal("fds arrived without the first bytes of a message") }
        } else {
            discardFDs(); throw .fatal("fds arrived without a message")
        }
        message.fds = fds
    }

    /// The header of the next message once its 16 bytes are buffered (valid or not: nil when it fails to decode).
    public func peekHeader(maxMessageSize: Int = VFIOUserLimits.maxMessageSize) -> VFIOUserHeader? {
        let avail = writeIndex - readIndex
        guard avail >= VFIOUserLimits.headerSize else { return nil }
        return try? VFIOUserHeader.decode(UnsafeRawBufferPointer(start: storage + readIndex, count: avail), maxMessageSize: maxMessageSize)
    }

    /// The header of the next message when the whole message is buffered (nothing consumed, no read), else nil.
    public func peekComplete(maxMessageSize: Int = VFIOUserLimits.maxMessageSize) -> VFIOUserHeader? {
        let avail = writeIndex - readIndex
        guard avail >= VFIOUserLimits.headerSize,
              let h = try? VFIOUserHeader.decode(UnsafeRawBufferPointer(start: storage + readIndex, count: avail), maxMessageSize: maxMessageSize),
              Int(h.messageSize) <= avail else { return nil }
        return h
    }

    /// Room for at least `bytes` more after what is buffered: compacts, or grows (a new buffer when pinned).
    @inline(__always)
    private func reserve(_ bytes: Int) {
        if pins == 0 && readIndex == writeIndex { readIndex = 0; writeIndex = 0 }
        if capacity - writeIndex >= bytes { return }
        makeRoom(bytes)
    }

    /// `reserve`'s slow part: compact or grow.
    @inline(never)
    private func makeRoom(_ bytes: Int) {
        let used = writeIndex - readIndex
        let shift = readIndex
        if pins == 0 && capacity - used >= bytes {
            (storage + 0).copyMemory(from: storage + readIndex, byteCount: used)
        } else {
            let newCapacity = max(capacity, used + bytes)
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            fresh.copyMemory(from: storage + readIndex, byteCount: used)
            if pins > 0 { retired.append(storage) } else { storage.deallocate() }
            storage = fresh
            capacity = newCapacity
        }
        readIndex = 0
        writeIndex = used
        for i in fdChunks.indices { fdChunks[i].start -= shift; fdChunks[i].end -= shift }
    }

    /// One `recvmsg` into the free part of the buffer (blocking as the socket is set up: SO_RCVTIMEO bounds it;
    /// `nonblocking` adds MSG_DONTWAIT). Makes room first for the rest of a message whose header is buffered.
    public func fill(fd: Int32, maxFDs: Int, nonblocking: Bool = false) throws(VFIOUserError) -> VFIOUserFill {
        var want = 4096
        let avail = writeIndex - readIndex
        if avail >= VFIOUserLimits.headerSize {
            let size = Int(UInt32(littleEndian: (storage + readIndex).loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
            want = max(want, size - avail)
        }
        reserve(want)
        var nfds: Int32 = 0
        var truncated: Int32 = 0
        let room = Int32(max(0, min(maxFDs, VFIOUserLimits.fdsPerMessageHardLimit)))
        let n = csystem_recvmsg_fds_once(fd, storage + writeIndex, capacity - writeIndex, fdScratch, room, &nfds, &truncated,
                                         nonblocking ? 1 : 0)
        if n < 0 {
            let e = errno
            if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return .wouldBlock }
            if e == ECONNRESET { throw .disconnected }
            throw .system(errno: e, "recvmsg")
        }
        if nfds > 0 || truncated != 0 {
            let fds = (0..<Int(nfds)).map { fdScratch[$0] }
            if truncated != 0 {
                for f in fds { Glibc.close(f) }
                discardFDs()
                throw .malformed("more than \(maxFDs) fds attached")
            }
            if n > 0 { fdChunks.append((start: writeIndex, end: writeIndex + n, fds: fds)) } else { for f in fds { Glibc.close(f) } }
        }
        if n == 0 { return .endOfStream }
        writeIndex += n
        return .bytes(n)
    }
}

extension VFIOUserSocket {
    /// Sends `count` bytes at `bytes` with one `sendmsg` (more only when the kernel takes part of it).
    public func send(_ bytes: UnsafeRawPointer, count: Int) throws(VFIOUserError) {
        // The common case, all of it taken by the first call, reads no clock.
        let n = csystem_send(fd, bytes, count)
        if n == count { return }
        try send(UnsafeRawBufferPointer(start: bytes, count: count), UnsafeRawBufferPointer(start: nil, count: 0),
                 UnsafeRawBufferPointer(start: nil, count: 0), first: n)
    }

    /// Sends `a`, then `b`, then `c` (any may be empty) as one message with one `sendmsg` (more only when the kernel
    /// takes part of it): a header built in a buffer goes out with data that stays where it is.
    public func send(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer) throws(VFIOUserError) {
        let n = csystem_send3(fd, a.baseAddress, a.count, b.baseAddress, b.count, c.baseAddress, c.count)
        if n == a.count + b.count + c.count { return }
        try send(a, b, c, first: n)
    }

    /// The rest of `a`, `b`, `c` after a first `sendmsg` that returned `first` (the rare path).
    @inline(never)
    private func send(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer, first n: Int) throws(VFIOUserError) {
        let total = a.count + b.count + c.count
        var failure: VFIOUserError?
        withUnsafeTemporaryAllocation(of: UnsafeRawPointer?.self, capacity: 3) { bases in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: 3) { lens in
                for (i, r) in [a, b, c].enumerated() { bases[i] = r.baseAddress; lens[i] = r.count }
                do throws(VFIOUserError) { try sendRest(ranges: bases.baseAddress!, lens.baseAddress!, count: 3, total: total, first: n) }
                catch { failure = error }
            }
        }
        if let failure { throw failure }
    }

    /// Sends the `count` ranges `bases[i]`, `lens[i]` in order with one `sendmsg` (more only when the kernel takes
    /// part of them; the ranges are advanced in place). At most 1024 ranges.
    func send(ranges bases: UnsafeMutablePointer<UnsafeRawPointer?>, _ lens: UnsafeMutablePointer<Int>, count: Int) throws(VFIOUserError) {
        var total = 0
        for i in 0..<count { total += lens[i] }
        let n = csystem_sendv(fd, bases, lens, Int32(count))
        if n == total { return }
        try sendRest(ranges: bases, lens, count: count, total: total, first: n)
    }

    /// The rest of a gathered send whose first `sendmsg` returned `first` (an error, or part of `total`): the message
    /// as a whole gets one send timeout, counted from here.
    @inline(never)
    private func sendRest(ranges bases: UnsafeMutablePointer<UnsafeRawPointer?>, _ lens: UnsafeMutablePointer<Int>, count: Int,
                          total: Int, first: Int) throws(VFIOUserError) {
        var n = first
        var sent = 0
        var at = 0
        let started = coarseMonotonicMilliseconds()
        while true {
            if n < 0 {
                let e = errno
                if e == EPIPE || e == ECONNRESET { throw .disconnected }
                throw .system(errno: e, "sendmsg")
            }
            sent += n
            if sent >= total { return }
            var k = n
            while at < count && k >= lens[at] { k -= lens[at]; lens[at] = 0; at += 1 }
            if at < count && k > 0 { bases[at] = bases[at].map { $0 + k }; lens[at] -= k }
            try checkSendDeadline(sent: sent, total: total, started: started, now: coarseMonotonicMilliseconds)
            n = csystem_sendv(fd, bases + at, lens + at, Int32(count - at))
        }
    }

    /// A message the kernel took only part of: SO_SNDTIMEO bounds each sendmsg, and a peer that stopped reading
    /// makes every call take part of the message and wait out the timeout again. The message as a whole gets one
    /// timeout, after which the send fails as a timed-out sendmsg does (EAGAIN).
    func checkSendDeadline(sent: Int, total: Int, started: Int64,
                           now: () -> Int64 = monotonicMilliseconds) throws(VFIOUserError) {
        guard sent < total, sendTimeoutMilliseconds > 0 else { return }
        if now() - started >= Int64(sendTimeoutMilliseconds) {
            throw .system(errno: EAGAIN, "sendmsg: peer not reading")
        }
    }

    /// SO_RCVTIMEO: a blocking receive returns after this long without data (0: never).
    public func setReceiveTimeout(milliseconds: Int) {
        _ = csystem_set_recv_timeout(fd, Int32(clamping: max(0, milliseconds)))
    }
}

/// Bytes collected to be sent together (a client's deferred replies to server requests): its own bytes (grown,
/// kept, reused after `removeAll()`) and ranges of other memory (a DMA_READ reply's data, sent from guest memory
/// where it lies), in order, sent gathered with one `sendmsg`.
final class VFIOUserByteAccumulator {
    @exclusivity(unchecked) private var pointer: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var capacity: Int
    /// Own bytes used.
    @exclusivity(unchecked) private var used = 0
    /// All bytes to send (own and external).
    @exclusivity(unchecked) private(set) var count = 0
    /// In order: external memory (`external` set) or own bytes at `offset`.
    @exclusivity(unchecked) private var ranges: [(external: UnsafeRawPointer?, offset: Int, length: Int)] = []
    private let bases = UnsafeMutablePointer<UnsafeRawPointer?>.allocate(capacity: 1024)
    private let lens = UnsafeMutablePointer<Int>.allocate(capacity: 1024)
    init(capacity: Int = 4096) {
        self.capacity = capacity
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }
    deinit {
        pointer.deallocate()
        bases.deallocate()
        lens.deallocate()
    }
    /// `bytes` more own bytes at the end, returned to be written (what was there is kept).
    func extend(by bytes: Int) -> UnsafeMutableRawPointer {
        if capacity - used < bytes {
            let newCapacity = max(used + bytes, capacity * 2)
            let fresh = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 16)
            fresh.copyMemory(from: pointer, byteCount: used)
            pointer.deallocate()
            pointer = fresh
            capacity = newCapacity
        }
        if let last = ranges.last, last.external == nil, last.offset + last.length == used {
            ranges[ranges.count - 1].length += bytes
        } else {
            ranges.append((external: nil, offset: used, length: bytes))
        }
        defer { used += bytes; count += bytes }
        return pointer + used
    }
    /// `length` bytes at `p` next, sent from there (`p` must stay valid until the send).
    func append(external p: UnsafeRawPointer, length: Int) {
        guard length > 0 else { return }
        ranges.append((external: p, offset: 0, length: length))
        count += length
    }
    /// Sends everything collected, then `extra` (may be empty), gathered: one `sendmsg` per 1024 ranges.
    func send(on socket: VFIOUserSocket, then extra: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) throws(VFIOUserError) {
        var n = 0
        for r in ranges {
            if n == 1024 { try socket.send(ranges: bases, lens, count: n); n = 0 }
            bases[n] = r.external ?? UnsafeRawPointer(pointer + r.offset)
            lens[n] = r.length
            n += 1
        }
        if extra.count > 0, let e = extra.baseAddress {
            if n == 1024 { try socket.send(ranges: bases, lens, count: n); n = 0 }
            bases[n] = e
            lens[n] = extra.count
            n += 1
        }
        if n > 0 { try socket.send(ranges: bases, lens, count: n) }
    }
    func removeAll() {
        used = 0
        count = 0
        ranges.removeAll(keepingCapacity: true)
    }
}

/// A reusable send buffer: replies are encoded into it and sent with one `sendmsg`.
public final class VFIOUserSendBuffer {
    @exclusivity(unchecked) public private(set) var pointer: UnsafeMutableRawPointer
    @exclusivity(unchecked) public private(set) var capacity: Int
    /// Set while a reply is being built in it (a nested handler then uses a buffer of its own).
    @exclusivity(unchecked) public var busy = false
    public init(capacity: Int = 64 << 10) {
        self.capacity = capacity
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }
    deinit { pointer.deallocate() }
    /// Makes room for `bytes` (contents are not kept).
    public func reserve(_ bytes: Int) {
        guard bytes > capacity else { return }
        pointer.deallocate()
        capacity = max(bytes, capacity * 2)
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)
    }
}
