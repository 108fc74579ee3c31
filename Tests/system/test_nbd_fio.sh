#!/usr/bin/env bash
# fio through the NBD gateway (ioengine=nbd), two jobs on two connections at once
# (multi-conn): random trims each followed by a write of the same block (queue depth 1:
# fio sends the pair concurrently at higher depths, which NBD does not order), and random
# writes at queue depth 16; everything verified with crc32c, zero errors allowed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 3
"$CAIRN" volume create f1 --size 256MiB >/dev/null
log "fio randtrimwrite + randwrite, verified"
nbd_fio "$(nbd_uri f1)" "$T/fio.txt"
log "PASS"
