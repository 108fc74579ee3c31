#!/usr/bin/env bash
# Garbage collection of a shared filesystem (cairn fs gc): a live mount trims its
# overwritten and deleted data, an ended mount's volume is kept while a file references
# it and deleted once nothing does; the data reads back the same throughout. A file
# fragmented by 4,000 random writes has its map compacted. Mounts collect by themselves
# every --gc-interval. Deleting the filesystem deletes its data volumes and metadata.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fs_lib.sh"
start_cluster 2
"$CAIRN" volume create home --kind filesystem --size 1GiB --replicas 2 >/dev/null
fs_mount home "$T/a" --gc-grace 1s
A=$MOUNT_PID
fs_mount home "$T/b"
B=$MOUNT_PID
VB=$(sed -n 's/.*(data volume \(home\.d\.[0-9a-f]*\)).*/\1/p' "$T/mount-1.log")
[ -n "$VB" ] || fail "no data volume in mount b's log"

log "statfs: the mount's size is the cluster's raw capacity divided by the replicas (2)"
"$CAIRN" status --output json > "$T/status.json"
/usr/bin/python3 - "$T/status.json" "$T/a" <<'PY' || fail "statfs of the mount"
import json, os, sys
raw = json.load(open(sys.argv[1]))["capacityBytes"]
st = os.statvfs(sys.argv[2])
total = st.f_blocks * st.f_frsize
assert abs(total - raw // 2) <= 4096, (total, raw)
assert st.f_bavail * st.f_frsize <= total, (st.f_bavail, total)
PY

log "overwritten and deleted data on mount a; a kept and a deleted file from mount b"
head -c 8388608 /dev/urandom > "$T/f1.old"; head -c 8388608 /dev/urandom > "$T/f1"
head -c 2097152 /dev/urandom > "$T/g"
cp "$T/f1.old" "$T/a/f1"; cp "$T/f1" "$T/a/f1"
head -c 4194304 /dev/urandom > "$T/a/f2"; rm "$T/a/f2"
cp "$T/g" "$T/b/g"; head -c 1048576 /dev/urandom > "$T/b/h"; rm "$T/b/h"
fs_umount "$T/b" "$B"
sleep 5  # a pass of mount a removes the orphan h, and its append mark gets older than --gc-grace

log "cairn fs gc: a trims its garbage, b's ended volume is kept (g references it)"
"$CAIRN" fs gc home --output json > "$T/gc1.json" || fail "cairn fs gc failed"
/usr/bin/python3 - "$T/gc1.json" "$VB" <<'PY' || fail "first collection: $(cat "$T/gc1.json")"
import json, sys
r, vb = json.load(open(sys.argv[1])), sys.argv[2]
assert r["ended"]["retired"] == [vb], r
assert list(r["ended"]["kept"]) == [vb] and r["ended"]["kept"][vb] == 2097152, r
assert r["ended"]["trimmedBytes"] >= 1048576, r
assert r["unanswered"] == [] and len(r["mounts"]) == 1, r
trimmed = list(r["mounts"].values())[0]
assert 12582912 <= trimmed <= 12582912 + 65536, r  # the old f1 and f2
PY
cmp "$T/f1" "$T/a/f1" || fail "f1 differs after the collection"
cmp "$T/g" "$T/a/g" || fail "g differs after the collection"

log "once no file references it, the ended mount's volume is deleted"
rm "$T/a/g"
"$CAIRN" fs gc home --output json > "$T/gc2.json" || fail "second cairn fs gc failed"
/usr/bin/python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); assert r["ended"]["deleted"] == [sys.argv[2]], r' \
    "$T/gc2.json" "$VB" || fail "second collection: $(cat "$T/gc2.json")"
"$CAIRN" volume list > "$T/volumes.txt"
! grep -q "$VB" "$T/volumes.txt" || fail "$VB still exists after the collection"
cmp "$T/f1" "$T/a/f1" || fail "f1 differs after the second collection"
fs_mount home "$T/b2" --attr-timeout 5 --entry-timeout 5
B2=$MOUNT_PID

log "4,000 random 4 KiB writes to a 10 MiB file: its map is compacted (over 2,048 slices after a flush)"
/usr/bin/python3 - "$T/b2/frag" "$T/a/frag" "$(manager_url)" "$(secret)" <<'PY' || fail "the fragmented file"
import base64, json, os, random, sys, urllib.request
rng, blocks, block = random.Random(5), 2560, 4096
ref = bytearray(os.urandom(blocks * block))
with open(sys.argv[1], "wb") as f: f.write(ref)
fd = os.open(sys.argv[1], os.O_RDWR)
for i in range(4000):
    b = rng.randrange(blocks)
    data = bytes([i & 255]) * block
    os.pwrite(fd, data, b * block)
    ref[b * block:(b + 1) * block] = data
