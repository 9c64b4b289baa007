import Foundation
import Testing
import VFIO
@testable import VFIOUser

/// The server against a real QEMU 10.2 `vfio-user-pci` client and a real guest kernel, through
/// /work/shared/tools/qemu-vfio-user/run-guest.sh (QEMU built by build-qemu.sh). Opt-in (it boots a TCG guest,
/// ~10 s): `VFU_QEMU=1 swift test --filter QEMUInteropTests`. `SHARED_MEM=0` is exercised too (DMA by messages).
@Suite(.serialized) struct QEMUInteropTests {
    static let runGuest = ProcessInfo.processInfo.environment["VFU_RUN_GUEST"] ?? "/work/shared/tools/qemu-vfio-user/run-guest.sh"
    static let qemu = (ProcessInfo.processInfo.environment["QH"] ?? "/tmp/qemu-harness") + "/qemu/bin/qemu-system-x86_64"
    static var enabled: Bool {
        ProcessInfo.processInfo.environment["VFU_QEMU"] != nil && FileManager.default.isExecutableFile(atPath: runGuest)
            && FileManager.default.isExecutableFile(atPath: qemu)
    }

    /// Guest script: find the device, dump its config space, bind uio_pci_generic and count one INTx, poke BAR2 registers (trapped: REGION_READ/WRITE,
    /// posted writes), write BAR0 (sparse mmap: no messages), DMA-read guest RAM at 0xF0000 (the BIOS copy) and
    /// checksum it (Bus Master enabled first: QEMU refuses DMA otherwise), DMA-copy 256 bytes of it to 0x60000 (in
    /// the first MiB, which Linux reserves and leaves unused; DMA_WRITE), then an FLR.
    static let guestScript = #"""
    D=""
    for d in /sys/bus/pci/devices/*; do [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x5678 ] && D=$d; done
    [ -n "$D" ] || { echo "device not found"; lspci -nn; exit 3; }
    lspci -vvv -d 1234:5678
    echo "cfgsize $(wc -c < $D/config)"
    B0=$(sed -n 1p $D/resource | cut -d' ' -f1)
    B2=$(sed -n 3p $D/resource | cut -d' ' -f1)
    echo "bars $B0 $B2"
    # INTx into the guest: uio_pci_generic (PCI 2.3 INTx masking, reads the emulated Interrupt Status) counts it.
    echo "1234 5678" > /sys/bus/pci/drivers/uio_pci_generic/new_id
    sleep 0.5
    U=$(ls $D/uio 2>/dev/null | head -1)
    echo "uio $U"
    if [ -n "$U" ]; then
        ( timeout 10 dd if=/dev/$U bs=4 count=1 2>/dev/null | hexdump -v -e '1/4 "%u\n"' > /tmp/irq.txt ) &
        sleep 0.5
        devmem $((B2 + 0x28)) 32 0
        wait
        echo "irq-count $(cat /tmp/irq.txt)"
    fi
    devmem $((B2)) 32 0x12345678
    echo "scratch $(devmem $((B2)) 32)"
    devmem $((B0 + 0x4000)) 32 0xCAFEF00D
    devmem $((B0 + 0x10)) 32 0x0BADBEEF
    echo "bar0 $(devmem $((B0 + 0x4000)) 32)"
    setpci -s ${D##*/} COMMAND=0x0006
    devmem $((B2 + 0x10)) 32 0xF0000
    devmem $((B2 + 0x14)) 32 0
    devmem $((B2 + 0x20)) 32 4096
    devmem $((B2 + 0x24)) 32 0
    devmem $((B2 + 0x8)) 32 2
    for i in 1 2 3 4 5 6 7 8 9 10; do S=$(devmem $((B2 + 0x24)) 32); [ "$S" != 0x00000000 ] && break; sleep 0.2; done
    echo "status $S"
    echo "checksum $(devmem $((B2 + 0x30)) 32)"
    devmem $((B2 + 0x24)) 32 0
    devmem $((B2 + 0x18)) 32 0x60000
    devmem $((B2 + 0x1c)) 32 0
    devmem $((B2 + 0x20)) 32 256
    devmem $((B2 + 0x8)) 32 1
    for i in 1 2 3 4 5 6 7 8 9 10; do S=$(devmem $((B2 + 0x24)) 32); [ "$S" != 0x00000000 ] && break; sleep 0.2; done
    echo "copy-status $S"
    echo "bios $(devmem 0xF0000 32)"
    echo "copied $(devmem 0x60000 32)"
    cat $D/reset_method
    echo 1 > $D/reset && echo "reset ok"
    echo "after-reset $(devmem $((B2)) 32)"
    devmem $((B2)) 32 0x0000C0DE
    """#

    func boot(sharedMemory: Bool) throws -> (ServerHarness, Int32, String) {
        let h = try ServerHarness()
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.runGuest)
        p.arguments = [h.path, Self.guestScript]
        var env = ProcessInfo.processInfo.environment
        env["SHARED_MEM"] = sharedMemory ? "1" : "0"
        env["MODULES"] = "uio_pci_generic"
        env["TIMEOUT"] = env["TIMEOUT"] ?? "120"
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (h, p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func value(_ out: String, _ key: String) -> String? {
        out.split(separator: "\n").first { $0.hasPrefix(key + " ") }.map { String($0.dropFirst(key.count + 1)) }
    }

    @Test(.enabled(if: enabled)) func realQEMUGuest() throws {
        let modes: [Bool] = switch ProcessInfo.processInfo.environment["VFU_QEMU_SHARED_MEM"] {
        case "1": [true]
        case "0": [false]
        default: [true, false]
        }
        for shared in modes {
            let (h, status, out) = try boot(sharedMemory: shared)
            defer { _ = h.stop() }
            print(out)
            #expect(status == 0, "run-guest.sh exit \(status)")
            #expect(out.contains("Capabilities: [40] Express (v2) Endpoint"))
            #expect(out.contains("MSI-X: Enable- Count=4"))
            #expect(value(out, "cfgsize") == "4096")
            #expect(value(out, "irq-count") == "1", "INTx delivered to the guest's handler through the eventfd")
            #expect(value(out, "scratch") == "0x12345678")
            #expect(value(out, "bar0") == "0xCAFEF00D")
            #expect(value(out, "status") == "0x00000001", "DMA read of guest RAM (shared=\(shared))")
            #expect(value(out, "checksum") != "0x00000000")
            #expect(value(out, "copy-status") == "0x00000001")
            #expect(value(out, "bios") != nil && value(out, "bios") == value(out, "copied"))
            #expect(out.contains("reset ok"))
            #expect(value(out, "after-reset") == "0x00000000")
            // The device saw the BAR0 writes through QEMU's mmap of the sparse areas.
            #expect(h.function.bar0.read(offset: 0x4000, count: 4) == [0x0D, 0xF0, 0xFE, 0xCA])
            #expect(h.function.bar0.read(offset: 0x10, count: 4) == [0xEF, 0xBE, 0xAD, 0x0B])
            #expect(h.function.resets >= 1)
            // QEMU disconnected: state kept (the last posted write landed), IRQs and DMA released.
            #expect(h.waitClientsServed(1))
            #expect(h.device.dma == nil)
            #expect(h.function.regs[0] == 0xDE && h.function.regs[1] == 0xC0)
        }
    }
}
