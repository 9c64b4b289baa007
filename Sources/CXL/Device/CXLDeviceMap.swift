import PCI

// Where a CXL function keeps its registers, found the way any driver finds them:
// the PCIe DVSEC for CXL Devices and the Register Locator DVSEC in config space
// (CXL 3.1 §8.1.3, §8.1.9), then the CXL.cachemem capability array of the
// component register block (§8.2.4.1, §8.2.4.2) for the HDM Decoder, RAS and Link
// capabilities. The one discovery: decode, the state engine and vfio-cxl read the
// device through this map, and the emulator's tests check its layout against it.

/// Why a function has no usable CXL device map.
public enum CXLDeviceMapError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No PCIe DVSEC for CXL Devices (vendor 1E98h, DVSEC ID 0) inside config space.
    case noDeviceDVSEC
    /// Reading the function's config space or component registers failed (`discover`).
    case access(PCIError)

    public var description: String {
        switch self {
        case .noDeviceDVSEC: return "no PCIe DVSEC for CXL Devices (vendor 1e98, ID 0)"
        case .access(let e): return "device access failed: \(e)"
        }
    }
}

/// The CXL.cachemem capability array of one component register block, as read
/// (CXL 3.1 §8.2.4.1 CXL Capability Header, §8.2.4.2 element headers).
public struct CacheMemCapabilityList: Sendable, Equatable {
    /// Why the walk stopped before the end of the array.
    public enum Stop: Sendable, Equatable {
        /// The CXL Capability Header at cachemem +0 could not be read.
        case unreadableHeader(PCIError)
        /// The header's CXL_Capability_ID is not 1: there is no array.
        case notAnArray(id: UInt64)
        /// Element `index` (1-based) could not be read.
        case unreadableElement(index: Int, PCIError)
    }

    /// The CXL Capability Header, when it could be read.
    public var header: UInt32?
    /// The elements read, in array order (Null entries included).
    public var capabilities: [CacheMemCapability] = []
    /// Set when the walk did not reach the end of the array.
    public var stop: Stop?

    /// Walks the array through `read32(offset)`, offsets relative to the component
    /// register block. Never throws: a failed read ends the walk and is recorded.
    public init(read32: (Int) throws(PCIError) -> UInt32) {
        let cm = ComponentRegisterBlock.cacheMemOffset
        let h: UInt32
        do { h = try read32(cm + CacheMemCapabilityArray.header.offset) } catch {
            stop = .unreadableHeader(error)
            return
        }
        header = h
        let id = CacheMemCapabilityArray.capabilityID.extract(UInt64(h))
        guard id == UInt64(CacheMemCapabilityID.capability.rawValue) else {
            stop = .notAnArray(id: id)
            return
        }
        let count = Int(CacheMemCapabilityArray.arraySize.extract(UInt64(h)))
        for i in stride(from: 1, through: count, by: 1) {
            let e: UInt32
            do { e = try read32(cm + 4 * i) } catch {
                stop = .unreadableElement(index: i, error)
                return
            }
            let v = UInt64(e)
            capabilities.append(CacheMemCapability(id: UInt16(CacheMemCapabilityArray.elementID.extract(v)),
                                                   version: UInt8(CacheMemCapabilityArray.elementVersion.extract(v)),
                                                   pointer: Int(CacheMemCapabilityArray.elementPointer.extract(v))))
        }
    }

    /// The first capability with this ID and a non-null pointer.
    public func first(_ id: CacheMemCapabilityID) -> CacheMemCapability? {
        capabilities.first { $0.id == id.rawValue && $0.pointer != 0 }
    }
}

/// The HDM Decoder Capability structure's place and size (CXL 3.1 §8.2.4.20).
public struct HDMDecoderMap: Sendable, Hashable {
    /// Offset of the structure inside the component register block.
    public var offset: Int
    /// HDM Decoder Capability register, raw.
    public var capability: UInt32
    /// Decoders implemented, decoded from Decoder Count; nil for a reserved encoding.
    public var decoderCount: Int?
    /// The raw Decoder Count encoding.
    public var decoderCountEncoding: UInt64 { HDMDecoderCapability.decoderCount.extract(UInt64(capability)) }
    /// Bytes the structure spans (0 decoders for a reserved count).
    public var length: Int { HDMDecoderCapability.length(decoders: decoderCount ?? 0) }
}

