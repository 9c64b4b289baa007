import Testing
import TestSupport
import PCI
import CXL
@testable import CXLKitCommands

/// A component block with an HDM decoder capability holding the given decoders.
func hdmBlock(decoders: [(base: UInt64, size: UInt64, control: [String: UInt64], skipOrTargets: (UInt64, UInt64))],
              capability: [String: UInt64] = [:], globalControl: [String: UInt64] = ["HDM Decoder Enable": 1],
              countEncoding: UInt64? = nil, ras: (ue: UInt64, ce: UInt64)? = nil) -> [UInt8] {
    var b = ComponentBlockBuilder()
    let hdmPointer = 0x100
    let hdm = ComponentRegisterBlock.cacheMemOffset + hdmPointer
    if let ras {
        let rasPointer = 0x80, r = ComponentRegisterBlock.cacheMemOffset + rasPointer
        b.caps.append((CacheMemCapabilityID.ras.rawValue, 2, rasPointer))
        b.write32(r + RASCapability.uncorrectableStatus.offset, ras.ue)
        b.write32(r + RASCapability.correctableStatus.offset, ras.ce)
        b.set(RASCapability.errorCapabilityControl, at: r, ["First Error Pointer": 7])
    }
    b.caps.append((CacheMemCapabilityID.hdmDecoder.rawValue, 3, hdmPointer))
    let enc = countEncoding ?? HDMDecoderCapability.decoderCounts.first { $0.value == max(decoders.count, 1) }!.key
    b.set(HDMDecoderCapability.capability, at: hdm, capability.merging(["Decoder Count": enc, "Target Count": 8]) { $1 })
    b.set(HDMDecoderCapability.globalControl, at: hdm, globalControl)
    for (n, d) in decoders.enumerated() {
        let regs = HDMDecoderCapability.decoderRegisters(n, endpoint: true)
        b.set(regs[0], at: hdm, ["Memory Base Low": (d.base >> 28) & 0xF])
        b.set(regs[1], at: hdm, ["Memory Base High": d.base >> 32])
        b.set(regs[2], at: hdm, ["Memory Size Low": (d.size >> 28) & 0xF])
        b.set(regs[3], at: hdm, ["Memory Size High": d.size >> 32])
        b.set(regs[4], at: hdm, d.control)
        b.write32(hdm + regs[5].offset, d.skipOrTargets.0)
        b.write32(hdm + regs[6].offset, d.skipOrTargets.1)
    }
    b.finish()
    return b.bytes
}

