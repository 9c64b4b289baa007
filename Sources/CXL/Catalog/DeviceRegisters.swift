import PCI

// CXL Memory Device registers (CXL 3.1 §8.2.8): the block the Register Locator
// names with identifier 3. A capabilities array, then one structure per capability.

public enum DeviceRegisterBlock {
    /// Device capability IDs (§8.2.8.2.1).
    public enum CapabilityID: UInt16, Sendable, CaseIterable, Codable {
        case deviceStatus = 0x0001
        case primaryMailbox = 0x0002
        case secondaryMailbox = 0x0003
        case memoryDeviceStatus = 0x4000

        public var name: String {
            switch self {
            case .deviceStatus: return "Device Status Registers"
            case .primaryMailbox: return "Primary Mailbox Registers"
            case .secondaryMailbox: return "Secondary Mailbox Registers"
            case .memoryDeviceStatus: return "Memory Device Status Registers"
            }
        }
    }

    /// Device Capabilities Array Register (§8.2.8.1), 64-bit at +0.
    public static let capabilitiesArray = RegisterLayout("Device Capabilities Array Register", offset: 0x00, width: 8, [
        .init("Capability ID", 15, 0, .ro),
        .init("Version", 23, 16, .ro, reset: 1),
        .init("Type", 27, 24, .ro),
        .init("Capabilities Count", 47, 32, .ro),
    ])

    /// Capability header i (1-based) at 0x10 * i: three DWORDs (§8.2.8.2).
    public static let headerStride = 0x10
    public static let capabilityHeader = RegisterBlockLayout("Device Capability Header", [
        RegisterLayout("Capability ID and Version", offset: 0x0, width: 4, [.init("Capability ID", 15, 0, .ro), .init("Version", 23, 16, .ro)]),
        RegisterLayout("Offset", offset: 0x4, width: 4, [.init("Offset", 31, 0, .ro, "from the start of the device register block")]),
        RegisterLayout("Length", offset: 0x8, width: 4, [.init("Length", 31, 0, .ro)]),
    ])

    /// Device Status Registers (§8.2.8.3).
    public static let eventStatus = RegisterLayout("Event Status", offset: 0x00, width: 8, [
        .init("Informational Event Log", bit: 0, .ro), .init("Warning Event Log", bit: 1, .ro),
        .init("Failure Event Log", bit: 2, .ro), .init("Fatal Event Log", bit: 3, .ro),
        .init("Dynamic Capacity Event Log", bit: 4, .ro),
    ])
    public static let deviceStatus = RegisterBlockLayout(CapabilityID.deviceStatus.name, [eventStatus])

    /// Mailbox Registers (§8.2.8.4).
    public static let mailbox = RegisterBlockLayout(CapabilityID.primaryMailbox.name, [
        RegisterLayout("Mailbox Capabilities", offset: 0x00, width: 4, [
            .init("Payload Size", 4, 0, .ro, "2^n bytes, 8 (256 B) to 20 (1 MB)"),
            .init("MB Doorbell Interrupt Capable", bit: 5, .ro),
            .init("Background Command Complete Interrupt Capable", bit: 6, .ro),
            .init("Interrupt Message Number", 10, 7, .ro),
        ]),
        RegisterLayout("Mailbox Control", offset: 0x04, width: 4, [
            .init("Doorbell", bit: 0, .rw), .init("MB Doorbell Interrupt", bit: 1, .rw),
            .init("Background Command Complete Interrupt", bit: 2, .rw),
        ]),
        RegisterLayout("Command Register", offset: 0x08, width: 8, [
            .init("Command Opcode", 15, 0, .rw), .init("Payload Length", 36, 16, .rw),
        ]),
        RegisterLayout("Mailbox Status", offset: 0x10, width: 8, [
            .init("Background Operation", bit: 0, .ro), .init("Return Code", 47, 32, .ro),
            .init("Vendor Specific Extended Status", 63, 48, .ro),
        ]),
        RegisterLayout("Background Command Status", offset: 0x18, width: 8, [
            .init("Command Opcode", 15, 0, .ro), .init("Percentage Complete", 22, 16, .ro),
            .init("Return Code", 47, 32, .ro), .init("Vendor Specific Extended Status", 63, 48, .ro),
        ]),
    ])
    /// The mailbox payload starts at +0x20.
    public static let mailboxPayloadOffset = 0x20

    public static let mediaStatus = RegisterField("Media Status", 3, 2, .ro, values: [0: "Not Ready", 1: "Ready", 2: "Error", 3: "Disabled"])
    /// Memory Device Status Register (§8.2.8.5.1).
    public static let memoryDeviceStatusRegister = RegisterLayout("Memory Device Status", offset: 0x00, width: 8, [
        .init("Device Fatal", bit: 0, .ro),
        .init("FW Halt", bit: 1, .ro),
        mediaStatus,
        .init("Mailbox Interfaces Ready", bit: 4, .ro),
        .init("Reset Needed", 7, 5, .ro, values: [0: "none", 1: "cold", 2: "warm", 3: "hot", 4: "CXL"]),
    ])
    public static let memoryDeviceStatus = RegisterBlockLayout(CapabilityID.memoryDeviceStatus.name, [memoryDeviceStatusRegister])
}
