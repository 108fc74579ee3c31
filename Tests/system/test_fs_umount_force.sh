#!/usr/bin/env bash
# cairn umount --force on a mount whose daemon hangs (SIGSTOP): the FUSE connection is
# aborted, a process blocked on the mount gets an error instead of hanging, the mountpoint
# is free again, and the daemon, once it runs again, exits and keeps what was stored.
# A plain cairn umount of a path that is not mounted says so.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fs_lib.sh"
start_cluster 1
"$CAIRN" volume create home --kind filesystem --size 1GiB --replicas 1 >/dev/null

! "$CAIRN" umount "$T" 2>"$T/err" || fail "cairn umount of a directory that is not mounted succeeded"
grep -q "is not mounted" "$T/err" || fail "unexpected error: $(cat "$T/err")"

fs_mount home "$T/m"
M=$MOUNT_PID
head -c 1048576 /dev/urandom > "$T/f"
cp "$T/f" "$T/m/f"

log "the daemon hangs (SIGSTOP); a reader blocks on the mount"
kill -STOP "$M"
cat "$T/m/f" > /dev/null 2>"$T/cat.err" &
CAT=$!
sleep 1
kill -0 "$CAT" 2>/dev/null || fail "the reader did not block on the stopped daemon"

log "cairn umount --force aborts the connection and detaches the mount"
timeout 30 "$CAIRN" umount --force "$T/m" || { kill -CONT "$M"; fail "cairn umount --force failed"; }
for _ in $(seq 1 100); do kill -0 "$CAT" 2>/dev/null || break; sleep 0.1; done
kill -0 "$CAT" 2>/dev/null && { kill -CONT "$M"; fail "the blocked reader still hangs after the abort"; }
wait "$CAT" && fail "the blocked reader succeeded on an aborted connection"
! is_mounted "$T/m" || { kill -CONT "$M"; fail "$T/m is still mounted"; }

log "the daemon runs again and exits; the data is still there on a new mount"
kill -CONT "$M"
for _ in $(seq 1 150); do kill -0 "$M" 2>/dev/null || break; sleep 0.1; done
kill -0 "$M" 2>/dev/null && fail "the mount daemon did not exit after its connection was aborted"
rc=0; wait "$M" || rc=$?  # it may report the aborted connection, but not crash
[ "$rc" -lt 128 ] || fail "the mount daemon died of signal $((rc - 128)) after the abort: $(tail -5 "$T/mount-0.log")"
fs_mount home "$T/m2"
cmp "$T/f" "$T/m2/f" || fail "f differs after the forced unmount"
log "PASS"
