// A generic register-file engine: a byte image plus per-byte masks derived from the
// declarative catalog. It knows access types, not what any register means, so the
// emulated CXL device, the VFIO config virtualisation and tests can all use it.

/// What a reset of (part of) a register file keeps.
public struct RegisterResetKeep: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Sticky bits (RWS, RW1CS) keep their value (PCIe 6.0 §7.4: a conventional reset
    /// does not touch them).
    public static let sticky = RegisterResetKeep(rawValue: 1 << 0)
    /// RWL bits that a lock currently freezes keep their value, and the lock stays
    /// (CXL 3.1 §8.1.3: a CXL Reset keeps CONFIG_LOCK and the fields it locks).
    public static let lockedFields = RegisterResetKeep(rawValue: 1 << 1)
    /// RWO bits keep their value and stay frozen if already written.
    public static let writeOnce = RegisterResetKeep(rawValue: 1 << 2)
}

/// The result of one write: the bytes it covered, before and after, so the owner of
/// the file can run side effects (doorbells, commits) on what actually changed.
public struct RegisterWrite: Sendable, Hashable {
    public let offset: Int
    public let width: Int
    /// The value the writer sent, right-aligned.
    public let written: UInt64
    /// The stored value of the covered bytes before and after the write.
    public let before: UInt64
    public let after: UInt64

    /// True when the access covered any byte of `offset ..< offset + width`.
    public func covers(_ offset: Int, width: Int = 1) -> Bool {
        offset < self.offset + self.width && self.offset < offset + width
    }

    /// Bits of the written value that land in register `base ..< base + width`,
    /// aligned to that register (bytes the access did not cover read as 0).
    public func writtenBits(ofRegisterAt base: Int, width: Int) -> UInt64 { slice(written, base, width) }
    public func beforeBits(ofRegisterAt base: Int, width: Int) -> UInt64 { slice(before, base, width) }
    public func afterBits(ofRegisterAt base: Int, width: Int) -> UInt64 { slice(after, base, width) }

    /// Mask of register bits (of the register at `base`) that this access covered.
    public func coveredMask(ofRegisterAt base: Int, width: Int) -> UInt64 { slice(~0, base, width) }

    private func slice(_ value: UInt64, _ base: Int, _ regWidth: Int) -> UInt64 {
        var out: UInt64 = 0
        for i in 0..<regWidth {
            let byte = base + i
            guard byte >= offset, byte < offset + width else { continue }
            let b = (value >> UInt64(8 * (byte - offset))) & 0xFF
            out |= b << UInt64(8 * i)
        }
        return out
    }
}

/// A byte-addressed register file whose write behaviour comes from catalog access types.
///
/// Per byte it keeps the value, the reset image, and masks derived from the fields
/// placed on it: writable (RW, RWS, RWL, RWO), lockable (RWL), write-once (RWO),
/// write-1-to-clear (RW1C, RW1CS) and sticky (RWS, RW1CS). Bytes no field covers, and
/// reserved fields, are read-only and read as their reset value (0 unless the owner
/// initialises them, e.g. capability headers).
///
/// Accesses of 1 ... 8 bytes merge byte lane by byte lane: a write touches only the
/// bytes it covers, so a 1-byte write to the low byte of a 16-bit register leaves bits
/// 15:8 alone, and a 4-byte read returns the neighbouring register in the upper half.
public struct RegisterFile: Sendable {
    public let size: Int
    public private(set) var bytes: [UInt8]
    public private(set) var resetImage: [UInt8]
    public private(set) var writableMask: [UInt8]
    public private(set) var lockableMask: [UInt8]
    public private(set) var writeOnceMask: [UInt8]
    public private(set) var writeOneToClearMask: [UInt8]
    public private(set) var stickyMask: [UInt8]
    /// Bytes whose RWL bits are currently frozen by a lock.
    public private(set) var lockActive: [Bool]
    /// RWO bits already written since the last reset.
    public private(set) var writeOnceSpent: [UInt8]
    /// Where catalog blocks were placed: name, offset, layout.
    public private(set) var placements: [(name: String, offset: Int, layout: RegisterBlockLayout)] = []

