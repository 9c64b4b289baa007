import Foundation
import Testing
import TestSupport
import VFIO
@testable import VFIOUser
#if canImport(Glibc)
import Glibc
#endif

private func frame(_ id: UInt16, _ cmd: UInt16, _ payload: [UInt8], flags: UInt32 = 0, size: UInt32? = nil) -> [UInt8] {
    VFIOUserHeader(messageID: id, command: cmd, messageSize: size ?? UInt32(16 + payload.count), flags: flags).encode() + payload
}
private let versionPayload = VFIOUserVersion(major: 0, minor: 0, capabilities: VFIOUserCapabilities(maxMsgFDs: 16)).encode()

/// Raw conversations with the server: malformed input gets an error reply when it can be skipped, and the
/// connection is closed when the stream cannot be trusted.
@Suite(.serialized) struct ServerRobustnessTests {
    func raw(_ h: ServerHarness) throws -> VFIOUserSocket { try VFIOUserSocket.connect(path: h.path) }
    func next(_ s: VFIOUserSocket) throws -> VFIOUserReceived? {
        guard try s.waitReadable(timeoutMilliseconds: 2000) else { return nil }
        return try s.receive(maxFDs: 8, timeoutMilliseconds: 2000)
    }

    /// True when the server closed the connection (EOF or reset).
    func isClosed(_ s: VFIOUserSocket) -> Bool {
        do { return try s.receive(maxFDs: 8, timeoutMilliseconds: 2000) == nil } catch { return error == .disconnected }
    }

    @Test func firstMessageMustBeVersion() throws {
        let h = try ServerHarness(); defer { _ = h.stop() }
        let s = try raw(h)
        try s.send(frame(1, 4, le32(16) + [UInt8](repeating: 0, count: 12)))
        let r = try #require(try next(s))
        #expect(r.header.isReply && r.header.isError && r.header.errorNumber == 22 && r.header.messageID == 1)
        try s.send(frame(2, 1, versionPayload))
        let v = try #require(try next(s))
        #expect(v.header.isReply && !v.header.isError)
        // A second VERSION is refused.
        try s.send(frame(3, 1, versionPayload))
        #expect(try next(s)?.header.errorNumber == 22)
    }

    @Test func skippableMalformedMessagesGetEINVAL() throws {
        let h = try ServerHarness(); defer { _ = h.stop() }
        let s = try raw(h)
        try s.send(frame(1, 1, versionPayload)); _ = try next(s)
        let cases: [(String, [UInt8])] = [
            ("header-only GET_INFO", frame(2, 4, [])),
            ("unknown command 14", frame(3, 14, [0, 0, 0, 0])),
            ("unknown command 99", frame(4, 99, [0, 0, 0, 0])),
            ("short REGION_READ", frame(5, 9, [0, 0, 0])),
            ("REGION_WRITE count mismatch", frame(6, 10, VFIOUserRegionAccess(offset: 0, region: 2, count: 8, data: [1]).encode())),
            ("reply-typed message", frame(7, 9, VFIOUserRegionAccess(offset: 0, region: 2, count: 4).encode(), flags: VFIOUserFlags.typeReply)),
            ("DMA_READ from the client", frame(8, 11, VFIOUserDMAAccess(address: 0, count: 4).encode())),
            ("SET_IRQS two actions", frame(9, 8, VFIOIRQSet(flags: [.dataNone, .actionMask, .actionUnmask], index: 0, start: 0, count: 1).encode())),
            ("bad IRQ index", frame(10, 7, VFIOIRQInfo(index: 77).encode())),
            ("huge REGION_READ", frame(11, 9, VFIOUserRegionAccess(offset: 0, region: 0, count: 0x7FFF_FFFF).encode())),
            ("offset overflow", frame(12, 9, VFIOUserRegionAccess(offset: UInt64.max - 1, region: 2, count: 4).encode())),
            ("DMA_MAP size 0", frame(13, 2, VFIOUserDMAMap(flags: [.read], offset: 0, address: 0x1000, size: 0).encode())),
            ("unmap with bad flags", frame(14, 3, VFIODMAUnmap(flags: VFIODMAUnmapFlags(rawValue: 1), address: 0, size: 0).encode())),
        ]
        for (what, bytes) in cases {
            try s.send(bytes)
            let r = try #require(try next(s), "\(what): no reply")
            #expect(r.header.isError && r.header.errorNumber == 22, "\(what): \(r.header)")
        }
        // Still usable.
        try s.send(frame(20, 9, VFIOUserRegionAccess(offset: 0, region: 7, count: 2).encode()))
        let ok = try #require(try next(s))
        #expect(!ok.header.isError && ok.payload.suffix(2) == [0x34, 0x12])
    }

