#!/usr/bin/env bash
# CLI errors are one clear line; only holders of the cluster secret get in (HTTP API and
# data port); a writer holding an old epoch is refused and changes nothing.
source "$(dirname "$0")/lib.sh"
start_cluster 3 --chunk-size 16MiB --journal-size 32MiB

log "clear errors"
expect_fail "is not a size" "$CAIRN" volume create a --size 12QB
expect_fail "multiple of 4096" "$CAIRN" volume create a --size 12345
expect_fail "not valid" "$CAIRN" volume create Bad_Name --size 1GiB
expect_fail "need 4 storage nodes up; 3 are up" "$CAIRN" volume create a --size 1GiB --replicas 4
expect_fail "does not exist" "$CAIRN" volume get nope
expect_fail "does not exist" "$CAIRN" volume export nope "$T/x"
expect_fail "connection refused" env CAIRN_MANAGER=http://127.0.0.1:1 "$CAIRN" status
"$CAIRN" volume create v1 --size 64MiB >/dev/null
expect_fail "already exists" "$CAIRN" volume create v1 --size 64MiB
expect_fail "shrinking" "$CAIRN" volume resize v1 --size 32MiB
"$CAIRN" volume resize v1 --size 96MiB | grep -q "96 MiB" || fail "resize"
head -c 200M /dev/zero > "$T/big.img"
expect_fail "larger than volume" "$CAIRN" volume import v1 "$T/big.img"
"$CAIRN" status --output json | python3 -c 'import json,sys; s=json.load(sys.stdin); assert len(s["nodes"])==3'

log "the manager API refuses requests without the secret"
code=$(curl -s -o "$T/body" -w '%{http_code}' "$(manager_url)/v1/volumes")
[ "$code" = 401 ] || fail "no secret: HTTP $code"
grep -q "cluster secret is missing or wrong" "$T/body" || fail "401 body: $(cat "$T/body")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope" "$(manager_url)/v1/volumes")
[ "$code" = 401 ] || fail "wrong secret: HTTP $code"
expect_fail "cluster secret is missing or wrong" env CAIRN_SECRET=wrong CAIRN_CONFIG=/nonexistent CAIRN_MANAGER="$(manager_url)" "$CAIRN" status
expect_fail "no cluster secret" env CAIRN_CONFIG=/nonexistent CAIRN_MANAGER="$(manager_url)" "$CAIRN" status

log "write data, then check the data port and fencing with a raw protocol client"
head -c 16M /dev/urandom > "$T/v1.img"
"$CAIRN" volume import v1 "$T/v1.img" >/dev/null
api /v1/volumes/v1/map > "$T/map.json"
SYSTEST_DIR=$(dirname "$0") SECRET=$(secret) MAP="$T/map.json" /usr/bin/python3 - <<'PY'
import json, os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath("lib.sh")))
sys.path.insert(0, os.environ.get("SYSTEST_DIR", "."))
from wire import Conn
m = json.load(open(os.environ["MAP"]))
vol, epoch = m["volume"]["id"], m["volume"]["epoch"]
node = m["chunks"][0]["replicas"][0]["node"]
addr = [n["address"] for n in m["nodes"] if n["id"] == node][0]
host, port = addr.rsplit(":", 1)

# No secret: refused, connection closed.
c = Conn(host, int(port))
status, body = c.hello("wrong")
assert status == "unauthenticated", status
assert b"cluster secret" in body, body
try:
    c.call("ping", b"")
    raise SystemExit("connection stayed open after a refused HELLO")
except (EOFError, ConnectionResetError, BrokenPipeError):
    pass
# Requests before HELLO are refused too.
c = Conn(host, int(port))
status, _ = c.read(vol, 0, epoch, 0, 4096)
assert status == "unauthenticated", status

c = Conn(host, int(port))
assert c.hello(os.environ["SECRET"])[0] == "ok"
status, before = c.read(vol, 0, epoch, 0, 4096)
assert status == "ok" and len(before) == 4096, status
# A writer still at an older epoch is refused with the current epoch, and nothing changes.
status, body = c.write(vol, 0, epoch - 1, 1, 0, b"\xff" * 4096)
assert status == "stale_epoch", status
import struct
assert struct.unpack(">Q", body)[0] == epoch, body
status, after = c.read(vol, 0, epoch, 0, 4096)
assert status == "ok" and after == before, "data changed after a refused write"
# Reads at an old epoch are refused as well.
assert c.read(vol, 0, epoch - 1, 0, 4096)[0] == "stale_epoch"
print("data port: auth and fencing OK")
PY
"$CAIRN" volume export v1 "$T/v1.out" >/dev/null
cmp <(head -c 16M "$T/v1.out") "$T/v1.img" || fail "data changed"

log "a second writer fences the first: attach with --force bumps the epoch"
e1=$("$CAIRN" volume get v1 --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["volume"]["epoch"])')
"$CAIRN" volume import v1 "$T/v1.img" --force >/dev/null
e2=$("$CAIRN" volume get v1 --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["volume"]["epoch"])')
[ "$e2" -gt "$e1" ] || fail "epoch did not move: $e1 -> $e2"
log "PASS"
