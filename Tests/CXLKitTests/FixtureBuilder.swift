import Foundation
import PCI
import CXL

let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
func fixtureURL(_ path: String) -> URL { repoRoot.appendingPathComponent("Tests/Fixtures/" + path) }
func fixture(_ path: String) throws -> [UInt8] { [UInt8](try Data(contentsOf: fixtureURL(path))) }

/// The QEMU 7.2 Type-3 endpoint as captured at `stage` (bound, region, reset): config space and the component
/// register block, read-only.
func qemuEndpointCapture(_ stage: String) throws -> ImagePCIFunction {
    let dir = "qemu-cxl/\(stage)/endpoint/"
    return ImagePCIFunction(address: "0000:0d:00.0", config: ConfigSpace(bytes: try fixture(dir + "config.bin")),
                            barImages: [0: (0, try fixture(dir + "block-component-bar0-0x0.bin"))])
}

/// Builds config spaces from catalog register values: every field is written
/// through its RegisterLayout, so fixtures and decoders share one definition.
struct ConfigBuilder {
    var config = ConfigSpace(bytes: [UInt8](repeating: 0, count: pcieConfigSpaceSize))
    private var lastExtended: Int?
    private var nextExtended = 0x100

    /// A function with a PCI Express capability at 0x40 (lspci shows extended
    /// capabilities only then) of the given Device/Port Type.
    init(vendor: UInt16 = 0x8086, device: UInt16 = 0x0d93, classCode: UInt32 = 0x0502_10, portType: UInt64 = 0, headerType: UInt64 = 0) {
        config.write(PCIHeader.vendorID, value: UInt64(vendor))
        config.write(PCIHeader.deviceID, value: UInt64(device))
        config.write(PCIHeader.revisionID, value: 1)
        config.write(PCIHeader.programmingInterface, value: UInt64(classCode & 0xFF))
        config.write(PCIHeader.subClass, value: UInt64((classCode >> 8) & 0xFF))
        config.write(PCIHeader.baseClass, value: UInt64(classCode >> 16))
        config.write(PCIHeader.headerType, value: headerType)
        set(PCIHeader.status, at: 0, ["Capabilities List": 1])
        config.write(PCIHeader.capabilitiesPointer, value: 0x40)
        config.write(capabilityHeaderRegisters[0], base: 0x40, value: UInt64(CapabilityID.pciExpress.rawValue))
        set(PCIExpressCapability.capabilities, at: 0x40, ["Capability Version": 2, "Device/Port Type": portType])
    }

    mutating func set(_ r: RegisterLayout, at base: Int, _ fields: [String: UInt64]) {
        var raw = config.read(r, base: base) ?? 0
        for (name, v) in fields {
            guard let f = r.field(name) else { fatalError("\(r.name) has no field \(name)") }
            raw = f.insert(v, into: raw)
        }
        config.write(r, base: base, value: raw)
    }

    mutating func raw(_ r: RegisterLayout, at base: Int, _ value: UInt64) { config.write(r, base: base, value: value) }

    /// Appends an extended capability of `size` bytes; returns its offset.
    @discardableResult
    mutating func addExtended(id: UInt16, version: UInt64 = 1, size: Int) -> Int {
        let off = nextExtended
        precondition(off + size <= pcieConfigSpaceSize)
        if let last = lastExtended { set(ExtendedCapabilityHeader.header, at: last, ["Next Capability Offset": UInt64(off)]) }
        set(ExtendedCapabilityHeader.header, at: off, ["PCI Express Extended Capability ID": UInt64(id), "Capability Version": version])
        lastExtended = off
        nextExtended = (off + size + 3) & ~3
        return off
    }

    /// Appends a DVSEC; returns its offset.
    @discardableResult
    mutating func addDVSEC(vendor: UInt16 = cxlDVSECVendorID, id: UInt16, revision: UInt64, length: Int, allocate: Int? = nil) -> Int {
        let off = addExtended(id: ExtendedCapabilityID.designatedVendorSpecific.rawValue, size: max(allocate ?? length, 0x0C))
        set(DVSECHeader.header1, at: off, ["DVSEC Vendor ID": UInt64(vendor), "DVSEC Revision": revision, "DVSEC Length": UInt64(length)])
        set(DVSECHeader.header2, at: off, ["DVSEC ID": UInt64(id)])
        return off
    }

