#!/usr/bin/env bash
# The mount's metadata cache with the kernel's caches on (attribute and entry timeouts
# of an hour, so nothing but the watch-driven invalidation can explain a change showing
# up): close-to-open between two mounts holds exactly, checked right after each close
# (overwrite in place, append, truncate at open); a rename, an unlink, a chmod and a
# write+close on mount a reach mount b's kernel through the cache's watch (polled with a
# generous bound: a correctness bound, not a speed check). Strict mode (both timeouts 0)
# sees the same changes at once.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/fs_lib.sh"
start_cluster 1
"$CAIRN" volume create cached --kind filesystem --size 1GiB --replicas 1 --min-replicas 1 >/dev/null
LONG=(--attr-timeout 3600 --entry-timeout 3600)
fs_mount cached "$T/a" "${LONG[@]}"
fs_mount cached "$T/b" "${LONG[@]}"
fs_mount cached "$T/s" --attr-timeout 0 --entry-timeout 0

log "close-to-open, checked right after each close"
head -c 1000000 /dev/urandom > "$T/ref"
cp "$T/ref" "$T/a/f"
cmp "$T/ref" "$T/b/f" || fail "b reads different bytes after a's close"
stat -c %s "$T/b/f" >/dev/null  # b's kernel now holds f's attributes and pages
head -c 4096 /dev/urandom > "$T/patch"
dd if="$T/patch" of="$T/ref" bs=4096 seek=10 conv=notrunc status=none
dd if="$T/patch" of="$T/a/f" bs=4096 seek=10 conv=notrunc status=none
cmp "$T/ref" "$T/b/f" || fail "b does not see a's overwrite in place at its next open"
printf 'tail' >> "$T/ref"; printf 'tail' >> "$T/b/f"
cmp "$T/ref" "$T/a/f" || fail "a does not see b's append at its next open"
[ "$(stat -c %s "$T/a/f")" = 1000004 ] || fail "a's size after the open: $(stat -c %s "$T/a/f")"
printf 'short' > "$T/short"
printf 'short' > "$T/a/f"  # O_TRUNC at open: libfuse leaves the truncation to the open
cmp "$T/short" "$T/a/f" || fail "a reads $(stat -c %s "$T/a/f") bytes after truncating f at open and writing 5"
cmp "$T/short" "$T/b/f" || fail "b reads $(stat -c %s "$T/b/f") bytes after a truncated f at open and wrote 5"

log "changes on a reach b's kernel through the watch (timeouts 3600 s)"
echo one > "$T/a/old"; echo two > "$T/a/gone"; echo three > "$T/a/mode"; echo four > "$T/a/grows"
chmod 644 "$T/a/mode"
for f in old gone mode grows; do stat "$T/b/$f" >/dev/null || fail "b cannot see $f"; done
[ "$(stat -c %a "$T/b/mode")" = 644 ] || fail "mode on b"
mv "$T/a/old" "$T/a/new"
rm "$T/a/gone"
chmod 600 "$T/a/mode"
head -c 50000 /dev/urandom >> "$T/a/grows"
visible() { [ ! -e "$T/b/old" ] && [ -e "$T/b/new" ] && [ ! -e "$T/b/gone" ] &&
    [ "$(stat -c %a "$T/b/mode")" = 600 ] && [ "$(stat -c %s "$T/b/grows")" = 50005 ]; }
wait_for "a's rename, unlink, chmod and write to reach b" 30 visible
[ "$(cat "$T/b/new")" = one ] || fail "b reads the renamed file wrong"
cmp "$T/a/grows" "$T/b/grows" || fail "grows differs between the mounts"

log "strict mode (timeouts 0) sees a's changes at once"
stat "$T/s/new" "$T/s/mode" >/dev/null
mv "$T/a/new" "$T/a/newer"
[ ! -e "$T/s/new" ] && [ -e "$T/s/newer" ] || fail "the strict mount still sees the old name"
chmod 640 "$T/a/mode"
[ "$(stat -c %a "$T/s/mode")" = 640 ] || fail "the strict mount still sees the old mode"
log "PASS"
