#!/usr/bin/env bash
# Metrics and health of every daemon in a live local cluster: promtool accepts each
# /metrics; I/O through the NBD gateway moves the volume, storage and manager metrics;
# the storage nodes' and the gateway's /readyz go 503 while the manager is stopped and
# 200 again once it is back (their /healthz stays 200: they are alive, just not ready).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
command -v promtool >/dev/null || fail "promtool is missing (Debian's prometheus package; tools/setup.sh installs it)"

# The manager this test restarts is not a child of `cairn local up`: stop it, then let
# lib.sh's cleanup stop the cluster, whatever the exit status.
MANAGER_AGAIN_PID=""
on_exit() {
    local rc=$?
    set +e
    if [ -n "$MANAGER_AGAIN_PID" ]; then
        kill -TERM "$MANAGER_AGAIN_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$MANAGER_AGAIN_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$MANAGER_AGAIN_PID" 2>/dev/null
    fi
    (exit $rc)
    cleanup
}
trap on_exit EXIT

start_nbd_cluster 3
manager=$(manager_url)
node1=http://127.0.0.1:$HTTP_PORT
gateway=http://127.0.0.1:$(( HTTP_PORT + 3 ))

# metric URL SERIES: the sum of the samples whose name and labels start with SERIES (0 if none).
metric() {
    curl -sf "$1/metrics" | awk -v s="$2" 'index($0, s) == 1 { sum += $NF } END { printf "%.0f\n", sum + 0 }'
}
status_of() { curl -s -o /dev/null -w '%{http_code}' "$1"; }
is_status() { [ "$(status_of "$2")" = "$1" ]; }

log "promtool check metrics on the manager, a storage node and the gateway"
for url in "$manager" "$node1" "$gateway"; do
    curl -sf "$url/metrics" > "$T/metrics.txt" || fail "no /metrics at $url"
    promtool check metrics < "$T/metrics.txt" || fail "promtool rejects $url/metrics"
    grep -q '^cairn_' "$T/metrics.txt" || fail "$url/metrics has no cairn_ metrics"
done
for url in "$manager" "$node1" "$gateway"; do
    [ "$(status_of "$url/readyz")" = 200 ] || fail "$url/readyz is not 200 in a healthy cluster"
    [ "$(status_of "$url/healthz")" = 200 ] || fail "$url/healthz is not 200"
done

log "I/O through the gateway moves the metrics"
"$CAIRN" volume create m1 --size 64MiB >/dev/null
series='cairn_volume_io_bytes_total{volume="m1",frontend="nbd",op="write"}'
ops='cairn_volume_io_operations_total{volume="m1",frontend="nbd",op="write"}'
written_before=$(metric "$node1" cairn_storage_written_bytes_total)
writes_before=$(metric "$node1" 'cairn_storage_requests_total{op="write"}')
gw_before=$(metric "$gateway" "$series")
head -c 16M /dev/urandom > "$T/in.img"
nbdcopy "$T/in.img" "$(nbd_uri m1)"
gw_after=$(metric "$gateway" "$series")
gw_ops=$(metric "$gateway" "$ops")
written_after=$(metric "$node1" cairn_storage_written_bytes_total)
writes_after=$(metric "$node1" 'cairn_storage_requests_total{op="write"}')
log "gateway wrote $gw_before -> $gw_after bytes in $gw_ops requests; node1 stored $written_before -> $written_after bytes"
[ $(( gw_after - gw_before )) -eq $(( 16 << 20 )) ] || fail "gateway write bytes moved by $(( gw_after - gw_before )), not 16 MiB"
[ "$gw_ops" -gt 0 ] || fail "no write operations counted at the gateway"
# Three replicas on three nodes: node1 holds every block.
[ $(( written_after - written_before )) -ge $(( 16 << 20 )) ] || fail "node1's written bytes moved by only $(( written_after - written_before ))"
[ "$writes_after" -gt "$writes_before" ] || fail "node1 counted no WRITE requests"
nbdcopy "$(nbd_uri m1)" "$T/out.img"
[ "$(metric "$gateway" 'cairn_volume_io_bytes_total{volume="m1",frontend="nbd",op="read"}')" -ge $(( 16 << 20 )) ] \
    || fail "gateway read bytes did not move"
cmp -s -n $(( 16 << 20 )) "$T/in.img" "$T/out.img" || fail "the image read back differs"
grep -q '^cairn_volume_io_duration_seconds_bucket{volume="m1",frontend="nbd",op="write",le="+Inf"}' <(curl -sf "$gateway/metrics") \
    || fail "no write latency histogram at the gateway"
[ "$(metric "$manager" 'cairn_manager_volume_chunks{volume="m1",state="allocated"}')" -ge 1 ] || fail "manager counts no allocated chunk of m1"
[ "$(metric "$manager" 'cairn_manager_nodes{state="up"}')" -eq 3 ] || fail "manager does not count 3 nodes up"
curl -sf "$gateway/metrics" | promtool check metrics || fail "promtool rejects the gateway's metrics after I/O"

log "every metric the Grafana dashboard queries exists"
for url in "$manager" "$node1" "$gateway"; do curl -sf "$url/metrics"; done | awk '!/^#/ { sub(/[{ ].*/, ""); print }' | sort -u > "$T/names.txt"
grep -o 'cairn_[a-z_]*' "$ROOT/packaging/grafana/cairn-dashboard.json" | sort -u > "$T/dashboard.txt"
missing=$(comm -23 "$T/dashboard.txt" "$T/names.txt")
[ -z "$missing" ] || fail "the dashboard queries metrics no daemon serves: $missing"

log "stop the manager: storage nodes and the gateway become not ready, stay alive"
pid=$(node_pid manager)
tr '\0' '\n' < "/proc/$pid/cmdline" > "$T/manager.args"
kill -KILL "$pid"
wait_for "node1 /readyz to fail" 30 is_status 503 "$node1/readyz"
wait_for "the gateway's /readyz to fail" 30 is_status 503 "$gateway/readyz"
curl -s "$node1/readyz" | grep -q "manager" || fail "node1 /readyz does not name the manager"
[ "$(status_of "$node1/healthz")" = 200 ] || fail "node1 /healthz failed while only the manager is away"
[ "$(status_of "$gateway/healthz")" = 200 ] || fail "gateway /healthz failed while only the manager is away"

log "start the manager again with the same command line: ready again"
mapfile -t args < "$T/manager.args"
"${args[@]}" >> "$T/data/logs/manager.log" 2>&1 &
MANAGER_AGAIN_PID=$!
wait_for "the manager's /readyz" 30 is_status 200 "$manager/readyz"
wait_for "node1 /readyz" 30 is_status 200 "$node1/readyz"
wait_for "the gateway's /readyz" 30 is_status 200 "$gateway/readyz"
curl -sf "$manager/metrics" | promtool check metrics || fail "promtool rejects the restarted manager's metrics"
log "PASS"
