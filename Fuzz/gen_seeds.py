#!/usr/bin/env python3
"""Writes the hand-built vfio-user seeds (Fuzz/corpus/server_stream, client_reply).
Run from the repository root: python3 Fuzz/gen_seeds.py"""
import struct, os
P = struct.pack
def hdr(mid, cmd, payload, flags=0, err=0): return P('<HHIII', mid, cmd, 16 + len(payload), flags, err) + payload
CMD, REPLY, NOREPLY, ERROR = 0, 1, 0x10, 0x20
json = b'{"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576,"pgsizes":4096,"max_dma_maps":65535,"write_multiple":true,"migration":{"pgsize":4096}}}\0'
version = P('<HH', 0, 2) + json
cmds = {
 'version': hdr(0, 1, version),
 'version_plain': hdr(0, 1, P('<HH', 0, 2)),
 'dma_map': hdr(1, 2, P('<IIQQQ', 32, 3, 0, 0x100000, 0x10000)),
 'dma_unmap': hdr(2, 3, P('<IIQQ', 24, 0, 0x100000, 0x10000)),
 'dma_unmap_all': hdr(2, 3, P('<IIQQ', 24, 2, 0, 0)),
 'device_info': hdr(3, 4, P('<IIII', 16, 0, 0, 0)),
 'region_info': hdr(4, 5, P('<IIIIQQ', 32, 0, 0, 0, 0, 0)),
 'region_info_big': hdr(4, 5, P('<IIIIQQ', 80, 0, 2, 0, 0, 0)),
 'io_fds': hdr(5, 6, P('<IIII', 16, 0, 0, 0)),
 'irq_info': hdr(6, 7, P('<IIII', 16, 0, 2, 0)),
 'set_irqs_bool': hdr(7, 8, P('<IIIII', 22, 0x2 | 0x20, 2, 0, 2) + b'\x01\x00'),
 'set_irqs_none': hdr(7, 8, P('<IIIII', 20, 0x1 | 0x20, 2, 0, 0)),
 'region_read': hdr(8, 9, P('<QII', 0, 7, 4)),
 'region_write': hdr(9, 10, P('<QII', 4, 7, 2) + b'\x06\x04'),
 'dma_read': hdr(10, 11, P('<QQ', 0x100000, 8)),
 'dma_write': hdr(11, 12, P('<QQ', 0x100000, 4) + b'abcd'),
 'reset': hdr(12, 13, b''),
 'write_multi': hdr(13, 15, P('<Q', 2) + P('<QII', 0x10, 0, 4) + b'\x01\x02\x03\x04\0\0\0\0' + P('<QII', 0x14, 0, 8) + b'12345678'),
 'feature': hdr(14, 16, P('<II', 8, 0x10000 | 1)),
 'mig_read': hdr(15, 17, P('<II', 8, 4096)),
}
os.makedirs('Fuzz/corpus/server_stream', exist_ok=True)
for k, v in cmds.items():
    open(f'Fuzz/corpus/server_stream/{k}', 'wb').write(v)
open('Fuzz/corpus/server_stream/session', 'wb').write(b''.join(cmds.values()))
open('Fuzz/corpus/server_stream/reply_from_client', 'wb').write(hdr(3, 4, P('<IIII', 16, 0, 0, 0), flags=REPLY))

# client_reply: [command index][fd count | requested count << 2] reply-message
order = ['version','dmaMap','dmaUnmap','deviceGetInfo','deviceGetRegionInfo','deviceGetRegionIOFDs','deviceGetIRQInfo',
         'deviceSetIRQs','regionRead','regionWrite','dmaRead','dmaWrite','deviceReset','regionWriteMulti','deviceFeature',
         'migDataRead','migDataWrite']
num = {'version':1,'dmaMap':2,'dmaUnmap':3,'deviceGetInfo':4,'deviceGetRegionInfo':5,'deviceGetRegionIOFDs':6,'deviceGetIRQInfo':7,
       'deviceSetIRQs':8,'regionRead':9,'regionWrite':10,'dmaRead':11,'dmaWrite':12,'deviceReset':13,'regionWriteMulti':15,
       'deviceFeature':16,'migDataRead':17,'migDataWrite':18}
def reply(name, payload, fds=0, req=0, mid=0, flags=REPLY, err=0):
    return bytes([order.index(name), fds | (req << 2)]) + hdr(mid, num[name], payload, flags, err)
def cap(cid, ver, nxt, body): return P('<HHI', cid, ver, nxt) + body
sparse = cap(1, 1, 0, P('<II', 2, 0) + P('<QQ', 0, 0x1000) + P('<QQ', 0x3000, 0x1000))
typecap = cap(2, 1, 0, P('<II', 0x80000000 | 0x1e98, 1))
rs = {
 'version': reply('version', P('<HH', 0, 2) + json),
 'region_two_step': reply('deviceGetRegionInfo', P('<IIIIQQ', 80, 7, 2, 0, 0x4000, 0)),
 'region_sparse': reply('deviceGetRegionInfo', P('<IIIIQQ', 32 + len(sparse), 0xf, 0, 32, 0x4000, 0) + sparse, fds=1),
 'region_sparse_type': reply('deviceGetRegionInfo', P('<IIIIQQ', 32 + 48 + 16, 0xf, 0, 32, 0x4000, 0)
        + cap(1, 1, 80, P('<II', 2, 0) + P('<QQ', 0, 0x1000) + P('<QQ', 0x3000, 0x1000)) + typecap, fds=1),
 'region_self_next': reply('deviceGetRegionInfo', P('<IIIIQQ', 40, 0xf, 0, 32, 0x4000, 0) + cap(1, 1, 32, P('<II', 0, 0))),
 'region_area_overflow': reply('deviceGetRegionInfo', P('<IIIIQQ', 48, 0xf, 0, 32, 0x4000, 0) + cap(1, 1, 0, P('<II', 0x10000001, 0))),
 'region_cap_underflow': reply('deviceGetRegionInfo', P('<IIIIQQ', 48, 0xf, 0, 8, 0x4000, 0) + cap(1, 1, 0, P('<II', 0, 0))),
 'device_info': reply('deviceGetInfo', P('<IIII', 16, 3, 9, 5)),
 'device_info_caps': reply('deviceGetInfo', P('<IIIIII', 40, 0x83, 9, 5, 24, 0) + cap(3, 1, 0, P('<II', 1, 2))),
 'io_fds': reply('deviceGetRegionIOFDs', P('<IIII', 16 + 40, 0, 2, 1) + P('<QQIIIIQ', 0, 4, 0, 0, 0, 0, 0), fds=1),
 'irq_info': reply('deviceGetIRQInfo', P('<IIII', 16, 9, 2, 32)),
 'region_read': reply('regionRead', P('<QII', 0, 7, 4) + b'\x86\x80\x00\x01', req=4),
 'region_write': reply('regionWrite', P('<QII', 4, 7, 2)),
 'dma_unmap': reply('dmaUnmap', P('<IIQQ', 24, 0, 0x100000, 0x10000)),
 'write_multi': reply('regionWriteMulti', P('<Q', 2)),
 'feature': reply('deviceFeature', P('<II', 16, 0x10001) + P('<Q', 5)),
 'error': reply('deviceReset', b'', flags=REPLY | ERROR, err=22),
 'dma_read': reply('dmaRead', P('<QQ', 0x100000, 3) + b'xyz', req=3),
}
os.makedirs('Fuzz/corpus/client_reply', exist_ok=True)
for k, v in rs.items():
    open(f'Fuzz/corpus/client_reply/{k}', 'wb').write(v)
