#!/usr/bin/env bash
# A storage node whose disk fills up refuses the write with a clear "no space" error;
# the node keeps serving, what was written before reads back, and space comes back when
# a volume is deleted.
source "$(dirname "$0")/lib.sh"
mkdir -p "$T/data/node1"
mount -t tmpfs -o size=72m cairn-systest "$T/data/node1" || { log "SKIP: cannot mount tmpfs"; exit 0; }
umount_disk() { umount "$T/data/node1" 2>/dev/null || umount -l "$T/data/node1" 2>/dev/null || true; }
trap 'stop_cluster; umount_disk; rm -rf "$T"' EXIT
start_cluster 1 --chunk-size 16MiB --journal-size 8MiB

"$CAIRN" volume create small --size 32MiB --replicas 1 >/dev/null
head -c 32M /dev/urandom > "$T/small.img"
"$CAIRN" volume import small "$T/small.img" >/dev/null
"$CAIRN" volume create big --size 128MiB --replicas 1 >/dev/null
head -c 128M /dev/urandom > "$T/big.img"

log "importing more than the disk holds fails with a clear error"
if "$CAIRN" volume import big "$T/big.img" > "$T/import.log" 2>&1; then fail "import into a full disk succeeded"; fi
grep -q "no space" "$T/import.log" || fail "error does not say 'no space': $(tail -3 "$T/import.log")"
[ "$(grep -c '^cairn:' "$T/import.log")" = 1 ] || fail "not one error line: $(cat "$T/import.log")"

log "the node still serves, and earlier data is intact"
kill -0 "$(node_pid node1)" || fail "storage node died on a full disk"
"$CAIRN" volume export small "$T/small.out" >/dev/null
cmp "$T/small.out" "$T/small.img" || fail "earlier data changed"

log "deleting a volume gives the space back"
"$CAIRN" volume delete big --force >/dev/null
"$CAIRN" volume create again --size 16MiB --replicas 1 >/dev/null
head -c 16M /dev/urandom > "$T/again.img"
wait_for "space to come back" 30 "$CAIRN" volume import again "$T/again.img"
"$CAIRN" volume export again "$T/again.out" >/dev/null
cmp "$T/again.out" "$T/again.img" || fail "data written after the disk was full differs"
log "PASS"
