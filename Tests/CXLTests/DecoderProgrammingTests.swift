import PCI
import Testing
@testable import CXL

@Suite("Decoder programming read from the catalog's registers")
struct DecoderProgrammingTests {
    @Test func decoderOneFromARegisterImage() {
        var image = RegisterFile(size: HDMDecoderCapability.length(decoders: 2))
        image.place(HDMDecoderCapability.layout(decoders: 2, endpoint: true), at: 0)
        let r = HDMDecoderCapability.decoderRegisters(1, endpoint: true)
        // Low registers carry junk in bits 27:0, which they do not hold.
        for (reg, v) in zip(r, [0x3000_0ABC, 0x12, 0x6000_0001, 0x1, 0x0000_0000, 0x1000_0FFF, 0x2] as [UInt64]) {
            image.store(reg.offset, width: 4, value: v)
        }
        let c = HDMDecoderCapability.control
        var ctl: UInt64 = 0
        ctl = c.field("IW")!.insert(9, into: ctl)
        ctl = c.field("IG")!.insert(2, into: ctl)
        ctl = c.field("Interleave Set Position")!.insert(5, into: ctl)
        ctl = c.field("Lock On Commit")!.insert(1, into: ctl)
        image.store(r[4].offset, width: 4, value: ctl)
        let p = DecoderProgramming(decoder: 1) { image.read($0, width: $1) }
        #expect(p == DecoderProgramming(base: 0x12_3000_0000, size: 0x1_6000_0000, dpaSkip: 0x2_1000_0000,
                                        iw: 9, ig: 2, position: 5, lockOnCommit: true))
        #expect(DecoderProgramming(decoder: 0) { image.read($0, width: $1) } == DecoderProgramming(base: 0, size: 0))
    }
}
