import Testing
import PCI
import CXL
@testable import CXLEmulator

/// Each reset's scope, checked field by field over a full register snapshot against
/// the scope table in the README (restated here as `expectReset`):
///
/// | state                                   | FLR  | FLR (flrLosesCXLState) | CXL Reset                  | conventional |
/// |-----------------------------------------|------|------------------------|----------------------------|--------------|
/// | header, PM, MSI-X, PCIe cap (non-sticky)| reset| reset                  | reset                      | reset        |
/// | PCIe Link Control / Link Control 2      | kept | kept                   | kept                       | reset        |
/// | MSI-X table and PBA                     | reset| reset                  | reset                      | reset        |
/// | CXL device DVSEC (non-sticky)           | kept | reset (lock too)       | reset but CONFIG_LOCK and the RWL fields it locks | reset |
/// | other DVSECs (GPF, Flex Bus, Locator)   | kept | kept                   | kept                       | reset        |
/// | HDM decoders, global control            | kept | reset                  | reset (locks released)     | reset        |
/// | RAS (non-sticky)                        | kept | kept                   | reset                      | reset        |
/// | Link capability                         | kept | kept                   | kept                       | reset        |
/// | sticky bits (RWS, RW1CS)                | kept | kept                   | kept                       | kept         |
/// | device memory                           | kept | kept                   | cleared iff Mem Clr enabled| kept iff Capability3 / Control2 bit 4 say so |
@Suite("Reset scopes, field by field")
struct ResetScopeTests {
    enum Kind: String, Sendable { case flr, flrFault, cxlReset, conventional }

    struct Case: Sendable, CustomStringConvertible {
        let kind: Kind
        var method: PCIResetMethod = .flr
        var configLock = false
        var memClear = false
        var preserveHot = false
        var requestPreserve = false
        var viaConfigWrite = false
        var description: String {
            "\(kind) \(method) lock=\(configLock) memClr=\(memClear) preserveHot=\(preserveHot) request=\(requestPreserve) cfgwrite=\(viaConfigWrite)"
        }
    }

    static let cases: [Case] = [
        Case(kind: .flr, configLock: true),
        Case(kind: .flr, configLock: false, viaConfigWrite: true),
        Case(kind: .flrFault, configLock: true),
        Case(kind: .cxlReset, configLock: true, memClear: true),
        Case(kind: .cxlReset, configLock: false, memClear: false),
        Case(kind: .conventional, method: .bus, configLock: true),
        Case(kind: .conventional, method: .link, configLock: false, preserveHot: true),
        Case(kind: .conventional, method: .bus, requestPreserve: true),
    ]

    struct Snapshot {
        var config: [UInt8]
        var cachemem: [UInt8]
        var msix: [UInt8]
        var memory: [UInt8]
    }

    static func snapshot(_ dev: EmulatedCXLDevice, _ d: Discovered) throws -> Snapshot {
        func bar(_ from: UInt64, _ count: Int) throws -> [UInt8] {
            var out: [UInt8] = []
            for o in stride(from: 0, to: count, by: 4) {
                let v = try dev.barRead(0, offset: from + UInt64(o), width: 4)
                out += (0..<4).map { UInt8(truncatingIfNeeded: v >> UInt64(8 * $0)) }
            }
            return out
        }
        return Snapshot(config: try dev.configSnapshot().bytes,
                        cachemem: try bar(d.cacheMem, ComponentRegisterBlock.cacheMemSize),
                        msix: try bar(Layout.msixTable, 0x2000),
                        memory: try dev.readDPA(0, count: 16) + dev.readDPA(dev.memorySize - 16, count: 16))
    }

    static func profile(_ c: Case) -> DeviceProfile {
        var p = DeviceProfile()
        p.name = "scope"
        p.memorySize = 512 * MiB
        p.capabilities.cache = true
        p.capabilities.cacheWritebackInvalidate = true
        p.capabilities.viral = true
        p.capabilities.memClear = true
        p.capabilities.volatileHDMPreservedAfterHotReset = c.preserveHot
        p.faults.flrLosesCXLState = c.kind == .flrFault
        p.capabilities.cxlResetTimeoutMilliseconds = 100
        return p
    }