    public init(size: Int) {
        precondition(size > 0)
        self.size = size
        bytes = [UInt8](repeating: 0, count: size)
        resetImage = bytes
        writableMask = bytes
        lockableMask = bytes
        writeOnceMask = bytes
        writeOneToClearMask = bytes
        stickyMask = bytes
        writeOnceSpent = bytes
        lockActive = [Bool](repeating: false, count: size)
    }

    // MARK: Building

    /// Place a register at `base + register.offset`: its masks and reset value.
    public mutating func place(_ register: RegisterLayout, at base: Int = 0) {
        let o = base + register.offset
        precondition(o >= 0 && o + register.width <= size, "\(register.name) does not fit at \(o)")  // a build-time mistake
        for i in 0..<register.width {
            let s = UInt64(8 * i)
            writableMask[o + i] = UInt8(truncatingIfNeeded: register.writableMask >> s)
            lockableMask[o + i] = UInt8(truncatingIfNeeded: register.lockableMask >> s)
            writeOnceMask[o + i] = UInt8(truncatingIfNeeded: register.writeOnceMask >> s)
            writeOneToClearMask[o + i] = UInt8(truncatingIfNeeded: register.writeOneToClearMask >> s)
            stickyMask[o + i] = UInt8(truncatingIfNeeded: register.stickyMask >> s)
            resetImage[o + i] = UInt8(truncatingIfNeeded: register.resetValue >> s)
            bytes[o + i] = resetImage[o + i]
        }
    }

    /// Place every register of a block at `base`.
    public mutating func place(_ block: RegisterBlockLayout, at base: Int, name: String? = nil) {
        for r in block.registers { place(r, at: base) }
        placements.append((name ?? block.name, base, block))
    }

    /// Set the value and the reset value of bytes the catalog cannot know: IDs,
    /// capability pointers, HwInit values chosen by the device or its profile.
    public mutating func initialize(_ offset: Int, width: Int, value: UInt64) {
        for i in 0..<min(width, 8) where offset + i >= 0 && offset + i < size {
            let b = UInt8(truncatingIfNeeded: value >> UInt64(8 * i))
            resetImage[offset + i] = b
            bytes[offset + i] = b
        }
    }

    /// Restrict the writable bits of a register (for example a BAR, whose writable
    /// base bits depend on its size, or a field the device does not implement).
    public mutating func setWritableMask(_ offset: Int, width: Int, mask: UInt64) {
        for i in 0..<min(width, 8) where offset + i >= 0 && offset + i < size {
            writableMask[offset + i] = UInt8(truncatingIfNeeded: mask >> UInt64(8 * i))
        }
    }

    // MARK: Software access

    /// Little-endian read of `width` (1 ... 8) bytes. Never traps: bytes outside the
    /// file read as 0, and a width outside 1 ... 8 reads 0.
    @inlinable
    public func read(_ offset: Int, width: Int) -> UInt64 {
        guard width >= 1 && width <= 8 else { return 0 }
        if offset >= 0 && offset <= min(size, bytes.count) - width {
            // Inside the file (the common case): one little-endian load.
            return LittleEndian.load(bytes, at: offset, width: width) ?? 0
        }
        var v: UInt64 = 0
        for i in 0..<width where offset + i >= 0 && offset + i < size {
            v |= UInt64(bytes[offset + i]) << UInt64(8 * i)
        }
        return v
    }

    /// A software write with access-type semantics, byte lane by byte lane:
    /// RW/RWS change; RWL change unless locked; RWO change on the first write only;
    /// RW1C/RW1CS clear where a 1 is written; everything else is ignored. Never traps:
    /// bytes outside the file are dropped; a width outside 1 ... 8 writes nothing.
    @discardableResult
    public mutating func write(_ offset: Int, width: Int, value: UInt64) -> RegisterWrite {
        if width == 4 && offset >= 0 && offset <= size - 4 { return write32(offset, value: value) }
        let width = (1...8).contains(width) ? width : 0
        let before = read(offset, width: width)
        for i in 0..<width where offset + i >= 0 && offset + i < size {
            let o = offset + i
            let v = UInt8(truncatingIfNeeded: value >> UInt64(8 * i))
            var wm = writableMask[o]
            if lockActive[o] { wm &= ~lockableMask[o] }
            wm &= ~(writeOnceMask[o] & writeOnceSpent[o])
            var b = (bytes[o] & ~wm) | (v & wm)
            b &= ~(v & writeOneToClearMask[o])
            bytes[o] = b
            writeOnceSpent[o] |= writeOnceMask[o]
        }
        return RegisterWrite(offset: offset, width: width, written: value, before: before, after: read(offset, width: width))
    }

