import PCI
import CXL

/// Where the emulated device puts its structures. Consumers must not use these: they
/// find everything by walking config space (capability lists, Register Locator DVSEC,
/// MSI-X Table/PBA Offset), as with real hardware. Tests use them to cross-check.
enum Layout {
    // Config space (PCIe 6.0 §7.5, §7.6).
    static let powerManagement = 0x40
    static let msix = 0x48
    static let pciExpress = 0x60
    static let serialNumber = 0x100
    static let cxlDevice = 0x110
    static let gpf = 0x150
    static let flexBus = 0x160
    static let registerLocator = 0x180
    static let registerLocatorEntries = 2
    static let cxlDeviceRevision: UInt8 = 2
    static let flexBusRevision: UInt8 = 2

    // BAR0 (64-bit, non-prefetchable).
    static let bar0Size: UInt64 = 0x2_0000
    static let componentBlock: UInt64 = 0x0_0000
    static let deviceRegisterBlock: UInt64 = 0x1_0000
    static let deviceRegisterBlockSize: UInt64 = 0x1000
    static let msixTable: UInt64 = 0x1_8000
    static let msixPBA: UInt64 = 0x1_9000
    static let msixRegionSize = 0x2000
    /// Device SRAM (profile `deviceSRAM`): the rest of BAR0 after the MSI-X pages, page aligned.
    static let sram: Range<UInt64> = 0x1_A000..<0x2_0000

    // Inside CXL.cachemem (component block + 0x1000); Pointer fields count from there.
    static let rasCapability = 0x100
    static let linkCapability = 0x200
    static let hdmCapability = 0x300

    // Inside the device register block (§8.2.8).
    static let deviceStatusRegisters = 0x100
    static let memoryDeviceStatusRegisters = 0x200

    static let memoryBARIndex = 2
}
