import PCI
import VFIOUser

/// `vfio-user:PATH`: the function a vfio-user server serves on the UNIX socket PATH (e.g. `cxlkit serve`), reached
/// through `VFIOUserClient` as a VMM reaches it: config space through region 7, BARs through regions 0-5, resets
/// through DEVICE_RESET (`bus`) and the Express capability (`flr`). The connection lasts as long as the target.
public struct VFIOUserScheme: TargetScheme {
    public init() {}
    public var scheme: String { "vfio-user" }
    public var summary: String { "a device served on a vfio-user UNIX socket (e.g. by cxlkit serve)" }

    public func resolve(_ rest: String, options: TargetOptions) throws(CommandError) -> [ResolvedTarget] {
        guard !rest.isEmpty else { throw CommandError("vfio-user: needs a socket path (vfio-user:/run/dev.sock)") }
        let fn: VFIOUserPCIFunction
        do { fn = try VFIOUserPCIFunction(socketPath: rest) } catch { throw CommandError(error.description) }
        return [try ResolvedTarget(function: fn)]
    }
}