    mutating func addDeviceDVSEC(revision: UInt64 = 2, cap: [String: UInt64], ctl: [String: UInt64] = [:], ctl2: [String: UInt64] = [:],
                                 sta2: [String: UInt64] = [:], lock: UInt64 = 0, cap2: [String: UInt64] = [:], cap3: [String: UInt64] = [:],
                                 ranges: [(size: UInt64, base: UInt64, low: [String: UInt64])] = [], length: Int? = nil) {
        let o = addDVSEC(id: CXLDVSECID.device.rawValue, revision: revision, length: length ?? CXLDeviceDVSEC.length(revision: UInt8(revision)),
                         allocate: CXLDeviceDVSEC.length(revision: 2))
        set(CXLDeviceDVSEC.capability, at: o, cap)
        set(CXLDeviceDVSEC.control, at: o, ["IO_Enable": 1].merging(ctl) { $1 })
        set(CXLDeviceDVSEC.control2, at: o, ctl2)
        set(CXLDeviceDVSEC.status2, at: o, sta2)
        set(CXLDeviceDVSEC.lock, at: o, ["CONFIG_LOCK": lock])
        set(CXLDeviceDVSEC.capability2, at: o, cap2)
        if revision >= 2 { set(CXLDeviceDVSEC.capability3, at: o, cap3) }
        for (i, r) in ranges.enumerated() {
            let regs = i == 0 ? CXLDeviceDVSEC.range1 : CXLDeviceDVSEC.range2
            set(regs.sizeHigh, at: o, ["Memory_Size_High": r.size >> 32])
            set(regs.sizeLow, at: o, r.low.merging(["Memory_Size_Low": (r.size >> 28) & 0xF]) { $1 })
            set(regs.baseHigh, at: o, ["Memory_Base_High": r.base >> 32])
            set(regs.baseLow, at: o, ["Memory_Base_Low": (r.base >> 28) & 0xF])
        }
    }

    mutating func addRegisterLocator(_ blocks: [(bir: UInt64, id: UInt64, offset: UInt64)]) {
        let len = RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * blocks.count
        let o = addDVSEC(id: CXLDVSECID.registerLocator.rawValue, revision: 0, length: len)
        for (i, b) in blocks.enumerated() {
            let e = o + RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * i
            set(RegisterLocatorDVSEC.offsetLow, at: e, ["Register BIR": b.bir, "Register Block Identifier": b.id, "Register Block Offset Low": (b.offset >> 16) & 0xFFFF])
            set(RegisterLocatorDVSEC.offsetHigh, at: e, ["Register Block Offset High": b.offset >> 32])
        }
    }

    mutating func addFlexBus(revision: UInt64, cap: [String: UInt64], ctl: [String: UInt64], sta: [String: UInt64], ts: UInt64 = 0,
                             nop: (UInt64, UInt64, UInt64) = (0, 0, 0)) {
        let o = addDVSEC(id: CXLDVSECID.flexBusPort.rawValue, revision: revision, length: FlexBusPortDVSEC.length(revision: UInt8(revision)))
        set(FlexBusPortDVSEC.capability, at: o, cap)
        set(FlexBusPortDVSEC.control, at: o, ctl)
        set(FlexBusPortDVSEC.status, at: o, sta)
        if revision >= 1 { set(FlexBusPortDVSEC.receivedModifiedTS, at: o, ["Received Flex Bus Data Phase1": ts]) }
        if revision >= 2 {
            set(FlexBusPortDVSEC.capability2, at: o, ["NOP Hint Capable": nop.0])
            set(FlexBusPortDVSEC.control2, at: o, ["NOP Hint Enable": nop.1])
            set(FlexBusPortDVSEC.status2, at: o, ["NOP Hint Info": nop.2])
        }
    }

