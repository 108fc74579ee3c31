#!/usr/bin/env python3
"""Randomized filesystem operations applied to a Cairn FUSE mount and to a reference
directory on the local disk: each operation must succeed on both or fail on both with
the same errno, and what it touched is compared (type, permission bits, size, link
count, content, symlink target, user xattrs) after every step; the whole trees are
compared every --full-every steps and at the end.

With more mount directories (mounts of the same filesystem by other daemons), step i
is applied through mount i mod n and what it touched is compared through every mount.

usage: fs_random.py SEED OPS MOUNT_DIR REFERENCE_DIR [MOUNT_DIR...]
       fs_random.py --compare MOUNT_DIR REFERENCE_DIR
"""
import errno
import os
import random
import stat
import sys

NAMES = ["a", "b", "c", "d", "e", "f", "long-" + "x" * 40, "sp ace", "ünï"]
DEPTH_MAX = 3


def describe(root, rel):
    p = os.path.join(root, rel)
    st = os.lstat(p)
    d = {"type": stat.S_IFMT(st.st_mode), "perm": stat.S_IMODE(st.st_mode), "nlink": st.st_nlink}
    if stat.S_ISREG(st.st_mode):
        d["size"] = st.st_size
        with open(p, "rb") as f:
            d["data"] = f.read()
    elif stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(p)
    elif stat.S_ISDIR(st.st_mode):
        d["entries"] = sorted(os.listdir(p))
    if not stat.S_ISLNK(st.st_mode):
        d["xattrs"] = {k: os.getxattr(p, k) for k in sorted(os.listxattr(p)) if k.startswith("user.")}
    return d


def compare(mount, ref, rel, step):
    def get(root):
        try:
            return describe(root, rel)
        except FileNotFoundError:
            return None
    a, b = get(mount), get(ref)
    if a != b:
        short = lambda d: None if d is None else {k: (v if k != "data" else (len(v), v[:32])) for k, v in d.items()}
        sys.exit(f"step {step}: '{rel}' differs\n  mount:     {short(a)}\n  reference: {short(b)}")


