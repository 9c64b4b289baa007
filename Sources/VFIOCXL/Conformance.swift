#if canImport(Glibc)
import Glibc
#endif
import CXL
import PCI
import VFIO

// The v4 vfio-cxl contract as executable checks: the 19 tests of the kernel selftest
// tools/testing/selftests/vfio/vfio_cxl_type2_test.c (NVIDIA, 2026), by the same names, run through any transport
// that implements `CXLConformTarget` (our vfio-user client, and the kernel VFIO backend for `vfio:BDF`). Where a transport
// cannot express what the selftest does (a refused mmap, IOMMU_IOAS_MAP_FILE), the check says so: it is skipped with
// the reason, or checks the transport's equivalent, as its description states.

/// One region as a transport reports it.
public struct CXLConformRegion: Sendable {
    public var index: UInt32
    public var flags: VFIORegionFlags
    public var size: UInt64
    public var capabilities: [VFIOCapability]
    public init(index: UInt32, flags: VFIORegionFlags, size: UInt64, capabilities: [VFIOCapability]) {
        self.index = index; self.flags = flags; self.size = size; self.capabilities = capabilities
    }

    public func capability(_ id: UInt16) -> VFIOCapability? { capabilities.first { $0.id == id } }
    public var type: VFIORegionTypeCapability? { capability(VFIORegionCapabilityID.type).flatMap { try? VFIORegionTypeCapability(parsing: $0) } }
}

/// What the checks need from a device, whatever the transport. Errors are whatever the transport throws; a check
/// that expects an access to be refused only needs it to throw.
public protocol CXLConformTarget: AnyObject {
    /// "vfio-user", "vfio".
    var transport: String { get }
    /// Whether mmap itself refuses a range the device excludes (the kernel checks the sparse areas at mmap time;
    /// over vfio-user the client maps the fd it was given, so only the advertised areas can be checked).
    var mmapRefusesExcludedRanges: Bool { get }
    /// Whether a dma-buf fd can be mapped with IOMMU_IOAS_MAP_FILE (kernel VFIO with iommufd).
    var canMapDMABuf: Bool { get }
    func deviceInfo() throws -> VFIODeviceInfo
    func regionInfo(_ index: UInt32) throws -> CXLConformRegion
    func read(region: UInt32, offset: UInt64, count: Int) throws -> [UInt8]
    func write(region: UInt32, offset: UInt64, data: [UInt8]) throws
    /// Maps `length` bytes of a region from `offset` (page aligned), shared and writable.
    func map(region: UInt32, offset: UInt64, length: Int) throws -> VFIOSharedMemory
    func reset() throws
    func feature(flags: UInt32, data: [UInt8]) throws -> [UInt8]
    /// Closes the device and opens it again (a new vfio-user connection, a new device fd): per-open state (the
    /// DVSEC shadow) starts over. The runner does this before every check, as the selftest's fixture does.
    func reopen() throws
}

/// The outcome of one check.
public enum CXLConformStatus: String, Sendable, Codable {
    case pass, fail, skip
}

public struct CXLConformResult: Sendable {
    public var name: String
    public var status: CXLConformStatus
    /// Why it failed or was skipped, or what passing established.
    public var detail: String
}

/// One selftest check.
public struct CXLConformCheck: Sendable {
    public var name: String
    public var summary: String
    let body: @Sendable (CXLConformContext) throws -> String
}

struct CheckFailed: Error, CustomStringConvertible { var description: String }
struct CheckSkipped: Error, CustomStringConvertible { var description: String }

/// What the selftest's fixture finds once per device: the two CXL regions by TYPE, the CXL_COMP_REGS geometry and
/// the CXL device map of config space as a guest reads it (the CXL Device DVSEC, the Register Locator's blocks);
/// Memory Space Enable is set.
public final class CXLConformContext {
    public let target: any CXLConformTarget
    public let info: VFIODeviceInfo
    public private(set) var memIndex: UInt32?
    public private(set) var memRegion: CXLConformRegion?
    public private(set) var compIndex: UInt32?
    public private(set) var compRegion: CXLConformRegion?
    public private(set) var geometry: VFIOCXLCompRegsCapability?
    /// The config-space part of the CXL device map, from config space read through the config region; nil when
    /// it has no CXL Device DVSEC (or cannot be read).
    public private(set) var deviceMap: CXLDeviceMap?
    /// The CXL Device DVSEC's offset in config space.
    public var dvsec: Int? { deviceMap?.deviceDVSEC.offset }
    /// Why the fixture is incomplete (then every check that needs the missing piece fails with it).
    public private(set) var setupProblems: [String] = []

