import Foundation
import Testing
@testable import VFIOUser

/// Runs the independent Python client (QEMU 10.2-like: version 0.0, posted NO_REPLY writes, its capability JSON)
/// against an in-process server on a temp socket.
@Suite(.serialized) struct PythonClientTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("python/qemu_like_client.py").path

    /// Set by .ci/run, which installs python3: there the test must run, never skip.
    static let required = ProcessInfo.processInfo.environment["CXLKIT_REQUIRE_PYTHON"] == "1"

    static func python() -> String? {
        for p in ["/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3"] where FileManager.default.isExecutableFile(atPath: p) { return p }
        return nil
    }

    static func run(_ args: [String], timeout: TimeInterval = 60) throws -> (Int32, String, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python()!)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        return (p.terminationStatus, o, e)
    }

    @Test(.enabled(if: python() != nil || required, "python3 not installed: the QEMU-like Python client is skipped"))
    func qemuLikePythonClient() throws {
        try #require(Self.python() != nil, "python3 is required here (CXLKIT_REQUIRE_PYTHON=1) but not installed")
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let (status, out, err) = try Self.run([Self.script, h.path])
        #expect(status == 0, "python client failed: \(out) \(err)")
        #expect(out.hasPrefix("OK"))
        // The server survived the client's disconnect, kept device state, and serves the next client.
        #expect(h.waitClientsServed(1))
        #expect(!h.device.irqs.isEnabled(2))
        let c = try h.client()
        #expect(try c.read(region: 2, offset: 0, count: 4) == le32(0xBEEF))
        c.close()   // one client at a time: the next one waits in the listen backlog until then
        // And the Python client can connect again.
        let (status2, out2, err2) = try Self.run([Self.script, h.path])
        #expect(status2 == 0, "second python run: \(out2) \(err2)")
    }
}
