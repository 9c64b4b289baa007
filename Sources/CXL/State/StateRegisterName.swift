import PCI
import Synchronization

// Registers of a state snapshot by number. Every register the engine saves is a
// catalog register of one of six structures; the engine names them by their index
// in `StateRegisterTable` and renders the structure and register names (strings)
// only when a file, a report or a diff is written. A save or restore of N decoders
// therefore hashes, compares and copies no strings per register.

/// What the restore does with a register, decided by its catalog identity.
enum StateRegisterKind: Sendable, Hashable {
    case command
    /// Base Address Register 0-5.
    case bar(Int)
    case pciExpress
    case msiControl
    /// MSI Message Address/Upper Address/Data/Extended Data/Mask Bits.
    case msi
    case msixControl
    case dvsecLock
    case dvsecControl
    case dvsecControl2
    /// Range 1 Base High, Range 1 Base Low, Range 2 Base High, Range 2 Base Low (0 ... 3).
    case rangeBase(Int)
    /// Any other DVSEC register (Capability, Range Sizes: verified, not written).
    case dvsecOther
    case hdmCapability
    case hdmGlobalControl
    /// Decoder n, register slot 0 ... 6 in save order (Base Low/High, Size Low/High,
    /// Control, DPA Skip or Target List Low/High); slot 4 is Control.
    case decoder(n: Int, slot: Int)
}

/// The structure and register a saved register is, as a number: below
/// `StateRegisterTable.entries.count` a catalog register; above it a pair of names
/// the catalog does not have (only a hand-made state file has them), interned in
/// `ForeignRegisterNames`. A plain number, so a `SavedRegister` copies without
/// reference counting and compares and hashes as an integer; each pair of names has
/// exactly one number, so equality is name equality.
struct StateRegisterName: Sendable, Hashable {
    let id: UInt32

    private init(id: UInt32) { self.id = id }

    static func catalog(_ id: UInt16) -> StateRegisterName { StateRegisterName(id: UInt32(id)) }

    init(block: String, register: String) {
        if let id = StateRegisterTable.id(block: block, register: register) {
            self.id = UInt32(id)
        } else {
            // Build-time names (code, tests): not input, so not limited.
            self.id = ForeignRegisterNames.shared.intern(block: block, register: register, limit: .max)!
        }
    }

    /// A name read from outside (a state file, a report, a diff): as `init(block:register:)`, but a pair the catalog
    /// lacks is interned only while the process holds fewer than `ForeignRegisterNames.decodingLimit` of them, so no
    /// input, however many files a long-running process reads, grows the table without bound.
    static func decoded(block: String, register: String, codingPath: [any CodingKey]) throws -> StateRegisterName {
        if let id = StateRegisterTable.id(block: block, register: register) { return StateRegisterName(id: UInt32(id)) }
        let limit = ForeignRegisterNames.decodingLimit
        guard let id = ForeignRegisterNames.shared.intern(block: block, register: register, limit: limit) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath, debugDescription:
                "register \"\(register)\" of \"\(block)\": more than \(limit) distinct register names outside the catalog"))
        }
        return StateRegisterName(id: id)
    }

    /// The catalog number, nil for a foreign name.
    var catalogID: Int? { id < UInt32(StateRegisterTable.count) ? Int(id) : nil }

    /// The structure's name; setting it renames (and renumbers) the register.
    var block: String {
        get {
            if let c = catalogID { return StateRegisterTable.entries[c].block }
            return ForeignRegisterNames.shared.names(id).block
        }
        set { self = StateRegisterName(block: newValue, register: register) }
    }

    /// The register's name; setting it renames (and renumbers) the register.
    var register: String {
        get {
            if let c = catalogID { return StateRegisterTable.entries[c].register }
            return ForeignRegisterNames.shared.names(id).register
        }
        set { self = StateRegisterName(block: block, register: newValue) }
    }

    var kind: StateRegisterKind? { catalogID.map { StateRegisterTable.kinds[$0] } }
}

