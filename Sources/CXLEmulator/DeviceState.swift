import PCI
import CXL

/// The device's registers and pending effects. Only `EmulatedCXLDevice` touches it,
/// under its lock.
struct State {
    let profile: DeviceProfile
    /// The HDM decoders' device-side behaviour (commit rules, Lock On Commit): the
    /// one model vfio-cxl's shadow uses too.
    var hdm: HDMDecoderDevice
    /// CONFIG_LOCK and the Control2 doorbells of the DVSEC for CXL Devices.
    let dvsec = CXLDeviceDVSECDevice(origin: Layout.cxlDevice, length: CXLDeviceDVSEC.length(revision: Layout.cxlDeviceRevision))
    var config = RegisterFile(size: pcieConfigSpaceSize)
    /// CXL.cachemem: component block + 0x1000 ..< + 0x2000. The rest of the 64 KiB
    /// component block (CXL.io, ARB/MUX: not implemented) reads 0 and ignores writes.
    var component = RegisterFile(size: ComponentRegisterBlock.cacheMemSize)
    var deviceRegs = RegisterFile(size: Int(Layout.deviceRegisterBlockSize))
    /// MSI-X table at +0, PBA at +0x1000.
    var msix = RegisterFile(size: Layout.msixRegionSize)

    /// Commits whose result appears at a deadline; the result was decided at the write.
    var pendingCommits: [Int: (deadline: UInt64, failure: CommitFailure?)] = [:]
    /// Commits that will never complete (fault).
    var hungCommits: Set<Int> = []
    var cxlReset: (deadline: UInt64, memClear: Bool)? = nil
    var cxlResetHung = false
    var writebackDeadline: UInt64? = nil
    var memoryValidAt: UInt64? = nil
    var memoryActiveAt: UInt64? = nil
    var interrupts: [Int] = []

    init(profile: DeviceProfile) {
        self.profile = profile
        let c = profile.capabilities
        hdm = HDMDecoderDevice(rules: HDMCommitRules(threeSixTwelveWay: c.interleave3_6_12Way, sixteenWay: c.interleave16Way,
                                                     a11to8: c.interleaveA11to8, a14to12: c.interleaveA14to12, capacity: profile.memorySize),
                               decoderCount: profile.decoderCount, origin: Layout.hdmCapability)
        buildConfig()
        buildComponent()
        buildDeviceRegisters()
        buildMSIX()
    }

    // MARK: Offsets

    static let dv = Layout.cxlDevice
    static let dvsecRange = Layout.cxlDevice ..< Layout.cxlDevice + CXLDeviceDVSEC.length(revision: Layout.cxlDeviceRevision)
    static let control = Layout.cxlDevice + CXLDeviceDVSEC.control.offset
    static let control2 = Layout.cxlDevice + CXLDeviceDVSEC.control2.offset
    static let status2 = Layout.cxlDevice + CXLDeviceDVSEC.status2.offset
    static let lockRegister = Layout.cxlDevice + CXLDeviceDVSEC.lock.offset
    static let range1SizeLow = Layout.cxlDevice + CXLDeviceDVSEC.range1.sizeLow.offset
    static let deviceControl = Layout.pciExpress + PCIExpressCapability.deviceControl.offset

    static func bit(_ r: RegisterLayout, _ name: String) -> UInt64 {
        guard let f = r.field(name) else { preconditionFailure("\(r.name) has no field \(name)") }
        return f.mask
    }

    static let memEnable = CXLDeviceDVSEC.memEnable.mask
    static let cacheInvalid = CXLDeviceDVSEC.Status2.cacheInvalid.mask
    static let initiateWBI = CXLDeviceDVSEC.Control2.initiateWritebackInvalidate.mask
    static let initiateReset = CXLDeviceDVSEC.Control2.initiateCXLReset.mask
    static let memClrEnable = CXLDeviceDVSEC.Control2.memClearEnable.mask
    static let desiredHotResetState = CXLDeviceDVSEC.Control2.desiredVolatileHDMStateAfterHotReset.mask
    static let infoValid = bit(CXLDeviceDVSEC.range1.sizeLow, "Memory_Info_Valid")
    static let memoryActive = bit(CXLDeviceDVSEC.range1.sizeLow, "Memory_Active")
    static let configLockBit = CXLDeviceDVSEC.configLock.mask
    static let hdmDecoderEnable = HDMDecoderCapability.hdmDecoderEnable.mask
    static let commitBit = HDMDecoderCapability.Control.commit.mask
    static let committedBit = HDMDecoderCapability.Control.committed.mask
    static let lockOnCommitBit = HDMDecoderCapability.Control.lockOnCommit.mask
    static let flrBit = PCIExpressCapability.initiateFLR.mask

    /// Offset of decoder n's first register in the cachemem file.
    static func decoderBase(_ n: Int) -> Int { Layout.hdmCapability + HDMDecoderCapability.firstDecoderOffset + HDMDecoderCapability.decoderStride * n }
    static func decoderControl(_ n: Int) -> Int { Layout.hdmCapability + HDMDecoderRegisters(n).control.offset }
    static let hdmGlobalControl = Layout.hdmCapability + HDMDecoderCapability.globalControl.offset
    static var hdmRange: Range<Int> { Layout.hdmCapability ..< Layout.hdmCapability + HDMDecoderCapability.length(decoders: HDMDecoderCapability.maximumDecoders) }
    static let rasRange = Layout.rasCapability ..< Layout.rasCapability + RASCapability.length

    static func memoryBARSize(_ p: DeviceProfile) -> UInt64 {
        var s: UInt64 = 1
        while s < p.memorySize { s <<= 1 }
        return s
    }

    // MARK: Building

    /// `register`'s reset value with the named fields replaced.
    static func value(_ r: RegisterLayout, _ fields: [(String, UInt64)]) -> UInt64 {
        fields.reduce(r.resetValue) { v, f in
            guard let field = r.field(f.0) else { preconditionFailure("\(r.name) has no field \(f.0)") }
            return field.insert(f.1, into: v)
        }
    }

