"""Every NBD command and flag against the Cairn gateway, with python3-libnbd.

Usage: /usr/bin/python3 nbd_commands.py URI BUSY_URI UNIX_URI
URI names an empty writable export; BUSY_URI one whose writer is someone else; UNIX_URI
is URI's export over the unix socket. Each check prints one line; any failure raises.
"""
import os
import random
import sys

import nbd

URI, BUSY_URI, UNIX_URI = sys.argv[1:4]
MiB = 1 << 20


def check(what, cond):
    if not cond:
        raise SystemExit(f"FAIL: {what}")
    print(f"ok: {what}")


def connect(uri=URI, structured=True, meta=True):
    h = nbd.NBD()
    h.set_strict_mode(0)  # let bad requests reach the server
    h.set_request_structured_replies(structured)
    if meta:
        h.add_meta_context(nbd.CONTEXT_BASE_ALLOCATION)
    h.connect_uri(uri)
    return h


def server_error(what, fn, want):
    """fn must fail with errno `want` (a name such as 'EINVAL') reported by the server."""
    try:
        fn()
    except nbd.Error as e:
        check(f"{what} -> {want} ({e.string})", e.errno == want)
        return
    raise SystemExit(f"FAIL: {what} succeeded, wanted {want}")


def extents(h, count, offset, flags=0):
    out = []

    def cb(context, off, entries, err):
        if context == nbd.CONTEXT_BASE_ALLOCATION:
            out.extend(zip(entries[0::2], entries[1::2]))
        return 0
    h.block_status(count, offset, cb, flags)
    return out


h = connect()
size = h.get_size()
check("size is 128 MiB", size == 128 * MiB)
check("structured replies negotiated", h.get_structured_replies_negotiated())
for name in ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_df", "can_multi_conn", "can_cache"]:
    check(name, getattr(h, name)())
check("base:allocation negotiated", h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION))
check("not read-only", not h.is_read_only())
check("block sizes 1 / 4096 / 32 MiB",
      (h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED), h.get_block_size(nbd.SIZE_MAXIMUM))
      == (1, 4096, 32 * MiB))

# A model of the first 4 MiB, checked after random unaligned I/O.
model = bytearray(4 * MiB)
rng = random.Random(7)
for i in range(300):
    off = rng.randrange(0, len(model) - 70000)
    n = rng.randrange(1, 70000)
    kind = rng.random()
    if kind < 0.6:
        data = os.urandom(n)
        h.pwrite(data, off, nbd.CMD_FLAG_FUA if i % 5 == 0 else 0)
        model[off:off + n] = data
    elif kind < 0.8:
        h.trim(n, off)
        model[off:off + n] = bytes(n)
    else:
        h.zero(n, off, nbd.CMD_FLAG_NO_HOLE if i % 2 else 0)
        model[off:off + n] = bytes(n)
    if i % 30 == 0:
        roff = rng.randrange(0, len(model) - 70000)
        rn = rng.randrange(1, 70000)
        assert h.pread(rn, roff) == bytes(model[roff:roff + rn]), f"read {roff}+{rn} after op {i}"
check("300 random unaligned writes / trims / zeroes match a model", h.pread(len(model), 0) == bytes(model))
check("DF read returns the data in one chunk", h.pread(100000, 12345, nbd.CMD_FLAG_DF) == bytes(model[12345:112345]))
h.flush()
h.flush(nbd.CMD_FLAG_FUA)
check("flush", True)
h.cache(MiB, 0)
check("cache", True)

# Allocation map: data, then a trimmed hole, then NO_HOLE zeroes allocated.
base = 64 * MiB
h.pwrite(b"\x01" * (4 * MiB), base)
h.trim(MiB, base + MiB)
h.zero(MiB, base + 2 * MiB, nbd.CMD_FLAG_NO_HOLE)
h.zero(512 * 1024, base + 3 * MiB, nbd.CMD_FLAG_FAST_ZERO)
ext = extents(h, 4 * MiB, base)
check(f"block status map {ext}",
      ext[:3] == [(MiB, 0), (MiB, 3), (MiB, 0)] and ext[3] == (512 * 1024, 3))
