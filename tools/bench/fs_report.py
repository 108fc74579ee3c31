# Writes the fs section of docs/benchmarks.md from tools/bench/fs's results.
import json, sys

results, out, commit, files, size, secs, load_before, load_after = sys.argv[1:9]
rows = [json.loads(l) for l in open(results) if l.strip()]
targets = [t for t in ["ext4", "bindfs", "rf1", "rf3"] if any(r["target"] == t for r in rows)]

def val(target, key, **match):
    for r in rows:
        if r["target"] == target and all(r.get(k) == v for k, v in match.items()):
            return r[key]
    return None

def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"

lines = ["<!-- fs-bench start -->", "## Shared filesystem (tools/bench/fs)", "",
         f"Commit {commit}; one run on this 2-core VM, every target on the same ext4 disk; "
         f"load average {load_before} before, {load_after} after (other sessions were using the machine "
         "if these are well above 1). fio: psync engine, buffered I/O, writes end with fsync, "
         f"reads start with the file's page cache dropped; sequential cases move {size}, random ones run {secs} s "
         f"on a {size} file. Metadata: {files} files, one process, one operation at a time. "
         "Cairn: 3 storage nodes, manager (SQLite) and the mount on the same machine.", "",
         "| fio | " + " | ".join(targets) + " | rf1/ext4 | rf3/ext4 | rf1/bindfs |",
         "|---|" + "---|" * (len(targets) + 3)]
for case, key, unit in [("seqwrite-1MiB", "mib_per_second", "MiB/s"), ("seqread-1MiB", "mib_per_second", "MiB/s"),
                        ("randwrite-4KiB", "iops", "IOPS"), ("randread-4KiB", "iops", "IOPS")]:
    v = {t: val(t, key, case=case) for t in targets}
    lines.append(f"| {case} ({unit}) | " + " | ".join(str(v[t]) for t in targets) +
                 f" | {ratio(v.get('rf1'), v.get('ext4'))} | {ratio(v.get('rf3'), v.get('ext4'))} | {ratio(v.get('rf1'), v.get('bindfs'))} |")
lines += ["", "| metadata (ops/s) | " + " | ".join(targets) + " | rf1/bindfs | rf3/bindfs | rf1/ext4 |",
          "|---|" + "---|" * (len(targets) + 3)]
for layout in ["flat", "tree"]:
    for phase in ["create", "stat", "unlink"]:
        v = {t: val(t, "ops_per_second", layout=layout, phase=phase) for t in targets}
        lines.append(f"| {phase}, {layout} | " + " | ".join(str(v[t]) for t in targets) +
                     f" | {ratio(v.get('rf1'), v.get('bindfs'))} | {ratio(v.get('rf3'), v.get('bindfs'))} | {ratio(v.get('rf1'), v.get('ext4'))} |")
lines += ["", "Targets of issue 5: sequential throughput at RF=1 >= 0.7x ext4; metadata operations >= 0.5x the FUSE passthrough.",
          "<!-- fs-bench end -->"]
section = "\n".join(lines) + "\n"
try:
    doc = open(out).read()
except FileNotFoundError:
    doc = "# Benchmarks\n\n"
start, end = doc.find("<!-- fs-bench start -->"), doc.find("<!-- fs-bench end -->")
if start >= 0 and end > start:
    doc = doc[:start] + section + doc[end + len("<!-- fs-bench end -->\n"):]
else:
    doc = doc.rstrip("\n") + "\n\n" + section
open(out, "w").write(doc)
