import Testing
import Foundation
import PCI
import CXL
@testable import CXLEmulator
#if canImport(Glibc)
import Glibc
#endif

@Suite("Device profiles")
struct ProfileTests {
    @Test func namedProfiles() throws {
        #expect(DeviceProfile.namedProfiles == ["cxl-accel", "flr-loses-state", "gpu-fw-committed", "type2"])
        let a = try DeviceProfile.named("cxl-accel")
        #expect(a.decoderCount == 1 && a.deviceSRAM && a.firmware?.lockDecoder == true && a.capabilities.cxlReset && a.capabilities.memClear)
        let t = try DeviceProfile.named("type2")
        #expect(t.decoderCount == 2 && t.memorySize == GiB && t.firmware == nil && t.faults == DeviceProfile.Faults())
        #expect(t.capabilities.cache && t.capabilities.cxlReset && t.capabilities.memClear)
        let g = try DeviceProfile.named("gpu-fw-committed")
        #expect(g.firmware?.lockDecoder == true && g.capabilities.cache && g.capabilities.cxlReset)
        let f = try DeviceProfile.named("flr-loses-state")
        #expect(f.faults.flrLosesCXLState)
        var tf = f
        tf.faults.flrLosesCXLState = false
        tf.name = t.name; tf.description = t.description; tf.deviceID = t.deviceID
        #expect(tf == t, "flr-loses-state is type2 plus the fault")
    }