    mutating func addGPFPort(phase1: (UInt64, UInt64), phase2: (UInt64, UInt64)) {
        let o = addDVSEC(id: CXLDVSECID.gpfPort.rawValue, revision: 0, length: GPFPortDVSEC.length)
        set(GPFPortDVSEC.layout["GPF Phase 1 Control"], at: o, ["Port GPF Phase 1 Timeout Base": phase1.0, "Port GPF Phase 1 Timeout Scale": phase1.1])
        set(GPFPortDVSEC.layout["GPF Phase 2 Control"], at: o, ["Port GPF Phase 2 Timeout Base": phase2.0, "Port GPF Phase 2 Timeout Scale": phase2.1])
    }

    mutating func addGPFDevice(base: UInt64, scale: UInt64, power: UInt64) {
        let o = addDVSEC(id: CXLDVSECID.gpfDevice.rawValue, revision: 0, length: GPFDeviceDVSEC.length)
        set(GPFDeviceDVSEC.phase2Duration, at: o, ["Device GPF Phase 2 Time Base": base, "Device GPF Phase 2 Time Scale": scale])
        set(GPFDeviceDVSEC.phase2Power, at: o, ["GPF Phase 2 active power": power])
    }

    mutating func addPortExtensions(status: [String: UInt64], control: [String: UInt64], bus: (UInt64, UInt64), mem: (UInt64, UInt64)) {
        let o = addDVSEC(id: CXLDVSECID.portExtensions.rawValue, revision: 0, length: PortExtensionsDVSEC.length)
        set(PortExtensionsDVSEC.status, at: o, status)
        set(PortExtensionsDVSEC.control, at: o, control)
        let L = PortExtensionsDVSEC.layout
        set(L["Alternate Bus Base"], at: o, ["Alt Bus Base": bus.0])
        set(L["Alternate Bus Limit"], at: o, ["Alt Bus Limit": bus.1])
        set(L["Alternate Memory Base"], at: o, ["Alt Mem Base": mem.0])
        set(L["Alternate Memory Limit"], at: o, ["Alt Mem Limit": mem.1])
    }

    mutating func addFunctionMap(_ maps: [UInt64]) {
        let o = addDVSEC(id: CXLDVSECID.nonCXLFunctionMap.rawValue, revision: 0, length: NonCXLFunctionMapDVSEC.length)
        for (i, m) in maps.enumerated() {
            set(NonCXLFunctionMapDVSEC.layout["Non-CXL Function Map Register \(i)"], at: o, ["Non CXL Function": m])
        }
    }

    mutating func addMLD(lds: UInt64) {
        let o = addDVSEC(id: CXLDVSECID.mld.rawValue, revision: 0, length: MLDDVSEC.length)
        set(MLDDVSEC.layout["Number of LD Supported"], at: o, ["Number of LDs Supported": lds])
    }
}

/// Component register block images built through the catalog.
struct ComponentBlockBuilder {
    var bytes = [UInt8](repeating: 0, count: ComponentRegisterBlock.size)
    var caps: [(id: UInt16, version: UInt64, pointer: Int)] = []

    mutating func write32(_ off: Int, _ v: UInt64) {
        for i in 0..<4 { bytes[off + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
    }
    func read32(_ off: Int) -> UInt64 { (0..<4).reduce(0) { $0 | UInt64(bytes[off + $1]) << (8 * UInt64($1)) } }
    mutating func set(_ r: RegisterLayout, at base: Int, _ fields: [String: UInt64]) {
        var raw = read32(base + r.offset)
        for (n, v) in fields { raw = r.field(n)!.insert(v, into: raw) }
        write32(base + r.offset, raw)
    }

    /// Writes the capability array header and elements.
    mutating func finish() {
        let cm = ComponentRegisterBlock.cacheMemOffset
        set(CacheMemCapabilityArray.header, at: cm, ["CXL_Capability_ID": 1, "CXL_Capability_Version": 1, "CXL_Cache_Mem_Version": 1, "Array_Size": UInt64(caps.count)])
        for (i, c) in caps.enumerated() {
            set(CacheMemCapabilityArray.element, at: cm + 4 * (i + 1) - CacheMemCapabilityArray.element.offset,
                ["Capability ID": UInt64(c.id), "Capability Version": c.version, "Pointer": UInt64(c.pointer)])
        }
    }
}