    static let configRegion = VFIOPCIRegion.config.rawValue
    public static let pageSize = 4096

    public init(target: any CXLConformTarget) throws {
        self.target = target
        info = try target.deviceInfo()
        for i in 0..<min(info.numRegions, 64) {
            guard let r = try? target.regionInfo(i), r.flags.contains(.caps), let t = r.type, t.type == VFIOCXLUAPI.regionType else { continue }
            if t.subtype == VFIOCXLUAPI.cxlMemSubtype, memIndex == nil { memIndex = i; memRegion = r }
            if t.subtype == VFIOCXLUAPI.componentRegistersSubtype, compIndex == nil { compIndex = i; compRegion = r }
        }
        if memIndex == nil { setupProblems.append("no CXL_MEM region (type 0x80001E98 subtype 1)") }
        if compIndex == nil { setupProblems.append("no CXL_COMP_REGS region (type 0x80001E98 subtype 2)") }
        if let c = compRegion {
            if let cap = c.capability(VFIOCXLUAPI.compRegsCapabilityID) {
                do { geometry = try VFIOCXLCompRegsCapability(parsing: cap) } catch { setupProblems.append("CXL_COMP_REGS capability: \(error)") }
            } else { setupProblems.append("CXL_COMP_REGS region has no CXL_COMP_REGS capability (id \(VFIOCXLUAPI.compRegsCapabilityID))") }
        }
        if let bytes = try? target.read(region: Self.configRegion, offset: 0, count: pcieConfigSpaceSize) {
            deviceMap = try? CXLDeviceMap(config: ConfigSpace(bytes: bytes))
        }
        // Memory Space Enable, so the memory and BAR checks can touch the device.
        let command = PCIHeader.command
        if let cmd = try? config16(command.offset) {
            try? writeConfig16(command.offset, UInt16(truncatingIfNeeded: PCIHeader.Command.memorySpaceEnable.insert(1, into: UInt64(cmd))))
        }
    }

    // MARK: Helpers the checks use

    func fail(_ s: String) -> CheckFailed { CheckFailed(description: s) }

    func require(_ cond: Bool, _ message: @autoclosure () -> String) throws {
        if !cond { throw CheckFailed(description: message()) }
    }

    func needMemory() throws -> (UInt32, CXLConformRegion) {
        guard let i = memIndex, let r = memRegion else { throw fail("setup: " + setupProblems.joined(separator: "; ")) }
        return (i, r)
    }

    func needComp() throws -> (UInt32, CXLConformRegion, VFIOCXLCompRegsCapability) {
        guard let i = compIndex, let r = compRegion, let g = geometry else { throw fail("setup: " + setupProblems.joined(separator: "; ")) }
        return (i, r, g)
    }

    func needDVSEC() throws -> Int {
        guard let d = dvsec else { throw CheckSkipped(description: "CXL Device DVSEC not found") }
        return d
    }

    static func le32(_ b: [UInt8]) -> UInt32 { UInt32(truncatingIfNeeded: LittleEndian.load(Array(b.prefix(4)))) }
    static func bytes32(_ v: UInt32) -> [UInt8] { LittleEndian.bytes(UInt64(v), width: 4) }

    func read32(_ region: UInt32, _ offset: UInt64) throws -> UInt32 {
        let b = try target.read(region: region, offset: offset, count: 4)
        guard b.count == 4 else { throw fail("short read at region \(region) + 0x\(String(offset, radix: 16))") }
        return Self.le32(b)
    }
    func write32(_ region: UInt32, _ offset: UInt64, _ v: UInt32) throws { try target.write(region: region, offset: offset, data: Self.bytes32(v)) }
    func config32(_ offset: Int) throws -> UInt32 { try read32(Self.configRegion, UInt64(offset)) }
    func config16(_ offset: Int) throws -> UInt16 {
        let b = try target.read(region: Self.configRegion, offset: UInt64(offset), count: 2)
        guard b.count == 2 else { throw fail("short config read at 0x\(String(offset, radix: 16))") }
        return UInt16(truncatingIfNeeded: LittleEndian.load(b))
    }
    func writeConfig16(_ offset: Int, _ v: UInt16) throws {
        try target.write(region: Self.configRegion, offset: UInt64(offset), data: LittleEndian.bytes(UInt64(v), width: 2))
    }

