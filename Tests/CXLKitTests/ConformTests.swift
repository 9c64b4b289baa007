import Testing
import TestSupport
import Foundation
import PCI
import CXL
import CXLEmulator
import VFIO
import VFIOCXL
import VFIOUser
import VFIOTestSupport
@testable import CXLKitCommands

/// `cxlkit serve --uapi v4` in-process, optionally with broken rules.
final class InProcessV4Serve: @unchecked Sendable {
    let session: ServeSession
    private let done = DispatchSemaphore(value: 0)

    init(profile: String = "cxl-accel", uapi: CXLUAPI = .v4, faults: Set<VFIOCXLv4Fault> = [], tag: String) throws {
        var o = ServeOptions(profile: profile, socketPath: serveSocketPath(tag))
        o.uapi = uapi
        o.v4Faults = faults
        session = try ServeSession(options: o)
        let t = Thread { [self] in
            try? session.run()
            done.signal()
        }
        t.start()
    }

    var target: String { "vfio-user:" + session.options.socketPath }

    func client() throws -> VFIOUserClient { try VFIOUserClient(socketPath: session.options.socketPath) }

    func conform() throws -> [CXLConformResult] {
        try VFIOCXLConformance.run(VFIOUserConformTarget(socketPath: session.options.socketPath))
    }

    func stop() { session.stop(); _ = done.wait(timeout: .now() + 10) }
}

/// The v4 device called directly, as the kernel's ioctl path calls vfio-cxl: no vfio-user server in between (whose
/// own bounds check would hide a region handler that accepts out-of-range accesses).
final class DirectConformTarget: CXLConformTarget {
    let device: any VFIODevice
    init(device: any VFIODevice) { self.device = device }
    var transport: String { "direct" }
    var mmapRefusesExcludedRanges: Bool { false }
    var canMapDMABuf: Bool { false }
    func deviceInfo() throws -> VFIODeviceInfo { device.deviceInfo() }
    func regionInfo(_ index: UInt32) throws -> CXLConformRegion {
        let i = try device.regionInfo(index)
        return CXLConformRegion(index: index, flags: i.flags, size: i.size, capabilities: i.capabilities)
    }
    func read(region: UInt32, offset: UInt64, count: Int) throws -> [UInt8] { try device.read(region: region, offset: offset, count: count) }
    func write(region: UInt32, offset: UInt64, data: [UInt8]) throws { try device.write(region: region, offset: offset, data: data) }
    func map(region: UInt32, offset: UInt64, length: Int) throws -> VFIOSharedMemory {
        let i = try device.regionInfo(region)
        guard i.flags.contains(.mmap), let m = i.mapping, offset + UInt64(length) <= i.size else { throw VFIOError.invalidArgument("not mappable") }
        return try VFIOSharedMemory(mapping: m.fd, offset: m.fileOffset + offset, size: length, writable: true, takeOwnership: false)
    }
    func reset() throws { try device.reset() }
    func feature(flags: UInt32, data: [UInt8]) throws -> [UInt8] { try device.feature(flags: flags, data: data) }
    func reopen() throws { device.clientDisconnected() }
}

/// The check each broken rule must fail (and no other). `decommitHonoured` also fails `hdm_lock_on_commit`: that
/// check ends with a decommit attempt of its own (a write of 0), so a server that honours decommits fails both.
let faultBreaks: [VFIOCXLv4Fault: Set<String>] = [
    .noCXLFlag: ["device_is_cxl"],
    .sparseMMapCoversHDM: ["comp_bar_sparse_mmap"],
    .memoryMMapSkewed: ["hdm_mem_mmap_rw"],
    .memoryMMapUnder2MiB: ["hdm_mem_huge_mmap"],
    .dmaBufAccepted: ["hdm_mem_ioas_map"],
    .compRegsSizeWrong: ["comp_regs_hdm_read"],
    .compRegsAcceptUnaligned: ["comp_regs_reject_unaligned"],
    .compRegsAcceptOutOfRange: ["comp_regs_reject_out_of_range"],
    .decommitHonoured: ["hdm_commit_fsm", "hdm_lock_on_commit"],
    .lockHidden: ["hdm_lock_on_commit"],
    .baseWritable: ["hdm_base_write_absorbed"],
    .dvsecRangeAllOnes: ["dvsec_body_read"],
    .guestResetNoComplete: ["guest_cxl_reset"],
    .deviceResetFails: ["device_reset"],
    .barExposesHDM: ["comp_bar_rdwr_split"],
    .compRegsOffsetWrong: ["guest_hdm_discovery"],
    .memorySizeMismatch: ["hdm_mem_touch_committed_base"],
    .dvsecControlNotShadowed: ["dvsec_write_virtualized"],
    .compRegsMMapFlag: ["region_flags"],
]

