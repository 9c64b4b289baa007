import Foundation
import Logging
import PCI
import VFIO
import VFIOTestSupport
@testable import VFIOUser

/// A server on a temp socket, serving a VFIOPCIDevice around TestPCIFunction, run on its own thread.
final class ServerHarness: @unchecked Sendable {
    let function: TestPCIFunction
    let device: VFIOPCIDevice
    let server: VFIOUserServer
    let path: String
    private let done = DispatchSemaphore(value: 0)
    private(set) var runError: VFIOUserError?

    init(configuration: VFIOUserServerConfiguration = .init(), path: String? = nil) throws {
        function = try TestPCIFunction()
        device = try VFIOPCIDevice(function: function)
        let dev = device
        function.dma = { [weak dev] in dev?.dma }
        self.path = path ?? NSTemporaryDirectory() + "vfu-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var logger = Logger(label: "test.vfio-user.server")
        logger.logLevel = ProcessInfo.processInfo.environment["VFU_DEBUG"] != nil ? .debug : .warning
        server = try VFIOUserServer(device: device, socketPath: self.path, logger: logger, configuration: configuration)
        let t = Thread { [self] in
            do throws(VFIOUserError) { try server.run() } catch { runError = error }
            done.signal()
        }
        t.start()
    }

    func client(_ configure: (inout VFIOUserClientConfiguration) -> Void = { _ in }) throws -> VFIOUserClient {
        var c = VFIOUserClientConfiguration()
        c.timeoutMilliseconds = 5000
        configure(&c)
        return try VFIOUserClient(socketPath: path, configuration: c)
    }

    /// Stops the server and waits for run() to return.
    func stop() -> Bool {
        server.stop()
        return done.wait(timeout: .now() + 10) == .success
    }

    /// Waits until the server has finished `n` client connections.
    func waitClientsServed(_ n: Int) -> Bool {
        for _ in 0..<500 { if server.clientsServed >= n { return true }; usleep(10_000) }
        return false
    }
}

func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt32(8 * $0)) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * $0)) } }
func u32(_ b: [UInt8]) -> UInt32 { b.prefix(4).enumerated().reduce(0) { $0 | UInt32($1.element) << UInt32(8 * $1.offset) } }
