#if canImport(Glibc)
import Glibc
#endif
import PCI
import CXL

/// An emulated CXL Type-2 device: a PCI Express endpoint with the CXL DVSECs, a
/// component register block (RAS, Link, HDM decoders) and a device register block in
/// BAR0, and memfd-backed device memory.
///
/// Every register lives in a `RegisterFile` built from the catalog, so write masks,
/// locks, write-once, write-1-to-clear and sticky bits come from the declared access
/// types. The device adds only what the catalog cannot say: doorbells, the HDM commit
/// state machine, CONFIG_LOCK and Lock On Commit, delays, resets and memory decode.
///
/// Delays are deadlines on an `EmulatorClock`, applied when software next touches the
/// device (or calls `processEvents()`), so a `ManualClock` makes every delay testable
/// without sleeping. All access is serialised by one lock.
public final class EmulatedCXLDevice: PCIFunction, CXLDeviceMemory, @unchecked Sendable {
    public let profile: DeviceProfile
    public let address: String
    public let clock: any EmulatorClock
    public var configSize: Int { pcieConfigSpaceSize }

    private let lock = DeviceLock()
    /// Guarded by `lock` (no dynamic exclusivity checks: they cost more than a register read).
    @exclusivity(unchecked) private var s: State
    private let memory: DeviceMemory
    /// BAR0's backing file when the profile has device SRAM (BAR-sized; only `sramWindow` is used).
    private let sram: DeviceMemory?
    private var interruptSink: PCIInterruptSink?

    /// The memfd holding device memory (DPA 0 at file offset 0). Owned by the device.
    public var memoryFD: Int32 { memory.fd }
    /// Device memory size in bytes.
    public var memorySize: UInt64 { memory.size }

    public init(profile: DeviceProfile, clock: any EmulatorClock = MonotonicClock(), address: String? = nil) throws(EmulatorError) {
        do { try profile.validate() } catch { throw .profile(error) }
        self.profile = profile
        self.clock = clock
        self.address = address ?? "emulated:\(profile.name)"
        do { memory = try DeviceMemory(size: profile.memorySize, name: "cxl-emu-\(profile.name)") } catch { throw .memory(error) }
        if profile.deviceSRAM {
            do { sram = try DeviceMemory(size: Layout.bar0Size, name: "cxl-emu-\(profile.name)-bar0") } catch { throw .memory(error) }
        } else { sram = nil }
        s = State(profile: profile)
        s.powerOn(now: clock.now(), memory: memory)
    }

    /// A device from a shipped profile name or a JSON profile path.
    public convenience init(_ spec: String, clock: any EmulatorClock = MonotonicClock()) throws(EmulatorError) {
        let p: DeviceProfile
        do { p = try DeviceProfile.resolve(spec) } catch { throw .profile(error) }
        try self.init(profile: p, clock: clock, address: "emulated:\(spec)")
    }

    // MARK: PCIFunction: config space