    /// The JSON a user would write for `type2`, as it was first shipped: the base the other shipped profiles'
    /// rows below change.
    static let type2JSON = """
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

    /// Each shipped profile as JSON: the keys it sets over `type2JSON` (objects merge key by key, so a row states
    /// only what differs), as first shipped.
    static let shippedProfileRows: [(name: String, overType2: String)] = [
        ("type2", "{}"),
        ("gpu-fw-committed", """
            {"name": "gpu-fw-committed",
             "description": "GPU-like Type-2 device: firmware committed and locked decoder 0 over all 1 GiB at HPA 0x4000000000, cache capable, CXL Reset capable",
             "deviceID": "0x7203", "classCode": "0x030200", "msixVectors": 8,
             "capabilities": {"cxlResetTimeoutMilliseconds": 1000, "memClear": false, "cacheSizeUnit": 2, "cacheSize": 4},
             "firmware": {"memHwInitMode": true, "base": "0x4000000000", "lockDecoder": true, "hdmDecoderEnable": true, "memEnable": true, "cacheEnable": true}}
            """),
        ("flr-loses-state", """
            {"name": "flr-loses-state",
             "description": "like type2, but non-compliant: an FLR resets the CXL DVSEC (CONFIG_LOCK included) and the HDM decoders",
             "deviceID": "0x7204", "faults": {"flrLosesCXLState": true}}
            """),
        ("cxl-accel", """
            {"name": "cxl-accel",
             "description": "v4-ready accelerator (like QEMU's cxl-accel): 1 HDM decoder committed and locked by firmware over 256 MiB at HPA 0x4000000000, CXL Reset with Mem Clr, device SRAM in BAR0",
             "deviceID": "0x7205", "memorySize": "256MiB", "decoderCount": 1, "msixVectors": 6, "deviceSRAM": true,
             "firmware": {"memHwInitMode": true, "base": "0x4000000000", "lockDecoder": true, "hdmDecoderEnable": true, "memEnable": true, "cacheEnable": false}}
            """),
    ]

    /// `overlay`'s keys over `base`'s, objects merged key by key.
    static func merged(_ base: [String: Any], _ overlay: [String: Any]) -> [String: Any] {
        base.merging(overlay) { b, o in
            if let bo = b as? [String: Any], let oo = o as? [String: Any] { return merged(bo, oo) }
            return o
        }
    }

    @Test func everyShippedProfileHasARow() {
        #expect(Set(Self.shippedProfileRows.map(\.name)) == Set(DeviceProfile.namedProfiles))
    }

    /// The shipped profiles are declared in Swift as changes to the defaults; each must stay the profile its JSON
    /// form (as a user would write it, and as it was first shipped) describes, and pass validation.
    @Test(arguments: shippedProfileRows)
    func shippedProfileMatchesItsJSON(name: String, overType2: String) throws {
        func object(_ text: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(name): \(text)")
        }
        let json = try JSONSerialization.data(withJSONObject: Self.merged(try object(Self.type2JSON), try object(overType2)))
        let shipped = try DeviceProfile.named(name)
        #expect(shipped == (try DeviceProfile.decode(Array(json))), "\(name)")
        #expect(throws: Never.self) { try shipped.validate() }
    }

    @Test func firmwareCommittedPowerOnState() throws {
        let dev = try EmulatedCXLDevice(profile: DeviceProfile.named("gpu-fw-committed"), clock: ManualClock())
        let d = try Discovered(dev)
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.capability)) & 0x8 != 0)            // Mem_HwInit_Mode
        #expect(try dev.cfg16(d.dvsec(CXLDeviceDVSEC.control)) & 0x5 == 0x5)          // Cache_Enable, Mem_Enable
        #expect(try dev.cfg32(d.dvsec(CXLDeviceDVSEC.rangeRegisters(1).baseHigh)) == 0x40)               // Range 1 Base
        #expect(try dev.bar32(d.hdm + 4) & 2 == 2)                       // HDM Decoder Enable
        let ctl = try dev.decoderControl(d, 0)
        #expect(ctl & 0x700 == 0x700)                                    // Lock On Commit, Commit, Committed
        #expect(try dev.barRead(0, offset: d.decoder(0), width: 8) == 0x40_0000_0000)
        #expect(try dev.barRead(0, offset: d.decoder(0) + 8, width: 8) == GiB)
        // Locked: programming is frozen.
        try dev.setBar32(d.decoder(0) + 4, 0)
        #expect(try dev.bar32(d.decoder(0) + 4) == 0x40)
        try dev.writeMemory(hpa: 0x40_0000_0000 + GiB - 1, bytes: [3])
        #expect(try dev.readDPA(GiB - 1, count: 1) == [3])
        // Power-on only: a conventional reset loses it.
        try dev.reset(.bus)
        #expect(try dev.decoderControl(d, 0) == 0)
    }

    @Test func jsonRoundTrip() throws {
        for name in DeviceProfile.namedProfiles {
            let p = try DeviceProfile.named(name)
            #expect(try DeviceProfile.decode(Array(p.jsonString().utf8)) == p)
        }
        var p = DeviceProfile()
        p.firmware = .init()
        p.firmware?.size = 512 * MiB
        p.timing.cxlResetMilliseconds = 7.5
        #expect(try DeviceProfile.decode(Array(p.jsonString().utf8)) == p)
    }

    /// A key left out, or `null` where the default is nil, takes the default; nested objects merge key by key.
    @Test func leftOutKeysTakeTheDefaults() throws {
        #expect(try DeviceProfile.decode(Array("{}".utf8)) == DeviceProfile())
        let p = try DeviceProfile.decode(Array(#"{"firmware": null, "capabilities": {"viral": true}, "timing": {"timeFactor": 0.5}}"#.utf8))
        var expected = DeviceProfile()
        expected.capabilities.viral = true
        expected.timing.timeFactor = 0.5
        #expect(p == expected)
        let f = try DeviceProfile.decode(Array(#"{"firmware": {"lockDecoder": false}, "serialNumber": "0xFFFFFFFFFFFFFFFF"}"#.utf8))
        var fw = DeviceProfile.FirmwareState()
        fw.lockDecoder = false
        #expect(f.firmware == fw && f.serialNumber == .max)
    }

    @Test func numbersAsStrings() throws {
        let p = try DeviceProfile.decode(Array(#"{"memorySize": "0x20000000", "vendorID": "0x10de", "serialNumber": 7, "firmware": {"base": "16GiB", "size": "256MiB"}}"#.utf8))
        #expect(p.memorySize == 512 * MiB && p.vendorID == 0x10DE && p.serialNumber == 7)
        #expect(p.firmware?.base == 16 * GiB && p.firmware?.size == 256 * MiB)
    }

    @Test(arguments: [
        (#"{"memorySize": "100MiB"}"#, "multiple of 256 MiB"),
        (#"{"memorySize": 0}"#, "multiple of 256 MiB"),
        (#"{"decoderCount": 3}"#, "Decoder Count encoding"),
        (#"{"decoderCount": 64}"#, "Decoder Count encoding"),
        (#"{"msixVectors": 0}"#, "msixVectors"),
        (#"{"capabilities": {"cxlResetTimeoutMilliseconds": 50}}"#, "10, 100, 1000"),
        (#"{"capabilities": {"cxlReset": false}}"#, "memClear needs"),
        (#"{"capabilities": {"cachesize": 1}}"#, "unknown key 'cachesize' in capabilities"),
        (#"{"faults": {"flrLosesState": true}}"#, "unknown key 'flrLosesState' in faults"),
        (#"{"timing": {"timeFactor": -1}}"#, "timeFactor"),
        (#"{"vendorID": "0x10000"}"#, "vendorID: '0x10000' is not a number that fits UInt16"),
        (#"{"vendorID": 70000}"#, "vendorID: 70000 is not a number that fits UInt16"),
        (#"{"firmware": {"size": "lots"}}"#, "firmware.size: 'lots' is not a number"),
        (#"{"capabilities": {"cache": "yes"}}"#, "capabilities.cache"),
        (#"{"timing": 3}"#, "timing"),
        (#"{"firmware": {"base": "0x1000"}}"#, "not 256 MiB aligned"),
        (#"{"firmware": {"size": "2GiB"}}"#, "exceeds memorySize"),
        (#"{"memorySize": true}"#, "memorySize"),
        (#"[1]"#, "not a valid device profile"),
        (#"{"#, "not a valid device profile"),
        // Nesting no profile has: past the parser's depth limit, and deep under a key (every level read by the
        // lenient reader first): an error either way, never a stack overflow.
        (String(repeating: "[", count: 100_000), "not a valid device profile"),
        (#"{"name": "# + String(repeating: "[", count: 300) + String(repeating: "]", count: 300) + "}", "name"),
        (#"{"capabilities": {"cache": "# + String(repeating: #"{"a": "#, count: 300) + "1" + String(repeating: "}", count: 301) + "}", "capabilities.cache"),
    ])
    func invalidProfiles(json: String, message: String) {
        do {
            _ = try DeviceProfile.decode(Array(json.utf8), source: "t.json")
            Issue.record("accepted \(json)")
        } catch {
            #expect(error.description.contains(message), "\(json): \(error.description)")
        }
    }

    /// The example profile in the README's emulated-device section is valid.
    @Test func documentedExampleParses() throws {
        let root = String(#filePath).split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
        let f = try #require(fopen(root + "/README.md", "r"))
        defer { fclose(f) }
        var text = ""
        var buf = [CChar](repeating: 0, count: 4096)
        while fgets(&buf, Int32(buf.count), f) != nil { text += String(cString: buf) }
        let section = try #require(text.range(of: "## The emulated CXL Type-2 device"))
        let start = try #require(text.range(of: "```json\n", range: section.upperBound..<text.endIndex))
        let end = try #require(text.range(of: "\n```", range: start.upperBound..<text.endIndex))
        let p = try DeviceProfile.decode(Array(text[start.upperBound..<end.lowerBound].utf8), source: "README.md")
        #expect(p.name == "slow-commit" && p.memorySize == 4 * GiB && p.timing.commitLatencyMicroseconds == 15_000)
    }

    @Test func unknownNameListsTheShippedOnes() {
        #expect(throws: ProfileError.unknownName("gpu", available: ["cxl-accel", "flr-loses-state", "gpu-fw-committed", "type2"])) {
            try DeviceProfile.named("gpu")
        }
    }

    @Test func loadFromFile() throws {
        let path = "/tmp/cxlemu-profile-\(getpid()).json"
        defer { unlink(path) }
        let f = fopen(path, "w")
        fputs(#"{"name": "file", "memorySize": "512MiB", "decoderCount": 4, "faults": {"commitReportsError": true}}"#, f)
        fclose(f)
        let p = try DeviceProfile.load(path: path)
        #expect(p.name == "file" && p.memorySize == 512 * MiB && p.decoderCount == 4 && p.faults.commitReportsError)
        #expect(try DeviceProfile.resolve(path) == p)
        #expect(throws: ProfileError.self) { try DeviceProfile.load(path: path + ".missing") }
        #expect(throws: ProfileError.unreadable(path: path + ".missing", reason: systemErrorText(ENOENT))) {
            try DeviceProfile.load(path: path + ".missing")
        }
        // A directory opens but does not read: a clear error, as a missing file.
        #expect(throws: ProfileError.unreadable(path: "/tmp/", reason: systemErrorText(EISDIR))) { try DeviceProfile.resolve("/tmp/") }
        // Past 4 MiB the file is refused, even when it is a valid profile ("{}" and blanks).
        let big = path + ".big"
        defer { unlink(big) }
        let g = try #require(fopen(big, "w"))
        fputs("{}", g)
        fputs(String(repeating: " ", count: DeviceProfile.maximumFileSize - 2), g)
        fclose(g)
        #expect(try DeviceProfile.load(path: big) == DeviceProfile())  // exactly 4 MiB: read
        let h = try #require(fopen(big, "a"))
        fputs(" ", h)
        fclose(h)
        #expect(throws: ProfileError.unreadable(path: big, reason: "larger than 4 MiB")) { try DeviceProfile.load(path: big) }
        let dev = try EmulatedCXLDevice(path, clock: ManualClock())
        #expect(dev.address == "emulated:\(path)")
        #expect(dev.memorySize == 512 * MiB)
    }
}

@Suite("Device SRAM in BAR0")
struct DeviceSRAMTests {
    @Test func sramIsMemoryInBAR0AndItsBackingFile() throws {
        let d = try EmulatedCXLDevice(profile: DeviceProfile.named("cxl-accel"))
        let w = try #require(d.sramWindow)
        let backing = try #require(d.bar0Backing)
        #expect(backing.window == w && w.lowerBound % 4096 == 0 && w.upperBound <= 0x2_0000)
        // Byte, word and quadword accesses: memory semantics.
        try d.barWrite(0, offset: w.lowerBound + 1, width: 1, value: 0xAB)
        try d.barWrite(0, offset: w.lowerBound + 8, width: 8, value: 0x1122_3344_5566_7788)
        #expect(try d.barRead(0, offset: w.lowerBound, width: 2) == 0xAB00)
        #expect(try d.barRead(0, offset: w.lowerBound + 8, width: 4) == 0x5566_7788)
        // The backing file holds the same bytes at the BAR offset.
        var b = [UInt8](repeating: 0, count: 2)
        #expect(pread(backing.fd, &b, 2, off_t(w.lowerBound)) == 2 && b == [0, 0xAB])
        #expect(throws: PCIError.self) { try d.barRead(0, offset: w.upperBound - 2, width: 4) }
        // Bulk reads see the SRAM too.
        #expect(try d.barReadBytes(0, offset: w.lowerBound, count: 16) == [0, 0xAB, 0, 0, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11])
        // Without the profile flag there is none.
        #expect(try EmulatedCXLDevice(profile: DeviceProfile.named("type2")).bar0Backing == nil)
    }
}
