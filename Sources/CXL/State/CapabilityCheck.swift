import PCI

extension CXLStateEngine {
    /// The read-only registers the snapshot holds (DVSEC CXL Capability, Range 1/2 Size, HDM Decoder
    /// Capability, and with it the decoder count), compared with the live device before restore writes anything:
    /// state for a device with other capabilities must be refused with the differences listed, not written
    /// (CONFIG_LOCK included) and only then found wrong.
    ///
    /// Range Size Low's Memory_Info_Valid and Memory_Active are status, not capability (CXL 3.1 §8.1.3.8.2): they
    /// legitimately differ right after a reset and are not compared. A BAR register that cannot be read yet (all
    /// ones or an error: the BARs may be unassigned until restore writes them) is left to the verification after
    /// the restore.
    public func capabilityDifferences(_ snapshot: CXLStateSnapshot) throws(CXLStateError) -> [String] {
        try capabilityCheck(snapshot).differences
    }

    static let rangeSizeStatusBits = CXLDeviceDVSEC.range1.sizeLow.fields
        .filter { ["Memory_Info_Valid", "Memory_Active"].contains($0.name) }
        .reduce(UInt64(0)) { $0 | $1.mask }

    /// The differences, and the registers read that equal the snapshot exactly: those are read-only, so the
    /// verification after the restore needs no second read of them.
    func capabilityCheck(_ snapshot: CXLStateSnapshot) throws(CXLStateError) -> (differences: [String], confirmed: [RegisterKey: UInt64]) {
        var differences: [String] = []
        var confirmed: [RegisterKey: UInt64] = [:]
        let statusBits = Self.rangeSizeStatusBits
        // The config-space ones (all inside the DVSEC) in one bulk read.
        // The span they cover, in one pass (no filtered copy of the snapshot).
        var configVerifyCount = 0, low = UInt64.max, high: UInt64 = 0
        var verifyCount = 0
        for r in snapshot.registers where r.role == .verify {
            verifyCount += 1
            guard r.space == .config else { continue }
            configVerifyCount += 1
            low = min(low, r.offset)
            high = max(high, r.offset + UInt64(r.width))
        }
        confirmed.reserveCapacity(verifyCount)
        var image: (start: Int, bytes: [UInt8])?
        if configVerifyCount > 1 {
            // Offsets are inside config space (validate() checked them).
            let start = Int(low) & ~3
            let end = (Int(high) + 3) & ~3
            if end - start <= pcieConfigSpaceSize, let b = try? function.configReadBytes(start, count: end - start) { image = (start, b) }
        }
        for saved in snapshot.registers where saved.role == .verify {
            let live: UInt64
            switch saved.space {
            case .config:
                if let image, let v = LittleEndian.load(image.bytes, at: Int(saved.offset) - image.start, width: saved.width) {
                    live = v
                } else {
                    live = try configRead(Int(saved.offset), saved.width)
                }
            case .bar(let bar):
                guard let v = try? barRead(bar, saved.offset), v != 0xFFFF_FFFF else { continue }
                live = v
            }
            if live == saved.value { confirmed[saved.key] = live; continue }
            let isRangeSizeLow = saved.register.hasSuffix("Size Low") && saved.block == StateCatalog.dvsecBlock
            let mask: UInt64 = isRangeSizeLow ? ~statusBits : ~0
            guard live & mask != saved.value & mask else { continue }
            differences.append("\(saved.register): saved \(hex(saved.value & mask, digits: saved.width * 2)), "
                               + "device has \(hex(live & mask, digits: saved.width * 2))")
        }
        return (differences, confirmed)
    }
}