    static func b(_ v: Bool) -> UInt64 { v ? 1 : 0 }

    private mutating func ini(_ r: RegisterLayout, at base: Int, _ fields: [(String, UInt64)]) {
        config.initialize(base + r.offset, width: r.width, value: Self.value(r, fields))
    }

    private mutating func extendedHeader(at base: Int, id: UInt16, version: UInt64 = 1, next: Int) {
        ini(ExtendedCapabilityHeader.header, at: base, [
            ("PCI Express Extended Capability ID", UInt64(id)), ("Capability Version", version), ("Next Capability Offset", UInt64(next)),
        ])
    }

    private mutating func dvsecHeaders(at base: Int, id: CXLDVSECID, revision: UInt8, length: Int, next: Int) {
        extendedHeader(at: base, id: ExtendedCapabilityID.designatedVendorSpecific.rawValue, next: next)
        ini(DVSECHeader.header1, at: base, [("DVSEC Vendor ID", UInt64(cxlDVSECVendorID)), ("DVSEC Revision", UInt64(revision)), ("DVSEC Length", UInt64(length))])
        ini(DVSECHeader.header2, at: base, [("DVSEC ID", UInt64(id.rawValue))])
    }

    private mutating func standardHeader(at base: Int, id: CapabilityID, next: Int) {
        config.initialize(base, width: 1, value: UInt64(id.rawValue))
        config.initialize(base + 1, width: 1, value: UInt64(next))
    }

