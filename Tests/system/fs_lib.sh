# Helpers of the FUSE filesystem tests: mounts started here are unmounted and their
# daemons stopped on exit, before the cluster goes, whatever happened.
MOUNT_PIDS=()
MOUNT_DIRS=()

fs_cleanup() {
    local d p
    for d in "${MOUNT_DIRS[@]}"; do fusermount3 -u -z "$d" 2>/dev/null || true; done
    for p in "${MOUNT_PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ "${FS_TEST_FAILED:-0}" = 1 ]; then
        for f in "$T"/mount-*.log; do [ -f "$f" ] && { echo "---- tail of $f"; tail -n 20 "$f"; }; done
    fi
}
trap 'rc=$?; set +e; [ $rc -ne 0 ] && FS_TEST_FAILED=1; fs_cleanup; (exit $rc); cleanup' EXIT

is_mounted() { findmnt -n "$1" >/dev/null 2>&1; }

# fs_mount FS DIR [flags...]: starts a mount daemon; sets MOUNT_PID.
fs_mount() {
    local fs=$1 dir=$2; shift 2
    mkdir -p "$dir" 2>/dev/null || true  # fails on a stale mount, which cairn mount cleans
    local n=${#MOUNT_PIDS[@]}
    "$CAIRN" mount "$fs" "$dir" "$@" > "$T/mount-$n.log" 2>&1 &
    MOUNT_PID=$!
    MOUNT_PIDS+=("$MOUNT_PID")
    MOUNT_DIRS+=("$dir")
    for _ in $(seq 1 300); do
        grep -q "^mounted " "$T/mount-$n.log" && is_mounted "$dir" && return 0
        kill -0 "$MOUNT_PID" 2>/dev/null || { cat "$T/mount-$n.log"; fail "cairn mount $fs $dir exited"; }
        sleep 0.1
    done
    cat "$T/mount-$n.log"; fail "$dir was not mounted"
}

# fs_umount DIR PID: cairn umount, then the daemon exits by itself.
fs_umount() {
    "$CAIRN" umount "$1"
    for _ in $(seq 1 100); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$2" 2>/dev/null && fail "the mount daemon of $1 did not exit after cairn umount"
    wait "$2" || fail "the mount daemon of $1 exited with an error"
    ! is_mounted "$1" || fail "$1 is still mounted"
}
