#!/usr/bin/env bash
# A read-only volume (`cairn volume set NAME --read-only true`): its NBD export carries
# READ_ONLY, reads return the data written before, every write command fails with EPERM
# and changes nothing, a writer (the CLI import) is refused with a clear error; making
# it read-only under an attached writer needs --force; writable again, writes work.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 3
"$CAIRN" volume create ro --size 16MiB --replicas 2 >/dev/null
head -c 16M /dev/urandom > "$T/ro.img"
"$CAIRN" volume import ro "$T/ro.img" >/dev/null

# An attached writer blocks the change unless --force.
curl -fsS -X POST -H "Authorization: Bearer $(secret)" -d '{"client":"holder","force":false,"readOnly":false}' \
    "$(manager_url)/v1/volumes/ro/attach" >/dev/null
expect_fail "attached to holder" "$CAIRN" volume set ro --read-only true
"$CAIRN" volume set ro --read-only true --force | grep -q "is now read-only" || fail "set --force did not answer"
"$CAIRN" volume get ro --output json | $PY -c '
import json, sys
v = json.load(sys.stdin)["volume"]
assert v["readOnly"] is True and v.get("writer") is None, v'

expect_fail "read-only" "$CAIRN" volume import ro "$T/ro.img"
cat > "$T/ro.py" <<'PYEOF'
import nbd, sys
uri, image = sys.argv[1], sys.argv[2]
want = open(image, "rb").read()
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(uri)
assert h.is_read_only() == 1, "the export does not carry READ_ONLY"
assert h.pread(1 << 20, 0) == want[:1 << 20]
for name, call in [("write", lambda: h.pwrite(b"x" * 4096, 0)),
                   ("trim", lambda: h.trim(4096, 0)),
                   ("write zeroes", lambda: h.zero(4096, 0))]:
    try:
        call()
    except nbd.Error as e:
        assert e.errno == "EPERM", f"{name}: {e} (errno {e.errno})"
    else:
        raise SystemExit(f"{name} on a read-only export succeeded")
assert h.pread(len(want), 0) == want, "data changed"
h.shutdown()
print("read-only export: READ_ONLY flag, reads equal, writes refused with EPERM")
PYEOF
$PY "$T/ro.py" "$(nbd_uri ro)" "$T/ro.img" || fail "read-only export case failed"

"$CAIRN" volume set ro --read-only false | grep -q "is now writable" || fail "could not make it writable"
head -c 16M /dev/urandom > "$T/ro2.img"
nbdcopy "$T/ro2.img" "$(nbd_uri ro)" || fail "nbdcopy into the writable volume failed"
"$CAIRN" volume export ro "$T/out.img" >/dev/null
cmp -s "$T/ro2.img" "$T/out.img" || fail "data written after making the volume writable does not read back"
log "PASS"
