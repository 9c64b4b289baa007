import PCI
import VFIO

/// A PCI function behind a vfio-user socket, seen through `VFIOUserClient`: what a VMM sees of the device, so
/// every tool written against `PCIFunction` (decoders, the state engine) works on a served device.
///
/// - config space: region 7 (`VFIO_PCI_CONFIG_REGION_INDEX`), one REGION_READ/WRITE per access of the access's
///   width, as QEMU forwards guest config cycles;
/// - BARs: regions 0-5; the BAR kind and prefetchability come from the BAR registers in config space, the size
///   from the region info;
/// - resets: `.bus` is VFIO_USER_DEVICE_RESET (what QEMU sends for a secondary bus reset or a system reset),
///   `.flr` is a write of Initiate Function Level Reset in the PCI Express Device Control register (what a guest
///   does; QEMU forwards it as a config write), offered when Device Capabilities says FLR capable.
///
/// Interrupts are not wired (`setInterruptSink` is ignored): tools use polling. Knows nothing about CXL.
public final class VFIOUserPCIFunction: PCIFunction, @unchecked Sendable {
    public let client: VFIOUserClient
    public let address: String
    public let configSize: Int
    public let bars: [BARDescription]
    public let resetMethods: [PCIResetMethod]
    /// Offset of the PCI Express capability, if any (for FLR).
    private let expressOffset: Int?

    /// Connects to `socketPath` (the client negotiates the version) and reads the device layout.
    public convenience init(socketPath: String, address: String? = nil,
                            configuration: VFIOUserClientConfiguration = .init()) throws(PCIError) {
        let client: VFIOUserClient
        do { client = try VFIOUserClient(socketPath: socketPath, configuration: configuration) } catch {
            throw .io("vfio-user:\(socketPath): \(error)")
        }
        try self.init(client: client, address: address ?? "vfio-user:\(socketPath)")
    }

    /// Uses an already connected client.
    public init(client: VFIOUserClient, address: String) throws(PCIError) {
        self.client = client
        self.address = address
        let info: VFIODeviceInfo
        do { info = try client.deviceInfo() } catch { throw .io("\(address): DEVICE_GET_INFO: \(error)") }
        guard info.flags.contains(.pci) else { throw .io("\(address): not a PCI device (DEVICE_GET_INFO flags 0x\(String(info.flags.rawValue, radix: 16)))") }
        guard info.numRegions > VFIOPCIRegion.config.rawValue else {
            throw .io("\(address): the device reports \(info.numRegions) regions, no config region")
        }
        func region(_ i: UInt32) throws(PCIError) -> VFIOUserClientRegion {
            do { return try client.regionInfo(i) } catch { throw .io("\(address): DEVICE_GET_REGION_INFO \(i): \(error)") }
        }
        let cfg = try region(VFIOPCIRegion.config.rawValue)
        guard cfg.size == UInt64(pciConfigSpaceSize) || cfg.size == UInt64(pcieConfigSpaceSize) else {
            throw .io("\(address): config region of \(cfg.size) bytes (expected 256 or 4096)")
        }
        let size = Int(cfg.size)
        configSize = size

        func cfgRead(_ off: Int, _ width: Int) throws(PCIError) -> UInt32 {
            try Self.configRead(client, address, size, off, width)
        }
        bars = try BARDescription.list(size: { i throws(PCIError) in try region(UInt32(i)).size },
                                       register: { i throws(PCIError) in UInt64(try cfgRead(PCIHeader.bar(i).offset, 4)) })

        var methods: [PCIResetMethod] = []
        var express: Int? = nil
        if size >= 64 {
            var bytes = [UInt8]()
            bytes.reserveCapacity(pciConfigSpaceSize)
            var off = 0
            while off < pciConfigSpaceSize {
                let v = try cfgRead(off, 4)
                bytes += LittleEndian.bytes(UInt64(v), width: 4)
                off += 4
            }
            let header = ConfigSpace(bytes: bytes)
            if let e = CapabilityList(walking: header).standard(.pciExpress) {
                express = e.offset
                if let caps = header.read(PCIExpressCapability.deviceCapabilities, base: e.offset),
                   PCIExpressCapability.flrCapable.extract(caps) == 1 {
                    methods.append(.flr)
                }
            }
        }
        if info.flags.contains(.reset) { methods.append(.bus) }
        expressOffset = express
        resetMethods = methods
    }

