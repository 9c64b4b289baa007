import Foundation
import Testing
import PCI
import VFIO
import VFIOTestSupport
@testable import VFIOUser

// Hostile clients against the real server over a real socket (issue 9): every case from libvfio-user's hardening
// history (/work/shared/reference/anchors.md §7). Each must get an error reply or a clean close, the server must go
// on serving the next client, and nothing may leak.

private typealias C = VFIOUserCommand
private let EINVAL = VFIOErrno.EINVAL
private func p32(_ v: [UInt32]) -> [UInt8] { v.flatMap { le32($0) } }
private func regionAccess(_ offset: UInt64, _ region: UInt32, _ count: UInt32, data: [UInt8] = []) -> [UInt8] {
    le64(offset) + le32(region) + le32(count) + data
}
private func dmaMap(_ addr: UInt64, _ size: UInt64, flags: UInt32 = 3, offset: UInt64 = 0, argsz: UInt32 = 32) -> [UInt8] {
    le32(argsz) + le32(flags) + le64(offset) + le64(addr) + le64(size)
}
private func dmaUnmap(_ addr: UInt64, _ size: UInt64, flags: UInt32 = 0) -> [UInt8] { le32(24) + le32(flags) + le64(addr) + le64(size) }
private func setIRQs(_ flags: VFIOIRQSetFlags, index: UInt32, start: UInt32, count: UInt32, argsz: UInt32 = 20, data: [UInt8] = []) -> [UInt8] {
    p32([argsz, flags.rawValue, index, start, count]) + data
}

/// A raw peer on `h` that negotiated, mapped `mapSize` bytes of guest memory at 0x10000 without an fd (so the
/// server's DMA goes by DMA_READ/DMA_WRITE messages) and wrote `registers` (offset, bytes) of BAR 2 of the test
/// function, ready for a doorbell; nil, with the failure recorded, when VERSION or DMA_MAP failed.
private func peerReadyForDMA(_ h: ServerHarness, mapSize: UInt64, registers: [(UInt64, [UInt8])],
                             sourceLocation: SourceLocation = #_sourceLocation) throws -> RawPeer? {
    let p = try RawPeer(path: h.path)
    guard case .reply = p.negotiate() else { Issue.record("VERSION failed", sourceLocation: sourceLocation); return nil }
    guard case .reply = p.exchange(C.dmaMap.rawValue, dmaMap(0x10000, mapSize)) else {
        Issue.record("DMA_MAP failed", sourceLocation: sourceLocation); return nil
    }
    for (reg, v) in registers { _ = p.exchange(C.regionWrite.rawValue, regionAccess(reg, 2, UInt32(v.count), data: v)) }
    return p
}

/// `peerReadyForDMA` with the test device set to copy 64 bytes from IOVA 0x10000 to 0x11000, inside an 8 KiB map:
/// the next doorbell makes the server DMA_READ the source.
private func peerReadyForDMACopy(_ h: ServerHarness, sourceLocation: SourceLocation = #_sourceLocation) throws -> RawPeer? {
    typealias Reg = TestPCIFunction.Reg
    return try peerReadyForDMA(h, mapSize: 0x2000, registers: [(Reg.src, le64(0x10000)), (Reg.dst, le64(0x11000)), (Reg.len, le32(64) + le32(0))],
                               sourceLocation: sourceLocation)
}

/// Rings the test device's DMA doorbell (`Reg.doorbell`) and returns the server's DMA_READ request for the data.
/// The server acknowledges the doorbell write first (early ack, so a QEMU blocked on the write can serve DMA);
/// anything else is recorded at the caller's line, and nil returned.
private func ringDoorbellForDMARead(_ p: RawPeer, sourceLocation: SourceLocation = #_sourceLocation) throws -> VFIOUserHeader? {
    try p.send(C.regionWrite.rawValue, regionAccess(TestPCIFunction.Reg.doorbell, 2, 4, data: le32(1)))
    var first = p.receive()
    if case .reply(let ack, _) = first, ack.command == C.regionWrite.rawValue, ack.isReply { first = p.receive() }
    guard case .reply(let request, _) = first, request.command == C.dmaRead.rawValue else {
        Issue.record("no DMA_READ", sourceLocation: sourceLocation); return nil
    }
    return request
}

