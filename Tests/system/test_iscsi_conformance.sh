#!/usr/bin/env bash
# libiscsi's conformance suites against Cairn: every SCSI.* and iSCSI.* suite of
# iscsi-test-cu, one suite at a time under a timeout, against an RF=3 volume served by the
# gateway of `cairn local up`. Fails when a test in the recorded pass list
# (iscsi_conformance_pass.txt, see docs/conformance.md) does not pass any more.
# ISCSI_SUITES="SCSI.Read10 SCSI.Write10" runs only those.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/iscsi_lib.sh"
EXPECTED="$ROOT/Tests/system/iscsi_conformance_pass.txt"

start_iscsi_cluster 3
"$CAIRN" volume create conf --size 64MiB --replicas 3 >/dev/null

read -r -a suites <<< "${ISCSI_SUITES:-}"
"$ROOT/tools/conformance/iscsi-suites.sh" "$(iscsi_url conf)" "$T/results.txt" "${suites[@]}"
pass=$(grep -c ' pass$' "$T/results.txt" || true)
skip=$(grep -c ' skip$' "$T/results.txt" || true)
failed=$(grep -c ' fail$' "$T/results.txt" || true)
log "iscsi-test-cu on Cairn: $pass passed, $skip skipped, $failed failed"
grep -E ' (fail|timeout)$' "$T/results.txt" | sed 's/^/  /' || true

regressions=0
while read -r test; do
    [ -z "$test" ] && continue
    if [ -n "${ISCSI_SUITES:-}" ]; then
        keep=0
        for s in "${suites[@]}"; do [[ "$test" == "$s".* ]] && keep=1; done
        [ $keep -eq 1 ] || continue
    fi
    grep -qx "$test pass" "$T/results.txt" || { log "REGRESSION: $test ($(grep "^$test " "$T/results.txt" | cut -d' ' -f2 || echo missing))"; regressions=$((regressions + 1)); }
done < <(grep -v '^#' "$EXPECTED")
[ $regressions -eq 0 ] || fail "$regressions tests of the recorded pass list did not pass"
if [ -n "${ISCSI_RECORD:-}" ]; then cp "$T/results.txt" "$ISCSI_RECORD"; fi
kill -0 "$(cat "$T/data/run/gateway.pid")" || fail "the gateway died during the suites"
log "PASS"
