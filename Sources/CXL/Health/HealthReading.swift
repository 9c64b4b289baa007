import PCI

// Fleet health (issue 18): what a CXL function's state is right now, read without
// writing anything, for `cxlkit check`, `cxlkit metrics` and the exporter.

/// One HDM decoder as its registers read now (CXL 3.1 §8.2.4.20.5-8).
public struct CXLDecoderReading: Sendable, Hashable, Codable {
    public var index: Int
    /// HPA base and size (Decoder n Base/Size High and Low).
    public var base: UInt64
    public var size: UInt64
    /// DPA Skip (endpoints; nil for ports).
    public var dpaSkip: UInt64?
    /// Interleave ways (nil: reserved IW encoding).
    public var ways: Int?
    public var commit: Bool
    public var committed: Bool
    public var lockOnCommit: Bool
    public var errorNotCommitted: Bool
    /// Decoder n Control, raw.
    public var control: UInt32

    public init(index: Int, base: UInt64, size: UInt64, dpaSkip: UInt64?, ways: Int?, commit: Bool, committed: Bool,
                lockOnCommit: Bool, errorNotCommitted: Bool, control: UInt32) {
        self.index = index
        self.base = base
        self.size = size
        self.dpaSkip = dpaSkip
        self.ways = ways
        self.commit = commit
        self.committed = committed
        self.lockOnCommit = lockOnCommit
        self.errorNotCommitted = errorNotCommitted
        self.control = control
    }

    /// Committed with Lock On Commit: the RWL fields are frozen until a conventional
    /// reset or CXL Reset (§8.2.4.20.7).
    public var locked: Bool { committed && lockOnCommit }

    init(_ d: HDMDecoderState) {
        self.init(index: d.index, base: d.base, size: d.size, dpaSkip: d.dpaSkip, ways: d.ways, commit: d.commit,
                  committed: d.committed, lockOnCommit: d.lockOnCommit, errorNotCommitted: d.errorNotCommitted, control: d.control)
    }

    /// Decoder n as a state snapshot holds it (nil when the snapshot lacks its registers).
    public init?(snapshot: CXLStateSnapshot, index n: Int) {
        let regs = Dictionary(snapshot.decoder(n).map { ($0.register, $0.value) }, uniquingKeysWith: { a, _ in a })
        let r = HDMDecoderRegisters(n, endpoint: snapshot.layout.hdm?.endpoint ?? true)
        func v(_ layout: RegisterLayout) -> RegisterValue? { regs[layout.name].map { RegisterValue(layout, $0) } }
        guard let bl = v(r.baseLow), let bh = v(r.baseHigh), let sl = v(r.sizeLow), let sh = v(r.sizeHigh), let ctl = v(r.control) else { return nil }
        var skip: UInt64?
        if snapshot.layout.hdm?.endpoint ?? true, let kl = v(r.skipOrTargetLow), let kh = v(r.skipOrTargetHigh) {
            skip = (kh["DPA Skip High"] << 32) | (kl["DPA Skip Low"] << 28)
        }
        self.init(index: n, base: (bh["Memory Base High"] << 32) | (bl["Memory Base Low"] << 28),
                  size: (sh["Memory Size High"] << 32) | (sl["Memory Size Low"] << 28), dpaSkip: skip,
                  ways: InterleaveWays(encoding: UInt8(ctl["IW"]))?.ways, commit: ctl.isSet("Commit"),
                  committed: ctl.isSet("Committed"), lockOnCommit: ctl.isSet("Lock On Commit"),
                  errorNotCommitted: ctl.isSet("Error Not Committed"), control: UInt32(truncatingIfNeeded: ctl.raw))
    }
}

/// DVSEC CXL Range n (CXL 3.1 §8.1.3.8), for the ranges HDM_Count covers.
public struct CXLRangeReading: Sendable, Hashable, Codable {
    public var number: Int
    public var size: UInt64
    public var base: UInt64
    public var infoValid: Bool
    public var active: Bool
}

/// PCIe DVSEC for Flex Bus Port Status (CXL 3.1 §8.2.1.3.3): the protocols the link
/// trained with.
public struct CXLFlexBusReading: Sendable, Hashable, Codable {
    public var cache: Bool
    public var io: Bool
    public var mem: Bool
    /// Control Mem: CXL.mem was asked for.
    public var memEnabled: Bool
}

