#!/usr/bin/env bash
# Starts Debian's tgtd on loopback with one file-backed LUN, for side-by-side runs:
#   tools/conformance/tgtd.sh start DIR PORT SIZE_MIB   -> prints the target URL
#   tools/conformance/tgtd.sh stop DIR
# tgtd ignores SIGTERM: the target is deleted with --force, the daemon told to exit,
# and only then is it killed by its own pid (never by name).
set -euo pipefail
IQN=iqn.2026-11.io.cairn.peer:tgtd
# Not in tools/setup.sh on purpose: Debian's package also starts a tgtd service on port 3260.
command -v tgtd >/dev/null || { echo "tgtd.sh: needs Debian's tgt (apt-get install tgt)" >&2; exit 1; }
cmd=$1 dir=$2
case "$cmd" in
start)
    port=$3 size=$4
    mkdir -p "$dir"
    truncate -s "${size}M" "$dir/lun.img"
    # -C: a control socket of our own, so another tgtd on the machine is never touched.
    ctl=$(( port % 1000 + 100 ))
    echo "$ctl" > "$dir/control"
    tgtd -f -C "$ctl" --iscsi "portal=127.0.0.1:$port" > "$dir/tgtd.log" 2>&1 &
    echo $! > "$dir/tgtd.pid"
    for _ in $(seq 1 100); do
        tgtadm -C "$ctl" --lld iscsi --op show --mode target >/dev/null 2>&1 && break
        sleep 0.1
    done
    tgtadm -C "$ctl" --lld iscsi --op new --mode target --tid 1 -T "$IQN"
    tgtadm -C "$ctl" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$dir/lun.img"
    tgtadm -C "$ctl" --lld iscsi --op bind --mode target --tid 1 -I ALL
    echo "iscsi://127.0.0.1:$port/$IQN/1"
    ;;
stop)
    [ -f "$dir/tgtd.pid" ] || exit 0
    ctl=$(cat "$dir/control")
    pid=$(cat "$dir/tgtd.pid")
    tgtadm -C "$ctl" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1 || true
    tgtadm -C "$ctl" --op delete --mode system >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/tgtd.pid"
    ;;
*) echo "usage: $0 start DIR PORT SIZE_MIB | stop DIR" >&2; exit 2 ;;
esac
