#!/usr/bin/env bash
# python3-libnbd drives every command and flag of the NBD gateway: reads and writes
# (aligned and not), FUA, flush, trim, write zeroes (NO_HOLE, FAST_ZERO), block status
# (REQ_ONE), cache, simple and structured replies, out-of-range and bad-flag errors with
# strict mode off, a read-only volume, and multi-conn flush visibility.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 3
"$CAIRN" volume create p1 --size 128MiB >/dev/null
"$CAIRN" volume create busy --size 64MiB >/dev/null
# A writer other than the gateway holds 'busy': the gateway must refuse it, not fence it.
curl -fsS -X POST -H "Authorization: Bearer $(secret)" -d '{"client":"someone-else","force":false,"readOnly":false}' \
    "$(manager_url)/v1/volumes/busy/attach" >/dev/null
$PY "$HERE/nbd_commands.py" "$(nbd_uri p1)" "$(nbd_uri busy)" "nbd+unix:///p1?socket=$(nbd_socket)"
log "PASS"