    private mutating func buildConfig() {
        let p = profile, c = p.capabilities
        config.place(PCIHeader.type0, at: 0)
        config.place(PowerManagementCapability.layout, at: Layout.powerManagement)
        config.place(MSIXCapability.layout, at: Layout.msix)
        config.place(PCIExpressCapability.layout, at: Layout.pciExpress)
        config.place(DeviceSerialNumberCapability.layout, at: Layout.serialNumber)
        config.place(CXLDeviceDVSEC.layout(revision: Layout.cxlDeviceRevision), at: Layout.cxlDevice)
        config.place(GPFDeviceDVSEC.layout, at: Layout.gpf)
        config.place(FlexBusPortDVSEC.layout(revision: Layout.flexBusRevision), at: Layout.flexBus)
        config.place(RegisterLocatorDVSEC.layout(entries: Layout.registerLocatorEntries), at: Layout.registerLocator)

        // Type 0 header (PCI 3.0 §6.2).
        ini(PCIHeader.vendorID, at: 0, [("Vendor ID", UInt64(p.vendorID))])
        ini(PCIHeader.deviceID, at: 0, [("Device ID", UInt64(p.deviceID))])
        ini(PCIHeader.status, at: 0, [("Capabilities List", 1)])
        ini(PCIHeader.revisionID, at: 0, [("Revision ID", UInt64(p.revisionID))])
        ini(PCIHeader.programmingInterface, at: 0, [("Programming Interface", UInt64(p.classCode & 0xFF))])
        ini(PCIHeader.subClass, at: 0, [("Sub Class Code", UInt64((p.classCode >> 8) & 0xFF))])
        ini(PCIHeader.baseClass, at: 0, [("Base Class Code", UInt64(p.classCode >> 16))])
        ini(PCIHeader.subsystemVendorID, at: 0, [("Subsystem Vendor ID", UInt64(p.subsystemVendorID))])
        ini(PCIHeader.subsystemID, at: 0, [("Subsystem ID", UInt64(p.subsystemID))])
        ini(PCIHeader.capabilitiesPointer, at: 0, [("Capabilities Pointer", UInt64(Layout.powerManagement))])
        // No I/O BARs, no VGA, no BIST, no expansion ROM, no INTx: those bits are hard-wired 0.
        config.setWritableMask(PCIHeader.command.offset, width: 2, mask:
            PCIHeader.Command.memorySpaceEnable.mask | Self.bit(PCIHeader.command, "Bus Master Enable")
            | Self.bit(PCIHeader.command, "Parity Error Response") | Self.bit(PCIHeader.command, "SERR# Enable")
            | PCIHeader.Command.interruptDisable.mask)
        config.setWritableMask(PCIHeader.bist.offset, width: 1, mask: 0)
        let rom = PCIHeader.expansionROM(offset: PCIHeader.type0ExpansionROMOffset)
        config.setWritableMask(rom.offset, width: rom.width, mask: 0)
        // BARs (PCIe 6.0 §7.5.1.2.1): the writable base bits give the size.
        for i in 0..<6 { config.setWritableMask(PCIHeader.bar(i).offset, width: 4, mask: 0) }
        let bar = PCIHeader.BAR.self
        func memory64(_ index: Int, size: UInt64, prefetchable: Bool) {
            ini(PCIHeader.bar(index), at: 0, [(bar.memoryType.name, bar.memoryType64Bit), (bar.prefetchable.name, prefetchable ? 1 : 0)])
            let sizing = bar.sizingMask(size: size)
            config.setWritableMask(PCIHeader.bar(index).offset, width: 4, mask: sizing.low)
            config.setWritableMask(PCIHeader.bar(index + 1).offset, width: 4, mask: sizing.high)
        }
        memory64(0, size: Layout.bar0Size, prefetchable: false)
        if p.prefetchableMemoryBAR { memory64(Layout.memoryBARIndex, size: Self.memoryBARSize(p), prefetchable: true) }

        // Power Management (PCI PM 1.2 §3.2): version 3, D0/D3hot, No_Soft_Reset.
        standardHeader(at: Layout.powerManagement, id: .powerManagement, next: Layout.msix)
        ini(PowerManagementCapability.capabilities, at: Layout.powerManagement, [("Version", 3)])
        ini(PowerManagementCapability.controlStatus, at: Layout.powerManagement, [("No_Soft_Reset", 1)])
        config.setWritableMask(Layout.powerManagement + PowerManagementCapability.controlStatus.offset, width: 2,
                               mask: Self.bit(PowerManagementCapability.controlStatus, "PowerState"))

        // MSI-X (PCI 3.0 §6.8.2): table and PBA in BAR0.
        standardHeader(at: Layout.msix, id: .msix, next: Layout.pciExpress)
        ini(MSIXCapability.messageControl, at: Layout.msix, [("Table Size", UInt64(p.msixVectors - 1))])
        ini(MSIXCapability.tableOffset, at: Layout.msix, [("Table BIR", 0), ("Table Offset", Layout.msixTable >> 3)])
        ini(MSIXCapability.pbaOffset, at: Layout.msix, [("PBA BIR", 0), ("PBA Offset", Layout.msixPBA >> 3)])

        // PCI Express capability (PCIe 6.0 §7.5.3): version 2 Endpoint, FLR capable, x16 32GT/s.
        standardHeader(at: Layout.pciExpress, id: .pciExpress, next: 0)
        let e = Layout.pciExpress
        ini(PCIExpressCapability.capabilities, at: e, [("Capability Version", 2), ("Device/Port Type", 0)])
        ini(PCIExpressCapability.deviceCapabilities, at: e, [
            ("Max_Payload_Size Supported", 1), ("Extended Tag Field Supported", 1), ("Role-Based Error Reporting", 1),
            ("Function Level Reset Capability", 1),
        ])
        config.setWritableMask(e + PCIExpressCapability.deviceControl.offset, width: 2,
            mask: PCIExpressCapability.deviceControl.writableMask & ~Self.bit(PCIExpressCapability.deviceControl, "Phantom Functions Enable"))
        ini(PCIExpressCapability.linkCapabilities, at: e, [("Max Link Speed", 5), ("Maximum Link Width", 16)])
        ini(PCIExpressCapability.linkStatus, at: e, [("Current Link Speed", 5), ("Negotiated Link Width", 16)])
        ini(PCIExpressCapability.linkCapabilities2, at: e, [("Supported Link Speeds Vector", 0x1F)])
        ini(PCIExpressCapability.linkControl2, at: e, [("Target Link Speed", 5)])
        // No slot, no root port registers on an endpoint.
        for r in [PCIExpressCapability.slotControl, PCIExpressCapability.rootControl, PCIExpressCapability.slotStatus, PCIExpressCapability.rootStatus] {
            config.setWritableMask(e + r.offset, width: r.width, mask: 0)
        }

        // Device Serial Number.
        extendedHeader(at: Layout.serialNumber, id: ExtendedCapabilityID.deviceSerialNumber.rawValue, next: Layout.cxlDevice)
        config.initialize(Layout.serialNumber + 4, width: 8, value: p.serialNumber)

        // PCIe DVSEC for CXL Devices (CXL 3.1 §8.1.3), revision 2.
        let dv = Layout.cxlDevice
        dvsecHeaders(at: dv, id: .device, revision: Layout.cxlDeviceRevision, length: CXLDeviceDVSEC.length(revision: Layout.cxlDeviceRevision), next: Layout.gpf)
        ini(CXLDeviceDVSEC.capability, at: dv, [
            ("Cache_Capable", Self.b(c.cache)), ("IO_Capable", 1), ("Mem_Capable", 1),
            ("Mem_HwInit_Mode", Self.b(p.firmware?.memHwInitMode ?? false)), ("HDM_Count", 1),
            ("Cache Writeback and Invalidate Capable", Self.b(c.cacheWritebackInvalidate)),
            ("CXL Reset Capable", Self.b(c.cxlReset)), ("CXL Reset Timeout", p.cxlResetTimeoutEncoding),
            ("CXL Reset Mem Clr Capable", Self.b(c.memClear)), ("Viral_Capable", Self.b(c.viral)),
            ("PM Init Completion Reporting Capable", Self.b(c.pmInitCompletionReporting)),
        ])
        var controlWritable = CXLDeviceDVSEC.control.writableMask
        if !c.cache {
            for f in ["Cache_Enable", "Cache_SF_Coverage", "Cache_SF_Granularity", "Cache_Clean_Eviction"] { controlWritable &= ~Self.bit(CXLDeviceDVSEC.control, f) }
        }
        if !c.viral { controlWritable &= ~Self.bit(CXLDeviceDVSEC.control, "Viral_Enable") }
        if !c.directP2PMem { controlWritable &= ~Self.bit(CXLDeviceDVSEC.control, "Direct P2P Mem Enable") }
        config.setWritableMask(Self.control, width: 2, mask: controlWritable)
        var control2Writable = CXLDeviceDVSEC.control2.writableMask
        if !c.cache { control2Writable &= ~CXLDeviceDVSEC.Control2.disableCaching.mask }
        if !c.cacheWritebackInvalidate { control2Writable &= ~Self.initiateWBI }
        if !c.cxlReset { control2Writable &= ~Self.initiateReset }
        if !c.memClear { control2Writable &= ~Self.memClrEnable }
        if !c.volatileHDMStateAfterHotResetConfigurable { control2Writable &= ~Self.desiredHotResetState }
        control2Writable &= ~Self.bit(CXLDeviceDVSEC.control2, "Modified Completion Enable")
        config.setWritableMask(Self.control2, width: 2, mask: control2Writable)
        if !c.viral { config.setWritableMask(dv + CXLDeviceDVSEC.status.offset, width: 2, mask: 0) }
        ini(CXLDeviceDVSEC.status2, at: dv, [("Power Management Initialization Complete", Self.b(c.pmInitCompletionReporting))])
        ini(CXLDeviceDVSEC.capability2, at: dv, [("Cache Size Unit", UInt64(c.cacheSizeUnit)), ("Cache Size", UInt64(c.cacheSize))])
        ini(CXLDeviceDVSEC.range1.sizeHigh, at: dv, [("Memory_Size_High", p.memorySize >> 32)])
        ini(CXLDeviceDVSEC.range1.sizeLow, at: dv, [
            ("Media_Type", 0), ("Memory_Class", 0), ("Desired_Interleave", 0),
            ("Memory_Active_Timeout", UInt64(c.memoryActiveTimeout)), ("Memory_Size_Low", (p.memorySize >> 28) & 0xF),
        ])
        // HDM_Count is 1: Range 2 is not implemented (reads 0, base not writable).
        config.setWritableMask(dv + CXLDeviceDVSEC.range2.baseHigh.offset, width: 4, mask: 0)
        config.setWritableMask(dv + CXLDeviceDVSEC.range2.baseLow.offset, width: 4, mask: 0)
        ini(CXLDeviceDVSEC.capability3, at: dv, [
            ("Default Volatile HDM State after Cold Reset", Self.b(c.volatileHDMPreservedAfterColdReset)),
            ("Default Volatile HDM State after Warm Reset", Self.b(c.volatileHDMPreservedAfterWarmReset)),
            ("Default Volatile HDM State after Hot Reset", Self.b(c.volatileHDMPreservedAfterHotReset)),
            ("Volatile HDM State after Hot Reset - Configurability", Self.b(c.volatileHDMStateAfterHotResetConfigurable)),
            ("Direct P2P Mem Capable", Self.b(c.directP2PMem)),
        ])

        // GPF DVSEC for CXL Devices (§8.1.7): phase 2 takes 5 ms at 10 mW.
        dvsecHeaders(at: Layout.gpf, id: .gpfDevice, revision: 0, length: GPFDeviceDVSEC.length, next: Layout.flexBus)
        ini(GPFDeviceDVSEC.phase2Duration, at: Layout.gpf, [("Device GPF Phase 2 Time Base", 5), ("Device GPF Phase 2 Time Scale", 3)])
        ini(GPFDeviceDVSEC.phase2Power, at: Layout.gpf, [("GPF Phase 2 active power", 10)])

        // PCIe DVSEC for Flex Bus Port (§8.2.1.3), revision 2: CXL.io + .mem (+ .cache), 68B flit.
        let fb = Layout.flexBus
        dvsecHeaders(at: fb, id: .flexBusPort, revision: Layout.flexBusRevision, length: FlexBusPortDVSEC.length(revision: Layout.flexBusRevision), next: Layout.registerLocator)
        let modes: [(String, UInt64)] = [("Cache", Self.b(c.cache)), ("IO", 1), ("Mem", 1), ("CXL 68B Flit and VH", 1)]
        ini(FlexBusPortDVSEC.capability, at: fb, modes)
        ini(FlexBusPortDVSEC.control, at: fb, modes)
        ini(FlexBusPortDVSEC.status, at: fb, modes)

        // Register Locator (§8.1.9): component registers and device registers in BAR0.
        let rl = Layout.registerLocator
        dvsecHeaders(at: rl, id: .registerLocator, revision: 0,
                     length: RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * Layout.registerLocatorEntries, next: 0)
        for (i, (id, off)) in [(RegisterLocatorDVSEC.BlockIdentifier.componentRegisters, Layout.componentBlock),
                               (.memoryDeviceRegisters, Layout.deviceRegisterBlock)].enumerated() {
            let e = rl + RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * i
            let split = SplitAddress(off), rl = RegisterLocatorDVSEC.self
            config.initialize(e, width: 4, value: rl.blockOffsetLow.insert(UInt64(split.low) >> rl.blockOffsetLow.lsb,
                                                                          into: rl.blockIdentifier.insert(UInt64(id.rawValue), into: 0)))
            config.initialize(e + 4, width: 4, value: UInt64(split.high))
        }
    }

