import PCI
import CXLEmulator

extension OpeningScheme {
    /// `emulated:NAME` or `emulated:path/to/profile.json`: an emulated CXL Type-2 device
    /// (CXLEmulator), decoded exactly like hardware — config space through configRead,
    /// component registers through BAR0.
    public static let emulated: OpeningScheme = {
        let profiles = "a profile name (\(DeviceProfile.namedProfiles.joined(separator: ", "))) or a JSON profile path"
        return OpeningScheme("emulated", summary: "an emulated CXL Type-2 device: " + profiles, restForm: profiles) { rest, _ throws(CommandError) in
            do throws(EmulatorError) { return try EmulatedCXLDevice(rest) } catch { throw CommandError("emulated:\(rest): \(error.description)") }
        }
    }()
}