/// The JSON form of a register's identity, `{"block": ..., "register": ...}`: in a state
/// file's registers, a restore report's registers and a register key. Decoding goes
/// through `decoded`, which bounds the names the catalog lacks.
extension StateRegisterName: Codable {
    enum CodingKeys: String, CodingKey { case block, register }

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self = try .decoded(block: try c.decode(String.self, forKey: .block), register: try c.decode(String.self, forKey: .register),
                            codingPath: c.codingPath)
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(block, forKey: .block)
        try c.encode(register, forKey: .register)
    }
}

/// Names of registers the state table does not have, numbered from
/// `StateRegisterTable.count` up in the order first seen. Only decoding a state file
/// (or a test) adds to it, one entry per distinct pair of names, which the process
/// keeps; decoding stops adding at `decodingLimit`. One table: a name's number means
/// something only in `shared`, which `block` and `register` read.
final class ForeignRegisterNames: Sendable {
    static let shared = ForeignRegisterNames()
    /// Most distinct foreign names decoding will intern: 4096, far beyond any real file
    /// (the catalog has a few hundred registers; a hand-made file adds a handful). Task-local
    /// so that a test can lower it for its own decoding only.
    @TaskLocal static var decodingLimit = 4096

    private init() {}

    private struct Table {
        var names: [(block: String, register: String)] = []
        var index: [String: [String: UInt32]] = [:]
    }
    private let table = Mutex(Table())

    /// The number of the pair, interned if new and fewer than `limit` are; nil when the table is full.
    func intern(block: String, register: String, limit: Int) -> UInt32? {
        table.withLock { t in
            if let id = t.index[block]?[register] { return id }
            guard t.names.count < limit else { return nil }
            let id = UInt32(StateRegisterTable.count + t.names.count)
            t.names.append((block, register))
            t.index[block, default: [:]][register] = id
            return id
        }
    }

    func names(_ id: UInt32) -> (block: String, register: String) {
        table.withLock { t in
            let i = Int(id) - StateRegisterTable.count
            return i >= 0 && i < t.names.count ? t.names[i] : ("", "")
        }
    }
}

/// Every register a snapshot can hold, numbered, from the catalog: the Type 0 header's
/// Command and BARs, PCI Express control, MSI, MSI-X Message Control, every register of
/// the PCIe DVSEC for CXL Devices, and the HDM Decoder Capability with decoders 0-31
/// of both kinds.
enum StateRegisterTable {
    struct Entry: Sendable {
        let block: String
        let register: String
        let kind: StateRegisterKind
    }

    /// Slots per decoder in the table: the seven endpoint registers, then Target List Low/High of a port.
    static let decoderSlots = 9
    static let endpointSlots = 7