    private mutating func buildComponent() {
        let p = profile, c = p.capabilities
        let array = RegisterBlockLayout("CXL Capability Array", [CacheMemCapabilityArray.header] + (1...3).map {
            CacheMemCapabilityArray.element.at(offset: 4 * $0, name: "CXL Capability Element Header \($0)")
        })
        component.place(array, at: 0)
        component.place(RASCapability.layout, at: Layout.rasCapability)
        component.place(LinkCapability.layout, at: Layout.linkCapability)
        component.place(HDMDecoderCapability.layout(decoders: p.decoderCount, endpoint: true), at: Layout.hdmCapability)
        func ini(_ r: RegisterLayout, _ base: Int, _ f: [(String, UInt64)]) {
            component.initialize(base + r.offset, width: r.width, value: Self.value(r, f))
        }
        // §8.2.4.1-.2: capability header, then one element per structure.
        ini(CacheMemCapabilityArray.header, 0, [("Array_Size", 3)])
        for (i, (id, version, ptr)) in [(CacheMemCapabilityID.ras, UInt64(2), Layout.rasCapability),
                                        (.link, 2, Layout.linkCapability), (.hdmDecoder, 3, Layout.hdmCapability)].enumerated() {
            ini(CacheMemCapabilityArray.element, 4 * i, [("Capability ID", UInt64(id.rawValue)), ("Capability Version", version), ("Pointer", UInt64(ptr))])
        }
        ini(RASCapability.errorCapabilityControl, Layout.rasCapability, [("Multiple Header Recording Capability", 1)])
        ini(LinkCapability.layout["CXL Link Layer Capability"], Layout.linkCapability, [("CXL Link Version Supported", 2), ("LLR Wrap Value Supported", 0x10)])
        // §8.2.4.20.1.
        ini(HDMDecoderCapability.capability, Layout.hdmCapability, [
            ("Decoder Count", UInt64(HDMDecoderCountEncoding.encoding(forDecoders: p.decoderCount)!)),
            ("Target Count", 1),
            ("A11to8 Interleave Capable", Self.b(c.interleaveA11to8)), ("A14to12 Interleave Capable", Self.b(c.interleaveA14to12)),
            ("3, 6, 12 Way Interleave Capable", Self.b(c.interleave3_6_12Way)), ("16 Way Interleave Capable", Self.b(c.interleave16Way)),
            ("Supported Coherency Models", 1),
        ])
        // No poison-on-decode-error, no UIO: those bits are hard-wired 0.
        hdm.restrictWritableMasks(&component, capability: component.read(Layout.hdmCapability + HDMDecoderCapability.capability.offset, width: 4))
    }