os.close(fd)
for path in sys.argv[1:3]:
    with open(path, "rb") as f: assert f.read() == bytes(ref), path
req = urllib.request.Request(sys.argv[3] + "/v1/fs/home/meta/get", method="POST",
    data=json.dumps({"key": "/fs/home/i/%016x" % os.stat(sys.argv[2]).st_ino}).encode(),
    headers={"Authorization": "Bearer " + sys.argv[4]})
node = json.loads(base64.b64decode(json.load(urllib.request.urlopen(req))["kv"]["value"]))
# Uncompacted: 2,013 separate blocks rewritten and the pieces between them, about 2,440 slices.
assert len(node["slices"]) <= 2048, len(node["slices"])
print("fragmented file reads back on both mounts; its map has %d slices" % len(node["slices"]))
PY

log "timed collection (--gc-interval), without cairn fs gc: an ended mount's volume goes, a live mount trims its own"
fs_mount home "$T/d"
D=$MOUNT_PID
VD=$(sed -n 's/.*(data volume \(home\.d\.[0-9a-f]*\)).*/\1/p' "$T/mount-$((${#MOUNT_PIDS[@]} - 1)).log")
[ -n "$VD" ] || fail "no data volume in mount d's log"
head -c 1048576 /dev/urandom > "$T/a/k0"
cp "$T/a/k0" "$T/d/k"
fs_umount "$T/d" "$D"
"$CAIRN" volume list | grep -q "$VD" || fail "$VD is gone before any collection"
fs_mount home "$T/c" --gc-interval 2s --gc-grace 1s
C=$MOUNT_PID
CLOG="$T/mount-$((${#MOUNT_PIDS[@]} - 1)).log"
head -c 3145728 /dev/urandom > "$T/c/m"; head -c 3145728 /dev/urandom > "$T/m"; cp "$T/m" "$T/c/m"
cmp "$T/a/k0" "$T/c/k" || fail "k differs before the timed collection"
rm "$T/c/k"
for _ in $(seq 1 60); do
    "$CAIRN" volume list > "$T/volumes.txt"
    if ! grep -q "$VD" "$T/volumes.txt" && grep -q "timed garbage collection trimmed" "$CLOG"; then break; fi
    sleep 1
done
grep -q "$VD" "$T/volumes.txt" && fail "the ended mount's volume $VD was not deleted by the timed collection: $(cat "$CLOG")"
grep -q "timed garbage collection of ended mounts: .*deleted \[\"$VD\"\]" "$CLOG" || fail "mount c did not report deleting $VD: $(cat "$CLOG")"
trimmed=$(sed -n 's/.*timed garbage collection trimmed \([0-9]*\) bytes.*/\1/p' "$CLOG" | awk '{ s += $1 } END { print s + 0 }')
[ "$trimmed" -ge 3145728 ] || fail "mount c trimmed $trimmed bytes of its own volume, expected at least the overwritten 3 MiB: $(cat "$CLOG")"
cmp "$T/m" "$T/c/m" || fail "m differs after the timed collection"
cmp "$T/m" "$T/a/m" || fail "m differs on mount a after the timed collection"
cmp "$T/f1" "$T/a/f1" || fail "f1 differs after the timed collection"
fs_umount "$T/c" "$C"

log "deleting the filesystem deletes its data volumes and metadata"
fs_umount "$T/b2" "$B2"
! "$CAIRN" volume delete home 2>"$T/del.err" || fail "deleting a mounted filesystem succeeded"
grep -q "mounted" "$T/del.err" || fail "unexpected error: $(cat "$T/del.err")"
fs_umount "$T/a" "$A"
"$CAIRN" volume delete home >/dev/null || fail "deleting the unmounted filesystem failed"
"$CAIRN" volume list > "$T/volumes.txt"
! grep -q "home" "$T/volumes.txt" || fail "volumes left after deleting the filesystem: $(cat "$T/volumes.txt")"
"$CAIRN" volume create home --kind filesystem --size 1GiB --replicas 2 >/dev/null
fs_mount home "$T/a"
[ -z "$(ls -A "$T/a")" ] || fail "a new filesystem of the same name sees old files: $(ls -A "$T/a")"
log "PASS"