    static let entries: [Entry] = {
        var out: [Entry] = []
        var seen = Set<String>()
        func add(_ block: String, _ register: String, _ kind: StateRegisterKind) {
            guard seen.insert(block + "\u{0}" + register).inserted else { return }
            out.append(Entry(block: block, register: register, kind: kind))
        }
        let h = StateCatalog.headerBlock
        add(h, PCIHeader.command.name, .command)
        for i in 0..<6 { add(h, PCIHeader.bar(i).name, .bar(i)) }
        for r in StateCatalog.pciExpressRegisters { add(StateCatalog.pciExpressBlock, r.name, .pciExpress) }
        for is64 in [true, false] {
            for pvm in [true, false] {
                for r in MSICapability.layout(is64Bit: is64, perVectorMasking: pvm).registers {
                    add(StateCatalog.msiBlock, r.name, r.name == MSICapability.messageControl.name ? .msiControl : .msi)
                }
            }
        }
        add(StateCatalog.msixBlock, MSIXCapability.messageControl.name, .msixControl)
        let d = StateCatalog.dvsecBlock
        add(d, CXLDeviceDVSEC.lock.name, .dvsecLock)
        add(d, CXLDeviceDVSEC.control.name, .dvsecControl)
        add(d, CXLDeviceDVSEC.control2.name, .dvsecControl2)
        for (k, r) in rangeBaseLayouts.enumerated() { add(d, r.name, .rangeBase(k)) }
        for r in CXLDeviceDVSEC.layout(revision: 2).registers { add(d, r.name, .dvsecOther) }
        precondition(out.count == fixedCount, "state register table: \(out.count) fixed registers, expected \(fixedCount)")
        // HDM: capability, global control, then decoder n at decoderBase + 9n + slot.
        add(StateCatalog.hdmBlock, HDMDecoderCapability.capability.name, .hdmCapability)
        add(StateCatalog.hdmBlock, HDMDecoderCapability.globalControl.name, .hdmGlobalControl)
        for n in 0..<HDMDecoderCapability.maximumDecoders {
            let endpoint = HDMDecoderCapability.decoderRegisters(n, endpoint: true)
            let port = HDMDecoderCapability.decoderRegisters(n, endpoint: false)
            precondition(endpoint.count == endpointSlots && port.count == endpointSlots)
            let start = out.count
            for (slot, r) in endpoint.enumerated() { add(StateCatalog.hdmBlock, r.name, .decoder(n: n, slot: slot)) }
            for slot in 5..<endpointSlots { add(StateCatalog.hdmBlock, port[slot].name, .decoder(n: n, slot: slot)) }
            precondition(out.count - start == decoderSlots, "decoder \(n): \(out.count - start) registers")
        }
        return out
    }()

    /// The DVSEC Range Base registers, in `StateRegisterKind.rangeBase` order.
    static let rangeBaseLayouts = [CXLDeviceDVSEC.range1.baseHigh, CXLDeviceDVSEC.range1.baseLow,
                                   CXLDeviceDVSEC.range2.baseHigh, CXLDeviceDVSEC.range2.baseLow]

    /// Registers before the HDM ones (checked when the table is built).
    static let fixedCount: Int = {
        var names = Set<String>()
        for is64 in [true, false] {
            for pvm in [true, false] { for r in MSICapability.layout(is64Bit: is64, perVectorMasking: pvm).registers { names.insert(r.name) } }
        }
        let dvsec = Set(CXLDeviceDVSEC.layout(revision: 2).registers.map(\.name)
                        + [CXLDeviceDVSEC.lock, CXLDeviceDVSEC.control, CXLDeviceDVSEC.control2].map(\.name) + rangeBaseLayouts.map(\.name))
        return 7 + StateCatalog.pciExpressRegisters.count + names.count + 1 + dvsec.count
    }()

    static let hdmCapability = UInt16(fixedCount)
    static let hdmGlobalControl = UInt16(fixedCount + 1)

    /// Decoder n's register in save slot `slot` (0 ... 6) of an endpoint (`endpoint`) or a port.
    static func decoder(_ n: Int, slot: Int, endpoint: Bool) -> UInt16 {
        UInt16(fixedCount + 2 + decoderSlots * n + (endpoint || slot < 5 ? slot : slot + 2))
    }

    private static let byName: [String: [String: UInt16]] = {
        var out: [String: [String: UInt16]] = [:]
        for (i, e) in entries.enumerated() { out[e.block, default: [:]][e.register] = UInt16(i) }
        return out
    }()

    /// How many registers the table has (hoisted: `entries.count` on every name check).
    static let count = entries.count
    /// Each register's kind, apart from the names (a plain array to index in the restore).
    static let kinds = entries.map(\.kind)

    /// The number of a catalog register, nil for names the catalog does not have.
    static func id(block: String, register: String) -> UInt16? { byName[block]?[register] }

    /// The number of a register of a fixed structure (a build-time name).
    static func id(_ block: String, _ layout: RegisterLayout) -> UInt16 {
        guard let id = id(block: block, register: layout.name) else { preconditionFailure("\(layout.name) is not a state register") }
        return id
    }

    static let command = id(StateCatalog.headerBlock, PCIHeader.command)
    static let bars = (0..<6).map { id(StateCatalog.headerBlock, PCIHeader.bar($0)) }
}
