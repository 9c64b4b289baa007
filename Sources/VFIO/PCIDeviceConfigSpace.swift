import PCI

// VFIOPCIDevice's config space virtualisation: the masks derived from the PCI register catalog (Command, BAR
// sizing, Expansion ROM, Interrupt Line, Interrupt Status, MSI and MSI-X Message Control), and the virtualised
// reads and writes that merge the function's bytes with the virtual image.
extension VFIOPCIDevice {
    // MARK: Virtualisation set-up (masks from the catalog)

    func virtualise(_ offset: Int, _ layout: RegisterLayout, writable: UInt64? = nil, initial: UInt64? = nil, forwardWrites: Bool) {
        let wm = writable ?? layout.writableMask
        for i in 0..<layout.width where offset + i < configSize {
            readOnlyMask.storeBytes(of: 0, toByteOffset: offset + i, as: UInt8.self)
            virtualMask[offset + i] = 0xFF
            writeMask[offset + i] = UInt8(truncatingIfNeeded: wm >> UInt64(8 * i))
            forward[offset + i] = forwardWrites
            if let v = initial { vconfig[offset + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) }
        }
    }

    /// Bytes read from the snapshot taken at init, never from the function, with guest writes dropped: the
    /// identity and structure of the function, which no write and no event changes.
    func virtualiseReadOnly(_ offset: Int, width: Int) {
        for i in 0..<width where offset + i >= 0 && offset + i < configSize {
            virtualMask[offset + i] = 0xFF
            writeMask[offset + i] = 0
            forward[offset + i] = false
            readOnlyMask.storeBytes(of: 0xFF, toByteOffset: offset + i, as: UInt8.self)
            readOnlyImage.storeBytes(of: vconfig[offset + i], toByteOffset: offset + i, as: UInt8.self)
        }
    }

    func setUpVirtualisation() {
        // As vfio-pci (`init_pci_cap_basic_perm`, `vfio_cap_init`, `vfio_ecap_init`): Vendor ID, Device ID, the
        // Capabilities Pointer, Interrupt Pin and every capability header (ID and next pointer; an extended
        // capability's whole header) are virtual and read-only: a config read of them (a guest's probe, a
        // capability walk) is answered from the image without a call into the function (PCI 6.0 §7.5.1.1,
        // §7.5.1.1.11, §7.5.1.3.8, §7.6.3).
        for r in [PCIHeader.vendorID, PCIHeader.deviceID, PCIHeader.capabilitiesPointer, PCIHeader.interruptPin] {
            virtualiseReadOnly(r.offset, width: r.width)
        }
        for (offset, width) in capabilityHeaders { virtualiseReadOnly(offset, width: width) }
        // Command: emulated and forwarded; starts at its reset value.
        virtualise(PCIHeader.command.offset, PCIHeader.command, initial: PCIHeader.command.resetValue, forwardWrites: true)
        // BARs: fully virtual; writable bits are the implemented address bits.
        var i = 0
        while i < 6 {
            let reg = PCIHeader.bar(i)
            guard let b = barList[i] else { virtualise(reg.offset, reg, writable: 0, initial: 0, forwardWrites: false); i += 1; continue }
            let size = max(b.size, b.kind == .io ? 4 : 16)
            let bar = PCIHeader.BAR.self
            let flags: UInt64
            switch b.kind {
            case .io: flags = bar.memorySpaceIndicator.insert(1, into: 0)
            case .memory32: flags = bar.prefetchable.insert(b.prefetchable ? 1 : 0, into: 0)
            case .memory64: flags = bar.memoryType.insert(bar.memoryType64Bit, into: bar.prefetchable.insert(b.prefetchable ? 1 : 0, into: 0))
            }
            let sizing = bar.sizingMask(size: size, io: b.kind == .io)
            virtualise(reg.offset, reg, writable: sizing.low, initial: flags, forwardWrites: false)
            if b.kind == .memory64 && i < 5 {
                let hreg = PCIHeader.bar(i + 1)
                virtualise(hreg.offset, hreg, writable: sizing.high, initial: 0, forwardWrites: false)
                i += 2
            } else { i += 1 }
        }
        // No expansion ROM is exposed.
        let rom = PCIHeader.expansionROM(offset: PCIHeader.type0ExpansionROMOffset)
        virtualise(rom.offset, rom, writable: 0, initial: 0, forwardWrites: false)
        virtualise(PCIHeader.interruptLine.offset, PCIHeader.interruptLine, initial: 0xFF, forwardWrites: false)
        // Status: only Interrupt Status is emulated; the rest (RW1C error bits, capabilities list) passes through.
        let isByte = PCIHeader.status.offset + Self.interruptStatus.lsb / 8
        virtualMask[isByte] |= UInt8(1) << UInt8(Self.interruptStatus.lsb % 8)
        vconfig[isByte] &= ~(UInt8(1) << UInt8(Self.interruptStatus.lsb % 8))
        // MSI: every register after the header, emulated; read-only fields keep the function's values.
        if let m = msiOffset, let layout = msiLayout {
            for r in layout.registers where r.offset >= 2 {
                let ro = readLE(m + r.offset, r.width) & ~r.writableMask
                virtualise(m + r.offset, r, initial: ro | r.resetValue, forwardWrites: false)
            }
        }
        if let x = msixOffset {
            let r = MSIXCapability.messageControl
            let ro = readLE(x + r.offset, r.width) & ~r.writableMask
            virtualise(x + r.offset, r, initial: ro, forwardWrites: false)
        }
    }