/// A hostile case: what the client does, and which outcomes are acceptable.
struct HostileCase: Sendable, CustomStringConvertible {
    let name: String
    let negotiate: Bool
    let run: @Sendable (RawPeer) -> Outcome
    let accept: @Sendable (Outcome) -> Bool
    var description: String { name }

    init(_ name: String, negotiate: Bool = true, accept: @escaping @Sendable (Outcome) -> Bool = { $0.isErrorOrClose },
         _ run: @escaping @Sendable (RawPeer) -> Outcome) {
        self.name = name; self.negotiate = negotiate; self.run = run; self.accept = accept
    }

    static func errno(_ e: Int32) -> @Sendable (Outcome) -> Bool { { $0 == .error(e) } }
}

/// The probe memfd name used by cases that send fds the server must close.
let hostileProbeName = "hostile-fd-probe"

let hostileClientCases: [HostileCase] = [
    // argsz
    HostileCase("argsz too small: DEVICE_GET_INFO argsz 4", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceGetInfo.rawValue, p32([4, 0, 0, 0])) },
    HostileCase("argsz too small: REGION_INFO argsz 16", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceGetRegionInfo.rawValue, p32([16, 0, 0, 0, 0, 0, 0, 0])) },
    HostileCase("argsz too small: DMA_MAP argsz 8", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0x1000, argsz: 8)) },
    HostileCase("argsz too small: SET_IRQS argsz 0", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataNone, .actionTrigger], index: 2, start: 0, count: 0, argsz: 0))
    },
    HostileCase("argsz too large: REGION_INFO argsz 0xffffffff gets a reply no bigger than needed",
                accept: { if case .reply(_, let p) = $0 { return p.count <= Int(VFIOUserLimits.maxInfoArgsz) }; return $0.isErrorOrClose }) {
        $0.exchange(C.deviceGetRegionInfo.rawValue, p32([0xFFFF_FFFF, 0, 0, 0, 0, 0, 0, 0]))
    },
    HostileCase("argsz too large: DEVICE_GET_INFO argsz 0xffffffff",
                accept: { if case .reply(_, let p) = $0 { return p.count <= Int(VFIOUserLimits.maxInfoArgsz) }; return $0.isErrorOrClose }) {
        $0.exchange(C.deviceGetInfo.rawValue, p32([0xFFFF_FFFF, 0, 0, 0]))
    },
    HostileCase("argsz too large: IO_FDS argsz 0xffffffff",
                accept: { if case .reply(_, let p) = $0 { return p.count <= Int(VFIOUserLimits.maxInfoArgsz) }; return $0.isErrorOrClose }) {
        $0.exchange(C.deviceGetRegionIOFDs.rawValue, p32([0xFFFF_FFFF, 0, 0, 0]))
    },
    // sizes
    HostileCase("message size beyond the maximum (header only, then silence)", accept: { $0 == .closed }) {
        $0.exchange(C.regionWrite.rawValue, [], size: UInt32(VFIOUserLimits.maxMessageSize + 1))
    },
    HostileCase("message size 0xffffffff", accept: { $0 == .closed }) { $0.exchange(C.regionWrite.rawValue, [], size: 0xFFFF_FFFF) },
    HostileCase("message size smaller than the header", accept: { $0 == .closed }) { $0.exchange(C.deviceGetInfo.rawValue, [], size: 8) },
    HostileCase("REGION_READ count beyond max_data_xfer_size", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.regionRead.rawValue, regionAccess(0, 0, 2 << 20))
    },
    HostileCase("REGION_WRITE count disagrees with the data", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.regionWrite.rawValue, regionAccess(0, 2, 8, data: [1, 2, 3, 4]))
    },
    // missing payloads
    HostileCase("DMA_MAP without payload", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.dmaMap.rawValue, []) },
    HostileCase("REGION_READ without payload", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.regionRead.rawValue, []) },
    HostileCase("SET_IRQS without payload", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceSetIRQs.rawValue, []) },
    HostileCase("VERSION without payload", negotiate: false, accept: { $0.isErrorOrClose }) { $0.exchange(C.version.rawValue, []) },
    HostileCase("DEVICE_RESET with a payload", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceReset.rawValue, [1, 2, 3, 4]) },
    // DMA
    HostileCase("overlapping DMA maps", accept: HostileCase.errno(VFIOErrno.EEXIST)) { p in
        guard case .reply = p.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0x2000)) else { return .silence }
        return p.exchange(C.dmaMap.rawValue, dmaMap(0x11000, 0x2000))
    },
    HostileCase("DMA map with address + size overflowing", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.dmaMap.rawValue, dmaMap(UInt64.max - 0xFFF, 0x2000)) },
    HostileCase("DMA map of size 0", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0)) },
    HostileCase("DMA map with undefined flags", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0x1000, flags: 0x80)) },
    // As the kernel's type1 IOMMU: an unmap of nothing succeeds, one cutting a mapping in two is refused (issue 16).
    HostileCase("unmap matching no map", accept: { if case .reply = $0 { return true }; return false }) {
        $0.exchange(C.dmaUnmap.rawValue, dmaUnmap(0x10000, 0x1000))
    },
    HostileCase("unmap of part of a map", accept: HostileCase.errno(VFIOErrno.EINVAL)) { p in
        guard case .reply = p.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0x2000)) else { return .silence }
        return p.exchange(C.dmaUnmap.rawValue, dmaUnmap(0x10000, 0x1000))
    },
    HostileCase("unmap-all with a range", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.dmaUnmap.rawValue, dmaUnmap(0x10000, 0x1000, flags: 2)) },
    // regions
    HostileCase("region read past the end", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.regionRead.rawValue, regionAccess(0xFFE, 2, 4)) },
    HostileCase("region read at offset 2^64-2 (overflow)", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.regionRead.rawValue, regionAccess(UInt64.max - 1, 2, 4)) },
    HostileCase("region write past the end", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.regionWrite.rawValue, regionAccess(0x1000, 2, 1, data: [1])) },
    HostileCase("config space read past 4 KiB", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.regionRead.rawValue, regionAccess(0xFFF, 7, 4)) },
    HostileCase("region index out of range: REGION_INFO 1000", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceGetRegionInfo.rawValue, p32([32, 0, 1000, 0, 0, 0, 0, 0])) },
    HostileCase("region index out of range: REGION_READ 0xffffffff", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.regionRead.rawValue, regionAccess(0, 0xFFFF_FFFF, 4)) },
    HostileCase("region index out of range: IO_FDS 1000", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceGetRegionIOFDs.rawValue, p32([16, 0, 1000, 0])) },
    HostileCase("REGION_WRITE_MULTI with a bad entry count", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.regionWriteMulti.rawValue, le64(3) + regionAccess(0, 2, 4) + [1, 2, 3, 4, 0, 0, 0, 0])
    },
    HostileCase("REGION_WRITE_MULTI entry past the end", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.regionWriteMulti.rawValue, le64(1) + regionAccess(0xFFE, 2, 4) + [1, 2, 3, 4, 0, 0, 0, 0])
    },
    // IRQs
    HostileCase("IRQ index out of range: IRQ_INFO 99", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceGetIRQInfo.rawValue, p32([16, 0, 99, 0])) },
    HostileCase("IRQ index out of range: SET_IRQS 99", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataNone, .actionTrigger], index: 99, start: 0, count: 1))
    },
    HostileCase("IRQ start out of range", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataNone, .actionTrigger], index: 2, start: 4, count: 1))
    },
    HostileCase("IRQ start + count overflowing 32 bits", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataNone, .actionMask], index: 2, start: 0xFFFF_FFFF, count: 2))
    },
    HostileCase("IRQ count beyond the vectors", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataNone, .actionUnmask], index: 2, start: 0, count: 5))
    },
    HostileCase("IRQ DATA_BOOL count 0xffffffff with one byte", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataBool, .actionTrigger], index: 2, start: 0, count: 0xFFFF_FFFF, data: [1]))
    },
    HostileCase("SET_IRQS with two data types", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataNone, .dataBool, .actionTrigger], index: 2, start: 0, count: 1, data: [1]))
    },
    // fds
    HostileCase("fds on a message that takes none (DEVICE_GET_INFO + 1 fd)", accept: HostileCase.errno(EINVAL)) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.deviceGetInfo.rawValue, p32([16, 0, 0, 0]), fds: [m.fd])
    },
    HostileCase("fds on REGION_WRITE", accept: HostileCase.errno(EINVAL)) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.regionWrite.rawValue, regionAccess(0, 2, 4, data: [0, 0, 0, 0]), fds: [m.fd, m.fd])
    },
    HostileCase("more fds than negotiated (9 > max_msg_fds 8) on SET_IRQS", accept: { $0.isErrorOrClose }) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataEventFD, .actionTrigger], index: 2, start: 0, count: 9),
                          fds: Array(repeating: m.fd, count: 9))
    },
    HostileCase("DMA_MAP with two fds", accept: HostileCase.errno(EINVAL)) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0x1000), fds: [m.fd, m.fd])
    },
    HostileCase("SET_IRQS eventfd count disagrees with the fds", accept: HostileCase.errno(EINVAL)) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataEventFD, .actionTrigger], index: 2, start: 0, count: 1), fds: [m.fd, m.fd])
    },
    HostileCase("SET_IRQS eventfds that are not eventfds", accept: { _ in true }) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.deviceSetIRQs.rawValue, setIRQs([.dataEventFD, .actionTrigger], index: 2, start: 0, count: 2), fds: [m.fd, m.fd])
    },
    HostileCase("DMA_MAP of 64 KiB over a 4 KiB fd", accept: HostileCase.errno(EINVAL)) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0x10000), fds: [m.fd])
    },
    HostileCase("DMA_MAP fd offset beyond the file", accept: HostileCase.errno(EINVAL)) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.dmaMap.rawValue, dmaMap(0x10000, 0x1000, offset: 1 << 40), fds: [m.fd])
    },
    // framing and protocol
    HostileCase("reply-flagged message from a client", accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.deviceGetInfo.rawValue, p32([16, 0, 0, 0]), flags: VFIOUserFlags.typeReply)
    },
    HostileCase("error-flagged command", accept: { $0 == .closed }) {
        $0.exchange(C.deviceGetInfo.rawValue, p32([16, 0, 0, 0]), flags: VFIOUserFlags.error)
    },
    HostileCase("undefined header flags", accept: { $0 == .closed }) { $0.exchange(C.deviceGetInfo.rawValue, p32([16, 0, 0, 0]), flags: 0x100) },
    HostileCase("undefined message type", accept: { $0 == .closed }) { $0.exchange(C.deviceGetInfo.rawValue, p32([16, 0, 0, 0]), flags: 7) },
    HostileCase("unknown command 14 (retired DIRTY_PAGES)", accept: HostileCase.errno(EINVAL)) { $0.exchange(14, p32([16, 0, 0, 0])) },
    HostileCase("unknown command 0", accept: HostileCase.errno(EINVAL)) { $0.exchange(0, p32([16, 0, 0, 0])) },
    HostileCase("unknown command 0xffff", accept: HostileCase.errno(EINVAL)) { $0.exchange(0xFFFF, []) },
    HostileCase("DMA_READ from a client", accept: HostileCase.errno(EINVAL)) { $0.exchange(C.dmaRead.rawValue, le64(0) + le64(4)) },
    HostileCase("command before VERSION", negotiate: false, accept: HostileCase.errno(EINVAL)) { $0.exchange(C.deviceGetInfo.rawValue, p32([16, 0, 0, 0])) },
    HostileCase("VERSION twice", accept: HostileCase.errno(EINVAL)) { $0.negotiate() },
    HostileCase("VERSION major 1", negotiate: false) { $0.exchange(C.version.rawValue, [1, 0, 0, 0]) },
    HostileCase("VERSION JSON not NUL-terminated", negotiate: false, accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.version.rawValue, [0, 0, 2, 0] + Array(#"{"capabilities":{}}"#.utf8))
    },
    HostileCase("VERSION JSON garbage", negotiate: false, accept: HostileCase.errno(EINVAL)) { $0.exchange(C.version.rawValue, [0, 0, 2, 0] + Array("{{{{[[[\"".utf8) + [0]) },
    HostileCase("VERSION JSON nested 4000 deep", negotiate: false, accept: HostileCase.errno(EINVAL)) {
        $0.exchange(C.version.rawValue, [0, 0, 2, 0] + Array(String(repeating: "[", count: 4000).utf8) + [0])
    },
    HostileCase("VERSION max_msg_fds 100000", negotiate: false, accept: HostileCase.errno(EINVAL)) { $0.negotiate(json: #"{"capabilities":{"max_msg_fds":100000}}"#) },
    HostileCase("VERSION max_data_xfer_size 0", negotiate: false, accept: HostileCase.errno(EINVAL)) { $0.negotiate(json: #"{"capabilities":{"max_data_xfer_size":0}}"#) },
    HostileCase("VERSION pgsizes without 4 KiB", negotiate: false, accept: HostileCase.errno(EINVAL)) { $0.negotiate(json: #"{"capabilities":{"pgsizes":512}}"#) },
    HostileCase("VERSION with a wrongly typed key", negotiate: false, accept: HostileCase.errno(EINVAL)) { $0.negotiate(json: #"{"capabilities":{"max_msg_fds":"eight"}}"#) },
    HostileCase("VERSION with a fd", negotiate: false, accept: HostileCase.errno(EINVAL)) { p in
        guard let m = try? probeMemfd(hostileProbeName) else { return .silence }
        return p.exchange(C.version.rawValue, [0, 0, 2, 0], fds: [m.fd])
    },
    HostileCase("truncated header then close", accept: { _ in true }) { p in
        try? p.sendRaw([1, 0, 4, 0, 0x20, 0, 0])
        return .closed
    },
    HostileCase("truncated body then close", accept: { _ in true }) { p in
        try? p.sendRaw(RawPeer.frame(id: 9, command: C.regionWrite.rawValue, payload: [], size: 64) + [1, 2, 3])
        return .closed
    },
    HostileCase("truncated body then silence (per-message timeout)", accept: { $0 == .closed }) { p in
        try? p.sendRaw(RawPeer.frame(id: 9, command: C.regionWrite.rawValue, payload: [], size: 64) + [1, 2, 3])
        return p.receive(timeoutMilliseconds: 5000)
    },
]

/// Server settings for the hostile suites: short timeouts so stuck peers are dropped quickly.
func hostileServerConfiguration() -> VFIOUserServerConfiguration {
    var c = VFIOUserServerConfiguration()
    c.messageTimeoutMilliseconds = 500
    c.dmaReplyTimeoutMilliseconds = 500
    return c
}

/// A well-behaved client must still be served after any hostile one.
func expectServerStillServes(_ h: ServerHarness, after what: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        // Generous: a loaded machine must not fail this; a server that stopped serving never answers at all.
        let c = try h.client { $0.timeoutMilliseconds = 30_000 }
        let info = try c.deviceInfo()
        #expect(info.numRegions == 9, "after \(what)", sourceLocation: sourceLocation)
        #expect(try c.read(region: VFIOPCIRegion.config.rawValue, offset: 0, count: 4) == le32(0x5678_1234), "after \(what)",
                sourceLocation: sourceLocation)
        c.close()
    } catch {
        Issue.record("server no longer serves after \(what): \(error)", sourceLocation: sourceLocation)
    }
}

/// Runs one case on its own connection; returns the outcome.
@discardableResult
func runHostileCase(_ c: HostileCase, on h: ServerHarness) -> Outcome {
    guard let p = try? RawPeer(path: h.path) else { Issue.record("\(c.name): cannot connect"); return .closed }
    if c.negotiate {
        guard case .reply = p.negotiate() else { Issue.record("\(c.name): VERSION failed"); return .closed }
    }
    let outcome = c.run(p)
    #expect(c.accept(outcome), "\(c.name): got \(outcome)")
    return outcome
}

@Suite(.serialized) struct HostileClientTests {
    @Test(arguments: hostileClientCases)
    func hostileCase(_ c: HostileCase) throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        runHostileCase(c, on: h)
        expectServerStillServes(h, after: c.name)
    }

    /// All cases against one server, several rounds: open fds and resident memory must not grow, and every fd a
    /// hostile client sent must have been closed by the server.
    @Test func noFDOrMemoryLeakAcrossHostileClients() throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        var served = 0
        func round() {
            for c in hostileClientCases {
                runHostileCase(c, on: h)
                served += 1
                #expect(h.waitClientsServed(served), "\(c.name): server did not finish the connection")
            }
        }
        round()   // warm-up: lazily allocated state, logger, caches
        let fds0 = openFDCount(), rss0 = residentBytes()
        for _ in 0..<3 { round() }
        expectServerStillServes(h, after: "every hostile case, four rounds")
        served += 1
        #expect(h.waitClientsServed(served))
        let fds1 = openFDCount(), rss1 = residentBytes()
        // Exact: every probe fd sent to the server was closed by it (the test's own copies are gone too).
        #expect(openMemfdCount(named: hostileProbeName) == 0)
        // Other suites run concurrently in this process, so allow a little noise; a per-connection leak over
        // 3 x \(hostileClientCases.count) connections would show as hundreds of fds.
        #expect(fds1 - fds0 <= 64, "open fds \(fds0) -> \(fds1)")
        #expect(rss1 - rss0 < 24 << 20, "resident memory \(rss0) -> \(rss1)")
    }

    /// A client that stops reading: it floods requests whose replies fill the socket and never reads them. The
    /// server must drop it (send timeout) and serve the next client.
    @Test func clientThatStopsReading() throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        let p = try RawPeer(path: h.path)
        guard case .reply = p.negotiate() else { Issue.record("VERSION failed"); return }
        // 32 KiB replies; the socket buffers hold a few hundred KiB at most.
        let request = RawPeer.frame(id: 1, command: C.regionRead.rawValue, payload: regionAccess(0, 0, 0x8000))
        for _ in 0..<256 { try p.sendRaw(request) }
        // The server drops the stalled client when a send times out; until then a newcomer is told "busy" at
        // once. Wait for the drop by attempts, not by a clock bound (a loaded machine only makes it later; a
        // server that never drops the client fails here), then another client must be served.
        for _ in 0..<1200 where h.server.clientAttached { usleep(25_000) }
        #expect(!h.server.clientAttached, "the client that stopped reading was never dropped")
        expectServerStillServes(h, after: "a client that stops reading")
        withExtendedLifetime(p) {}
    }

    /// Regression (found by this suite): DMA_MAP of a range past the end of the client's fd was accepted; the
    /// server's mmap succeeded and the first device DMA there killed the whole server with SIGBUS. Now refused.
    @Test func dmaMapBeyondTheEndOfTheFdIsRefused() throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        let c = try h.client()
        let small = try VFIOSharedMemory(name: "small-guest", size: 0x1000)
        let p = try RawPeer(path: h.path)   // queued behind c; used below only to prove nothing else broke
        #expect(throws: VFIOUserError.peer(errno: EINVAL, command: C.dmaMap.rawValue)) {
            // dmaMap() checks the size against the memory object, so send the raw request over c's protocol.
            _ = try c.rawExchange(RawPeer.frame(id: 0x7000, command: C.dmaMap.rawValue, payload: dmaMap(0x100000, 0x10000)), fds: [small.fd])
                .map { m throws(VFIOUserError) in if m.header.isError { throw VFIOUserError.peer(errno: Int32(m.header.errorNumber), command: m.header.command) } }
        }
        // Device DMA into what would have been the mapping beyond the file now fails cleanly (status 2) instead
        // of SIGBUS.
        typealias Reg = TestPCIFunction.Reg
        try c.write(region: 2, offset: Reg.src, data: le64(0x100000 + 0x8000))
        try c.write(region: 2, offset: Reg.dst, data: le64(0x100000))
        try c.write(region: 2, offset: Reg.len, data: le32(16))
        try c.write(region: 2, offset: Reg.doorbell, data: le32(1))
        #expect(try c.read(region: 2, offset: Reg.status, count: 4) == le32(2))
        c.close()
        withExtendedLifetime(p) {}
    }

    /// A client may shrink the file behind guest memory it mapped with DMA_MAP (QEMU does not seal guest RAM, so the
    /// server cannot require seals): the pages past the new end leave the server's mapping, and the device's next DMA
    /// there killed the whole server with SIGBUS. The server's copies are guarded now: that DMA fails (status 2), the
    /// device's other DMA still works, and the server goes on serving.
    @Test func clientShrinkingItsDMAFileFailsTheDMANotTheServer() throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        let c = try h.client()
        let file = try ShrinkableFile(size: 0x4000)
        let guest = try file.map(size: 0x4000)
        try c.dmaMap(address: 0x100000, size: 0x4000, memory: guest)
        typealias Reg = TestPCIFunction.Reg
        func copy(_ src: UInt64, _ dst: UInt64) throws -> [UInt8] {
            try c.write(region: 2, offset: Reg.status, data: le32(0))
            try c.write(region: 2, offset: Reg.src, data: le64(src))
            try c.write(region: 2, offset: Reg.dst, data: le64(dst))
            try c.write(region: 2, offset: Reg.len, data: le32(64))
            try c.write(region: 2, offset: Reg.doorbell, data: le32(1))
            return try c.read(region: 2, offset: Reg.status, count: 4)
        }
        #expect(guest.write(offset: 0, data: [UInt8](0..<64)))
        #expect(try copy(0x100000, 0x100800) == le32(1), "DMA inside the file before the shrink")
        #expect(guest.read(offset: 0x800, count: 64) == [UInt8](0..<64))

        #expect(file.shrink(to: 0x1000))   // pages 1-3 are gone from every mapping
        #expect(try copy(0x100000, 0x102000) == le32(2), "DMA write to a page the client truncated away")
        #expect(try copy(0x103000, 0x100000) == le32(2), "DMA read from a page the client truncated away")
        #expect(try copy(0x100000, 0x100800) == le32(1), "DMA inside what is left of the file")
        #expect(try c.read(region: VFIOPCIRegion.config.rawValue, offset: 0, count: 4) == le32(0x5678_1234))
        c.close()
        expectServerStillServes(h, after: "a client that shrank its DMA file")
    }

    /// Regression (found by this suite): while the server waits for a DMA reply at its nesting limit, commands from
    /// the client were queued without bound; a client that never answers and keeps sending 1 MiB writes made the
    /// server buffer everything it sent until the DMA timeout (gigabytes). The queue is now bounded and the client
    /// dropped when it overflows.
    @Test func commandFloodDuringServerDMAIsBounded() throws {
        let h = try ServerHarness()   // default 5 s DMA reply timeout: the flood has time to land
        defer { _ = h.stop() }
        typealias Reg = TestPCIFunction.Reg
        guard let p = try peerReadyForDMACopy(h) else { return }
        // Each doorbell starts a DMA the server waits on; we never answer, so they nest up to the limit.
        for _ in 0..<12 { try p.send(C.regionWrite.rawValue, regionAccess(Reg.doorbell, 2, 4, data: le32(1)), flags: VFIOUserFlags.noReply) }
        let rss0 = residentBytes()
        let big = RawPeer.frame(id: 0x500, command: C.regionWrite.rawValue, payload: regionAccess(0, 0, 1 << 20, data: [UInt8](repeating: 7, count: 1 << 20)))
        let start = Date()
        var sent = 0
        let drain = Thread { [p] in while p.receive(timeoutMilliseconds: 8000) != .closed {} }
        drain.start()
        while sent < 384, Date().timeIntervalSince(start) < 4 {
            do { try p.sendRaw(big) } catch { break }
            sent += 1
        }
        let grown = residentBytes() - rss0
        #expect(grown < 128 << 20, "server buffered \(grown >> 20) MiB of \(sent) MiB sent during its DMA")
        p.socket.shutdownBoth()
        #expect(h.waitClientsServed(1))
        expectServerStillServes(h, after: "a command flood during server DMA")
    }

    /// A pipelined scatter-gather window (four DMA_READs sent before any reply) answered out of order, one of them
    /// refused: the server takes every reply of the window (none is left to arrive later and be mistaken for
    /// another's), reports the refusal to the device (which records a DMA error and sends no DMA_WRITE), and the
    /// connection goes on serving.
    @Test func scatterGatherWindowAnsweredOutOfOrderWithARefusal() throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        typealias Reg = TestPCIFunction.Reg
        guard let p = try peerReadyForDMA(h, mapSize: 0x4000,
                                          registers: [(Reg.src, le64(0x10000)), (Reg.dst, le64(0x12000)), (Reg.len, le32(2048) + le32(0)),
                                                      (Reg.segment, le32(512) + le32(0)), (Reg.status, le32(0))])
        else { return }
        try p.send(C.regionWrite.rawValue, regionAccess(Reg.doorbell, 2, 4, data: le32(3)))
        var requests: [VFIOUserHeader] = []
        var addresses: [UInt64] = []
        while requests.count < 4 {
            let o = p.receive()
            guard case .reply(let m, let payload) = o else { Issue.record("expected the window, got \(o)"); return }
            if m.isReply && m.command == C.regionWrite.rawValue { continue }   // the early acknowledgement
            guard m.command == C.dmaRead.rawValue, payload.count == 16 else { Issue.record("expected DMA_READ, got \(m.command)"); return }
            requests.append(m)
            addresses.append(payload.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        }
        // All four were sent before we answered any; answer 3, 2 (refused), 0, 1.
        #expect(addresses == [0x10000, 0x10200, 0x10400, 0x10600])
        for i in [3, 2, 0, 1] {
            let r = requests[i]
            if i == 2 {
                try p.sendRaw(RawPeer.frame(id: r.messageID, command: r.command, payload: [],
                                            flags: VFIOUserFlags.typeReply | VFIOUserFlags.error, error: UInt32(VFIOErrno.EFAULT)))
            } else {
                try p.sendRaw(RawPeer.frame(id: r.messageID, command: r.command,
                                            payload: le64(addresses[i]) + le64(512) + [UInt8](repeating: UInt8(i), count: 512),
                                            flags: VFIOUserFlags.typeReply))
            }
        }
        // The device saw the DMA fail: status 2, and no DMA_WRITE came.
        var status: [UInt8] = []
        for _ in 0..<100 {
            guard case .reply(let m, let payload) = p.exchange(C.regionRead.rawValue, regionAccess(Reg.status, 2, 4)) else {
                Issue.record("status read failed"); return
            }
            #expect(m.command == C.regionRead.rawValue, "no DMA_WRITE after a refused read")
            status = Array(payload.suffix(4))
            if status != [0, 0, 0, 0] { break }
            usleep(1000)
        }
        #expect(status == le32(2))
        guard case .reply(_, let id) = p.exchange(C.regionRead.rawValue, regionAccess(0, VFIOPCIRegion.config.rawValue, 4)) else {
            Issue.record("config read after the window failed"); return
        }
        #expect(Array(id.suffix(4)) == le32(0x5678_1234))
    }

    /// A reply to the server's DMA_READ with the right message ID but another command is a protocol error, not a
    /// refusal: the server drops the client (no DMA_WRITE follows) and goes on serving the next one.
    @Test func dmaReplyNamingAnotherCommandEndsTheConnection() throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        guard let p = try peerReadyForDMACopy(h) else { return }
        guard let dmaReq = try ringDoorbellForDMARead(p) else { return }
        try p.sendRaw(RawPeer.frame(id: dmaReq.messageID, command: C.dmaWrite.rawValue,
                                    payload: le64(0x10000) + le64(64) + [UInt8](repeating: 1, count: 64), flags: VFIOUserFlags.typeReply))
        var last = p.receive(timeoutMilliseconds: 5000)
        while case .reply(let m, _) = last {
            #expect(m.command != C.dmaWrite.rawValue, "no DMA_WRITE after a bad DMA_READ reply")
            last = p.receive(timeoutMilliseconds: 5000)
        }
        #expect(last == .closed)
        #expect(h.waitClientsServed(1))
        expectServerStillServes(h, after: "a DMA_READ reply naming another command")
    }

    /// A client that never answers the server's DMA_READ: the server times out, drops it, keeps the device.
    @Test func clientThatNeverAnswersDMA() throws {
        let h = try ServerHarness(configuration: hostileServerConfiguration())
        defer { _ = h.stop() }
        guard let p = try peerReadyForDMACopy(h) else { return }
        // We ignore the server's DMA_READ; it gives up and closes.
        guard try ringDoorbellForDMARead(p) != nil else { return }
        var last = p.receive(timeoutMilliseconds: 5000)
        while case .reply = last { last = p.receive(timeoutMilliseconds: 5000) }
        #expect(last == .closed)
        #expect(h.waitClientsServed(1))
        #expect(h.device.dma == nil)
        expectServerStillServes(h, after: "a client that never answered DMA_READ")
    }
}

