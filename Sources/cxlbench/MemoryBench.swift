#if canImport(Glibc)
import Glibc
#endif
import Foundation
import VFIO
import VFIOCXL
import VFIOUser

// Figure 2: data movement. Device DMA to and from guest memory (DMA_READ/DMA_WRITE
// messages when the client registered memory without an fd; a direct copy when it
// passed the fd), and CPU access to device memory through the mmap'd vfio-cxl memory
// region. Baseline: memcpy of the same size between two private buffers.

/// Best-of-blocks copy throughput: runs `body` (which moves `bytes`) `iterations`
/// times in blocks and returns bytes per second over the fastest block and the median block.
private func throughput(bytes: Int, iterations: Int, blocks: Int = 5, _ body: () throws -> Void) rethrows -> (best: Double, median: Double) {
    try body()
    var rates: [Double] = []
    let per = max(1, iterations / blocks)
    for _ in 0..<blocks {
        let t0 = nowNanoseconds()
        for _ in 0..<per { try body() }
        let dt = Double(nowNanoseconds() - t0)
        rates.append(Double(bytes * per) / (dt / 1e9))
    }
    rates.sort()
    return (rates.last!, rates[rates.count / 2])
}

/// Per-call times of `body` (after one warm-up call): p50 and p99 of the calls, and their mean. A doorbell with its
/// DMA is a few round trips; on a shared machine a block's mean also holds whatever time other processes took the
/// CPU for, so the figure is the median call (as the latency figures are), the mean reported next to it.
private func callTimes(iterations: Int, _ body: () throws -> Void) rethrows -> (p50: Double, p99: Double, mean: Double) {
    try body()
    var samples = [UInt64](repeating: 0, count: max(1, iterations))
    let t0 = nowNanoseconds()
    for i in samples.indices {
        let s = nowNanoseconds()
        try body()
        samples[i] = nowNanoseconds() - s
    }
    let mean = Double(nowNanoseconds() - t0) / Double(samples.count)
    samples.sort()
    return (Double(samples[samples.count / 2]), Double(samples[min(samples.count - 1, samples.count * 99 / 100)]), mean)
}

/// Iterations moving about `target` bytes, at least 8.
private func iterationsFor(_ size: Int, target: Int) -> Int { max(8, target / size) }

