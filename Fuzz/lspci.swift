// fuzz-target: lspci dump parser (ConfigFile.load: text dumps and binary images), then decode and format round trip
// fuzz-modules: PCI CXL
//
// Input: a file a user hands to `cxlkit decode FILE` (an `lspci -xxxx` dump, possibly
// interleaved with -vvv output, or a raw config image). Every function parsed is
// decoded (text + JSON, -vvv) and written back with LspciDump.format; parsing that
// text again must give the same config bytes.
import PCI
import CXL

@inline(never)
func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

let decoder: PCIDecoder = {
    var d = PCIDecoder(names: nil)
    d.register(CXLDVSECFormatter())
    d.register(ComponentRegisterFormatter())
    return d
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let functions: [DumpedFunction]
    do { functions = try ConfigFile.load(bytes: bytes, name: "fuzz") } catch { sink(error.description); return 0 }
    for f in functions {
        let subject = DecodeSubject(name: f.addressText, description: f.description, config: f.config)
        sink(decoder.text(subject, verbosity: 3))
        sink(decoder.json(subject, verbosity: 3).serialized(pretty: true))
        sink(LspciDump.defaultDescription(f.config))
        // Round trip: what `cxlkit dump` writes, `cxlkit decode` reads back to the same bytes.
        let text = LspciDump.format(address: f.addressText, description: "x", config: f.config)
        do {
            let again = try LspciDump.parse(text)
            guard again.count == 1, again[0].config.bytes == f.config.bytes else {
                fatalError("lspci dump round trip changed the config space of \(f.addressText)")
            }
        } catch {
            fatalError("lspci dump round trip failed for \(f.addressText): \(error)")
        }
    }
    return 0
}
