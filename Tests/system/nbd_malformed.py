"""Malformed input at the NBD gateway, with raw sockets; a libnbd client keeps working.

Usage: /usr/bin/python3 nbd_malformed.py HOST PORT EXPORT
"""
import os
import socket
import struct
import sys

import nbd

HOST, PORT, EXPORT = sys.argv[1], int(sys.argv[2]), sys.argv[3]
IHAVEOPT = 0x49484156454F5054
OPT_REPLY = 0x3e889045565a9
REQ = 0x25609513
URI = f"nbd://{HOST}:{PORT}/{EXPORT}"


def check(what, cond):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            raise EOFError(f"closed after {len(b)} of {n} bytes")
        b += chunk
    return b


def closed(s):
    """True when the server closes the connection (reads EOF) within 5 s."""
    s.settimeout(5)
    try:
        while True:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def handshake(flags=3):
    s = socket.create_connection((HOST, PORT))
    g = recv_exact(s, 18)
    assert g[:8] == b"NBDMAGIC" and struct.unpack(">Q", g[8:16])[0] == IHAVEOPT, g
    s.sendall(struct.pack(">I", flags))
    return s


def option(s, code, data=b""):
    s.sendall(struct.pack(">QII", IHAVEOPT, code, len(data)) + data)


def option_reply(s):
    magic, opt, typ, n = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == OPT_REPLY, hex(magic)
    return opt, typ, recv_exact(s, n)


def go(s, name):
    n = name.encode()
    option(s, 7, struct.pack(">I", len(n)) + n + struct.pack(">H", 0))
    while True:
        opt, typ, data = option_reply(s)
        if typ == 1:
            return
        assert typ == 3, (hex(typ), data)


def good_client_works():
    h = nbd.NBD()
    h.connect_uri(URI)
    data = os.urandom(65536)
    h.pwrite(data, 4096)
    ok = h.pread(65536, 4096) == data
    h.shutdown()
    return ok


keeper = nbd.NBD()  # a client connected throughout
keeper.connect_uri(URI)
keeper.pwrite(b"\x42" * 4096, 0)

s = socket.create_connection((HOST, PORT)); recv_exact(s, 18); s.sendall(struct.pack(">I", 0x80))
check("unknown client flags: closed", closed(s))
s = socket.create_connection((HOST, PORT)); recv_exact(s, 18); s.sendall(struct.pack(">I", 0))
check("non-fixed newstyle client: closed", closed(s))
s = handshake(); s.sendall(b"NOTMAGIC" + bytes(8))
check("bad option magic: closed", closed(s))
s = handshake(); s.sendall(struct.pack(">QII", IHAVEOPT, 7, 0xFFFFFFF0))
check("huge option length: closed", closed(s))
s = handshake(); option(s, 12345)
check("unknown option: ERR_UNSUP", option_reply(s)[1] == 0x80000001)
option(s, 3, b"junk")
check("LIST with data: ERR_INVALID", option_reply(s)[1] == 0x80000003)
option(s, 7, struct.pack(">I", 1000) + b"x")
check("GO with a name longer than the option: ERR_INVALID", option_reply(s)[1] == 0x80000003)
option(s, 7, struct.pack(">I", 6) + b"nosuch" + struct.pack(">H", 0))
check("GO of an unknown export: ERR_UNKNOWN", option_reply(s)[1] == 0x80000006)
option(s, 10, struct.pack(">I", 0) + struct.pack(">I", 0))
check("SET_META_CONTEXT before STRUCTURED_REPLY: ERR_INVALID", option_reply(s)[1] == 0x80000003)
option(s, 5)
check("STARTTLS without TLS configured: ERR_POLICY", option_reply(s)[1] == 0x80000002)
option(s, 2)
check("ABORT: ACK then closed", option_reply(s)[1] == 1 and closed(s))
s = handshake(); s.sendall(struct.pack(">QI", IHAVEOPT, 7)[:10]); s.close()
check("truncated option header then hang-up: server still serves", good_client_works())

# Transmission phase.
s = handshake(); go(s, EXPORT)
s.sendall(struct.pack(">IHHQQI", REQ, 0, 99, 1, 0, 0))
magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
check("unknown command: simple reply EINVAL", (magic, err, cookie) == (0x67446698, 22, 1))
s.sendall(struct.pack(">IHHQQI", REQ, 0x8000, 0, 2, 0, 512))
check("unknown flag: EINVAL", struct.unpack(">IIQ", recv_exact(s, 16))[1:] == (22, 2))
s.sendall(struct.pack(">IHHQQI", REQ, 0, 0, 3, 2**64 - 512, 1024))
check("read with offset+length overflowing 64 bits: EINVAL", struct.unpack(">IIQ", recv_exact(s, 16))[1:] == (22, 3))
s.sendall(struct.pack(">IHHQQI", REQ, 0, 0, 4, 0, 512))
magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
check("valid read after errors", err == 0 and cookie == 4 and recv_exact(s, 512) == b"\x42" * 512)
s.sendall(struct.pack(">IHHQQI", 0xdeadbeef, 0, 0, 5, 0, 512))
check("bad request magic: closed", closed(s))
s = handshake(); go(s, EXPORT)
s.sendall(struct.pack(">IHHQQI", REQ, 0, 1, 6, 0, 0xFFFFFFFF))
check("write of 4 GiB: closed", closed(s))
s = handshake(); go(s, EXPORT)
s.sendall(struct.pack(">IHHQQI", REQ, 0, 1, 7, 8192, 65536) + b"\x99" * 1000)
s.close()
check("client gone mid-write: server still serves", good_client_works())
s = handshake(); go(s, EXPORT)
s.sendall(struct.pack(">IHHQQI", REQ, 0, 0, 8, 0, 512)[:20])
s.close()
check("truncated request header then hang-up: server still serves", good_client_works())
s = handshake(); go(s, EXPORT)
for i in range(200):  # more than the in-flight limit, never reading replies
    s.sendall(struct.pack(">IHHQQI", REQ, 0, 0, 1000 + i, 0, 1 << 20))
s.close()
check("200 reads of 1 MiB never read back, then hang-up: server still serves", good_client_works())
s = handshake(); go(s, EXPORT)
s.sendall(struct.pack(">IHHQQI", REQ, 0, 2, 9, 0, 0))
check("DISC: closed without a reply", closed(s))

check("the client connected throughout still reads its data", keeper.pread(4096, 0) == b"\x42" * 4096)
keeper.shutdown()
print("all malformed-input checks passed")
