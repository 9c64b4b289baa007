import Foundation
import Testing
import PCI
import VFIO
import VFIOTestSupport
@testable import VFIOUser

// Load and disconnect robustness (issue 9). The server serves one client at a time, so "many clients" are sequential
// reconnects. `swift test` runs a scaled-down load (64 clients x 300 messages); the full size the issue asks for is
//
//     VFU_LOAD_CLIENTS=64 VFU_LOAD_MESSAGES=100000 swift test --filter RobustnessLoadTests
//
// (the README has the figures).

private typealias Reg = TestPCIFunction.Reg
private typealias C = VFIOUserCommand
private let bar2: UInt32 = 2
private let cfg = VFIOPCIRegion.config.rawValue

private func env(_ name: String, _ fallback: Int) -> Int {
    ProcessInfo.processInfo.environment[name].flatMap(Int.init) ?? fallback
}

@Suite(.serialized) struct RobustnessLoadTests {
    /// Many clients in turn, each sending a mix of messages and checking every answer: no error, no leak.
    @Test func manyClientsManyMessages() throws {
        let clients = env("VFU_LOAD_CLIENTS", 64), messages = env("VFU_LOAD_MESSAGES", 300)
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let guest = try VFIOSharedMemory(name: "load-guest", size: 0x10000)
        var fds0 = 0, rss0 = 0
        var sent = 0, errors = 0
        let start = Date()
        for n in 0..<clients {
            if n == 1 { fds0 = openFDCount(); rss0 = residentBytes() }   // after the first client warmed everything up
            let c = try h.client()
            var i = 0
            while i < messages {
                do {
                    switch i % 10 {
                    case 0, 1, 2:
                        let v = UInt32(truncatingIfNeeded: n &* 100_003 &+ i)
                        try c.write(region: bar2, offset: Reg.scratch, data: le32(v))
                        guard try c.read(region: bar2, offset: Reg.scratch, count: 4) == le32(v) else { errors += 1; break }
                        i += 1   // two messages
                    case 3: guard try c.read(region: cfg, offset: 0, count: 4) == le32(0x5678_1234) else { errors += 1; break }
                    case 4: guard try c.irqInfo(2).count == 4 else { errors += 1; break }
                    case 5: try c.write(region: 0, offset: UInt64(i % 0x1000), data: [UInt8(truncatingIfNeeded: i)], posted: true)
                    case 6: guard try c.deviceInfo().numRegions == 9 else { errors += 1; break }
                    case 7:
                        try c.dmaMap(address: 0x4000_0000, size: 0x10000, memory: guest)
                        try c.dmaUnmap(address: 0x4000_0000, size: 0x10000)
                        i += 1
                    case 8: try c.writeMultiple([(bar2, 0x40, [1, 2, 3, 4]), (bar2, 0x44, [5, 6, 7, 8])])
                    default: guard try c.read(region: 0, offset: 0x100, count: 64).count == 64 else { errors += 1; break }
                    }
                } catch {
                    errors += 1
                    Issue.record("client \(n) message \(i): \(error)")
                    if errors > 10 { return }
                }
                i += 1
            }
            sent += i
            c.close()
            #expect(h.waitClientsServed(n + 1))
        }
        let seconds = Date().timeIntervalSince(start)
        let fds1 = openFDCount(), rss1 = residentBytes()
        print("load: \(clients) clients x \(messages) messages = \(sent) messages in \(String(format: "%.2f", seconds)) s "
              + "(\(Int(Double(sent) / max(seconds, 1e-9))) msg/s), errors \(errors), fds \(fds0) -> \(fds1), "
              + "RSS \(rss0 >> 20) -> \(rss1 >> 20) MiB")
        #expect(errors == 0)
        #expect(sent >= clients * messages)
        // The count is process-wide and other suites open fds in parallel: strictly only under
        // VFU_FD_LEAK_CHECK; otherwise below one fd per two clients, which a per-connection leak
        // (at least one fd for each of the clients) still exceeds.
        #expect(fds1 - fds0 <= (strictFDLeakCheck ? 8 : clients / 2), "open fds \(fds0) -> \(fds1)")
        #expect(rss1 - rss0 < 32 << 20, "resident memory \(rss0) -> \(rss1)")
    }

