# Helpers of the NBD system tests; source after lib.sh. The gateway of `cairn local up`
# listens on $NBD_PORT (lib.sh picks it from the test's own range) and on DIR/run/nbd.sock.
PY=/usr/bin/python3   # Debian's python with python3-libnbd (the first python3 on PATH lacks it)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

start_nbd_cluster() {  # start_nbd_cluster NODES [extra local-up flags]
    local nodes=$1; shift
    start_cluster "$nodes" "$@"
    grep -q "nbd://127.0.0.1:$NBD_PORT" "$T/local-up.log" || { cat "$T/local-up.log"; fail "the NBD gateway did not start"; }
}
nbd_uri() { echo "nbd://127.0.0.1:$NBD_PORT/$1"; }
nbd_socket() { echo "$T/data/run/nbd.sock"; }

# nbd_fio URI OUTPUT [extra fio flags]: the verified trim+write workload; fails on any error.
nbd_fio() {
    local uri=$1 out=$2; shift 2
    fio --ioengine=nbd --uri="$uri" --bs=64k --verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 "$@" \
        --name=trims --rw=randtrimwrite --iodepth=1 --offset=0 --size=64M \
        --name=writes --rw=randwrite --iodepth=16 --offset=128M --size=128M \
        --output="$out" || { cat "$out"; fail "fio failed"; }
    grep -E "err=|issued rwts" "$out"
    [ "$(grep -c "err= 0" "$out")" -eq 2 ] || { cat "$out"; fail "fio reported errors"; }
}
