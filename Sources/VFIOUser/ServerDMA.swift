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
        guard let c = connection else { throw .system(errno: VFIOErrno.ENOTCONN, "client gone") }
        return try c.dmaRead(address: address, count: count)
    }
    func write(address: UInt64, data: [UInt8]) throws(VFIOError) {
        guard let c = connection else { throw .system(errno: VFIOErrno.ENOTCONN, "client gone") }
        try c.dmaWrite(address: address, data: data)
    }
}
