#!/usr/bin/env bash
# Snapshots and clones on a real cluster (3 nodes, RF=2, 4 MiB chunks): a snapshot keeps
# the data it was taken with while the volume is overwritten through NBD; it is exported
# read-only as VOLUME@SNAPSHOT (listed, READ_ONLY, writes EPERM) and as the iSCSI target
# ...:VOLUME:SNAPSHOT (listed, readable, writes refused); clones from the snapshot
# and from the volume read their source, take writes that reach neither the snapshot nor
# the volume; after kill -9 of a storage node the snapshot and the clone still read back
# from the surviving replicas; a deleted snapshot's clone keeps its data.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
source "$(dirname "$0")/iscsi_lib.sh"
start_nbd_cluster 3 --chunk-size 4MiB --iscsi-port "$ISCSI_PORT"
wait_for "the iSCSI target on port $ISCSI_PORT" 30 iscsi_listening "$ISCSI_PORT"
MiB=$((1 << 20))

"$CAIRN" volume create vol --size 32MiB --replicas 2 >/dev/null
head -c 32M /dev/urandom > "$T/a.img"
"$CAIRN" volume import vol "$T/a.img" >/dev/null

"$CAIRN" snapshot create vol s1 --output json | $PY -c '
import json, sys
s = json.load(sys.stdin)
assert s["name"] == "s1" and s["volume"] == "vol" and s["readyToUse"] is True and s["sizeBytes"] == 32 << 20, s'
"$CAIRN" snapshot create vol s1 >/dev/null || fail "taking the same snapshot again is not idempotent"
"$CAIRN" volume create other --size 4MiB --replicas 2 >/dev/null
expect_fail "already exists" "$CAIRN" snapshot create other s1
"$CAIRN" snapshot list vol | grep -q "vol@s1" || fail "snapshot list does not show s1"
log "snapshot s1 taken"

# Overwrite 8 MiB at 6 MiB (across chunks 1-3) through the volume's NBD export.
head -c 8M /dev/urandom > "$T/b.img"
cp "$T/a.img" "$T/expected.img"
dd if="$T/b.img" of="$T/expected.img" bs=1M seek=6 conv=notrunc status=none
cat > "$T/snap.py" <<'PYEOF'
import nbd, sys
MiB = 1 << 20

def connect(uri):
    h = nbd.NBD()
    h.set_strict_mode(0)
    h.connect_uri(uri)
    return h

def overwrite(uri, image, offset):
    h = connect(uri)
    h.pwrite(open(image, "rb").read(), offset)
    h.flush()
    h.shutdown()

def readonly(uri, image):
    want = open(image, "rb").read()
    h = connect(uri)
    assert h.is_read_only() == 1, "the snapshot export does not carry READ_ONLY"
    assert h.get_size() == len(want), h.get_size()
    for name, call in [("write", lambda: h.pwrite(b"x" * 4096, 0)),
                       ("trim", lambda: h.trim(4096, 0)),
                       ("write zeroes", lambda: h.zero(4096, 8 * MiB))]:
        try:
            call()
        except nbd.Error as e:
            assert e.errno == "EPERM", f"{name}: {e} (errno {e.errno})"
        else:
            raise SystemExit(f"{name} on the snapshot export succeeded")
    assert h.pread(len(want), 0) == want, "the snapshot does not read back as taken"
    h.shutdown()

def compare(uri, image):
    want = open(image, "rb").read()
    h = connect(uri)
    got = b"".join(h.pread(min(4 * MiB, len(want) - o), o) for o in range(0, len(want), 4 * MiB))
    assert got == want, f"{uri} differs from {image}"
    h.shutdown()

{"overwrite": lambda: overwrite(sys.argv[2], sys.argv[3], int(sys.argv[4])),
 "readonly": lambda: readonly(sys.argv[2], sys.argv[3]),
 "compare": lambda: compare(sys.argv[2], sys.argv[3])}[sys.argv[1]]()
PYEOF
$PY "$T/snap.py" overwrite "$(nbd_uri vol)" "$T/b.img" $((6 * MiB)) || fail "overwriting the volume through NBD failed"

