"""A tiny client of Cairn's data-path protocol for system tests (see CairnWire/Frame.swift)."""
import socket
import struct

REQ_MAGIC = 0x43524E51
RESP_MAGIC = 0x43524E52
OP = {"hello": 1, "read": 2, "write": 3, "block_table": 5, "fence": 7, "ping": 11}
STATUS = {0: "ok", 1: "stale_epoch", 2: "checksum", 3: "io", 4: "invalid", 5: "not_found",
          6: "no_space", 7: "unauthenticated", 8: "busy", 9: "internal"}


def frame(op, rid, payload):
    return struct.pack(">IBBHQII", REQ_MAGIC, 1, OP[op], 0, rid, len(payload), 0) + payload


def short_string(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b


class Conn:
    def __init__(self, host, port, timeout=5):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.rid = 0

    def send_raw(self, data):
        self.s.sendall(data)

    def call(self, op, payload):
        self.rid += 1
        self.s.sendall(frame(op, self.rid, payload))
        return self.reply()

    def reply(self):
        head = self._read(24)
        magic, _ver, _op, status, _rid, length, _ = struct.unpack(">IBBHQII", head)
        assert magic == RESP_MAGIC, hex(magic)
        return STATUS[status], self._read(length)

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise EOFError("connection closed")
            out += chunk
        return out

    def hello(self, secret):
        return self.call("hello", short_string(secret) + short_string("systest"))

    def write(self, volume, chunk, epoch, seq, offset, data):
        return self.call("write", struct.pack(">QIQQI", volume, chunk, epoch, seq, offset) + data)

    def read(self, volume, chunk, epoch, offset, length):
        return self.call("read", struct.pack(">QIQII", volume, chunk, epoch, offset, length))
