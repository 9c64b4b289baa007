#if canImport(Glibc)
import Glibc
#endif
import PCI

/// Device memory a VMM can map: an fd in which DPA 0 sits at `memoryFileOffset` (a memfd at 0 for the emulated
/// device; the kernel VFIO device fd at a memory BAR's region offset for a real one). CXL 3.1 §8.2.4.20: the HDM
/// decoders translate host addresses to these DPAs.
public protocol CXLDeviceMemory: AnyObject, Sendable {
    var memoryFD: Int32 { get }
    var memorySize: UInt64 { get }
    /// Where DPA 0 sits in `memoryFD` (what a client passes to mmap). Default 0.
    var memoryFileOffset: UInt64 { get }
    /// `count` bytes from DPA `offset` (inside `memorySize`; the caller checks). Default: pread of `memoryFD`.
    func readMemory(at offset: UInt64, count: Int) throws(PCIError) -> [UInt8]
    /// Writes `data` at DPA `offset` (inside `memorySize`; the caller checks). Default: pwrite of `memoryFD`.
    func writeMemory(at offset: UInt64, _ data: [UInt8]) throws(PCIError)
}

extension CXLDeviceMemory {
    public var memoryFileOffset: UInt64 { 0 }

    public func readMemory(at offset: UInt64, count: Int) throws(PCIError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        let (at, o) = memoryFileOffset.addingReportingOverflow(offset)
        guard !o, at <= UInt64(Int64.max) else { throw .outOfRange("device memory offset 0x\(String(offset, radix: 16))") }
        let n = out.withUnsafeMutableBytes { pread(memoryFD, $0.baseAddress, count, off_t(at)) }
        guard n == count else { throw .io("device memory read: \(n < 0 ? systemErrorText(errno) : "short")") }
        return out
    }

    public func writeMemory(at offset: UInt64, _ data: [UInt8]) throws(PCIError) {
        let (at, o) = memoryFileOffset.addingReportingOverflow(offset)
        guard !o, at <= UInt64(Int64.max) else { throw .outOfRange("device memory offset 0x\(String(offset, radix: 16))") }
        let n = data.withUnsafeBytes { pwrite(memoryFD, $0.baseAddress, data.count, off_t(at)) }
        guard n == data.count else { throw .io("device memory write: \(n < 0 ? systemErrorText(errno) : "short")") }
    }
}