    func readLE(_ offset: Int, _ width: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<width where offset + i < configSize { v |= UInt64(vconfig[offset + i]) << UInt64(8 * i) }
        return v
    }

    // MARK: Virtualised access

    /// The widest naturally aligned access (at most `maxWidth`, a power of two) at `offset` within `left` bytes.
    @inline(__always)
    static func accessWidth(_ offset: UInt64, _ left: Int, maxWidth: Int) -> Int {
        var w = maxWidth
        while w > 1 && (offset % UInt64(w) != 0 || w > left) { w /= 2 }
        return w
    }

    func override(_ offset: Int, _ width: Int) -> (any VFIOConfigAccessHandler)? {
        guard offset < overrideSpan.upperBound && offset + width > overrideSpan.lowerBound else { return nil }
        // Indexed, not `for in`: the generic iterator allocates per element in an unoptimised build (the
        // allocation tests run in one), and this is the per-message path of an overridden config access.
        var i = 0
        while i < configOverrides.count {
            let (r, h) = configOverrides[i]
            if r.contains(offset) && r.contains(offset + width - 1) { return h }
            i += 1
        }
        return nil
    }

    func checkConfigAccess(_ offset: Int, _ width: Int) throws(VFIOError) {
        guard width >= 1 && width <= 4, offset >= 0, offset <= configSize - width else {
            throw .invalidArgument("config access 0x\(String(offset, radix: 16))/\(width)")
        }
    }

    func checkConfigBounds(_ offset: UInt64, _ count: Int) throws(VFIOError) {
        let (end, o) = offset.addingReportingOverflow(UInt64(truncatingIfNeeded: count))
        guard count >= 0, !o, end <= UInt64(configSize) else {
            throw .invalidArgument("region \(VFIOPCIRegion.config.rawValue) access 0x\(String(offset, radix: 16))+\(count) beyond 0x\(String(configSize, radix: 16))")
        }
    }

    /// Config bytes [offset, offset + buffer.count) into `buffer`, split into naturally aligned accesses of at most
    /// 4 bytes, under one lock.
    func readConfig(_ offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        let count = buffer.count
        // One naturally aligned access of 1, 2 or 4 bytes (a guest's config read): no loop, one bounds check.
        if count == 4 || count == 2 || count == 1, offset & UInt64(count - 1) == 0, offset <= UInt64(configSize - count),
           let p = buffer.baseAddress {
            // Read-only virtual bytes only (IDs, capability headers): from the image, no lock, no call.
            let o = Int(offset)
            switch count {
            case 4:
                if readOnlyMask.load(fromByteOffset: o, as: UInt32.self) == ~0 {
                    p.storeBytes(of: readOnlyImage.load(fromByteOffset: o, as: UInt32.self), as: UInt32.self)
                    return
                }
            case 2:
                if readOnlyMask.load(fromByteOffset: o, as: UInt16.self) == ~0 {
                    p.storeBytes(of: readOnlyImage.load(fromByteOffset: o, as: UInt16.self), as: UInt16.self)
                    return
                }
            default:
                if readOnlyMask.load(fromByteOffset: o, as: UInt8.self) == ~0 {
                    p.storeBytes(of: readOnlyImage.load(fromByteOffset: o, as: UInt8.self), as: UInt8.self)
                    return
                }
            }
            lock.lock(); defer { lock.unlock() }
            let v = try configReadLocked(Int(offset), width: count)
            switch count {
            case 4: p.storeBytes(of: v.littleEndian, as: UInt32.self)
            case 2: p.storeBytes(of: UInt16(truncatingIfNeeded: v).littleEndian, as: UInt16.self)
            default: p.storeBytes(of: UInt8(truncatingIfNeeded: v), as: UInt8.self)
            }
            return
        }
        lock.lock(); defer { lock.unlock() }
        try checkConfigBounds(offset, count)
        var off = offset
        var pos = 0
        while pos < count {
            let width = Self.accessWidth(off, count - pos, maxWidth: 4)
            let v = try configReadLocked(Int(off), width: width)
            for i in 0..<width { buffer[pos + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) }
            off += UInt64(width)
            pos += width
        }
    }

