#!/usr/bin/env bash
# Malformed PDUs, protocol violations and bad digests from a raw client: each ends in a
# Reject or a closed connection; the gateway survives and other sessions keep working.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/iscsi_lib.sh"

start_iscsi_cluster 3
"$CAIRN" volume create raw --size 32MiB >/dev/null
head -c 1048576 /dev/urandom > "$T/data.bin"
qemu-img convert -n -f raw -O raw "$T/data.bin" "$(iscsi_url raw)"
/usr/bin/python3 "$ROOT/Tests/system/iscsi_malformed.py" "$ISCSI_PORT" "${IQN_PREFIX}raw"
kill -0 "$(cat "$T/data/run/gateway.pid")" || fail "the gateway died"
iscsi-inq "$(iscsi_url raw)" | grep -q "Vendor:CAIRN" || fail "a normal session fails after the malformed ones"
qemu-img convert -f raw -O raw "$(iscsi_url raw)" "$T/back.bin"
cmp <(head -c 1048576 "$T/back.bin") "$T/data.bin" || fail "data changed by the malformed sessions"
log "PASS"