    @Test func fdsOnACommandThatTakesNoneAreRefusedAndClosed() throws {
        let h = try ServerHarness(); defer { _ = h.stop() }
        let s = try raw(h)
        try s.send(frame(1, 1, versionPayload)); _ = try next(s)
        let efd = try VFIOEventFD.create()
        try s.send(frame(2, 9, VFIOUserRegionAccess(offset: 0, region: 7, count: 4).encode()), fds: [efd.fd])
        #expect(try next(s)?.header.errorNumber == 22)
    }

    @Test func noReplyCommandsAreNeverAnswered() throws {
        let h = try ServerHarness(); defer { _ = h.stop() }
        let s = try raw(h)
        try s.send(frame(1, 1, versionPayload)); _ = try next(s)
        try s.send(frame(2, 10, VFIOUserRegionAccess(offset: 0x10_0000, region: 2, count: 1, data: [1]).encode(), flags: VFIOUserFlags.noReply))
        try s.send(frame(3, 4, [], flags: VFIOUserFlags.noReply))       // malformed and NO_REPLY: still silent
        try s.send(frame(4, 9, VFIOUserRegionAccess(offset: 0, region: 7, count: 2).encode()))
        let r = try #require(try next(s))
        #expect(r.header.messageID == 4 && !r.header.isError)
    }

    @Test func untrustworthyHeadersCloseTheConnection() throws {
        let h = try ServerHarness(); defer { _ = h.stop() }
        let bad: [[UInt8]] = [
            frame(1, 1, [], size: 8),                                  // size smaller than the header
            frame(1, 9, [], size: 0x7FFF_FFFF),                         // absurd size
            frame(1, 9, [0, 0, 0, 0], flags: 0x0F),                     // undefined type
            frame(1, 9, [0, 0, 0, 0], flags: VFIOUserFlags.error),      // ERROR on a command
        ]
        for (i, b) in bad.enumerated() {
            let s = try raw(h)
            try s.send(frame(0, 1, versionPayload)); _ = try next(s)
            try s.send(b)
            #expect(isClosed(s), "case \(i): connection should be closed")
            #expect(h.waitClientsServed(i + 1))
        }
        // Major version mismatch: error reply, then closed.
        let s = try raw(h)
        try s.send(frame(1, 1, VFIOUserVersion(major: 1, minor: 0, capabilities: nil).encode()))
        #expect(try next(s)?.header.isError == true)
        #expect(isClosed(s))
    }

    @Test func versionRules() throws {
        let h = try ServerHarness(); defer { _ = h.stop() }
        for (payload, ok) in [
            (VFIOUserVersion(major: 0, minor: 7, capabilities: nil).encode(), true),               // minor clamped
            ([0, 0, 0, 0] + Array("{\"capabilities\":{}}".utf8), false),                       // JSON without NUL
            ([0, 0, 0, 0] + Array("{\"capabilities\":{\"max_msg_fds\":2000}}".utf8) + [0], false),
            ([0, 0, 0, 0] + Array("{\"capabilities\":{\"max_msg_fds\":\"x\"}}".utf8) + [0], false),
            ([0, 0, 0, 0] + Array("{\"capabilities\":{\"pgsizes\":512}}".utf8) + [0], false),
            ([0, 0, 0, 0] + Array("{\"capabilities\":{\"future\":[1,2],\"migration\":{\"pgsize\":4096}}}".utf8) + [0], true),
            ([0, 0, 0, 0] + Array("not json".utf8) + [0], false),
        ] {
            let s = try raw(h)
            try s.send(frame(1, 1, payload))
            let r = try #require(try next(s))
            #expect(r.header.isError != ok, "\(String(decoding: payload, as: UTF8.self))")
            if ok, case .version(let v) = try VFIOUserDecoder.decodeReply(command: .version, payload: r.payload) {
                #expect(v.minor <= 2)
                #expect(v.capabilities?.migration == nil)   // we never advertise what we do not implement
            }
            s.close()
        }
    }

