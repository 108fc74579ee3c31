#!/usr/bin/env bash
# iSCSI security with real logins: a gateway with CHAP (one-way and mutual) and a list of
# allowed initiators. The right secret logs in; a wrong secret, no credentials, a wrong
# mutual expectation and an initiator not on the list are refused; AuthMethod None is
# refused because it is not configured.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/iscsi_lib.sh"

start_cluster 3
"$CAIRN" volume create locked --size 32MiB >/dev/null
"$CAIRN" volume create other --size 32MiB >/dev/null

CHAP_PORT=$(( BASE_PORT + 17 ))
GW_NBD_PORT=$(( BASE_PORT + 16 ))
printf 'alice-secret-0123\n' > "$T/chap"
printf 'target-secret-4567\n' > "$T/mutual"
GOOD_IQN=iqn.2026-01.test:good
GW_PID=""
stop_gateway() { [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null || true; GW_PID=""; }
trap 'rc=$?; stop_gateway; (exit $rc); cleanup' EXIT

http_flag=()
"$CAIRN" gateway --help 2>&1 | grep -q -- "--http " && http_flag=(--http none)
"$CAIRN" gateway --nbd "127.0.0.1:$GW_NBD_PORT" "${http_flag[@]}" --client-id chap-gateway \
    --manager "$(manager_url)" --secret-file "$T/data/secret" \
    --iscsi "127.0.0.1:$CHAP_PORT" --iscsi-chap-user alice --iscsi-chap-secret-file "$T/chap" \
    --iscsi-mutual-chap-user target1 --iscsi-mutual-chap-secret-file "$T/mutual" \
    --iscsi-allow-initiator "locked=$GOOD_IQN" > "$T/chap-gateway.log" 2>&1 &
GW_PID=$!
wait_for "the CHAP gateway" 30 iscsi_listening "$CHAP_PORT"

url() { iscsi_url locked "$CHAP_PORT" "$1"; }

log "the right CHAP secret logs in"
iscsi-inq -i "$GOOD_IQN" "$(url 'alice%alice-secret-0123@')" | grep -q "Vendor:CAIRN" || fail "CHAP login failed"

log "mutual CHAP: the target proves it knows its secret"
iscsi-inq -i "$GOOD_IQN" "$(url 'alice%alice-secret-0123@')?target_user=target1&target_password=target-secret-4567" \
    | grep -q "Vendor:CAIRN" || fail "mutual CHAP login failed"

log "a wrong secret, no credentials, a wrong mutual secret are refused"
expect_refused() {
    local out
    if out=$("$@" 2>&1); then fail "login worked but must not: $*"; fi
    echo "  refused: $(echo "$out" | head -1)"
}
expect_refused iscsi-inq -i "$GOOD_IQN" "$(url 'alice%wrong-secret-000@')"
expect_refused iscsi-inq -i "$GOOD_IQN" "$(url 'mallory%alice-secret-0123@')"
expect_refused iscsi-inq -i "$GOOD_IQN" "$(url '')"
expect_refused iscsi-inq -i "$GOOD_IQN" "$(url 'alice%alice-secret-0123@')?target_user=target1&target_password=not-the-target-secret"

log "an initiator not on the target's list is refused even with the right secret"
expect_refused iscsi-inq -i iqn.2026-01.test:intruder "$(url 'alice%alice-secret-0123@')"
log "the list is per target: another volume takes any initiator with CHAP"
iscsi-inq -i iqn.2026-01.test:intruder "$(iscsi_url other "$CHAP_PORT" 'alice%alice-secret-0123@')" | grep -q "Vendor:CAIRN" \
    || fail "login to an unrestricted target failed"

log "discovery needs CHAP too, and lists only what the initiator may see"
expect_refused iscsi-ls -i "$GOOD_IQN" "iscsi://127.0.0.1:$CHAP_PORT"
out=$(iscsi-ls -i iqn.2026-01.test:intruder "iscsi://alice%alice-secret-0123@127.0.0.1:$CHAP_PORT")
echo "$out"
grep -q "${IQN_PREFIX}other" <<< "$out" || fail "discovery misses 'other'"
grep -q "${IQN_PREFIX}locked" <<< "$out" && fail "discovery shows 'locked' to an initiator it refuses"

log "the refusals are logged by the gateway"
grep -q "login refused" "$T/chap-gateway.log" || fail "no refusal in the gateway log"
kill -0 "$GW_PID" || fail "the gateway died"
log "PASS"
