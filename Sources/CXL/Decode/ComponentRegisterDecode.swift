import PCI

/// Reads 32-bit component registers of one block. Offsets are relative to the
/// block start (the Register Locator offset inside the BAR).
public protocol ComponentRegisterReader: Sendable {
    func read32(_ offset: Int) throws(PCIError) -> UInt32
}

/// A block inside a BAR of a PCIFunction.
public struct BARBlockReader: ComponentRegisterReader {
    public let function: any PCIFunction
    public let bar: Int
    public let blockOffset: UInt64
    public init(function: any PCIFunction, bar: Int, blockOffset: UInt64) {
        self.function = function
        self.bar = bar
        self.blockOffset = blockOffset
    }
    public func read32(_ offset: Int) throws(PCIError) -> UInt32 {
        UInt32(truncatingIfNeeded: try function.barRead(bar, offset: blockOffset + UInt64(offset), width: 4))
    }
}

/// A block held in memory (a captured `block-component-*.bin`, a test image).
public struct ImageBlockReader: ComponentRegisterReader {
    public let bytes: [UInt8]
    public init(bytes: [UInt8]) { self.bytes = bytes }
    public func read32(_ offset: Int) throws(PCIError) -> UInt32 {
        guard offset >= 0, offset % 4 == 0, offset <= bytes.count - 4 else { throw .outOfRange("component register 0x\(hex(offset, digits: 4)) outside the \(bytes.count)-byte image") }
        return UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
    }
}

/// One HDM decoder, decoded.
public struct HDMDecoderState: Sendable, Hashable {
    public enum TargetType: String, Sendable, Codable { case hdmD = "HDM-D", hdmDB = "HDM-DB", hdmH = "HDM-H" }
    public let index: Int
    public let base: UInt64
    public let size: UInt64
    public let control: UInt32
    public let igEncoding: UInt8
    public let iwEncoding: UInt8
    /// Nil for reserved encodings.
    public let ways: Int?
    public let granularity: Int?
    public let lockOnCommit: Bool
    public let commit: Bool
    public let committed: Bool
    public let errorNotCommitted: Bool
    public let targetType: TargetType
    /// DPA Skip (endpoints) or nil (ports).
    public let dpaSkip: UInt64?
    /// Target Port Identifiers of ways 0-7 (ports) or nil (endpoints).
    public let targets: [UInt8]?
}

/// The HDM Decoder Capability structure, decoded.
public struct HDMDecoderCapabilityState: Sendable, Hashable {
    public let capability: UInt32
    public let globalControl: UInt32
    /// Nil for a reserved Decoder Count encoding.
    public let decoderCount: Int?
    public let decoders: [HDMDecoderState]
}

/// One entry of the CXL.cachemem capability array.
public struct CacheMemCapability: Sendable, Hashable {
    public let id: UInt16
    public let version: UInt8
    /// Pointer from the cachemem start (block + 0x1000).
    public let pointer: Int
    public var name: String { CacheMemCapabilityID(rawValue: id)?.name ?? "Unknown capability \(hex(id, digits: 4))" }
    public var blockOffset: Int { ComponentRegisterBlock.cacheMemOffset + pointer }
}

/// The decoded component register block: capability array, RAS and HDM decoders.
public struct ComponentRegisterDecode: Sendable {
    public var header: UInt32?
    public var capabilities: [CacheMemCapability] = []
    /// Raw registers of every capability with a catalog layout, by capability pointer.
    public var registers: [Int: [(RegisterLayout, UInt32)]] = [:]
    public var hdm: HDMDecoderCapabilityState?
    public var findings: [Finding] = []

    /// Decodes the block through `reader`. `endpoint` picks DPA Skip over Target List
    /// for decoder registers +0x24/+0x28. Never traps: reads that fail become findings.
    public init(reader: any ComponentRegisterReader, endpoint: Bool) {
        let cm = ComponentRegisterBlock.cacheMemOffset
        let walk = CacheMemCapabilityList(read32: { (offset) throws(PCIError) -> UInt32 in try reader.read32(offset) })
        header = walk.header
        switch walk.stop {
        case .unreadableHeader(let error)?:
            findings.append(Finding(.error, at: cm, "cannot read the CXL capability header: \(error)"))
            return
        case .notAnArray(let id)?:
            findings.append(Finding(.error, at: cm, "CXL capability header has ID 0x\(hex(id, digits: 4)), not 1: no capability array"))
            return
        default: break
        }
        for (n, cap) in walk.capabilities.enumerated() {
            let i = n + 1
            capabilities.append(cap)
            if cap.id == 0 { continue }
            if cap.pointer == 0 {
                findings.append(Finding(.warning, at: cm + 4 * i, "\(cap.name) has a null pointer"))
                continue
            }
            switch CacheMemCapabilityID(rawValue: cap.id) {
            case .ras:
                registers[cap.pointer] = readAll(RASCapability.layout.registers.filter { $0.width == 4 }, reader, cap.blockOffset)
            case .hdmDecoder:
                hdm = decodeHDM(reader, cap.blockOffset, endpoint: endpoint)
            default: break
            }
        }
        if case .unreadableElement(let i, _)? = walk.stop {
            findings.append(Finding(.error, at: cm + 4 * i, "cannot read capability array element \(i)"))
        }
    }

