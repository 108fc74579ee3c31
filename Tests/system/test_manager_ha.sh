#!/usr/bin/env bash
# Highly available managers on a three-member etcd (Debian etcd-server), all on loopback:
#  - three `cairn manager --meta etcd://...` elect exactly one leader; the others stand by;
#  - kill -9 the leader while volumes are being created and imported by the CLI and while
#    an NBD client writes a new chunk every few milliseconds (each needs the manager to
#    allocate it): a new leader takes over, every command and every write carries on, no
#    volume or epoch is lost or duplicated, and every byte reads back;
#  - the old leader, restarted, stands by and follows;
#  - kill -9 one etcd member: creating, writing and reading still work.
source "$(dirname "$0")/lib.sh"
command -v etcd >/dev/null || fail "etcd is not installed (tools/setup.sh installs etcd-server)"
PY=/usr/bin/python3

PIDS=()
declare -A PID_OF
kill_quietly() { { kill -KILL "$1" && wait "$1"; } 2>/dev/null || true; }
kill_all() { for p in "${PIDS[@]}"; do kill_quietly "$p"; done; }
trap 'kill_all; cleanup' EXIT

spawn() {  # spawn NAME COMMAND...: runs in the background, logs to $T/NAME.log
    local name=$1; shift
    "$@" > "$T/$name.log" 2>&1 &
    PIDS+=($!); PID_OF[$name]=$!
}

mkdir -p "$T/data/logs"
head -c 32 /dev/urandom | base64 | tr -d '/+=' > "$T/secret"
export CAIRN_SECRET=$(cat "$T/secret")

# Ports: managers +0..2, storage +3..5, etcd client/peer +6..11, NBD +12, node HTTP +13..15, gateway HTTP +16.
ETCD_CLUSTER="" ETCD_URLS=""
for i in 1 2 3; do
    ETCD_CLUSTER+="${ETCD_CLUSTER:+,}e$i=http://127.0.0.1:$(( BASE_PORT + 6 + 2*(i-1) + 1 ))"
    ETCD_URLS+="${ETCD_URLS:+,}127.0.0.1:$(( BASE_PORT + 6 + 2*(i-1) ))"
done
for i in 1 2 3; do
    c=$(( BASE_PORT + 6 + 2*(i-1) )); p=$(( c + 1 ))
    spawn etcd$i etcd --name e$i --data-dir "$T/etcd$i" --listen-client-urls http://127.0.0.1:$c \
        --advertise-client-urls http://127.0.0.1:$c --listen-peer-urls http://127.0.0.1:$p \
        --initial-advertise-peer-urls http://127.0.0.1:$p --initial-cluster "$ETCD_CLUSTER" \
        --initial-cluster-state new --initial-cluster-token "cairn-test-$BASE_PORT"
