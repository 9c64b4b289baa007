import PCI

/// Saves the CXL state of a function and restores it, through nothing but the
/// `PCIFunction` protocol: the same code runs against the emulated device, a real
/// device through sysfs and a vfio-user connection.
///
/// What is saved (the kernel series' set, plus what the function needs to be usable):
/// PCI Command, the six BARs, PCI Express Device/Link Control and Control 2, MSI
/// and MSI-X control; DVSEC CXL Control, Control2, Lock, Range 1/2 Base High/Low
/// (Capability and Range Size registers are kept for verification); HDM Decoder
/// Global Control and, per decoder, Base Low/High, Size Low/High, Control and DPA
/// Skip (endpoints) or Target List (ports) Low/High.
public struct CXLStateEngine: Sendable {
    public let function: any PCIFunction
    public let options: CXLStateOptions

    public init(function: any PCIFunction, options: CXLStateOptions = CXLStateOptions()) {
        self.function = function
        self.options = options
    }

    // MARK: - Save

    /// Take a snapshot. Config space is read once (every saved config register comes
    /// from that one image); the HDM registers are read once each, with Memory Space
    /// Enable set for the duration if it was clear.
    public func save() throws(CXLStateError) -> CXLStateSnapshot {
        let config: ConfigSpace
        do { config = try function.configSnapshot() } catch { throw .access(error) }
        let found = try Discovery.configLayout(config, address: function.address)
        var layout = found.layout
        var registers = Discovery.configRegisters(config, layout: layout)
        if found.map.componentBlock != nil {
            var map = found.map
            let command = registers.first { $0.key == StateCatalog.commandKey }?.value ?? 0
            layout.hdm = try withMemorySpace(command: command) { () throws(CXLStateError) in
                try Discovery.hdm(&map, into: &registers, read: { (bar, offset) throws(CXLStateError) in try barRead(bar, offset) },
                                  readBytes: { (bar, offset, count) throws(CXLStateError) in
                                      do throws(PCIError) { return try function.barReadBytes(bar, offset: offset, count: count) } catch { throw .access(error) }
                                  })
            }
        }
        return CXLStateSnapshot(identity: found.identity, layout: layout, registers: registers)
    }