nbdinfo --list "$(nbd_uri "")" > "$T/list.txt" || fail "nbdinfo --list failed"
grep -q "export=\"vol@s1\"\|export=vol@s1\|vol@s1" "$T/list.txt" || { cat "$T/list.txt"; fail "the export list lacks vol@s1"; }
$PY "$T/snap.py" readonly "$(nbd_uri vol@s1)" "$T/a.img" || fail "the snapshot export is wrong"
$PY "$T/snap.py" compare "$(nbd_uri vol)" "$T/expected.img" || fail "the volume does not have the new data"
"$CAIRN" volume export vol@s1 "$T/s1.img" >/dev/null
cmp -s "$T/a.img" "$T/s1.img" || fail "cairn volume export of the snapshot differs from the data it was taken with"
# iSCSI: the snapshot is the write-protected target ...:vol:s1.
iscsi-ls -s "iscsi://127.0.0.1:$ISCSI_PORT" > "$T/targets.txt" || fail "iscsi-ls failed"
grep -q "${IQN_PREFIX}vol:s1" "$T/targets.txt" || { cat "$T/targets.txt"; fail "iscsi-ls does not list the snapshot"; }
qemu-img convert -f raw -O raw "$(iscsi_url vol:s1)" "$T/s1-iscsi.img" || fail "reading the snapshot over iSCSI failed"
cmp -s "$T/a.img" "$T/s1-iscsi.img" || fail "the snapshot read over iSCSI differs"
if qemu-io -f raw -c "write -P 7 0 4k" "$(iscsi_url vol:s1)" > "$T/qemu-io.txt" 2>&1; then
    cat "$T/qemu-io.txt"; fail "qemu-io opened the snapshot's iSCSI target for writing"
fi
grep -q "write protected" "$T/qemu-io.txt" || { cat "$T/qemu-io.txt"; fail "the snapshot's LUN is not reported write protected"; }
log "snapshot reads the old data (NBD read-only, iSCSI write-protected, CLI export), the volume the new"

# Clones: from the snapshot (larger) and from the volume as it is now.
"$CAIRN" volume clone c1 --from-snapshot s1 --size 40MiB --output json | $PY -c '
import json, sys
v = json.load(sys.stdin)
assert v["sizeBytes"] == 40 << 20 and v["contentSource"] == {"snapshot": {"_0": "s1"}}, v'
"$CAIRN" volume clone c2 --from-volume vol >/dev/null
expect_fail "at least" "$CAIRN" volume clone c3 --from-snapshot s1 --size 16MiB
cp "$T/a.img" "$T/c1.img"; head -c 8M /dev/zero >> "$T/c1.img"
$PY "$T/snap.py" compare "$(nbd_uri c1)" "$T/c1.img" || fail "the snapshot clone does not read its source"
$PY "$T/snap.py" compare "$(nbd_uri c2)" "$T/expected.img" || fail "the volume clone does not read its source"
head -c 2M /dev/urandom > "$T/w.img"
$PY "$T/snap.py" overwrite "$(nbd_uri c1)" "$T/w.img" $((15 * MiB)) || fail "writing the clone failed"
dd if="$T/w.img" of="$T/c1.img" bs=1M seek=15 conv=notrunc status=none
$PY "$T/snap.py" overwrite "$(nbd_uri c2)" "$T/w.img" 0 || fail "writing the volume clone failed"
$PY "$T/snap.py" compare "$(nbd_uri c1)" "$T/c1.img" || fail "the clone lost its write"
$PY "$T/snap.py" compare "$(nbd_uri vol@s1)" "$T/a.img" || fail "a write to a clone reached the snapshot"
$PY "$T/snap.py" compare "$(nbd_uri vol)" "$T/expected.img" || fail "a write to a clone reached the volume"
log "clones read their sources; their writes stay theirs"

# A storage node dies: the snapshot and the clone read from the surviving replicas.
kill -9 "$(node_pid node1)"
log "kill -9 node1"
$PY "$T/snap.py" compare "$(nbd_uri vol@s1)" "$T/a.img" || fail "the snapshot does not read back with node1 dead"
$PY "$T/snap.py" compare "$(nbd_uri c1)" "$T/c1.img" || fail "the clone does not read back with node1 dead"

# Deleting the snapshot keeps the clone's data (a hidden layer stays while it reads it).
"$CAIRN" snapshot delete s1 | grep -q "deleted snapshot s1" || fail "snapshot delete did not answer"
expect_fail "does not exist" "$CAIRN" snapshot delete s1
"$CAIRN" snapshot list --output json | $PY -c 'import json, sys; assert json.load(sys.stdin) == []' \
    || fail "a deleted snapshot is still listed"
sleep 1  # a supervisor pass with the hidden layer
$PY "$T/snap.py" compare "$(nbd_uri c1)" "$T/c1.img" || fail "the clone lost data when its snapshot was deleted"
log "PASS"
