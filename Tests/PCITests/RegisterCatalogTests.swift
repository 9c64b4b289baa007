import Testing
@testable import PCI

@Suite("Register catalog: masks derived from access types")
struct RegisterCatalogTests {
    static let sample = RegisterLayout("Sample", offset: 0, width: 4, [
        .init("A", 3, 0, .rw, reset: 5),
        .init("B", bit: 4, .rwl),
        .init("C", bit: 5, .rwo),
        .init("D", bit: 6, .rw1c),
        .init("E", bit: 7, .rw1cs),
        .init("F", 11, 8, .ro, reset: 0xA),
        .init("G", bit: 12, .rws),
        .init("H", 15, 13, .hwInit),
        .init("I", 17, 16, .rsvdP),
        .init("J", bit: 18, .rsvdZ),
    ])

    @Test(arguments: [
        (RegisterAccess.ro, false, false, false), (.hwInit, false, false, false), (.rw, true, false, false),
        (.rws, true, false, true), (.rwl, true, false, false), (.rwo, true, false, false),
        (.rw1c, false, true, false), (.rw1cs, false, true, true), (.rsvdP, false, false, false), (.rsvdZ, false, false, false),
    ])
    func accessTypeProperties(access: RegisterAccess, writable: Bool, w1c: Bool, sticky: Bool) {
        #expect(access.isWritable == writable)
        #expect(access.isWriteOneToClear == w1c)
        #expect(access.isSticky == sticky)
    }

    @Test func derivedMasks() {
        let r = Self.sample
        #expect(r.writableMask == 0x103F)
        #expect(r.lockableMask == 0x10)
        #expect(r.writeOnceMask == 0x20)
        #expect(r.writeOneToClearMask == 0xC0)
        #expect(r.stickyMask == 0x1080)
        #expect(r.resetValue == 0xA05)
        #expect(r.widthMask == 0xFFFF_FFFF)
    }

    @Test func extractInsertAndDecode() {
        let f = Self.sample.field("F")!
        #expect(f.mask == 0xF00)
        #expect(f.extract(0x1234_5A78) == 0xA)
        #expect(f.insert(0x3, into: 0xFFFF_FFFF) == 0xFFFF_F3FF)
        #expect(Self.sample.decode(0xA05).first { $0.name == "A" }?.value == 5)
    }

    @Test func byteMasksSplitRegistersIntoLanes() {
        let block = RegisterBlockLayout("B", [Self.sample, RegisterLayout("W", offset: 4, width: 2, [.init("X", 15, 8, .rw)])])
        #expect(block.byteMasks { $0.writableMask } == [0x3F, 0x10, 0, 0, 0, 0xFF])
        #expect(block.length == 6)
        #expect(block.register(containing: 5)?.name == "W")
    }

    @Test func headerCatalogsHaveSpecOffsets() {
        #expect(PCIHeader.type0.length == 0x40)
        #expect(PCIHeader.type1.length == 0x40)
        #expect(PCIHeader.command.writableMask == 0x547)
        #expect(PCIHeader.status.writeOneToClearMask == 0xF900)
        #expect(PCIExpressCapability.deviceControl.field("Initiate Function Level Reset")?.mask == 0x8000)
        #expect(PCIExpressCapability.deviceCapabilities.field("Function Level Reset Capability")?.mask == 1 << 28)
        #expect(PCIExpressCapability.layout.length == 0x3C)
        #expect(MSIXCapability.messageControl.writableMask == 0xC000)
        #expect(MSICapability.layout(is64Bit: true, perVectorMasking: true).length == 0x18)
        #expect(MSICapability.layout(is64Bit: false, perVectorMasking: true).length == 0x14)
        #expect(MSICapability.layout(is64Bit: false, perVectorMasking: false).registers.map(\.offset) == [0, 1, 2, 4, 8, 0x0A])
    }

