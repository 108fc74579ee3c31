#!/usr/bin/env bash
# Runs every Tests/system/test_*.sh (or those named), each with a timeout, and writes
# "passed failed" to $TMPDIR/cairn-system-summary.
set -uo pipefail
cd "$(dirname "$0")"
export CAIRN=${CAIRN:-$(cd ../.. && pwd)/.build/release/cairn}
[ -x "$CAIRN" ] || { echo "no cairn binary at $CAIRN; build first" >&2; exit 1; }
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(test_*.sh)
passed=0; failed=0; failures=()
for t in "${tests[@]}"; do
    echo "=== $t"
    start=$(date +%s)
    if timeout -k 10 "${SYSTEM_TEST_TIMEOUT:-600}" bash "$t"; then
        passed=$((passed + 1)); echo "=== $t passed in $(( $(date +%s) - start ))s"
    else
        failed=$((failed + 1)); failures+=("$t"); echo "=== $t FAILED after $(( $(date +%s) - start ))s"
    fi
done
echo "$passed $failed" > "${TMPDIR:-/tmp}/cairn-system-summary"
[ $failed -eq 0 ] || echo "failed: ${failures[*]}"
echo "system: $passed passed, $failed failed"
[ $failed -eq 0 ]
