# Helpers of the CSI tests: plugin processes on unix sockets under $T, driven by
# csi_client.py (Python grpcio, stubs generated from proto/csi.proto at test time).
# On exit, whatever happened: every mount under $T is unmounted (topmost first), the
# `cairn mount` daemons the plugins started and the plugins themselves are stopped.
PLUGIN_PIDS=()
CSI_CLIENT="$ROOT/Tests/system/csi_client.py"
export CSI_STUBS="$T/csi-stubs"
python3 "$CSI_CLIENT" gen "$CSI_STUBS" || fail "cannot generate the CSI stubs (pip install grpcio grpcio-tools)"

csi_cleanup() {
    local m p d
    for p in "${PLUGIN_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    # Topmost mounts first, FUSE last: targets, staging filesystems on loop devices, then
    # the attach daemons' and cairn mount daemons' FUSE mounts.
    for m in $(awk -v t="$T" 'index($5, t) == 1 && $0 !~ / - fuse/ { print $5 }' /proc/self/mountinfo | tac); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    # Attached volumes: cairn detach knows each method's teardown (loop device, daemon).
    for d in "$T"/csi-*/attach; do
        [ -d "$d" ] || continue
        for v in "$d"/*/; do
            v=$(basename "$v")
            timeout 60 "$CAIRN" detach "$v" --state-dir "$d" >/dev/null 2>&1 || true
        done
    done
    for d in $(losetup -a 2>/dev/null | grep -F "$T/" | cut -d: -f1); do losetup -d "$d" 2>/dev/null || true; done
    for m in $(awk -v t="$T" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo | tac); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    # The daemons the plugins started (cairn mount, attach daemons): every daemonPID recorded.
    for p in $(grep -rhoE '"daemonPID" *: *[0-9]+' "$T"/csi-* 2>/dev/null | grep -oE '[0-9]+$'); do
        kill -TERM "$p" 2>/dev/null || true
    done
    if [ "${CSI_TEST_FAILED:-0}" = 1 ]; then
        for f in "$T"/plugin-*.log "$T"/csi-*/logs/*.log; do [ -f "$f" ] && { echo "---- tail of $f"; tail -n 20 "$f"; }; done
    fi
}
trap 'rc=$?; set +e; [ $rc -ne 0 ] && CSI_TEST_FAILED=1; csi_cleanup; (exit $rc); cleanup' EXIT

# start_plugin NAME NODE_ID FLAGS...: a plugin serving $T/NAME.sock, state in $T/csi-NAME.
start_plugin() {
    local name=$1 node=$2; shift 2
    "$CAIRN" csi --endpoint "unix://$T/$name.sock" --node-id "$node" --state-dir "$T/csi-$name" \
        --manager "$(manager_url)" --secret-file "$T/data/secret" "$@" >> "$T/plugin-$name.log" 2>&1 &
    local pid=$!
    disown "$pid"   # no "Killed" notices from bash after kill9_plugin
    eval "PLUGIN_$name=$pid"
    PLUGIN_PIDS+=("$pid")
    wait_for "plugin $name to serve" 30 csi "$name" Identity.GetPluginInfo
}

# kill9_plugin NAME: the hard way, between two calls.
kill9_plugin() {
    local pid_var="PLUGIN_$1"
    kill -KILL "${!pid_var}" 2>/dev/null || true
    while kill -0 "${!pid_var}" 2>/dev/null; do sleep 0.1; done
}

# csi NAME Service.Method [JSON]: the answer's JSON on stdout; fails the test on error.
csi() {
    python3 "$CSI_CLIENT" "$T/$1.sock" "$2" "${3:-}"
}

# csi_expect CODE NAME Service.Method [JSON]: the call must fail with gRPC status CODE.
csi_expect() {
    local code=$1; shift
    local out
    if out=$(python3 "$CSI_CLIENT" "$T/$1.sock" "$2" "${3:-}" 2>&1); then
        fail "$2 ${3:-}: expected $code, got success: $out"
    fi
    grep -q "^$code: " <<< "$out" || fail "$2 ${3:-}: expected $code, got: $out"
}

# json_get JSON PATH: a field of an answer (a python expression on `a`).
json_get() { python3 -c 'import json,sys; a=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# Volume capabilities as the CO sends them.
CAP_RWX='{"mount":{},"access_mode":{"mode":"MULTI_NODE_MULTI_WRITER"}}'
CAP_RWO_EXT4='{"mount":{"fs_type":"ext4"},"access_mode":{"mode":"SINGLE_NODE_WRITER"}}'
CAP_RWO_XFS='{"mount":{"fs_type":"xfs"},"access_mode":{"mode":"SINGLE_NODE_WRITER"}}'
CAP_BLOCK='{"block":{},"access_mode":{"mode":"SINGLE_NODE_WRITER"}}'