    /// Decoder 0 registers through CXL_COMP_REGS (which starts at the HDM Decoder Capability block).
    static let decoder0 = HDMDecoderRegisters(0)
    static var ctrl0: UInt64 { UInt64(decoder0.control.offset) }
    static func controlBit(_ field: RegisterField) -> UInt32 { UInt32(field.mask) }

    func decoder0Range(_ comp: UInt32) throws -> (base: UInt64, size: UInt64, ctrl: UInt32) {
        let r = Self.decoder0
        let bl = try read32(comp, UInt64(r.baseLow.offset)), bh = try read32(comp, UInt64(r.baseHigh.offset))
        let sl = try read32(comp, UInt64(r.sizeLow.offset)), sh = try read32(comp, UInt64(r.sizeHigh.offset))
        let ctrl = try read32(comp, Self.ctrl0)
        return (UInt64(bh) << 32 | UInt64(bl), UInt64(sh) << 32 | UInt64(sl), ctrl)
    }

    /// Maps a window and checks a dword written through the mapping reads back through it.
    func mmapRoundTrip(_ index: UInt32, window: Int, at offset: Int, pattern: UInt32) throws -> VFIOSharedMemory {
        let m = try target.map(region: index, offset: 0, length: window)
        try require(m.write(offset: offset, data: Self.bytes32(pattern)), "write through the mapping failed")
        let back = m.read(offset: offset, count: 4).map(Self.le32)
        try require(back == pattern, "mapping read back 0x\(String(back ?? 0, radix: 16)), wrote 0x\(String(pattern, radix: 16))")
        return m
    }
}

/// The checks, in the selftest's order, and a runner.
public enum VFIOCXLConformance {
    public static let sz4K = 4096
    public static let sz2M = 2 << 20

    /// Runs the checks in the selftest's order, each on a fresh open of the device (its own fixture).
    public static func run(_ target: any CXLConformTarget, only: Set<String>? = nil) throws -> [CXLConformResult] {
        var first = true
        return checks.filter { only?.contains($0.name) ?? true }.map { c in
            do {
                if !first { try target.reopen() }
                first = false
                let ctx = try CXLConformContext(target: target)
                return CXLConformResult(name: c.name, status: .pass, detail: try c.body(ctx))
            }
            catch let s as CheckSkipped { return CXLConformResult(name: c.name, status: .skip, detail: s.description) }
            catch let f as CheckFailed { return CXLConformResult(name: c.name, status: .fail, detail: f.description) }
            catch { return CXLConformResult(name: c.name, status: .fail, detail: "\(error)") }
        }
    }

    public static var names: [String] { checks.map(\.name) }

    static func check(_ name: String, _ summary: String, _ body: @escaping @Sendable (CXLConformContext) throws -> String) -> CXLConformCheck {
        CXLConformCheck(name: name, summary: summary, body: body)
    }

    static func refused(_ body: () throws -> Any) -> Bool {
        do { _ = try body(); return false } catch { return true }
    }

