import Testing
import Foundation
import VFIOUser
@testable import CXLKitCommands

/// `cxlkit serve --socket-mode/--socket-group` (issue 17): QEMU under libvirt runs as its own user and must be
/// able to connect to the socket a root server created.
@Suite struct ServeSocketOptionTests {
    @Test(arguments: [("0660", 0o660), ("660", 0o660), ("0o600", 0o600), ("2770", 0o2770)])
    func socketModeIsOctal(text: String, mode: Int) throws {
        #expect(try VFIOUserSocketPermissions.parse(mode: text, group: nil).mode == mode_t(mode))
    }

    @Test(arguments: ["", "0x660", "888", "17777", "rw-rw----", "-1", "99999999999999999999"])
    func badSocketModesAreErrors(text: String) {
        #expect(throws: CommandError.self) { try VFIOUserSocketPermissions.parse(mode: text, group: nil) }
    }

    @Test func socketGroupIsANameOrAGid() throws {
        #expect(try VFIOUserSocketPermissions.parse(mode: nil, group: "0").group == 0)
        #expect(try VFIOUserSocketPermissions.parse(mode: nil, group: "root").group == 0)
        #expect(throws: CommandError("--socket-group no-such-group-xyz: no such group")) {
            try VFIOUserSocketPermissions.parse(mode: nil, group: "no-such-group-xyz")
        }
    }

    @Test func serveAppliesTheSocketModeAndRefusesALivePath() throws {
        let path = NSTemporaryDirectory() + "cxlkit-serve-mode-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        var o = ServeOptions(profile: "type2", socketPath: path)
        try o.setSocketPermissions(mode: "0660", group: "\(getgid())")
        let session = try ServeSession(options: o)
        var st = stat()
        #expect(lstat(path, &st) == 0 && st.st_mode & 0o7777 == 0o660)
        // A second `cxlkit serve` on the same path is refused and the first keeps its socket.
        do {
            _ = try ServeSession(options: ServeOptions(profile: "type2", socketPath: path))
            Issue.record("a second server took over a live socket path")
        } catch {
            #expect(error.message.contains("a server is already listening"))
        }
        var st2 = stat()
        #expect(lstat(path, &st2) == 0 && st2.st_ino == st.st_ino)
        _ = session
    }
}
