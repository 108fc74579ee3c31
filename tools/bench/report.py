#!/usr/bin/env python3
"""Turns the JSON lines of tools/bench/run.sh into docs/benchmarks.md.

Every figure is the median over the repetitions of one (case, target); the spread column
shows the lowest and highest IOPS seen, because this machine drifts between runs.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
from collections import defaultdict

CASES = [
    ("seqwrite", "1MiB", 1), ("seqwrite", "1MiB", 32), ("seqread", "1MiB", 1), ("seqread", "1MiB", 32),
    ("randwrite", "4KiB", 1), ("randwrite", "4KiB", 32), ("randread", "4KiB", 1), ("randread", "4KiB", 32),
]
LABELS = {
    "rf1": "Cairn RF1",
    "rf3": "Cairn RF3",
    "fio-direct": "fio plain (O_DIRECT)",
    "fio-sync": "fio plain (O_DIRECT + O_DSYNC)",
    "fio-buffered": "fio plain (buffered)",
}
# The baseline that does what Cairn does: writes durable when acknowledged; reads served
# by the page cache (the storage nodes read chunk files through it, and the data fits).
COMPARABLE = {"write": "fio-sync", "read": "fio-buffered"}
# The aims stated in the issue.
SEQ_RATIO_AIM = 0.8
RF3_RANDWRITE_RATIO_AIM = 0.5


def is_write(pattern):
    return pattern.endswith("write")


def comparable(pattern):
    return COMPARABLE["write" if is_write(pattern) else "read"]


def case_name(case):
    pattern, bs, qd = case
    return f"{pattern} {bs} QD{qd}"


def load(path):
    runs = defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                runs[(r["pattern"], r["bs"], r["qd"], r["target"])].append(r)
    return runs


def median_of(rs, field):
    return statistics.median(field(r) for r in rs)


def summarize(rs):
    nodes = lambda r: sum(v for k, v in r["daemonCPU"].items() if k.startswith("node"))
    return {
        "iops": median_of(rs, lambda r: r["iops"]),
        "mib": median_of(rs, lambda r: r["mibPerSecond"]),
        "p50": median_of(rs, lambda r: r["p50us"]),
        "p99": median_of(rs, lambda r: r["p99us"]),
        "low": min(r["iops"] for r in rs),
        "high": max(r["iops"] for r in rs),
        "n": len(rs),
        "clientCores": median_of(rs, lambda r: r["clientCPU"] / r["seconds"]),
        "nodeCores": median_of(rs, lambda r: nodes(r) / r["seconds"]),
        "managerCores": median_of(rs, lambda r: r["daemonCPU"].get("manager", 0) / r["seconds"]),
        "cpuPerOpUs": median_of(rs, lambda r: (r["clientCPU"] + nodes(r)) / max(1, r["ops"]) * 1e6),
        "nodeCpuPerOpUs": median_of(rs, lambda r: nodes(r) / max(1, r["ops"]) * 1e6),
        "diskPerByte": median_of(rs, lambda r: r["diskWriteBytes"] / max(1, r["ops"] * block_bytes(r["bs"]))),
    }


def block_bytes(bs):
    return int(bs[:-3]) * {"KiB": 1 << 10, "MiB": 1 << 20}[bs[-3:]]


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_ratio(x):
    return "-" if x is None else f"{x:.2f}x"


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "?"


def machine(args):
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("awk '/MemTotal/ { printf \"%.1f GiB\", $2 / 1048576 }' /proc/meminfo")
    cache = sh(f"cat /sys/block/{args.disk}/queue/write_cache 2>/dev/null")
    fs = sh("findmnt -n -o FSTYPE,OPTIONS --target /tmp")
    return [
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M %Z').strip()}",
        f"- CPUs (nproc): {os.cpu_count()} ({cpu})",
        f"- memory: {mem}",
        f"- kernel: {platform.release()}",
        f"- disk: /dev/{args.disk} (write cache: {cache or '?'}), /tmp on {fs}",
        f"- fio: {sh('fio --version')}; Swift: {sh('swift --version 2>&1 | head -1')}",
        f"- Cairn built from: {args.commit}",
        f"- load average at the end of the run (1, 5, 15 min): {' '.join(sh('cat /proc/loadavg').split()[:3])}"
        " (the machine is shared: other builds and tests may have run meanwhile)",
    ]


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


END_MARKER = "<!-- end of the tools/bench/run.sh report: sections below are kept when it is regenerated -->"


def main():
    p = argparse.ArgumentParser()
    for name in ["results", "out", "notes", "command", "size", "seconds", "repeat", "disk", "commit"]:
        p.add_argument("--" + name, required=name not in ("notes", "commit"))
    args = p.parse_args()
    args.commit = args.commit or "unknown"
    runs = load(args.results)
    s = {key: summarize(rs) for key, rs in runs.items()}
    get = lambda case, target: s.get(case + (target,))
    cases = [c for c in CASES if get(c, "rf1") or get(c, "rf3")]

    md = ["# Benchmarks", ""]
    md += [
        "Generated by `tools/bench/run.sh` (do not edit by hand; re-run it). Cairn is measured with",
        "`cairn bench`, which drives one volume through the volume client, against fio on a plain",
        "file on the same disk, in the same run. Targets are interleaved, each measurement is",
        f"repeated {args.repeat} times for {args.seconds} s, and the tables quote medians: this",
        "machine drifts by up to 2x between runs minutes apart, so compare the ratios more than",
        "the absolute numbers.",
        "",
        "## Machine", "",
    ] + machine(args) + [
        "",
        "## Command", "",
        "```",
        args.command,
        "```",
        "",
        f"It starts `cairn local up --nodes 3 --chunk-size 64MiB` (journal 256 MiB per node, the `local up` default) on loopback in",
        f"a temporary directory under /tmp, creates `bench-rf1` (1 replica) and `bench-rf3` (3 replicas)",
        f"of {args.size}, fills both from a random image with `cairn volume import`, and runs fio on that",
        "image. All three storage nodes, the manager, the benchmark client and fio share the same 2",
        "cores and the same disk.",
        "",
        "## Targets", "",
        "- **Cairn RF1 / RF3**: `cairn bench VOLUME --pattern P --block-size B --queue-depth Q`. A write",
        "  is acknowledged only when every replica has it durable (journal `fdatasync`, group commit).",
        "- **fio plain (O_DIRECT)**: `--ioengine=libaio --direct=1`. The disk's own speed; writes are",
        "  *not* durable when acknowledged (the disk has a volatile write cache), so this is an upper",
        "  bound, not a fair write peer.",
        "- **fio plain (O_DIRECT + O_DSYNC)**: `--direct=1 --sync=dsync`. Durable when acknowledged,",
        "  with the semantics of `fdatasync` that Cairn's journal uses: **the comparable baseline for",
        "  writes**. (`--sync=1`, O_SYNC, also syncs timestamps; a spot check measured the same.)",
        "- **fio plain (buffered)**: `--direct=0`, reads only. Cairn's storage nodes read chunk files",
        "  through the page cache and the whole data set fits in memory, so after the fill Cairn reads",
        "  never touch the disk: **the comparable baseline for reads** is the page cache, not O_DIRECT.",
        "  (libaio is synchronous on buffered files, so its queue depth is effectively 1.)",
        "",
    ]

    md += ["## Aims", ""]
    rows = []
    seq = [c for c in cases if c[0].startswith("seq")]
    for c in seq:
        base = comparable(c[0])
        r = ratio(get(c, "rf1") and get(c, "rf1")["mib"], get(c, base) and get(c, base)["mib"])
        rd = ratio(get(c, "rf1") and get(c, "rf1")["mib"], get(c, "fio-direct") and get(c, "fio-direct")["mib"])
        rows.append([f"RF=1 sequential >= {SEQ_RATIO_AIM}x the plain file: {case_name(c)}",
                     f"{fmt_ratio(r)} of {LABELS[base]} ({fmt_ratio(rd)} of O_DIRECT)",
                     "-" if r is None else ("reached" if r >= SEQ_RATIO_AIM else "**not reached**")])
    c = ("randwrite", "4KiB", 32)
    if get(c, "rf1") and get(c, "rf3"):
        r = ratio(get(c, "rf3")["iops"], get(c, "rf1")["iops"])
        rows.append([f"RF=3 4 KiB random writes at QD32 >= {RF3_RANDWRITE_RATIO_AIM}x RF=1", fmt_ratio(r),
                     "reached" if r >= RF3_RANDWRITE_RATIO_AIM else "**not reached**"])
    md += table(["aim", "measured (median MiB/s or IOPS ratio)", "status"], rows) + [""]

    md += ["## Summary (median IOPS)", ""]
    rows = []
    for c in cases:
        base = comparable(c[0])
        v = {t: (get(c, t) or {}).get("iops") for t in ["rf1", "rf3", "fio-direct", base]}
        rows.append([case_name(c), fmt(v["rf1"]), fmt(v["rf3"]), fmt(v["fio-direct"]), f"{fmt(v[base])} ({base[4:]})",
                     fmt_ratio(ratio(v["rf1"], v[base])), fmt_ratio(ratio(v["rf1"], v["fio-direct"])),
                     fmt_ratio(ratio(v["rf3"], v["rf1"]))])
    md += table(["case", "RF1", "RF3", "plain O_DIRECT", "plain comparable", "RF1/plain comparable",
                 "RF1/plain O_DIRECT", "RF3/RF1"], rows) + [""]

    md += ["## Per case", ""]
    for c in cases:
        md += [f"### {case_name(c)}", ""]
        rows = []
        for t in ["rf1", "rf3", "fio-direct", comparable(c[0])]:
            x = get(c, t)
            if not x:
                continue
            rows.append([LABELS[t], fmt(x["iops"]), fmt(x["mib"], 1), fmt(x["p50"]), fmt(x["p99"]),
                         f"{fmt(x['low'])} - {fmt(x['high'])} ({x['n']} runs)"])
        md += table(["target", "IOPS", "MiB/s", "p50 us", "p99 us", "IOPS spread"], rows) + [""]
        rf1, rf3, base = get(c, "rf1"), get(c, "rf3"), get(c, comparable(c[0]))
        md += [f"RF1/plain comparable: {fmt_ratio(ratio(rf1 and rf1['iops'], base and base['iops']))}; "
               f"RF3/RF1: {fmt_ratio(ratio(rf3 and rf3['iops'], rf1 and rf1['iops']))}.", ""]

    md += [
        "## Where the time goes", "",
        "CPU is measured from `/proc/PID/stat` (user + system) of the manager and each storage node",
        "before and after every run, and with `/usr/bin/time` for the client (`cairn bench` or fio);",
        "\"cores\" is CPU seconds per second of the run, out of 2. Disk bytes are from",
        "`/proc/diskstats` (everything written to the device during the run, so the other targets'",
        "background work is included) divided by the bytes the client wrote.",
        "",
    ]
    rows = []
    for c in cases:
        for t in ["rf1", "rf3", "fio-direct", comparable(c[0])]:
            x = get(c, t)
            if not x:
                continue
            rows.append([case_name(c), LABELS[t], f"{x['clientCores']:.2f}", f"{x['nodeCores']:.2f}",
                         f"{x['managerCores']:.2f}", fmt(x["cpuPerOpUs"]), fmt(x["nodeCpuPerOpUs"]),
                         f"{x['diskPerByte']:.1f}" if is_write(c[0]) else "-"])
    md += table(["case", "target", "client cores", "storage nodes cores", "manager cores",
                 "CPU us per op (client + nodes)", "nodes CPU us per op", "disk bytes written per byte"], rows) + [""]
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            md += [f.read().rstrip(), ""]

    # Other scripts' sections (iSCSI, fs, attach) follow this report in the same file, after
    # END_MARKER: keep them.
    tail = ""
    if os.path.exists(args.out):
        with open(args.out) as f:
            old = f.read()
        if END_MARKER in old:
            tail = old[old.index(END_MARKER) + len(END_MARKER):]
    md += [END_MARKER]
    with open(args.out, "w") as f:
        f.write("\n".join(md) + tail)


if __name__ == "__main__":
    main()
