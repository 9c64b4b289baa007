import Foundation
import VFIO

/// The capabilities object of VERSION (vfio-user spec, "Version" → "Capabilities" table, plus `migration`, which
/// both libvfio-user and QEMU send). Absent fields take the spec defaults via the `effective*` accessors.
public struct VFIOUserCapabilities: Sendable, Equatable {
    public struct TwinSocket: Sendable, Equatable {
        public var supported: Bool
        public var fdIndex: UInt32?
        public init(supported: Bool, fdIndex: UInt32? = nil) { self.supported = supported; self.fdIndex = fdIndex }
    }
    public struct Migration: Sendable, Equatable {
        public var pgsize: UInt64?
        public var maxBitmapSize: UInt64?
        public init(pgsize: UInt64? = nil, maxBitmapSize: UInt64? = nil) { self.pgsize = pgsize; self.maxBitmapSize = maxBitmapSize }
    }
    public var maxMsgFDs: UInt64?
    public var maxDataXferSize: UInt64?
    public var pgsizes: UInt64?
    public var maxDMAMaps: UInt64?
    public var twinSocket: TwinSocket?
    public var writeMultiple: Bool?
    public var migration: Migration?

    public init(maxMsgFDs: UInt64? = nil, maxDataXferSize: UInt64? = nil, pgsizes: UInt64? = nil, maxDMAMaps: UInt64? = nil,
                twinSocket: TwinSocket? = nil, writeMultiple: Bool? = nil, migration: Migration? = nil) {
        self.maxMsgFDs = maxMsgFDs; self.maxDataXferSize = maxDataXferSize; self.pgsizes = pgsizes
        self.maxDMAMaps = maxDMAMaps; self.twinSocket = twinSocket; self.writeMultiple = writeMultiple; self.migration = migration
    }

    public var effectiveMaxMsgFDs: UInt64 { maxMsgFDs ?? UInt64(VFIOUserLimits.defaultMaxMsgFDs) }
    public var effectiveMaxDataXferSize: UInt64 { maxDataXferSize ?? VFIOUserLimits.defaultMaxDataXferSize }
    public var effectivePageSizes: UInt64 { pgsizes ?? VFIOUserLimits.defaultPageSizes }
    public var effectiveMaxDMAMaps: UInt64 { maxDMAMaps ?? UInt64(VFIOUserLimits.defaultMaxDMAMaps) }
    public var effectiveWriteMultiple: Bool { writeMultiple ?? false }

    // MARK: JSON

    private struct Wire: Codable { var capabilities: Caps? }
    private struct Caps: Codable {
        var max_msg_fds: UInt64?
        var max_data_xfer_size: UInt64?
        var pgsizes: UInt64?
        var max_dma_maps: UInt64?
        var twin_socket: Twin?
        var write_multiple: Bool?
        var migration: Mig?
    }
    private struct Twin: Codable { var supported: Bool?; var fd_index: UInt32? }
    private struct Mig: Codable { var pgsize: UInt64?; var max_bitmap_size: UInt64? }

    /// Parses `{"capabilities":{...}}`. Unknown keys are ignored; known keys of the wrong type are malformed.
    /// An object without `capabilities` yields all defaults.
    public static func parse(json: [UInt8]) throws(VFIOUserError) -> VFIOUserCapabilities {
        let wire: Wire
        do { wire = try JSONDecoder().decode(Wire.self, from: Data(json)) } catch {
            throw .malformed("VERSION capabilities JSON: \(error)")
        }
        guard let c = wire.capabilities else { return VFIOUserCapabilities() }
        return VFIOUserCapabilities(
            maxMsgFDs: c.max_msg_fds, maxDataXferSize: c.max_data_xfer_size, pgsizes: c.pgsizes, maxDMAMaps: c.max_dma_maps,
            twinSocket: c.twin_socket.map { TwinSocket(supported: $0.supported ?? false, fdIndex: $0.fd_index) },
            writeMultiple: c.write_multiple,
            migration: c.migration.map { Migration(pgsize: $0.pgsize, maxBitmapSize: $0.max_bitmap_size) })
    }

