import Testing
import TestSupport
@testable import PCI

func header(status capList: Bool = true, pointer: UInt8 = 0x40, size: Int = 4096, headerType: UInt8 = 0) -> ConfigSpace {
    var c = ConfigSpace(bytes: [UInt8](repeating: 0, count: size))
    c.write(0, width: 4, value: 0x5678_1234)
    c.write(0x06, width: 2, value: capList ? 0x10 : 0)
    c.write(0x0E, width: 1, value: UInt64(headerType))
    c.write(0x34, width: 1, value: UInt64(pointer))
    return c
}

@Suite("Capability walker on hostile config spaces")
struct WalkerAdversarialTests {
    @Test func standardLoop() {
        var c = header()
        c.write(0x40, width: 2, value: 0x5010)  // PCIe, next 0x50
        c.write(0x50, width: 2, value: 0x4001)  // PM, next 0x40: loop
        let caps = CapabilityList(walking: c)
        #expect(caps.standard.count == 2)
        #expect(caps.findings.contains { $0.message.contains("loops") })
    }

    @Test func selfLoopAndPointerIntoHeader() {
        var c = header()
        c.write(0x40, width: 2, value: 0x4010)
        #expect(CapabilityList(walking: c).standard.count == 1)
        c.write(0x40, width: 2, value: 0x2010)
        let caps = CapabilityList(walking: c)
        #expect(caps.findings.contains { $0.message.contains("into the header") })
        #expect(CapabilityList(walking: header(pointer: 0x10)).standard.isEmpty)
    }

    @Test func pointerPastEnd() {
        // 0xFF masked to 0xFC: 0xFC + 2 fits in 256 bytes, 0xFE does not exist after masking.
        var c = header(pointer: 0xFC, size: 256)
        c.write(0xFC, width: 2, value: 0xFC01)
        #expect(CapabilityList(walking: c).findings.contains { $0.message.contains("loops") })
        // A 64-byte (lspci -x) dump: every capability pointer is past the end.
        let short = ConfigSpace(bytes: Array(header().bytes.prefix(64)))
        #expect(CapabilityList(walking: short).findings.contains { $0.message.contains("past the end") })
    }

    @Test func extendedLoopsAndBadPointers() {
        var c = header()
        c.write(0x40, width: 2, value: 0x0010)
        c.write(0x100, width: 4, value: 0x1001_0001)  // AER v1, next 0x100: loop
        #expect(CapabilityList(walking: c).findings.contains { $0.message.contains("loops") })
        c.write(0x100, width: 4, value: 0x0401_0001)  // next 0x40: into conventional space
        #expect(CapabilityList(walking: c).findings.contains { $0.message.contains("below 0x100") })
        c.write(0x100, width: 4, value: 0x2000_0000)  // ID 0 with a next pointer: keep walking
        c.write(0x200, width: 4, value: 0x0001_0003)
        let caps = CapabilityList(walking: c)
        #expect(caps.extended.map(\.id) == [0, 3])
        c.write(0x100, width: 4, value: 0xFFFF_FFFF)
        #expect(CapabilityList(walking: c).findings.contains { $0.message.contains("all ones") })
        // Next pointer 0xFFC: header fits exactly at the end.
        c.write(0x100, width: 4, value: 0xFFC1_0001)
        c.write(0xFFC, width: 4, value: 0x0001_0003)
        #expect(CapabilityList(walking: c).extended.count == 2)
        // 256-byte dumps have no extended space at all.
        #expect(CapabilityList(walking: ConfigSpace(bytes: Array(c.bytes.prefix(256)))).extended.isEmpty)
    }

    /// Random config spaces of random sizes, biased towards valid-looking pointers:
    /// walking and decoding (text and JSON, every verbosity) must terminate without trapping.
    @Test func randomConfigSpacesNeverTrap() {
        var rng = SplitMix64(state: 0xC0FFEE)
        let decoder = PCIDecoder()
        for i in 0..<3000 {
            let size = [0, 1, 3, 63, 64, 65, 255, 256, 257, 1024, 4095, 4096][Int(rng.next() % 12)]
            var bytes = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if size >= 0x40 {
                bytes[0x06] |= 0x10
                bytes[0x34] = UInt8([0x40, 0x00, 0xFC, 0x3C, UInt8(truncatingIfNeeded: rng.next())][Int(rng.next() % 5)])
            }
            // Plant a chain of extended headers pointing at each other, past the end, or back.
            if size >= 0x104 {
                var off = 0x100
                for _ in 0..<Int(rng.next() % 12) where off + 4 <= size {
                    let next = [0, 0x100, off, Int(rng.next() % 0x1000), off + 0x40].randomElement(using: &rng)!
                    let id = [0x23, 0x01, 0x00, 0x03, Int(rng.next() & 0xFFFF)].randomElement(using: &rng)!
                    let v = UInt32(id) | 1 << 16 | UInt32(next & 0xFFF) << 20
                    for k in 0..<4 { bytes[off + k] = UInt8(truncatingIfNeeded: v >> (8 * k)) }
                    if next <= off || next + 4 > size { break }
                    off = next
                }
            }
            let c = ConfigSpace(bytes: bytes)
            let caps = CapabilityList(walking: c)
            #expect(caps.standard.count <= 48 && caps.extended.count <= 1024, "case \(i)")
            let subject = DecodeSubject(name: "00:00.0", config: c)
            _ = decoder.text(subject, verbosity: Int(rng.next() % 4))
            _ = decoder.json(subject).serialized()
        }
    }
}
