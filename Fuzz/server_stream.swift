// fuzz-target: vfio-user server message decoding: any byte stream split into messages and decoded as commands
// fuzz-modules: VFIOUser
//
// The bytes are what a hostile client writes on the socket. VFIOUserDecoder.decodeStream
// frames them exactly as the server does (header validation, size limits) and decodes
// every command payload. Each command that decodes must also survive re-encoding and
// decoding again (what the server would log or echo), and every decoded header field
// is used, so that a bad bound anywhere traps under ASan.
import Foundation
import VFIO
import VFIOUser

@inline(never)
func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let (messages, fatal) = VFIOUserDecoder.decodeStream(bytes)
    sink(fatal?.description)
    for m in messages {
        switch m {
        case .failure(let e): sink(e.description); sink(e.errno)
        case .success(let request):
            let payload = request.encodePayload()
            let frame = VFIOUserFrame.command(1, request)
            sink(frame.encode())
            // Re-decoding what we decoded must succeed: decode and encode agree.
            do {
                let again = try VFIOUserDecoder.decodeCommand(header: frame.header, payload: payload, fdCount: 0)
                if case .setIRQs = request {} else if again.command != request.command { fatalError("command changed on re-decode") }
            } catch {
                // Commands that need fds (SET_IRQS with eventfds and count > 0) are the only legitimate failures.
                if case .setIRQs = request {} else { fatalError("re-decode of \(request.command) failed: \(error)") }
            }
            // Error replies the server would send for this request.
            sink(VFIOUserFrame.errorReply(to: frame.header, errno: VFIOErrno.EINVAL).encode())
        }
    }
    // Header decoding alone, at every offset of the first 64 bytes (resynchronisation attempts).
    var i = 0
    while i + VFIOUserLimits.headerSize <= min(bytes.count, 64) {
        if let h = try? VFIOUserHeader.decode(Array(bytes[i..<(i + VFIOUserLimits.headerSize)])) {
            sink(h.typedCommand?.description); sink(h.encode())
        }
        i += 1
    }
    return 0
}
