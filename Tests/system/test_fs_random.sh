#!/usr/bin/env bash
# The shared FUSE filesystem on real kernel mounts of a real cluster: a randomized
# sequence of create/write/append/truncate/rename/link/unlink/mkdir/rmdir/chmod/xattr/
# symlink applied to a mount and to a reference directory on the local disk, compared
# after every step (the mount with its default metadata cache); everything is still
# there after unmount and remount; a second mount then sees the same tree; more random
# operations alternate between the two mounts, compared through both right after each
# step, which only strict mode promises (both mounts run with attribute and entry
# timeouts 0 for that part). FS_OPS (default 2000) operations on one mount, a quarter of
# that alternating between two.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fs_lib.sh"
PY=/usr/bin/python3
SEED=${FS_SEED:-$RANDOM}
OPS=${FS_OPS:-2000}
start_cluster 3
"$CAIRN" volume create shared --kind filesystem --size 1GiB >/dev/null

fs_mount shared "$T/m1"
M1=$MOUNT_PID
mkdir -p "$T/ref"
log "random operations: seed $SEED, $OPS operations"
$PY "$(dirname "$0")/fs_random.py" "$SEED" "$OPS" "$T/m1" "$T/ref" || fail "random operations (seed $SEED)"

log "unmount and remount (strict mode): everything is still there"
STRICT=(--attr-timeout 0 --entry-timeout 0)
fs_umount "$T/m1" "$M1"
fs_mount shared "$T/m1" "${STRICT[@]}"
$PY "$(dirname "$0")/fs_random.py" --compare "$T/m1" "$T/ref" || fail "remounted tree differs"

log "a second mount sees the same tree"
fs_mount shared "$T/m2" "${STRICT[@]}"
$PY "$(dirname "$0")/fs_random.py" --compare "$T/m2" "$T/ref" || fail "second mount differs"

log "random operations alternating between the two mounts: seed $(( SEED + 1 )), $(( OPS / 4 )) operations"
$PY "$(dirname "$0")/fs_random.py" "$(( SEED + 1 ))" "$(( OPS / 4 ))" "$T/m1" "$T/ref" "$T/m2" || fail "two-mount random operations (seed $(( SEED + 1 )))"
log "PASS"