    private mutating func buildDeviceRegisters() {
        deviceRegs.place(RegisterBlockLayout("Device Capabilities Array", [DeviceRegisterBlock.capabilitiesArray]), at: 0)
        deviceRegs.initialize(0, width: 8, value: Self.value(DeviceRegisterBlock.capabilitiesArray, [("Capabilities Count", 2)]))
        let caps: [(DeviceRegisterBlock.CapabilityID, UInt64, Int, UInt64, RegisterBlockLayout)] = [
            (.deviceStatus, 2, Layout.deviceStatusRegisters, 8, DeviceRegisterBlock.deviceStatus),
            (.memoryDeviceStatus, 1, Layout.memoryDeviceStatusRegisters, 8, DeviceRegisterBlock.memoryDeviceStatus),
        ]
        for (i, (id, version, offset, length, layout)) in caps.enumerated() {
            let h = DeviceRegisterBlock.headerStride * (i + 1)
            deviceRegs.place(DeviceRegisterBlock.capabilityHeader, at: h, name: "Device Capability Header \(i + 1)")
            deviceRegs.initialize(h, width: 4, value: UInt64(id.rawValue) | version << 16)
            deviceRegs.initialize(h + 4, width: 4, value: UInt64(offset))
            deviceRegs.initialize(h + 8, width: 4, value: length)
            deviceRegs.place(layout, at: offset)
        }
    }

    private mutating func buildMSIX() {
        for v in 0..<profile.msixVectors {
            msix.place(MSIXCapability.tableEntry, at: MSIXCapability.tableEntrySize * v, name: "MSI-X Table Entry \(v)")
        }
        let pbaQwords = (profile.msixVectors + 63) / 64
        msix.place(RegisterBlockLayout("MSI-X PBA", (0..<pbaQwords).map {
            RegisterLayout("Pending Bits \($0)", offset: 8 * $0, width: 8, [.init("Pending Bits", 63, 0, .ro)])
        }), at: Int(Layout.msixPBA - Layout.msixTable))
    }

    // MARK: Power-on and firmware

    mutating func powerOn(now: UInt64, memory: DeviceMemory) {
        restartMemoryTimers(now: now)
        guard let f = profile.firmware else { return }
        // Mem_HwInit_Mode firmware (CXL 3.1 §8.1.3.1): ranges come up programmed.
        let dv = Layout.cxlDevice
        let size = f.size ?? profile.memorySize
        config.write(dv + CXLDeviceDVSEC.range1.baseHigh.offset, width: 4, value: f.base >> 32)
        config.write(dv + CXLDeviceDVSEC.range1.baseLow.offset, width: 4, value: f.base & CXLDeviceDVSEC.range1.baseLow.writableMask)
        component.write(Self.hdmGlobalControl, width: 4, value: f.hdmDecoderEnable ? Self.hdmDecoderEnable : 0)
        let d0 = HDMDecoderRegisters(0), hdm = Layout.hdmCapability
        let base = SplitAddress(f.base), length = SplitAddress(size), low = HDMDecoderRegisters.lowAddressMask
        component.write(hdm + d0.baseLow.offset, width: 4, value: UInt64(base.low) & low)
        component.write(hdm + d0.baseHigh.offset, width: 4, value: UInt64(base.high))
        component.write(hdm + d0.sizeLow.offset, width: 4, value: UInt64(length.low) & low)
        component.write(hdm + d0.sizeHigh.offset, width: 4, value: UInt64(length.high))
        component.store(Self.decoderControl(0), width: 4,
                        value: Self.commitBit | Self.committedBit | (f.lockDecoder ? Self.lockOnCommitBit : 0))
        if f.lockDecoder { component.setLock(self.hdm.lockedRange(0), true) }
        let control = config.read(Self.control, width: 2)
        config.write(Self.control, width: 2, value: control
            | (f.memEnable ? Self.memEnable : 0) | (f.cacheEnable ? CXLDeviceDVSEC.Control.cacheEnable.mask : 0))
        if f.configLock {
            config.write(Self.lockRegister, width: 2, value: Self.configLockBit)
            dvsec.applyConfigLock(&config)
        }
    }

    // MARK: Events

    var nextDeadline: UInt64? {
        // Evaluated on every access: no array.
        var next: UInt64?
        func take(_ d: UInt64?) { if let d, next.map({ d < $0 }) ?? true { next = d } }
        for c in pendingCommits.values { take(c.deadline) }
        take(cxlReset?.deadline)
        take(writebackDeadline)
        take(memoryValidAt)
        take(memoryActiveAt)
        return next
    }

    /// Apply every delayed effect due by `now`, earliest first.
    mutating func processEvents(now: UInt64, memory: DeviceMemory) {
        // Every access comes here: nothing scheduled is the common case, answered without a look at the deadlines.
        guard memoryValidAt != nil || memoryActiveAt != nil || writebackDeadline != nil || cxlReset != nil || !pendingCommits.isEmpty else {
            return
        }
        while let next = nextDeadline, next <= now {
            if let v = memoryValidAt, v == next {
                memoryValidAt = nil
                config.setBits(Self.range1SizeLow, width: 4, mask: Self.infoValid, to: true)
            } else if let a = memoryActiveAt, a == next {
                memoryActiveAt = nil
                config.setBits(Self.range1SizeLow, width: 4, mask: Self.memoryActive, to: true)
                deviceRegs.store(DeviceRegisterBlock.mediaStatus,
                                 of: DeviceRegisterBlock.memoryDeviceStatusRegister, base: Layout.memoryDeviceStatusRegisters, value: 1)
            } else if let w = writebackDeadline, w == next {
                writebackDeadline = nil
                config.setBits(Self.status2, width: 2, mask: Self.cacheInvalid, to: true)
            } else if let r = cxlReset, r.deadline == next {
                completeCXLReset(now: next, memClear: r.memClear, memory: memory)
            } else if let (n, c) = pendingCommits.first(where: { $0.value.deadline == next }) {
                pendingCommits[n] = nil
                finishCommit(n, failure: c.failure)
            } else {
                break
            }
        }
    }