/// The CXL device map: every place the CXL registers of one function are.
public struct CXLDeviceMap: Sendable, Equatable {
    /// The PCIe DVSEC for CXL Devices (§8.1.3).
    public var deviceDVSEC: DVSECInstance
    /// DVSEC CXL Capability, when its register lies inside config space.
    public var dvsecCapability: UInt64?
    /// Every DVSEC of the CXL vendor ID (1E98h), in list order.
    public var dvsecs: [DVSECInstance]
    /// Every entry of every Register Locator DVSEC (§8.1.9).
    public var registerBlocks: [RegisterLocatorEntry]
    /// Type 0 header: an endpoint (decoders have DPA Skip, not a Target List).
    public var endpoint: Bool
    /// The CXL.cachemem capability array, once `readComponentRegisters` ran.
    public var cacheMem: CacheMemCapabilityList?
    /// The HDM Decoder Capability, once `readComponentRegisters` ran and found one.
    public var hdm: HDMDecoderMap?

    /// The first component register block (Block Identifier 1) in a BAR index that
    /// exists (0-5) at an offset a BAR can hold.
    public var componentBlock: RegisterLocatorEntry? {
        registerBlocks.first {
            $0.identifier == RegisterLocatorDVSEC.BlockIdentifier.componentRegisters.rawValue && $0.bir < 6 && $0.offset >> 63 == 0
        }
    }
    /// Offset of the RAS / Link capability inside the component block.
    public var rasOffset: Int? { cacheMem?.first(.ras)?.blockOffset }
    public var linkOffset: Int? { cacheMem?.first(.link)?.blockOffset }

    /// The config-space part of the map, from a snapshot of config space.
    public init(config: ConfigSpace, capabilities: CapabilityList? = nil) throws(CXLDeviceMapError) {
        let caps = capabilities ?? CapabilityList(walking: config)
        let cxl = caps.dvsecs(in: config).filter { $0.vendorID == cxlDVSECVendorID }
        guard let device = cxl.first(where: { $0.dvsecID == CXLDVSECID.device.rawValue && $0.fitsInConfigSpace }) else {
            throw .noDeviceDVSEC
        }
        deviceDVSEC = device
        dvsecCapability = config.read(CXLDeviceDVSEC.capability, base: device.offset)
        dvsecs = cxl
        registerBlocks = cxl.filter { $0.dvsecID == CXLDVSECID.registerLocator.rawValue }
            .flatMap { RegisterLocator.entries($0, config: config) }
        endpoint = (config.headerType ?? 0) == 0
    }

    /// Walk the component block's capability array and read the HDM Decoder
    /// Capability register, through `read32(offset)` relative to the block.
    /// Returns why the walk stopped early, if it did (the map keeps what was read).
    public mutating func readComponentRegisters(read32: (Int) throws(PCIError) -> UInt32) -> PCIError? {
        let walk = CacheMemCapabilityList(read32: read32)
        cacheMem = walk
        hdm = nil
        guard let cap = walk.first(.hdmDecoder) else {
            switch walk.stop {
            case .unreadableHeader(let e), .unreadableElement(_, let e): return e
            default: return nil
            }
        }
        let offset = cap.blockOffset
        let raw: UInt32
        do { raw = try read32(offset + HDMDecoderCapability.capability.offset) } catch { return error }
        let count = HDMDecoderCapability.decoderCounts[HDMDecoderCapability.decoderCount.extract(UInt64(raw))]
        hdm = HDMDecoderMap(offset: offset, capability: raw, decoderCount: count)
        return nil
    }

    /// The whole map of a function: config space in one snapshot, then the
    /// component block's capability array through the function's BAR.
    public static func discover(_ function: any PCIFunction) throws(CXLDeviceMapError) -> CXLDeviceMap {
        let config: ConfigSpace
        do { config = try function.configSnapshot() } catch { throw .access(error) }
        var map = try CXLDeviceMap(config: config)
        if let block = map.componentBlock {
            let e = map.readComponentRegisters { (offset) throws(PCIError) -> UInt32 in
                UInt32(truncatingIfNeeded: try function.barRead(block.bir, offset: block.offset + UInt64(offset), width: 4))
            }
            if let e { throw .access(e) }
        }
        return map
    }
}