/// CXL RAS Capability status registers (CXL 3.1 §8.2.4.17.1, .4).
public struct CXLRASReading: Sendable, Hashable, Codable {
    public var uncorrectableStatus: UInt32
    public var uncorrectableMask: UInt32
    public var correctableStatus: UInt32

    /// Status bits set that the mask does not hide, by catalog name.
    public var uncorrectableErrors: [String] { RASCapability.uncorrectableStatus.setFields(UInt64(uncorrectableStatus & ~uncorrectableMask)) }
    public var correctableErrors: [String] { RASCapability.correctableStatus.setFields(UInt64(correctableStatus)) }
}

/// Everything `cxlkit check` and the metrics look at for one function, read now.
public struct CXLHealthReading: Sendable, Hashable, Codable {
    public var identity: CXLDeviceIdentity
    /// DVSEC CXL Control (§8.1.3.2).
    public var memEnable: Bool
    public var cacheEnable: Bool
    public var control: UInt16
    /// DVSEC CXL Lock CONFIG_LOCK (§8.1.3.6).
    public var configLocked: Bool
    public var hdmCount: Int
    public var ranges: [CXLRangeReading]
    public var flexBus: CXLFlexBusReading?
    /// HDM Decoder Global Control HDM Decoder Enable (§8.2.4.20.2); nil when the
    /// component registers were not read.
    public var hdmDecoderEnable: Bool?
    /// Nil when the component registers were not read (see `componentError`); empty
    /// when the function has no HDM Decoder Capability.
    public var decoders: [CXLDecoderReading]?
    public var ras: CXLRASReading?
    /// Why the component registers (HDM decoders, RAS) were not read.
    public var componentError: String?
    /// PCIe AER counters from sysfs (sysfs targets only).
    public var aer: PCIeAERCounters?
    /// What the Linux CXL driver believes (sysfs targets on a host with the driver).
    public var kernel: CXLKernelView?
    /// Memory Space Enable was clear: it was set for the component register reads and Command put back.
    public var memorySpaceEnabledForRead = false

    /// Reads a function's CXL state through `PCIFunction`: config space once, then the
    /// component register block named by the Register Locator DVSEC (capability array,
    /// RAS, HDM decoders). The only write is Memory Space Enable, when it is clear (the
    /// BARs do not decode without it, PCIe 6.0 §7.5.1.1.3): set for the reads and Command
    /// put back, as `save` does; a read-only function refuses it and the component
    /// registers are reported unread.
    public static func read(_ function: any PCIFunction) throws(CXLStateError) -> CXLHealthReading {
        let config: ConfigSpace
        do { config = try function.configSnapshot() } catch { throw .access(error) }
        return try read(config: config, function: function)
    }