    static func scaled(_ milliseconds: Double, _ factor: Double) -> UInt64 {
        let ns = milliseconds * 1_000_000 * factor
        return ns >= 1.8e19 ? UInt64.max / 2 : UInt64(ns.rounded())
    }

    /// Range 1 Size Low Memory_Info_Valid, then Memory_Active (CXL 3.1 §8.1.3.8.2),
    /// after the profile's delays; Memory Device Status follows Memory_Active.
    mutating func restartMemoryTimers(now: UInt64) {
        config.setBits(Self.range1SizeLow, width: 4, mask: Self.infoValid | Self.memoryActive, to: false)
        let t = profile.timing
        let valid = now + Self.scaled(t.memoryInfoValidMilliseconds, t.timeFactor)
        memoryValidAt = valid
        memoryActiveAt = profile.faults.memoryNeverActive ? nil : max(valid, now + Self.scaled(t.memoryActiveMilliseconds, t.timeFactor))
    }

    // MARK: Config writes

    mutating func configWrite(_ offset: Int, width: Int, value: UInt64, now: UInt64, memory: DeviceMemory) {
        // CONFIG_LOCK (§8.1.3.6) and the Control2 doorbells (§8.1.3.4): the DVSEC model.
        let (w, rung) = dvsec.write(&config, offset: offset, width: width, value: value)
        // PCIe 6.0 §7.5.3.4: Initiate Function Level Reset, a doorbell reading 0.
        if w.covers(Self.deviceControl, width: 2), w.writtenBits(ofRegisterAt: Self.deviceControl, width: 2) & Self.flrBit != 0 {
            config.setBits(Self.deviceControl, width: 2, mask: Self.flrBit, to: false)
            functionLevelReset()
            return
        }
        let c = profile.capabilities
        if rung.contains(.writebackInvalidate) && c.cacheWritebackInvalidate { startWriteback(now: now) }
        if rung.contains(.cxlReset) && c.cxlReset {
            startCXLReset(now: now, memClear: c.memClear && dvsec.memClearRequested(config))
        }
        if w.covers(Layout.msix + MSIXCapability.messageControl.offset, width: 2) { deliverPending() }
    }

    /// Control2 Initiate Cache Write Back and Invalidation (§8.1.3.4): Cache Invalid
    /// clears, then sets when the write-back completes.
    mutating func startWriteback(now: UInt64) {
        config.setBits(Self.status2, width: 2, mask: Self.cacheInvalid, to: false)
        writebackDeadline = now + profile.timing.cacheWritebackInvalidateMicroseconds * 1000
    }

    /// Control2 Initiate CXL Reset (§8.1.3.4, §9.7): Reset Complete and Reset Error
    /// clear; the reset completes after the Capability timeout (or the profile's
    /// duration) times the time factor. A second initiate while one runs is ignored.
    mutating func startCXLReset(now: UInt64, memClear: Bool) {
        guard cxlReset == nil, !cxlResetHung else { return }
        dvsec.beginCXLReset(&config)
        if profile.faults.cxlResetNeverCompletes {
            cxlResetHung = true
            return
        }
        let ms = profile.timing.cxlResetMilliseconds
            ?? Double(CXLDeviceDVSEC.resetTimeoutMilliseconds[profile.cxlResetTimeoutEncoding] ?? 100)
        cxlReset = (now + Self.scaled(ms, profile.timing.timeFactor), memClear)
    }

    /// CXL Reset scope (CXL 3.1 §9.7, §8.1.3.4): the function's CXL.io state as for
    /// FLR; non-sticky DVSEC registers to defaults except CONFIG_LOCK and the fields it
    /// locks; HDM decoders and RAS non-sticky state to defaults (locks released);
    /// device memory cleared if Mem Clr was enabled; the Link capability and the Flex
    /// Bus DVSEC (link state) untouched. Then Reset Complete.
    mutating func completeCXLReset(now: UInt64, memClear: Bool, memory: DeviceMemory) {
        cxlReset = nil
        if profile.faults.cxlResetReportsError {
            dvsec.finishCXLReset(&config, succeeded: false)
            return
        }
        resetPCIFunctionState()
        config.reset(Self.dvsecRange, keeping: [.sticky, .lockedFields, .writeOnce])
        resetCXLComponentState()
        writebackDeadline = nil
        if memClear { memory.clear() }
        restartMemoryTimers(now: now)
        dvsec.finishCXLReset(&config, succeeded: true)
    }

    // MARK: Resets

    /// The function's PCI state, as FLR resets it (PCIe 6.0 §6.6.2): header, PM, MSI-X
    /// capability and table, PCIe capability, keeping sticky bits and the link-related
    /// Link Control / Link Control 2 the spec exempts.
    mutating func resetPCIFunctionState() {
        let lc = Layout.pciExpress + PCIExpressCapability.linkControl.offset
        let lc2 = Layout.pciExpress + PCIExpressCapability.linkControl2.offset
        let keep = (config.read(lc, width: 2), config.read(lc2, width: 2))
        config.reset(0 ..< pciConfigSpaceSize, keeping: [.sticky])
        config.store(lc, width: 2, value: keep.0)
        config.store(lc2, width: 2, value: keep.1)
        msix.reset(keeping: [.sticky])
        interrupts = []
    }

