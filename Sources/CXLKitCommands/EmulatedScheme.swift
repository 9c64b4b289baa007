import PCI
import CXLEmulator

/// `emulated:NAME` or `emulated:path/to/profile.json`: an emulated CXL Type-2 device
/// (CXLEmulator), decoded exactly like hardware — config space through configRead,
/// component registers through BAR0.
public struct EmulatedScheme: TargetScheme {
    public init() {}
    public var scheme: String { "emulated" }
    public var summary: String {
        "an emulated CXL Type-2 device: a profile name (\(DeviceProfile.namedProfiles.joined(separator: ", "))) or a JSON profile path"
    }

    public func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget] {
        guard !rest.isEmpty else {
            throw CommandError("emulated: needs a profile name (\(DeviceProfile.namedProfiles.joined(separator: ", "))) or a JSON profile path")
        }
        let device: EmulatedCXLDevice
        do { device = try EmulatedCXLDevice(rest) } catch { throw CommandError("emulated:\(rest): \(error.description)") }
        return [try ResolvedTarget(function: device)]
    }
}
