#!/usr/bin/env python3
"""An independent vfio-user client that speaks to a server the way QEMU 10.2's vfio-user-pci does.

Standard library only (socket, struct, SCM_RIGHTS via socket.sendmsg/recvmsg, os.eventfd, os.memfd_create, mmap).
Written from the vfio-user spec (QEMU docs/interop/vfio-user.rst) and the interop notes, not from the Swift code:
- VERSION 0.0 with QEMU's capability JSON; a reply minor > 0 is rejected, max_msg_fds > 16 and pgsizes < 4 KiB too;
- DEVICE_GET_INFO with argsz 16, REGION_INFO with the argsz re-query, fds read with the header;
- BAR writes posted with NO_REPLY (never answered), config writes not posted;
- SET_IRQS eventfd arrays with argsz 20 and count == number of fds, chunked by the server's max_msg_fds;
- DMA_MAP with a memfd and without an fd (then DMA_READ/DMA_WRITE arrive interleaved with replies), answered in
  QEMU's own DMA message layout (count u32, data at offset 12, header-only DMA_WRITE replies).

Usage: qemu_like_client.py SOCKET_PATH   -> prints "OK <checks>" and exits 0, or exits 1 with a message.
The test device layout (BAR2 registers, MSI-X table in BAR0) is the Swift tests' TestPCIFunction.
"""
import json
import mmap
import os
import select
import socket
import struct
import sys

HDR = struct.Struct("<HHIII")          # msg_id, command, msg_size, flags, error_no
VERSION, DMA_MAP, DMA_UNMAP, GET_INFO, GET_REGION_INFO, GET_REGION_IO_FDS, GET_IRQ_INFO, SET_IRQS, \
    REGION_READ, REGION_WRITE, DMA_READ, DMA_WRITE, DEVICE_RESET = range(1, 14)
REGION_WRITE_MULTI, DEVICE_FEATURE = 15, 16
T_COMMAND, T_REPLY, F_NO_REPLY, F_ERROR = 0, 1, 0x10, 0x20
CONFIG_REGION = 7
QEMU_CAPS = ('{"capabilities":{"migration":{"pgsize":4096,"max_bitmap_size":268435456},"max_msg_fds":16,'
             '"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true}}')
# TestPCIFunction BAR2 registers
R_SCRATCH, R_DOORBELL, R_SRC, R_DST, R_LEN, R_STATUS, R_RAISE = 0, 8, 0x10, 0x18, 0x20, 0x24, 0x28

checks = 0