    /// Re-read every register of `snapshot` from the live function, by the location
    /// the snapshot records (no rediscovery), in one access each. HDM registers are
    /// read only while the component register BAR still holds the value it had when
    /// the snapshot was taken; if the reset cleared or moved it, they are listed as
    /// unread instead of being fetched from an address the BAR no longer decodes.
    public func readBack(like snapshot: CXLStateSnapshot) throws(CXLStateError) -> CXLStateSnapshot {
        try snapshot.validate()
        var out: [SavedRegister] = []
        var unread: [UnreadRegister] = []
        let identity = try liveIdentity(snapshot.layout)
        for reg in snapshot.registers where reg.space == .config {
            var r = reg
            r.value = try read(reg)
            out.append(r)
        }
        let mmio = snapshot.registers.filter { $0.space != .config }
        if !mmio.isEmpty {
            let live = Dictionary(out.map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
            if let reason = barChanged(snapshot: snapshot, live: live) {
                unread = mmio.map { UnreadRegister(block: $0.block, register: $0.register, reason: reason) }
            } else {
                let command = live[StateCatalog.commandKey] ?? 0
                let values: [SavedRegister] = try withMemorySpace(command: command) { () throws(CXLStateError) in
                    var vs: [SavedRegister] = []
                    for reg in mmio {
                        var r = reg
                        r.value = try read(reg)
                        vs.append(r)
                    }
                    return vs
                }
                out += values
            }
        }
        // Keep the snapshot's order so diffs line up register by register.
        let order = Dictionary(snapshot.registers.enumerated().map { ($1.key, $0) }, uniquingKeysWith: { a, _ in a })
        out.sort { (order[$0.key] ?? 0) < (order[$1.key] ?? 0) }
        return CXLStateSnapshot(identity: identity, layout: snapshot.layout, registers: out, unread: unread)
    }

    /// Why the component register BAR no longer decodes where it did, or nil.
    func barChanged(snapshot: CXLStateSnapshot, live: [RegisterKey: UInt64]) -> String? {
        guard let hdm = snapshot.layout.hdm else { return nil }
        for i in StateCatalog.barIndices(of: hdm.bar, in: snapshot) {
            let key = StateCatalog.barKey(i)
            guard let saved = snapshot[key]?.value, let now = live[key] else { continue }
            if saved != now {
                return "BAR \(hdm.bar) no longer decodes where it did (Base Address Register \(i) reads "
                    + "\(HexCoding.format(now, width: 4)), was \(HexCoding.format(saved, width: 4)))"
            }
        }
        return nil
    }

    // MARK: - Identity

    /// Vendor, Device and Device Serial Number of the live function, read at the
    /// offsets the snapshot layout gives.
    public func liveIdentity(_ layout: CXLStateLayout) throws(CXLStateError) -> CXLDeviceIdentity {
        let ids = try configRead(PCIHeader.vendorID.offset, 4)
        var serial: UInt64?
        if let dsn = layout.serialNumberOffset {
            // Lower and Upper DWORDs are adjacent: one 8-byte read.
            let bytes = try configBytes(dsn + Discovery.serialLower.offset, 8)
            serial = LittleEndian.load(bytes, at: 0, width: 8)
        }
        return CXLDeviceIdentity(vendorID: UInt16(truncatingIfNeeded: ids), deviceID: UInt16(truncatingIfNeeded: ids >> 16),
                                 serialNumber: serial, address: function.address)
    }

    /// Refuse state that belongs to another device, another layout or other capabilities, before any write.
    /// Returns the read-only registers confirmed equal on the way.
    @discardableResult
    func check(_ snapshot: CXLStateSnapshot, live known: CXLDeviceIdentity? = nil) throws(CXLStateError) -> ConfirmedRegisters {
        let live: CXLDeviceIdentity
        if let known { live = known } else { live = try liveIdentity(snapshot.layout) }
        guard live.matches(snapshot.identity) else { throw .deviceMismatch(expected: snapshot.identity, found: live) }
        let base = snapshot.layout.dvsecOffset
        // Header 1 and 2 are adjacent: one 8-byte read.
        let header = try configBytes(base + DVSECHeader.header1.offset, 8)
        let h1 = LittleEndian.load(header, at: 0, width: DVSECHeader.header1.width) ?? 0
        let h2 = LittleEndian.load(header, at: DVSECHeader.header2.offset - DVSECHeader.header1.offset, width: DVSECHeader.header2.width) ?? 0
        let vendor = DVSECHeader.vendorID.extract(h1)
        let id = DVSECHeader.dvsecID.extract(h2)
        guard vendor == UInt64(cxlDVSECVendorID), id == UInt64(CXLDVSECID.device.rawValue) else {
            throw .layoutMismatch("no \(StateCatalog.dvsecBlock) at config offset \(hex(base, digits: 3))")
        }
        let (differences, confirmed) = try capabilityCheck(snapshot)
        guard differences.isEmpty else { throw .capabilityMismatch(differences) }
        return confirmed
    }

    // MARK: - Access

    func configRead(_ offset: Int, _ width: Int) throws(CXLStateError) -> UInt64 {
        do { return UInt64(try function.configRead(offset, width: width)) } catch { throw .access(error) }
    }

    func configBytes(_ offset: Int, _ count: Int) throws(CXLStateError) -> [UInt8] {
        do { return try function.configReadBytes(offset, count: count) } catch { throw .access(error) }
    }

    func barRead(_ bar: Int, _ offset: UInt64) throws(CXLStateError) -> UInt64 {
        do { return try function.barRead(bar, offset: offset, width: 4) } catch { throw .access(error) }
    }

    func read(_ reg: SavedRegister) throws(CXLStateError) -> UInt64 {
        do {
            switch reg.space {
            case .config: return UInt64(try function.configRead(Int(reg.offset), width: reg.width))
            case .bar(let b): return try function.barRead(b, offset: reg.offset, width: reg.width)
            }
        } catch { throw .access(error) }
    }

    /// Write `reg`; `posted` lets a BAR write complete after the call (config writes
    /// are never posted, PCIe 6.0 §2.4.1).
    func write(_ reg: SavedRegister, _ value: UInt64, posted: Bool = false) throws(CXLStateError) {
        do {
            switch reg.space {
            case .config: try function.configWrite(Int(reg.offset), width: reg.width, value: UInt32(truncatingIfNeeded: value))
            case .bar(let b) where posted: try function.barWritePosted(b, offset: reg.offset, width: reg.width, value: value)
            case .bar(let b): try function.barWrite(b, offset: reg.offset, width: reg.width, value: value)
            }
        } catch { throw .access(error) }
    }

    /// Run `body` with Memory Space Enable set, then put Command back as it was. The
    /// component registers are MMIO: with MSE clear the function does not decode its
    /// BARs (PCIe 6.0 §7.5.1.1.3), so the kernel series sets it for the duration too.
    func withMemorySpace<T>(command: UInt64, _ body: () throws(CXLStateError) -> T) throws(CXLStateError) -> T {
        let mse = StateCatalog.memorySpaceEnableBit
        guard command & mse == 0 else { return try body() }
        let offset = PCIHeader.command.offset, width = PCIHeader.command.width
        do { try function.configWrite(offset, width: width, value: UInt32(command | mse)) } catch { throw .access(error) }
        let result: Result<T, CXLStateError>
        do { result = .success(try body()) } catch { result = .failure(error) }
        do { try function.configWrite(offset, width: width, value: UInt32(command)) } catch {
            if case .failure(let e) = result { throw e }
            throw .access(error)
        }
        return try result.get()
    }
}

/// Finding the saved structures.
enum Discovery {
    struct ConfigFindings {
        var layout: CXLStateLayout
        var identity: CXLDeviceIdentity
        /// The device map's config-space part (DVSECs, Register Locator).
        var map: CXLDeviceMap
    }

