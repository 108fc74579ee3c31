#!/usr/bin/env bash
# Benchmarks Cairn against a plain file on the same disk and writes docs/benchmarks.md.
#
# Starts a private local cluster (3 storage nodes, no NBD gateway, ports away from a dev cluster) in a
# temporary directory, creates volumes bench-rf1 (1 replica) and bench-rf3 (3 replicas),
# fills both from a random image, then for each case (1 MiB sequential and 4 KiB random,
# reads and writes, queue depth 1 and 32) runs `cairn bench` on both volumes and fio on the
# image file. Targets are interleaved and every measurement is repeated; the report quotes
# medians, because this machine drifts by up to 2x between runs minutes apart.
#
# Environment:
#   BENCH_SECONDS  seconds per measurement (default 5)
#   BENCH_REPEAT   repetitions of each measurement (default 3)
#   BENCH_SIZE     volume and image size (default 1GiB)
#   BENCH_SCRATCH  swift build --scratch-path (default: the package's .build)
#   BENCH_MANAGER_PORT / BENCH_STORAGE_PORT  (default 19400 / 19411..19413)
#   BENCH_OUT      report path (default docs/benchmarks.md)
#   BENCH_CASES    only the cases whose name contains this text (e.g. randwrite-4KiB-qd32)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$ROOT/tools/bench"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
SECONDS_PER_RUN=${BENCH_SECONDS:-5}
REPEAT=${BENCH_REPEAT:-3}
SIZE=${BENCH_SIZE:-1GiB}
MANAGER_PORT=${BENCH_MANAGER_PORT:-19400}
STORAGE_PORT=${BENCH_STORAGE_PORT:-19411}
OUT=${BENCH_OUT:-$ROOT/docs/benchmarks.md}
ONLY=${BENCH_CASES:-}
NODES=3
# Cases: pattern, block size, queue depth. Writes come first within a kind so reads always
# find written data (the fill below already wrote everything once).
CASES=(
  "seqwrite 1MiB 1" "seqwrite 1MiB 32" "seqread 1MiB 1" "seqread 1MiB 32"
  "randwrite 4KiB 1" "randwrite 4KiB 32" "randread 4KiB 1" "randread 4KiB 32"
)

require_tools fio jq swift

# ---- build ------------------------------------------------------------------------------
build_cairn "$ROOT"   # sets CAIRN and COMMIT (what was built)

# ---- a private cluster, stopped and removed on any exit ---------------------------------
for port in "$MANAGER_PORT" $(seq "$STORAGE_PORT" $((STORAGE_PORT + NODES - 1))); do
  if port_in_use "$port"; then die "port $port is in use (set BENCH_MANAGER_PORT / BENCH_STORAGE_PORT)"; fi
done
TMP=$(mktemp -d /tmp/cairn-bench.XXXXXX)
export CAIRN_CONFIG="$TMP/config"
LOCAL_PID=""

cleanup() {
  local rc=$?
  trap - EXIT
  stop_local_cluster "$TMP"   # and daemons left behind by a `local up` that died
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting a local cluster in $TMP (manager :$MANAGER_PORT, storage :$STORAGE_PORT..)"
start_local_cluster "$TMP" "$NODES" "$MANAGER_PORT" "$STORAGE_PORT" --chunk-size 64MiB --nbd-port 0
pid_of() { cat "$TMP/data/run/$1.pid"; }
DAEMONS=(manager $(seq -f "node%g" 1 "$NODES"))

# ---- volumes and the plain file -------------------------------------------------------
"$CAIRN" volume create bench-rf1 --size "$SIZE" --replicas 1 --min-replicas 1 >&2
"$CAIRN" volume create bench-rf3 --size "$SIZE" --replicas 3 >&2
SIZE_BYTES=$("$CAIRN" volume get bench-rf1 --output json | jq '.volume.sizeBytes')
PLAIN="$TMP/plain.img"
log "writing $SIZE of random data to $PLAIN"
head -c "$SIZE_BYTES" /dev/urandom >"$PLAIN"
sync "$PLAIN"
for v in bench-rf1 bench-rf3; do
  log "filling $v from the image (so reads read real data)"
  "$CAIRN" volume import "$v" "$PLAIN" >&2
done

# ---- measurement helpers ----------------------------------------------------------------
TICKS=$(getconf CLK_TCK)
DISK=$(basename "$(df --output=source "$TMP" | tail -1)")
daemon_ticks() { local out=(); for d in "${DAEMONS[@]}"; do out+=("$(cpu_ticks "$(pid_of "$d")")"); done; echo "${out[*]}"; }
# Sectors written to the disk under $TMP (512-byte units, whatever the device's sector size).
disk_sectors_written() { disk_sectors_written_on "$DISK"; }
# cpu_ticks, to_bytes and fio_rw come from lib.sh.

# Per-daemon CPU seconds between two `daemon_ticks` samples, as a JSON object.
daemon_cpu_json() {
  local -a before=($1) after=($2); local out="" i
  for i in "${!DAEMONS[@]}"; do
    out+="${out:+,}\"${DAEMONS[$i]}\": $(awk -v a="${after[$i]}" -v b="${before[$i]}" -v t="$TICKS" 'BEGIN { print (a - b) / t }')"
  done
  echo "{$out}"
}

# The client's (cairn bench or fio) own CPU seconds go to $TMP/client.time.
timed() { /usr/bin/time -f '%U %S' -o "$TMP/client.time" "$@"; }
client_cpu() { awk '{ print $1 + $2 }' "$TMP/client.time"; }

# One fio run, reduced to the fields `cairn bench --output json` prints.
run_fio() {
  local target=$1 pattern=$2 bs=$3 qd=$4 mode=() dir=write
  case $target in
    fio-direct) mode=(--direct=1) ;;
    # O_DIRECT|O_DSYNC: durable when acknowledged, with fdatasync semantics like Cairn's
    # journal (O_SYNC, --sync=1, also syncs timestamps; it measured the same here).
    fio-sync) mode=(--direct=1 --sync=dsync) ;;
    fio-buffered) mode=(--direct=0) ;;          # page cache, where Cairn's nodes read from
  esac
  [[ $pattern == *read ]] && dir=read
  timed fio --name=plain --filename="$PLAIN" --size="$SIZE_BYTES" --rw="$(fio_rw "$pattern")" --bs="$(to_bytes "$bs")" \
      --iodepth="$qd" --ioengine=libaio "${mode[@]}" --time_based --runtime="$SECONDS_PER_RUN" \
      --lat_percentiles=1 --output-format=json >"$TMP/fio.json"
  jq -c --arg d "$dir" '.jobs[0] as $j | $j[$d] as $r | {ops: $r.total_ios, iops: $r.iops,
      mibPerSecond: ($r.bw_bytes / 1048576), seconds: ($j.job_runtime / 1000),
      p50us: ($r.lat_ns.percentile["50.000000"] / 1000), p99us: ($r.lat_ns.percentile["99.000000"] / 1000)}' "$TMP/fio.json"
}

