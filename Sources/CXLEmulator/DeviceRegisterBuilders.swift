import PCI
import CXL

// The emulated device's registers as power-on lays them out: every register placed
// from the catalog, then the profile's values and capability-dependent write masks.
// What the device does when software touches them lives in DeviceState.swift.

extension State {
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

    mutating func buildConfig() {
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

    mutating func buildComponent() {
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

    mutating func buildDeviceRegisters() {
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

    mutating func buildMSIX() {
        for v in 0..<profile.msixVectors {
            msix.place(MSIXCapability.tableEntry, at: MSIXCapability.tableEntrySize * v, name: "MSI-X Table Entry \(v)")
        }
        let pbaQwords = (profile.msixVectors + 63) / 64
        msix.place(RegisterBlockLayout("MSI-X PBA", (0..<pbaQwords).map {
            RegisterLayout("Pending Bits \($0)", offset: 8 * $0, width: 8, [.init("Pending Bits", 63, 0, .ro)])
        }), at: Int(Layout.msixPBA - Layout.msixTable))
    }
}