    /// The extended capabilities lspci details (and decode --json -vv shows) are declared in the catalog at the
    /// spec's offsets and widths, with the field masks the lspci lines are read with.
    @Test func extendedCapabilityLayoutsHaveSpecOffsetsAndFields() {
        let lengths: [(ExtendedCapabilityID, RegisterBlockLayout, Int)] = [
            (.latencyToleranceReporting, LTRCapability.layout, 0x08), (.secondaryPCIExpress, SecondaryPCIeCapability.layout, 0x0C),
            (.addressTranslationServices, ATSCapability.layout, 0x08), (.pageRequestInterface, PRICapability.layout, 0x10),
            (.processAddressSpaceID, PASIDCapability.layout, 0x08), (.l1PMSubstates, L1PMSubstatesCapability.layout, 0x14),
            (.precisionTimeMeasurement, PTMCapability.layout, 0x0C), (.downstreamPortContainment, DPCCapability.layout, 0x0C),
            (.tphRequester, TPHRequesterCapability.layout, 0x0C), (.singleRootIOV, SRIOVCapability.layout, 0x40),
            (.dataObjectExchange, DOECapability.layout, 0x10), (.vendorSpecific, VendorSpecificExtendedCapability.layout, 0x08),
            // AER without the root port registers (0x2C-0x37), which not every function has.
            (.advancedErrorReporting, AERCapability.layout, 0x2C),
        ]
        var c = ConfigSpace(bytes: [UInt8](repeating: 0, count: 4096))
        for (id, layout, length) in lengths {
            #expect(layout.length == length, "\(layout.name)")
            let header = CapabilityHeader(space: .extended, id: id.rawValue, version: 1, offset: 0x100, next: 0)
            #expect(CapabilityCatalog.layout(for: header, config: c)?.name == layout.name)
        }
        #expect(LTRCapability.maxNoSnoop.field("Max No-Snoop LatencyScale")?.mask == LTRCapability.Latency.scale.mask)
        #expect(DPCCapability.control.writableMask == 0xFF)
        #expect(DPCCapability.status.writeOneToClearMask == 0x1F09)
        #expect(SRIOVCapability.control.writableMask == 0x3F)
        #expect(SRIOVCapability.vfBAR(5).offset == 0x38 && SRIOVCapability.vfMigrationStateArrayOffset.offset == 0x3C)
        #expect(L1PMSubstatesCapability.control1.field("ASPM L1.2 Enable")?.mask == L1PMSubstatesCapability.Capability.aspmL12.mask)
        #expect(L1PMSubstatesCapability.control1.writableMask == 0xE3FF_FF3F)
        #expect(TPHRequesterCapability.Capability.stTableLocation.mask == 0x600)
        #expect(AERCapability.capabilityFlags.map(\.lsb) == Array(5...12) && AERCapability.rootStatusFlags.map(\.lsb) == Array(0...6))
        #expect(AERCapability.errorSourceIdentification.offset == 0x34 && AERCapability.errFatalNonFatalSource.mask == 0xFFFF_0000)
        #expect(ACSCapability.controlFlags.map(\.lsb) == Array(0...6) && ARICapability.functionGroup.mask == 0x70)
        // Resizable BAR: one Capability/Control pair per BAR, as many as the first Control register says.
        c.write(0x108, width: 4, value: 3 << 5)
        let rebar = CapabilityHeader(space: .extended, id: ExtendedCapabilityID.resizableBAR.rawValue, version: 1, offset: 0x100, next: 0)
        #expect(CapabilityCatalog.layout(for: rebar, config: c)?.length == 0x1C)
        #expect(ResizableBARCapability.control(0).field("Number of Resizable BARs")?.mask == 0xE0)
        #expect(ResizableBARCapability.control(1).field("Number of Resizable BARs") == nil)
    }

