// fuzz-target: the lspci-style text/JSON decoder (`cxlkit decode -vvv`) with the CXL DVSEC and component-register plug-ins over any config space
// fuzz-modules: PCI CXL
//
// Input: a config-space image of any length, decoded as given and zero-padded to 4 KiB.
import PCI
import CXL

@inline(never)
func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

/// The decoder `cxlkit decode` uses (CXLKit.decoder()), without the pci.ids names.
let decoder: PCIDecoder = {
    var d = PCIDecoder(names: nil)
    d.register(CXLDVSECFormatter())
    d.register(ComponentRegisterFormatter())
    return d
}()

func render(_ config: ConfigSpace, verbosity: Int) {
    let subject = DecodeSubject(name: "00:00.0", config: config)
    sink(decoder.text(subject, verbosity: verbosity))
    sink(decoder.json(subject, verbosity: verbosity).serialized())
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    render(ConfigSpace(bytes: bytes), verbosity: 3)
    if size < pcieConfigSpaceSize {
        render(ConfigSpace(bytes: bytes + [UInt8](repeating: 0, count: pcieConfigSpaceSize - size)), verbosity: 3)
    }
    return 0
}
