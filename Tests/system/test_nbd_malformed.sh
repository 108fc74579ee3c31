#!/usr/bin/env bash
# Raw bytes at the NBD gateway: bad magic, truncated headers, huge lengths, unknown
# options and commands, a client vanishing mid-request. Each gets the reply the spec asks
# for or a closed connection; another client is served throughout and the data is intact.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 1
"$CAIRN" volume create m1 --size 64MiB --replicas 1 --min-replicas 1 >/dev/null
$PY "$HERE/nbd_malformed.py" 127.0.0.1 "$NBD_PORT" m1
kill -0 "$(cat "$T/data/run/gateway.pid")" || fail "the gateway died"
log "PASS"
