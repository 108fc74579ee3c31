#!/usr/bin/env bash
# Runs libiscsi's iscsi-test-cu one suite at a time (a run of everything can hang near the
# end, and results can depend on order), each under a timeout, and writes one line per
# test: "FAMILY.SUITE.TEST pass|skip|fail" (a suite that timed out: "FAMILY.SUITE timeout").
# CUnit counts a [SKIPPED] test as passed; here a skip is a skip.
#   tools/conformance/iscsi-suites.sh URL RESULTS [FAMILY.SUITE...]   (default: every suite)
set -euo pipefail
url=$1 results=$2; shift 2
timeout_s=${ISCSI_SUITE_TIMEOUT:-120}
here=$(cd "$(dirname "$0")" && pwd)
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
    mapfile -t suites < <(iscsi-test-cu --list | grep -E '^(SCSI|iSCSI)\.[A-Za-z0-9_]+$')
fi
: > "$results"
for s in "${suites[@]}"; do
    out=$(mktemp)
    rc=0
    timeout "$timeout_s" iscsi-test-cu -d -t "$s" "$url" > "$out" 2>&1 || rc=$?
    if [ $rc -eq 124 ]; then echo "$s timeout" >> "$results"; fi
    /usr/bin/python3 "$here/cunit_results.py" "$s" < "$out" >> "$results"
    rm -f "$out"
done