    /// The PCI Express capability's handles (PCIe 6.0 §7.5.3) sit at the spec's bits and are the fields of their
    /// registers, which the lspci detail lines read; Bridge Configuration Retry Enable shares Initiate FLR's bit 15.
    @Test func pciExpressHandlesAreTheirRegistersFields() {
        typealias P = PCIExpressCapability
        #expect(P.layout.length == 0x3C)
        let placed: [(RegisterField, RegisterLayout, UInt64)] = [
            (P.Capabilities.slotImplemented, P.capabilities, 0x100), (P.Capabilities.interruptMessageNumber, P.capabilities, 0x3E00),
            (P.DeviceCapabilities.attentionButtonPresent, P.deviceCapabilities, 0x1000),
            (P.DeviceCapabilities.capturedSlotPowerLimitScale, P.deviceCapabilities, 0xC00_0000),
            (P.DeviceControl.maxReadRequestSize, P.deviceControl, 0x7000), (P.DeviceStatus.transactionsPending, P.deviceStatus, 0x20),
            (P.LinkCapabilities.portNumber, P.linkCapabilities, 0xFF00_0000), (P.LinkControl.readCompletionBoundary, P.linkControl, 0x8),
            (P.LinkStatus.linkTrainingError, P.linkStatus, 0x400), (P.SlotCapabilities.physicalSlotNumber, P.slotCapabilities, 0xFFF8_0000),
            (P.SlotControl.powerIndicatorControl, P.slotControl, 0x300), (P.SlotStatus.presenceDetectState, P.slotStatus, 0x40),
            (P.RootStatus.pmePending, P.rootStatus, 0x2_0000), (P.DeviceCapabilities2.lnSystemCLS, P.deviceCapabilities2, 0xC000),
            (P.DeviceControl2.obffEnable, P.deviceControl2, 0x6000), (P.LinkCapabilities2.drsSupported, P.linkCapabilities2, 0x8000_0000),
            (P.LinkControl2.compliancePresetDeEmphasis, P.linkControl2, 0xF000), (P.LinkStatus2.downstreamComponentPresence, P.linkStatus2, 0x7000),
        ]
        for (field, register, mask) in placed {
            #expect(field.mask == mask, "\(field.name)")
            #expect(register.fields.contains(field), "\(register.name) lacks \(field.name)")
        }
        #expect(P.rootControlFlags.map(\.lsb) == Array(0...4) && P.rootControl.fields == P.rootControlFlags)
        #expect(P.DeviceControl.bridgeConfigurationRetryEnable.mask == P.initiateFLR.mask)
        #expect(!P.deviceControl.fields.contains(P.DeviceControl.bridgeConfigurationRetryEnable))
    }

    /// Virtual Channel, RC Link Declaration, RCEC association and Multicast registers sit at the spec's offsets
    /// (PCIe 6.0 §7.9.1, §7.9.8, §7.9.10, §7.9.11), per VC and per link entry.
    @Test func legacyExtendedCapabilityRegistersSitAtSpecOffsets() {
        let vc2 = VirtualChannelCapability.Resource(2)
        #expect(vc2.capability.offset == 0x28 && vc2.control.offset == 0x2C && vc2.status.offset == 0x32)
        #expect(VirtualChannelCapability.ResourceControl.vcID.mask == 0x700_0000 && VirtualChannelCapability.Capability2.vcArbitrationTableOffset.mask == 0xFF00_0000)
        #expect(RCLinkDeclarationCapability.linkDescription(1).offset == 0x20 && RCLinkDeclarationCapability.linkAddress(1).offset == 0x28)
        #expect(RCLinkDeclarationCapability.ConfigurationLinkAddress.device.mask == 0xF_8000)
        #expect(RCECEndpointAssociationCapability.associatedBusNumbers.offset == 0x08 && RCECEndpointAssociationCapability.lastBus.mask == 0xFF_0000)
        #expect(MulticastCapability.overlayBAR.offset == 0x28 && MulticastCapability.baseAddressField.mask == ~UInt64(0xFFF))
        // The catalog layouts decode --json -vv uses: as many VCs and link entries as the registers say.
        var c = ConfigSpace(bytes: [UInt8](repeating: 0, count: 4096))
        c.write(0x104, width: 4, value: 2)            // Extended VC Count 2
        c.write(0x204, width: 4, value: 3 << 8)       // 3 link entries
        c.write(0x304, width: 4, value: 200 << 8)     // more link entries than fit
        func length(_ id: ExtendedCapabilityID, at offset: Int, version: UInt8 = 1) -> Int? {
            CapabilityCatalog.layout(for: CapabilityHeader(space: .extended, id: id.rawValue, version: version, offset: offset, next: 0), config: c)?.length
        }
        #expect(length(.virtualChannel, at: 0x100) == 0x34 && length(.virtualChannelMFVC, at: 0x100) == 0x34)
        #expect(length(.rootComplexLinkDeclaration, at: 0x200) == 0x40)
        #expect(length(.rootComplexLinkDeclaration, at: 0x300).map { 0x300 + $0 <= 4096 } == true)
        #expect(length(.multicast, at: 0x400) == 0x30)
        #expect(length(.rootComplexEventCollectorEndpointAssociation, at: 0x500) == 0x08)
        #expect(length(.rootComplexEventCollectorEndpointAssociation, at: 0x500, version: 2) == 0x0C)
    }
}

