import CXL
import Foundation
import Logging
import PCI
import VFIO

/// Options for serving a CXL Type-2 function through vfio-cxl.
public struct VFIOCXLOptions: Sendable {
    /// Where the host side commits decoder 0 when firmware did not (the host
    /// physical address window vfio-cxl claims for the device's memory).
    public var hostDecoderBase: UInt64 = 0x80_0000_0000
    /// Waits and budgets of the save/restore engine (commit poll, CXL Reset timing).
    public var state = CXLStateOptions()
    public var logger = Logger(label: "vfio-cxl")
    /// Why no device memory was handed in (`memory` nil), for `cxlDisabledReason` and the log.
    public var missingMemoryReason = "no device memory backing"
    public init() {}
}

/// vfio-cxl: a CXL Type-2 function served as a VFIO device, composed from the VFIO
/// device layer (`VFIOPCIDevice`: config virtualisation, BARs, IRQs, DMA, FLR) and
/// the CXL library (DVSEC and HDM catalogs, commit rules, save/restore engine).
/// Neither library knows the other; this type is where they meet, as the posted
/// series' enlightenment sits on vfio-pci-core (design-and-patches.md §3).
///
/// What it adds to plain PCI passthrough:
/// - `DEVICE_GET_INFO` flags PCI | CXL (bit 9) and the v2 CXL capability (id 6, `VFIOCXLCapability`);
/// - region 9, device memory (vendor type 0x1E98 subtype 1), mmappable;
/// - region 10, the component registers from the CXL.cachemem area through the last HDM decoder (subtype 2),
///   aligned 4-byte accesses;
/// - the component block of its BAR trapped (left out of the sparse mmap) and
///   served, like region 10, from the HDM shadow;
/// - the DVSEC shadow in config space;
/// - resets (DEVICE_RESET, a guest FLR, a guest CXL Reset) run the save/restore
///   engine on the host device, with device memory gated until decoder 0 is
///   committed again.
///
/// A function without usable CXL state is served as a plain PCI device
/// (`cxlDisabledReason` says why).
public final class VFIOCXLDevice: VFIOPCIDevice, @unchecked Sendable {
    public let layout: CXLPassthroughLayout?
    public let cxlDisabledReason: String?
    public let options: VFIOCXLOptions
    let memory: MemoryRegionHandler?
    let dvsec: DVSECShadow?
    let component: ComponentShadow?
    private var cxlCapability: VFIOCXLCapability?
    /// The report of the last host-side restore (diagnostics, tests).
    public private(set) var lastRestore: RestoreReport?

    public init(function: any PCIFunction, memory: (any CXLDeviceMemory)?, options: VFIOCXLOptions = VFIOCXLOptions()) throws(VFIOError) {
        self.options = options
        var layout: CXLPassthroughLayout?
        var reason: String?
        var dvsec: DVSECShadow?
        var component: ComponentShadow?
        var region: MemoryRegionHandler?
        var firmwareCommitted = false
        do throws(VFIOCXLError) {
            guard let memory else { throw .notCXL(options.missingMemoryReason) }
            let l = try CXLPassthroughLayout.discover(function)
            firmwareCommitted = try Self.hostDecoder0Committed(function, l)
            // The guest's view starts from what firmware left, before the host side
            // programs anything: a decoder vfio-cxl commits is the host's, not the guest's.
            dvsec = try DVSECShadow(function: function, layout: l)
            component = try ComponentShadow(function: function, layout: l, memorySize: memory.memorySize)
            if !firmwareCommitted { try Self.commitHostDecoder0(function, l, base: options.hostDecoderBase, size: memory.memorySize, options: options.state) }
            region = MemoryRegionHandler(memory: memory)
            layout = l
        } catch {
            reason = error.description
            layout = nil; dvsec = nil; component = nil; region = nil
        }
        self.layout = layout
        self.cxlDisabledReason = reason
        self.dvsec = dvsec
        self.component = component
        self.memory = region
        try super.init(function: function)
        guard let layout, let dvsec, let component, let region else {
            options.logger.warning("serving \(function.address) as plain PCI: \(reason ?? "unknown")")
            return
        }
        var flags: VFIOCXLCapability.Flags = []
        if firmwareCommitted { flags.insert(.firmwareCommitted) }
        if layout.cacheCapable { flags.insert(.cacheCapable) }
        cxlCapability = VFIOCXLCapability(hdmRegistersBAR: UInt8(layout.componentBAR), flags: flags,
                                          hdmRegistersOffset: layout.componentOffset + UInt64(ComponentRegisterBlock.cacheMemOffset))
        overrideConfig(range: layout.dvsecOffset..<(layout.dvsecOffset + dvsec.length), handler: dvsec)
        trap(region: UInt32(layout.componentBAR), range: layout.componentRange,
             handler: ComponentRegionHandler(shadow: component, base: layout.componentOffset, allowQuadword: true))
        addRegion(VFIOExtraRegion(info: region.info(), handler: region))
        // COMP_REGS (v2): from the CXL.cachemem area (CXL Capability Array Header at 0) through the last decoder.
        let compLength = layout.hdmOffset - ComponentRegisterBlock.cacheMemOffset + layout.hdmLength
        addRegion(VFIOExtraRegion(
            info: VFIORegionInfo(index: VFIOCXLUAPI.componentRegionIndex, flags: [.read, .write, .caps], size: UInt64(compLength),
                                 capabilities: [VFIORegionTypeCapability(type: VFIOCXLUAPI.regionType, subtype: VFIOCXLUAPI.componentRegistersSubtype).capability]),
            handler: ComponentRegionHandler(shadow: component, base: 0, blockStart: ComponentRegisterBlock.cacheMemOffset, length: compLength,
                                            allowQuadword: false, forwardOtherWrites: false)))
        dvsec.onCXLReset = { [weak self] memClear in self?.guestCXLReset(memClear: memClear) ?? false }
        options.logger.info("vfio-cxl: \(function.address) DVSEC at 0x\(String(layout.dvsecOffset, radix: 16)), component block BAR\(layout.componentBAR)+0x\(String(layout.componentOffset, radix: 16)), \(layout.decoderCount) decoders, \(region.memory.memorySize) bytes, firmware committed: \(firmwareCommitted)")
    }

