#!/usr/bin/env python3
"""Generates the byte-exact vfio-user wire vectors used by WireVectorTests.swift, straight from the spec's tables
(QEMU docs/interop/vfio-user.rst) with Python's struct module: an implementation independent of the Swift encoder.
Output: Swift `static let` lines (name = hex string). Re-run and paste if the vectors change."""
import struct

def hdr(mid, cmd, payload, flags=0, err=0):
    return struct.pack("<HHIII", mid, cmd, 16 + len(payload), flags, err) + payload

REPLY, NO_REPLY, ERROR = 1, 0x10, 0x20
vectors = {}
caps = b'{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}'
vectors["versionRequest"] = hdr(1, 1, struct.pack("<HH", 0, 2) + caps + b"\0")
vectors["versionReplyNoJSON"] = hdr(1, 1, struct.pack("<HH", 0, 0), REPLY)
vectors["dmaMap"] = hdr(2, 2, struct.pack("<IIQQQ", 32, 3, 0x1000, 0x40000000, 0x200000))
vectors["dmaUnmap"] = hdr(3, 3, struct.pack("<IIQQ", 24, 0, 0x40000000, 0x200000))
vectors["dmaUnmapAll"] = hdr(4, 3, struct.pack("<IIQQ", 24, 2, 0, 0))
vectors["deviceGetInfoRequest"] = hdr(5, 4, struct.pack("<IIII", 16, 0, 0, 0))
vectors["deviceGetInfoReply"] = hdr(5, 4, struct.pack("<IIII", 16, 3, 9, 5), REPLY)
vectors["regionInfoRequest"] = hdr(6, 5, struct.pack("<IIIIQQ", 32, 0, 1, 0, 0, 0))
vectors["regionInfoReplyShort"] = hdr(6, 5, struct.pack("<IIIIQQ", 80, 7, 1, 0, 0x1000, 0), REPLY)
sparse = struct.pack("<HHI", 1, 1, 0) + struct.pack("<II", 2, 0) + struct.pack("<QQ", 0, 0x100) + struct.pack("<QQ", 0x800, 0x800)
vectors["regionInfoReplyCaps"] = hdr(7, 5, struct.pack("<IIIIQQ", 80, 0xF, 1, 32, 0x1000, 0) + sparse, REPLY)
vectors["regionIOFDsRequest"] = hdr(8, 6, struct.pack("<IIII", 16, 0, 0, 0))
vectors["regionIOFDsReply"] = hdr(8, 6, struct.pack("<IIII", 56, 0, 0, 1) + struct.pack("<QQIIIIQ", 0x10, 4, 0, 0, 1, 0, 0xABCD), REPLY)
vectors["irqInfoRequest"] = hdr(9, 7, struct.pack("<IIII", 16, 0, 2, 0))
vectors["irqInfoReply"] = hdr(9, 7, struct.pack("<IIII", 16, 9, 2, 4), REPLY)
vectors["setIRQsEventfd"] = hdr(10, 8, struct.pack("<IIIII", 20, 0x24, 2, 0, 4))
vectors["setIRQsBool"] = hdr(11, 8, struct.pack("<IIIII", 22, 0x22, 1, 1, 2) + bytes([1, 0]))
vectors["regionReadRequest"] = hdr(12, 9, struct.pack("<QII", 0x10, 7, 4))
vectors["regionReadReply"] = hdr(12, 9, struct.pack("<QII", 0x10, 7, 4) + bytes([0x34, 0x12, 0x78, 0x56]), REPLY)
vectors["regionWritePosted"] = hdr(13, 10, struct.pack("<QII", 0x2000, 0, 2) + bytes([0xAA, 0xBB]), NO_REPLY)
vectors["regionWriteReply"] = hdr(13, 10, struct.pack("<QII", 0x2000, 0, 2), REPLY)
vectors["dmaReadRequest"] = hdr(14, 11, struct.pack("<QQ", 0x40001000, 3))
vectors["dmaReadReply"] = hdr(14, 11, struct.pack("<QQ", 0x40001000, 3) + bytes([1, 2, 3]), REPLY)
vectors["dmaWriteRequest"] = hdr(15, 12, struct.pack("<QQ", 0x40002000, 2) + bytes([9, 8]))
vectors["dmaWriteReply"] = hdr(15, 12, struct.pack("<QQ", 0x40002000, 2), REPLY)
vectors["deviceReset"] = hdr(16, 13, b"")
vectors["regionWriteMulti"] = hdr(17, 15, struct.pack("<Q", 2) + struct.pack("<QII", 0, 2, 4) + bytes([1, 2, 3, 4, 0, 0, 0, 0])
                                  + struct.pack("<QII", 8, 2, 8) + bytes(range(8)))
vectors["regionWriteMultiReply"] = hdr(17, 15, struct.pack("<Q", 2), REPLY)
vectors["deviceFeatureRequest"] = hdr(18, 16, struct.pack("<II", 16, 0x10001) + struct.pack("<Q", 0))
vectors["deviceFeatureReply"] = hdr(18, 16, struct.pack("<II", 16, 0x10001) + struct.pack("<Q", 5), REPLY)
vectors["migDataReadRequest"] = hdr(19, 17, struct.pack("<II", 8, 4096))
vectors["migDataReadReply"] = hdr(19, 17, struct.pack("<II", 11, 3) + bytes([7, 7, 7]), REPLY)
vectors["migDataWriteRequest"] = hdr(20, 18, struct.pack("<II", 10, 2) + bytes([5, 6]))
vectors["errorReply"] = hdr(21, 9, b"", REPLY | ERROR, 22)
# QEMU 10.2's VFIOUserDMARW (hw/vfio-user/protocol.h): offset u64, count u32, data; sizeof() pads to 32 bytes.
vectors["qemuDMAReadRequest"] = hdr(22, 11, struct.pack("<QI", 0xF0000, 4) + b"\0" * 4)
vectors["qemuDMAReadReply"] = hdr(22, 11, struct.pack("<QI", 0xF0000, 4) + bytes([0xDE, 0xAD, 0xBE, 0xEF]) + b"\0" * 4, REPLY)
vectors["qemuDMAWriteRequest"] = hdr(23, 12, struct.pack("<QI", 0x60000, 2) + bytes([5, 6]) + b"\0" * 4)
vectors["qemuDMAWriteReply"] = hdr(23, 12, b"", REPLY)

for name, data in vectors.items():
    print('    static let %s = "%s"' % (name, data.hex()))
