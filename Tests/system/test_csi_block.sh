#!/usr/bin/env bash
# The CSI plugin with volumes attached as local block devices (CairnAttach; the fuse-loop
# method, which every host with FUSE and loop devices has): a raw block volume written
# with dd oflag=direct on one node id and read back on another; ext4 and xfs staged,
# never reformatted (a file survives unstage/restage, blkid's UUID stays), a second stage
# is a no-op; kill -9 of the plugin between calls; online expansion of mounted xfs and
# ext4 that df sees (ext4 needs CAP_SYS_RESOURCE, skipped with a note where the host
# withholds it); a snapshot and a clone holding the same data.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/csi_lib.sh"
start_cluster 3
start_plugin ctl controller-0 --controller
start_plugin na node-a --node
start_plugin nb node-b --node
P='"parameters":{"replicas":"2","attachMethod":"fuse-loop"}'

# stage_publish NODE VOLUME CAP: stage at $T/nNODE/VOLUME/staging, publish at .../target.
stage_publish() {
    local n=$1 v=$2 cap=$3 ctx
    ctx=$(json_get "$(csi ctl Controller.ControllerGetVolume '{"volume_id":"'$v'"}')" 'json.dumps(a["volume"].get("volume_context", {}))')
    csi ctl Controller.ControllerPublishVolume '{"volume_id":"'$v'","node_id":"node-'$n'","volume_capability":'"$cap"'}' >/dev/null
    csi n$n Node.NodeStageVolume '{"volume_id":"'$v'","staging_target_path":"'$T/n$n/$v'/staging","volume_capability":'"$cap"',"volume_context":'"$ctx"'}' >/dev/null
    csi n$n Node.NodePublishVolume '{"volume_id":"'$v'","staging_target_path":"'$T/n$n/$v'/staging","target_path":"'$T/n$n/$v'/target","volume_capability":'"$cap"',"volume_context":'"$ctx"'}' >/dev/null
}
# unpublish_unstage NODE VOLUME: the reverse, each call twice (idempotent).
unpublish_unstage() {
    local n=$1 v=$2
    for _ in 1 2; do csi n$n Node.NodeUnpublishVolume '{"volume_id":"'$v'","target_path":"'$T/n$n/$v'/target"}' >/dev/null; done
    for _ in 1 2; do csi n$n Node.NodeUnstageVolume '{"volume_id":"'$v'","staging_target_path":"'$T/n$n/$v'/staging"}' >/dev/null; done
    csi ctl Controller.ControllerUnpublishVolume '{"volume_id":"'$v'","node_id":"node-'$n'"}' >/dev/null
    grep -q " $T/n$n/$v/" /proc/self/mountinfo && fail "mounts of $v left on node $n"
    return 0
}

log "block RWO: dd oflag=direct on node a, read back on node b"
csi ctl Controller.CreateVolume '{"name":"pvc-blk","capacity_range":{"required_bytes":"67108864"},"volume_capabilities":['"$CAP_BLOCK"'],'"$P"'}' >/dev/null
stage_publish a pvc-blk "$CAP_BLOCK"
[ -b "$T/na/pvc-blk/target" ] || fail "the published target is not a block device"
head -c 4194304 /dev/urandom > "$T/pattern"
dd if="$T/pattern" of="$T/na/pvc-blk/target" bs=1M seek=3 oflag=direct conv=notrunc status=none
csi_expect FAILED_PRECONDITION ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-blk","node_id":"node-b","volume_capability":'"$CAP_BLOCK"'}'
stats=$(csi na Node.NodeGetVolumeStats '{"volume_id":"pvc-blk","volume_path":"'$T'/na/pvc-blk/target"}')
[ "$(json_get "$stats" 'a["usage"][0]["total"]')" = 67108864 ] || fail "block stats: $stats"
unpublish_unstage a pvc-blk
stage_publish b pvc-blk "$CAP_BLOCK"
dd if="$T/nb/pvc-blk/target" of="$T/readback" bs=1M skip=3 count=4 iflag=direct status=none
cmp "$T/pattern" "$T/readback" || fail "node b reads other bytes than node a wrote"
unpublish_unstage b pvc-blk

for fs in ext4 xfs; do
    log "filesystem RWO $fs: made once, never reformatted; a second stage is a no-op; kill -9 between calls"
    cap=$([ $fs = ext4 ] && echo "$CAP_RWO_EXT4" || echo "$CAP_RWO_XFS")
    csi ctl Controller.CreateVolume '{"name":"pvc-'$fs'","capacity_range":{"required_bytes":"402653184"},"volume_capabilities":['"$cap"'],'"$P"'}' >/dev/null
    stage_publish a pvc-$fs "$cap"
    dev=$(awk -v m="$T/na/pvc-$fs/staging" '$5 == m { print $(NF-1) }' /proc/self/mountinfo)
    [ "$(findmnt -n -o FSTYPE "$T/na/pvc-$fs/staging")" = $fs ] || fail "staging of pvc-$fs is not $fs"
    uuid=$(blkid -p -s UUID -o value "$dev")
    cp "$T/pattern" "$T/na/pvc-$fs/target/file"
    sync
    kill9_plugin na
    start_plugin na node-a --node
    stage_publish a pvc-$fs "$cap"
    [ "$(grep -c " $T/na/pvc-$fs/staging " /proc/self/mountinfo)" = 1 ] || fail "a repeated stage mounted $fs again"
    cmp "$T/pattern" "$T/na/pvc-$fs/target/file" || fail "the file differs after the restart"
    unpublish_unstage a pvc-$fs
    stage_publish a pvc-$fs "$cap"
    dev=$(awk -v m="$T/na/pvc-$fs/staging" '$5 == m { print $(NF-1) }' /proc/self/mountinfo)
    [ "$(blkid -p -s UUID -o value "$dev")" = "$uuid" ] || fail "$fs was made again on restage"
    cmp "$T/pattern" "$T/na/pvc-$fs/target/file" || fail "the file did not survive unstage and restage"