    /// `configRead` with `lock` held and the access checked: overrides, then the function's bytes merged with the
    /// virtual ones byte by byte (`virtualMask`).
    func configReadLocked(_ offset: Int, width: Int) throws(VFIOError) -> UInt32 {
        if let h = override(offset, width) { return try h.configRead(offset, width: width) }
        // One load of the mask and one of the image (both arrays have the config size, the access is checked).
        let (vm, vv) = virtualMask.withUnsafeBytes { m in
            vconfig.withUnsafeBytes { c -> (UInt32, UInt32) in
                guard offset >= 0, offset <= m.count - width, offset <= c.count - width else { return (0, 0) }
                switch width {
                case 4: return (UInt32(littleEndian: m.loadUnaligned(fromByteOffset: offset, as: UInt32.self)),
                                UInt32(littleEndian: c.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                case 2: return (UInt32(UInt16(littleEndian: m.loadUnaligned(fromByteOffset: offset, as: UInt16.self))),
                                UInt32(UInt16(littleEndian: c.loadUnaligned(fromByteOffset: offset, as: UInt16.self))))
                default: return (UInt32(m[offset]), UInt32(c[offset]))
                }
            }
        }
        let all: UInt32 = width == 4 ? ~0 : (1 << UInt32(8 * width)) - 1
        var dev: UInt32 = 0
        if vm != all {
            do { dev = try function.configRead(offset, width: width) } catch { throw .system(errno: VFIOErrno.EIO, "config read: \(error)") }
        }
        return ((dev & ~vm) | (vv & vm)) & all
    }

    /// `configWrite` with `lock` held and the access checked: overrides, the writable virtual bits, Initiate FLR
    /// (performed here, not forwarded), forwarding to the function, INTx delivered when Interrupt Disable clears
    /// while it is asserted.
    func configWriteLocked(_ offset: Int, width: Int, value: UInt32) throws(VFIOError) {
        if let h = override(offset, width) { return try h.configWrite(offset, width: width, value: value) }
        var fwd = false
        for i in 0..<width {
            let o = offset + i
            let b = UInt8(truncatingIfNeeded: value >> UInt32(8 * i))
            if virtualMask[o] != 0 { vconfig[o] = (vconfig[o] & ~writeMask[o]) | (b & writeMask[o]) }
            if forward[o] { fwd = true }
        }
        // Initiate FLR (PCIe Device Control bit 15) is performed here, not forwarded.
        if let e = expressOffset {
            let flrBit = PCIExpressCapability.initiateFLR
            let flrByte = e + PCIExpressCapability.deviceControl.offset + flrBit.lsb / 8
            if flrByte >= offset && flrByte < offset + width {
                let shift = UInt32(8 * (flrByte - offset) + flrBit.lsb % 8)
                if (value >> shift) & 1 == 1 {
                    if fwd { try? function.configWrite(offset, width: width, value: value & ~(UInt32(1) << shift)) }
                    try functionLevelReset(.flr)
                    return
                }
            }
        }
        if fwd {
            do { try function.configWrite(offset, width: width, value: value) } catch { throw .system(errno: VFIOErrno.EIO, "config write: \(error)") }
        }
        // Interrupt Disable cleared while INTx is still asserted: the interrupt goes out now (PCI 2.3 semantics).
        if offset <= PCIHeader.command.offset + 1 && offset + width > PCIHeader.command.offset,
           intxAsserted, !intxDisabled, activeInterruptMode == .intx {
            deliverINTx()
        }
    }
}