def check(cond, what):
    global checks
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)
    checks += 1


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5.0)
        self.s.connect(path)
        self.next_id = 0x100
        self.server_max_fds = 1
        self.dma = {}      # addr -> (size, bytearray-like) answered for DMA_READ/WRITE
        self.dma_served = 0
        self.nest_probe = False
        self.nested_ok = False

    def _recv_exact(self, n, fds):
        buf = b""
        while len(buf) < n:
            data, anc, flags, _ = self.s.recvmsg(n - len(buf), socket.CMSG_SPACE(64 * 4))
            if not data:
                raise EOFError("server closed the connection")
            for level, typ, payload in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    fds.extend(struct.unpack("<%di" % (len(payload) // 4), payload[: len(payload) // 4 * 4]))
            buf += data
        return buf

    def recv_msg(self):
        fds = []
        hdr = self._recv_exact(HDR.size, fds)
        mid, cmd, size, flags, err = HDR.unpack(hdr)
        if size < HDR.size or size > (1 << 20) + 64:
            raise ValueError("bad message size %d" % size)
        body = self._recv_exact(size - HDR.size, fds) if size > HDR.size else b""
        return mid, cmd, flags, err, body, fds

    def send(self, cmd, payload=b"", fds=(), no_reply=False):
        mid = self.next_id
        self.next_id = (self.next_id + 1) & 0xFFFF
        msg = HDR.pack(mid, cmd, HDR.size + len(payload), T_COMMAND | (F_NO_REPLY if no_reply else 0), 0) + payload
        if fds:
            self.s.sendmsg([msg], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("<%di" % len(fds), *fds))])
        else:
            self.s.sendall(msg)
        return mid

    def serve_dma(self, mid, cmd, body):
        """QEMU 10.2's VFIOUserDMARW layout: offset u64, count u32, data at payload offset 12; the message is sized
        from sizeof() of the padded struct (32 bytes with the header). DMA_READ replies carry the same layout plus
        the 4 padding bytes; DMA_WRITE replies are header-only."""
        if HDR.size + len(body) < 32:
            self.s.sendall(HDR.pack(mid, cmd, HDR.size, T_REPLY | F_ERROR, 22))
            return
        addr, count = struct.unpack_from("<QI", body)
        if cmd == DMA_WRITE and count > HDR.size + len(body) - 32:
            self.s.sendall(HDR.pack(mid, cmd, HDR.size, T_REPLY | F_ERROR, 7))
            return
        if self.nest_probe:
            # Like a QEMU vCPU that touches the device while the main loop has not yet served this DMA request:
            # the server must answer our command before we answer its DMA request.
            self.nest_probe = False
            pid = self.send(REGION_READ, struct.pack("<QII", R_SCRATCH, 2, 4))
            rid, rcmd, flags, err, rbody, _ = self.recv_msg()
            check(rid == pid and rcmd == REGION_READ and flags & 0xF == T_REPLY and not flags & F_ERROR,
                  "server answers a command while its DMA request is outstanding")
            self.nested_ok = True
        for base, (size, mem) in self.dma.items():
            if base <= addr and addr + count <= base + size:
                off = addr - base
                if cmd == DMA_READ:
                    reply = struct.pack("<QI", addr, count) + bytes(mem[off:off + count]) + b"\0" * 4
                else:
                    mem[off:off + count] = body[12:12 + count]
                    reply = b""
                self.s.sendall(HDR.pack(mid, cmd, HDR.size + len(reply), T_REPLY, 0) + reply)
                self.dma_served += 1
                return
        self.s.sendall(HDR.pack(mid, cmd, HDR.size, T_REPLY | F_ERROR, 19))   # MEMTX_DECODE_ERROR -> ENODEV

    def call(self, cmd, payload=b"", fds=()):
        """Send and wait for the reply. Like QEMU, whose vCPU holds the big lock while it waits, server DMA
        requests arriving meanwhile are only served once the reply is in. Returns (err, body, fds)."""
        mid = self.send(cmd, payload, fds)
        deferred = []
        while True:
            rid, rcmd, flags, err, body, rfds = self.recv_msg()
            if flags & 0xF == T_COMMAND:
                check(rcmd in (DMA_READ, DMA_WRITE), "server sent command %d" % rcmd)
                deferred.append((rid, rcmd, body))
                continue
            check(rid == mid and rcmd == cmd, "reply id/command %d/%d for %d/%d" % (rid, rcmd, mid, cmd))
            for d in deferred:
                self.serve_dma(*d)
            if flags & F_ERROR:
                return (err or 22), body, rfds
            return 0, body, rfds

    # Typed helpers ---------------------------------------------------------------------------------------------
    def region_read(self, region, offset, count):
        err, body, _ = self.call(REGION_READ, struct.pack("<QII", offset, region, count))
        if err:
            return err, None
        off, reg, cnt = struct.unpack_from("<QII", body)
        check(off == offset and reg == region and cnt == count and len(body) == 16 + count, "REGION_READ reply layout")
        return 0, body[16:]

    def region_write(self, region, offset, data, posted=False):
        payload = struct.pack("<QII", offset, region, len(data)) + data
        if posted:
            self.send(REGION_WRITE, payload, no_reply=True)
            return 0
        err, body, _ = self.call(REGION_WRITE, payload)
        if not err:
            check(len(body) == 16, "REGION_WRITE reply is 16 bytes")
        return err


def main(path):
    c = Client(path)

    # VERSION 0.0 with QEMU's capabilities.
    err, body, fds = c.call(VERSION, struct.pack("<HH", 0, 0) + QEMU_CAPS.encode() + b"\0")
    check(err == 0 and not fds, "VERSION accepted without fds")
    major, minor = struct.unpack_from("<HH", body)
    check(major == 0 and minor == 0, "server echoes minor 0 (got %d.%d)" % (major, minor))
    check(body.endswith(b"\0"), "VERSION JSON is NUL-terminated")
    caps = json.loads(body[4:-1].decode())["capabilities"]
    known = {"max_msg_fds", "max_data_xfer_size", "pgsizes", "max_dma_maps", "write_multiple", "migration", "twin_socket"}
    check(set(caps) <= known, "no spurious capabilities: %s" % caps)
    check(set(caps) <= set(json.loads(QEMU_CAPS)["capabilities"]), "server caps are a subset of ours")
    c.server_max_fds = caps.get("max_msg_fds", 1)
    check(1 <= c.server_max_fds <= 16, "max_msg_fds in QEMU's range")
    check(caps.get("pgsizes", 4096) >= 4096, "pgsizes >= 4 KiB")
    write_multiple = caps.get("write_multiple", False)

    # DEVICE_GET_INFO with argsz 16.
    err, body, _ = c.call(GET_INFO, struct.pack("<IIII", 16, 0, 0, 0))
    argsz, flags, nregions, nirqs = struct.unpack_from("<IIII", body)
    check(err == 0 and flags & 3 == 3 and nregions == 9 and nirqs == 5, "DEVICE_GET_INFO flags/regions/irqs")

    # GET_REGION_INFO for every region, with the argsz re-query.
    regions = {}
    for idx in range(nregions):
        argsz = 32
        for _ in range(2):
            err, body, fds = c.call(GET_REGION_INFO, struct.pack("<IIIIQQ", argsz, 0, idx, 0, 0, 0))
            check(err == 0, "region %d info" % idx)
            rargsz, rflags, ridx, cap_off, size, offset = struct.unpack_from("<IIIIQQ", body)
            check(len(body) <= argsz, "reply fits the argsz we sent")
            if rargsz > argsz and not (rflags & 8):
                for fd in fds:
                    os.close(fd)
                argsz = rargsz
                continue
            break
        sparse = None
        if rflags & 8:
            check(32 <= cap_off < len(body), "cap_offset within reply")
            cid, cver, cnext = struct.unpack_from("<HHI", body, cap_off)
            if cid == 1:
                n, = struct.unpack_from("<I", body, cap_off + 8)
                sparse = [struct.unpack_from("<QQ", body, cap_off + 16 + 16 * i) for i in range(n)]
        regions[idx] = (rflags, size, offset, fds[0] if fds else None, sparse)
    bar0 = regions[0]
    check(bar0[1] == 0x8000 and bar0[0] & 4 and bar0[3] is not None, "BAR0 is mmap-able with an fd")
    check(bar0[4] == [(0, 0x2000), (0x4000, 0x4000)], "BAR0 sparse areas exclude the MSI-X table/PBA: %s" % (bar0[4],))
    check(regions[2][1] == 0x1000 and regions[2][3] is None, "BAR2 trapped, no fd")
    check(regions[7][1] == 4096, "config region is 4 KiB")

    # Config space (never posted).
    err, data = c.region_read(CONFIG_REGION, 0, 4)
    check(err == 0 and struct.unpack("<HH", data) == (0x1234, 0x5678), "vendor/device id")
    err = c.region_write(CONFIG_REGION, 4, struct.pack("<H", 0x0006))
    check(err == 0, "config write of Command")

    # Sparse mmap of BAR0: write through the mapping, read it back over the socket.
    area_off, area_size = bar0[4][1]
    m = mmap.mmap(bar0[3], area_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=bar0[2] + area_off)
    m[0:4] = b"\xde\xad\xbe\xef"
    err, data = c.region_read(0, area_off, 4)
    check(data == b"\xde\xad\xbe\xef", "write through the sparse mapping seen by the device")

    # Posted BAR writes: never answered, applied in order, even a failing one gets no reply.
    for i in range(8):
        c.region_write(2, 0x40 + i, bytes([i + 1]), posted=True)
    c.region_write(2, 0xFFFF0, b"\x01\x02\x03\x04", posted=True)      # out of range: no reply either
    err, data = c.region_read(2, 0x40, 8)
    check(err == 0 and data == bytes(range(1, 9)), "posted writes applied in order, no stray replies")
    err, _ = c.region_read(2, 0xFFE, 4)
    check(err == 22, "out-of-range read gets EINVAL")

    # IRQ info and MSI-X eventfds (chunked by the server's max_msg_fds).
    err, body, _ = c.call(GET_IRQ_INFO, struct.pack("<IIII", 16, 0, 2, 0))
    _, iflags, iidx, icount = struct.unpack_from("<IIII", body)
    check(err == 0 and icount == 4 and iflags & 1, "MSI-X irq info")
    efds = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(icount)]
    sent = 0
    while sent < icount:
        n = min(c.server_max_fds, icount - sent)
        err, _, _ = c.call(SET_IRQS, struct.pack("<IIIII", 20, 0x24, 2, sent, n), efds[sent:sent + n])
        check(err == 0, "SET_IRQS eventfd batch")
        sent += n
    c.region_write(CONFIG_REGION, 0x7A, struct.pack("<H", 0x8003))            # MSI-X enable
    for v in range(icount):
        c.region_write(0, 0x2000 + 16 * v + 12, struct.pack("<I", 0), posted=True)   # unmask entries
    c.region_write(2, R_RAISE, struct.pack("<I", 1), posted=True)
    r, _, _ = select.select([efds[1]], [], [], 2.0)
    check(r and os.eventfd_read(efds[1]) == 1, "MSI-X vector 1 delivered through its eventfd")

    # DMA through a shared memfd.
    mfd = os.memfd_create("qemu-guest-ram")
    os.ftruncate(mfd, 0x10000)
    ram = mmap.mmap(mfd, 0x10000, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    ram[0x100:0x140] = bytes(range(64))
    err, _, _ = c.call(DMA_MAP, struct.pack("<IIQQQ", 32, 3, 0, 0x40000000, 0x10000), [mfd])
    check(err == 0, "DMA_MAP with fd")
    err, _, _ = c.call(DMA_MAP, struct.pack("<IIQQQ", 32, 3, 0, 0x40008000, 0x1000), [mfd])
    check(err != 0, "overlapping DMA_MAP rejected")

    def dma_copy(src, dst, length):
        for reg, val in ((R_SRC, struct.pack("<Q", src)), (R_DST, struct.pack("<Q", dst)), (R_LEN, struct.pack("<I", length))):
            c.region_write(2, reg, val, posted=True)
        c.region_write(2, R_STATUS, struct.pack("<I", 0))
        check(c.region_write(2, R_DOORBELL, struct.pack("<I", 1)) == 0, "doorbell write")
        for _ in range(1000):       # poll like a driver: the write is acknowledged before the DMA completes
            status = struct.unpack("<I", c.region_read(2, R_STATUS, 4)[1])[0]
            if status:
                return status
        return 0

    check(dma_copy(0x40000100, 0x40008000, 64) == 1, "device DMA through the mapped fd")
    check(ram[0x8000:0x8040] == bytes(range(64)), "DMA result visible in guest memory")
    r, _, _ = select.select([efds[0]], [], [], 2.0)
    check(r and os.eventfd_read(efds[0]) >= 1, "completion interrupt on vector 0")

    # DMA without an fd: the server sends DMA_READ/DMA_WRITE interleaved with our doorbell's reply.
    buf = bytearray(0x2000)
    buf[0:256] = bytes((i * 3) & 0xFF for i in range(256))
    c.dma[0x50000000] = (len(buf), buf)
    err, _, _ = c.call(DMA_MAP, struct.pack("<IIQQQ", 32, 3, 0, 0x50000000, len(buf)))
    check(err == 0, "DMA_MAP without fd")
    c.nest_probe = True
    check(dma_copy(0x50000000, 0x50001000, 256) == 1, "device DMA through messages")
    check(bytes(buf[0x1000:0x1100]) == bytes(buf[0:256]) and c.dma_served >= 2, "DMA_READ/DMA_WRITE served")
    check(c.nested_ok, "nested command answered during server DMA")

    # Unmatched unmap rejected; unmap all.
    err, _, _ = c.call(DMA_UNMAP, struct.pack("<IIQQ", 24, 0, 0x40000000, 0x1000))
    check(err != 0, "unmatched DMA_UNMAP rejected")
    err, body, _ = c.call(DMA_UNMAP, struct.pack("<IIQQ", 24, 0, 0x40000000, 0x10000))
    check(err == 0 and len(body) == 24, "DMA_UNMAP echoes the struct")
    err, _, _ = c.call(DMA_UNMAP, struct.pack("<IIQQ", 24, 2, 0, 0))
    check(err == 0, "DMA_UNMAP all")

    # REGION_WRITE_MULTI only when advertised.
    if write_multiple:
        entries = struct.pack("<QII", R_SCRATCH, 2, 4) + struct.pack("<I", 0x11223344) + b"\0" * 4
        err, body, _ = c.call(REGION_WRITE_MULTI, struct.pack("<Q", 1) + entries)
        check(err == 0 and struct.unpack("<Q", body)[0] == 1, "REGION_WRITE_MULTI")

    # Unknown command 14 gets EINVAL.
    err, _, _ = c.call(14, b"\0" * 8)
    check(err == 22, "unknown command rejected with EINVAL")

    # Leave state for the Swift side to verify, then reset through DEVICE_RESET on a second value.
    c.region_write(2, R_SCRATCH, struct.pack("<I", 0xC0DE), posted=False)
    err, _, _ = c.call(DEVICE_RESET)
    check(err == 0, "DEVICE_RESET")
    err, data = c.region_read(2, R_SCRATCH, 4)
    check(data == b"\0\0\0\0", "reset cleared the device register")
    c.region_write(2, R_SCRATCH, struct.pack("<I", 0xBEEF))
    print("OK %d" % checks)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as e:  # noqa: BLE001 - any failure is a test failure
        print("FAIL: %r" % (e,), file=sys.stderr)
        sys.exit(1)
