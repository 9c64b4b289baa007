#if canImport(Glibc)
import Glibc
#endif

/// The PCIe AER counters Linux keeps per device (`drivers/pci/pcie/aer.c`, sysfs
/// `aer_dev_correctable`, `aer_dev_fatal`, `aer_dev_nonfatal`): one "NAME COUNT" line per
/// error bit of the AER Correctable / Uncorrectable Error Status registers (PCIe 6.0
/// §7.8.4.4, §7.8.4.2) and a `TOTAL_ERR_COR`, `TOTAL_ERR_FATAL`, `TOTAL_ERR_NONFATAL` line.
/// A counter is nil when its file is absent (no AER capability, or the kernel lacks
/// CONFIG_PCIEAER) or does not parse.
public struct PCIeAERCounters: Sendable, Hashable, Codable {
    public var correctable: UInt64?
    public var fatal: UInt64?
    public var nonfatal: UInt64?
    /// Per-bit counts of each file, in file order ("RxErr", "BadTLP", ...).
    public var correctableBits: [String: UInt64]
    public var fatalBits: [String: UInt64]
    public var nonfatalBits: [String: UInt64]

    public init(correctable: UInt64? = nil, fatal: UInt64? = nil, nonfatal: UInt64? = nil,
                correctableBits: [String: UInt64] = [:], fatalBits: [String: UInt64] = [:], nonfatalBits: [String: UInt64] = [:]) {
        self.correctable = correctable
        self.fatal = fatal
        self.nonfatal = nonfatal
        self.correctableBits = correctableBits
        self.fatalBits = fatalBits
        self.nonfatalBits = nonfatalBits
    }

    /// Whether any of the three files was there.
    public var isAvailable: Bool { correctable != nil || fatal != nil || nonfatal != nil }

    /// Parses one AER counter file: the total line named `total`, and every other
    /// "NAME COUNT" line. Lines that do not parse are ignored; nil without the total.
    public static func parse(_ text: String, total: String) -> (total: UInt64, bits: [String: UInt64])? {
        var bits: [String: UInt64] = [:]
        var sum: UInt64?
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count == 2, let n = UInt64(parts[1]) else { continue }
            if parts[0] == total { sum = n } else { bits[String(parts[0])] = n }
        }
        return sum.map { ($0, bits) }
    }

    /// Reads the three files of the function directory `directory` (a sysfs
    /// `/sys/bus/pci/devices/ADDR`, or a fake tree laid out the same way).
    public static func read(directory: String) -> PCIeAERCounters {
        func file(_ name: String, _ total: String) -> (total: UInt64, bits: [String: UInt64])? {
            guard let bytes = readWholeFile(directory + "/" + name, limit: 1 << 16) else { return nil }
            return parse(String(decoding: bytes, as: UTF8.self), total: total)
        }
        let c = file("aer_dev_correctable", "TOTAL_ERR_COR")
        let f = file("aer_dev_fatal", "TOTAL_ERR_FATAL")
        let n = file("aer_dev_nonfatal", "TOTAL_ERR_NONFATAL")
        return PCIeAERCounters(correctable: c?.total, fatal: f?.total, nonfatal: n?.total,
                               correctableBits: c?.bits ?? [:], fatalBits: f?.bits ?? [:], nonfatalBits: n?.bits ?? [:])
    }
}
