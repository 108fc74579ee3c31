#!/usr/bin/env bash
# Data through iSCSI survives a storage node killed with -9: qemu-img (libiscsi block
# driver) writes random data to an RF=3 volume while node2 is killed, then everything is
# read back through iSCSI and compared, and read once more outside iSCSI.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/iscsi_lib.sh"

start_iscsi_cluster 4 --grace-period 60s
"$CAIRN" volume create data --size 192MiB --replicas 3 --min-replicas 2 >/dev/null
head -c $(( 192 << 20 )) /dev/urandom > "$T/src.img"
URL=$(iscsi_url data)

log "writing 192 MiB through iSCSI"
qemu-img convert -n -f raw -O raw -t none "$T/src.img" "$URL" &
WRITER=$!
sleep 1
if kill -0 "$WRITER" 2>/dev/null; then log "killing node2 (-9) while the write runs"; else log "the write finished before the kill"; fi
kill -9 "$(node_pid node2)"
wait "$WRITER" || fail "qemu-img convert over iSCSI failed"

log "reading it all back through iSCSI"
qemu-img compare -f raw -F raw "$T/src.img" "$URL" || fail "data read through iSCSI differs"

log "and through the volume client"
"$CAIRN" volume export data "$T/out.img" >/dev/null
cmp "$T/src.img" "$T/out.img" || fail "exported data differs"
log "PASS"
