/// What `cxlkit serve` reports on its control socket (`status`): who is attached, what
/// the device went through, and whether vfio-cxl gates its memory.
public struct ServeStatus: Sendable, Hashable, Codable {
    /// The emulated device's profile, or `vfio` for a real device (`serve --device`).
    public var profile: String
    /// `emulated:NAME`, or the real device's `vfio:BDF`.
    public var device: String
    /// A vfio-user client (a VMM) is connected now.
    public var clientAttached: Bool
    /// Client connections that have ended.
    public var clientsServed: Int
    /// Resets the served device went through, by method: `device_reset` (VFIO_USER_DEVICE_RESET),
    /// `flr` (a client's Initiate FLR), `cxl` (a client's Initiate CXL Reset).
    public var resets: [String: Int]
    /// MSI-X vectors the emulator's interrupt timer raised (0 for a real device: its interrupts go from the kernel
    /// straight to the client's eventfds).
    public var interruptsRaised: Int
    /// vfio-cxl's device-memory region is gated (a reset in progress, or decoder 0 not
    /// committed); nil when the device is not served through vfio-cxl.
    public var memoryGated: Bool?

    public init(profile: String, device: String, clientAttached: Bool, clientsServed: Int, resets: [String: Int],
                interruptsRaised: Int, memoryGated: Bool?) {
        self.profile = profile
        self.device = device
        self.clientAttached = clientAttached
        self.clientsServed = clientsServed
        self.resets = resets
        self.interruptsRaised = interruptsRaised
        self.memoryGated = memoryGated
    }

    enum CodingKeys: String, CodingKey {
        case profile, device, resets
        case clientAttached = "client_attached", clientsServed = "clients_served"
        case interruptsRaised = "interrupts_raised", memoryGated = "memory_gated"
    }
}
