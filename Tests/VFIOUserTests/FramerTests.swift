import Foundation
import Testing
import VFIO
@testable import VFIOUser
#if canImport(Glibc)
import Glibc
#endif

/// `VFIOUserFramer` on a socketpair: what one recvmsg takes, how messages are cut out of it, and which message the
/// descriptors belong to (vfio-user spec, "Socket Message Format": fds go with a message's first bytes).
@Suite struct FramerTests {
    private func pair() -> (VFIOUserSocket, VFIOUserSocket) {
        var fds: [Int32] = [-1, -1]
        let r = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds)
        precondition(r == 0)
        return (VFIOUserSocket(owning: fds[0]), VFIOUserSocket(owning: fds[1]))
    }

    private func message(id: UInt16, command: VFIOUserCommand = .regionRead, payload: [UInt8]) -> [UInt8] {
        VFIOUserHeader(messageID: id, command: command.rawValue, messageSize: UInt32(16 + payload.count), flags: 0).encode() + payload
    }

    private func memfd() throws -> VFIOSharedMemory { try VFIOSharedMemory(name: "framer-test", size: 4096) }

    @Test func oneReadTakesEveryQueuedMessageAndTheyAreCutInPlace() throws {
        let (a, b) = pair()
        let msgs = (0..<3).map { message(id: UInt16($0), payload: [UInt8](repeating: UInt8($0), count: 16)) }
        try a.send(msgs.flatMap { $0 })
        let f = VFIOUserFramer()
        #expect(try f.fill(fd: b.fd, maxFDs: 8) == .bytes(96))
        for i in 0..<3 {
            let m = try #require(try f.next())
            #expect(m.header.messageID == UInt16(i) && m.payload.count == 16 && Array(m.payload) == [UInt8](repeating: UInt8(i), count: 16))
        }
        #expect(try f.next() == nil)
        #expect(f.buffered == 0)
    }

    @Test func aMessageSplitAcrossReadsIsReassembledAndGrowsTheBuffer() throws {
        let (a, b) = pair()
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let bytes = message(id: 9, command: .regionWrite, payload: payload)
        let f = VFIOUserFramer(capacity: 256)
        try a.send(Array(bytes[0..<10]))
        _ = try f.fill(fd: b.fd, maxFDs: 8)
        #expect(try f.next() == nil)                     // not even a header yet
        let writer = Thread { try? a.send(Array(bytes[10...])) }
        writer.start()
        var got: VFIOUserFramedMessage?
        while got == nil {
            guard case .bytes = try f.fill(fd: b.fd, maxFDs: 8) else { Issue.record("stream ended"); return }
            got = try f.next()
        }
        #expect(got?.header.messageID == 9 && got.map { Array($0.payload) } == payload)
    }

    @Test func descriptorsBelongToTheMessageTheyArrivedWith() throws {
        let (a, b) = pair()
        let m = try memfd()
        // Two messages queued before the read: the first without fds, the second with one.
        try a.send(message(id: 1, payload: [1, 2, 3, 4]))
        try a.send(message(id: 2, command: .dmaMap, payload: [5, 6, 7, 8]), fds: [m.fd])
        let f = VFIOUserFramer()
        var first: VFIOUserFramedMessage?
        var second: VFIOUserFramedMessage?
        while second == nil {
            _ = try f.fill(fd: b.fd, maxFDs: 8)
            while let x = try f.next() { if first == nil { first = x } else { second = x } }
        }
        #expect(first?.header.messageID == 1 && first?.fds.isEmpty == true)
        #expect(second?.header.messageID == 2 && second?.fds.count == 1)
        for fd in second?.fds ?? [] { close(fd) }
    }

    @Test func descriptorsWithOnlyTheContinuationOfAMessageAreFatal() throws {
        let (a, b) = pair()
        let m = try memfd()
        let bytes = message(id: 3, command: .dmaMap, payload: [UInt8](repeating: 0, count: 32))
        try a.send(Array(bytes[0..<20]))                  // header and the start of the body, no fds
        let f = VFIOUserFramer()
        _ = try f.fill(fd: b.fd, maxFDs: 8)
        #expect(try f.next() == nil)
        try a.send(Array(bytes[20...]), fds: [m.fd])       // the rest, carrying an fd
        _ = try f.fill(fd: b.fd, maxFDs: 8)
        #expect(throws: VFIOUserError.self) { try f.next() }
    }

    @Test func moreDescriptorsThanAllowedAreRefused() throws {
        let (a, b) = pair()
        let m = try memfd()
        try a.send(message(id: 4, command: .deviceSetIRQs, payload: [UInt8](repeating: 0, count: 20)), fds: [m.fd, m.fd, m.fd])
        let f = VFIOUserFramer()
        #expect(throws: VFIOUserError.malformed("more than 2 fds attached")) { try f.fill(fd: b.fd, maxFDs: 2) }
    }

    @Test func anOversizedHeaderIsFatalBeforeItsBodyIsRead() throws {
        let (a, b) = pair()
        try a.send(VFIOUserHeader(messageID: 5, command: 9, messageSize: 0xFFFF_FFFF, flags: 0).encode())
        let f = VFIOUserFramer()
        _ = try f.fill(fd: b.fd, maxFDs: 8)
        #expect(throws: VFIOUserError.self) { try f.next(maxMessageSize: 4096) }
    }

    @Test func pinnedBytesStayInPlaceWhileTheBufferGrows() throws {
        let (a, b) = pair()
        let f = VFIOUserFramer(capacity: 256)
        try a.send(message(id: 6, command: .regionWrite, payload: [UInt8](repeating: 0xAB, count: 64)))
        _ = try f.fill(fd: b.fd, maxFDs: 8)
        let held = try #require(try f.next())
        f.pin()
        let big = message(id: 7, command: .regionWrite, payload: [UInt8](repeating: 0xCD, count: 4000))
        let writer = Thread { try? a.send(big) }
        writer.start()
        var next: VFIOUserFramedMessage?
        while next == nil { _ = try f.fill(fd: b.fd, maxFDs: 8); next = try f.next() }
        // The held payload still reads as sent although the buffer had to grow for the second message.
        #expect(Array(held.payload) == [UInt8](repeating: 0xAB, count: 64))
        #expect(next.map { Array($0.payload) } == [UInt8](repeating: 0xCD, count: 4000))
        f.unpin()
    }

    @Test func pinnedBytesAreNotReusedWhenTheBufferEmpties() throws {
        // Unpinned, an empty buffer starts again at its beginning; pinned, the next read must go elsewhere.
        let (a, b) = pair()
        let f = VFIOUserFramer(capacity: 8192)
        try a.send(message(id: 8, command: .regionWrite, payload: [UInt8](repeating: 0x11, count: 64)))
        _ = try f.fill(fd: b.fd, maxFDs: 8)
        let held = try #require(try f.next())
        f.pin()
        try a.send(message(id: 9, command: .regionWrite, payload: [UInt8](repeating: 0x22, count: 200)))
        var next: VFIOUserFramedMessage?
        while next == nil { _ = try f.fill(fd: b.fd, maxFDs: 8); next = try f.next() }
        #expect(Array(held.payload) == [UInt8](repeating: 0x11, count: 64))
        #expect(next?.header.messageID == 9)
        f.unpin()
    }
}

