import CXL
import PCI

/// Why a function cannot be served with CXL enlightenment (it is then served as a
/// plain PCI device, with the reason logged).
public enum VFIOCXLError: Error, Sendable, Equatable, CustomStringConvertible {
    case notCXL(String)
    case access(String)
    case hostSetup(String)

    public var description: String {
        switch self {
        case .notCXL(let s): return "not a usable CXL Type-2 device: \(s)"
        case .access(let s): return "device access failed: \(s)"
        case .hostSetup(let s): return "host decoder setup failed: \(s)"
        }
    }
}

/// Device memory a VMM can map: an fd whose offset 0 is DPA 0 (a memfd for the
/// emulated device; a future Linux backend would hand out its region fd).
public protocol CXLDeviceMemory: AnyObject, Sendable {
    var memoryFD: Int32 { get }
    var memorySize: UInt64 { get }
}

/// Where a CXL Type-2 function keeps what vfio-cxl shadows, found by walking its
/// config space and component registers as any driver would (CXL 3.1 §8.1.3,
/// §8.1.9, §8.2.4.1).
public struct CXLPassthroughLayout: Sendable, Equatable {
    public var dvsecOffset: Int
    public var dvsecLength: Int
    public var dvsecRevision: UInt8
    /// DVSEC CXL Capability, as the device reports it.
    public var capability: UInt64
    public var componentBAR: Int
    /// Offset of the 64 KiB component block inside its BAR.
    public var componentOffset: UInt64
    /// Offset of the HDM Decoder Capability structure inside the component block.
    public var hdmOffset: Int
    public var decoderCount: Int
    public var hdmCapability: UInt64

    public var hdmLength: Int { HDMDecoderCapability.length(decoders: decoderCount) }
    public var componentRange: Range<UInt64> { componentOffset..<(componentOffset + UInt64(ComponentRegisterBlock.size)) }

    func capabilityBit(_ name: String) -> Bool { CXLDeviceDVSEC.capability.field(name)!.extract(capability) != 0 }
    public var cacheCapable: Bool { capabilityBit("Cache_Capable") }

    public static func discover(_ function: any PCIFunction) throws(VFIOCXLError) -> CXLPassthroughLayout {
        let config: ConfigSpace
        do { config = try function.configSnapshot() } catch { throw .access("config space: \(error)") }
        let caps = CapabilityList(walking: config)
        let dvsecs = caps.dvsecs(in: config).filter { $0.vendorID == cxlDVSECVendorID }
        guard let dev = dvsecs.first(where: { $0.dvsecID == CXLDVSECID.device.rawValue }) else {
            throw .notCXL("no PCIe DVSEC for CXL Devices")
        }
        guard dev.revision >= 1, dev.length >= CXLDeviceDVSEC.length(revision: 1), dev.fitsInConfigSpace else {
            throw .notCXL("CXL Device DVSEC revision \(dev.revision), length 0x\(String(dev.length, radix: 16))")
        }
        guard let capability = config.read(CXLDeviceDVSEC.capability, base: dev.offset),
              CXLDeviceDVSEC.capability.field("Mem_Capable")!.extract(capability) == 1 else {
            throw .notCXL("Mem_Capable is clear")
        }
        let componentBlocks = RegisterLocator.entries(config: config, capabilities: caps)
            .filter { $0.identifier == RegisterLocatorDVSEC.BlockIdentifier.componentRegisters.rawValue }
        guard let block = componentBlocks.first else { throw .notCXL("no component register block in the Register Locator") }
        guard let bar = function.bars.first(where: { $0.index == block.bir }),
              block.offset + UInt64(ComponentRegisterBlock.size) <= bar.size else {
            throw .notCXL("component register block outside BAR \(block.bir)")
        }
        let decode = ComponentRegisterDecode(reader: BARBlockReader(function: function, bar: block.bir, blockOffset: block.offset),
                                             endpoint: true)
        guard let hdm = decode.capabilities.first(where: { $0.id == CacheMemCapabilityID.hdmDecoder.rawValue }) else {
            throw .notCXL("no HDM Decoder Capability in the component registers")
        }
        let hdmCap: UInt64
        do { hdmCap = try function.barRead(block.bir, offset: block.offset + UInt64(hdm.blockOffset), width: 4) }
        catch { throw .access("HDM Decoder Capability: \(error)") }
        let countField = HDMDecoderCapability.capability.field("Decoder Count")!
        guard let count = HDMDecoderCountEncoding.decoders(forEncoding: UInt8(countField.extract(hdmCap))) else {
            throw .notCXL("reserved HDM Decoder Count encoding")
        }
        guard hdm.blockOffset + HDMDecoderCapability.length(decoders: count) <= ComponentRegisterBlock.size else {
            throw .notCXL("HDM decoders run past the component block")
        }
        return CXLPassthroughLayout(dvsecOffset: dev.offset, dvsecLength: dev.length, dvsecRevision: dev.revision,
                                    capability: capability, componentBAR: block.bir, componentOffset: block.offset,
                                    hdmOffset: hdm.blockOffset, decoderCount: count, hdmCapability: hdmCap)
    }
}