    /// Deterministic JSON (fixed key order, no spaces), without the trailing NUL.
    public func json() -> String {
        var parts: [String] = []
        if let v = maxMsgFDs { parts.append("\"max_msg_fds\":\(v)") }
        if let v = maxDataXferSize { parts.append("\"max_data_xfer_size\":\(v)") }
        if let v = pgsizes { parts.append("\"pgsizes\":\(v)") }
        if let v = maxDMAMaps { parts.append("\"max_dma_maps\":\(v)") }
        if let t = twinSocket {
            var p = ["\"supported\":\(t.supported)"]
            if let i = t.fdIndex { p.append("\"fd_index\":\(i)") }
            parts.append("\"twin_socket\":{\(p.joined(separator: ","))}")
        }
        if let v = writeMultiple { parts.append("\"write_multiple\":\(v)") }
        if let m = migration {
            var p: [String] = []
            if let v = m.pgsize { p.append("\"pgsize\":\(v)") }
            if let v = m.maxBitmapSize { p.append("\"max_bitmap_size\":\(v)") }
            parts.append("\"migration\":{\(p.joined(separator: ","))}")
        }
        return "{\"capabilities\":{\(parts.joined(separator: ","))}}"
    }
}

/// What each end of a vfio-user connection sets alike (`VFIOUserClientConfiguration`, `VFIOUserServerConfiguration`
/// reach these fields as their own): the limits it advertises in VERSION (spec "Version" capabilities), whether it
/// does REGION_WRITE_MULTI, and the DMA_READ/DMA_WRITE layout; and the checks each end makes of the other's offer.
public struct VFIOUserPeerSettings: Sendable, Equatable {
    /// Fds we accept per message (advertised as `max_msg_fds`; QEMU rejects > 16).
    public var maxMsgFDs: UInt64
    /// Largest REGION_READ/WRITE or DMA_READ/WRITE `count` we accept (advertised `max_data_xfer_size`).
    public var maxDataXferSize: UInt64 = VFIOUserLimits.defaultMaxDataXferSize
    public var maxDMAMaps: UInt64 = UInt64(VFIOUserLimits.defaultMaxDMAMaps)
    public var pageSizes: UInt64 = VFIOUserLimits.defaultPageSizes
    /// Do and advertise REGION_WRITE_MULTI (a server: when the client offers it).
    public var writeMultiple: Bool = true
    /// Layout of the DMA_READ/DMA_WRITE messages. nil = automatic (`dmaLayout(negotiatedMinor:)`).
    public var dmaLayout: VFIOUserDMALayout? = nil

    public init(maxMsgFDs: UInt64) { self.maxMsgFDs = maxMsgFDs }

    /// The DMA message layout of a connection that negotiated `minor`: the configured one, else QEMU's layout for
    /// version 0.0 (QEMU 10.x negotiates it, and a swift-cxl server sends such a client that layout), the
    /// spec/libvfio-user layout otherwise.
    public func dmaLayout(negotiatedMinor minor: UInt16) -> VFIOUserDMALayout { dmaLayout ?? (minor == 0 ? .qemu : .spec) }

    /// These settings as VERSION capabilities, every key stated.
    public var advertised: VFIOUserCapabilities {
        VFIOUserCapabilities(maxMsgFDs: maxMsgFDs, maxDataXferSize: maxDataXferSize, pgsizes: pageSizes, maxDMAMaps: maxDMAMaps,
                             writeMultiple: writeMultiple)
    }

    /// What is wrong with the other end's offer `peer`, or nil: `max_msg_fds` from `minimumMsgFDs` to
    /// `VFIOUserLimits.maxMsgFDsLimit`, a page size in common with ours, a non-zero `max_data_xfer_size`.
    public func problem(withPeer peer: VFIOUserCapabilities, minimumMsgFDs: UInt64) -> String? {
        if peer.effectiveMaxMsgFDs < minimumMsgFDs || peer.effectiveMaxMsgFDs > VFIOUserLimits.maxMsgFDsLimit {
            return "max_msg_fds \(peer.effectiveMaxMsgFDs)"
        }
        if peer.effectivePageSizes & pageSizes == 0 { return "pgsizes 0x\(String(peer.effectivePageSizes, radix: 16))" }
        if peer.effectiveMaxDataXferSize == 0 { return "max_data_xfer_size 0" }
        return nil
    }
}
