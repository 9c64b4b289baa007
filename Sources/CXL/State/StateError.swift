import PCI

/// Why a save, restore, reset or state-file operation could not be carried out.
/// Per-register results of a restore that ran are in `RestoreReport`, not here.
public enum CXLStateError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A config or BAR access failed.
    case access(PCIError)
    /// The function has no PCIe DVSEC for CXL Devices (DVSEC ID 0).
    case notCXLDevice(String)
    /// The structures the snapshot was taken from are not where the live device has
    /// them (a different device, or a different firmware layout).
    case layoutMismatch(String)
    /// A snapshot whose layout or registers cannot be those of a real function
    /// (offsets outside config space, misaligned, duplicated, too many decoders).
    case invalidSnapshot(String)
    /// The state belongs to another device.
    case deviceMismatch(expected: CXLDeviceIdentity, found: CXLDeviceIdentity)
    /// The device's read-only capability registers differ from the ones the state was saved with (nothing was
    /// written): each difference, named.
    case capabilityMismatch([String])
    /// The state file is not valid JSON of the expected shape (includes truncation).
    case corruptFile(String)
    /// The state file's checksum does not match its contents.
    case checksumMismatch(expected: String, computed: String)
    /// The state file was written by a newer format version.
    case unsupportedVersion(found: Int, supported: Int)
    /// Reading or writing the state file failed.
    case fileIO(String)
    /// The requested reset is not available on this function.
    case resetUnsupported(String)
    /// Cache Write Back and Invalidation did not report Cache Invalid in time.
    case cacheInvalidTimeout(milliseconds: Int)
    /// CXL Reset did not report Reset Complete or Reset Error in time.
    case resetTimeout(milliseconds: Int)
    /// CXL Reset reported Reset Error (DVSEC CXL Status2 bit 2).
    case resetError
    /// The reset itself (FLR, bus, link) failed in the backend.
    case resetFailed(String)

    public var description: String {
        switch self {
        case .access(let e): return "register access failed: \(e)"
        case .notCXLDevice(let s): return "not a CXL device: \(s)"
        case .layoutMismatch(let s): return "device layout does not match the saved state: \(s)"
        case .invalidSnapshot(let s): return "invalid state: \(s)"
        case .deviceMismatch(let e, let f): return "state belongs to \(e), this device is \(f)"
        case .capabilityMismatch(let d): return "the device's capabilities differ from the saved state's, nothing written: " + d.joined(separator: "; ")
        case .corruptFile(let s): return "corrupt state file: \(s)"
        case .checksumMismatch(let e, let c): return "state file checksum mismatch: file says \(e), contents give \(c)"
        case .unsupportedVersion(let f, let s): return "state file version \(f) is newer than supported version \(s)"
        case .fileIO(let s): return "state file: \(s)"
        case .resetUnsupported(let s): return "reset not supported: \(s)"
        case .cacheInvalidTimeout(let ms): return "cache write back and invalidation: Cache Invalid not set within \(ms) ms"
        case .resetTimeout(let ms): return "CXL Reset: neither Reset Complete nor Reset Error within \(ms) ms"
        case .resetError: return "CXL Reset: device reported CXL Reset Error"
        case .resetFailed(let s): return "reset failed: \(s)"
        }
    }
}
