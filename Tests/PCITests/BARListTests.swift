import Testing
@testable import PCI

/// `BARDescription.list`, the one reading of BAR registers beside sizes reported elsewhere (VFIO regions), against
/// PCIe 6.0 §7.5.1.2.1: bit 0 I/O, bits 2:1 type (2 = 64-bit), bit 3 prefetchable; a 64-bit BAR takes two slots.
private struct Failed: Error {}

@Suite struct BARListTests {
    struct Row: Sendable, CustomStringConvertible {
        let name: String
        let registers: [UInt64]
        let sizes: [UInt64]
        let expected: [BARDescription]
        var description: String { name }
    }

    static let rows: [Row] = [
        Row(name: "64-bit prefetchable, I/O, 32-bit",
            registers: [0xC, 0, 0x1, 0x0, 0, 0], sizes: [1 << 30, 0, 256, 4096, 0, 0],
            expected: [BARDescription(index: 0, kind: .memory64, prefetchable: true, size: 1 << 30),
                       BARDescription(index: 2, kind: .io, prefetchable: false, size: 256),
                       BARDescription(index: 3, kind: .memory32, prefetchable: false, size: 4096)]),
        // An unimplemented 64-bit BAR (size 0) does not swallow the next slot.
        Row(name: "absent 64-bit BAR keeps the next slot",
            registers: [0x4, 0x4, 0, 0, 0, 0x8], sizes: [0, 1 << 20, 0, 0, 0, 8192],
            expected: [BARDescription(index: 1, kind: .memory64, prefetchable: false, size: 1 << 20),
                       BARDescription(index: 5, kind: .memory32, prefetchable: true, size: 8192)]),
        // The I/O bit wins: an I/O BAR's bits 2:1 are address bits, never a 64-bit type.
        Row(name: "I/O with address bits in 2:1",
            registers: [0x5, 0, 0, 0, 0, 0], sizes: [16, 32, 0, 0, 0, 0],
            expected: [BARDescription(index: 0, kind: .io, prefetchable: false, size: 16),
                       BARDescription(index: 1, kind: .memory32, prefetchable: false, size: 32)]),
    ]

    @Test(arguments: rows)
    func barsFollowTheRegisters(row: Row) {
        #expect(BARDescription.list(size: { row.sizes[$0] }, register: { row.registers[$0] }) == row.expected)
    }

    /// An error from either source ends the listing with that error.
    @Test func errorsPropagate() {
        func size(_ i: Int) throws(Failed) -> UInt64 {
            if i == 2 { throw Failed() }
            return 4096
        }
        func register(_ i: Int) throws(Failed) -> UInt64 { 0 }
        #expect(throws: Failed.self) { try BARDescription.list(size: size, register: register) }
    }
}