# Runs one measurement and prints one JSON line: the result plus CPU and disk counters.
measure() {
  local target=$1 pattern=$2 bs=$3 qd=$4 rep=$5 raw before_daemons before_disk
  before_daemons=$(daemon_ticks); before_disk=$(disk_sectors_written)
  case $target in
    rf1|rf3)
      raw=$(timed "$CAIRN" bench "bench-$target" --pattern "$pattern" --block-size "$bs" --queue-depth "$qd" \
        --duration "${SECONDS_PER_RUN}s" --output json) ;;
    fio-*) raw=$(run_fio "$target" "$pattern" "$bs" "$qd") ;;
  esac
  local daemons disk_bytes
  daemons=$(daemon_cpu_json "$before_daemons" "$(daemon_ticks)")
  disk_bytes=$(( ($(disk_sectors_written) - before_disk) * 512 ))
  jq -c -n --argjson r "$raw" --arg target "$target" --arg pattern "$pattern" --arg bs "$bs" \
    --argjson qd "$qd" --argjson rep "$rep" --argjson daemons "$daemons" \
    --argjson client "$(client_cpu)" --argjson disk "$disk_bytes" \
    '{target: $target, pattern: $pattern, bs: $bs, qd: $qd, rep: $rep, ops: $r.ops, iops: $r.iops,
      mibPerSecond: $r.mibPerSecond, seconds: $r.seconds, p50us: $r.p50us, p99us: $r.p99us,
      clientCPU: $client, daemonCPU: $daemons, diskWriteBytes: $disk}'
}

# ---- the runs -------------------------------------------------------------------------
RESULTS="$TMP/results.jsonl"
: >"$RESULTS"
total=0
for c in "${CASES[@]}"; do [[ -z "$ONLY" || "${c// /-}" == *"$ONLY"* ]] && total=$((total + 1)); done
n=0
for c in "${CASES[@]}"; do
  read -r pattern bs qd <<<"$c"
  [[ -z "$ONLY" || "${c// /-}" == *"$ONLY"* ]] || continue
  n=$((n + 1))
  baseline=fio-sync; [[ $pattern == *read ]] && baseline=fio-buffered
  for rep in $(seq 1 "$REPEAT"); do
    # Interleaved, and the order rotates each repetition so no target always runs first.
    targets=(rf1 rf3 fio-direct "$baseline")
    shift_by=$(( (rep - 1) % ${#targets[@]} ))
    targets=("${targets[@]:shift_by}" "${targets[@]:0:shift_by}")
    for t in "${targets[@]}"; do
      log "case $n/$total $pattern $bs QD$qd, run $rep/$REPEAT: $t"
      line=$(measure "$t" "$pattern" "$bs" "$qd" "$rep")
      echo "$line" >>"$RESULTS"
      log "  $(jq -r '"\(.iops | floor) IOPS, \(.mibPerSecond * 10 | floor / 10) MiB/s, p50 \(.p50us | floor) us, p99 \(.p99us | floor) us"' <<<"$line")"
    done
  done
done

# ---- the report -------------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
cp "$RESULTS" "$HERE/last-results.jsonl"
python3 "$HERE/report.py" --results "$RESULTS" --out "$OUT" --notes "$HERE/notes.md" \
  --command "BENCH_SECONDS=$SECONDS_PER_RUN BENCH_REPEAT=$REPEAT BENCH_SIZE=$SIZE tools/bench/run.sh" \
  --size "$SIZE" --seconds "$SECONDS_PER_RUN" --repeat "$REPEAT" --disk "$DISK" --commit "$COMMIT"
log "wrote $OUT (raw results in tools/bench/last-results.jsonl)"
