import Foundation
import TestSupport
import Testing
@testable import VFIOUser
#if canImport(Glibc)
import Glibc
#endif

/// `scripts/vfu-bench-client.c`, the independent C client cxlbench publishes figures with: it must speak vfio-user
/// to our server, and it must refuse a wrong reply rather than time it.
@Suite(.serialized) struct CBenchClientTests {
    static let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/vfu-bench-client.c").path

    /// Compiles the client with `cc`, or the Swift toolchain's `clang` when there is no `cc`.
    static func build() throws -> String {
        let out = NSTemporaryDirectory() + "vfu-bench-client-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        for compiler in ["cc", "clang"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = [compiler, "-O2", "-Wall", "-Werror", "-o", out, source]
            p.standardError = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            if p.terminationStatus == 0 { return out }
        }
        throw VFIOUserError.state("neither cc nor clang compiled \(source)")
    }

    static func run(_ binary: String, _ args: [String]) throws -> (status: Int32, output: String) { try runProcess(binary, args) }

    @Test func measuresConfigReadsAgainstOurServer() throws {
        let binary = try Self.build()
        defer { unlink(binary) }
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let (status, output) = try Self.run(binary, ["-n", "2000", "-b", "100", "-w", "50", "vfu:\(h.path)"])
        #expect(status == 0)
        let f = output.split(separator: "\n").first?.split(separator: " ") ?? []
        #expect(f.count == 6 && f[0] == "vfu:\(h.path)")
        if f.count == 6, let mean = Double(f[1]), let p50 = Double(f[2]), let p99 = Double(f[3]), let mn = Double(f[4]) {
            #expect(mn > 0 && mn <= p50 && p50 <= p99 && mean > 0)
            #expect(f[5] == "2000")
        } else {
            Issue.record("unexpected output: \(output)")
        }
    }

    @Test func refusesAReplyWithTheWrongMessageID() throws {
        let binary = try Self.build()
        defer { unlink(binary) }
        let path = NSTemporaryDirectory() + "vfu-cclient-bad-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let listener = try UNIXListener.bind(path: path)
        defer { listener.close() }
        // A server that negotiates properly, then answers the first REGION_READ with another message id.
        let server = Thread {
            let fd = accept(listener.fd, nil, nil)
            guard fd >= 0 else { return }
            let s = VFIOUserSocket(owning: fd)
            guard (try? s.waitReadable(timeoutMilliseconds: 5000)) == true,
                  let version = try? s.receive(maxFDs: 0, timeoutMilliseconds: 5000) else { return }
            let reply = VFIOUserVersion(major: 0, minor: 2, capabilities: nil).encode()
            try? s.send(VFIOUserFrame.reply(to: version.header, payload: reply).encode())
            guard (try? s.waitReadable(timeoutMilliseconds: 5000)) == true,
                  let read = try? s.receive(maxFDs: 0, timeoutMilliseconds: 5000) else { return }
            var wrong = read.header
            wrong.messageID &+= 1
            try? s.send(VFIOUserFrame.reply(to: wrong, payload: VFIOUserRegionAccess(offset: 0, region: 7, count: 4, data: [0, 0, 0, 0]).encode()).encode())
            _ = try? s.waitReadable(timeoutMilliseconds: 2000)
        }
        server.start()
        let (status, _) = try Self.run(binary, ["-n", "10", "-w", "0", "vfu:\(path)"])
        #expect(status == 1)
    }
}