    /// A client disconnects while the server is in the middle of a message-based DMA on its behalf. The server must
    /// unmap every region (shared-fd mappings included: their fds closed), close the IRQ eventfds, keep the device
    /// state, and serve the next client, which continues with DMA of its own. Repeated to catch slow leaks.
    @Test func disconnectInTheMiddleOfDMA() throws {
        let rounds = env("VFU_DISCONNECT_ROUNDS", 10)
        let h = try ServerHarness()
        defer { _ = h.stop() }
        let probe = "mid-dma-probe"
        var served = 0
        var fds0 = 0
        for round in 0..<rounds {
            if round == 1 { fds0 = openFDCount() }
            do {
                let p = try RawPeer(path: h.path)
                guard case .reply = p.negotiate() else { Issue.record("VERSION"); return }
                // A message-based mapping (the DMA the server will be in the middle of), a shared-fd mapping, an IRQ.
                guard case .reply = p.exchange(C.dmaMap.rawValue, le32(32) + le32(3) + le64(0) + le64(0x10000) + le64(0x10000)) else {
                    Issue.record("DMA_MAP"); return
                }
                let shared = try probeMemfd(probe, size: 0x1000)
                guard case .reply = p.exchange(C.dmaMap.rawValue, le32(32) + le32(3) + le64(0) + le64(0x100000) + le64(0x1000), fds: [shared.fd]) else {
                    Issue.record("DMA_MAP fd"); return
                }
                let irq = try VFIOEventFD.create()
                guard case .reply = p.exchange(C.deviceSetIRQs.rawValue, le32(20) + le32((VFIOIRQSetFlags.dataEventFD.rawValue | VFIOIRQSetFlags.actionTrigger.rawValue))
                                               + le32(VFIOPCIIRQ.msix.rawValue) + le32(0) + le32(1), fds: [irq.fd]) else {
                    Issue.record("SET_IRQS"); return
                }
                #expect(h.device.irqs.isEnabled(VFIOPCIIRQ.msix.rawValue))
                func write(_ off: UInt64, _ data: [UInt8]) -> Outcome {
                    p.exchange(C.regionWrite.rawValue, le64(off) + le32(bar2) + le32(UInt32(data.count)) + data)
                }
                _ = write(Reg.scratch, le32(0xC0FF_EE00 | UInt32(round)))
                _ = write(Reg.src, le64(0x10000)); _ = write(Reg.dst, le64(0x18000)); _ = write(Reg.len, le32(0x8000))
                try p.send(C.regionWrite.rawValue, le64(Reg.doorbell) + le32(bar2) + le32(4) + le32(1))
                // The server is now waiting on us for the DMA_READ data. Disconnect.
                // (The server may acknowledge the doorbell write first, as QEMU expects.)
                var gotDMARead = false
                for _ in 0..<3 {
                    guard case .reply(let m, _) = p.receive() else { break }
                    if m.isCommand && m.command == C.dmaRead.rawValue { gotDMARead = true; break }
                }
                guard gotDMARead else { Issue.record("no DMA_READ"); return }
                p.socket.close()
            }
            served += 1
            #expect(h.waitClientsServed(served))
            // Everything of that client is gone; the device state is not.
            #expect(h.device.dma == nil)
            #expect(!h.device.irqs.isEnabled(VFIOPCIIRQ.msix.rawValue))
            #expect(h.device.irqs.eventfd(index: VFIOPCIIRQ.msix.rawValue, vector: 0) == nil)
            #expect(openMemfdCount(named: probe) == 0, "the server kept the shared DMA fd of a gone client")
            // The next client continues: state kept, DMA works for it.
            let c = try h.client()
            #expect(try c.read(region: bar2, offset: Reg.scratch, count: 4) == le32(0xC0FF_EE00 | UInt32(round)))
            #expect(try c.read(region: bar2, offset: Reg.status, count: 4) == le32(2))   // the interrupted DMA failed
            let mem = try VFIOSharedMemory(name: "next-guest", size: 0x2000)
            mem.write(offset: 0, data: Array(0..<32))
            try c.dmaMap(address: 0x200000, size: 0x2000, memory: mem)
            try c.write(region: bar2, offset: Reg.src, data: le64(0x200000))
            try c.write(region: bar2, offset: Reg.dst, data: le64(0x201000))
            try c.write(region: bar2, offset: Reg.len, data: le32(32))
            try c.write(region: bar2, offset: Reg.doorbell, data: le32(1))
            #expect(try c.read(region: bar2, offset: Reg.status, count: 4) == le32(1))
            #expect(mem.read(offset: 0x1000, count: 32) == Array(0..<32))
            c.close()
            served += 1
            #expect(h.waitClientsServed(served))
        }
        // The exact leak check is per client above (the probe memfd of every gone client is closed). The
        // process-wide count also moves with the suites running in parallel in this process (9 seen in CI), so
        // it only catches a gross per-round leak, as the hostile suite's bound does.
        #expect(openFDCount() - fds0 <= 64)
    }
}
