// The shipped device profiles, as the JSON a user would write (README, emulated device).

enum NamedProfiles {
    static let json: [String: String] = [
        "type2": type2,
        "gpu-fw-committed": gpuFirmwareCommitted,
        "flr-loses-state": flrLosesState,
        "cxl-accel": cxlAccel,
    ]

    /// A compliant CXL Type-2 accelerator: 2 HDM decoders, 1 GiB, software-programmed.
    static let type2 = """
    {
      "name": "type2",
      "description": "compliant CXL Type-2 accelerator: 2 HDM decoders, 1 GiB device memory, CXL Reset with Mem Clr",
      "vendorID": "0x1e98",
      "deviceID": "0x7202",
      "classCode": "0x120000",
      "memorySize": "1GiB",
      "decoderCount": 2,
      "msixVectors": 4,
      "capabilities": {
        "cache": true,
        "cacheWritebackInvalidate": true,
        "cxlReset": true,
        "cxlResetTimeoutMilliseconds": 100,
        "memClear": true
      }
    }
    """

    /// A GPU whose firmware committed and locked decoder 0 at power-on.
    static let gpuFirmwareCommitted = """
    {
      "name": "gpu-fw-committed",
      "description": "GPU-like Type-2 device: firmware committed and locked decoder 0 over all 1 GiB at HPA 0x4000000000, cache capable, CXL Reset capable",
      "vendorID": "0x1e98",
      "deviceID": "0x7203",
      "classCode": "0x030200",
      "memorySize": "1GiB",
      "decoderCount": 2,
      "msixVectors": 8,
      "capabilities": {
        "cache": true,
        "cacheWritebackInvalidate": true,
        "cxlReset": true,
        "cxlResetTimeoutMilliseconds": 1000,
        "memClear": false,
        "cacheSizeUnit": 2,
        "cacheSize": 4
      },
      "firmware": {
        "memHwInitMode": true,
        "base": "0x4000000000",
        "lockDecoder": true,
        "hdmDecoderEnable": true,
        "memEnable": true,
        "cacheEnable": true
      }
    }
    """

    /// Like type2, but an FLR wipes the CXL DVSEC and the HDM decoders.
    static let flrLosesState = """
    {
      "name": "flr-loses-state",
      "description": "like type2, but non-compliant: an FLR resets the CXL DVSEC (CONFIG_LOCK included) and the HDM decoders",
      "vendorID": "0x1e98",
      "deviceID": "0x7204",
      "classCode": "0x120000",
      "memorySize": "1GiB",
      "decoderCount": 2,
      "msixVectors": 4,
      "capabilities": {
        "cache": true,
        "cacheWritebackInvalidate": true,
        "cxlReset": true,
        "cxlResetTimeoutMilliseconds": 100,
        "memClear": true
      },
      "faults": { "flrLosesCXLState": true }
    }
    """

    /// What the v4 vfio-cxl contract binds (`cxlkit serve --uapi v4`), mirroring QEMU's `cxl-accel` register
    /// choices: one HDM decoder, committed and locked by firmware; CXL Reset capable with Mem Clr; the Register
    /// Locator names the component and device register blocks; BAR0 also carries mmap-able device SRAM.
    static let cxlAccel = """
    {
      "name": "cxl-accel",
      "description": "v4-ready accelerator (like QEMU's cxl-accel): 1 HDM decoder committed and locked by firmware over 256 MiB at HPA 0x4000000000, CXL Reset with Mem Clr, device SRAM in BAR0",
      "vendorID": "0x1e98",
      "deviceID": "0x7205",
      "classCode": "0x120000",
      "memorySize": "256MiB",
      "decoderCount": 1,
      "msixVectors": 6,
      "deviceSRAM": true,
      "capabilities": {
        "cache": true,
        "cacheWritebackInvalidate": true,
        "cxlReset": true,
        "cxlResetTimeoutMilliseconds": 100,
        "memClear": true
      },
      "firmware": {
        "memHwInitMode": true,
        "base": "0x4000000000",
        "lockDecoder": true,
        "hdmDecoderEnable": true,
        "memEnable": true,
        "cacheEnable": false
      }
    }
    """
}