    public static let checks: [CXLConformCheck] = [
        check("device_is_cxl", "GET_INFO flags PCI and CXL (bit 9); both CXL regions with sizes; the geometry's BAR is a BAR; CXL_MEM is mmap-able") { c in
            try c.require(c.info.flags.contains(.pci), "VFIO_DEVICE_FLAGS_PCI missing")
            try c.require(c.info.flags.contains(VFIOCXLUAPI.deviceFlag), "VFIO_DEVICE_FLAGS_CXL (bit 9) missing from DEVICE_GET_INFO")
            let (mi, m) = try c.needMemory()
            let (ci, r, g) = try c.needComp()
            try c.require(mi != ci, "CXL_MEM and CXL_COMP_REGS are the same region")
            try c.require(m.size > 0, "CXL_MEM size 0")
            try c.require(r.size > 0, "CXL_COMP_REGS size 0")
            try c.require(g.bar < 6, "CXL_COMP_REGS capability names BAR \(g.bar)")
            try c.require(m.flags.contains(.mmap), "CXL_MEM does not advertise MMAP")
            return "CXL_MEM region \(mi) (0x\(String(m.size, radix: 16)) bytes), CXL_COMP_REGS region \(ci), HDM block BAR\(g.bar)+0x\(String(g.offset, radix: 16))"
        },
        check("comp_bar_sparse_mmap", "the component BAR is mmap-able through sparse areas that leave out the HDM decoder page") { c in
            let (_, _, g) = try c.needComp()
            let bar = try c.target.regionInfo(g.bar)
            try c.require(bar.flags.contains(.mmap), "component BAR \(g.bar) does not advertise MMAP")
            guard let cap = bar.capability(VFIORegionCapabilityID.sparseMMap) else { throw c.fail("component BAR has no SPARSE_MMAP capability") }
            let areas = try VFIOSparseMMapCapability(parsing: cap, regionSize: bar.size).areas
            try c.require(!areas.isEmpty, "SPARSE_MMAP has no areas")
            let page = UInt64(CXLConformContext.pageSize)
            let decoderPage = g.offset & ~(page - 1)
            try c.require(decoderPage <= UInt64.max - page, "CXL_COMP_REGS offset 0x\(String(g.offset, radix: 16)) is not an offset in a BAR")
            for a in areas where a.size > 0 {
                try c.require(a.size <= UInt64(Int32.max), "area 0x\(String(a.offset, radix: 16))+0x\(String(a.size, radix: 16)) is too large to map")
                try c.require(a.offset % page == 0 && a.size % page == 0, "area 0x\(String(a.offset, radix: 16))+0x\(String(a.size, radix: 16)) is not page aligned")
                try c.require(a.offset + a.size <= decoderPage || a.offset >= decoderPage + page,
                              "area 0x\(String(a.offset, radix: 16))+0x\(String(a.size, radix: 16)) covers the HDM decoder page 0x\(String(decoderPage, radix: 16))")
                _ = try c.target.map(region: g.bar, offset: a.offset, length: Int(a.size))
            }
            if c.target.mmapRefusesExcludedRanges {
                try c.require(refused { try c.target.map(region: g.bar, offset: 0, length: Int(clamping: bar.size)) }, "mapping the whole BAR succeeded")
                try c.require(refused { try c.target.map(region: g.bar, offset: decoderPage, length: Int(page)) }, "mapping the HDM decoder page succeeded")
                return "\(areas.count) area(s) map; the whole BAR and the decoder page do not"
            }
            return "\(areas.count) area(s) map and leave out page 0x\(String(decoderPage, radix: 16)) (over \(c.target.transport) a refused mmap cannot be observed: the client maps the fd it was given)"
        },
        check("hdm_mem_mmap_rw", "a dword written through a 4 KiB mapping of CXL_MEM reads back through the mapping and the region's read path") { c in
            let (mi, m) = try c.needMemory()
            guard m.size >= UInt64(sz4K) else { throw CheckSkipped(description: "HDM memory < 4K") }
            let mapping = try c.mmapRoundTrip(mi, window: sz4K, at: 0, pattern: 0xDEAD_BEEF)
            let viaFD = try c.read32(mi, 0)
            try c.require(viaFD == 0xDEAD_BEEF, "the region read path sees 0x\(String(viaFD, radix: 16)) where the mapping wrote 0xdeadbeef: the mapping is not region offset 0")
            try c.write32(mi, 8, 0x1234_5678)
            let viaMap = mapping.read(offset: 8, count: 4).map(CXLConformContext.le32)
            try c.require(viaMap == 0x1234_5678, "a region write is not seen through the mapping")
            return "mmap and region read/write agree at offset 0"
        },
        check("hdm_mem_huge_mmap", "a 2 MiB window of CXL_MEM maps (PMD-sized) and its last dword round-trips") { c in
            let (mi, m) = try c.needMemory()
            guard m.size >= UInt64(sz2M) else { throw CheckSkipped(description: "HDM memory < 2M") }
            if let cap = m.capability(VFIORegionCapabilityID.sparseMMap) {
                let areas = try VFIOSparseMMapCapability(parsing: cap, regionSize: m.size).areas
                try c.require(areas.contains { $0.offset == 0 && $0.size >= UInt64(sz2M) }, "CXL_MEM offers no 2 MiB mmap window at offset 0 (sparse areas \(areas.map { "0x\(String($0.offset, radix: 16))+0x\(String($0.size, radix: 16))" }))")
            }
            _ = try c.mmapRoundTrip(mi, window: sz2M, at: sz2M - 4, pattern: 0x5A5A_5A5A)
            return "2 MiB window mapped"
        },
        check("hdm_mem_ioas_map", "the HDM range maps into an IOAS by fd: a DMA_BUF export for IOMMU_IOAS_MAP_FILE (kernel); over vfio-user the region's own fd, with DMA_BUF refused") { c in
            let (mi, m) = try c.needMemory()
            guard m.size >= UInt64(sz2M) else { throw CheckSkipped(description: "HDM memory < 2M") }
            var req: [UInt8] = []
            for v in [mi, 0, 0, 1] as [UInt32] { req += CXLConformContext.bytes32(v) }  // region_index, open_flags, flags, nr_ranges
            for v in [0, UInt64(sz2M)] as [UInt64] { req += LittleEndian.bytes(v, width: 8) }
            let flags = VFIODeviceFeatureFlags.get | VFIOCXLUAPI.dmaBufFeature
            if c.target.canMapDMABuf {
                throw CheckSkipped(description: "IOMMU_IOAS_MAP_FILE of a dma-buf is not implemented in this backend yet")
            }
            var accepted = false
            do { _ = try c.target.feature(flags: flags, data: req); accepted = true } catch {}
            try c.require(!accepted, "the server answered DEVICE_FEATURE DMA_BUF (11) with success, but a dma-buf cannot cross \(c.target.transport); it must refuse it (the CXL_MEM fd travels with the region info)")
            _ = try c.target.map(region: mi, offset: 0, length: sz2M)
            return "DMA_BUF refused as it must be over \(c.target.transport); the CXL_MEM fd maps 2 MiB by file"
        },
        check("comp_regs_hdm_read", "CXL_COMP_REGS starts at the HDM Decoder Capability block: decoder 0 Control reads, and the size is 0x10 + 0x20 x the Decoder Count there") { c in
            let (ci, r, _) = try c.needComp()
            try c.require(r.size >= CXLConformContext.ctrl0 + 4, "CXL_COMP_REGS is 0x\(String(r.size, radix: 16)) bytes, too small for decoder 0 Control")
            _ = try c.read32(ci, CXLConformContext.ctrl0)
            let cap = try c.read32(ci, 0)
            let field = HDMDecoderCapability.decoderCount
            guard let n = HDMDecoderCountEncoding.decoders(forEncoding: UInt8(field.extract(UInt64(cap)))) else {
                throw c.fail("offset 0 (0x\(String(cap, radix: 16))) is not an HDM Decoder Capability register: reserved Decoder Count")
            }
            let want = UInt64(HDMDecoderCapability.length(decoders: n))
            try c.require(r.size == want, "CXL_COMP_REGS is 0x\(String(r.size, radix: 16)) bytes; \(n) decoder(s) make the block 0x\(String(want, radix: 16))")
            return "\(n) decoder(s), 0x\(String(want, radix: 16)) bytes"
        },
        check("comp_regs_reject_unaligned", "CXL_COMP_REGS refuses an unaligned dword and a 2-byte access") { c in
            let (ci, _, _) = try c.needComp()
            try c.require(refused { try c.target.read(region: ci, offset: 1, count: 4) }, "an unaligned dword read at +1 succeeded")
            try c.require(refused { try c.target.read(region: ci, offset: 0, count: 2) }, "a 2-byte read at +0 succeeded")
            return "both refused"
        },
        check("comp_regs_reject_out_of_range", "CXL_COMP_REGS refuses a read at its end") { c in
            let (ci, r, _) = try c.needComp()
            try c.require(refused { try c.target.read(region: ci, offset: r.size, count: 4) }, "a read at the region end (0x\(String(r.size, radix: 16))) succeeded")
            return "refused at 0x\(String(r.size, radix: 16))"
        },
        check("hdm_commit_fsm", "the host committed decoder 0: a guest decommit is absorbed and it stays committed") { c in
            let (ci, _, _) = try c.needComp()
            let orig = try c.read32(ci, CXLConformContext.ctrl0)
            let committed = CXLConformContext.controlBit(HDMDecoderCapability.Control.committed), commit = CXLConformContext.controlBit(HDMDecoderCapability.Control.commit)
            guard orig & committed != 0 else { throw CheckSkipped(description: "HDM decoder 0 not committed by firmware") }
            try c.write32(ci, CXLConformContext.ctrl0, orig & ~commit)
            let v = try c.read32(ci, CXLConformContext.ctrl0)
            try c.require(v & committed != 0, "decoder 0 Control reads 0x\(String(v, radix: 16)) after a decommit request: no longer Committed")
            return "still committed"
        },
        check("hdm_lock_on_commit", "decoder 0 reads committed and locked, and stays so after a write of Commit|Lock and a write of 0") { c in
            let (ci, _, _) = try c.needComp()
            let committed = CXLConformContext.controlBit(HDMDecoderCapability.Control.committed), lockBit = CXLConformContext.controlBit(HDMDecoderCapability.Control.lockOnCommit)
            try c.write32(ci, CXLConformContext.ctrl0, CXLConformContext.controlBit(HDMDecoderCapability.Control.commit) | lockBit)
            var v = try c.read32(ci, CXLConformContext.ctrl0)
            try c.require(v & committed != 0 && v & lockBit != 0, "decoder 0 Control 0x\(String(v, radix: 16)): not committed and locked")
            try c.write32(ci, CXLConformContext.ctrl0, 0)
            v = try c.read32(ci, CXLConformContext.ctrl0)
            try c.require(v & committed != 0 && v & lockBit != 0, "decoder 0 Control 0x\(String(v, radix: 16)) after writing 0: not committed and locked")
            return "committed and locked"
        },
        check("hdm_base_write_absorbed", "a guest write to decoder 0 Base Low is absorbed") { c in
            let (ci, r, _) = try c.needComp()
            let baseLow = UInt64(CXLConformContext.decoder0.baseLow.offset)
            try c.require(r.size >= baseLow + 4, "CXL_COMP_REGS too small for decoder 0 Base Low")
            guard try c.read32(ci, CXLConformContext.ctrl0) & CXLConformContext.controlBit(HDMDecoderCapability.Control.committed) != 0 else {
                throw CheckSkipped(description: "HDM decoder 0 not committed by firmware")
            }
            let orig = try c.read32(ci, baseLow)
            try c.write32(ci, baseLow, 0x3000_0000)
            let back = try c.read32(ci, baseLow)
            try c.require(back == orig, "Base Low reads 0x\(String(back, radix: 16)) after a write; was 0x\(String(orig, radix: 16))")
            return "Base Low unchanged (0x\(String(orig, radix: 16)))"
        },
        check("dvsec_body_read", "the CXL Device DVSEC reads from its shadow: no dword of it reads all-ones") { c in
            let d = try c.needDVSEC()
            let h1 = try c.config32(d + 4)
            try c.require(h1 != 0xFFFF_FFFF, "DVSEC Header 1 reads all-ones")
            let length = Int(DVSECHeader.length.extract(UInt64(h1)))
            var off = 0
            while off + 4 <= length {
                let v = try c.config32(d + off)
                try c.require(v != 0xFFFF_FFFF, "DVSEC +0x\(String(off, radix: 16)) reads all-ones")
                off += 4
            }
            return "0x\(String(length, radix: 16)) bytes at 0x\(String(d, radix: 16))"
        },
        check("guest_cxl_reset", "a guest Initiate CXL Reset self-clears and Status2 shows CXL Reset Complete without Reset Error") { c in
            let d = try c.needDVSEC()
            let cap = try c.config16(d + CXLDeviceDVSEC.capability.offset)
            guard UInt64(cap) & CXLDeviceDVSEC.cxlResetCapable.mask != 0 else {
                throw CheckSkipped(description: "device does not support CXL reset")
            }
            let ctrl2Off = d + CXLDeviceDVSEC.control2.offset
            let initiate = UInt16(CXLDeviceDVSEC.Control2.initiateCXLReset.mask)
            try c.writeConfig16(ctrl2Off, try c.config16(ctrl2Off) | initiate)
            try c.require(try c.config16(ctrl2Off) & initiate == 0, "Initiate CXL Reset did not self-clear")
            let s2 = try c.config16(d + CXLDeviceDVSEC.status2.offset)
            try c.require(UInt64(s2) & CXLDeviceDVSEC.Status2.resetComplete.mask != 0, "Status2 0x\(String(s2, radix: 16)): no CXL Reset Complete")
            try c.require(UInt64(s2) & CXLDeviceDVSEC.Status2.resetError.mask == 0, "Status2 0x\(String(s2, radix: 16)): CXL Reset Error")
            return "Status2 0x\(String(s2, radix: 16))"
        },
        check("device_reset", "DEVICE_RESET is advertised and runs the real reset: device memory cleared, decoder 0 committed again") { c in
            try c.require(c.info.flags.contains(.reset), "VFIO_DEVICE_FLAGS_RESET missing")
            let (mi, m) = try c.needMemory()
            let probe: UInt64 = m.size > 0x2000 ? 0x1000 : 0
            let canProbe = m.size >= probe + 4
            if canProbe { try c.write32(mi, probe, 0xC0DE_CAFE) }
            var lastError: Error?
            for _ in 0..<20 {
                do { try c.target.reset(); lastError = nil; break } catch {
                    lastError = error
                    guard "\(error)".contains("EAGAIN") || "\(error)".contains("error 11 ") else { break }
                    usleep(10_000)
                }
            }
            if let e = lastError { throw c.fail("DEVICE_RESET failed: \(e)") }
            if let (ci, _, _) = try? c.needComp() {
                let ctrl = try c.read32(ci, CXLConformContext.ctrl0)
                try c.require(ctrl & CXLConformContext.controlBit(HDMDecoderCapability.Control.committed) != 0, "decoder 0 is not committed after the reset (0x\(String(ctrl, radix: 16)))")
            }
            if canProbe {
                let after = try c.read32(mi, probe)
                try c.require(after == 0, "device memory at 0x\(String(probe, radix: 16)) reads 0x\(String(after, radix: 16)) after the reset; a CXL Reset clears it")
            }
            return "reset; memory cleared; decoder 0 committed"
        },
        check("comp_bar_rdwr_split", "the component BAR reads through the fd except the HDM block, which reads all-ones") { c in
            let (_, _, g) = try c.needComp()
            _ = try c.read32(g.bar, 0)
            let v = try c.read32(g.bar, g.offset)
            try c.require(v == 0xFFFF_FFFF, "the HDM block reads 0x\(String(v, radix: 16)) through the BAR (must be all-ones)")
            return "BAR+0 reads; HDM block all-ones"
        },
        check("guest_hdm_discovery", "a guest's walk (Register Locator, CXL capability array over the BAR) lands on the geometry's HDM block, and decoder 0 decodes a non-empty range") { c in
            let (ci, _, g) = try c.needComp()
            guard let map = c.deviceMap else { throw c.fail("config space has no CXL Device DVSEC") }
            guard map.dvsecs.contains(where: { $0.dvsecID == CXLDVSECID.registerLocator.rawValue }) else { throw c.fail("no Register Locator DVSEC") }
            guard let block = map.registerBlocks.first(where: { $0.identifier == RegisterLocatorDVSEC.BlockIdentifier.componentRegisters.rawValue }) else {
                throw c.fail("the Register Locator names no component register block")
            }
            try c.require(block.bir == Int(g.bar), "the Register Locator names BAR \(block.bir), the geometry BAR \(g.bar)")
            let (cm, wraps) = block.offset.addingReportingOverflow(UInt64(ComponentRegisterBlock.cacheMemOffset))
            try c.require(!wraps && cm <= UInt64.max - 0x1000, "the Register Locator's component block offset 0x\(String(block.offset, radix: 16)) is not an offset in a BAR")
            // The CXL capability array, walked through the BAR as a guest driver walks it.
            var readError: (any Error)?
            let array = CacheMemCapabilityList { (offset) throws(PCIError) -> UInt32 in
                do { return try c.read32(g.bar, block.offset &+ UInt64(offset)) } catch { readError = error; throw .io("\(error)") }
            }
            if let readError { throw readError }
            if case .notAnArray = array.stop {
                throw c.fail("no CXL Capability Header at BAR\(g.bar)+0x\(String(cm, radix: 16)) (0x\(String(array.header ?? 0, radix: 16)))")
            }
            guard let hdm = array.first(.hdmDecoder) else { throw c.fail("no HDM Decoder Capability in the CXL capability array") }
            let hdmOff = block.offset &+ UInt64(hdm.blockOffset)
            try c.require(hdmOff == g.offset, "the guest's walk finds the HDM block at 0x\(String(hdmOff, radix: 16)), the geometry says 0x\(String(g.offset, radix: 16))")
            let d = try c.decoder0Range(ci)
            guard d.ctrl & CXLConformContext.controlBit(HDMDecoderCapability.Control.committed) != 0 else { throw CheckSkipped(description: "HDM decoder 0 not committed by firmware") }
            try c.require(d.size > 0, "decoder 0 size 0")
            try c.require(d.base.addingReportingOverflow(d.size).overflow == false, "decoder 0 range wraps")
            return "HDM block at BAR\(g.bar)+0x\(String(hdmOff, radix: 16)); decoder 0 0x\(String(d.base, radix: 16))+0x\(String(d.size, radix: 16))"
        },
        check("hdm_mem_touch_committed_base", "CXL_MEM covers exactly the committed decoder, and its offset 0 (the decoder's base) maps and round-trips") { c in
            let (ci, _, _) = try c.needComp()
            let (mi, m) = try c.needMemory()
            let d = try c.decoder0Range(ci)
            guard d.ctrl & CXLConformContext.controlBit(HDMDecoderCapability.Control.committed) != 0 else { throw CheckSkipped(description: "HDM decoder 0 not committed by firmware") }
            try c.require(d.size > 0, "decoder 0 size 0")
            try c.require(d.base.addingReportingOverflow(d.size).overflow == false, "decoder 0 range wraps")
            try c.require(d.size == m.size, "CXL_MEM is 0x\(String(m.size, radix: 16)) bytes; the committed decoder 0x\(String(d.size, radix: 16))")
            guard m.size >= UInt64(sz4K) else { throw CheckSkipped(description: "HDM memory < 4K") }
            _ = try c.mmapRoundTrip(mi, window: sz4K, at: 0, pattern: 0xC0FF_EE11)
            return "0x\(String(d.size, radix: 16)) bytes from base 0x\(String(d.base, radix: 16))"
        },
        check("dvsec_write_virtualized", "DVSEC Capability writes are absorbed; Control reads back what the guest wrote") { c in
            let d = try c.needDVSEC()
            let capOff = d + CXLDeviceDVSEC.capability.offset, ctlOff = d + CXLDeviceDVSEC.control.offset
            let cap = try c.config16(capOff)
            try c.writeConfig16(capOff, cap ^ 0xFFFF)
            let capBack = try c.config16(capOff)
            try c.require(capBack == cap, "Capability reads 0x\(String(capBack, radix: 16)) after a write; was 0x\(String(cap, radix: 16))")
            let ctl = try c.config16(ctlOff)
            let flipped = ctl ^ UInt16(CXLDeviceDVSEC.Control.cacheEnable.mask)
            try c.writeConfig16(ctlOff, flipped)
            let ctlBack = try c.config16(ctlOff)
            try c.writeConfig16(ctlOff, ctl)
            try c.require(ctlBack == flipped, "Control reads 0x\(String(ctlBack, radix: 16)) after writing 0x\(String(flipped, radix: 16))")
            return "Capability 0x\(String(cap, radix: 16)) held; Control shadowed"
        },
        check("region_flags", "CXL_MEM is READ|WRITE|MMAP; CXL_COMP_REGS is READ|WRITE without MMAP and carries the CXL_COMP_REGS capability") { c in
            let (mi, _) = try c.needMemory()
            let (ci, _, _) = try c.needComp()
            let m = try c.target.regionInfo(mi), r = try c.target.regionInfo(ci)
            try c.require(m.flags.isSuperset(of: [.read, .write, .mmap]), "CXL_MEM flags 0x\(String(m.flags.rawValue, radix: 16))")
            try c.require(r.flags.isSuperset(of: [.read, .write]), "CXL_COMP_REGS flags 0x\(String(r.flags.rawValue, radix: 16)): not READ|WRITE")
            try c.require(!r.flags.contains(.mmap), "CXL_COMP_REGS advertises MMAP")
            try c.require(r.capability(VFIOCXLUAPI.compRegsCapabilityID) != nil, "CXL_COMP_REGS carries no CXL_COMP_REGS capability")
            return "as the contract says"
        },
    ]
}
