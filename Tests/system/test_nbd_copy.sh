#!/usr/bin/env bash
# A 256 MiB random image through the NBD gateway: nbdcopy in and out with equal hashes,
# then qemu-img convert into a second export and qemu-img compare against nbd://.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/nbd_lib.sh"
start_nbd_cluster 3
"$CAIRN" volume create c1 --size 256MiB >/dev/null
"$CAIRN" volume create c2 --size 256MiB >/dev/null
head -c 256M /dev/urandom > "$T/in.img"
want=$(sha256sum < "$T/in.img" | cut -d' ' -f1)

log "nbdcopy in"
nbdcopy "$T/in.img" "$(nbd_uri c1)"
log "nbdcopy out"
nbdcopy "$(nbd_uri c1)" "$T/out.img"
got=$(sha256sum < "$T/out.img" | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "nbdcopy round trip changed the image: $want -> $got"

log "qemu-img convert into c2 and compare"
qemu-img convert -n -f raw -O raw "$T/in.img" "$(nbd_uri c2)"
qemu-img compare -f raw -F raw "$T/in.img" "$(nbd_uri c2)" || fail "qemu-img compare found a difference"
qemu-img compare -F raw -f raw "$(nbd_uri c1)" "$(nbd_uri c2)" || fail "c1 and c2 differ"
log "PASS"
