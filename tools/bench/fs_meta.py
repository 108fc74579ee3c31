# The metadata part of tools/bench/fs: create, stat and unlink N empty files in one
# directory (flat) or spread over 100 directories (tree), each phase timed. Prints one
# JSON object per phase: {"layout", "phase", "files", "seconds", "ops_per_second"}.
import json, os, sys, time

root, files, layout = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = os.path.join(root, f"meta-{layout}")
os.mkdir(base)
dirs = [base] if layout == "flat" else [os.path.join(base, f"d{i:03}") for i in range(100)]
if layout != "flat":
    for d in dirs: os.mkdir(d)
paths = [os.path.join(dirs[i % len(dirs)], f"f{i:06}") for i in range(files)]

def phase(name, op):
    start = time.monotonic()
    for p in paths: op(p)
    took = time.monotonic() - start
    print(json.dumps({"layout": layout, "phase": name, "files": files, "seconds": round(took, 3),
                      "ops_per_second": round(files / took, 1)}), flush=True)

phase("create", lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)))
phase("stat", os.stat)
phase("unlink", os.unlink)
for d in dirs:
    if d != base: os.rmdir(d)
os.rmdir(base)
