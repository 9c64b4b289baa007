// fuzz-target: config-space walker: capability lists, DVSEC headers, catalog register decode (the structural walk; the full text/JSON decoder is the `decode` target)
// fuzz-modules: PCI CXL
//
// The input is a config-space image of any length (a hostile device or dump can
// hand us anything). Every decoder that takes a ConfigSpace runs over it, both as
// given and zero-padded to 4 KiB so that short inputs reach the extended list too.
import PCI
import CXL

@inline(never)
func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

func decodeBlock(_ layout: RegisterBlockLayout, at base: Int, in config: ConfigSpace) {
    for r in layout.registers {
        if let raw = config.read(r, base: base) {
            for f in r.decode(raw) { sink(f.meaning); sink(f.value) }
        }
    }
}

func exercise(_ config: ConfigSpace) {
    sink(config.vendorID); sink(config.deviceID); sink(config.headerType)
    sink(config.classCode); sink(config.isMultiFunction)
    let caps = CapabilityList(walking: config)
    for c in caps.all { sink(c.name) }
    for f in caps.findings { sink(f.description) }
    for id in CapabilityID.allCases { sink(caps.standard(id)) }
    if let pm = caps.standard(.powerManagement) { decodeBlock(PowerManagementCapability.layout, at: pm.offset, in: config) }
    if let msix = caps.standard(.msix) { decodeBlock(MSIXCapability.layout, at: msix.offset, in: config) }
    if let msi = caps.standard(.msi), let ctl = config.read(MSICapability.messageControl, base: msi.offset) {
        decodeBlock(MSICapability.layout(is64Bit: ctl & 0x80 != 0, perVectorMasking: ctl & 0x100 != 0), at: msi.offset, in: config)
    }
    for d in caps.dvsecs(in: config) {
        sink(d.fitsInConfigSpace)
        guard d.vendorID == cxlDVSECVendorID, let id = CXLDVSECID(rawValue: d.dvsecID) else { continue }
        sink(id.name)
        switch id {
        case .device: decodeBlock(CXLDeviceDVSEC.layout(revision: d.revision), at: d.offset, in: config)
        case .registerLocator:
            let n = RegisterLocatorDVSEC.entryCount(length: d.length)
            decodeBlock(RegisterLocatorDVSEC.layout(entries: n), at: d.offset, in: config)
            for i in 0..<n {
                let base = d.offset + RegisterLocatorDVSEC.firstEntryOffset + RegisterLocatorDVSEC.entrySize * i
                if let lo = config.read(RegisterLocatorDVSEC.offsetLow, base: base) {
                    sink(RegisterLocatorDVSEC.BlockIdentifier(rawValue: UInt8((lo >> 8) & 0xFF))?.name)
                }
            }
        case .nonCXLFunctionMap: decodeBlock(NonCXLFunctionMapDVSEC.layout, at: d.offset, in: config)
        case .flexBusPort: decodeBlock(FlexBusPortDVSEC.layout(revision: d.revision), at: d.offset, in: config)
        default: break
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    exercise(ConfigSpace(bytes: bytes))
    let padded = size < pcieConfigSpaceSize ? ConfigSpace(bytes: bytes + [UInt8](repeating: 0, count: pcieConfigSpaceSize - size)) : nil
    if let padded { exercise(padded) }
    return 0
}
