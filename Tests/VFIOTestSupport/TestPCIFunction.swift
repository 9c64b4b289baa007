import Foundation
import PCI
import VFIO

/// A small PCIe endpoint for tests (not the CXL device): config space with PCIe (FLR-capable), MSI (4 vectors,
/// 64-bit, per-vector masking) and MSI-X (4 vectors, table at BAR0+0x2000, PBA at BAR0+0x3000) capabilities,
/// BAR0 = 32 KiB memfd-backed memory (mmap-able), BAR2 = 4 KiB of registers:
///   0x00 scratch (u32, cleared by reset)   0x08 doorbell: write 1 = DMA copy len bytes src→dst, then raise vector 0
///   0x10 src (u64)  0x18 dst (u64)  0x20 len (u32)  0x24 status (u32: 1 = done, 2 = DMA error)
///   0x28 raise: write n = raise interrupt vector n
///   doorbell value 2 = DMA-read len bytes at src and store their byte sum in 0x30 (no DMA write)
///   doorbell value 3 = scatter-gather copy: len bytes at src read as pieces of 0x38 (u32) bytes
///   (`read(segments:)`), written to dst with the pieces in reverse order (`write(segments:)`)
package final class TestPCIFunction: VFIOMappablePCIFunction, @unchecked Sendable {
    package static let vendor: UInt16 = 0x1234
    package static let device: UInt16 = 0x5678
    package static let bar0Size: UInt64 = 0x8000
    package static let bar2Size: UInt64 = 0x1000
    package static let msixTableOffset: UInt32 = 0x2000
    package static let msixPBAOffset: UInt32 = 0x3000
    package enum Reg { package static let scratch: UInt64 = 0, doorbell: UInt64 = 8, src: UInt64 = 0x10, dst: UInt64 = 0x18, len: UInt64 = 0x20, status: UInt64 = 0x24, raise: UInt64 = 0x28, checksum: UInt64 = 0x30, segment: UInt64 = 0x38 }

    package let lock = NSRecursiveLock()
    package var config: [UInt8]
    package var writable: [UInt8]
    package let bar0: VFIOSharedMemory
    package var regs = [UInt8](repeating: 0, count: Int(bar2Size))
    package var resets = 0
    package var sink: PCIInterruptSink?
    /// Where DMA goes (set by the test after wrapping the function).
    package var dma: () -> (any VFIODMAMemory)? = { nil }

    package init() throws {
        bar0 = try VFIOSharedMemory(name: "test-bar0", size: Int(Self.bar0Size))
        config = [UInt8](repeating: 0, count: 4096)
        writable = [UInt8](repeating: 0, count: 4096)
        func w16(_ o: Int, _ v: UInt16) { config[o] = UInt8(v & 0xff); config[o + 1] = UInt8(v >> 8) }
        func w32(_ o: Int, _ v: UInt32) { for i in 0..<4 { config[o + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) } }
        w16(0, Self.vendor); w16(2, Self.device)
        w16(6, 0x0010)                      // status: capabilities list
        config[8] = 1                       // revision
        config[0x0b] = 0xff                 // class: unassigned
        w32(0x10, 0x4)                      // BAR0 64-bit memory (the adapter virtualises BARs anyway)
        w32(0x18, 0x0)                      // BAR2 32-bit memory
        w16(0x2c, 0x1af4); w16(0x2e, 0x0001)
        config[0x34] = 0x40
        config[0x3d] = 1                    // INTA
        // PCI Express capability at 0x40 -> 0x60
        config[0x40] = 0x10; config[0x41] = 0x60
        w16(0x42, 0x0002)                   // version 2, endpoint
        w32(0x44, 1 << 28)                  // FLR capable
        w16(0x48, 0x2810)                   // device control reset values
        // MSI at 0x60 -> 0x78: 64-bit, per-vector masking, 4 vectors capable
        config[0x60] = 0x05; config[0x61] = 0x78
        w16(0x62, (1 << 8) | (1 << 7) | (2 << 1))
        // MSI-X at 0x78 -> end: 4 entries, table BIR 0 @0x2000, PBA BIR 0 @0x3000
        config[0x78] = 0x11; config[0x79] = 0x00
        w16(0x7a, 3)
        w32(0x7c, Self.msixTableOffset | 0)
        w32(0x80, Self.msixPBAOffset | 0)
        for o in [0x04, 0x05, 0x0c, 0x48, 0x49] { writable[o] = 0xff }
    }

    package var address: String { "test:\(Self.vendor):\(Self.device)" }
    package var configSize: Int { 4096 }

    package func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        lock.lock(); defer { lock.unlock() }
        guard [1, 2, 4].contains(width), offset >= 0, offset % width == 0, offset + width <= config.count else { throw .outOfRange("config \(offset)/\(width)") }
        var v: UInt32 = 0
        for i in 0..<width { v |= UInt32(config[offset + i]) << UInt32(8 * i) }
        return v
    }

    package func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        lock.lock(); defer { lock.unlock() }
        guard [1, 2, 4].contains(width), offset >= 0, offset % width == 0, offset + width <= config.count else { throw .outOfRange("config \(offset)/\(width)") }
        for i in 0..<width {
            let b = UInt8(truncatingIfNeeded: value >> UInt32(8 * i))
            config[offset + i] = (config[offset + i] & ~writable[offset + i]) | (b & writable[offset + i])
        }
    }

    package var bars: [BARDescription] {
        [BARDescription(index: 0, kind: .memory64, prefetchable: true, size: Self.bar0Size),
         BARDescription(index: 2, kind: .memory32, prefetchable: false, size: Self.bar2Size)]
    }

    package func mmapBacking(bar: Int) -> VFIORegionMapping? { bar == 0 ? VFIORegionMapping(fd: bar0.fd, fileOffset: 0) : nil }

    package func reg64(_ o: UInt64) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(regs[Int(o) + $1]) << UInt64(8 * $1) } }
    package func setReg(_ o: UInt64, width: Int, _ v: UInt64) { for i in 0..<width { regs[Int(o) + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) } }

    package func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        switch bar {
        case 0:
            guard let b = bar0.read(offset: Int(offset), count: width) else { throw .outOfRange("bar0") }
            return b.enumerated().reduce(0) { $0 | UInt64($1.element) << UInt64(8 * $1.offset) }
        case 2:
            guard offset + UInt64(width) <= Self.bar2Size else { throw .outOfRange("bar2") }
            return (0..<width).reduce(0) { $0 | UInt64(regs[Int(offset) + $1]) << UInt64(8 * $1) }
        default: throw .noSuchBAR(bar)
        }
    }

    package func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        lock.lock()
        switch bar {
        case 0:
            defer { lock.unlock() }
            let bytes = (0..<width).map { UInt8(truncatingIfNeeded: value >> UInt64(8 * $0)) }
            guard bar0.write(offset: Int(offset), data: bytes) else { throw .outOfRange("bar0") }
        case 2:
            guard offset + UInt64(width) <= Self.bar2Size else { lock.unlock(); throw .outOfRange("bar2") }
            setReg(offset, width: width, value)
            let sink = self.sink
            lock.unlock()
            if offset == Reg.doorbell && (value == 1 || value == 2) { doorbell(copy: value == 1) }
            if offset == Reg.doorbell && value == 3 { scatterDoorbell() }
            if offset == Reg.raise { sink?(Int(value)) }
        default:
            lock.unlock()
            throw .noSuchBAR(bar)
        }
    }

    private func scatterDoorbell() {
        lock.lock()
        let src = reg64(Reg.src), dst = reg64(Reg.dst), len = Int(reg64(Reg.len) & 0xffff_ffff)
        let seg = Int(reg64(Reg.segment) & 0xffff_ffff)
        let sink = self.sink
        lock.unlock()
        var status: UInt64 = 2
        if let dma = dma(), seg > 0, len % seg == 0 {
            let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(1, len), alignment: 8)
            defer { buf.deallocate() }
            let n = len / seg
            func piece(_ i: Int) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: buf[(i * seg)..<((i + 1) * seg)]) }
            do {
                try dma.read(segments: (0..<n).map { VFIODMASegment(address: src + UInt64($0 * seg), buffer: piece($0)) })
                try dma.write(segments: (0..<n).map { VFIODMASegment(address: dst + UInt64((n - 1 - $0) * seg), buffer: piece($0)) })
                status = 1
            } catch {
                if ProcessInfo.processInfo.environment["VFU_DEBUG"] != nil { print("TestPCIFunction DMA error: \(error)") }
            }
        }
        lock.lock(); setReg(Reg.status, width: 4, status); lock.unlock()
        sink?(0)
    }

    private func doorbell(copy: Bool) {
        lock.lock()
        let src = reg64(Reg.src), dst = reg64(Reg.dst), len = Int(reg64(Reg.len) & 0xffff_ffff)
        let sink = self.sink
        lock.unlock()
        var status: UInt64 = 1
        if let dma = dma() {
            do {
                let data = try dma.read(address: src, count: len)
                if copy {
                    try dma.write(address: dst, data: data)
                } else {
                    let sum = data.reduce(UInt32(0)) { $0 &+ UInt32($1) }
                    lock.lock(); setReg(Reg.checksum, width: 4, UInt64(sum)); lock.unlock()
                }
            } catch {
                status = 2
                if ProcessInfo.processInfo.environment["VFU_DEBUG"] != nil { print("TestPCIFunction DMA error: \(error)") }
            }
        } else { status = 2 }
        lock.lock(); setReg(Reg.status, width: 4, status); lock.unlock()
        sink?(0)
    }

    package var resetMethods: [PCIResetMethod] { [.flr] }

    package func reset(_ method: PCIResetMethod) throws(PCIError) {
        lock.lock(); defer { lock.unlock() }
        guard method == .flr else { throw .resetUnsupported(method.rawValue) }
        resets += 1
        regs = [UInt8](repeating: 0, count: Int(Self.bar2Size))
        config[4] = 0; config[5] = 0
        config[0x48] = 0x10; config[0x49] = 0x28
    }

    package func setInterruptSink(_ sink: PCIInterruptSink?) { lock.lock(); self.sink = sink; lock.unlock() }
}
