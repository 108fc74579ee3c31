#!/usr/bin/env bash
# Real programs on the shared filesystem that `cairn local up` mounts by itself (RF=3):
# tar x of a source tree and diff -r against the original; git init/add/commit and
# git fsck; fio writing with crc32c verification, then verifying again from a second
# mount; unmount and remount: everything is still there; large writes while a storage
# node is killed with -9 (they complete and read back on both mounts).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fs_lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
start_cluster 3 --fs-mount "$T/mnt"
MOUNT_DIRS+=("$T/mnt")
is_mounted "$T/mnt" || { cat "$T/local-up.log"; fail "cairn local up did not mount its default filesystem on $T/mnt"; }
grep -q "filesystem: *'default' mounted on $T/mnt" "$T/local-up.log" || fail "cairn local up does not say where the filesystem is"
[ "$(findmnt -n -o FSTYPE "$T/mnt")" = fuse.cairn ] || fail "$T/mnt is not a Cairn FUSE mount: $(findmnt -n "$T/mnt")"

log "tar x of a part of this repository (the filesystem's and metadata store's sources, the system tests), diff -r against the originals"
tar -C "$REPO" -cf "$T/src.tar" Sources/CairnFS Sources/CairnFuse Sources/CairnMeta Tests/system
mkdir "$T/mnt/src"
tar -C "$T/mnt/src" -xf "$T/src.tar" || fail "tar x on the mount failed"
for d in Sources/CairnFS Sources/CairnFuse Sources/CairnMeta; do diff -r "$REPO/$d" "$T/mnt/src/$d" || fail "$d differs after tar x"; done
diff -r "$REPO/Tests/system" "$T/mnt/src/Tests/system" || fail "Tests/system differs after tar x"

log "git init/add/commit on the mount, git fsck"
export GIT_AUTHOR_NAME=cairn GIT_AUTHOR_EMAIL=cairn@localhost GIT_COMMITTER_NAME=cairn GIT_COMMITTER_EMAIL=cairn@localhost
git -C "$T/mnt/src" init -q || fail "git init"
git -C "$T/mnt/src" add -A || fail "git add"
git -C "$T/mnt/src" commit -q -m "the source tree" || fail "git commit"
echo "// changed" >> "$T/mnt/src/Sources/CairnFS/Inode.swift"
git -C "$T/mnt/src" commit -q -am "a change" || fail "second git commit"
git -C "$T/mnt/src" fsck --full --strict || fail "git fsck"
[ "$(git -C "$T/mnt/src" rev-list --count HEAD)" = 2 ] || fail "expected 2 commits"
[ -z "$(git -C "$T/mnt/src" status --porcelain)" ] || fail "git sees changes after the commit"

log "fio: random writes of 4-64 KiB with crc32c verification"
fio_verify() {  # fio_verify FILE OUTPUT [more fio flags]
    local file=$1 out=$2; shift 2
    fio --name=verify --filename="$file" --size=16M --rw=randwrite --bsrange=4k-64k --ioengine=psync \
        --verify=crc32c --verify_fatal=1 --randseed=1234 --fsync_on_close=1 --verify_state_save=0 --output="$out" "$@"
}
fio_verify "$T/mnt/fio.dat" "$T/fio.out" || { cat "$T/fio.out"; fail "fio verification failed"; }
grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; fail "fio reported errors"; }
log "fio: the same data verified through a second mount"
fs_mount default "$T/m2"
M2=$MOUNT_PID
fio_verify "$T/m2/fio.dat" "$T/fio2.out" --verify_only || { cat "$T/fio2.out"; fail "fio verify_only on the second mount failed"; }
grep -q "err= 0" "$T/fio2.out" || { cat "$T/fio2.out"; fail "fio verify_only reported errors"; }

log "unmount and remount: everything is still there"
(cd "$T/mnt/src" && find Sources Tests .git -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/sums" || fail "checksums of the tree"
"$CAIRN" umount "$T/mnt" || fail "cairn umount of the local-up mount"
for _ in $(seq 1 100); do is_mounted "$T/mnt" || break; sleep 0.1; done
! is_mounted "$T/mnt" || fail "$T/mnt still mounted"
fs_mount default "$T/mnt"
(cd "$T/mnt/src" && sha256sum -c --quiet "$T/sums") || fail "the tree differs after the remount"
git -C "$T/mnt/src" fsck --full --strict || fail "git fsck after the remount"
fio_verify "$T/mnt/fio.dat" "$T/fio3.out" --verify_only || { cat "$T/fio3.out"; fail "fio data changed after the remount"; }
log "large writes while node2 is killed with -9"
head -c 16000000 /dev/urandom > "$T/big"
# Twelve files: the kill lands once the first exists, while the rest are still being
# written, however fast the writes are.
NBIG=12
( for i in $(seq 1 $NBIG); do dd if="$T/big" of="$T/mnt/big$i" bs=1M conv=fsync status=none || exit 1; done ) &
writer=$!
for _ in $(seq 1 200); do [ -e "$T/mnt/big1" ] && break; sleep 0.05; done
kill -0 "$writer" 2>/dev/null || fail "the writes ended before node2 could be killed (make them larger)"
kill -9 "$(node_pid node2)"
log "killed node2 while the writes were running"
wait "$writer" || fail "writes failed after a storage node was killed"
for i in $(seq 1 $NBIG); do
    cmp "$T/big" "$T/mnt/big$i" || fail "big$i differs on the mount that wrote it"
    cmp "$T/big" "$T/m2/big$i" || fail "big$i differs on the second mount (read from the storage nodes)"
done

log "PASS"