    /// True when CXL enlightenment is active.
    public var isCXL: Bool { cxlCapability != nil }

    // MARK: VFIODevice

    public override func deviceInfo() -> VFIODeviceInfo {
        var info = super.deviceInfo()
        guard let cap = cxlCapability else { return info }
        info.flags.insert(VFIOCXLUAPI.deviceFlag)
        info.flags.insert(.caps)
        info.capabilities.append(cap.capability)
        return info
    }

    public override func regionInfo(_ index: UInt32) throws(VFIOError) -> VFIORegionInfo {
        if index == VFIOCXLUAPI.memoryRegionIndex, let memory { return memory.info() }
        return try super.regionInfo(index)
    }

    /// Set while DEVICE_RESET runs: the reset the guest's device sees is conventional.
    private var guestConventionalReset = false

    /// DEVICE_RESET. QEMU sends it for a system reset and for a Secondary Bus Reset at the guest's root port, so
    /// the guest's view gets a conventional reset (HDM decoder and DVSEC shadows back to their reset state) while
    /// the host function gets its best function reset with save/restore, as vfio-pci would. A guest FLR (a config
    /// write) keeps the guest's HDM decoders and DVSEC: FLR does not affect CXL.mem state (CXL 3.1 §9.5).
    public override func reset() throws(VFIOError) {
        lock.lock(); defer { lock.unlock() }
        guestConventionalReset = true
        defer { guestConventionalReset = false }
        try super.reset()
    }

    /// DEVICE_RESET and a guest FLR: save, reset the host function, restore.
    public override func functionLevelReset(_ method: PCIResetMethod = .flr) throws(VFIOError) {
        // Named for what the guest asked as well as what the host function gets: DEVICE_RESET (a conventional reset
        // of the guest's view) runs as the host's best function reset.
        let asked = guestConventionalReset ? " (for DEVICE_RESET, a conventional reset of the guest's view)" : ""
        options.logger.info("vfio-cxl: \(method) reset of \(function.address)\(layout == nil ? " (plain PCI)" : "")\(asked)")
        guard let memory, let component, let layout else { return try super.functionLevelReset(method) }
        lock.lock(); defer { lock.unlock() }
        memory.setActive(false)
        let engine = CXLStateEngine(function: function, options: options.state)
        let before: CXLStateSnapshot
        do { before = try engine.save() } catch { throw .system(errno: VFIOErrno.EIO, "vfio-cxl: save before reset: \(error)") }
        try super.functionLevelReset(method)
        let report: RestoreReport
        do { report = try engine.restore(before) } catch { throw .system(errno: VFIOErrno.EIO, "vfio-cxl: restore after reset: \(error)") }
        lastRestore = report
        if method.isConventional || guestConventionalReset {
            component.reset()
            dvsec?.conventionalReset()
        }
        reopenMemory(memory, layout)
        guard report.succeeded else {
            options.logger.error("vfio-cxl: restore after \(method) failed: \(report.failures.joined(separator: "; "))")
            throw .system(errno: VFIOErrno.EIO, "vfio-cxl: restore after \(method) failed: \(report.failures.first ?? "")")
        }
    }