    /// HDM decoders (uncommitted, unlocked) and RAS non-sticky state.
    mutating func resetCXLComponentState() {
        component.reset(Self.hdmRange, keeping: [.sticky])
        component.reset(Self.rasRange, keeping: [.sticky])
        pendingCommits = [:]
        hungCommits = []
        hdm.forgetFailures()
    }

    /// FLR (PCIe 6.0 §6.6.2; CXL 3.1 §9.5): PCI function state only. CXL.cache/.mem,
    /// the DVSECs, the HDM decoders and device memory are untouched — unless the
    /// profile injects `flrLosesCXLState`.
    mutating func functionLevelReset() {
        resetPCIFunctionState()
        if profile.faults.flrLosesCXLState {
            config.reset(Self.dvsecRange, keeping: [.sticky])
            resetCXLComponentState()
            memoryValidAt = nil
            memoryActiveAt = nil
            // The broken device does bring its memory status back.
            config.setBits(Self.range1SizeLow, width: 4, mask: Self.infoValid | (profile.faults.memoryNeverActive ? 0 : Self.memoryActive), to: true)
        }
    }

    /// Conventional reset (hot reset, secondary bus reset, link down; PCIe 6.0 §6.6.1):
    /// every non-sticky register to its default, CONFIG_LOCK cleared, decoders
    /// uncommitted and unlocked, pending effects dropped. Volatile memory survives if
    /// Capability3 says it does after a hot reset, or if Control2 "Desired Volatile HDM
    /// State after Hot Reset" (sticky) asks and Capability3 makes it configurable.
    mutating func conventionalReset(now: UInt64, memory: DeviceMemory) {
        let c = profile.capabilities
        let requested = config.read(Self.control2, width: 2) & Self.desiredHotResetState != 0
        let preserve = c.volatileHDMPreservedAfterHotReset || (c.volatileHDMStateAfterHotResetConfigurable && requested)
        config.reset(keeping: [.sticky])
        component.reset(keeping: [.sticky])
        deviceRegs.reset(keeping: [.sticky])
        msix.reset(keeping: [.sticky])
        interrupts = []
        pendingCommits = [:]
        hungCommits = []
        hdm.forgetFailures()
        cxlReset = nil
        cxlResetHung = false
        writebackDeadline = nil
        if !preserve { memory.clear() }
        restartMemoryTimers(now: now)
    }

    // MARK: BAR0

    var memorySpaceEnabled: Bool {
        config.read(PCIHeader.command.offset, width: 2) & PCIHeader.Command.memorySpaceEnable.mask != 0
    }

    mutating func bar0Read(_ offset: UInt64, width: Int) -> UInt64 {
        if let o = componentOffset(offset) { return component.read(o, width: width) }
        if offset >= Layout.deviceRegisterBlock, offset < Layout.deviceRegisterBlock + Layout.deviceRegisterBlockSize {
            return deviceRegs.read(Int(offset - Layout.deviceRegisterBlock), width: width)
        }
        if offset >= Layout.msixTable, offset < Layout.msixTable + UInt64(Layout.msixRegionSize) {
            return msix.read(Int(offset - Layout.msixTable), width: width)
        }
        return 0
    }

    mutating func bar0Write(_ offset: UInt64, width: Int, value: UInt64, now: UInt64, memory: DeviceMemory) {
        if let o = componentOffset(offset) {
            // Only a decoder whose Control the write covers can commit or de-commit.
            for edge in hdm.write(&component, offset: o, width: width, value: value).1 {
                switch edge {
                case .commit(let n): startCommit(n, now: now)
                case .decommit(let n): decommit(n)
                }
            }
        } else if offset >= Layout.deviceRegisterBlock, offset < Layout.deviceRegisterBlock + Layout.deviceRegisterBlockSize {
            deviceRegs.write(Int(offset - Layout.deviceRegisterBlock), width: width, value: value)
        } else if offset >= Layout.msixTable, offset < Layout.msixTable + UInt64(Layout.msixRegionSize) {
            msix.write(Int(offset - Layout.msixTable), width: width, value: value)
            deliverPending()
        }
    }

    private func componentOffset(_ offset: UInt64) -> Int? {
        let cm = Layout.componentBlock + UInt64(ComponentRegisterBlock.cacheMemOffset)
        guard offset >= cm, offset < cm + UInt64(ComponentRegisterBlock.cacheMemSize) else { return nil }
        return Int(offset - cm)
    }

    // MARK: HDM decoder commit (CXL 3.1 §8.2.4.20.7, §8.2.4.20.12): the HDMDecoderDevice model

    func programming(_ n: Int) -> DecoderProgramming { hdm.programming(n, in: component) }

    func isCommitted(_ n: Int) -> Bool { hdm.isCommitted(n, in: component) }

    /// Commit 0 -> 1: Committed and Error Not Committed clear; the checks run on the
    /// programming as written; the result appears after the commit latency.
    mutating func startCommit(_ n: Int, now: UInt64) {
        hdm.beginCommit(n, in: &component)
        pendingCommits[n] = nil
        if profile.faults.commitNeverCompletes {
            hungCommits.insert(n)
            return
        }
        let failure: CommitFailure? = profile.faults.commitReportsError ? .injectedFault : hdm.check(n, in: component)
        let latency = profile.timing.commitLatencyMicroseconds * 1000
        if latency == 0 {
            finishCommit(n, failure: failure)
        } else {
            pendingCommits[n] = (now + latency, failure)
        }
    }

    /// The result: Committed (Lock On Commit freezes the decoder) or Error Not Committed.
    mutating func finishCommit(_ n: Int, failure: CommitFailure?) {
        hdm.finishCommit(n, failure: failure, in: &component)
    }

    /// Commit 1 -> 0 on an unlocked decoder: de-commit at once.
    mutating func decommit(_ n: Int) {
        pendingCommits[n] = nil
        hungCommits.remove(n)
        hdm.decommit(n, in: &component)
    }

