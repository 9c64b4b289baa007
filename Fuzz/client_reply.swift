// fuzz-target: vfio-user client reply decoding: framed replies to any command, capability chains, sparse mmap, region type, IO fds, DMA requests in both layouts
// fuzz-modules: VFIOUser
//
// Input: byte 0 picks the command the client asked, byte 1 the number of fds that came
// with the reply (0-3), the rest is the reply message (header + payload) a hostile
// server sent. The harness does what VFIOUserClient does with it: header decode with
// the client's size limit, checkReply against the request, decodeReply, and for
// region info the sparse-mmap and region-type capability parsing that decide what the
// client will mmap. Every accepted sparse area must lie inside the region.
import Foundation
import VFIO
import VFIOUser

@inline(never)
func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 + VFIOUserLimits.headerSize else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let commands = VFIOUserCommand.allCases
    let command = commands[Int(bytes[0]) % commands.count]
    let fdCount = Int(bytes[1] & 3)
    let message = Array(bytes[2...])
    let request = VFIOUserHeader(messageID: UInt16(bytes[2]) | UInt16(bytes[3]) << 8, command: command.rawValue,
                                 messageSize: 16, flags: VFIOUserFlags.typeCommand)
    let header: VFIOUserHeader
    do { header = try VFIOUserHeader.decode(Array(message[0..<VFIOUserLimits.headerSize])) } catch { sink(error.description); return 0 }
    let payload = Array(message[VFIOUserLimits.headerSize...])
    do { try VFIOUserDecoder.checkReply(header, for: request) } catch { sink(error.errno) }
    let reply: VFIOUserReply
    do {
        reply = try VFIOUserDecoder.decodeReply(command: command, payload: payload, fdCount: fdCount,
                                                requestedCount: UInt64(bytes[1] >> 2))
    } catch { sink(error.description); return 0 }
    switch reply {
    case .regionInfo(let info):
        for cap in info.capabilities {
            if cap.id == VFIORegionCapabilityID.sparseMMap {
                if let s = try? VFIOSparseMMapCapability(parsing: cap, regionSize: info.size) {
                    for a in s.areas {
                        let (end, o) = a.offset.addingReportingOverflow(a.size)
                        if o || end > info.size { fatalError("sparse area outside the region accepted") }
                    }
                    sink(s.capability)
                }
            } else if cap.id == VFIORegionCapabilityID.type {
                sink(try? VFIORegionTypeCapability(parsing: cap))
            }
        }
        if info.capOffset != 0 && info.flags.contains(.caps) {
            // The chain the client accepted re-encodes and decodes to the same capabilities.
            let again = VFIOCapabilityChain.encode(info.capabilities, baseOffset: VFIORegionInfo.size)
            let whole = [UInt8](repeating: 0, count: VFIORegionInfo.size) + again
            if !info.capabilities.isEmpty,
               let back = try? VFIOCapabilityChain.decode(whole, firstOffset: UInt32(VFIORegionInfo.size), minOffset: VFIORegionInfo.size) {
                if back.map(\.id) != info.capabilities.map(\.id) { fatalError("capability chain round trip changed ids") }
            }
        }
    case .deviceInfo(let info): for c in info.capabilities { sink(c.payload.count) }
    case .regionIOFDs(let r):
        for e in r.entries where Int(e.fdIndex) >= fdCount { fatalError("IO_FDS entry names fd \(e.fdIndex) of \(fdCount)") }
    case .version(let v): sink(v.capabilities?.json())
    default: sink(reply)
    }
    // DMA requests a hostile server sends the client, in both layouts (spec and QEMU's), and DMA_READ replies.
    for layout in [VFIOUserDMALayout.spec, .qemu] {
        for write in [false, true] {
            if let a = try? layout.decodeRequest(payload, write: write), write, UInt64(a.data.count) != a.count {
                fatalError("DMA_WRITE request decoded with \(a.data.count) bytes for count \(a.count)")
            }
        }
        if let d = try? layout.decodeReadReply(payload, address: request.messageID == 0 ? 0 : 0x1000, count: UInt64(bytes[1] >> 2)),
           d.count != Int(bytes[1] >> 2) { fatalError("DMA_READ reply of the wrong length accepted") }
    }
    // The raw chain decoder over the payload from every plausible first offset.
    if payload.count >= 8 {
        let first = UInt32(ByteReader.le(payload, at: 12, size: 4) ?? 0)
        sink(try? VFIOCapabilityChain.decode(payload, firstOffset: first, minOffset: 16))
    }
    return 0
}