    public func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        try Self.checkConfigAccess(offset, width)
        return lock.withLock {
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            return UInt32(truncatingIfNeeded: s.config.read(offset, width: width))
        }
    }

    public func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        try Self.checkConfigAccess(offset, width)
        let fire = lock.withLock {
            var now = LazyNow(clock)
            if s.hasPendingEvents { s.processEvents(now: now.value, memory: memory) }
            s.configWrite(offset, width: width, value: UInt64(value), now: { now.value }, memory: memory)
            return s.takeInterrupts()
        }
        deliver(fire)
    }

    /// Config bytes copied under one lock.
    public func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        guard offset >= 0 else { throw .outOfRange("config offset \(offset)") }
        try Self.checkBulk(UInt64(offset), count, limit: pcieConfigSpaceSize)
        return lock.withLock {
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            return Array(s.config.bytes[offset..<(offset + count)])
        }
    }

    /// Every config access asks: the common (valid) case is one inlined test, the errors are built out of line.
    @inline(__always)
    static func checkConfigAccess(_ offset: Int, _ width: Int) throws(PCIError) {
        if width == 1 || width == 2 || width == 4, offset >= 0, offset <= pcieConfigSpaceSize - width, offset & (width - 1) == 0 { return }
        try configAccessError(offset, width)
    }

    @inline(never)
    static func configAccessError(_ offset: Int, _ width: Int) throws(PCIError) {
        guard width == 1 || width == 2 || width == 4 else { throw .badAccess("config access width \(width)") }
        guard offset >= 0, offset <= pcieConfigSpaceSize - width else {
            throw .outOfRange("config offset \(hex(offset, digits: 3)) width \(width)")
        }
        guard offset % width == 0 else { throw .badAccess("unaligned config access at \(hex(offset, digits: 3)) width \(width)") }
    }

    // MARK: PCIFunction: BARs

    public var bars: [BARDescription] {
        var b = [BARDescription(index: 0, kind: .memory64, prefetchable: false, size: Layout.bar0Size)]
        if profile.prefetchableMemoryBAR {
            b.append(BARDescription(index: Layout.memoryBARIndex, kind: .memory64, prefetchable: true, size: State.memoryBARSize(profile)))
        }
        return b
    }

    public func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        if bar == Layout.memoryBARIndex && profile.prefetchableMemoryBAR {
            try memoryBARAccess(offset: offset, width: width)
            if !memorySpaceEnabled { return width == 8 ? ~0 : (1 << UInt64(8 * width)) - 1 }
            return Self.load(width) { memory.read(dpa: offset, into: $0) }
        }
        guard bar == 0 else { throw .noSuchBAR(bar) }
        if let sram, let w = try sramAccess(offset, width) {
            guard memorySpaceEnabled else { return width == 8 ? ~0 : (1 << UInt64(8 * width)) - 1 }
            return Self.load(w) { sram.read(dpa: offset, into: $0) }
        }
        try Self.checkBAR0Access(offset, width)
        return lock.withLock {
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            if profile.memorySpaceEnableGatesBARs && !s.isMemorySpaceEnabled() { return width == 8 ? ~0 : 0xFFFF_FFFF }
            return s.bar0Read(offset, width: width)
        }
    }

    public func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        if bar == Layout.memoryBARIndex && profile.prefetchableMemoryBAR {
            try memoryBARAccess(offset: offset, width: width)
            if !memorySpaceEnabled { return }
            Self.store(value, width) { memory.write(dpa: offset, from: $0) }
            return
        }
        guard bar == 0 else { throw .noSuchBAR(bar) }
        if let sram, let w = try sramAccess(offset, width) {
            guard memorySpaceEnabled else { return }
            Self.store(value, w) { sram.write(dpa: offset, from: $0) }
            return
        }
        try Self.checkBAR0Access(offset, width)
        let fire = lock.withLock {
            var clockRead = LazyNow(clock)
            registerWrite(offset, width: width, value: value, now: &clockRead)
            return s.takeInterrupts()
        }
        deliver(fire)
    }

    /// A batch of posted BAR0 register writes under one lock, at one device time (the
    /// clock is read at most once for the batch): what one vfio-user REGION_WRITE_MULTI
    /// or one restore decoder batch costs. Writes apply in order, each after the events
    /// due by then; a write that fails its access check throws after the writes before it
    /// were performed (as `barWritePosted(_:_:)` documents). Other BARs and device SRAM
    /// take the one-by-one path.
    public func barWritePosted(_ bar: Int, _ writes: [PostedBARWrite]) throws(PCIError) {
        guard bar == 0, sram == nil else {
            for w in writes { try barWritePosted(bar, offset: w.offset, width: w.width, value: w.value) }
            return
        }
        var failure: PCIError?
        let fire = lock.withLock {
            var clockRead = LazyNow(clock)
            for w in writes {
                do throws(PCIError) { try Self.checkBAR0Access(w.offset, w.width) } catch { failure = error; break }
                registerWrite(w.offset, width: w.width, value: w.value, now: &clockRead)
            }
            return s.takeInterrupts()
        }
        deliver(fire)
        if let failure { throw failure }
    }

    /// One BAR0 register write, under the lock: the events due first, then the write
    /// unless Memory Space Enable gates it.
    private func registerWrite(_ offset: UInt64, width: Int, value: UInt64, now: inout LazyNow) {
        if s.hasPendingEvents { s.processEvents(now: now.value, memory: memory) }
        if profile.memorySpaceEnableGatesBARs && !s.isMemorySpaceEnabled() { return }
        s.bar0Write(offset, width: width, value: value, now: { now.value }, memory: memory)
    }

    /// A `width`-byte little-endian value `fill` reads into a buffer on the stack (memory-backed BAR reads: no array).
    @inline(__always)
    private static func load(_ width: Int, _ fill: (UnsafeMutableRawBufferPointer) -> Void) -> UInt64 {
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { fill(UnsafeMutableRawBufferPointer(rebasing: $0[0..<width])) }
        return UInt64(littleEndian: v)
    }

    /// The low `width` bytes of `value`, little-endian, handed to `write` from the stack.
    @inline(__always)
    private static func store(_ value: UInt64, _ width: Int, _ write: (UnsafeRawBufferPointer) -> Void) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { write(UnsafeRawBufferPointer(rebasing: $0[0..<width])) }
    }

    /// BAR0 device SRAM (profile `deviceSRAM`): memory semantics, any 1/2/4/8-byte access inside it.
    public var sramWindow: Range<UInt64>? { sram == nil ? nil : Layout.sram }

    /// The memfd backing BAR0 (BAR offset = file offset) when the profile has device SRAM; only `sramWindow` of it
    /// is device memory a VMM may map (the registers around it are emulated).
    public var bar0Backing: (fd: Int32, window: Range<UInt64>)? { sram.map { ($0.fd, Layout.sram) } }

    /// The access width when `offset` falls in the SRAM window, nil when it does not.
    private func sramAccess(_ offset: UInt64, _ width: Int) throws(PCIError) -> Int? {
        guard Layout.sram.contains(offset) else { return nil }
        guard width == 1 || width == 2 || width == 4 || width == 8 else { throw .badAccess("SRAM access width \(width)") }
        guard UInt64(width) <= Layout.sram.upperBound - offset else { throw .outOfRange("SRAM access at \(hex64(offset)) width \(width)") }
        return width
    }

    /// BAR0 bytes read DWORD by DWORD under one lock (the device memory BAR is
    /// read through `barRead`).
    public func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        try Self.checkBulk(offset, count)
        guard bar == 0 else {
            var out = [UInt8](repeating: 0, count: count)
            for i in stride(from: 0, to: count, by: 4) {
                LittleEndian.store(try barRead(bar, offset: offset + UInt64(i), width: 4), width: 4, into: &out, at: i)
            }
            return out
        }
        guard offset <= Layout.bar0Size, UInt64(count) <= Layout.bar0Size - offset else {
            throw .outOfRange("BAR0 offset \(hex64(offset))+\(count)")
        }
        if sram != nil, offset < Layout.sram.upperBound, Layout.sram.lowerBound < offset + UInt64(count) {
            // Device SRAM in the range: dword by dword through barRead, which reads it as memory.
            var out = [UInt8](repeating: 0, count: count)
            for i in stride(from: 0, to: count, by: 4) {
                LittleEndian.store(try barRead(0, offset: offset + UInt64(i), width: 4), width: 4, into: &out, at: i)
            }
            return out
        }
        return lock.withLock {
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            let gated = profile.memorySpaceEnableGatesBARs && !s.isMemorySpaceEnabled()
            // Inside the CXL.cachemem registers (an HDM block read): their bytes, copied at once.
            if !gated, let range = s.componentRange(offset, count) { return Array(s.component.bytes[range]) }
            var out = [UInt8](repeating: 0, count: count)
            for i in stride(from: 0, to: count, by: 4) {
                let v = gated ? 0xFFFF_FFFF : s.bar0Read(offset + UInt64(i), width: 4)
                LittleEndian.store(v, width: 4, into: &out, at: i)
            }
            return out
        }
    }

    /// False only when the profile gates BARs and Memory Space Enable is 0.
    private var memorySpaceEnabled: Bool {
        !profile.memorySpaceEnableGatesBARs || lock.withLock { s.isMemorySpaceEnabled() }
    }

    private func memoryBARAccess(offset: UInt64, width: Int) throws(PCIError) {
        guard width == 1 || width == 2 || width == 4 || width == 8 else { throw .badAccess("memory BAR access width \(width)") }
        guard offset < memory.size, width <= memory.size - offset else {
            throw .outOfRange("memory BAR offset \(hex64(offset)) width \(width) past device memory \(hex64(memory.size))")
        }
    }

    /// Component registers take aligned 32- and 64-bit accesses only (CXL 3.1 §8.2.2);
    /// the device register block and MSI-X table the same (§8.2.8, PCI 3.0 §6.8.2).
    /// Every BAR0 register access asks: the valid case is one inlined test, the errors
    /// are built out of line.
    @inline(__always)
    static func checkBAR0Access(_ offset: UInt64, _ width: Int) throws(PCIError) {
        if width == 4 || width == 8, offset < Layout.bar0Size, UInt64(width) <= Layout.bar0Size - offset,
           offset & UInt64(width - 1) == 0 { return }
        try bar0AccessError(offset, width)
    }

    @inline(never)
    static func bar0AccessError(_ offset: UInt64, _ width: Int) throws(PCIError) {
        guard width == 4 || width == 8 else { throw .badAccess("BAR0 access width \(width): only aligned 32/64-bit") }
        guard offset < Layout.bar0Size, UInt64(width) <= Layout.bar0Size - offset else {
            throw .outOfRange("BAR0 offset \(hex64(offset)) width \(width)")
        }
        guard offset % UInt64(width) == 0 else { throw .badAccess("unaligned BAR0 access at \(hex64(offset)) width \(width)") }
    }

    // MARK: PCIFunction: resets and interrupts

    public var resetMethods: [PCIResetMethod] { [.flr, .bus, .link] }

    /// FLR (PCIe 6.0 §6.6.2; CXL 3.1 §9.5), or a conventional reset (`.bus`: hot reset /
    /// secondary bus reset, `.link`: link down) — see the README for each scope.
    /// CXL Reset is not a PCI reset method: write Control2 "Initiate CXL Reset".
    public func reset(_ method: PCIResetMethod) throws(PCIError) {
        try lock.withLock { () throws(PCIError) in
            let now = clock.now()
            s.processEvents(now: now, memory: memory)
            switch method {
            case .flr: s.functionLevelReset()
            case .bus, .link: s.conventionalReset(now: now, memory: memory)
            default: throw .resetUnsupported(method.rawValue)
            }
        }
    }

    public func setInterruptSink(_ sink: PCIInterruptSink?) {
        lock.withLock { interruptSink = sink }
    }

    /// Signal MSI-X vector `vector`: delivered to the sink if MSI-X is enabled and the
    /// vector and function are unmasked, else its Pending Bit is set (PCI 3.0 §6.8.2).
    public func signal(vector: Int) {
        let fire = lock.withLock {
            s.signal(vector: vector)
            return s.takeInterrupts()
        }
        deliver(fire)
    }

    private func deliver(_ vectors: [Int]?) {
        guard let vectors, !vectors.isEmpty, let sink = lock.withLock({ interruptSink }) else { return }
        for v in vectors { sink(v) }
    }

    // MARK: Time

    /// Apply every delayed effect whose time has come (done on every access anyway).
    public func processEvents() {
        lock.withLock { if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) } }
    }

    /// The earliest pending deadline (clock nanoseconds), if any effect is pending.
    public var nextEventDeadline: UInt64? {
        lock.withLock {
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            return s.nextDeadline
        }
    }

    /// Sleep until nothing is pending or `timeoutNanoseconds` pass; true if nothing
    /// is pending. With a `ManualClock` time only moves when told to, so this does not
    /// sleep: it reports whether anything is pending now (use `advanceTime`).
    @discardableResult
    public func waitForPendingEvents(timeoutNanoseconds: UInt64) -> Bool {
        if clock is ManualClock { return nextEventDeadline == nil }
        let start = clock.now()
        while true {
            guard let next = nextEventDeadline else { return true }
            let now = clock.now()
            if now &- start >= timeoutNanoseconds { return false }
            Self.sleep(nanoseconds: min(next, start + timeoutNanoseconds) &- now)
        }
    }

    /// Let `nanoseconds` of device time pass and apply what became due: advances a
    /// `ManualClock` (tests), sleeps on any other clock.
    public func advanceTime(nanoseconds: UInt64) {
        if let manual = clock as? ManualClock {
            manual.advance(nanoseconds: nanoseconds)
        } else {
            Self.sleep(nanoseconds: nanoseconds)
        }
        processEvents()
    }

    public func advanceTime(milliseconds: Double) { advanceTime(nanoseconds: UInt64(max(0, milliseconds) * 1_000_000)) }

    private static func sleep(nanoseconds ns: UInt64) {
        guard ns > 0, ns < UInt64.max / 2 else { return }
        var ts = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
        nanosleep(&ts, nil)
    }

    /// True while a CXL Reset started by Control2 has not completed.
    public var isCXLResetInProgress: Bool {
        lock.withLock {
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            return s.cxlReset != nil || s.cxlResetHung
        }
    }

    /// Why the last commit of decoder `n` failed, if it did (diagnostics: the registers
    /// only say Error Not Committed).
    public func commitFailure(decoder n: Int) -> CommitFailure? {
        lock.withLock {
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            return s.hdm.failures[n]
        }
    }

    // MARK: Memory

    /// Read `count` bytes at host physical address `hpa`, decoded the way the device
    /// decodes CXL.mem: through committed HDM decoders when HDM Decoder Enable is 1
    /// (interleave math from the CXL library), through DVSEC Range 1 when it is 0.
    public func readMemory(hpa: UInt64, count: Int) throws(DeviceMemoryError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try lock.withLock { () throws(DeviceMemoryError) in
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            try s.forEachChunk(hpa: hpa, count: count, memory: memory) { dpa, at, n in
                out.withUnsafeMutableBytes { memory.read(dpa: dpa, into: UnsafeMutableRawBufferPointer(rebasing: $0[at..<at + n])) }
            }
        }
        return out
    }

    public func writeMemory(hpa: UInt64, bytes: [UInt8]) throws(DeviceMemoryError) {
        try lock.withLock { () throws(DeviceMemoryError) in
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            try s.forEachChunk(hpa: hpa, count: bytes.count, memory: memory) { dpa, at, n in
                bytes.withUnsafeBytes { memory.write(dpa: dpa, from: UnsafeRawBufferPointer(rebasing: $0[at..<at + n])) }
            }
        }
    }

    /// The DPA an HPA decodes to right now.
    public func translate(hpa: UInt64) throws(DeviceMemoryError) -> UInt64 {
        try lock.withLock { () throws(DeviceMemoryError) in
            if s.hasPendingEvents { s.processEvents(now: clock.now(), memory: memory) }
            return try s.translate(hpa: hpa, memory: memory)
        }
    }

    /// Direct DPA access, for tests and for layers that own the memfd mapping anyway.
    public func readDPA(_ dpa: UInt64, count: Int) throws(DeviceMemoryError) -> [UInt8] {
        guard dpa < memory.size, UInt64(count) <= memory.size - dpa else { throw .dpaOutOfRange(dpa: dpa, count: count) }
        var out = [UInt8](repeating: 0, count: count)
        lock.withLock { out.withUnsafeMutableBytes { memory.read(dpa: dpa, into: $0) } }
        return out
    }

    public func writeDPA(_ dpa: UInt64, bytes: [UInt8]) throws(DeviceMemoryError) {
        guard dpa < memory.size, UInt64(bytes.count) <= memory.size - dpa else { throw .dpaOutOfRange(dpa: dpa, count: bytes.count) }
        lock.withLock { bytes.withUnsafeBytes { memory.write(dpa: dpa, from: $0) } }
    }

    // MARK: Introspection for tests and tools

    /// The catalog structures placed in config space: name, config offset, layout.
    public var configStructures: [(name: String, offset: Int, layout: RegisterBlockLayout)] {
        lock.withLock { s.config.placements }
    }

    /// The catalog structures in BAR0's component block: name, BAR0 offset, layout.
    public var componentStructures: [(name: String, offset: Int, layout: RegisterBlockLayout)] {
        lock.withLock {
            s.component.placements.map { ($0.name, Int(Layout.componentBlock) + ComponentRegisterBlock.cacheMemOffset + $0.offset, $0.layout) }
        }
    }
}

/// Errors creating a device.
public enum EmulatorError: Error, Sendable, CustomStringConvertible {
    case profile(ProfileError)
    case memory(DeviceMemoryError)

    public var description: String {
        switch self {
        case .profile(let e): return e.description
        case .memory(let e): return "cannot create device memory: \(e.description)"
        }
    }
}

/// The device clock read at most once per access (or batch), and only if asked: most
/// register writes schedule nothing, and a clock read costs more than the write.
struct LazyNow {
    let clock: any EmulatorClock
    private var read: UInt64?
    init(_ clock: any EmulatorClock) { self.clock = clock }
    var value: UInt64 {
        mutating get {
            if let read { return read }
            let t = clock.now()
            read = t
            return t
        }
    }
}