    /// Device Serial Number capability (PCIe 6.0 §7.9.3), from the PCI catalog.
    static let serialLower = DeviceSerialNumberCapability.lower
    static let serialUpper = DeviceSerialNumberCapability.upper

    static func configLayout(_ config: ConfigSpace, address: String) throws(CXLStateError) -> ConfigFindings {
        let caps = CapabilityList(walking: config)
        let map: CXLDeviceMap
        do { map = try CXLDeviceMap(config: config, capabilities: caps) } catch {
            throw .notCXLDevice("\(address) has no \(StateCatalog.dvsecBlock) (vendor 1e98, ID 0)")
        }
        guard let vendor = config.vendorID, let deviceID = config.deviceID else {
            throw .notCXLDevice("\(address): config space too short")
        }
        let dsn = caps.extended(.deviceSerialNumber).first?.offset
        var serial: UInt64?
        if let dsn, let lo = config.read(serialLower, base: dsn), let hi = config.read(serialUpper, base: dsn) {
            serial = lo | hi << 32
        }
        let device = map.deviceDVSEC
        let layout = CXLStateLayout(
            dvsecOffset: device.offset, dvsecRevision: device.revision,
            pciExpressOffset: caps.standard(.pciExpress)?.offset, msiOffset: caps.standard(.msi)?.offset,
            msixOffset: caps.standard(.msix)?.offset, serialNumberOffset: dsn)
        return ConfigFindings(
            layout: layout,
            identity: CXLDeviceIdentity(vendorID: vendor, deviceID: deviceID, serialNumber: serial, address: address),
            map: map)
    }

    /// The config-space registers of the snapshot, valued from `config`, in save order.
    static func configRegisters(_ config: ConfigSpace, layout: CXLStateLayout) -> [SavedRegister] {
        var out: [SavedRegister] = []
        out.reserveCapacity(32)
        func add(_ r: ConfigNames.Place, base: Int, _ role: SavedRegisterRole) {
            let off = base + r.offset
            guard r.width <= 4, let v = config.read(off, width: r.width) else { return }
            out.append(SavedRegister(name: r.name, space: .config, offset: UInt64(off), width: r.width, value: v, role: role))
        }
        let ids = ConfigNames.self
        add(ids.command, base: 0, .restore)
        for r in ids.bars { add(r, base: 0, .restore) }
        if let pcie = layout.pciExpressOffset {
            for r in ids.pciExpress { add(r, base: pcie, .restore) }
        }
        if let msi = layout.msiOffset, let control = config.read(ids.msiControlOffset + msi, width: ids.msiControlWidth) {
            for r in ids.msi(messageControl: control) { add(r, base: msi, .restore) }
        }
        if let msix = layout.msixOffset { add(ids.msixControl, base: msix, .restore) }
        for (r, role) in ids.dvsec { add(r, base: layout.dvsecOffset, role) }
        return out
    }

