import CXLEmulator
import CXLKitCommands
import Foundation
import Testing

/// With no TARGET, commands use the first CXL function under sysfs, and the embedded
/// emulated device when the machine has none.
@Suite("default target")
struct DefaultTargetTests {
    func tree(_ functions: [(address: String, fixture: String)]) throws -> URL {
        let root = try temporaryDirectory()
        for f in functions {
            let dir = root.appendingPathComponent("bus/pci/devices/" + f.address)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Data(try fixture(f.fixture)).write(to: dir.appendingPathComponent("config"))
        }
        return root
    }

    @Test func noCXLFunctionMeansTheEmbeddedEmulatedDevice() throws {
        let root = try tree([])
        defer { try? FileManager.default.removeItem(at: root) }
        var r = TargetResolver()
        r.options.sysfsRoot = root.path
        let (target, note) = r.defaultTarget()
        #expect(target == TargetResolver.embeddedTarget)
        #expect(note.contains("embedded emulated device"))
        #expect(try r.resolve(target).count == 1)
    }

    @Test func theFirstCXLFunctionWins() throws {
        let root = try tree([("0000:0c:00.0", "qemu-cxl/region/rootport/config.bin"), ("0000:0d:00.0", "qemu-cxl/region/endpoint/config.bin")])
        defer { try? FileManager.default.removeItem(at: root) }
        var r = TargetResolver()
        r.options.sysfsRoot = root.path
        #expect(r.defaultTarget().target == "0000:0c:00.0")
    }
}

/// `vfio:BDF` on a machine where the function is not bound to vfio-pci (a host bridge never is; this machine has
/// no /dev/vfio at all): one line naming the function and what to do, never a crash.
@Suite struct VFIOTargetErrorTests {
    @Test func hostBridgeIsOneClearErrorLine() {
        do {
            _ = try TargetResolver().resolve("vfio:0000:00:00.0")
            Issue.record("vfio:0000:00:00.0 resolved")
        } catch {
            #expect(error.message.hasPrefix("vfio:0000:00:00.0: "))
            #expect(!error.message.contains("\n"))
        }
        #expect(throws: CommandError("vfio: needs a PCI address bound to vfio-pci (vfio:0000:3b:00.0)")) { try TargetResolver().resolve("vfio:") }
        #expect(throws: CommandError("vfio:zz: zz: not a PCI address (expected DDDD:BB:DD.F or BB:DD.F)")) { try TargetResolver().resolve("vfio:zz") }
    }
}

/// The schemes whose REST names one function to open (`OpeningScheme`): an empty REST is refused with what it should
/// name, a REST that does not open is one line naming the target, and an opened one is the target, named by its address.
@Suite struct OpeningSchemeTests {
    @Test(arguments: [
        ("vfio-user:", "vfio-user: needs a socket path (vfio-user:/run/dev.sock)"),
        ("control:", "control: needs a socket path (control:/run/cxl.ctl)"),
        ("emulated:", "emulated: needs a profile name (\(DeviceProfile.namedProfiles.joined(separator: ", "))) or a JSON profile path"),
    ])
    func anEmptyRestSaysWhatItShouldName(target: String, message: String) {
        #expect(throws: CommandError(message)) { try TargetResolver().resolve(target) }
    }

    @Test func aRestThatDoesNotOpenIsOneLine() throws {
        for target in ["vfio-user:/nonexistent/sock", "control:/nonexistent/sock", "emulated:no-such-profile"] {
            do {
                _ = try TargetResolver().resolve(target)
                Issue.record("\(target) resolved")
            } catch {
                #expect(!error.message.isEmpty && !error.message.contains("\n"), "\(target): \(error.message)")
            }
        }
        #expect(throws: CommandError.self) { try TargetResolver().resolve("emulated:no-such-profile") }
    }

    @Test func anOpenedFunctionIsTheTargetNamedByItsAddress() throws {
        let t = try TargetResolver().resolve("emulated:type2")
        #expect(t.count == 1 && t[0].name == "emulated:type2" && t[0].function != nil)
        #expect(TargetResolver().schemes["emulated"]?.summary.hasPrefix("an emulated CXL Type-2 device: a profile name (") == true)
    }
}
