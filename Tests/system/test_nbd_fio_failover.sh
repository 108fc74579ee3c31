#!/usr/bin/env bash
# The verified fio run of test_nbd_fio.sh on an RF=3 volume while a storage node is
# killed with -9: zero errors, and everything written verifies.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 3
"$CAIRN" volume create ff --size 256MiB --replicas 3 --min-replicas 2 >/dev/null
nbd_fio "$(nbd_uri ff)" "$T/fio.txt" --loops=3 &
FIO=$!
sleep 3
kill -0 $FIO 2>/dev/null || fail "fio ended before the kill"
log "kill -9 node2 during the run"
kill -9 "$(node_pid node2)"
wait $FIO || fail "fio failed with a node killed"
log "PASS"