done
etcd_ok() { curl -sf -X POST -d '{}' "http://$1/v3/maintenance/status" | grep -q '"leader"'; }
for u in ${ETCD_URLS//,/ }; do wait_for "etcd member $u" 30 etcd_ok "$u"; done
log "three-member etcd up: $ETCD_URLS"

MANAGERS=""
for i in 1 2 3; do MANAGERS+="${MANAGERS:+,}http://127.0.0.1:$(( BASE_PORT + i - 1 ))"; done
export CAIRN_MANAGER=$MANAGERS
start_manager() {
    spawn manager$1 "$CAIRN" manager --listen 127.0.0.1:$(( BASE_PORT + $1 - 1 )) --meta "etcd://$ETCD_URLS" \
        --leader-ttl 3s --heartbeat-timeout 3s --grace-period 60s --chunk-size 1MiB
}
for i in 1 2 3; do start_manager $i; done

# leader_index: which manager (1-3) answers /readyz; fails unless exactly one does.
leader_index() {
    local ready=()
    for i in 1 2 3; do
        curl -sf "http://127.0.0.1:$(( BASE_PORT + i - 1 ))/readyz" >/dev/null 2>&1 && ready+=($i)
    done
    [ ${#ready[@]} -eq 1 ] && echo "${ready[0]}"
}
wait_for "exactly one leader" 30 leader_index
LEADER=$(leader_index)
log "manager$LEADER leads"
for i in 1 2 3; do
    [ "$i" = "$LEADER" ] && continue
    out=$(curl -s "http://127.0.0.1:$(( BASE_PORT + i - 1 ))/v1/volumes" -H "Authorization: Bearer $CAIRN_SECRET")
    grep -q 'standing by' <<< "$out" || fail "manager$i does not say it stands by: $out"
done

for i in 1 2 3; do
    spawn node$i "$CAIRN" storage --data "$T/node$i" --listen 127.0.0.1:$(( BASE_PORT + 2 + i )) --node-id node$i \
        --chunk-size 1MiB --journal-size 32MiB --http 127.0.0.1:$(( BASE_PORT + 12 + i ))
done
nodes_up() { [ "$("$CAIRN" node list --output json | $PY -c 'import json,sys; print(sum(n["state"]=="up" for n in json.load(sys.stdin)))')" = 3 ]; }
wait_for "3 storage nodes up" 30 nodes_up

gateway_args=(gateway --nbd 127.0.0.1:$(( BASE_PORT + 12 )) --http 127.0.0.1:$(( BASE_PORT + 16 )))
"$CAIRN" gateway --help | grep -q -- '--iscsi' && gateway_args+=(--iscsi none)
spawn gateway "$CAIRN" "${gateway_args[@]}"
NBD_URI="nbd://127.0.0.1:$(( BASE_PORT + 12 ))"

# The NBD writer: 96 MiB, one new 1 MiB chunk every 60 ms, each needing an allocation by
# the manager; then it reads everything back and compares. It prints "wrote N" as it goes.
"$CAIRN" volume create paced --size 96MiB --replicas 3 >/dev/null
wait_for "the NBD export" 20 nbdinfo "$NBD_URI/paced"
cat > "$T/paced.py" <<'PYEOF'
import hashlib, nbd, os, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
mib = 1 << 20
size = h.get_size()
data = {}
for off in range(0, size, mib):
    block = os.urandom(mib)
    h.pwrite(block, off)
    data[off] = hashlib.sha256(block).hexdigest()
    print("wrote", off // mib + 1, flush=True)
    time.sleep(0.06)
h.flush()
for off in range(0, size, mib):
    if hashlib.sha256(h.pread(mib, off)).hexdigest() != data[off]:
        print(f"mismatch at {off}"); sys.exit(1)
h.shutdown()
print("paced writer: all", size // mib, "MiB read back equal")
PYEOF
$PY "$T/paced.py" "$NBD_URI/paced" > "$T/paced.out" 2>&1 &
PACED_PID=$!; PIDS+=($PACED_PID)

# The CLI: create and import volumes one after another, through the kill.
cat > "$T/cli-loop.sh" <<'SHEOF'
set -e
for i in $(seq 1 12); do
    "$CAIRN" volume create "v$i" --size 8MiB --replicas 3 >/dev/null
    head -c 8M /dev/urandom > "$T/v$i.img"
    "$CAIRN" volume import "v$i" "$T/v$i.img" >/dev/null
    echo "v$i done"
done
SHEOF
CAIRN=$CAIRN T=$T bash "$T/cli-loop.sh" > "$T/cli-loop.out" 2>&1 &
CLI_PID=$!; PIDS+=($CLI_PID)

wait_for "the CLI to make a few volumes" 60 grep -q "v3 done" "$T/cli-loop.out"
written=$(grep -c '^wrote' "$T/paced.out" || true)
[ "$written" -lt 80 ] || fail "the NBD writer is nearly done before the kill ($written MiB)"
log "kill -9 the leader, manager$LEADER, during creates and writes (NBD writer at $written MiB of 96)"
kill_quietly "${PID_OF[manager$LEADER]}"
OLD=$LEADER
wait_for "a new leader" 30 leader_index
LEADER=$(leader_index)
[ "$LEADER" != "$OLD" ] || fail "the killed manager still leads"
log "manager$LEADER took over"

rc=0; wait_pid() { while kill -0 "$1" 2>/dev/null; do sleep 0.2; done; }
wait_pid $CLI_PID; wait_pid $PACED_PID
grep -q "v12 done" "$T/cli-loop.out" || fail "the CLI loop stopped: $(tail -3 "$T/cli-loop.out")"
grep -q "read back equal" "$T/paced.out" || fail "the NBD writer failed: $(tail -3 "$T/paced.out")"
log "the CLI made 12 volumes and the NBD writer read 96 MiB back across the takeover"

# Nothing lost or duplicated: 13 volumes, distinct ids, each import reads back equal.
"$CAIRN" volume list --output json > "$T/list.json"
$PY - "$T/list.json" <<'PYEOF' || fail "volume list is wrong: $(cat "$T/list.json")"
import json, sys
vols = [v.get("volume", v) for v in json.load(open(sys.argv[1]))]
names = sorted(v["name"] for v in vols)
ids = [v["id"] for v in vols]
want = sorted(["paced"] + [f"v{i}" for i in range(1, 13)])
assert names == want, names
assert len(set(ids)) == len(ids), ids
assert all(v["epoch"] >= 1 and v.get("writer") in (None, "") or v["name"] == "paced" for v in vols)
PYEOF
for i in $(seq 1 12); do
    "$CAIRN" volume export "v$i" "$T/out.img" >/dev/null
    cmp -s "$T/v$i.img" "$T/out.img" || fail "v$i does not read back equal"
done
log "every volume reads back equal"

# Epochs only grow: a writer's attach on the new leader moves the epoch above the old one.
e1=$("$CAIRN" volume get v1 --output json | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d.get("volume", d)["epoch"])')
"$CAIRN" volume import v1 "$T/v1.img" >/dev/null
e2=$("$CAIRN" volume get v1 --output json | $PY -c 'import json,sys; d=json.load(sys.stdin); print(d.get("volume", d)["epoch"])')
[ "$e2" -gt "$e1" ] || fail "epoch did not grow across an attach ($e1 -> $e2)"

log "restart the old leader: it follows"
start_manager $OLD
url_old="http://127.0.0.1:$(( BASE_PORT + OLD - 1 ))"
wait_for "manager$OLD to answer" 20 curl -s "$url_old/healthz"
sleep 4
[ "$(leader_index)" = "$LEADER" ] || fail "leadership moved when the old leader returned"
curl -s "$url_old/readyz" | grep -q "standing by" || fail "the returned manager does not stand by"

log "kill -9 etcd member 1"
kill_quietly "${PID_OF[etcd1]}"
"$CAIRN" volume create after --size 8MiB --replicas 3 >/dev/null
head -c 8M /dev/urandom > "$T/after.img"
"$CAIRN" volume import after "$T/after.img" >/dev/null
"$CAIRN" volume export after "$T/out.img" >/dev/null
cmp -s "$T/after.img" "$T/out.img" || fail "volume written after the etcd kill does not read back"
[ "$(leader_index)" = "$LEADER" ] || wait_for "a leader after the etcd kill" 30 leader_index
log "PASS"
