/// Device memory a VMM can map: an fd whose offset 0 is DPA 0 (a memfd for the
/// emulated device; a Linux backend hands out its region fd). CXL 3.1 §8.2.4.20:
/// the HDM decoders translate host addresses to these DPAs.
public protocol CXLDeviceMemory: AnyObject, Sendable {
    var memoryFD: Int32 { get }
    var memorySize: UInt64 { get }
}