    /// A guest's Initiate CXL Reset: the host runs the full CXL Reset flow with
    /// save/restore; the DVSEC shadow stamps Reset Complete or Reset Error.
    func guestCXLReset(memClear: Bool) -> Bool {
        guard let memory, let component, let layout else { return false }
        lock.lock(); defer { lock.unlock() }
        memory.setActive(false)
        defer { reopenMemory(memory, layout) }
        let orchestrator = CXLResetOrchestrator(function: function, options: options.state)
        do {
            let report = try orchestrator.reset(method: .cxl, preserve: true, memClear: memClear)
            lastRestore = report.restore
            component.reset()
            // A kernel-owned function lost its MSI/MSI-X programming to the CXL Reset, behind vfio-pci's back.
            do { let rearmed = try rearmForwardedIRQs(); if !rearmed.isEmpty { options.logger.info("vfio-cxl: interrupts re-armed after CXL Reset: indices \(rearmed)") } } catch {
                options.logger.error("vfio-cxl: re-arming interrupts after CXL Reset: \(error)")
                return false
            }
            if !report.succeeded { options.logger.error("vfio-cxl: guest CXL Reset: \(report.steps.joined(separator: "; "))") }
            return report.resetError == nil && (report.restore?.succeeded ?? false)
        } catch {
            options.logger.error("vfio-cxl: guest CXL Reset refused: \(error)")
            return false
        }
    }

    private func reopenMemory(_ memory: MemoryRegionHandler, _ layout: CXLPassthroughLayout) {
        let committed = (try? Self.hostDecoder0Committed(function, layout)) ?? false
        memory.setActive(committed)
        if !committed { options.logger.warning("vfio-cxl: decoder 0 not committed after reset; device memory stays gated") }
    }

    // MARK: Host side

    static func hostDecoder0Committed(_ function: any PCIFunction, _ layout: CXLPassthroughLayout) throws(VFIOCXLError) -> Bool {
        let ctrl = HDMDecoderRegisters(0).control
        do {
            let v = try function.barRead(layout.componentBAR, offset: layout.componentOffset + UInt64(layout.hdmOffset + ctrl.offset), width: 4)
            return v & StateCatalog.committedBit != 0
        } catch { throw .access("decoder 0 control: \(error)") }
    }

    /// What a host CXL driver does for a device firmware left unprogrammed (Linux
    /// `cxl_hdm_decode_init` + region setup): HDM Decoder Enable, decoder 0 over the
    /// whole device memory at `base`, Commit, wait for Committed, then Mem_Enable.
    static func commitHostDecoder0(_ function: any PCIFunction, _ layout: CXLPassthroughLayout, base: UInt64, size: UInt64,
                                   options: CXLStateOptions) throws(VFIOCXLError) {
        let size = size / hdmGranule * hdmGranule
        let access = HDMRegisterAccess.bar(function, bar: layout.componentBAR, hdmOffset: layout.componentOffset + UInt64(layout.hdmOffset))
        let global = HDMDecoderCapability.globalControl
        do { try access.write(global.offset, HDMDecoderCapability.hdmDecoderEnable.mask) } catch { throw .hostSetup("\(global.name): \(error)") }
        let result: HDMCommitResult
        do { result = try HDMCommitter(options).commit(decoder: 0, base: base, size: size, through: access) } catch {
            throw .hostSetup("decoder 0: \(error)")
        }
        switch result.wait {
        case .done: break
        case .errorNotCommitted: throw .hostSetup("decoder 0 reported Error Not Committed")
        case .timeout: throw .hostSetup("decoder 0 did not commit within \(options.commitTimeout)")
        }
        let control = CXLDeviceDVSEC.control
        do {
            let c = try function.read(control, base: layout.dvsecOffset)
            try function.write(control, base: layout.dvsecOffset, value: c | CXLDeviceDVSEC.memEnable.mask)
        } catch { throw .hostSetup("DVSEC Mem_Enable: \(error)") }
    }
}
