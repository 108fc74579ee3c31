#!/usr/bin/env bash
# One command for every test: install what is missing, build, run the unit and
# simulation tests (swift test), then the system tests against real processes.
# Ends with one line "tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh || exit 1
set -e
# One optimized build serves both layers: the unit tests (compiled with
# -enable-testing so @testable imports work) and the release binary the system
# tests run. A separate debug build would double the build time (the gRPC stack
# alone takes minutes to compile on 2 cores).
build_flags=(-c release -Xswiftc -enable-testing)
swift build "${build_flags[@]}" --build-tests
set +e
unit_log=$(mktemp)
swift test "${build_flags[@]}" --skip-build 2>&1 | tee "$unit_log"
unit_rc=${PIPESTATUS[0]}
executed=$(grep -Eo 'Executed [0-9]+ tests?, with [0-9]+ failures?' "$unit_log" | tail -1)
unit_total=$(echo "$executed" | awk '{print $2}')
unit_failed=$(echo "$executed" | awk '{print $5}')
unit_total=${unit_total:-0}; unit_failed=${unit_failed:-0}
if [ "$unit_rc" -ne 0 ] && [ "$unit_failed" -eq 0 ]; then unit_failed=1; fi
rm -f "$unit_log"

CAIRN="$PWD/.build/release/cairn" bash Tests/system/run.sh
system_rc=$?
read -r sys_passed sys_failed < "${TMPDIR:-/tmp}/cairn-system-summary" || { sys_passed=0; sys_failed=1; }

passed=$(( unit_total - unit_failed + sys_passed ))
failed=$(( unit_failed + sys_failed ))
echo "unit: $(( unit_total - unit_failed )) passed, $unit_failed failed"
echo "system: $sys_passed passed, $sys_failed failed"
echo "tests: $passed passed, $failed failed"
[ "$unit_rc" -eq 0 ] && [ "$system_rc" -eq 0 ] && [ "$failed" -eq 0 ]