    /// Closes the connection (the server then serves its next client).
    public func close() { client.close() }

    private static func configRead(_ client: VFIOUserClient, _ address: String, _ size: Int, _ offset: Int, _ width: Int) throws(PCIError) -> UInt32 {
        try checkConfig(address, size, offset, width)
        let b: [UInt8]
        do { b = try client.read(region: VFIOPCIRegion.config.rawValue, offset: UInt64(offset), count: width) } catch {
            throw .io("\(address): config read 0x\(String(offset, radix: 16))/\(width): \(error)")
        }
        guard b.count == width else { throw .io("\(address): config read returned \(b.count) bytes, asked \(width)") }
        return UInt32(truncatingIfNeeded: LittleEndian.load(b))
    }

    private static func checkConfig(_ address: String, _ size: Int, _ offset: Int, _ width: Int) throws(PCIError) {
        guard [1, 2, 4].contains(width) else { throw .badAccess("config access width \(width)") }
        guard offset >= 0, offset + width <= size else { throw .outOfRange("config offset 0x\(String(offset, radix: 16)) width \(width) (config space \(size) bytes)") }
        guard offset % width == 0 else { throw .badAccess("unaligned config access at 0x\(String(offset, radix: 16)) width \(width)") }
    }


    // MARK: PCIFunction

    public func configRead(_ offset: Int, width: Int) throws(PCIError) -> UInt32 {
        try Self.configRead(client, address, configSize, offset, width)
    }

    public func configWrite(_ offset: Int, width: Int, value: UInt32) throws(PCIError) {
        try Self.checkConfig(address, configSize, offset, width)
        do { try client.write(region: VFIOPCIRegion.config.rawValue, offset: UInt64(offset), data: LittleEndian.bytes(UInt64(value), width: width)) } catch {
            throw .io("\(address): config write 0x\(String(offset, radix: 16))/\(width): \(error)")
        }
    }

    private func checkBAR(_ bar: Int, _ offset: UInt64, _ width: Int) throws(PCIError) {
        guard let b = bars.first(where: { $0.index == bar }) else { throw .noSuchBAR(bar) }
        guard [1, 2, 4, 8].contains(width) else { throw .badAccess("BAR\(bar) access width \(width)") }
        guard offset < b.size, UInt64(width) <= b.size - offset else {
            throw .outOfRange("BAR\(bar) offset 0x\(String(offset, radix: 16)) width \(width) (BAR size 0x\(String(b.size, radix: 16)))")
        }
    }

    public func barRead(_ bar: Int, offset: UInt64, width: Int) throws(PCIError) -> UInt64 {
        try checkBAR(bar, offset, width)
        let b: [UInt8]
        do { b = try client.read(region: UInt32(bar), offset: offset, count: width) } catch {
            throw .io("\(address): BAR\(bar) read 0x\(String(offset, radix: 16))/\(width): \(error)")
        }
        guard b.count == width else { throw .io("\(address): BAR\(bar) read returned \(b.count) bytes, asked \(width)") }
        return LittleEndian.load(b)
    }

    public func barWrite(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        try checkBAR(bar, offset, width)
        do { try client.write(region: UInt32(bar), offset: offset, data: LittleEndian.bytes(value, width: width)) } catch {
            throw .io("\(address): BAR\(bar) write 0x\(String(offset, radix: 16))/\(width): \(error)")
        }
    }