    /// The same byte-lane rules for an in-range DWORD (most register writes), done on
    /// the four lanes at once: `write` per byte would check bounds and uniqueness on
    /// every lane of every mask array.
    private mutating func write32(_ offset: Int, value: UInt64) -> RegisterWrite {
        func load(_ a: [UInt8]) -> UInt32 { a.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) } }
        let v = UInt32(truncatingIfNeeded: value)
        let before = load(bytes)
        // lockActive is one Bool (0 or 1) per byte: times 0xFF, a byte mask of the frozen lanes.
        let locked = lockActive.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) } &* 0xFF
        let writeOnce = load(writeOnceMask)
        var wm = load(writableMask)
        wm &= ~(locked & load(lockableMask))
        wm &= ~(writeOnce & load(writeOnceSpent))
        let after = ((before & ~wm) | (v & wm)) & ~(v & load(writeOneToClearMask))
        if after != before {
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: after.littleEndian, toByteOffset: offset, as: UInt32.self) }
        }
        if writeOnce != 0 {
            let spent = load(writeOnceSpent) | writeOnce
            writeOnceSpent.withUnsafeMutableBytes { $0.storeBytes(of: spent.littleEndian, toByteOffset: offset, as: UInt32.self) }
        }
        return RegisterWrite(offset: offset, width: 4, written: value, before: UInt64(before), after: UInt64(after))
    }

    // MARK: Hardware access (the device itself; ignores access types)

    /// Store a value as hardware would (status bits, doorbells reading 0, ...).
    public mutating func store(_ offset: Int, width: Int, value: UInt64) {
        if width == 4 && offset >= 0 && offset <= min(size, bytes.count) - 4 {
            // An in-range DWORD (status bits, Committed): one store.
            bytes.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(truncatingIfNeeded: value).littleEndian, toByteOffset: offset, as: UInt32.self) }
            return
        }
        for i in 0..<min(width, 8) where offset + i >= 0 && offset + i < size {
            bytes[offset + i] = UInt8(truncatingIfNeeded: value >> UInt64(8 * i))
        }
    }

    /// Set or clear `mask` bits of the register at `offset`.
    public mutating func setBits(_ offset: Int, width: Int, mask: UInt64, to on: Bool) {
        let v = read(offset, width: width)
        store(offset, width: width, value: on ? v | mask : v & ~mask)
    }

    /// Store a field value (unshifted) of a catalog register placed at `base`.
    public mutating func store(_ field: RegisterField, of register: RegisterLayout, base: Int, value: UInt64) {
        let o = base + register.offset
        store(o, width: register.width, value: field.insert(value, into: read(o, width: register.width)))
    }

    public func read(_ register: RegisterLayout, base: Int) -> UInt64 {
        read(base + register.offset, width: register.width)
    }

    public func read(_ field: RegisterField, of register: RegisterLayout, base: Int) -> UInt64 {
        field.extract(read(register, base: base))
    }

    // MARK: Locks and resets

    /// Freeze (or thaw) the RWL bits of `range`.
    public mutating func setLock(_ range: Range<Int>, _ active: Bool) {
        for o in range.clamped(to: 0..<size) { lockActive[o] = active }
    }

    public func isLocked(_ offset: Int) -> Bool { offset >= 0 && offset < size && lockActive[offset] }

    /// Return `range` to its reset image, keeping what `keep` says.
    public mutating func reset(_ range: Range<Int>? = nil, keeping keep: RegisterResetKeep = [.sticky]) {
        for o in (range ?? 0..<size).clamped(to: 0..<size) {
            var keepMask: UInt8 = 0
            if keep.contains(.sticky) { keepMask |= stickyMask[o] }
            if keep.contains(.lockedFields), lockActive[o] { keepMask |= lockableMask[o] }
            if keep.contains(.writeOnce) { keepMask |= writeOnceMask[o] & writeOnceSpent[o] }
            bytes[o] = (bytes[o] & keepMask) | (resetImage[o] & ~keepMask)
            if !keep.contains(.lockedFields) { lockActive[o] = false }
            if !keep.contains(.writeOnce) { writeOnceSpent[o] = 0 }
        }
    }
}
