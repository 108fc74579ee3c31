#!/usr/bin/env bash
# Conformance side by side: every iscsi-test-cu suite against Debian's tgtd (file-backed LUN
# on loopback) and, when CAIRN_ISCSI_URL is given, against a running Cairn gateway; writes
# the result files and prints the per-suite table used in docs/conformance.md.
#   tools/conformance/run.sh OUTDIR                       (tgtd only)
#   CAIRN_ISCSI_URL=iscsi://127.0.0.1:PORT/iqn.2026-11.io.cairn:VOL/0 tools/conformance/run.sh OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: run.sh OUTDIR}
mkdir -p "$out"
port=${TGTD_PORT:-13260}
work=$(mktemp -d /tmp/cairn-tgtd.XXXXXX)
trap '"$here/tgtd.sh" stop "$work"; rm -rf "$work"' EXIT
url=$("$here/tgtd.sh" start "$work" "$port" 64)
echo "tgtd: $url"
"$here/iscsi-suites.sh" "$url" "$out/tgtd.txt"
if [ -n "${CAIRN_ISCSI_URL:-}" ]; then
    echo "cairn: $CAIRN_ISCSI_URL"
    "$here/iscsi-suites.sh" "$CAIRN_ISCSI_URL" "$out/cairn.txt"
fi
/usr/bin/python3 "$here/table.py" "$out/tgtd.txt" ${CAIRN_ISCSI_URL:+"$out/cairn.txt"}