    /// Config bytes in one REGION_READ (split only past the negotiated transfer size).
    public func configReadBytes(_ offset: Int, count: Int) throws(PCIError) -> [UInt8] {
        guard offset >= 0 else { throw .outOfRange("config offset \(offset)") }
        try Self.checkBulk(UInt64(offset), count, limit: configSize)
        let b: [UInt8]
        do { b = try client.read(region: VFIOPCIRegion.config.rawValue, offset: UInt64(offset), count: count) } catch {
            throw .io("\(address): config read 0x\(String(offset, radix: 16))+\(count): \(error)")
        }
        guard b.count == count else { throw .io("\(address): config read returned \(b.count) bytes, asked \(count)") }
        return b
    }

    /// BAR bytes in one REGION_READ (split only past the negotiated transfer size).
    public func barReadBytes(_ bar: Int, offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        try Self.checkBulk(offset, count)
        guard let b = bars.first(where: { $0.index == bar }) else { throw .noSuchBAR(bar) }
        guard offset <= b.size, UInt64(count) <= b.size - offset else {
            throw .outOfRange("BAR\(bar) offset 0x\(String(offset, radix: 16))+\(count) (BAR size 0x\(String(b.size, radix: 16)))")
        }
        let out: [UInt8]
        do { out = try client.read(region: UInt32(bar), offset: offset, count: count) } catch {
            throw .io("\(address): BAR\(bar) read 0x\(String(offset, radix: 16))+\(count): \(error)")
        }
        guard out.count == count else { throw .io("\(address): BAR\(bar) read returned \(out.count) bytes, asked \(count)") }
        return out
    }

    /// REGION_WRITE with NO_REPLY: the server handles messages in order, so the next
    /// read on this connection is ordered after it; errors are not reported.
    public func barWritePosted(_ bar: Int, offset: UInt64, width: Int, value: UInt64) throws(PCIError) {
        try checkBAR(bar, offset, width)
        do { try client.write(region: UInt32(bar), offset: offset, data: LittleEndian.bytes(value, width: width), posted: true) } catch {
            throw .io("\(address): BAR\(bar) posted write 0x\(String(offset, radix: 16))/\(width): \(error)")
        }
    }

    /// One REGION_WRITE_MULTI with NO_REPLY when the server negotiated `write_multiple` (one message for the
    /// whole batch, performed in order before the next message), else one posted REGION_WRITE each.
    public func barWritePosted(_ bar: Int, _ writes: [PostedBARWrite]) throws(PCIError) {
        for w in writes { try checkBAR(bar, w.offset, w.width) }
        guard writes.count > 1, writes.count <= VFIOUserRegionWriteMulti.maxEntries,
              client.serverCapabilities.effectiveWriteMultiple else {
            for w in writes { try barWritePosted(bar, offset: w.offset, width: w.width, value: w.value) }
            return
        }
        do {
            try client.writeMultiple(writes.map { (UInt32(bar), $0.offset, LittleEndian.bytes($0.value, width: $0.width)) }, posted: true)
        } catch {
            throw .io("\(address): BAR\(bar) posted REGION_WRITE_MULTI of \(writes.count) writes at 0x\(String(writes[0].offset, radix: 16)): \(error)")
        }
    }

    public func reset(_ method: PCIResetMethod) throws(PCIError) {
        guard resetMethods.contains(method) else { throw .resetUnsupported(method.rawValue) }
        switch method {
        case .bus:
            do { try client.reset() } catch { throw .io("\(address): DEVICE_RESET: \(error)") }
        case .flr:
            guard let e = expressOffset else { throw .resetUnsupported(method.rawValue) }
            let reg = PCIExpressCapability.deviceControl
            let bit = PCIExpressCapability.initiateFLR
            let ctl = UInt64(try configRead(e + reg.offset, width: reg.width))
            try configWrite(e + reg.offset, width: reg.width, value: UInt32(truncatingIfNeeded: bit.insert(1, into: ctl)))
        default:
            throw .resetUnsupported(method.rawValue)
        }
    }
}