def walk(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def compare_all(mount, ref, step):
    a, b = walk(mount), walk(ref)
    if a != b:
        sys.exit(f"step {step}: trees differ\n  only on the mount: {sorted(set(a) - set(b))}\n"
                 f"  only in the reference: {sorted(set(b) - set(a))}")
    for rel in [""] + a:
        if rel:
            compare(mount, ref, rel, step)


def pick_path(rng, ref, want=None):
    """A random existing path (of a kind if asked) or a new name in an existing directory."""
    paths = walk(ref)
    dirs = [""] + [p for p in paths if os.path.isdir(os.path.join(ref, p)) and not os.path.islink(os.path.join(ref, p))]
    files = [p for p in paths if os.path.isfile(os.path.join(ref, p)) and not os.path.islink(os.path.join(ref, p))]
    if want == "file" and files:
        return rng.choice(files)
    if want == "dir" and len(dirs) > 1:
        return rng.choice(dirs[1:])
    if want == "any" and paths:
        return rng.choice(paths)
    parent = rng.choice([d for d in dirs if d.count("/") < DEPTH_MAX])
    return os.path.join(parent, rng.choice(NAMES))


def make_op(rng, ref):
    kind = rng.choices(
        ["write", "append", "truncate", "rename", "link", "unlink", "mkdir", "rmdir", "chmod", "setxattr",
         "removexattr", "symlink", "create"],
        weights=[20, 5, 8, 10, 5, 8, 8, 5, 5, 5, 3, 3, 8])[0]
    if kind in ("write", "append", "truncate", "link", "unlink", "chmod", "setxattr", "removexattr"):
        path = pick_path(rng, ref, "file" if kind not in ("chmod", "setxattr", "removexattr") else rng.choice(["file", "dir"]))
    elif kind == "rmdir":
        path = pick_path(rng, ref, "dir")
    elif kind == "rename":
        path = pick_path(rng, ref, "any")
    else:
        path = pick_path(rng, ref)
    op = {"kind": kind, "path": path}
    if kind in ("write", "create"):
        op["offset"] = rng.choice([0, 0, rng.randrange(0, 70000), rng.randrange(0, 5_000_000)])
        op["length"] = rng.choice([1, 100, 4096, rng.randrange(1, 200_000)])
        op["byte"] = rng.randrange(256)
    elif kind == "append":
        op["length"] = rng.randrange(1, 20_000)
        op["byte"] = rng.randrange(256)
    elif kind == "truncate":
        op["size"] = rng.choice([0, rng.randrange(0, 100_000), rng.randrange(0, 3_000_000)])
    elif kind in ("rename", "link", "symlink"):
        op["to"] = pick_path(rng, ref, rng.choice([None, None, "any"]))
        op["noreplace"] = False
    elif kind == "chmod":
        op["mode"] = rng.choice([0o644, 0o600, 0o755, 0o700, 0o4755, 0o2750, 0o1777])
    elif kind == "setxattr":
        op["name"] = "user." + rng.choice(["x", "y", "z"])
        op["value"] = bytes([rng.randrange(256)]) * rng.randrange(0, 300)
    elif kind == "removexattr":
        op["name"] = "user." + rng.choice(["x", "y", "z"])
    return op


def apply(root, op):
    """Applies op under root; returns None or the errno it failed with."""
    p = os.path.join(root, op["path"])
    k = op["kind"]
    try:
        if k in ("write", "create"):
            fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                data = bytes([op["byte"]]) * op["length"]
                n = os.pwrite(fd, data, op["offset"])
                assert n == len(data), f"short write {n}"
            finally:
                os.close(fd)
        elif k == "append":
            fd = os.open(p, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, bytes([op["byte"]]) * op["length"])
            finally:
                os.close(fd)
        elif k == "truncate":
            os.truncate(p, op["size"])
        elif k == "rename":
            os.rename(p, os.path.join(root, op["to"]))
        elif k == "link":
            os.link(p, os.path.join(root, op["to"]))
        elif k == "symlink":
            os.symlink("target-" + os.path.basename(op["to"]), p)
        elif k == "unlink":
            os.unlink(p)
        elif k == "mkdir":
            os.mkdir(p, 0o755)
        elif k == "rmdir":
            os.rmdir(p)
        elif k == "chmod":
            os.chmod(p, op["mode"])
        elif k == "setxattr":
            os.setxattr(p, op["name"], op["value"])
        elif k == "removexattr":
            os.removexattr(p, op["name"])
        return None
    except OSError as e:
        return e.errno


def touched(op):
    out = {op["path"], os.path.dirname(op["path"])}
    if "to" in op:
        out |= {op["to"], os.path.dirname(op["to"])}
    return sorted(out)


def main():
    if sys.argv[1] == "--compare":
        compare_all(sys.argv[2], sys.argv[3], "final")
        print("trees are identical")
        return
    seed, ops, ref = int(sys.argv[1]), int(sys.argv[2]), sys.argv[4]
    mounts = [sys.argv[3]] + sys.argv[5:]
    full_every = int(os.environ.get("FULL_EVERY", "100"))
    rng = random.Random(seed)
    counts = {}
    for step in range(1, ops + 1):
        op = make_op(rng, ref)
        want = apply(ref, op)
        got = apply(mounts[step % len(mounts)], op)
        if want != got:
            sys.exit(f"step {step}: {op} -> reference {errno.errorcode.get(want, want)}, mount {errno.errorcode.get(got, got)}")
        counts[op["kind"] + ("" if want is None else "!")] = counts.get(op["kind"] + ("" if want is None else "!"), 0) + 1
        for rel in touched(op):
            if rel:
                for mount in mounts:
                    compare(mount, ref, rel, step)
        if step % full_every == 0:
            compare_all(mounts[0], ref, step)
    for mount in mounts:
        compare_all(mount, ref, ops)
    print(f"seed {seed}: {ops} operations through {len(mounts)} mount(s), identical after each; " +
          ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