one = extents(h, 4096, base + MiB, nbd.CMD_FLAG_REQ_ONE)
check(f"REQ_ONE gives one extent within the request {one}", one == [(4096, 3)])
check("unallocated tail is a hole", extents(h, MiB, size - MiB) == [(MiB, 3)])
check("hole reads as zeroes", h.pread(MiB, base + MiB) == bytes(MiB))
check("NO_HOLE zeroes read as zeroes", h.pread(MiB, base + 2 * MiB) == bytes(MiB))
server_error("WRITE_ZEROES NO_HOLE|FAST_ZERO", lambda: h.zero(4096, base, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO), "ENOTSUP")

# Zero-length requests succeed and change nothing.
h.pwrite(b"", 0); h.trim(0, 0); h.zero(0, 0)
check("zero-length read", h.pread(0, 0) == b"")

# Out of range, bad flags, oversized requests: errors, and the connection goes on.
server_error("read past the end", lambda: h.pread(2, size - 1), "EINVAL")
server_error("write past the end", lambda: h.pwrite(b"xx", size - 1), "ENOSPC")
server_error("trim past the end", lambda: h.trim(4096, size), "EINVAL")
server_error("zero past the end", lambda: h.zero(8192, size - 4096), "ENOSPC")
server_error("block status past the end", lambda: extents(h, 4096, size), "EINVAL")
server_error("read with REQ_ONE flag", lambda: h.pread(512, 0, nbd.CMD_FLAG_REQ_ONE), "EINVAL")
server_error("trim with NO_HOLE flag", lambda: h.trim(512, 0, nbd.CMD_FLAG_NO_HOLE), "EINVAL")
server_error("write above the maximum block size", lambda: h.pwrite(bytes(32 * MiB + 4096), 0), "EINVAL")
server_error("read above the maximum block size", lambda: h.pread(32 * MiB + 4096, 0), "EOVERFLOW")
check("connection still serves after errors", h.pread(4096, 0) == bytes(model[:4096]))

# Many requests in flight on one connection.
bufs = {}
cookies = []
for i in range(64):
    data = os.urandom(65536)
    bufs[i] = data
    cookies.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), 80 * MiB + i * 65536))
while h.aio_in_flight() > 0:
    h.poll(-1)
check("64 writes in flight at once", all(h.aio_command_completed(c) for c in cookies))
reads = {}
for i in range(64):
    b = nbd.Buffer(65536)
    reads[h.aio_pread(b, 80 * MiB + i * 65536)] = (i, b)
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in reads:
    h.aio_command_completed(c)
check("64 writes and 64 reads in flight at once", all(b.to_bytearray() == bufs[i] for i, b in reads.values()))

# Simple replies (no structured replies negotiated).
s = connect(structured=False, meta=False)
check("simple replies: not structured, no DF", not s.get_structured_replies_negotiated() and not s.can_df())
check("simple replies: read", s.pread(4096, 4096) == bytes(model[4096:8192]))
server_error("simple replies: read past the end", lambda: s.pread(4096, size), "EINVAL")
server_error("simple replies: block status without a context", lambda: extents(s, 4096, 0), "EINVAL")
check("simple replies: connection goes on", s.pread(10, 0) == bytes(model[:10]))
s.shutdown()

# Multi-conn: a write on one connection, a flush on another, a read on a third.
a, b, c = connect(), connect(), connect()
data = os.urandom(MiB)
a.pwrite(data, 100 * MiB)
b.flush()
check("multi-conn: flush on another connection makes the write visible", c.pread(MiB, 100 * MiB) == data)
u = connect(UNIX_URI)
check("unix socket sees the same data", u.pread(MiB, 100 * MiB) == data)
for x in (a, b, c, u):
    x.shutdown()

# A volume another writer holds is refused, with the reason.
try:
    connect(BUSY_URI)
    raise SystemExit("FAIL: export held by another writer was opened")
except nbd.Error as e:
    check(f"busy export refused ({e.string})", "another writer" in e.string or "POLICY" in e.string.upper())
h.shutdown()
print("all python-libnbd checks passed")
