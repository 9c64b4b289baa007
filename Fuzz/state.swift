// fuzz-target: CXL state-file loader (CXLStateFile.decode) and restore of what it accepts into an emulated Type-2 device
// fuzz-modules: PCI CXL CXLEmulator
//
// Input: the bytes of a state file (`cxlkit restore DEV FILE`). Each input is tried
// twice: as given (format, version, shape and CRC-32 checks), and with its checksum
// recomputed, so mutations get past the CRC into the snapshot checks. A snapshot that
// loads must re-encode and load to the same value, diff against itself empty, and be
// restorable into a fresh emulated device (virtual time) without trapping.
//
// Seeds: FUZZ_STATE_SEED=FILE scripts/fuzz --repro state /dev/null writes a state file
// saved from the emulated device.
import Foundation
import PCI
import CXL
import CXLEmulator

@inline(never)
func sink<T>(_ value: T) { withExtendedLifetime(value) {} }

func profile() -> DeviceProfile {
    var p = DeviceProfile()
    p.memorySize = 256 << 20   // one HDM granule: cheap to create per input
    return p
}

func freshDevice() -> (EmulatedCXLDevice, CXLStateOptions)? {
    let manual = ManualClock()
    guard let dev = try? EmulatedCXLDevice(profile: profile(), clock: manual, address: "0000:0d:00.0") else { return nil }
    let clock = VirtualCXLClock(onSleep: { d in
        let (s, atto) = d.components
        manual.advance(nanoseconds: UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, atto)) / 1_000_000_000)
    })
    return (dev, CXLStateOptions(clock: clock))
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    if let path = ProcessInfo.processInfo.environment["FUZZ_STATE_SEED"] {
        guard let (dev, options) = freshDevice() else { fatalError("cannot create the emulated device") }
        do {
            let snap = try CXLStateEngine(function: dev, options: options).save()
            try CXLStateFile.encode(snap).write(to: URL(fileURLWithPath: path))
        } catch { fatalError("seed: \(error)") }
        exit(0)
    }
    return 0
}

func withFixedChecksum(_ data: Data) -> Data? {
    guard var object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
          let snapObject = object["snapshot"],
          JSONSerialization.isValidJSONObject(snapObject),
          let snapData = try? JSONSerialization.data(withJSONObject: snapObject),
          let snap = try? JSONDecoder().decode(CXLStateSnapshot.self, from: snapData),
          let sum = try? CXLStateFile.checksum(snap) else { return nil }
    object["checksum"] = sum
    return try? JSONSerialization.data(withJSONObject: object)
}

func load(_ data: Data) {
    let snap: CXLStateSnapshot
    do { snap = try CXLStateFile.decode(data) } catch { sink(error.description); return }
    // Round trip.
    do {
        let again = try CXLStateFile.decode(try CXLStateFile.encode(snap, savedAt: nil))
        if again != snap { fatalError("state file round trip changed the snapshot") }
    } catch { fatalError("state file round trip failed: \(error)") }
    let diff = CXLStateDiff(snap, snap)
    if !diff.isEmpty { fatalError("a snapshot differs from itself") }
    // Restore into a fresh device.
    guard let (dev, options) = freshDevice() else { return }
    let engine = CXLStateEngine(function: dev, options: options)
    do { sink(try engine.restore(snap)) } catch { sink(error.description) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTest(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let d = Data(bytes: data, count: size)
    load(d)
    if let fixed = withFixedChecksum(d) { load(fixed) }
    return 0
}