@Suite("Component registers")
struct ComponentRegisterTests {
    @Test func qemuRegionEndpointDecoder() throws {
        let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: try fixture("qemu-cxl/region/endpoint/block-component-bar0-0x0.bin")), endpoint: true)
        #expect(d.findings.isEmpty)
        #expect(d.capabilities.map(\.id) == [2, 4, 5])
        #expect(d.capabilities.map(\.blockOffset) == [0x1080, 0x10D8, 0x1110])
        let hdm = try #require(d.hdm)
        #expect(hdm.decoderCount == 1)
        let dec = try #require(hdm.decoders.first)
        #expect(dec.base == 0x4_9000_0000 && dec.size == 0x1000_0000)
        #expect(dec.committed && !dec.commit && !dec.lockOnCommit && !dec.errorNotCommitted)
        #expect(dec.targetType == .hdmH && dec.ways == 1 && dec.granularity == 256 && dec.dpaSkip == 0)
        // Reset state: everything back to zero.
        let r = ComponentRegisterDecode(reader: ImageBlockReader(bytes: try fixture("qemu-cxl/reset/endpoint/block-component-bar0-0x0.bin")), endpoint: true)
        #expect(r.hdm?.decoders.first?.committed == false && r.hdm?.globalControl == 0)
    }

    /// decode through the command path: config.bin plus the captured block as BAR0.
    @Test func qemuRegionThroughTargetResolver() throws {
        var resolver = TargetResolver()
        resolver.options.barImages = [0: (0, fixtureURL("qemu-cxl/region/endpoint/block-component-bar0-0x0.bin").path)]
        let targets = try resolver.resolve(fixtureURL("qemu-cxl/region/endpoint/config.bin").path)
        let text = CXLKit.decode(targets, json: false, verbosity: 2)
        #expect(text.contains("\tCXL Component Registers: BAR0+0000000000000000 (Register Locator Block1)\n"))
        #expect(text.contains("\t\t\tDecoder0:\tBase 0000000490000000 Size 0000000010000000 [size=256M]\n"))
        #expect(text.contains("LockOnCommit- Commit- Committed+ ErrNotCommitted- Type=HDM-H\n"))
        let json = CXLKit.decode(targets, json: true, verbosity: 2)
        #expect(json.contains("\"target_type\": \"HDM-H\""))
        #expect(json.contains("\"base\": \"0x0000000490000000\""))
        // Without BAR access the block is named, not read.
        let bare = CXLKit.decode(try TargetResolver().resolve(fixtureURL("qemu-cxl/region/endpoint/config.bin").path), json: false, verbosity: 2)
        #expect(bare.contains("<not read: no BAR access for this target>"))
    }

    @Test func rootPortHasTargetList() throws {
        let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: try fixture("qemu-cxl/bound/rootport/block-component-bar0-0x0.bin")), endpoint: false)
        #expect(d.capabilities.map(\.id) == [2, 4, 5, 6, 8])
        #expect(d.hdm?.decoders.first?.targets?.count == 8)
        #expect(d.hdm?.decoders.first?.dpaSkip == nil)
    }

    /// Ways (incl. 3, 6, 12, 16), granularity, commit state, lock, error and target types.
    @Test(arguments: [
        (iw: UInt64(0), ways: 1), (1, 2), (2, 4), (3, 8), (4, 16), (8, 3), (9, 6), (10, 12),
    ])
    func interleaveWays(iw: UInt64, ways: Int) throws {
        let size: UInt64 = UInt64(ways) << 28
        let block = hdmBlock(decoders: [(0x10_0000_0000, size, ["IW": iw, "IG": 3, "Commit": 1, "Committed": 1], (0x2000_0000, 1))],
                             capability: ["3, 6, 12 Way Interleave Capable": 1, "16 Way Interleave Capable": 1])
        let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: block), endpoint: true)
        let dec = try #require(d.hdm?.decoders.first)
        #expect(dec.ways == ways && dec.granularity == 2048 && dec.size == size)
        #expect(dec.dpaSkip == 0x1_2000_0000)
        #expect(d.findings.isEmpty)
        let text = ComponentRegisterFormatter.lines(d).joined(separator: "\n")
        #expect(text.contains("IW=\(iw) (\(ways) way\(ways == 1 ? "" : "s")) IG=3 (2048 bytes)"))
        #expect(text.contains("3-6-12Way+ 16Way+"))
    }

    @Test func reservedEncodingsAreFindings() throws {
        let block = hdmBlock(decoders: [(0, 0, ["IW": 5, "IG": 7], (0, 0))])
        let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: block), endpoint: true)
        let dec = try #require(d.hdm?.decoders.first)
        #expect(dec.ways == nil && dec.granularity == nil)
        #expect(d.findings.count == 2)
        #expect(ComponentRegisterFormatter.lines(d).joined().contains("IW=5 (<?> ways) IG=7 (<?> bytes)"))
        let bad = ComponentRegisterDecode(reader: ImageBlockReader(bytes: hdmBlock(decoders: [], countEncoding: 0xD)), endpoint: true)
        #expect(bad.hdm?.decoderCount == nil && bad.findings.contains { $0.message.contains("reserved Decoder Count") })
    }

    @Test(arguments: [
        (control: ["Target Range Type": UInt64(0)], type: HDMDecoderState.TargetType.hdmD),
        (["BI": 1], .hdmDB),
        (["Target Range Type": 1], .hdmH),
    ])
    func targetTypes(control: [String: UInt64], type: HDMDecoderState.TargetType) throws {
        let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: hdmBlock(decoders: [(0, 1 << 28, control, (0, 0))])), endpoint: true)
        #expect(d.hdm?.decoders.first?.targetType == type)
    }

    @Test func lockedErrorAndManyDecoders() throws {
        let decs: [(base: UInt64, size: UInt64, control: [String: UInt64], skipOrTargets: (UInt64, UInt64))] = (0..<10).map { n in
            (UInt64(n) << 32, 1 << 28, n == 0 ? ["Lock On Commit": 1, "Commit": 1, "Committed": 1] : (n == 1 ? ["Commit": 1, "Error Not Committed": 1] : [:]), (0, 0))
        }
        let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: hdmBlock(decoders: decs, ras: (ue: 0x80, ce: 0x2))), endpoint: true)
        let hdm = try #require(d.hdm)
        #expect(hdm.decoderCount == 10 && hdm.decoders.count == 10)
        #expect(hdm.decoders[0].lockOnCommit && hdm.decoders[0].committed)
        #expect(hdm.decoders[1].errorNotCommitted && !hdm.decoders[1].committed)
        #expect(hdm.decoders[9].base == 9 << 32)
        let text = ComponentRegisterFormatter.lines(d).joined(separator: "\n")
        #expect(text.contains("Mem_Data_ECC+"))
        #expect(text.contains("CESta:\tCache_Data_ECC- Mem_Data_ECC+"))
        #expect(text.contains("FirstErrPtr 7"))
        #expect(text.contains("LockOnCommit+ Commit+ Committed+ ErrNotCommitted-"))
        #expect(text.contains("LockOnCommit- Commit+ Committed- ErrNotCommitted+"))
    }

    /// Truncated images, bad capability IDs, pointers past the image: findings, no trap.
    @Test func hostileBlocks() {
        for size in [0, 4, 0x1000, 0x1004, 0x1010, 0x1100, 0x1120, 0x1400] {
            let block = Array(hdmBlock(decoders: Array(repeating: (0, 0, [:], (0, 0)), count: 32)).prefix(size))
            let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: block), endpoint: true)
            if size < 0x2000 { #expect(!d.findings.isEmpty, "size \(size)") }
            _ = ComponentRegisterFormatter.lines(d)
            _ = ComponentRegisterFormatter.json(d).serialized()
        }
        var rng = SplitMix64(state: 42)
        for _ in 0..<300 {
            var b = [UInt8](repeating: 0, count: 0x2000)
            for i in 0x1000..<0x1400 { b[i] = UInt8(truncatingIfNeeded: rng.next()) }
            b[0x1000] = 1; b[0x1001] = 0
            let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: b), endpoint: rng.next() & 1 == 0)
            _ = ComponentRegisterFormatter.lines(d)
        }
    }
}