    /// Mutated valid commands: the decoder never traps, never reports more messages than
    /// the bytes can hold, decides the same way twice, and the mutations reach both the
    /// accepting and the refusing paths. Seeded (VFU_FUZZ_SEED to replay); the seed is printed.
    @Test func randomStreamsNeverCrashTheDecoder() {
        let seed = fuzzSeed()
        print("randomStreamsNeverCrashTheDecoder seed \(seed) (VFU_FUZZ_SEED=\(seed) replays it)")
        var rng = SplitMix64(state: seed)
        let seeds = [Vectors.versionRequest, Vectors.regionInfoRequest, Vectors.setIRQsBool, Vectors.regionWriteMulti, Vectors.dmaMap]
        let decoded = seeds.map { v in
            Array(v.utf8).withUnsafeBufferPointer { u in stride(from: 0, to: u.count - 1, by: 2).map { UInt8(String(decoding: u[$0...$0 + 1], as: UTF8.self), radix: 16)! } }
        }
        for b in decoded {
            let r = VFIOUserDecoder.decodeStream(b)
            #expect(r.fatal == nil && r.messages.count == 1 && (try? r.messages[0].get()) != nil, "an unmutated vector must decode")
        }
        var accepted = 0, refused = 0
        for i in 0..<3000 {
            var b = decoded[i % decoded.count]
            for _ in 0..<(1 + i % 6) {
                let k = Int.random(in: 0..<b.count, using: &rng)
                b[k] = UInt8.random(in: 0...255, using: &rng)
            }
            if i % 7 == 0 { b += (0..<Int.random(in: 0..<40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
            let r = VFIOUserDecoder.decodeStream(b)
            #expect(r.messages.count <= b.count / VFIOUserLimits.headerSize, "seed \(seed) case \(i)")
            let again = VFIOUserDecoder.decodeStream(b)
            #expect(again.messages.map { (try? $0.get()) != nil } == r.messages.map { (try? $0.get()) != nil } && (again.fatal == nil) == (r.fatal == nil),
                    "seed \(seed) case \(i): the decoder is not deterministic")
            if r.fatal == nil, r.messages.allSatisfy({ (try? $0.get()) != nil }) { accepted += 1 } else { refused += 1 }
        }
        #expect(accepted > 0 && refused > 0, "seed \(seed): \(accepted) accepted, \(refused) refused")
    }
}

/// A scripted, hostile server: accepts one client, answers VERSION normally (unless told otherwise) and then
/// answers each request with whatever `respond` returns.
final class FakeServer: @unchecked Sendable {
    let path = NSTemporaryDirectory() + "vfu-fake-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
    let listenFD: Int32
    let respond: @Sendable (VFIOUserReceived) -> [([UInt8], [Int32])]
    init(respond: @escaping @Sendable (VFIOUserReceived) -> [([UInt8], [Int32])]) throws {
        self.respond = respond
        listenFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = try VFIOUserSocket.unixAddress(path)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        listen(listenFD, 1)
        let t = Thread { [self] in
            let c = accept(listenFD, nil, nil)
            guard c >= 0 else { return }
            let s = VFIOUserSocket(owning: c)
            while let m = try? s.receive(maxFDs: 16, timeoutMilliseconds: 10000) {
                for (bytes, fds) in self.respond(m) { try? s.send(bytes, fds: fds) }
            }
        }
        t.start()
    }
    deinit { close(listenFD); unlink(path) }

    static func versionReply(_ m: VFIOUserReceived, minor: UInt16 = 0) -> [UInt8] {
        VFIOUserFrame.reply(to: m.header, payload: VFIOUserVersion(major: 0, minor: minor, capabilities: VFIOUserCapabilities(maxMsgFDs: 4)).encode()).encode()
    }
}

/// The client against hostile servers: nothing may crash, hang or read out of bounds.
@Suite(.serialized) struct ClientRobustnessTests {
    func client(_ f: FakeServer, timeout: Int = 500) throws -> VFIOUserClient {
        var c = VFIOUserClientConfiguration()
        c.timeoutMilliseconds = timeout
        c.minor = 0
        return try VFIOUserClient(socketPath: f.path, configuration: c)
    }

    /// A server that answers VERSION and replies to REGION_INFO with `payload` (header echoing the request).
    func regionInfoServer(_ payload: [UInt8], fds: [Int32] = [], flags: UInt32 = VFIOUserFlags.typeReply) throws -> FakeServer {
        try FakeServer { m in
            if m.header.command == 1 { return [(FakeServer.versionReply(m), [])] }
            var h = m.header
            h.flags = flags
            h.messageSize = UInt32(16 + payload.count)
            return [(h.encode() + payload, fds)]
        }
    }

    @Test func rejectsHigherMinor() throws {
        let f = try FakeServer { m in [(FakeServer.versionReply(m, minor: 1), [])] }
        #expect(throws: VFIOUserError.self) { _ = try client(f) }
    }

    @Test func loopingCapabilityChain() throws {
        var p = VFIORegionInfo(argsz: 48, flags: VFIORegionFlags(rawValue: 0xF), index: 0, capOffset: 32, size: 0x1000).encode()
        p += [1, 0, 1, 0] + le32(32) + [UInt8](repeating: 0, count: 8)     // next points at itself
        let c = try client(try regionInfoServer(p))
        #expect(throws: VFIOUserError.self) { _ = try c.regionInfo(0) }
    }

    @Test func capabilityOffsetOutOfBoundsAndAreaOverflow() throws {
        let bad1 = VFIORegionInfo(argsz: 32, flags: VFIORegionFlags(rawValue: 0xF), index: 0, capOffset: 4000, size: 0x1000).encode()
        #expect(throws: VFIOUserError.self) { _ = try client(try regionInfoServer(bad1)).regionInfo(0) }
        var bad2 = VFIORegionInfo(argsz: 48, flags: VFIORegionFlags(rawValue: 0xF), index: 0, capOffset: 32, size: 0x1000).encode()
        bad2 += [1, 0, 1, 0] + le32(0) + le32(0x1000_0000) + le32(0)      // 2^28 areas in 8 bytes
        #expect(throws: VFIOUserError.self) { _ = try client(try regionInfoServer(bad2)).regionInfo(0) }
        var bad3 = VFIORegionInfo(argsz: 64, flags: VFIORegionFlags(rawValue: 0xF), index: 0, capOffset: 32, size: 0x1000).encode()
        bad3 += [1, 0, 1, 0] + le32(0) + le32(1) + le32(0) + le64(0xFFFF_FFFF_FFFF_F000) + le64(0x2000)   // area wraps
        #expect(throws: VFIOUserError.self) { _ = try client(try regionInfoServer(bad3)).regionInfo(0) }
    }

    @Test func replyLargerThanArgszOrHugeArgsz() throws {
        // The server claims it needs 1 GiB.
        let huge = VFIORegionInfo(argsz: 1 << 30, flags: VFIORegionFlags(rawValue: 7), index: 0, size: 0x1000).encode()
        #expect(throws: VFIOUserError.self) { _ = try client(try regionInfoServer(huge)).regionInfo(0) }
        // The server sends more than our argsz allows.
        let tooBig = VFIORegionInfo(argsz: 32, flags: VFIORegionFlags(rawValue: 7), index: 0, size: 0x1000).encode() + [UInt8](repeating: 0, count: 64)
        #expect(throws: VFIOUserError.self) { _ = try client(try regionInfoServer(tooBig)).regionInfo(0) }
    }

    @Test func unexpectedFDsAndWrongIDs() throws {
        let efd = try VFIOEventFD.create()
        let p = VFIORegionInfo(argsz: 32, flags: VFIORegionFlags(rawValue: 3), index: 0, size: 0x1000).encode()
        #expect(throws: VFIOUserError.self) { _ = try client(try regionInfoServer(p, fds: [efd.fd, efd.fd])).regionInfo(0) }
        let f = try FakeServer { m in
            if m.header.command == 1 { return [(FakeServer.versionReply(m), [])] }
            var h = m.header; h.messageID &+= 1; h.flags = 1; h.messageSize = 16
            return [(h.encode(), [])]
        }
        #expect(throws: VFIOUserError.self) { _ = try client(f).deviceInfo() }
        // A reply typed as a command that is not DMA: the client refuses it and still times out cleanly.
        #expect(throws: VFIOUserError.self) { _ = try client(try regionInfoServer(p, flags: 0)).regionInfo(0) }
    }

    @Test func silentServerTimesOut() throws {
        let f = try FakeServer { m in m.header.command == 1 ? [(FakeServer.versionReply(m), [])] : [] }
        let c = try client(f, timeout: 200)
        let t0 = monotonicMilliseconds()
        #expect(throws: VFIOUserError.timeout(command: 4)) { _ = try c.deviceInfo() }
        #expect(monotonicMilliseconds() - t0 < 2000)
        // After a timeout the stream is out of sync: later calls fail fast.
        #expect(throws: VFIOUserError.self) { _ = try c.deviceInfo() }
    }

    @Test func readReplyCountMismatchAndHostileDMARequests() throws {
        let f = try FakeServer { m in
            if m.header.command == 1 { return [(FakeServer.versionReply(m), [])] }
            // First a DMA_READ for an address the client never mapped, then a short read reply.
            let dma = VFIOUserFrame.command(7, .dmaRead(VFIOUserDMAAccess(address: 0xdead_0000, count: 8))).encode()
            let r = VFIOUserFrame.reply(to: m.header, payload: VFIOUserRegionAccess(offset: 0, region: 0, count: 2, data: [1, 2]).encode()).encode()
            return [(dma, []), (r, [])]
        }
        let c = try client(f)
        #expect(throws: VFIOUserError.self) { _ = try c.read(region: 0, offset: 0, count: 4) }
        #expect(c.dmaRequestsServed == 1)
    }

    /// Mutated REGION_INFO replies: decoding never traps, an unmutated reply decodes to
    /// its two sparse areas, every sparse area accepted lies inside the region, and the
    /// mutations reach both paths. Seeded (VFU_FUZZ_SEED to replay); the seed is printed.
    @Test func randomRepliesNeverCrashTheDecoder() {
        let seed = fuzzSeed()
        print("randomRepliesNeverCrashTheDecoder seed \(seed) (VFU_FUZZ_SEED=\(seed) replays it)")
        var rng = SplitMix64(state: seed)
        let base = VFIORegionInfo(argsz: 80, flags: VFIORegionFlags(rawValue: 0xF), index: 1, capOffset: 32, size: 0x1000,
                                      capabilities: [VFIOSparseMMapCapability(areas: [VFIOSparseArea(offset: 0, size: 0x100), VFIOSparseArea(offset: 0x800, size: 0x800)]).capability]).encode()
        if case .regionInfo(let info)? = try? VFIOUserDecoder.decodeReply(command: .deviceGetRegionInfo, payload: base, fdCount: 0),
           let cap = info.capabilities.first(where: { $0.id == 1 }) {
            #expect((try? VFIOSparseMMapCapability(parsing: cap, regionSize: info.size))?.areas.count == 2)
        } else {
            Issue.record("the unmutated REGION_INFO reply must decode")
        }
        var accepted = 0, refused = 0
        for i in 0..<5000 {
            var b = base
            for _ in 0..<(1 + i % 5) { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if i % 3 == 0 { b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) }
            for cmd in VFIOUserCommand.allCases {
                guard let r = try? VFIOUserDecoder.decodeReply(command: cmd, payload: b, fdCount: i % 3) else {
                    if cmd == .deviceGetRegionInfo { refused += 1 }
                    continue
                }
                guard case .regionInfo(let info) = r else { continue }
                accepted += 1
                for cap in info.capabilities where cap.id == 1 {
                    guard let sparse = try? VFIOSparseMMapCapability(parsing: cap, regionSize: info.size) else { continue }
                    for a in sparse.areas {
                        let (end, o) = a.offset.addingReportingOverflow(a.size)
                        #expect(!o && end <= info.size, "seed \(seed) case \(i): sparse area \(a) outside the region")
                    }
                }
            }
        }
        #expect(accepted > 0 && refused > 0, "seed \(seed): \(accepted) accepted, \(refused) refused")
    }
}

/// The seed of a fuzz-style test: VFU_FUZZ_SEED when set (to replay a failure), else a fresh one.
private func fuzzSeed() -> UInt64 {
    if let s = ProcessInfo.processInfo.environment["VFU_FUZZ_SEED"], let v = UInt64(s) { return v }
    return UInt64.random(in: 0...UInt64.max)
}

