#!/usr/bin/env bash
# Import 256 MiB with RF=3 while a storage node is killed with -9: the import finishes,
# the export is byte-identical, after the grace period every chunk has 3 healthy replicas
# that agree byte for byte, a flipped byte in a replica file is never returned and is
# repaired, and every byte survives a restart of the whole cluster.
source "$(dirname "$0")/lib.sh"
CHUNK=16MiB
start_cluster 4 --chunk-size $CHUNK --journal-size 64MiB --heartbeat-timeout 2s --grace-period 5s

chunk_health() {  # prints "allocated healthy3" for volume $1, not counting replicas on node $2
    api "/v1/volumes/$1/map" | python3 -c '
import json, sys
m = json.load(sys.stdin)
dead = sys.argv[1]
full = [c for c in m["chunks"] if len(c["replicas"]) == 3 and
        all(r["state"] == "healthy" and r["node"] != dead for r in c["replicas"])]
print(len(m["chunks"]), len(full))' "${2:-}"
}
# all_healthy VOLUME [DEAD_NODE]: every allocated chunk has 3 healthy replicas, none on DEAD_NODE.
all_healthy() { read -r n h < <(chunk_health "$1" "${2:-}"); [ "$n" -gt 0 ] && [ "$n" = "$h" ]; }

"$CAIRN" volume create v --size 256MiB --replicas 3 >/dev/null
head -c 256M /dev/urandom > "$T/in.img"
want=$(sha256sum < "$T/in.img" | cut -d' ' -f1)

log "import 256 MiB, kill -9 node2 in the middle"
"$CAIRN" volume import v "$T/in.img" > "$T/import.log" 2>&1 &
import_pid=$!
# Kill once the import has written something (some chunks allocated).
wait_for "the import to start writing" 30 bash -c "[ \$(curl -s -H 'Authorization: Bearer $(secret)' $(manager_url)/v1/volumes/v/map | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[\"chunks\"]))') -ge 2 ]"
victim=$(node_pid node2)
kill -9 "$victim"
log "killed node2 (pid $victim)"
wait "$import_pid" || { cat "$T/import.log"; fail "import failed after a node was killed"; }
grep -q "imported 256 MiB" "$T/import.log" || fail "import did not report completion"

log "export returns exactly the imported bytes"
"$CAIRN" volume export v "$T/out.img" >/dev/null
got=$(sha256sum < "$T/out.img" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "export differs from import ($got vs $want)"

log "after the grace period every chunk is back to 3 healthy replicas"
wait_for "all chunks to have 3 healthy replicas off node2" 180 all_healthy v node2
"$CAIRN" status | tee "$T/status.txt" | grep -q "down" || fail "node2 should show as down"
api /v1/volumes/v/map | python3 -c '
import json, sys
m = json.load(sys.stdin)
for c in m["chunks"]:
    nodes = [r["node"] for r in c["replicas"]]
    assert "node2" not in nodes, c
    assert len(set(nodes)) == 3, c'
"$CAIRN" volume verify v --deep > "$T/verify.txt" || { cat "$T/verify.txt"; fail "replicas disagree after rebuild"; }

log "a flipped byte in one replica is never returned, and is repaired"
vol_id=$(api /v1/volumes/v/map | python3 -c 'import json,sys; print("%016x" % json.load(sys.stdin)["volume"]["id"])')
first=$(api /v1/volumes/v/map | python3 -c 'import json,sys; m=json.load(sys.stdin); print([c for c in m["chunks"] if c["index"]==0][0]["replicas"][0]["node"])')
file="$T/data/$first/chunks/$vol_id/0.chunk"
[ -f "$file" ] || fail "no replica file $file"
size=$(stat -c %s "$file")
# The last data block of chunk 0 (written: the image is random) sits at the end of the file.
off=$(( size - 1000 ))
orig=$(dd if="$file" bs=1 skip=$off count=1 status=none | od -An -tu1 | tr -d ' ')
printf "\\x$(printf %02x $(( (orig + 1) % 256 )))" | dd of="$file" bs=1 seek=$off conv=notrunc status=none
CAIRN_LOCAL_NODE=$first "$CAIRN" volume export v "$T/out2.img" > "$T/export2.log" 2>&1
cmp "$T/out2.img" "$T/in.img" || fail "a corrupted byte reached the reader"
grep -q "checksum mismatch" "$T/export2.log" || fail "the corruption was not detected"
grep -q "repaired replica" "$T/export2.log" || fail "the corrupt replica was not repaired"
"$CAIRN" volume verify v --deep > "$T/verify2.txt" || { cat "$T/verify2.txt"; fail "replica still corrupt after repair"; }

log "stop and restart the whole cluster: every byte is still there"
stop_cluster
start_cluster 4 --chunk-size $CHUNK --journal-size 64MiB --heartbeat-timeout 2s --grace-period 5s
"$CAIRN" volume export v "$T/out3.img" >/dev/null
got=$(sha256sum < "$T/out3.img" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "data changed across a restart"
wait_for "all chunks healthy after restart" 60 all_healthy v
"$CAIRN" volume verify v --deep >/dev/null || fail "replicas disagree after restart"
log "PASS"
