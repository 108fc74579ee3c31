#!/usr/bin/env bash
# Two mounts of one filesystem in separate processes: close-to-open visibility, rename
# and unlink seen from the other mount, concurrent writers to different files and to
# different ranges of one file; an open file outlives its last name, also when the name
# goes on the other mount (and goes with the last close); POSIX and flock
# locks hold across the mounts, and a killed mount's locks are released; a killed
# daemon's stale mount is cleaned by the next mount; SIGTERM unmounts.
# The mounts run in strict mode (attribute and entry timeouts 0, no metadata cache):
# this test checks the other mount right after each change, which only strict mode
# promises; test_fs_cache.sh covers the defaults (close-to-open, changes reaching the
# other mount through the cache's watch).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fs_lib.sh"
STRICT=(--attr-timeout 0 --entry-timeout 0)
start_cluster 3
"$CAIRN" volume create home --kind filesystem --size 1GiB >/dev/null
MOUNT_HTTP="http://127.0.0.1:$(( BASE_PORT + 17 ))"
fs_mount home "$T/a" --http "${MOUNT_HTTP#http://}" "${STRICT[@]}"
A=$MOUNT_PID
fs_mount home "$T/b" "${STRICT[@]}"
B=$MOUNT_PID

log "close-to-open: a file closed on one mount reads whole on the other"
head -c 3000000 /dev/urandom > "$T/blob"
cp "$T/blob" "$T/a/blob"
cmp "$T/blob" "$T/b/blob" || fail "mount b reads different bytes"
# The mount daemon's own /metrics: valid exposition, and its FUSE writes counted.
curl -sf "$MOUNT_HTTP/readyz" >/dev/null || fail "mount a is not ready: $(curl -s "$MOUNT_HTTP/readyz")"
curl -sf "$MOUNT_HTTP/metrics" > "$T/mount-metrics.txt" || fail "mount a serves no /metrics"
if command -v promtool >/dev/null; then promtool check metrics < "$T/mount-metrics.txt" || fail "promtool rejects the mount's metrics"; fi
fuse_written=$(awk '/^cairn_volume_io_bytes_total\{.*frontend="fuse".*op="write"/ { s += $2 } END { printf "%d", s }' "$T/mount-metrics.txt")
[ "$fuse_written" -ge 3000000 ] || fail "mount a counted $fuse_written bytes written through FUSE, expected at least 3000000"
printf 'more' >> "$T/b/blob"; printf 'more' >> "$T/blob"
cmp "$T/blob" "$T/a/blob" || fail "mount a does not see b's append"

log "rename and unlink seen from the other mount"
mkdir -p "$T/a/dir/sub"
mv "$T/b/blob" "$T/b/dir/sub/renamed"
[ ! -e "$T/a/blob" ] || fail "old name still visible on a"
cmp "$T/blob" "$T/a/dir/sub/renamed" || fail "renamed file differs on a"
rm "$T/a/dir/sub/renamed"
[ ! -e "$T/b/dir/sub/renamed" ] || fail "unlinked file still visible on b"

log "concurrent writers: different files, and different ranges of one file"
/usr/bin/python3 - "$T/a" "$T/b" <<'PY'
import os, sys, threading
a, b = sys.argv[1], sys.argv[2]
CH = 65536
open(os.path.join(a, "one"), "wb").close()
def writer(root, idx):
    with open(os.path.join(root, f"own-{idx}"), "wb") as f:
        for i in range(20): f.write(bytes([idx]) * 10000)
    fd = os.open(os.path.join(root, "one"), os.O_WRONLY)
    for i in range(idx, 32, 4): os.pwrite(fd, bytes([i]) * CH, i * CH)
    os.close(fd)
ts = [threading.Thread(target=writer, args=((a, b)[i % 2], i)) for i in range(4)]
for t in ts: t.start()
for t in ts: t.join()
for root in (a, b):
    for i in range(4):
        assert open(os.path.join(root, f"own-{i}"), "rb").read() == bytes([i]) * 200000, f"own-{i} on {root}"
    data = open(os.path.join(root, "one"), "rb").read()
    assert data == b"".join(bytes([i]) * CH for i in range(32)), f"shared file wrong on {root}"