    private mutating func readAll(_ regs: [RegisterLayout], _ reader: any ComponentRegisterReader, _ base: Int) -> [(RegisterLayout, UInt32)] {
        var out: [(RegisterLayout, UInt32)] = []
        for r in regs {
            do throws(PCIError) {
                out.append((r, try reader.read32(base + r.offset)))
            } catch {
                findings.append(Finding(.error, at: base + r.offset, "cannot read \(r.name): \(error)"))
                break
            }
        }
        return out
    }

    private mutating func decodeHDM(_ reader: any ComponentRegisterReader, _ base: Int, endpoint: Bool) -> HDMDecoderCapabilityState? {
        guard let capRaw = try? reader.read32(base + HDMDecoderCapability.capability.offset),
              let gcRaw = try? reader.read32(base + HDMDecoderCapability.globalControl.offset) else {
            findings.append(Finding(.error, at: base, "cannot read the HDM Decoder Capability registers"))
            return nil
        }
        let cap = RegisterValue(HDMDecoderCapability.capability, UInt64(capRaw))
        let count = HDMDecoderCapability.decoderCounts[cap["Decoder Count"]]
        if count == nil { findings.append(Finding(.error, at: base, "reserved Decoder Count encoding 0x\(hex(cap["Decoder Count"], digits: 1))")) }
        var decoders: [HDMDecoderState] = []
        for n in 0..<(count ?? 0) {
            let regs = HDMDecoderCapability.decoderRegisters(n, endpoint: endpoint)
            var raw: [UInt64] = []
            for r in regs {
                guard let v = try? reader.read32(base + r.offset) else {
                    findings.append(Finding(.error, at: base + r.offset, "cannot read \(r.name)"))
                    break
                }
                raw.append(UInt64(v))
            }
            guard raw.count == regs.count else { break }
            // Values by register name, through the named decoder registers.
            let named = HDMDecoderRegisters(n, endpoint: endpoint)
            let byOffset = Dictionary(uniqueKeysWithValues: zip(regs.map(\.offset), raw))
            func value(_ r: RegisterLayout) -> RegisterValue { RegisterValue(r, byOffset[r.offset]) }
            let ctl = value(named.control)
            let (baseLow, baseHigh, sizeLow, sizeHigh) = (value(named.baseLow), value(named.baseHigh), value(named.sizeLow), value(named.sizeHigh))
            let (extraLow, extraHigh) = (value(named.skipOrTargetLow), value(named.skipOrTargetHigh))
            let ig = UInt8(ctl["IG"]), iw = UInt8(ctl["IW"])
            let ways = InterleaveWays(encoding: iw)?.ways
            let gran = InterleaveGranularity(encoding: ig)?.bytes
            let type: HDMDecoderState.TargetType = ctl.isSet("Target Range Type") ? .hdmH : (ctl.isSet("BI") ? .hdmDB : .hdmD)
            let dpaSkip: UInt64? = endpoint ? (extraHigh["DPA Skip High"] << 32) | (extraLow["DPA Skip Low"] << 28) : nil
            let targets: [UInt8]? = endpoint ? nil : (0..<8).map { w in
                UInt8(w < 4 ? extraLow["Target Port Identifier Way \(w)"] : extraHigh["Target Port Identifier Way \(w)"])
            }
            let d = HDMDecoderState(index: n, base: (baseHigh["Memory Base High"] << 32) | (baseLow["Memory Base Low"] << 28),
                                    size: (sizeHigh["Memory Size High"] << 32) | (sizeLow["Memory Size Low"] << 28),
                                    control: UInt32(ctl.raw), igEncoding: ig, iwEncoding: iw, ways: ways, granularity: gran,
                                    lockOnCommit: ctl.isSet("Lock On Commit"), commit: ctl.isSet("Commit"),
                                    committed: ctl.isSet("Committed"), errorNotCommitted: ctl.isSet("Error Not Committed"),
                                    targetType: type, dpaSkip: dpaSkip, targets: targets)
            if ways == nil { findings.append(Finding(.error, at: base + named.control.offset, "decoder \(n): reserved IW encoding \(iw)")) }
            if gran == nil { findings.append(Finding(.error, at: base + named.control.offset, "decoder \(n): reserved IG encoding \(ig)")) }
            decoders.append(d)
        }
        return HDMDecoderCapabilityState(capability: capRaw, globalControl: gcRaw, decoderCount: count, decoders: decoders)
    }
}

extension UInt16 { var asUInt64: UInt64 { UInt64(self) } }