func memoryFigures(_ ctx: BenchContext) throws -> [Figure] {
    var figures: [Figure] = []
    let target = ctx.quick ? 64 << 20 : 512 << 20
    let maxSize = 1 << 20
    let src = UnsafeMutableRawPointer.allocate(byteCount: 16 << 20, alignment: 4096)
    let dst = UnsafeMutableRawPointer.allocate(byteCount: 16 << 20, alignment: 4096)
    defer { src.deallocate(); dst.deallocate() }
    memset(src, 0x11, 16 << 20)
    memset(dst, 0x22, 16 << 20)
    func memcpyRate(_ size: Int, iterations: Int) -> Double {
        throughput(bytes: size, iterations: iterations) { memcpy(dst, src, size) }.median
    }

    try withPlacement(pinned: true) {
        let child = try VFIOUserChild()
        defer { child.stop() }
        let c = child.client
        let guest = try VFIOSharedMemory(name: "cxlbench-guest", size: 2 * maxSize)
        memset(guest.base, 0x33, 2 * maxSize)
        let viaMessages: UInt64 = 0x1_0000_0000, viaFD: UInt64 = 0x2_0000_0000
        try c.dmaMap(address: viaMessages, size: UInt64(maxSize), memory: guest, memoryOffset: 0, shareFD: false)
        try c.dmaMap(address: viaFD, size: UInt64(maxSize), memory: guest, memoryOffset: maxSize, shareFD: true)

        // Device DMA, each a doorbell REGION_WRITE whose handler moves `size` bytes.
        for (mode, base) in [("DMA messages", viaMessages), ("shared fd", viaFD)] {
            for toGuest in [false, true] {
                for size in [4096, 65536, maxSize] {
                    ctx.log("DMA \(mode) \(toGuest ? "write" : "read") \(size)")
                    let bell = BenchDMAEngine.doorbell(address: base, count: size, toGuest: toGuest)
                    let iters = max(8, iterationsFor(size, target: target / (mode == "DMA messages" ? 8 : 2)))
                    let t = try callTimes(iterations: iters) {
                        try c.write(region: dmaEngineRegion, offset: 0, data: bell)
                    }
                    let rate = Double(size) / (t.p50 / 1e9)
                    let base = memcpyRate(size, iterations: iterationsFor(size, target: target))
                    let cmd = toGuest ? "DMA_WRITE" : "DMA_READ"
                    var extra = ["doorbell_and_dma_p50_ns": t.p50, "doorbell_and_dma_p99_ns": t.p99,
                                 "doorbell_and_dma_mean_ns": t.mean, "mean_rate_bytes_per_s": Double(size) / (t.mean / 1e9)]
                    if mode == "DMA messages" && size <= 65536 {
                        // What a bare socket does with the same bytes: one round trip of a doorbell-sized request
                        // and a reply carrying the data (the floor of one doorbell with one DMA by message).
                        let echo = try EchoPeer(requestSize: 56, replySize: 64 + size)
                        defer { echo.close() }
                        let f = callTimes(iterations: iters) { echo.roundTrip() }
                        extra["socket_floor_p50_ns"] = f.p50
                        extra["socket_floor_bytes_per_s"] = Double(size) / (f.p50 / 1e9)
                    }
                    figures.append(Figure(group: "memory", name: "\(mode == "DMA messages" ? cmd : "DMA via shared fd, " + (toGuest ? "to guest" : "from guest")) \(sizeName(size)), CPU 0",
                                          unit: "B/s", value: rate, baselineName: "memcpy \(sizeName(size))", baseline: base, extra: extra))
                }
            }
        }

        // Scatter lists: a doorbell whose DMA is 16 messages of `size` bytes (a device with reads or writes
        // outstanding), each message one DMA_READ/DMA_WRITE to memory registered without an fd. The driver waits
        // for completion as a real one would: it reads the engine's count of completed doorbells until it moved
        // (the client serves the DMA requests while it waits for those reads), so each call is the whole DMA.
        for toGuest in [false, true] {
            for size in [4096, 65536] {
                let n = 16
                ctx.log("DMA scatter \(toGuest ? "write" : "read") \(n) x \(size)")
                let bell = BenchDMAEngine.doorbell(address: viaMessages, count: n * size, toGuest: toGuest, segment: size)
                let iters = max(8, iterationsFor(n * size, target: target / 8))
                func completedCount() throws -> UInt64 {
                    try c.read(region: dmaEngineRegion, offset: 0, count: 8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
                }
                var expected = try completedCount()
                let t = try callTimes(iterations: iters) {
                    try c.write(region: dmaEngineRegion, offset: 0, data: bell)
                    expected += 1
                    while try completedCount() < expected {}
                }
                let rate = Double(n * size) / (t.p50 / 1e9)
                let base = memcpyRate(n * size, iterations: iterationsFor(n * size, target: target))
                figures.append(Figure(group: "memory", name: "\(toGuest ? "DMA_WRITE" : "DMA_READ") \(sizeName(size)) x \(n) (scatter list), CPU 0",
                                      unit: "B/s", value: rate, baselineName: "memcpy \(sizeName(n * size))", baseline: base,
                                      extra: ["doorbell_and_dma_p50_ns": t.p50, "doorbell_and_dma_p99_ns": t.p99,
                                              "doorbell_and_dma_mean_ns": t.mean, "mean_rate_bytes_per_s": Double(n * size) / (t.mean / 1e9),
                                              "messages_per_doorbell": Double(n)]))
            }
        }

        // The SIGBUS guard on the server's copies through a client's mapping (`VFIOSharedMemory.copy`, which a
        // client that shrinks its file meets as EFAULT instead of a crash): a guarded copy out of the guest mapping
        // against memcpy of the same bytes, blocks interleaved, medians. What the guard adds is a few nanoseconds a
        // copy (handler check, sigsetjmp, the throwing call), next to microseconds for the doorbell around it.
        for size in [64, 4096, 65536] {
            ctx.log("guarded copy \(size)")
            let iters = iterationsFor(size, target: target / 4)
            var vs: [Double] = [], bs: [Double] = []
            for _ in 0..<3 {
                vs.append(try throughput(bytes: size, iterations: iters / 3 + 1) { try guest.copy(at: maxSize, to: dst, count: size) }.median)
                bs.append(throughput(bytes: size, iterations: iters / 3 + 1) { memcpy(dst, guest.base + maxSize, size) }.median)
            }
            let v = vs.sorted()[1], b = bs.sorted()[1]
            figures.append(Figure(group: "memory", name: "guarded copy from a client mapping \(sizeName(size))",
                                  unit: "B/s", value: v, baselineName: "memcpy \(sizeName(size)), same mapping", baseline: b,
                                  extra: ["guarded_ns_per_copy": Double(size) / v * 1e9, "memcpy_ns_per_copy": Double(size) / b * 1e9]))
        }

        // CPU access to device memory through the mmap'd region.
        let region = try c.regionInfo(VFIOCXLUAPI.memoryRegionIndex)
        guard let m = try c.mapRegion(region).first else { throw VFIOError.notSupported("device memory region not mappable") }
        let dev = m.memory.base
        memset(dev, 0x44, min(m.memory.size, 16 << 20))
        for size in [4096, 65536, 1 << 20, 16 << 20] where size <= m.memory.size {
            for write in [false, true] {
                ctx.log("mmap \(write ? "write" : "read") \(size)")
                let iters = iterationsFor(size, target: target)
                // Interleave value and baseline blocks; take medians.
                var vs: [Double] = [], bs: [Double] = []
                for _ in 0..<3 {
                    vs.append(throughput(bytes: size, iterations: iters / 3 + 1) {
                        if write { memcpy(dev, src, size) } else { memcpy(dst, dev, size) }
                    }.median)
                    bs.append(memcpyRate(size, iterations: iters / 3 + 1))
                }
                let v = vs.sorted()[1], b = bs.sorted()[1]
                figures.append(Figure(group: "memory", name: "mmap'd device memory \(write ? "write" : "read") \(sizeName(size))",
                                      unit: "B/s", value: v, baselineName: "memcpy \(sizeName(size))", baseline: b,
                                      goal: ">= 90% of memcpy", met: v >= 0.9 * b))
            }
        }
    }
    return figures
}

func sizeName(_ n: Int) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 { return "\(n >> 20) MiB" }
    if n >= 1024 && n % 1024 == 0 { return "\(n >> 10) KiB" }
    return "\(n) B"
}
