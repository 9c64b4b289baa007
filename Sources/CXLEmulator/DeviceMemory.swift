#if canImport(Glibc)
import PCI
import Glibc
#endif
import CSwiftCXLSystem

/// Errors reaching device memory.
public enum DeviceMemoryError: Error, Sendable, Equatable, CustomStringConvertible {
    /// memfd_create, ftruncate or mmap failed.
    case system(String)
    /// No committed HDM decoder (or, with HDM Decoder Enable 0, no DVSEC range) claims the HPA.
    case notDecoded(hpa: UInt64)
    /// A decoder claims the HPA, but the interleave sends it to another device of the set.
    case otherInterleavePosition(hpa: UInt64, position: Int, devicePosition: Int)
    /// The DPA the HPA translates to is past the end of device memory.
    case beyondCapacity(hpa: UInt64, dpa: UInt64)
    /// DVSEC Control Mem_Enable is 0: the device does not respond to CXL.mem.
    case memDisabled
    /// Range 1 Size Low Memory_Active is 0: media not ready.
    case memoryNotActive
    /// A CXL Reset is in progress.
    case resetInProgress
    /// DPA range outside device memory (BAR or direct DPA access).
    case dpaOutOfRange(dpa: UInt64, count: Int)

    public var description: String {
        switch self {
        case .system(let s): return s
        case .notDecoded(let h): return "HPA \(hex64(h)) is not claimed by any committed HDM decoder or enabled DVSEC range"
        case .otherInterleavePosition(let h, let p, let d):
            return "HPA \(hex64(h)) belongs to interleave position \(p); this device is position \(d)"
        case .beyondCapacity(let h, let d): return "HPA \(hex64(h)) translates to DPA \(hex64(d)), past the end of device memory"
        case .memDisabled: return "CXL.mem is disabled (DVSEC Control Mem_Enable = 0)"
        case .memoryNotActive: return "device memory is not active (Memory_Active = 0)"
        case .resetInProgress: return "a CXL Reset is in progress"
        case .dpaOutOfRange(let d, let c): return "DPA \(hex64(d)) + \(c) is outside device memory"
        }
    }
}

/// Device memory: a memfd mapped shared, so later layers can hand the same pages to
/// a VM (vfio-user region with an fd) with no copy. Its size is sealed
/// (`csystem_memfd_create_fixed`): whoever holds the fd can write the memory but never
/// shrink it under this mapping.
final class DeviceMemory: @unchecked Sendable {
    let fd: Int32
    let size: UInt64
    private(set) var base: UnsafeMutableRawPointer

    init(size: UInt64, name: String) throws(DeviceMemoryError) {
        // Sealed to its size: the fd goes to vfio-user clients, and a shrink would SIGBUS this mapping.
        let fd = csystem_memfd_create_fixed(name, size)
        guard fd >= 0 else { throw .system("memfd_create(\(size) bytes, size sealed): \(systemErrorText(errno))") }
        guard let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            let e = systemErrorText(errno)
            close(fd)
            throw .system("mmap(\(size)): \(e)")
        }
        self.fd = fd
        self.size = size
        self.base = p
    }

    deinit {
        munmap(base, Int(size))
        close(fd)
    }

    func read(dpa: UInt64, into out: UnsafeMutableRawBufferPointer) {
        out.baseAddress!.copyMemory(from: base + Int(dpa), byteCount: out.count)
    }

    func write(dpa: UInt64, from bytes: UnsafeRawBufferPointer) {
        (base + Int(dpa)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    }

    /// Zero everything by punching the whole file out (MADV_REMOVE on the shared
    /// mapping frees the shmem pages; holes read as zeros), so clearing a large device
    /// costs nothing and the size never changes under another mapper (a VM).
    func clear() {
        if madvise(base, Int(size), MADV_REMOVE) != 0 {
            memset(base, 0, Int(size))
        }
    }
}