    /// The same from a config space already read; `function` reaches the BARs (nil:
    /// config space only, component registers unread).
    public static func read(config: ConfigSpace, function: (any PCIFunction)?) throws(CXLStateError) -> CXLHealthReading {
        let found = try Discovery.configLayout(config, address: function?.address ?? "function")
        let caps = CapabilityList(walking: config)
        let dvsecs = caps.dvsecs(in: config)
        let d = found.layout.dvsecOffset
        func reg(_ r: RegisterLayout, _ base: Int) -> RegisterValue { RegisterValue(r, config.read(r, base: base) ?? 0) }
        let cap = reg(CXLDeviceDVSEC.capability, d)
        let ctl = reg(CXLDeviceDVSEC.control, d)
        let lock = reg(CXLDeviceDVSEC.lock, d)
        let hdmCount = Int(cap["HDM_Count"])
        var ranges: [CXLRangeReading] = []
        for (n, r) in [(1, CXLDeviceDVSEC.range1), (2, CXLDeviceDVSEC.range2)].prefix(min(hdmCount, 2)) {
            let sl = reg(r.sizeLow, d)
            ranges.append(CXLRangeReading(
                number: n, size: (reg(r.sizeHigh, d)["Memory_Size_High"] << 32) | (sl["Memory_Size_Low"] << 28),
                base: (reg(r.baseHigh, d)["Memory_Base_High"] << 32) | (reg(r.baseLow, d)["Memory_Base_Low"] << 28),
                infoValid: sl.isSet("Memory_Info_Valid"), active: sl.isSet("Memory_Active")))
        }
        var flexBus: CXLFlexBusReading?
        if let fb = dvsecs.first(where: { $0.vendorID == cxlDVSECVendorID && $0.dvsecID == CXLDVSECID.flexBusPort.rawValue && $0.fitsInConfigSpace }) {
            let st = reg(FlexBusPortDVSEC.status, fb.offset), fc = reg(FlexBusPortDVSEC.control, fb.offset)
            flexBus = CXLFlexBusReading(cache: st.isSet("Cache"), io: st.isSet("IO"), mem: st.isSet("Mem"), memEnabled: fc.isSet("Mem"))
        }
        var reading = CXLHealthReading(
            identity: found.identity, memEnable: ctl.isSet("Mem_Enable"), cacheEnable: ctl.isSet("Cache_Enable"),
            control: UInt16(truncatingIfNeeded: ctl.raw), configLocked: lock.isSet("CONFIG_LOCK"), hdmCount: hdmCount,
            ranges: ranges, flexBus: flexBus)
        guard let block = found.map.componentBlock else {
            reading.decoders = []
            return reading
        }
        guard let function else {
            reading.componentError = "component registers at BAR \(block.bir) + \(HexCoding.format(block.offset, width: 4)) not reachable (config space only)"
            return reading
        }
        let commandRaw = config.read(PCIHeader.command) ?? 0
        let mse = PCIHeader.Command.memorySpaceEnable
        if mse.extract(commandRaw) == 0 {
            // As save does (PCIe 6.0 §7.5.1.1.3: BARs decode only with MSE set): set it for the reads and put Command
            // back. A read-only target (a served device's control socket) refuses the write: then nothing is read.
            do { try function.configWrite(PCIHeader.command.offset, width: PCIHeader.command.width, value: UInt32(mse.insert(1, into: commandRaw))) } catch {
                reading.componentError = "Memory Space Enable is clear: BAR \(block.bir) does not decode, component registers not read"
                return reading
            }
            reading.memorySpaceEnabledForRead = true
        }
        defer {
            if reading.memorySpaceEnabledForRead {
                try? function.configWrite(PCIHeader.command.offset, width: PCIHeader.command.width, value: UInt32(commandRaw))
            }
        }
        let decode = ComponentRegisterDecode(reader: BARBlockReader(function: function, bar: block.bir, blockOffset: block.offset),
                                             endpoint: found.map.endpoint)
        // No capability array (header unreadable or not ID 1): nothing below can be trusted.
        if decode.header == nil || (decode.capabilities.isEmpty && !decode.findings.isEmpty) {
            reading.componentError = decode.findings.first?.message ?? "component registers unreadable"
            return reading
        }
        if let hdm = decode.hdm {
            reading.hdmDecoderEnable = RegisterValue(HDMDecoderCapability.globalControl, UInt64(hdm.globalControl)).isSet("HDM Decoder Enable")
            reading.decoders = hdm.decoders.map(CXLDecoderReading.init)
        } else if decode.capabilities.contains(where: { $0.id == CacheMemCapabilityID.hdmDecoder.rawValue }) {
            reading.componentError = decode.findings.first?.message ?? "HDM Decoder Capability unreadable"
        } else {
            reading.decoders = []
        }
        if let ras = decode.capabilities.first(where: { $0.id == CacheMemCapabilityID.ras.rawValue }),
           let regs = decode.registers[ras.pointer] {
            var v: [String: UInt32] = [:]
            for (layout, value) in regs where v[layout.name] == nil { v[layout.name] = value }
            if let us = v[RASCapability.uncorrectableStatus.name], let cs = v[RASCapability.correctableStatus.name] {
                reading.ras = CXLRASReading(uncorrectableStatus: us, uncorrectableMask: v[RASCapability.uncorrectableMask.name] ?? 0,
                                            correctableStatus: cs)
            }
        }
        return reading
    }
}

extension RegisterLayout {
    /// Names of the single-bit fields set in `value`.
    func setFields(_ value: UInt64) -> [String] {
        fields.sorted { $0.lsb < $1.lsb }.filter { $0.extract(value) != 0 }.map(\.name)
    }
}

