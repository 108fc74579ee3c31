#!/usr/bin/env bash
# `cairn attach` with the fuse-loop method (the one this machine has): a volume as a loop
# device over a FUSE file served by a detached daemon. ext4 on it, files and a verified
# 4-job fio run; the data survives detach and re-attach; the daemon outlives its caller
# (kill -9); a storage node killed -9 during writes loses nothing; the device grows
# with the volume; detach leaves no loop device, FUSE mount or daemon behind.
source "$(dirname "$0")/lib.sh"
STATE=$T/attach
MNT=$T/mnt
mkdir -p "$MNT"

# Whatever this test set up goes on exit, before the cluster: the filesystem, the loop
# devices over files in the state directory, the daemons by their pid files, the mounts.
attach_cleanup() {
    local f dev pid m
    mountpoint -q "$MNT" && umount -l "$MNT"
    for f in /sys/block/loop*/loop/backing_file; do
        [ -f "$f" ] || continue
        case "$(cat "$f")" in "$STATE"/*) dev=/dev/$(basename "$(dirname "$(dirname "$f")")"); losetup -d "$dev" ;; esac
    done
    for f in "$STATE"/*/daemon.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        grep -qa "$STATE" "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid"
    done
    for m in $(findmnt -rn -o TARGET | grep "^$STATE/" || true); do fusermount3 -u -z "$m"; done
    if [ "${ATTACH_FAILED:-0}" = 1 ]; then
        for f in "$STATE"/*/daemon.log; do [ -f "$f" ] && { echo "---- tail of $f"; tail -n 20 "$f"; }; done
    fi
    return 0
}
trap 'rc=$?; set +e; [ $rc -ne 0 ] && ATTACH_FAILED=1; attach_cleanup; (exit $rc); cleanup' EXIT

att() { "$CAIRN" attach --state-dir "$STATE" "$@"; }
det() { "$CAIRN" detach --state-dir "$STATE" "$@"; }
daemon_pid() { cat "$STATE/$1/daemon.pid"; }
# A process that runs (a zombie does not: the daemons are orphans reaped by PID 1).
alive() { [ -r "/proc/$1/stat" ] && [ "$(sed 's/^.*) //' "/proc/$1/stat" | cut -c1)" != Z ]; }
# Everything of an attachment is gone: no record, no loop device over its file, no FUSE
# mount, no daemon.
assert_detached() {  # assert_detached VOLUME OLD_DAEMON_PID
    [ ! -e "$STATE/$1" ] || fail "the state of $1 is still there"
    ! losetup -a | grep -q "$STATE/$1/" || fail "a loop device over $1 is left: $(losetup -a)"
    ! findmnt -rn -o TARGET | grep -q "^$STATE/$1/" || fail "a FUSE mount of $1 is left"
    ! alive "$2" || fail "the attach daemon of $1 (pid $2) is still running"
}

start_cluster 3
"$CAIRN" volume create a1 --size 512MiB --replicas 2 >/dev/null

log "attach a1 (fuse-loop); a second attach returns the same device"
DEV=$(att a1 --method fuse-loop)
[ -b "$DEV" ] || fail "attach printed '$DEV', not a block device"
[ "$(att a1)" = "$DEV" ] || fail "a second attach did not return $DEV"
[ "$(blockdev --getsize64 "$DEV")" = $((512 << 20)) ] || fail "$DEV is not 512 MiB"
PID=$(daemon_pid a1)
att --list | grep -q "a1 .*fuse-loop .*$DEV .*rw .*yes" || fail "attach --list: $(att --list)"

log "ext4, files and a verified 4-job fio run"
mkfs.ext4 -q -F "$DEV"
mount "$DEV" "$MNT"
head -c 20M /dev/urandom > "$T/blob"
cp "$T/blob" "$MNT/blob"
fio --name=verify --directory="$MNT" --numjobs=4 --size=16M --bs=4k --rw=randwrite --ioengine=libaio \
    --iodepth=8 --direct=1 --verify=crc32c --verify_fatal=1 --verify_state_save=0 --group_reporting --output="$T/fio.txt" \
    || { cat "$T/fio.txt"; fail "fio failed"; }
grep -q "err= 0" "$T/fio.txt" || { cat "$T/fio.txt"; fail "fio reported errors"; }

log "detach refuses while mounted; umount, detach, nothing left"
expect_fail "unmount it first" det a1
umount "$MNT"
det a1
assert_detached a1 "$PID"
det a1  # idempotent

log "re-attach: the files are still there"
DEV=$(att a1)
PID=$(daemon_pid a1)
mount "$DEV" "$MNT"
cmp "$T/blob" "$MNT/blob" || fail "the file differs after detach and re-attach"

log "kill -9 of a caller in the middle of attaching leaves nothing broken"
"$CAIRN" volume create a2 --size 128MiB --replicas 2 >/dev/null
att a2 >/dev/null 2>&1 &
CALLER=$!
sleep 0.3
kill -9 $CALLER 2>/dev/null || true
wait $CALLER 2>/dev/null || true
DEV2=$(att a2)
[ -b "$DEV2" ] || fail "attach after a killed attach printed '$DEV2'"
dd if=/dev/urandom of="$T/a2.bin" bs=1M count=4 status=none
dd if="$T/a2.bin" of="$DEV2" bs=1M oflag=direct status=none
cmp -n $((4 << 20)) "$T/a2.bin" "$DEV2" || fail "a2 reads back wrong"
[ "$(losetup -a | grep -c "$STATE/a2/")" = 1 ] || fail "more than one loop device over a2: $(losetup -a)"
PID2=$(daemon_pid a2)
det a2
assert_detached a2 "$PID2"

log "kill -9 a storage node during writes; everything reads back"
head -c 48M /dev/urandom > "$T/big"
cp "$T/big" "$MNT/big" &
CP=$!
sleep 0.5
kill -9 "$(node_pid node2)"
wait $CP || fail "copying failed with a node killed"
sync
echo 3 > /proc/sys/vm/drop_caches
cmp "$T/big" "$MNT/big" || fail "the file written during the kill differs"
cmp "$T/blob" "$MNT/blob" || fail "the earlier file differs after the kill"

log "grow the volume online: the device follows, then ext4"
"$CAIRN" volume resize a1 --size 768MiB >/dev/null
att a1 --refresh-size >/dev/null
[ "$(blockdev --getsize64 "$DEV")" = $((768 << 20)) ] || fail "$DEV did not grow: $(blockdev --getsize64 "$DEV")"
# Online resize2fs needs CAP_SYS_RESOURCE, which this machine's root lacks: ext4 grows
# offline here (the device grew online above, under the mount).
umount "$MNT"
e2fsck -fy "$DEV" > "$T/fsck.txt" 2>&1 || fail "e2fsck failed: $(cat "$T/fsck.txt")"
resize2fs "$DEV" > "$T/resize.txt" 2>&1 || fail "resize2fs failed: $(cat "$T/resize.txt")"
mount "$DEV" "$MNT"
[ "$(df -BM --output=size "$MNT" | tail -1 | tr -dc 0-9)" -gt 600 ] || fail "ext4 did not grow: $(df -h "$MNT")"
cmp "$T/blob" "$MNT/blob" || fail "the file differs after growing"

log "the daemon outlives its caller: a new caller finds and reuses the attachment"
[ "$(att a1)" = "$DEV" ] || fail "attach after the earlier callers exited did not return $DEV"
[ "$(daemon_pid a1)" = "$PID" ] || fail "the daemon was replaced"

log "a daemon killed -9 is detected: the next attach tears it down and attaches anew"
umount "$MNT"
kill -9 "$PID"
att --list | grep -q "a1 .* no$" || fail "a dead daemon still counts as healthy: $(att --list)"
NEWDEV=$(att a1)
NEWPID=$(daemon_pid a1)
[ "$NEWPID" != "$PID" ] || fail "no new daemon"
mount "$NEWDEV" "$MNT"
cmp "$T/blob" "$MNT/blob" || fail "the file differs after the daemon was replaced"
umount "$MNT"
det a1
assert_detached a1 "$NEWPID"
! losetup -a | grep -q "$STATE" || fail "loop devices left: $(losetup -a)"
log "PASS"
