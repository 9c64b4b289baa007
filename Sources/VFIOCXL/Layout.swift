import CXL
import PCI

/// Why a function cannot be served with CXL enlightenment (it is then served as a
/// plain PCI device, with the reason logged).
public enum VFIOCXLError: Error, Sendable, Equatable, CustomStringConvertible {
    case notCXL(String)
    case access(String)
    case hostSetup(String)
    /// The v4 contract refuses the device at bind (`VFIOCXLv4Device`).
    case refused(String)

    public var description: String {
        switch self {
        case .notCXL(let s): return "not a usable CXL Type-2 device: \(s)"
        case .access(let s): return "device access failed: \(s)"
        case .hostSetup(let s): return "host decoder setup failed: \(s)"
        case .refused(let s): return "the v4 vfio-cxl contract refuses this device: \(s)"
        }
    }
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

    public var cacheCapable: Bool { CXLDeviceDVSEC.cacheCapable.extract(capability) != 0 }

    public static func discover(_ function: any PCIFunction) throws(VFIOCXLError) -> CXLPassthroughLayout {
        let config: ConfigSpace
        do { config = try function.configSnapshot() } catch { throw .access("config space: \(error)") }
        var map: CXLDeviceMap
        do { map = try CXLDeviceMap(config: config) } catch { throw .notCXL("no PCIe DVSEC for CXL Devices") }
        let dev = map.deviceDVSEC
        guard dev.revision >= 1, dev.length >= CXLDeviceDVSEC.length(revision: 1) else {
            throw .notCXL("CXL Device DVSEC revision \(dev.revision), length 0x\(String(dev.length, radix: 16))")
        }
        guard let capability = map.dvsecCapability, CXLDeviceDVSEC.memCapable.extract(capability) == 1 else {
            throw .notCXL("Mem_Capable is clear")
        }
        guard let block = map.componentBlock else { throw .notCXL("no component register block in the Register Locator") }
        guard let bar = function.bars.first(where: { $0.index == block.bir }),
              block.offset + UInt64(ComponentRegisterBlock.size) <= bar.size else {
            throw .notCXL("component register block outside BAR \(block.bir)")
        }
        let failure = map.readComponentRegisters { (offset) throws(PCIError) -> UInt32 in
            UInt32(truncatingIfNeeded: try function.barRead(block.bir, offset: block.offset + UInt64(offset), width: 4))
        }
        guard let hdm = map.hdm else {
            if let failure { throw .access("component registers: \(failure)") }
            throw .notCXL("no HDM Decoder Capability in the component registers")
        }
        guard let count = hdm.decoderCount else { throw .notCXL("reserved HDM Decoder Count encoding") }
        guard hdm.offset + hdm.length <= ComponentRegisterBlock.size else {
            throw .notCXL("HDM decoders run past the component block")
        }
        return CXLPassthroughLayout(dvsecOffset: dev.offset, dvsecLength: dev.length, dvsecRevision: dev.revision,
                                    capability: capability, componentBAR: block.bir, componentOffset: block.offset,
                                    hdmOffset: hdm.offset, decoderCount: count, hdmCapability: UInt64(hdm.capability))
    }
}
