import Testing
@testable import VFIOUser

/// `VFIOUserPeerSettings`: what client and server configure alike, and the checks both make of the other's VERSION.
@Suite("vfio-user peer settings")
struct PeerSettingsTests {
    @Test func bothConfigurationsReadTheSharedFieldsAsTheirOwn() {
        var client = VFIOUserClientConfiguration(), server = VFIOUserServerConfiguration()
        #expect(client.maxMsgFDs == 16 && server.maxMsgFDs == 8)
        client.maxDataXferSize = 4096
        server.writeMultiple = false
        #expect(client.peer.maxDataXferSize == 4096 && !server.peer.writeMultiple)
        #expect(client.peer.advertised == VFIOUserCapabilities(maxMsgFDs: 16, maxDataXferSize: 4096, pgsizes: client.pageSizes,
                                                               maxDMAMaps: client.maxDMAMaps, writeMultiple: true))
    }

    @Test func theDMALayoutFollowsTheNegotiatedMinorUnlessConfigured() {
        var s = VFIOUserPeerSettings(maxMsgFDs: 8)
        #expect(s.dmaLayout(negotiatedMinor: 0) == .qemu && s.dmaLayout(negotiatedMinor: 2) == .spec)
        s.dmaLayout = .spec
        #expect(s.dmaLayout(negotiatedMinor: 0) == .spec)
    }

    @Test(arguments: [
        (VFIOUserCapabilities(), UInt64(1), nil),
        (VFIOUserCapabilities(maxMsgFDs: 0), 1, "max_msg_fds 0"),
        (VFIOUserCapabilities(maxMsgFDs: 0), 0, nil),
        (VFIOUserCapabilities(maxMsgFDs: 5000), 0, "max_msg_fds 5000"),
        (VFIOUserCapabilities(pgsizes: 512), 0, "pgsizes 0x200"),
        (VFIOUserCapabilities(maxDataXferSize: 0), 0, "max_data_xfer_size 0"),
    ] as [(VFIOUserCapabilities, UInt64, String?)])
    func aPeerOfferIsCheckedAgainstOurs(peer: VFIOUserCapabilities, minimumMsgFDs: UInt64, problem: String?) {
        #expect(VFIOUserPeerSettings(maxMsgFDs: 8).problem(withPeer: peer, minimumMsgFDs: minimumMsgFDs) == problem)
    }
}