    /// Complete `map` from the component block (capability array, HDM Decoder
    /// Capability) and read the HDM registers, appending them to `regs`. Returns nil
    /// (and appends nothing) when the block has no HDM decoders.
    static func hdm(_ map: inout CXLDeviceMap, into regs: inout [SavedRegister], read: (Int, UInt64) throws(CXLStateError) -> UInt64,
                    readBytes: (Int, UInt64, Int) throws(CXLStateError) -> [UInt8])
        throws(CXLStateError) -> HDMLocation? {
        guard let block = map.componentBlock else { return nil }
        var failure: CXLStateError?
        let e = map.readComponentRegisters { (offset) throws(PCIError) -> UInt32 in
            do throws(CXLStateError) {
                return UInt32(truncatingIfNeeded: try read(block.bir, block.offset + UInt64(offset)))
            } catch {
                failure = error
                throw .io("\(error)")
            }
        }
        if e != nil, let failure { throw failure }
        guard let found = map.hdm else { return nil }
        let endpoint = map.endpoint
        let hdmOffset = block.offset + UInt64(found.offset)
        let decoders = min(found.decoderCount ?? 0, HDMDecoderCapability.maximumDecoders)
        let location = HDMLocation(bar: block.bir, blockOffset: block.offset, hdmOffset: hdmOffset,
                                   decoderCount: decoders, endpoint: endpoint)
        let capReg = HDMDecoderCapability.capability
        let space = RegisterSpace.bar(block.bir)
        // Global Control and every decoder register in one batched read of the block
        // (the Capability register was read by the map); registers by number, offsets
        // from decoder 0's layout plus the stride.
        let global = HDMDecoderCapability.globalControl
        let first = global.offset
        let bytes = try readBytes(block.bir, hdmOffset + UInt64(first), HDMDecoderCapability.length(decoders: decoders) - first)
        let slots = endpoint ? ConfigNames.endpointDecoder0 : ConfigNames.portDecoder0
        let stride = HDMDecoderCapability.decoderStride
        // Every register's bytes are there before any is appended: a short read appends nothing.
        let needed = slots.map { $0.offset + $0.width }.max().map { $0 + stride * (decoders - 1) } ?? 0
        guard bytes.count >= max(global.offset + global.width, decoders > 0 ? needed : 0) - first else {
            throw .access(.io("HDM Decoder Capability read returned \(bytes.count) bytes"))
        }
        regs.reserveCapacity(regs.count + 2 + slots.count * decoders)
        regs.append(SavedRegister(name: .catalog(StateRegisterTable.hdmCapability), space: space,
                                  offset: hdmOffset + UInt64(capReg.offset), width: 4, value: UInt64(found.capability), role: .verify))
        // Decoder n's register in slot k is decoder 0's plus `decoderSlots * n` in the table.
        let slotIDs = endpoint ? ConfigNames.endpointDecoder0IDs : ConfigNames.portDecoder0IDs
        let idStride = StateRegisterTable.decoderSlots
        bytes.withUnsafeBytes { raw in
            // Every offset is inside `bytes` (checked above): the load's own range check never fails.
            func add(_ id: Int, _ offset: Int, _ width: Int) {
                let v = LittleEndian.load(raw, at: offset - first, width: width) ?? 0
                regs.append(SavedRegister(name: .catalog(UInt16(truncatingIfNeeded: id)), space: space, offset: hdmOffset + UInt64(offset),
                                          width: width, value: v, role: .restore))
            }
            add(Int(StateRegisterTable.hdmGlobalControl), global.offset, global.width)
            for n in 0..<decoders {
                for k in slots.indices {
                    add(slotIDs[k] + idStride * n, slots[k].offset + stride * n, slots[k].width)
                }
            }
        }
        return location
    }
}

/// The numbers of the registers `configRegisters` saves, found once.
enum ConfigNames {
    /// The name of catalog register `r` of structure `block` (the state table's own index by name).
    static func name(_ block: String, _ r: RegisterLayout) -> StateRegisterName {
        StateRegisterName(block: block, register: r.name)
    }

