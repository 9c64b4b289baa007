import CSwiftCXLSystem
import Foundation
import Logging
import Synchronization
import VFIO
#if canImport(Glibc)
import Glibc
#endif

/// Server-side DMA access handed to the device: fd-backed mappings are accessed directly, the others with
/// DMA_READ/DMA_WRITE messages on the connection (only from the thread serving the connection, i.e. from within
/// device callbacks).
final class VFIOUserServerDMA: VFIODMAMemory, @unchecked Sendable {
    weak var connection: VFIOUserConnection?
    init(_ c: VFIOUserConnection) { connection = c }

    func read(address: UInt64, count: Int) throws(VFIOError) -> [UInt8] {
        guard count >= 0 else { throw .invalidArgument("count") }
        var failure: VFIOError?
        let out = [UInt8](unsafeUninitializedCapacity: count) { buf, n in
            do throws(VFIOError) { try read(address: address, into: UnsafeMutableRawBufferPointer(buf)) } catch {
                buf.initialize(repeating: 0)
                failure = error
            }
            n = count
        }
        if let failure { throw failure }
        return out
    }
    func write(address: UInt64, data: [UInt8]) throws(VFIOError) {
        var failure: VFIOError?
        data.withUnsafeBytes { b in
            do throws(VFIOError) { try write(address: address, from: b) } catch { failure = error }
        }
        if let failure { throw failure }
    }
    func read(address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(VFIOError) {
        guard let c = connection else { throw .system(errno: VFIOErrno.ENOTCONN, "client gone") }
        try c.dmaRead(address: address, into: buffer)
    }
    func write(address: UInt64, from buffer: UnsafeRawBufferPointer) throws(VFIOError) {
        guard let c = connection else { throw .system(errno: VFIOErrno.ENOTCONN, "client gone") }
        try c.dmaWrite(address: address, from: buffer)
    }
    /// Every segment's DMA_READ in flight at once (`VFIOUserConnection.dmaTransfer`).
    func read(segments: [VFIODMASegment]) throws(VFIOError) {
        guard let c = connection else { throw .system(errno: VFIOErrno.ENOTCONN, "client gone") }
        try c.dmaTransfer(segments, toGuest: false)
    }
    /// Every segment's DMA_WRITE in flight at once.
    func write(segments: [VFIODMASegment]) throws(VFIOError) {
        guard let c = connection else { throw .system(errno: VFIOErrno.ENOTCONN, "client gone") }
        try c.dmaTransfer(segments, toGuest: true)
    }
}
