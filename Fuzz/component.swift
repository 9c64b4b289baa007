// fuzz-target: CXL component register block decode (capability array, RAS, HDM decoders) and its text/JSON formatter
// fuzz-modules: PCI CXL
//
// Input: byte 0 picks endpoint or port decoding, the rest is a component register
// block image (what BAR + Register Locator offset maps). A hostile device controls
// every byte of it.
import PCI
import CXL

@inline(never)
func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    // The CXL.cachemem registers start 4 KiB into the block: short inputs are placed there.
    let image = bytes.count < ComponentRegisterBlock.cacheMemOffset + 4
        ? [UInt8](repeating: 0, count: ComponentRegisterBlock.cacheMemOffset) + bytes : bytes
    let d = ComponentRegisterDecode(reader: ImageBlockReader(bytes: image), endpoint: data[0] & 1 == 1)
    sink(ComponentRegisterFormatter.lines(d))
    sink(ComponentRegisterFormatter.json(d).serialized())
    for f in d.findings { sink(f.description) }
    return 0
}