done

# expand_online FS: grow the mounted volume pvc-FS from 384 MiB to 768 MiB; df must follow.
expand_online() {
    local fs=$1 cap before after exp
    cap=$([ $fs = ext4 ] && echo "$CAP_RWO_EXT4" || echo "$CAP_RWO_XFS")
    before=$(df -B1 --output=size "$T/na/pvc-$fs/target" | tail -n 1)
    exp=$(csi ctl Controller.ControllerExpandVolume '{"volume_id":"pvc-'$fs'","capacity_range":{"required_bytes":"805306368"},"volume_capability":'"$cap"'}')
    [ "$(json_get "$exp" 'a.get("node_expansion_required", False)')" = True ] || fail "no node expansion asked: $exp"
    csi na Node.NodeExpandVolume '{"volume_id":"pvc-'$fs'","volume_path":"'$T'/na/pvc-'$fs'/target","staging_target_path":"'$T'/na/pvc-'$fs'/staging","capacity_range":{"required_bytes":"805306368"},"volume_capability":'"$cap"'}' >/dev/null
    after=$(df -B1 --output=size "$T/na/pvc-$fs/target" | tail -n 1)
    [ "$after" -gt $(( before + 300000000 )) ] || fail "df of $fs did not grow: $before -> $after"
    cmp "$T/pattern" "$T/na/pvc-$fs/target/file" || fail "the file changed during the expansion"
}
log "online expansion of mounted xfs: df grows"
expand_online xfs
unpublish_unstage a pvc-xfs
# The kernel resizes a mounted ext4 only for a process with CAP_SYS_RESOURCE.
if python3 -c 'import sys; e=int(open("/proc/self/status").read().split("CapEff:")[1].split()[0],16); sys.exit(0 if e>>24&1 else 1)'; then
    log "online expansion of mounted ext4: df grows"
    expand_online ext4
else
    log "SKIP online expansion of mounted ext4: this host gives no CAP_SYS_RESOURCE (resize2fs: permission denied)"
fi

log "snapshot -> new volume, and a clone: same data"
sync
unpublish_unstage a pvc-ext4
snap=$(csi ctl Controller.CreateSnapshot '{"name":"snap-ext4","source_volume_id":"pvc-ext4"}')
snap2=$(csi ctl Controller.CreateSnapshot '{"name":"snap-ext4","source_volume_id":"pvc-ext4"}')
[ "$snap" = "$snap2" ] || fail "a repeated CreateSnapshot answered differently"
sid=$(json_get "$snap" 'a["snapshot"]["snapshot_id"]')
[ "$(json_get "$snap" 'a["snapshot"]["ready_to_use"]')" = True ] || fail "snapshot not ready: $snap"
csi_expect ALREADY_EXISTS ctl Controller.CreateSnapshot '{"name":"snap-ext4","source_volume_id":"pvc-xfs"}'
list=$(csi ctl Controller.ListSnapshots '{"source_volume_id":"pvc-ext4"}')
[ "$(json_get "$list" '[e["snapshot"]["snapshot_id"] for e in a["entries"]]')" = "['$sid']" ] || fail "snapshot list: $list"
csi ctl Controller.CreateVolume '{"name":"pvc-restored","capacity_range":{"required_bytes":"805306368"},"volume_capabilities":['"$CAP_RWO_EXT4"'],'"$P"',"volume_content_source":{"snapshot":{"snapshot_id":"'$sid'"}}}' >/dev/null
csi ctl Controller.CreateVolume '{"name":"pvc-clone","capacity_range":{"required_bytes":"805306368"},"volume_capabilities":['"$CAP_RWO_EXT4"'],'"$P"',"volume_content_source":{"volume":{"volume_id":"pvc-ext4"}}}' >/dev/null
csi_expect NOT_FOUND ctl Controller.CreateVolume '{"name":"pvc-nothing","volume_capabilities":['"$CAP_RWO_EXT4"'],'"$P"',"volume_content_source":{"snapshot":{"snapshot_id":"no-such-snapshot"}}}'
for v in pvc-restored pvc-clone; do
    stage_publish b $v "$CAP_RWO_EXT4"
    cmp "$T/pattern" "$T/nb/$v/target/file" || fail "$v holds other data than pvc-ext4"
    unpublish_unstage b $v
done

log "cleanup: delete snapshots and volumes, twice"
for _ in 1 2; do
    csi ctl Controller.DeleteSnapshot '{"snapshot_id":"'$sid'"}' >/dev/null
    for v in pvc-blk pvc-ext4 pvc-xfs pvc-restored pvc-clone; do csi ctl Controller.DeleteVolume '{"volume_id":"'$v'"}' >/dev/null; done
done
[ "$(json_get "$(csi ctl Controller.ListVolumes)" 'len(a.get("entries", []))')" = 0 ] || fail "volumes left"
losetup -a | grep -q "$T" && fail "loop devices left: $(losetup -a | grep "$T")"
log "PASS"
