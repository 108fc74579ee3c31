# Shared shell helpers of the benchmark scripts (tools/bench/run.sh, tools/bench/nbd).
# Source it from a script running with `set -euo pipefail`; it only defines functions.
# The functions that touch a cluster use the caller's globals: CAIRN (the binary, set by
# build_cairn), CAIRN_CONFIG (exported) and LOCAL_PID (set by start_local_cluster).

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
require_tools() { local t; for t in "$@"; do command -v "$t" >/dev/null || die "$t is not installed"; done; }
port_in_use() { ss -Hltn "sport = :$1" | grep -q .; }

# build_cairn ROOT: `swift build -c release --product cairn` (with --scratch-path
# $BENCH_SCRATCH if set); sets CAIRN to the binary and COMMIT to what was built (the commit,
# and whether the working tree differed from it under Sources/).
# A CAIRN already set to an executable (e.g. a worktree's `-enable-testing` build) is used
# as it is, without building.
build_cairn() {
  local root=$1 scratch_args=()
  if [[ -n "${CAIRN:-}" && -x "${CAIRN:-}" ]]; then
    log "using CAIRN=$CAIRN (not building)"
    COMMIT="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    return 0
  fi
  [[ -n "${BENCH_SCRATCH:-}" ]] && scratch_args=(--scratch-path "$BENCH_SCRATCH")
  log "building cairn (release)"
  (cd "$root" && swift build -c release --product cairn "${scratch_args[@]}" >&2)
  CAIRN="$(cd "$root" && swift build -c release --product cairn "${scratch_args[@]}" --show-bin-path)/cairn"
  [[ -x "$CAIRN" ]] || die "no cairn binary at $CAIRN"
  COMMIT="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  [[ -n "$(git -C "$root" status --porcelain --untracked-files=no -- Sources Package.swift 2>/dev/null)" ]] &&
    COMMIT="$COMMIT with uncommitted changes under Sources/"
  return 0
}

# start_local_cluster TMP NODES MANAGER_PORT STORAGE_PORT [extra local-up flags]: starts
# `cairn local up --dir TMP/data` in the background (LOCAL_PID, log in TMP/local-up.log)
# and waits until all NODES storage nodes are up.
start_local_cluster() {
  local tmp=$1 nodes=$2 manager_port=$3 storage_port=$4 i; shift 4
  "$CAIRN" local up --dir "$tmp/data" --nodes "$nodes" --manager-port "$manager_port" \
    --storage-port "$storage_port" --fs-mount none "$@" --config "$CAIRN_CONFIG" >"$tmp/local-up.log" 2>&1 &
  LOCAL_PID=$!
  for i in $(seq 1 600); do
    kill -0 "$LOCAL_PID" 2>/dev/null || { cat "$tmp/local-up.log" >&2; die "cairn local up exited"; }
    [[ "$(nodes_up)" == "$nodes" ]] && break
    [[ $i == 600 ]] && die "the cluster did not come up in 60 s"
    sleep 0.1
  done
  log "cluster up: $nodes storage nodes"
}
nodes_up() { "$CAIRN" status --output json 2>/dev/null | jq '[.nodes[] | select(.state == "up")] | length' 2>/dev/null || echo 0; }

# stop_local_cluster TMP: stops the `cairn local up` of LOCAL_PID (SIGINT, then SIGKILL
# after 60 s), then kills daemons left behind by a `local up` that died: only ours,
# recognised by their pid file and by TMP on their command line.
stop_local_cluster() {
  local tmp=$1 f pid
  if [[ -n "$LOCAL_PID" ]] && kill -0 "$LOCAL_PID" 2>/dev/null; then
    log "stopping the cluster (pid $LOCAL_PID)"
    kill -INT "$LOCAL_PID"
    for _ in $(seq 1 600); do kill -0 "$LOCAL_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$LOCAL_PID" 2>/dev/null && kill -KILL "$LOCAL_PID"
    wait "$LOCAL_PID" 2>/dev/null || true
  fi
  for f in "$tmp"/data/run/*.pid; do
    [[ -f "$f" ]] || continue
    pid=$(cat "$f")
    if grep -qa "$tmp" "/proc/$pid/cmdline" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  done
  return 0
}

# CPU ticks (user + system) of a process; fields 14 and 15 of /proc/PID/stat, counted
# after the command name because it may contain spaces.
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
# Sectors written to device $1 (512-byte units, whatever the device's sector size).
# printf %.0f: past 2^31 sectors awk would print "n + 0" in exponent notation, which bash cannot add.
disk_sectors_written_on() { awk -v d="$1" '$3 == d { n = $10 } END { printf "%.0f\n", n + 0 }' /proc/diskstats; }
# fio reads "1MiB" as 10^6 bytes (its unit prefixes are inverted), so it gets plain bytes.
to_bytes() { case $1 in *KiB) echo $(( ${1%KiB} << 10 )) ;; *MiB) echo $(( ${1%MiB} << 20 )) ;; *) echo "$1" ;; esac; }
fio_rw() { case $1 in seqwrite) echo write ;; seqread) echo read ;; randwrite) echo randwrite ;; randread) echo randread ;; esac; }