    /// A saved config register as numbers: its state-table name, offset in its structure
    /// and width (no register layout, with its name and fields, copied per save).
    struct Place: Sendable {
        let name: StateRegisterName
        let offset: Int
        let width: Int
    }
    private static func place(_ block: String, _ r: RegisterLayout) -> Place { Place(name: name(block, r), offset: r.offset, width: r.width) }
    static let command = place(StateCatalog.headerBlock, PCIHeader.command)
    static let bars = (0..<6).map { place(StateCatalog.headerBlock, PCIHeader.bar($0)) }
    static let pciExpress = StateCatalog.pciExpressRegisters.map { place(StateCatalog.pciExpressBlock, $0) }
    static let msixControl = place(StateCatalog.msixBlock, MSIXCapability.messageControl)
    static let msiControlOffset = MSICapability.messageControl.offset
    static let msiControlWidth = MSICapability.messageControl.width
    /// The DVSEC registers saved, in save order, with their roles: Capability (verify),
    /// Control, Control2, Lock, then per range Size High/Low (verify) and Base High/Low.
    static let dvsec: [(Place, SavedRegisterRole)] = {
        var out: [(RegisterLayout, SavedRegisterRole)] = [(CXLDeviceDVSEC.capability, .verify), (CXLDeviceDVSEC.control, .restore),
                                                          (CXLDeviceDVSEC.control2, .restore), (CXLDeviceDVSEC.lock, .restore)]
        for range in [CXLDeviceDVSEC.range1, CXLDeviceDVSEC.range2] {
            out += [(range.sizeHigh, .verify), (range.sizeLow, .verify), (range.baseHigh, .restore), (range.baseLow, .restore)]
        }
        return out.map { (place(StateCatalog.dvsecBlock, $0.0), $0.1) }
    }()

    /// The MSI registers `StateCatalog.msiRegisters(messageControl:)` saves, for each of
    /// the eight layouts Message Control can describe (64-bit, per-vector masking,
    /// extended data), found once.
    private static let msiPlaces: [[Place]] = (0..<8).map { k in
        let c = MSICapability.Control.self
        var control: UInt64 = 0
        if k & 1 != 0 { control = c.is64Bit.insert(1, into: control) }
        if k & 2 != 0 { control = c.perVectorMasking.insert(1, into: control) }
        if k & 4 != 0 { control = c.extendedMessageData.insert(1, into: control) }
        return StateCatalog.msiRegisters(messageControl: control).map { place(StateCatalog.msiBlock, $0) }
    }

    static func msi(messageControl: UInt64) -> [Place] {
        let c = MSICapability.Control.self
        let k = (c.is64Bit.extract(messageControl) == 1 ? 1 : 0) | (c.perVectorMasking.extract(messageControl) == 1 ? 2 : 0)
            | (c.extendedMessageData.extract(messageControl) == 1 ? 4 : 0)
        return msiPlaces[k]
    }

    /// Decoder 0's registers in save order, as offsets (relative to the structure) and
    /// widths: no register layouts (names, fields) copied per saved register.
    static let endpointDecoder0 = StateCatalog.decoderRegisters(0, endpoint: true).map { (offset: $0.offset, width: $0.width) }
    static let portDecoder0 = StateCatalog.decoderRegisters(0, endpoint: false).map { (offset: $0.offset, width: $0.width) }
    /// Their numbers in the state table (decoder n's are `StateRegisterTable.decoderSlots * n` further).
    static let endpointDecoder0IDs = endpointDecoder0.indices.map { Int(StateRegisterTable.decoder(0, slot: $0, endpoint: true)) }
    static let portDecoder0IDs = portDecoder0.indices.map { Int(StateRegisterTable.decoder(0, slot: $0, endpoint: false)) }
}

extension StateCatalog {
    static let commandKey = RegisterKey(name: .catalog(StateRegisterTable.command))
    static func barKey(_ i: Int) -> RegisterKey { RegisterKey(name: .catalog(StateRegisterTable.bars[i])) }

    /// BAR register indices that make up BAR `bar` (two for a 64-bit memory BAR).
    static func barIndices(of bar: Int, in snapshot: CXLStateSnapshot) -> [Int] {
        guard let low = snapshot[barKey(bar)]?.value else { return [bar] }
        let type = PCIHeader.BAR.memoryType
        let io = PCIHeader.BAR.memorySpaceIndicator
        return io.extract(low) == 0 && type.extract(low) == 2 && bar < 5 ? [bar, bar + 1] : [bar]
    }

    /// MSI registers that hold state, for the layout Message Control describes:
    /// Message Address (and Upper), Data (and Extended Data when capable), Mask Bits
    /// when per-vector masking is capable, and Message Control itself.
    static func msiRegisters(messageControl: UInt64) -> [RegisterLayout] {
        let is64 = MSICapability.Control.is64Bit.extract(messageControl) == 1
        let pvm = MSICapability.Control.perVectorMasking.extract(messageControl) == 1
        let extended = MSICapability.Control.extendedMessageData.extract(messageControl) == 1
        let extendedData = MSICapability.dataRegisters(is64Bit: is64).extendedMessageData
        return MSICapability.layout(is64Bit: is64, perVectorMasking: pvm).registers.filter {
            $0.writableMask != 0 && ($0 != extendedData || extended)
        }
    }
}