    /// Write every writable bit we can without triggering anything.
    static func dirty(_ dev: EmulatedCXLDevice, _ d: Discovered, _ c: Case) throws {
        for s in dev.configStructures {
            for r in s.layout.registers where r.writableMask != 0 {
                let o = s.offset + r.offset
                var v: UInt64 = r.widthMask
                if o == Layout.pciExpress + PCIExpressCapability.deviceControl.offset { v &= ~PCIExpressCapability.initiateFLR.mask }
                if o == d.cxlDevice + CXLDeviceDVSEC.control2.offset {
                    v &= ~CXLDeviceDVSEC.control2Doorbells
                    if !c.memClear { v &= ~CXLDeviceDVSEC.Control2.memClearEnable.mask }
                    if !c.requestPreserve { v &= ~CXLDeviceDVSEC.Control2.desiredVolatileHDMStateAfterHotReset.mask }
                }
                if o == d.cxlDevice + CXLDeviceDVSEC.lock.offset { continue }
                try dev.configWrite(o, width: r.width, value: UInt32(truncatingIfNeeded: v))
            }
        }
        // Range 1 Base, then CONFIG_LOCK.
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).baseHigh), width: 4, value: 0x40)
        try dev.configWrite(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).baseLow), width: 4, value: 0)
        if c.configLock { try dev.configWrite(d.dvsec(CXLDeviceDVSEC.lock), width: 2, value: 1) }
        // Component registers: decoder 0 committed and locked, decoder 1 programmed
        // but not committed, HDM enabled, every RAS and Link writable bit flipped.
        try dev.program(d, decoder: 0, base: 0x40_0000_0000, size: granule, lock: true)
        try dev.program(d, decoder: 1, base: 0x40_1000_0000, size: granule, skip: granule, iw: 1, ig: 2, commit: false)
        try dev.enableHDM(d)
        for s in dev.componentStructures where s.layout.name != CacheMemCapabilityID.hdmDecoder.name {
            for r in s.layout.registers where r.writableMask != 0 {
                let v = r.writableMask ^ r.resetValue
                try dev.barWrite(0, offset: UInt64(s.offset + r.offset), width: max(4, r.width), value: v & r.widthMask)
            }
        }
        // MSI-X: vector 0 programmed and unmasked (MSI-X Enable was set above).
        try dev.setBar32(Layout.msixTable, 0xFEE0_0000)
        try dev.setBar32(Layout.msixTable + 8, 0x41)
        try dev.setBar32(Layout.msixTable + 0xC, 0)
        try dev.writeDPA(0, bytes: [UInt8](repeating: 0xA5, count: 16))
        try dev.writeDPA(dev.memorySize - 16, bytes: [UInt8](repeating: 0x5A, count: 16))
    }

    static let pciFunctionStructures: Set<String> = ["Type 0 Configuration Space Header", "Power Management", "MSI-X", "PCI Express"]

    /// The documented scope: true when the field must return to its default.
    static func expectReset(_ c: Case, structure: String, register: RegisterLayout, field: RegisterField, component: Bool) -> Bool {
        if field.access.isSticky { return false }
        if c.kind == .conventional { return true }
        if component {
            switch c.kind {
            case .flr: return false
            case .flrFault: return structure == CacheMemCapabilityID.hdmDecoder.name
            case .cxlReset: return structure == CacheMemCapabilityID.hdmDecoder.name || structure == CacheMemCapabilityID.ras.name
            case .conventional: return true
            }
        }
        let link = ["Link Control", "Link Control 2"].contains(register.name)
        let pciFunction = Self.pciFunctionStructures.contains(structure) && !link
        let cxlDVSEC = structure == CXLDVSECID.device.name
        switch c.kind {
        case .flr: return pciFunction
        case .flrFault: return pciFunction || cxlDVSEC
        case .cxlReset:
            if cxlDVSEC && c.configLock && (field.access == .rwl || field.name == "CONFIG_LOCK") { return false }
            return pciFunction || cxlDVSEC
        case .conventional: return true
        }
    }

    static func value(_ bytes: [UInt8], _ offset: Int, _ r: RegisterLayout, _ f: RegisterField) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<r.width { v |= UInt64(bytes[offset + r.offset + i]) << UInt64(8 * i) }
        return f.extract(v)
    }

    @Test(arguments: cases)
    func scope(_ c: Case) throws {
        let clock = ManualClock()
        let dev = try EmulatedCXLDevice(profile: Self.profile(c), clock: clock)
        let d = try Discovered(dev)
        let fresh = try Self.snapshot(dev, d)
        try Self.dirty(dev, d, c)
        let before = try Self.snapshot(dev, d)

        switch c.kind {
        case .flr, .flrFault:
            if c.viaConfigWrite {
                // As Linux pcie_flr(): read-modify-write Device Control with Initiate FLR.
                let dc = try dev.cfg16(Layout.pciExpress + 8)
                try dev.configWrite(Layout.pciExpress + 8, width: 2, value: UInt32(dc | 0x8000))
                #expect(try dev.cfg16(Layout.pciExpress + 8) & 0x8000 == 0)
            } else {
                try dev.reset(.flr)
            }
        case .cxlReset:
            let c2 = try dev.cfg16(d.dvsec(CXLDeviceDVSEC.control2))
            try dev.configWrite(d.dvsec(CXLDeviceDVSEC.control2), width: 2, value: UInt32(c2 | 0x4))
            #expect(dev.isCXLResetInProgress)
            clock.advance(milliseconds: 99.999)
            #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.status2)) & 0x6 == 0)
            clock.advance(milliseconds: 0.001)
        case .conventional:
            try dev.reset(c.method)
        }
        let after = try Self.snapshot(dev, d)

        var resetChanged = 0, keptChanged = 0
        for (structures, bytesOf, component) in [
            (dev.configStructures.map { ($0.name, $0.offset, $0.layout) }, { (s: Snapshot) in s.config }, false),
            (dev.componentStructures.map { ($0.name, $0.offset - Int(d.cacheMem), $0.layout) }, { (s: Snapshot) in s.cachemem }, true),
        ] as [([(String, Int, RegisterBlockLayout)], (Snapshot) -> [UInt8], Bool)] {
            for (name, offset, layout) in structures {
                for r in layout.registers {
                    for f in r.fields {
                        let b = Self.value(bytesOf(before), offset, r, f)
                        let a = Self.value(bytesOf(after), offset, r, f)
                        var fr = Self.value(bytesOf(fresh), offset, r, f)
                        // Status2 Reset Complete is the CXL Reset's own report.
                        if c.kind == .cxlReset && f.name == "CXL Reset Complete" { fr = 1 }
                        if Self.expectReset(c, structure: name, register: r, field: f, component: component) {
                            #expect(a == fr, "\(c): \(name) / \(r.name) / \(f.name) should reset: before \(b) after \(a) default \(fr)")
                            if b != fr { resetChanged += 1 }
                        } else {
                            #expect(a == b, "\(c): \(name) / \(r.name) / \(f.name) should be kept: before \(b) after \(a)")
                            if b != fr { keptChanged += 1 }
                        }
                    }
                }
            }
        }
        // The snapshot exercised both sides of the scope.
        #expect(resetChanged > 10)
        if c.kind != .conventional { #expect(keptChanged > 5) }
        // MSI-X table and PBA always return to defaults (Mask Bit 1).
        #expect(after.msix == fresh.msix)
        #expect(before.msix != fresh.msix)
        // Device memory.
        let memoryKept: Bool
        switch c.kind {
        case .flr, .flrFault: memoryKept = true
        case .cxlReset: memoryKept = !c.memClear
        case .conventional: memoryKept = c.preserveHot || c.requestPreserve
        }
        #expect(after.memory == (memoryKept ? before.memory : [UInt8](repeating: 0, count: 32)))
        // Decoder 0 (locked) survives exactly when HDM state is in scope to be kept.
        let decoderKept = c.kind == .flr
        #expect(try dev.committed(d, 0) == decoderKept)
    }
}
