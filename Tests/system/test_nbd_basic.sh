#!/usr/bin/env bash
# NBD gateway basics with nbdinfo: the export list, an export's flags and block sizes, and
# the allocation map (written data allocated, a trimmed range a hole), over TCP and the
# unix socket.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 3
"$CAIRN" volume create v1 --size 256MiB >/dev/null
"$CAIRN" volume create v2 --size 64MiB --replicas 1 --min-replicas 1 >/dev/null

log "nbdinfo --list"
list=$(nbdinfo --list "nbd://127.0.0.1:$NBD_PORT")
grep -q "export=\"v1\"" <<< "$list" || fail "v1 missing from the list: $list"
grep -q "export=\"v2\"" <<< "$list" || fail "v2 missing from the list: $list"

log "nbdinfo on one export"
info=$(nbdinfo "$(nbd_uri v1)")
echo "$info"
grep -q "export-size: 268435456" <<< "$info" || fail "wrong size"
for f in can_flush can_fua can_multi_conn can_trim can_zero can_fast_zero can_cache can_df; do
    grep -q "$f: true" <<< "$info" || fail "$f is not true"
done
grep -q "is_read_only: false" <<< "$info" || fail "v1 is read-only"
grep -q "block_size_maximum: 33554432" <<< "$info" || fail "maximum block size is not 32 MiB"
grep -q "block_size_preferred: 4096" <<< "$info" || fail "preferred block size is not 4096"
grep -q "description: cairn volume" <<< "$info" || fail "no description"

log "write 8 MiB, trim 1 MiB of it, read the map"
$PY - "$(nbd_uri v1)" <<'PY'
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
h.pwrite(b"\xa5" * (8 << 20), 0)
h.trim(1 << 20, 2 << 20)
h.flush(); h.shutdown()
PY
map=$(nbdinfo --map "$(nbd_uri v1)")
echo "$map"
grep -Eq "^ +0 +2097152 +0 +data" <<< "$map" || fail "first 2 MiB not data"
grep -Eq "^ +2097152 +1048576 +3 +hole,zero" <<< "$map" || fail "trimmed range is not a hole"
grep -Eq "^ +3145728 +5242880 +0 +data" <<< "$map" || fail "data after the hole missing"

log "unix socket"
nbdinfo "nbd+unix:///v2?socket=$(nbd_socket)" | grep -q "export-size: 67108864" || fail "unix socket export"

log "unknown export is refused with a clear message"
out=$(LIBNBD_DEBUG=1 nbdinfo "$(nbd_uri nosuch)" 2>&1) && fail "unknown export accepted"
grep -q "No such file" <<< "$out" || fail "unknown export not ERR_UNKNOWN: $out"
grep -q "no volume named 'nosuch'" <<< "$out" || fail "the server's message is missing: $out"
log "PASS"
