import TestSupport
import Testing
import PCI
import CXL
@testable import CXLEmulator

/// The restore finds its registers by location and catalog number, not by their place in
/// the snapshot: a snapshot whose registers are in another order (a hand-edited or
/// re-serialised state file) restores the device the same way, register by register. The
/// restore's index has a one-pass path for the order `save()` writes (each decoder's
/// registers together) and a general path for any other order; this runs both.
@Suite("Restore does not depend on the order of a snapshot's registers", .serialized)
struct RestoreOrderTests {
    @Test(arguments: [UInt64(0x0D0E_0001), 0x0D0E_0002, 0x0D0E_0003])
    func shuffledSnapshotRestoresLikeTheSavedOrder(seed: UInt64) throws {
        print("RestoreOrderTests seed \(String(seed, radix: 16))")
        var rng = SplitMix64(state: seed)
        let b = try EmulatedBench(named: "type2") { $0.decoderCount = 4 }
        try b.programLikeFirmware()
        let saved = try b.engine.save()
        var shuffled = saved
        shuffled.registers.shuffle(using: &rng)
        #expect(shuffled.registers != saved.registers, "seed \(String(seed, radix: 16)): the shuffle kept the order")

        try b.device.reset(.bus)
        let inOrder = try b.engine.restore(saved)
        let afterInOrder = try b.engine.readBack(like: saved)
        try b.device.reset(.bus)
        let outOfOrder = try b.engine.restore(shuffled)
        let afterOutOfOrder = try b.engine.readBack(like: saved)

        #expect(inOrder.succeeded, "\(inOrder.failures)")
        #expect(outOfOrder.steps == inOrder.steps)
        #expect(outOfOrder.decoders == inOrder.decoders)
        // Every register's outcome, matched by its identity.
        let expected = Dictionary(uniqueKeysWithValues: inOrder.registers.map { ($0.key, $0) })
        #expect(outOfOrder.registers.count == expected.count)
        for o in outOfOrder.registers {
            #expect(o == expected[o.key], "seed \(String(seed, radix: 16)): \(o.key)")
        }
        #expect(afterOutOfOrder.registers == afterInOrder.registers)
    }
}
