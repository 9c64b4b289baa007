import PCI
import VFIOUser

extension OpeningScheme {
    /// `vfio-user:PATH`: the function a vfio-user server serves on the UNIX socket PATH (e.g. `cxlkit serve`), reached
    /// through `VFIOUserClient` as a VMM reaches it: config space through region 7, BARs through regions 0-5, resets
    /// through DEVICE_RESET (`bus`) and the Express capability (`flr`). The connection lasts as long as the target.
    public static let vfioUser = OpeningScheme("vfio-user", summary: "a device served on a vfio-user UNIX socket (e.g. by cxlkit serve)",
                                               restForm: "a socket path (vfio-user:/run/dev.sock)") { rest, _ throws(CommandError) in
        do throws(PCIError) { return try VFIOUserPCIFunction(socketPath: rest) } catch { throw CommandError(error.description) }
    }
}