@Suite("cxlkit conform: the v4 contract's 19 selftest checks", .serialized)
struct ConformTests {
    @Test func theNineteenChecksCarryTheSelftestNames() {
        #expect(VFIOCXLConformance.names == [
            "device_is_cxl", "comp_bar_sparse_mmap", "hdm_mem_mmap_rw", "hdm_mem_huge_mmap", "hdm_mem_ioas_map",
            "comp_regs_hdm_read", "comp_regs_reject_unaligned", "comp_regs_reject_out_of_range", "hdm_commit_fsm",
            "hdm_lock_on_commit", "hdm_base_write_absorbed", "dvsec_body_read", "guest_cxl_reset", "device_reset",
            "comp_bar_rdwr_split", "guest_hdm_discovery", "hdm_mem_touch_committed_base", "dvsec_write_virtualized",
            "region_flags",
        ])
        // Every check is broken by some fault, and every fault names only real checks.
        let broken = faultBreaks.values.reduce(into: Set<String>()) { $0.formUnion($1) }
        #expect(broken == Set(VFIOCXLConformance.names))
        #expect(Set(faultBreaks.keys) == Set(VFIOCXLv4Fault.allCases))
    }

    @Test func conformPassesAgainstServeV4() throws {
        let s = try InProcessV4Serve(tag: "conform-v4"); defer { s.stop() }
        let (text, ok) = try CXLKit.conform(target: s.target, json: false)
        #expect(ok)
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.count == 20)
        #expect(lines.last == "19 passed, 0 failed, 0 skipped")
        for name in VFIOCXLConformance.names { #expect(lines.contains { $0.hasPrefix("PASS  \(name) ") }, "\(name)") }
        // A second run against the same server (the device outlives the client): still clean.
        #expect(try s.conform().allSatisfy { $0.status == .pass })
    }

    @Test(arguments: VFIOCXLv4Fault.allCases)
    func eachCheckFailsAgainstTheDeviceThatBreaksItsRule(fault: VFIOCXLv4Fault) throws {
        let emulated = try EmulatedCXLDevice("cxl-accel")
        let device = try CXLKit.makeServedDevice(emulated: emulated, uapi: .v4, v4Faults: [fault])
        let results = try VFIOCXLConformance.run(DirectConformTarget(device: device))
        let failed = Set(results.filter { $0.status == .fail }.map(\.name))
        #expect(failed == faultBreaks[fault], "\(fault): \(results.filter { $0.status == .fail }.map { "\($0.name): \($0.detail)" })")
        #expect(!results.contains { $0.status == .skip })
    }

    @Test(arguments: VFIOCXLv4Fault.allCases)
    func eachCheckFailsAgainstTheServerThatBreaksItsRule(fault: VFIOCXLv4Fault) throws {
        let s = try InProcessV4Serve(faults: [fault], tag: "fault"); defer { s.stop() }
        let results = try s.conform()
        let failed = Set(results.filter { $0.status == .fail }.map(\.name))
        // Our vfio-user server checks every region access against the region size before the device sees it, so
        // a device that accepts out-of-range accesses stays hidden behind it (the direct test above catches it).
        let expected = fault == .compRegsAcceptOutOfRange ? [] : faultBreaks[fault]
        #expect(failed == expected, "\(fault): \(results.filter { $0.status == .fail }.map { "\($0.name): \($0.detail)" })")
        #expect(!results.contains { $0.status == .skip })
    }

    @Test func conformPassesAgainstTheV4DeviceDirectly() throws {
        let device = try CXLKit.makeServedDevice(emulated: try EmulatedCXLDevice("cxl-accel"), uapi: .v4)
        let results = try VFIOCXLConformance.run(DirectConformTarget(device: device))
        #expect(results.count == 19 && results.allSatisfy { $0.status == .pass }, "\(results.filter { $0.status != .pass })")
    }

    @Test func jsonReportAndExitStatus() throws {
        let s = try InProcessV4Serve(faults: [.lockHidden], tag: "json"); defer { s.stop() }
        let (text, ok) = try CXLKit.conform(target: s.target, json: true)
        #expect(!ok)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(obj["target"] as? String == s.target)
        #expect(obj["passed"] as? Int == 18 && obj["failed"] as? Int == 1 && obj["skipped"] as? Int == 0)
        let checks = try #require(obj["checks"] as? [[String: Any]])
        #expect(checks.count == 19)
        let lock = try #require(checks.first { $0["name"] as? String == "hdm_lock_on_commit" })
        #expect(lock["status"] as? String == "fail")
        #expect((lock["detail"] as? String)?.contains("not committed and locked") == true)
        // The envelope of every --json output, and the schema.
        #expect(obj["command"] as? String == "conform" && obj["succeeded"] as? Bool == false)
        #expect((obj["problems"] as? [String])?.first?.hasPrefix("hdm_lock_on_commit: ") == true)
        if JSONSchemaTests.validatorAvailable {
            let file = try TestScratch.directory("conform-json") + "/conform.json"
            try text.write(toFile: file, atomically: false, encoding: .utf8)
            let (status, report) = try JSONSchemaTests.validate("cxlkit-conform", file)
            #expect(status == 0, "conform --json does not match its schema: \(report)")
        } else {
            #expect(!JSONSchemaTests.required, "CXLKIT_REQUIRE_JSONSCHEMA=1 but python3 jsonschema is missing")
        }
    }

    @Test func aV2ServerIsNotAV4Device() throws {
        // v2 is a different contract: no CXL_COMP_REGS capability, COMP_REGS from the CXL.cachemem area, memory kept
        // across DEVICE_RESET. conform says so instead of passing.
        let s = try InProcessV4Serve(profile: "gpu-fw-committed", uapi: .v2, tag: "v2"); defer { s.stop() }
        let results = try s.conform()
        #expect(results.first { $0.name == "region_flags" }?.status == .fail)
        #expect(results.first { $0.name == "device_reset" }?.status == .fail)
        #expect(results.contains { $0.detail.contains("no CXL_COMP_REGS capability") })
    }

    /// `conform vfio:BDF`: the checks through the kernel VFIO backend (ioctls, pread/pwrite and mmap of the device
    /// fd) against a fake kernel whose vfio-cxl driver is our v4 device, as a kernel vfio-cxl would be reached.
    func kernelConform(_ faults: Set<VFIOCXLv4Fault>, json: Bool = false) throws -> (text: String, ok: Bool, kernel: FakeVFIOKernel) {
        let emulated = try EmulatedCXLDevice("cxl-accel")
        let k = FakeVFIOKernel(function: emulated)
        k.vfioDevice = try CXLKit.makeServedDevice(emulated: emulated, uapi: .v4, v4Faults: faults)
        var r = TargetResolver()
        r.register(VFIOScheme(system: k))
        let (text, ok) = try CXLKit.conform(target: "vfio:0000:01:00.0", json: json, resolver: r)
        return (text, ok, k)
    }

    @Test func conformPassesThroughTheKernelBackend() throws {
        let (text, ok, k) = try kernelConform([])
        #expect(ok, "\(text)")
        let lines = text.split(separator: "\n").map(String.init)
        // Only the dma-buf export (DEVICE_FEATURE + IOMMU_IOAS_MAP_FILE) is not in the backend: skipped, said why.
        #expect(lines.last == "18 passed, 0 failed, 1 skipped")
        #expect(lines.contains { $0.hasPrefix("SKIP  hdm_mem_ioas_map ") && $0.contains("not implemented in this backend") })
        // The kernel refuses mmaps outside the sparse areas, and the check saw it.
        #expect(lines.contains { $0.hasPrefix("PASS  comp_bar_sparse_mmap ") && $0.contains("the whole BAR and the decoder page do not") })
        // Every check opened the device afresh (GET_DEVICE_FD per open) and device_reset was VFIO_DEVICE_RESET.
        #expect(k.ioctlCalls(VFIOKernelUAPI.groupGetDeviceFD).count >= 19)
        #expect(k.resets >= 1)
    }

    /// Each broken rule fails its check through the kernel backend too. The exception is `dmaBufAccepted`: the
    /// kernel path's dma-buf check is skipped (not implemented), so accepting DMA_BUF goes unseen there. Unlike our
    /// vfio-user server, the kernel path puts no bounds check of its own in front of the driver, so
    /// `compRegsAcceptOutOfRange` is caught.
    @Test(arguments: VFIOCXLv4Fault.allCases)
    func eachCheckFailsThroughTheKernelBackend(fault: VFIOCXLv4Fault) throws {
        let (text, ok, _) = try kernelConform([fault], json: true)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let checks = try #require(obj["checks"] as? [[String: Any]])
        let failed = Set(checks.filter { $0["status"] as? String == "fail" }.compactMap { $0["name"] as? String })
        let expected = fault == .dmaBufAccepted ? [] : faultBreaks[fault]
        #expect(failed == expected, "\(fault): \(checks.filter { $0["status"] as? String == "fail" }.map { "\($0["name"] ?? ""): \($0["detail"] ?? "")" })")
        #expect(ok == (expected?.isEmpty ?? true))
    }

    @Test func badTargetsAreClearErrors() {
        #expect(throws: CommandError.self) { try CXLKit.conform(target: "vfio-user:", json: false) }
        #expect(throws: CommandError.self) { try CXLKit.conform(target: "vfio-user:/nonexistent/socket", json: false) }
        #expect(throws: CommandError.self) { try CXLKit.conform(target: "vfio:0000:01:00.0", json: false) }
        #expect(throws: CommandError.self) { try CXLKit.conform(target: "emulated:type2", json: false) }
    }
}