    // MARK: Memory decode

    /// One contiguous piece of a translated access.
    struct Chunk { let dpa: UInt64; let at: Int; let count: Int }

    /// HPA -> DPA, with how many bytes from there are contiguous in DPA space.
    func translate(hpa: UInt64, memory: DeviceMemory) throws(DeviceMemoryError) -> UInt64 {
        try decode(memory: memory)(hpa).dpa
    }

    func decode(memory: DeviceMemory) throws(DeviceMemoryError) -> (UInt64) throws(DeviceMemoryError) -> (dpa: UInt64, run: UInt64) {
        if cxlReset != nil || cxlResetHung { throw .resetInProgress }
        guard config.read(Self.control, width: 2) & Self.memEnable != 0 else { throw .memDisabled }
        guard config.read(Self.range1SizeLow, width: 4) & Self.memoryActive != 0 else { throw .memoryNotActive }
        let capacity = memory.size
        if component.read(Self.hdmGlobalControl, width: 4) & Self.hdmDecoderEnable != 0 {
            // HDM decoders (§8.2.4.20; interleave: §8.2.4.20.13 "Device Decode Logic").
            let map = EndpointDecoderMap((0..<profile.decoderCount).map {
                programming($0).endpointDecoder(committed: isCommitted($0))
                    ?? EndpointDecoder(base: 0, size: 0, committed: false)
            })
            return { (hpa: UInt64) throws(DeviceMemoryError) -> (dpa: UInt64, run: UInt64) in
                do {
                    let (i, dpa) = try map.translate(hpa: hpa)
                    let d = map.decoders[i]
                    let run = d.ways.ways == 1 ? d.base + d.size - hpa : UInt64(d.granularity.bytes) - ((hpa - d.base) % UInt64(d.granularity.bytes))
                    guard dpa < capacity else { throw DeviceMemoryError.beyondCapacity(hpa: hpa, dpa: dpa) }
                    return (dpa, min(run, capacity - dpa))
                } catch let e as TranslationError {
                    switch e {
                    case .notDecoded(let h): throw .notDecoded(hpa: h)
                    case .otherPosition(let h, let p, let d): throw .otherInterleavePosition(hpa: h, position: p, devicePosition: d)
                    case .dpaNotMapped: throw .notDecoded(hpa: hpa)
                    }
                } catch let e as DeviceMemoryError {
                    throw e
                } catch {
                    throw .notDecoded(hpa: hpa)
                }
            }
        }
        // HDM Decoder Enable 0: DVSEC Range 1 decodes (§8.1.3.8), DPA 0 at Range 1 Base.
        let r = CXLDeviceDVSEC.range1
        let dv = Layout.cxlDevice
        let base = config.read(r.baseHigh, base: dv) << 32 | (config.read(r.baseLow, base: dv) & CXLDeviceDVSEC.rangeBaseLow.mask)
        let size = config.read(r.sizeHigh, base: dv) << 32 | (config.read(r.sizeLow, base: dv) & CXLDeviceDVSEC.rangeSizeLow.mask)
        return { (hpa: UInt64) throws(DeviceMemoryError) -> (dpa: UInt64, run: UInt64) in
            guard hpa >= base, hpa - base < size else { throw .notDecoded(hpa: hpa) }
            let dpa = hpa - base
            guard dpa < capacity else { throw .beyondCapacity(hpa: hpa, dpa: dpa) }
            return (dpa, min(size - (hpa - base), capacity - dpa))
        }
    }

    /// Translate a whole access first (so a failing access changes nothing), then
    /// hand each contiguous DPA piece to `body`.
    func forEachChunk(hpa: UInt64, count: Int, memory: DeviceMemory,
                      _ body: (_ dpa: UInt64, _ at: Int, _ count: Int) -> Void) throws(DeviceMemoryError) {
        guard count > 0 else { return }
        if hpa.addingReportingOverflow(UInt64(count - 1)).overflow { throw .notDecoded(hpa: .max) }
        let t = try decode(memory: memory)
        var chunks: [Chunk] = []
        var at = 0
        while at < count {
            let (dpa, run) = try t(hpa + UInt64(at))
            let n = Int(min(UInt64(count - at), run))
            chunks.append(Chunk(dpa: dpa, at: at, count: n))
            at += n
        }
        for c in chunks { body(c.dpa, c.at, c.count) }
    }

    // MARK: MSI-X (PCI 3.0 §6.8.2)

    private var msixControl: UInt64 { config.read(Layout.msix + MSIXCapability.messageControl.offset, width: 2) }
    private var msixEnabled: Bool { msixControl & MSIXCapability.Control.enable.mask != 0 }
    private var functionMasked: Bool { msixControl & MSIXCapability.Control.functionMask.mask != 0 }
    private func vectorMasked(_ v: Int) -> Bool { msix.read(MSIXCapability.tableEntrySize * v + 0xC, width: 4) & 1 != 0 }
    private var pbaBase: Int { Int(Layout.msixPBA - Layout.msixTable) }

    mutating func signal(vector v: Int) {
        guard v >= 0, v < profile.msixVectors, msixEnabled else { return }
        if functionMasked || vectorMasked(v) {
            msix.setBits(pbaBase + 8 * (v / 64), width: 8, mask: 1 << UInt64(v % 64), to: true)
        } else {
            interrupts.append(v)
        }
    }

    mutating func deliverPending() {
        guard msixEnabled, !functionMasked else { return }
        for v in 0..<profile.msixVectors where !vectorMasked(v) {
            let o = pbaBase + 8 * (v / 64), bit: UInt64 = 1 << UInt64(v % 64)
            if msix.read(o, width: 8) & bit != 0 {
                msix.setBits(o, width: 8, mask: bit, to: false)
                interrupts.append(v)
            }
        }
    }

    mutating func takeInterrupts() -> [Int] {
        defer { interrupts = [] }
        return interrupts
    }
}
