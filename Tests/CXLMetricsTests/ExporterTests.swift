import Testing
import TestSupport
import Foundation
import NIOCore
@testable import CXLMetrics
#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP client on 127.0.0.1 (the only address these tests touch).
final class RawClient {
    let fd: Int32
    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
        // A safety net so a broken server fails the test instead of hanging it.
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    deinit { close(fd) }

    func send(_ s: String) { send(Array(s.utf8)) }
    func send(_ b: [UInt8]) { _ = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    /// Everything until the server closes the connection.
    func readAll() -> String {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }
}

@Suite("cxlkit exporter: the HTTP listener", .serialized)
struct ExporterTests {
    static let body = "# HELP cxlkit_target_up up\n# TYPE cxlkit_target_up gauge\ncxlkit_target_up{device=\"t\"} 1.0\n"

    func exporter(_ limits: ExporterLimits = ExporterLimits()) throws -> MetricsExporter {
        try MetricsExporter(host: "127.0.0.1", port: 0, limits: limits) { format in
            format == .openMetrics ? CXLMetricsExposition.openMetrics(Self.body) : Self.body
        }
    }

    /// Polls a condition the server reaches asynchronously (bounded count, no timing claim).
    func eventually(_ what: () -> Bool) -> Bool {
        for _ in 0..<3000 { if what() { return true }; usleep(2000) }
        return what()
    }

    @Test func getMetricsServesTheNegotiatedFormat() throws {
        let e = try exporter()
        defer { e.close() }
        let c = try RawClient(port: e.port)
        c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain;version=0.0.4\r\n\r\n")
        let r = c.readAll()
        #expect(r.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(r.lowercased().contains("content-type: text/plain; version=0.0.4; charset=utf-8"))
        #expect(r.hasSuffix(Self.body))
        let o = try RawClient(port: e.port)
        o.send("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n")
        let ro = o.readAll()
        #expect(ro.lowercased().contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"))
        #expect(ro.hasSuffix("# EOF\n"))
    }

    @Test func otherPathsAndMethodsAreRefused() throws {
        let e = try exporter()
        defer { e.close() }
        let a = try RawClient(port: e.port)
        a.send("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(a.readAll().hasPrefix("HTTP/1.1 404 Not Found"))
        let b = try RawClient(port: e.port)
        b.send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        #expect(b.readAll().hasPrefix("HTTP/1.1 405 Method Not Allowed"))
        let h = try RawClient(port: e.port)
        h.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        let hr = h.readAll()
        #expect(hr.hasPrefix("HTTP/1.1 200 OK") && hr.hasSuffix("\r\n\r\n"))
    }

    /// A client that never stops sending headers is answered 431 and cut off at the limit.
    @Test func anOversizedRequestIsCutOff() throws {
        var limits = ExporterLimits()
        limits.maxRequestBytes = 1024
        let e = try exporter(limits)
        defer { e.close() }
        let c = try RawClient(port: e.port)
        c.send("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: " + String(repeating: "a", count: 4000))
        #expect(c.readAll().hasPrefix("HTTP/1.1 431 Request Header Fields Too Large"))
    }

    @Test func garbageIsABadRequest() throws {
        let e = try exporter()
        defer { e.close() }
        let c = try RawClient(port: e.port)
        // Seeded bytes: printed so a failure can be replayed.
        var rng = SplitMix64(seed: 18)
        print("garbage seed 18")
        c.send((0..<200).map { _ in UInt8(truncatingIfNeeded: rng.next()) } + Array("\r\n\r\n".utf8))
        #expect(c.readAll().hasPrefix("HTTP/1.1 400 Bad Request"))
    }

    /// Connections past the limit get 503 at once; those within it are served; a
    /// client that sends nothing is closed when its lifetime runs out, freeing its slot.
    @Test func connectionsAreBoundedAndIdleOnesTimeOut() throws {
        var limits = ExporterLimits()
        limits.maxConnections = 2
        limits.connectionTimeout = .milliseconds(300)
        let e = try exporter(limits)
        defer { e.close() }
        let idle1 = try RawClient(port: e.port)
        let idle2 = try RawClient(port: e.port)
        #expect(eventually { e.openConnections == 2 })
        let third = try RawClient(port: e.port)
        let r = third.readAll()
        #expect(r.hasPrefix("HTTP/1.1 503 Service Unavailable"), "\(r)")
        #expect(r.contains("too many connections (limit 2)"))
        // The idle ones are closed by the server (read returns EOF), with nothing sent.
        #expect(idle1.readAll() == "")
        #expect(idle2.readAll() == "")
        #expect(eventually { e.openConnections == 0 })
        let next = try RawClient(port: e.port)
        next.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(next.readAll().hasPrefix("HTTP/1.1 200 OK"))
    }

    @Test func manyClientsInTurnLeaveNothingOpen() throws {
        let e = try exporter()
        defer { e.close() }
        for i in 0..<50 {
            let c = try RawClient(port: e.port)
            if i % 2 == 0 { c.send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); #expect(c.readAll().hasPrefix("HTTP/1.1 200")) }
        }
        #expect(eventually { e.openConnections == 0 })
    }
}

