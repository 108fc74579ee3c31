# Shared helpers of the system tests: a real cluster of real processes on loopback,
# cleaned up on exit whatever happens. Source it; then call start_cluster.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CAIRN=${CAIRN:-$ROOT/.build/debug/cairn}
T=$(mktemp -d /tmp/cairn-systest.XXXXXX)
export CAIRN_CONFIG=$T/config
unset CAIRN_MANAGER CAIRN_SECRET CAIRN_LOCAL_NODE
LOCAL_UP_PID=""

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
fail() { log "FAIL: $*"; exit 1; }

cleanup() {
    local rc=$?
    stop_cluster || true
    if [ $rc -ne 0 ] && [ -d "$T/data/logs" ]; then
        for f in "$T"/data/logs/*.log; do echo "---- tail of $f"; tail -n 30 "$f"; done
    fi
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT

# A range of 20 ports of our own: a random base whose ports are all free right now, so
# parallel runs (and anything else on the machine) do not meet.
BASE_PORT=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    base = 20000 + random.randrange(2000) * 20
    socks = []
    try:
        for p in range(base, base + 20):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
        print(base)
        break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
)
[ -n "$BASE_PORT" ] || { echo "no free port range" >&2; exit 1; }
MANAGER_PORT=$BASE_PORT
STORAGE_PORT=$(( BASE_PORT + 1 ))
NBD_PORT=${NBD_PORT:-$(( BASE_PORT + 19 ))}
# /metrics, /healthz, /readyz: storage node i on HTTP_PORT+i-1, the gateway on HTTP_PORT+nodes.
HTTP_PORT=$(( BASE_PORT + 10 ))

# CAIRN_TEST_META=etcd runs the manager on a local etcd (client port ETCD_PORT, peer +1).
ETCD_PORT=$(( BASE_PORT + 6 ))
META_FLAGS=()
[ "${CAIRN_TEST_META:-sqlite}" = etcd ] && META_FLAGS=(--meta etcd --etcd-port "$ETCD_PORT")

start_cluster() {  # start_cluster NODES [extra local-up flags...]
    local nodes=$1; shift
    # Empty the log here, not only in the child's redirection: the background
    # child truncates it after the fork, so the first polls below could still read
    # a previous run's "Press Ctrl-C" (a restart would pass before it happened).
    : > "$T/local-up.log"
    "$CAIRN" local up "${META_FLAGS[@]}" --dir "$T/data" --nodes "$nodes" --manager-port "$MANAGER_PORT" --storage-port "$STORAGE_PORT" \
        --nbd-port "$NBD_PORT" --http-port "$HTTP_PORT" --config "$CAIRN_CONFIG" --fs-mount none "$@" > "$T/local-up.log" 2>&1 &
    LOCAL_UP_PID=$!
    for _ in $(seq 1 300); do
        if grep -q "Press Ctrl-C" "$T/local-up.log" 2>/dev/null; then
            if [ ${#META_FLAGS[@]} -gt 0 ]; then
                grep -q "metadata: etcd" "$T/local-up.log" || fail "the manager is not on etcd"
            fi
            log "cluster up ($nodes nodes, metadata ${CAIRN_TEST_META:-sqlite})"; return 0
        fi
        kill -0 "$LOCAL_UP_PID" 2>/dev/null || { cat "$T/local-up.log"; fail "cairn local up exited"; }
        sleep 0.1
    done
    cat "$T/local-up.log"; fail "cluster did not come up"
}

stop_cluster() {
    [ -n "$LOCAL_UP_PID" ] || return 0
    kill -INT "$LOCAL_UP_PID" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$LOCAL_UP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$LOCAL_UP_PID" 2>/dev/null || true
    # Children whose parent died with SIGKILL: end them by their pid files.
    for f in "$T"/data/run/*.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null || true; rm -f "$f"; done
    LOCAL_UP_PID=""
}

node_pid() { cat "$T/data/run/$1.pid"; }
secret() { tr -d '\n' < "$T/data/secret"; }
manager_url() { echo "http://127.0.0.1:$MANAGER_PORT"; }
api() { curl -sS -H "Authorization: Bearer $(secret)" "$(manager_url)$1"; }

# wait_for DESCRIPTION SECONDS COMMAND...: polls until the command succeeds.
wait_for() {
    local what=$1 seconds=$2; shift 2
    for _ in $(seq 1 $(( seconds * 5 ))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.2
    done
    fail "timed out after ${seconds}s waiting for $what"
}

expect_fail() {  # expect_fail "message fragment" command...
    local want=$1; shift
    local out
    if out=$("$@" 2>&1); then fail "expected failure of: $* (got: $out)"; fi
    grep -q -- "$want" <<< "$out" || fail "error of '$*' lacks '$want': $out"
    [ "$(echo "$out" | wc -l)" -le 2 ] || fail "error of '$*' is not one clear line: $out"
}
