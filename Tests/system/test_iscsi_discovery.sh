#!/usr/bin/env bash
# iSCSI discovery and identity with real libiscsi clients: iscsi-ls lists every block
# volume as a target (and no filesystem volume), iscsi-inq reads the standard INQUIRY data
# and every VPD page, iscsi-readcapacity16 reports the volume's size, and a login to a
# target that does not exist is refused.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/iscsi_lib.sh"

start_iscsi_cluster 3
"$CAIRN" volume create disk1 --size 64MiB >/dev/null
"$CAIRN" volume create disk2 --size 128MiB --replicas 2 --min-replicas 1 >/dev/null
"$CAIRN" volume create shared --size 64MiB --kind filesystem >/dev/null

log "iscsi-ls lists the block volumes"
out=$(iscsi-ls "iscsi://127.0.0.1:$ISCSI_PORT")
echo "$out"
grep -q "Target:${IQN_PREFIX}disk1 Portal:127.0.0.1:$ISCSI_PORT,1" <<< "$out" || fail "disk1 not discovered"
grep -q "Target:${IQN_PREFIX}disk2 " <<< "$out" || fail "disk2 not discovered"
grep -q "shared" <<< "$out" && fail "a filesystem volume was listed as a target"

log "iscsi-ls -s shows LUN 0 of each target"
out=$(iscsi-ls -s "iscsi://127.0.0.1:$ISCSI_PORT")
echo "$out"
grep -A3 "${IQN_PREFIX}disk1" <<< "$out" | grep "Lun:0 .*Type:DIRECT_ACCESS" >/dev/null || fail "disk1 LUN 0 wrong: $out"

log "iscsi-inq: standard data and VPD pages"
std=$(iscsi-inq "$(iscsi_url disk1)")
echo "$std"
grep -q "Vendor:CAIRN" <<< "$std" || fail "vendor"
grep -q "Product:VOLUME" <<< "$std" || fail "product"
pages=$(iscsi-inq -e 1 -c 0 "$(iscsi_url disk1)")
echo "$pages"
for p in 0x00 0x80 0x83 0xb0 0xb1 0xb2; do
    grep -qi "$p" <<< "$pages" || fail "VPD page $p not listed as supported"
done
serial=$(iscsi-inq -e 1 -c 128 "$(iscsi_url disk1)")
grep -Eq "Unit Serial Number:\[[0-9a-f]{16}\]" <<< "$serial" || fail "serial: $serial"
ident=$(iscsi-inq -e 1 -c 131 "$(iscsi_url disk1)")
echo "$ident" | grep -a "Designator Type"
grep -qa "Designator Type:(3) NAA" <<< "$ident" || fail "no NAA designator"
grep -qa "${IQN_PREFIX}disk1" <<< "$ident" || fail "no SCSI name string with the target name"
limits=$(iscsi-inq -e 1 -c 176 "$(iscsi_url disk1)")
echo "$limits"
grep -qi "maximum transfer length:65536" <<< "$limits" || fail "block limits: $limits"
iscsi-inq -e 1 -c 177 "$(iscsi_url disk1)" | grep -qi "rotation" || fail "block device characteristics"
lbp=$(iscsi-inq -e 1 -c 178 "$(iscsi_url disk1)")
echo "$lbp"
grep -q "lbpu:1" <<< "$lbp" || fail "logical block provisioning: $lbp"

log "READ CAPACITY(16) reports the size"
cap=$(iscsi-readcapacity16 "$(iscsi_url disk2)")
echo "$cap"
grep -q "LOGICAL BLOCK LENGTH IN BYTES:512" <<< "$cap" || fail "block length"
grep -q "Total size:134217728" <<< "$cap" || fail "size of 128 MiB"

log "an unknown target is refused"
if out=$(iscsi-inq "$(iscsi_url nosuch)" 2>&1); then fail "login to a missing target worked: $out"; fi
echo "$out"
log "PASS"