/// `VFIOUserByteAccumulator` (a client's deferred replies): own bytes and external ranges leave in the order they
/// were collected, then the extra bytes, whatever the number of ranges (one `sendmsg` per 1024 of them, the most
/// `csystem_sendv` takes).
@Suite struct ByteAccumulatorTests {
    @Test(arguments: [1, 1023, 1024, 2049])
    func everyRangeLeavesInOrderAcrossTheGatherLimit(externalRanges: Int) throws {
        var fds: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0)
        let a = VFIOUserSocket(owning: fds[0]), b = VFIOUserSocket(owning: fds[1])
        // Each external range is 2 bytes of `guest`; own bytes (one per 100 ranges) come in between.
        let guest = (0..<(2 * externalRanges)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
        var expected: [UInt8] = []
        let acc = VFIOUserByteAccumulator(capacity: 8)
        try guest.withUnsafeBytes { g in
            for i in 0..<externalRanges {
                if i % 100 == 0 {
                    acc.extend(by: 1).storeBytes(of: 0xEE, as: UInt8.self)
                    expected.append(0xEE)
                }
                acc.append(external: g.baseAddress! + 2 * i, length: 2)
                expected += guest[(2 * i)..<(2 * i + 2)]
            }
            let extra: [UInt8] = [0xA1, 0xA2, 0xA3]
            expected += extra
            #expect(acc.count == expected.count - extra.count)
            try extra.withUnsafeBytes { e in try acc.send(on: a, then: e) }
        }
        var got = [UInt8](repeating: 0, count: expected.count)
        var done = 0
        while done < got.count {
            let n = got.withUnsafeMutableBytes { Glibc.recv(b.fd, $0.baseAddress! + done, $0.count - done, 0) }
            try #require(n > 0)
            done += n
        }
        #expect(got == expected)
        acc.removeAll()
        #expect(acc.count == 0)
    }
}