print("concurrent writes all landed")
PY

log "an open file stays readable and writable after its last name goes"
/usr/bin/python3 - "$T/a/orphan" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"x" * 100000)
os.unlink(sys.argv[1])
assert not os.path.exists(sys.argv[1])
os.pwrite(fd, b"y" * 10, 50000)
assert os.pread(fd, 100000, 0) == b"x" * 50000 + b"y" * 10 + b"x" * 49990
assert os.fstat(fd).st_nlink == 0
os.close(fd)
PY

log "a file open on mount a outlives its unlink on mount b, and goes after a's close"
ino=$(/usr/bin/python3 - "$T/a/held" "$T/b/held" "$T/a/held-closed" <<'PY'
import os, sys, time
a, b, signal = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(a, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"x" * 100000)
os.fsync(fd)
ino = os.fstat(fd).st_ino
os.unlink(b)  # through mount b's daemon
assert not os.path.exists(a) and not os.path.exists(b)
time.sleep(3)  # a heartbeat of each mount passes: the orphan must survive it
os.pwrite(fd, b"y" * 10, 50000)
os.fsync(fd)
assert os.pread(fd, 100000, 0) == b"x" * 50000 + b"y" * 10 + b"x" * 49990
assert os.fstat(fd).st_nlink == 0
os.close(fd)
print("%016x" % ino)
PY
) || fail "the open file did not survive its unlink on the other mount"
inode_gone() {  # the manager answers, without a value for the key
    local answer
    answer=$(curl -sSf -X POST -H "Authorization: Bearer $(secret)" -d "{\"key\":\"/fs/home/i/$ino\"}" \
        "$(manager_url)/v1/fs/home/meta/get") || return 1
    [ -n "$answer" ] && ! grep -q '"value"' <<< "$answer"
}
wait_for "the unlinked inode $ino to go after its last close" 30 inode_gone

log "POSIX and flock locks taken on one mount block the other"
/usr/bin/python3 "$(dirname "$0")/fs_locks.py" "$T/a" "$T/b" || fail "locks across mounts"

log "a killed daemon leaves a stale mount; the next mount cleans it up"
touch "$T/a/deadlock"
/usr/bin/python3 -c 'import fcntl, sys, time
f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); print("held", flush=True); time.sleep(600)' "$T/a/deadlock" > "$T/holder.out" &
HOLDER=$!
for _ in $(seq 1 100); do grep -q held "$T/holder.out" && break; sleep 0.1; done
grep -q held "$T/holder.out" || fail "the lock holder on mount a did not get its lock"
! flock -n -x "$T/b/deadlock" -c true || fail "mount b took a lock mount a holds"
kill -KILL "$A"
wait "$A" 2>/dev/null || true
log "the dead mount's lock is released once the others see it stopped beating"
start=$(date +%s)
timeout 60 flock -x "$T/b/deadlock" -c true || fail "the dead mount's lock was never released"
log "lock of the dead mount released after $(( $(date +%s) - start )) s"
kill -KILL "$HOLDER" 2>/dev/null || true
wait "$HOLDER" 2>/dev/null || true
if stat "$T/a" >/dev/null 2>&1; then fail "expected a stale mount after kill -9"; fi
fs_mount home "$T/a" "${STRICT[@]}"
grep -q "stale mount" "$T"/mount-2.log || fail "the new mount did not report cleaning the stale one"
[ -d "$T/a/dir/sub" ] || fail "tree missing after the remount"
cmp "$T/b/own-3" "$T/a/own-3" || fail "own-3 differs after the remount"
log "SIGTERM unmounts and the daemon exits cleanly"
kill -TERM "$B"
for _ in $(seq 1 100); do kill -0 "$B" 2>/dev/null || break; sleep 0.1; done
kill -0 "$B" 2>/dev/null && fail "the mount daemon did not exit on SIGTERM"
wait "$B" || fail "the mount daemon exited with an error after SIGTERM"
! is_mounted "$T/b" || fail "$T/b is still mounted after SIGTERM"
log "PASS"
