# POSIX (fcntl) and BSD (flock) locks between two mounts of one filesystem, from two
# processes: a lock taken through mount A blocks a conflicting one through mount B
# (non-blocking: EAGAIN/EACCES; F_GETLK names the holder; blocking: waits until the
# holder closes the file), and ranges that do not overlap do not conflict.
import errno, fcntl, os, struct, sys, threading, time

a, b = sys.argv[1], sys.argv[2]
with open(os.path.join(a, "locked"), "wb") as f:
    f.write(b"x" * 100)
pa, pb = os.path.join(a, "locked"), os.path.join(b, "locked")

def holder(take):
    """Forks a process that takes a lock through mount A and holds it until told."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        fd = os.open(pa, os.O_RDWR)
        take(fd)
        os.write(ready_w, b"1")
        os.read(go_r, 1)
        os.close(fd)  # closing drops the lock
        os.write(ready_w, b"2")
        os._exit(0)
    assert os.read(ready_r, 1) == b"1"
    def release():
        os.write(go_w, b"1")
        assert os.read(ready_r, 1) == b"2"
        os.waitpid(pid, 0)
    return pid, release

def refused(call):
    try:
        call()
    except OSError as e:
        assert e.errno in (errno.EAGAIN, errno.EACCES), e
        return True
    return False

def blocked_until(release, call):
    got = threading.Event()
    t = threading.Thread(target=lambda: (call(), got.set()))
    t.start()
    time.sleep(1.5)
    assert not got.is_set(), "a conflicting lock was granted while the other mount held it"
    release()
    assert got.wait(30), "the waiter never got the lock after the holder closed the file"
    t.join()

# POSIX: bytes 0-9 exclusive on A.
pid, release = holder(lambda fd: fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0))
fd = os.open(pb, os.O_RDWR)
assert refused(lambda: fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 5, 0)), "overlapping POSIX lock granted on B"
assert refused(lambda: fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB, 1, 9)), "shared lock over an exclusive one granted"
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 10)  # bytes 10-19: no conflict
q = struct.pack("hhqqi", fcntl.F_WRLCK, 0, 0, 0, 0)
l_type, _, l_start, l_len, l_pid = struct.unpack("hhqqi", fcntl.fcntl(fd, fcntl.F_GETLK, q))
assert l_type == fcntl.F_WRLCK and l_start == 0 and l_len == 10 and l_pid == pid, (l_type, l_start, l_len, l_pid, pid)
blocked_until(release, lambda: fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0))
os.close(fd)
print("POSIX locks: held across mounts, ranges, F_GETLK, blocking wait until close")

# flock: exclusive on A, shared locks coexist.
pid, release = holder(lambda fd: fcntl.flock(fd, fcntl.LOCK_EX))
fd = os.open(pb, os.O_RDONLY)
assert refused(lambda: fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)), "flock granted on B over A's exclusive one"
blocked_until(release, lambda: fcntl.flock(fd, fcntl.LOCK_SH))
pid, release = holder(lambda fd2: fcntl.flock(fd2, fcntl.LOCK_SH | fcntl.LOCK_NB))
release()
fcntl.flock(fd, fcntl.LOCK_UN)
os.close(fd)
print("flock: held across mounts, blocking wait until close")