@Suite("Capability walker on hostile config spaces")
struct CapabilityWalkerTests {
    static func config(size: Int = 4096, _ build: (inout ConfigSpace) -> Void) -> ConfigSpace {
        var c = ConfigSpace(bytes: [UInt8](repeating: 0, count: size))
        c.write(0, width: 4, value: 0x1234_8086)
        c.write(6, width: 2, value: 0x0010)  // Capabilities List
        build(&c)
        return c
    }

    @Test func walksAWellFormedList() {
        let c = Self.config {
            $0.write(0x34, width: 1, value: 0x40)
            $0.write(0x40, width: 2, value: 0x5001)  // PM -> 0x50
            $0.write(0x50, width: 2, value: 0x0010)  // PCIe, end
            $0.write(0x100, width: 4, value: 0x1801_0001)  // AER v1 -> 0x180
            $0.write(0x180, width: 4, value: 0x0001_0023)  // DVSEC v1, end
        }
        let l = CapabilityList(walking: c)
        #expect(l.standard.map(\.offset) == [0x40, 0x50])
        #expect(l.extended.map(\.id) == [0x1, 0x23])
        #expect(l.findings.isEmpty)
    }

    @Test func standardLoopTerminates() {
        let c = Self.config { $0.write(0x34, width: 1, value: 0x40); $0.write(0x40, width: 2, value: 0x4001) }
        let l = CapabilityList(walking: c)
        #expect(l.standard.count == 1)
        #expect(l.findings.contains { $0.message.contains("loops") })
    }

    @Test func pointerIntoHeaderIsReported() {
        let c = Self.config { $0.write(0x34, width: 1, value: 0x10) }
        #expect(CapabilityList(walking: c).findings.first?.message.contains("header") == true)
    }

    @Test func extendedLoopAndBadPointerTerminate() {
        var c = Self.config { $0.write(0x100, width: 4, value: 0x1001_0001) }  // points to itself
        #expect(CapabilityList(walking: c).findings.contains { $0.message.contains("loops") })
        c = Self.config { $0.write(0x100, width: 4, value: 0x0401_0001) }  // next 0x040
        #expect(CapabilityList(walking: c).findings.contains { $0.message.contains("below 0x100") })
    }

    @Test func nullExtendedHeaderWithNextIsWalkedThrough() {
        let c = Self.config {
            $0.write(0x100, width: 4, value: 0x2000_0000)  // ID 0, next 0x200
            $0.write(0x200, width: 4, value: 0x0001_0003)  // DSN
        }
        #expect(CapabilityList(walking: c).extended.map(\.id) == [0, 3])
    }

    @Test func shortDumpsNeverTrap() {
        for size in [0, 1, 7, 63, 64, 255, 256] {
            var bytes = [UInt8](repeating: 0xFF, count: size)
            if size > 0x34 { bytes[0x34] = 0xFC }
            _ = CapabilityList(walking: ConfigSpace(bytes: bytes))
        }
    }

    /// Every 4096-byte config space built from a small random generator terminates.
    @Test func randomConfigSpacesTerminate() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for _ in 0..<300 {
            var bytes = [UInt8](repeating: 0, count: 4096)
            for i in bytes.indices {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bytes[i] = UInt8(truncatingIfNeeded: state >> 56)
            }
            let l = CapabilityList(walking: ConfigSpace(bytes: bytes))
            #expect(l.standard.count <= 48 && l.extended.count <= 1024)
        }
    }
}
