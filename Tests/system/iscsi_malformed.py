"""Raw iSCSI bytes against the gateway: malformed PDUs, protocol violations and bad
digests must end in a Reject or a closed connection, never a crash.
Usage: iscsi_malformed.py PORT TARGET_IQN"""
import socket
import struct
import sys

PORT = int(sys.argv[1])
TARGET = sys.argv[2]


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def pdu(bhs, data=b"", header_digest=False):
    bhs = bytearray(bhs)
    bhs[5:8] = struct.pack(">I", len(data))[1:]
    out = bytes(bhs)
    if header_digest:
        out += struct.pack("<I", crc32c(out))
    return out + data + b"\0" * ((4 - len(data) % 4) % 4)


def login(keys, csg=1, nsg=3):
    bhs = bytearray(48)
    bhs[0] = 0x43
    bhs[1] = 0x80 | csg << 2 | nsg
    bhs[8:14] = bytes([0x40, 0, 0, 0, 0, 1])
    struct.pack_into(">I", bhs, 16, 1)   # ITT
    struct.pack_into(">I", bhs, 24, 1)   # CmdSN
    return pdu(bhs, b"".join(f"{k}={v}".encode() + b"\0" for k, v in keys))


def connect():
    s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
    return s


def read_pdu(s, header_digest=False):
    head = b""
    while len(head) < 48:
        chunk = s.recv(48 - len(head))
        if not chunk:
            return None
        head += chunk
    length = int.from_bytes(head[5:8], "big")
    rest = (4 if header_digest else 0) + length + (4 - length % 4) % 4
    body = b""
    while len(body) < rest:
        chunk = s.recv(rest - len(body))
        if not chunk:
            return None
        body += chunk
    return head, body


def closed(s):
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, socket.timeout):
        return True


def logged_in(digest):
    s = connect()
    s.sendall(login([("InitiatorName", "iqn.2026-01.test:raw"), ("TargetName", TARGET), ("SessionType", "Normal"),
                     ("AuthMethod", "None"), ("HeaderDigest", "CRC32C" if digest else "None"), ("DataDigest", "None")], csg=0, nsg=1))
    head, _ = read_pdu(s)
    assert head[0] & 0x3F == 0x23 and head[36:38] == b"\0\0", f"security stage refused: {head[36:38].hex()}"
    bhs = bytearray(login([("InitiatorName", "iqn.2026-01.test:raw")])[:48])
    bhs[1] = 0x80 | 1 << 2 | 3
    s.sendall(pdu(bhs, b""))
    head, _ = read_pdu(s)
    assert head[0] & 0x3F == 0x23 and head[36:38] == b"\0\0", f"login refused: {head[36:38].hex()}"
    assert head[1] & 0x83 == 0x83, "no transit to full feature phase"
    return s


cases = 0

# 1. Garbage instead of a login: the connection is closed.
s = connect(); s.sendall(b"\xff" * 48); assert closed(s), "garbage"; cases += 1
# 2. A login whose data segment is far beyond 8 KiB: closed before it is read.
bhs = bytearray(login([])[:48]); bhs[5:8] = b"\xff\xff\xff"
s = connect(); s.sendall(bytes(bhs)); assert closed(s), "oversized login"; cases += 1
# 3. A SCSI command before the login: closed.
bhs = bytearray(48); bhs[0] = 0x01; bhs[1] = 0x80
s = connect(); s.sendall(pdu(bhs)); assert closed(s), "command before login"; cases += 1
# 4. Login text without '=': refused with an initiator error, then closed.
s = connect(); s.sendall(pdu(bytearray(login([])[:48]), b"garbage\0")); head, _ = read_pdu(s)
assert head[0] & 0x3F == 0x23 and head[36] == 0x02, f"malformed text: status {head[36:38].hex()}"
assert closed(s); cases += 1
# 5. After a login with header digests: a PDU with a wrong digest closes the connection.
s = logged_in(True)
bhs = bytearray(48); bhs[0] = 0x40; bhs[1] = 0x80; bhs[16:20] = b"\0\0\0\x09"; bhs[20:24] = b"\xff" * 4
good = pdu(bhs, header_digest=True)
s.sendall(good); head, _ = read_pdu(s, header_digest=True); assert head[0] & 0x3F == 0x20, "NOP-In expected"
bad = bytearray(good); bad[48] ^= 0xFF
s.sendall(bytes(bad)); assert closed(s), "bad header digest"; cases += 1
# 6. An unknown opcode in full feature phase gets a Reject carrying its header.
s = logged_in(False)
bhs = bytearray(48); bhs[0] = 0x1C; bhs[1] = 0x80
s.sendall(pdu(bhs)); head, body = read_pdu(s)
assert head[0] & 0x3F == 0x3F, f"Reject expected, got opcode {head[0] & 0x3F:#x}"
assert body[:1] == b"\x1c", "the Reject carries the rejected header"; cases += 1
# 7. Data-Out for a write that was never sent: ignored, the session still answers a NOP.
bhs = bytearray(48); bhs[0] = 0x05; bhs[1] = 0x80; bhs[16:20] = b"\0\0\0\x77"
s.sendall(pdu(bhs, b"x" * 512))
bhs = bytearray(48); bhs[0] = 0x40; bhs[1] = 0x80; bhs[16:20] = b"\0\0\0\x0a"; bhs[20:24] = b"\xff" * 4
s.sendall(pdu(bhs)); head, _ = read_pdu(s); assert head[0] & 0x3F == 0x20, "session dead after stray Data-Out"; cases += 1
# 8. A SCSI command with immediate data although it is not a write: a Reject.
bhs = bytearray(48); bhs[0] = 0x01; bhs[1] = 0xC0; bhs[16:20] = b"\0\0\0\x0b"; struct.pack_into(">I", bhs, 20, 512)
struct.pack_into(">I", bhs, 24, 1); bhs[32] = 0x28; bhs[40] = 1
s.sendall(pdu(bhs, b"y" * 64)); head, _ = read_pdu(s)
assert head[0] & 0x3F == 0x3F, f"Reject expected for immediate data on a read, got {head[0] & 0x3F:#x}"; cases += 1
s.close()
print(f"{cases} malformed-input cases handled")
