// The shipped device profiles. Each is the `DeviceProfile` defaults (a compliant Type-2 accelerator) or another
// shipped profile, plus what makes it different; `cxlkit serve --profile NAME` and `emulated:NAME` pick them.

enum NamedProfiles {
    static let all: [String: DeviceProfile] = Dictionary(
        uniqueKeysWithValues: [type2, gpuFirmwareCommitted, flrLosesState, cxlAccel].map { ($0.name, $0) })

    /// A compliant CXL Type-2 accelerator: 2 HDM decoders, 1 GiB, software-programmed.
    static let type2 = DeviceProfile(
        "type2", "compliant CXL Type-2 accelerator: 2 HDM decoders, 1 GiB device memory, CXL Reset with Mem Clr"
    ) {
        $0.capabilities.cache = true
        $0.capabilities.cacheWritebackInvalidate = true
    }

    /// A GPU whose firmware committed and locked decoder 0 at power-on.
    static let gpuFirmwareCommitted = DeviceProfile(
        "gpu-fw-committed",
        "GPU-like Type-2 device: firmware committed and locked decoder 0 over all 1 GiB at HPA 0x4000000000, cache capable, CXL Reset capable",
        like: type2
    ) {
        $0.deviceID = 0x7203
        $0.classCode = 0x03_0200
        $0.msixVectors = 8
        $0.capabilities.cxlResetTimeoutMilliseconds = 1000
        $0.capabilities.memClear = false
        $0.capabilities.cacheSizeUnit = 2
        $0.capabilities.cacheSize = 4
        $0.firmware = DeviceProfile.FirmwareState()
        $0.firmware?.cacheEnable = true
    }

    /// Like type2, but an FLR wipes the CXL DVSEC and the HDM decoders.
    static let flrLosesState = DeviceProfile(
        "flr-loses-state",
        "like type2, but non-compliant: an FLR resets the CXL DVSEC (CONFIG_LOCK included) and the HDM decoders",
        like: type2
    ) {
        $0.deviceID = 0x7204
        $0.faults.flrLosesCXLState = true
    }

    /// What the v4 vfio-cxl contract binds (`cxlkit serve --uapi v4`), mirroring QEMU's `cxl-accel` register
    /// choices: one HDM decoder, committed and locked by firmware; CXL Reset capable with Mem Clr; the Register
    /// Locator names the component and device register blocks; BAR0 also carries mmap-able device SRAM.
    static let cxlAccel = DeviceProfile(
        "cxl-accel",
        "v4-ready accelerator (like QEMU's cxl-accel): 1 HDM decoder committed and locked by firmware over 256 MiB at HPA 0x4000000000, CXL Reset with Mem Clr, device SRAM in BAR0",
        like: type2
    ) {
        $0.deviceID = 0x7205
        $0.memorySize = 256 << 20
        $0.decoderCount = 1
        $0.msixVectors = 6
        $0.deviceSRAM = true
        $0.firmware = DeviceProfile.FirmwareState()
    }
}

extension DeviceProfile {
    /// A profile named `name`: `base` (the defaults unless given) changed by `change`.
    init(_ name: String, _ description: String, like base: DeviceProfile = DeviceProfile(), _ change: (inout DeviceProfile) -> Void) {
        self = base
        self.name = name
        self.description = description
        change(&self)
    }
}
