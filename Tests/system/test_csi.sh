#!/usr/bin/env bash
# The CSI plugin driven over its unix socket the way kubelet and the sidecars call it
# (Python grpcio): Identity; Controller create/delete idempotence, paging, capacity,
# publish rules and the error codes the spec lists; a shared (RWX) filesystem volume
# staged and published on two node ids (two plugin processes), a file written through
# one read through the other; kill -9 of the plugins between calls, every call repeated
# with the same answers and the mounts still serving I/O; unpublish/unstage idempotent.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/csi_lib.sh"
start_cluster 3

log "identity: plugin info, capabilities, probe"
start_plugin ctl controller-0 --controller
# Node plugins register their ids when they start; the controller knows no others.
start_plugin na node-a --node --zone z1
start_plugin nb node-b --node --zone z2
info=$(csi ctl Identity.GetPluginInfo)
[ "$(json_get "$info" 'a["name"]')" = cairn.csi.io ] || fail "plugin name: $info"
caps=$(csi ctl Identity.GetPluginCapabilities)
for want in CONTROLLER_SERVICE VOLUME_ACCESSIBILITY_CONSTRAINTS ONLINE; do
    grep -q "$want" <<< "$caps" || fail "plugin capabilities lack $want: $caps"
done
[ "$(json_get "$(csi ctl Identity.Probe)" 'a["ready"]')" = True ] || fail "probe not ready with the manager up"
ccaps=$(csi ctl Controller.ControllerGetCapabilities)
for want in CREATE_DELETE_VOLUME PUBLISH_UNPUBLISH_VOLUME LIST_VOLUMES EXPAND_VOLUME GET_VOLUME VOLUME_CONDITION; do
    grep -q "\"$want\"" <<< "$ccaps" || fail "controller capabilities lack $want"
done

log "controller: create is idempotent and rounds up to 4 KiB; other parameters are ALREADY_EXISTS"
req='{"name":"pvc-rwx","capacity_range":{"required_bytes":1000000001},"volume_capabilities":['"$CAP_RWX"'],"parameters":{"replicas":"2"},"accessibility_requirements":{"requisite":[{"segments":{"topology.cairn.io/zone":"z1"}}]}}'
v1=$(csi ctl Controller.CreateVolume "$req")
v2=$(csi ctl Controller.CreateVolume "$req")
[ "$v1" = "$v2" ] || fail "a repeated CreateVolume answered differently: $v1 / $v2"
[ "$(json_get "$v1" 'a["volume"]["capacity_bytes"]')" = 1000001536 ] || fail "capacity not rounded to 4 KiB: $v1"
[ "$(json_get "$v1" 'a["volume"]["volume_context"]["kind"]')" = filesystem ] || fail "an RWX mount volume is not a filesystem: $v1"
[ "$(json_get "$v1" 'a["volume"]["accessible_topology"][0]["segments"]["topology.cairn.io/zone"]')" = z1 ] || fail "no topology: $v1"
"$CAIRN" volume list | grep -q "^pvc-rwx .*filesystem" || fail "the manager has no filesystem volume pvc-rwx"
csi_expect ALREADY_EXISTS ctl Controller.CreateVolume "${req/\"replicas\":\"2\"/\"replicas\":\"3\"}"

log "controller: error codes"
csi_expect INVALID_ARGUMENT ctl Controller.CreateVolume '{"name":"x","volume_capabilities":[]}'
csi_expect INVALID_ARGUMENT ctl Controller.CreateVolume '{"volume_capabilities":['"$CAP_RWO_EXT4"']}'
csi_expect INVALID_ARGUMENT ctl Controller.CreateVolume '{"name":"x","volume_capabilities":[{"access_mode":{"mode":"SINGLE_NODE_WRITER"}}]}'
csi_expect INVALID_ARGUMENT ctl Controller.CreateVolume '{"name":"x","volume_capabilities":['"$CAP_RWO_EXT4"'],"parameters":{"fsType":"ntfs"}}'
csi_expect OUT_OF_RANGE ctl Controller.CreateVolume '{"name":"x","capacity_range":{"required_bytes":"999999999999999999"},"volume_capabilities":['"$CAP_RWO_EXT4"']}'
csi_expect OUT_OF_RANGE ctl Controller.CreateVolume '{"name":"x","capacity_range":{"required_bytes":"10000000","limit_bytes":"9999999"},"volume_capabilities":['"$CAP_RWO_EXT4"']}'
csi_expect NOT_FOUND ctl Controller.ControllerGetVolume '{"volume_id":"no-such-volume"}'
csi_expect NOT_FOUND ctl Controller.ControllerPublishVolume '{"volume_id":"no-such-volume","node_id":"node-a","volume_capability":'"$CAP_RWX"'}'
csi_expect NOT_FOUND ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwx","node_id":"no-such-node","volume_capability":'"$CAP_RWX"'}'
csi_expect INVALID_ARGUMENT ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwx","node_id":"node-a"}'
csi_expect NOT_FOUND ctl Controller.ValidateVolumeCapabilities '{"volume_id":"no-such-volume","volume_capabilities":['"$CAP_RWX"']}'
csi_expect INVALID_ARGUMENT ctl Controller.ControllerExpandVolume '{"volume_id":"pvc-rwx"}'
csi_expect ABORTED ctl Controller.ListVolumes '{"starting_token":"not-a-token"}'
csi ctl Controller.DeleteVolume '{"volume_id":"no-such-volume"}' >/dev/null || fail "deleting a missing volume is not OK"
val=$(csi ctl Controller.ValidateVolumeCapabilities '{"volume_id":"pvc-rwx","volume_capabilities":['"$CAP_BLOCK"']}')
grep -q confirmed <<< "$val" && fail "a filesystem volume confirmed as a block device: $val"
val=$(csi ctl Controller.ValidateVolumeCapabilities '{"volume_id":"pvc-rwx","volume_capabilities":['"$CAP_RWX"']}')
grep -q confirmed <<< "$val" || fail "RWX not confirmed: $val"

log "controller: single-node publish on a second node is FAILED_PRECONDITION; paging; capacity"
csi ctl Controller.CreateVolume '{"name":"pvc-rwo","capacity_range":{"required_bytes":"67108864"},"volume_capabilities":['"$CAP_RWO_EXT4"'],"parameters":{"replicas":"2"}}' >/dev/null
csi ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwo","node_id":"node-a","volume_capability":'"$CAP_RWO_EXT4"'}' >/dev/null
csi ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwo","node_id":"node-a","volume_capability":'"$CAP_RWO_EXT4"'}' >/dev/null
csi_expect FAILED_PRECONDITION ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwo","node_id":"node-b","volume_capability":'"$CAP_RWO_EXT4"'}'
csi_expect FAILED_PRECONDITION ctl Controller.DeleteVolume '{"volume_id":"pvc-rwo"}'
got=$(csi ctl Controller.ControllerGetVolume '{"volume_id":"pvc-rwo"}')
[ "$(json_get "$got" 'a["status"]["published_node_ids"]')" = "['node-a']" ] || fail "published nodes: $got"
csi ctl Controller.ControllerUnpublishVolume '{"volume_id":"pvc-rwo","node_id":"node-a"}' >/dev/null
csi ctl Controller.ControllerUnpublishVolume '{"volume_id":"pvc-rwo","node_id":"node-a"}' >/dev/null
csi ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwo","node_id":"node-b","volume_capability":'"$CAP_RWO_EXT4"'}' >/dev/null
csi ctl Controller.ControllerUnpublishVolume '{"volume_id":"pvc-rwo","node_id":"node-b"}' >/dev/null
exp=$(csi ctl Controller.ControllerExpandVolume '{"volume_id":"pvc-rwo","capacity_range":{"required_bytes":"134217728"},"volume_capability":'"$CAP_RWO_EXT4"'}')
[ "$(json_get "$exp" 'a["capacity_bytes"]')" = 134217728 ] || fail "expand answered $exp"
"$CAIRN" volume list --output json | grep -q '"sizeBytes" : 134217728' || fail "the manager's volume did not grow"
for i in 1 2 3; do
    csi ctl Controller.CreateVolume '{"name":"pvc-page-'$i'","volume_capabilities":['"$CAP_BLOCK"'],"parameters":{"replicas":"1"}}' >/dev/null
done
ids=(); token=""
while :; do
    page=$(csi ctl Controller.ListVolumes '{"max_entries":2,"starting_token":"'"$token"'"}')
    [ "$(json_get "$page" 'len(a.get("entries", []))')" -le 2 ] || fail "a page of 2 holds more: $page"
    ids+=($(json_get "$page" '" ".join(e["volume"]["volume_id"] for e in a.get("entries", []))'))
    token=$(json_get "$page" 'a.get("next_token", "")')
    [ -n "$token" ] || break
done
[ "${ids[*]}" = "pvc-page-1 pvc-page-2 pvc-page-3 pvc-rwo pvc-rwx" ] || fail "paged listing: ${ids[*]}"
capa=$(csi ctl Controller.GetCapacity '{"parameters":{"replicas":"1"}}')
[ "$(json_get "$capa" 'int(a["available_capacity"])')" -gt 0 ] || fail "no capacity: $capa"
for i in 1 2 3; do csi ctl Controller.DeleteVolume '{"volume_id":"pvc-page-'$i'"}' >/dev/null; done
csi ctl Controller.DeleteVolume '{"volume_id":"pvc-rwo"}' >/dev/null
csi ctl Controller.DeleteVolume '{"volume_id":"pvc-rwo"}' >/dev/null
"$CAIRN" volume list | grep -q "^pvc-rwo " && fail "pvc-rwo still exists after DeleteVolume"

log "controller: snapshot -> new volume and a clone hold the source's data; snapshot paging"
csi ctl Controller.CreateVolume '{"name":"pvc-src","capacity_range":{"required_bytes":"8388608"},"volume_capabilities":['"$CAP_BLOCK"'],"parameters":{"replicas":"2"}}' >/dev/null
head -c 8388608 /dev/urandom > "$T/src.img"
"$CAIRN" volume import pvc-src "$T/src.img" >/dev/null
snap=$(csi ctl Controller.CreateSnapshot '{"name":"snap-1","source_volume_id":"pvc-src"}')
[ "$snap" = "$(csi ctl Controller.CreateSnapshot '{"name":"snap-1","source_volume_id":"pvc-src"}')" ] || fail "a repeated CreateSnapshot answered differently"
[ "$(json_get "$snap" 'a["snapshot"]["ready_to_use"]')" = True ] || fail "snapshot not ready: $snap"
sid=$(json_get "$snap" 'a["snapshot"]["snapshot_id"]')
csi ctl Controller.CreateSnapshot '{"name":"snap-2","source_volume_id":"pvc-src"}' >/dev/null
csi_expect NOT_FOUND ctl Controller.CreateSnapshot '{"name":"snap-3","source_volume_id":"no-such-volume"}'
csi_expect INVALID_ARGUMENT ctl Controller.CreateSnapshot '{"source_volume_id":"pvc-src"}'
page=$(csi ctl Controller.ListSnapshots '{"max_entries":1,"source_volume_id":"pvc-src"}')
[ "$(json_get "$page" 'a["entries"][0]["snapshot"]["snapshot_id"]')" = snap-1 ] || fail "first snapshot page: $page"
page=$(csi ctl Controller.ListSnapshots '{"max_entries":1,"source_volume_id":"pvc-src","starting_token":"'"$(json_get "$page" 'a["next_token"]')"'"}')
[ "$(json_get "$page" 'a["entries"][0]["snapshot"]["snapshot_id"]')" = snap-2 ] || fail "second snapshot page: $page"
[ "$(json_get "$page" 'a.get("next_token", "")')" = "" ] || fail "a third snapshot page: $page"
head -c 8388608 /dev/urandom > "$T/src2.img"
"$CAIRN" volume import pvc-src "$T/src2.img" >/dev/null   # the source moves on after the snapshot
csi ctl Controller.CreateVolume '{"name":"pvc-restored","capacity_range":{"required_bytes":"8388608"},"volume_capabilities":['"$CAP_BLOCK"'],"parameters":{"replicas":"2"},"volume_content_source":{"snapshot":{"snapshot_id":"'$sid'"}}}' >/dev/null
csi ctl Controller.CreateVolume '{"name":"pvc-clone","capacity_range":{"required_bytes":"8388608"},"volume_capabilities":['"$CAP_BLOCK"'],"parameters":{"replicas":"2"},"volume_content_source":{"volume":{"volume_id":"pvc-src"}}}' >/dev/null
csi_expect NOT_FOUND ctl Controller.CreateVolume '{"name":"pvc-none","volume_capabilities":['"$CAP_BLOCK"'],"volume_content_source":{"snapshot":{"snapshot_id":"no-such-snapshot"}}}'
"$CAIRN" volume export pvc-restored "$T/restored.img" >/dev/null
"$CAIRN" volume export pvc-clone "$T/clone.img" >/dev/null
cmp "$T/src.img" "$T/restored.img" || fail "the volume restored from the snapshot differs from the source at snapshot time"
cmp "$T/src2.img" "$T/clone.img" || fail "the clone differs from its source volume"
for _ in 1 2; do
    csi ctl Controller.DeleteSnapshot '{"snapshot_id":"snap-1"}' >/dev/null
    csi ctl Controller.DeleteSnapshot '{"snapshot_id":"snap-2"}' >/dev/null
done
[ "$(json_get "$(csi ctl Controller.ListSnapshots '{"source_volume_id":"pvc-src"}')" 'len(a.get("entries", []))')" = 0 ] || fail "snapshots left"
for v in pvc-src pvc-restored pvc-clone; do csi ctl Controller.DeleteVolume '{"volume_id":"'$v'"}' >/dev/null; done

log "node: RWX on two node ids (two plugin processes), a file crosses between them"
ni=$(csi na Node.NodeGetInfo)
[ "$(json_get "$ni" 'a["node_id"]')" = node-a ] || fail "node info: $ni"
[ "$(json_get "$ni" 'a["accessible_topology"]["segments"]["topology.cairn.io/zone"]')" = z1 ] || fail "node topology: $ni"
ncaps=$(csi na Node.NodeGetCapabilities)
for want in STAGE_UNSTAGE_VOLUME EXPAND_VOLUME GET_VOLUME_STATS VOLUME_CONDITION SINGLE_NODE_MULTI_WRITER; do
    grep -q "\"$want\"" <<< "$ncaps" || fail "node capabilities lack $want"
done
ctx='"volume_context":{"kind":"filesystem","fsType":"ext4"}'
for n in a b; do
    csi ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwx","node_id":"node-'$n'","volume_capability":'"$CAP_RWX"'}' >/dev/null
    stage='{"volume_id":"pvc-rwx","staging_target_path":"'$T'/n'$n'/staging","volume_capability":'"$CAP_RWX"','"$ctx"'}'
    csi n$n Node.NodeStageVolume "$stage" >/dev/null
    csi n$n Node.NodeStageVolume "$stage" >/dev/null   # a second stage is a no-op
    pub='{"volume_id":"pvc-rwx","staging_target_path":"'$T'/n'$n'/staging","target_path":"'$T'/n'$n'/pod/mount","volume_capability":'"$CAP_RWX"','"$ctx"'}'
    csi n$n Node.NodePublishVolume "$pub" >/dev/null
    csi n$n Node.NodePublishVolume "$pub" >/dev/null
done
[ "$(grep -c " $T/n[ab]/staging " /proc/self/mountinfo)" = 2 ] || fail "expected two staging mounts"
head -c 2000000 /dev/urandom > "$T/blob"
cp "$T/blob" "$T/na/pod/mount/blob"
cmp "$T/blob" "$T/nb/pod/mount/blob" || fail "node b reads other bytes than node a wrote"
stats=$(csi nb Node.NodeGetVolumeStats '{"volume_id":"pvc-rwx","volume_path":"'$T'/nb/pod/mount"}')
grep -q '"BYTES"' <<< "$stats" || fail "no byte usage: $stats"
[ "$(json_get "$stats" 'a["volume_condition"].get("abnormal", False)')" = False ] || fail "abnormal: $stats"
csi_expect NOT_FOUND nb Node.NodeGetVolumeStats '{"volume_id":"pvc-rwx","volume_path":"'$T'/nowhere"}'
csi_expect INVALID_ARGUMENT nb Node.NodeStageVolume '{"volume_id":"pvc-rwx","volume_capability":'"$CAP_RWX"'}'
csi_expect INVALID_ARGUMENT nb Node.NodePublishVolume '{"volume_id":"pvc-rwx","target_path":"'$T'/x","staging_target_path":"'$T'/nb/staging"}'

log "kill -9 of every plugin between calls: repeated calls answer the same, the mounts keep serving"
kill9_plugin na; kill9_plugin nb; kill9_plugin ctl
echo "written while no plugin runs" > "$T/nb/pod/mount/during"
cmp "$T/nb/pod/mount/during" "$T/na/pod/mount/during" || fail "the mounts stopped serving without the plugins"
start_plugin ctl controller-0 --controller
start_plugin na node-a --node --zone z1
start_plugin nb node-b --node --zone z2
v3=$(csi ctl Controller.CreateVolume "$req")
[ "$v1" = "$v3" ] || fail "CreateVolume after a restart answered differently: $v1 / $v3"
for n in a b; do
    csi ctl Controller.ControllerPublishVolume '{"volume_id":"pvc-rwx","node_id":"node-'$n'","volume_capability":'"$CAP_RWX"'}' >/dev/null
    csi n$n Node.NodeStageVolume '{"volume_id":"pvc-rwx","staging_target_path":"'$T'/n'$n'/staging","volume_capability":'"$CAP_RWX"','"$ctx"'}' >/dev/null
    csi n$n Node.NodePublishVolume '{"volume_id":"pvc-rwx","staging_target_path":"'$T'/n'$n'/staging","target_path":"'$T'/n'$n'/pod/mount","volume_capability":'"$CAP_RWX"','"$ctx"'}' >/dev/null
done
[ "$(grep -c " $T/n[ab]/staging " /proc/self/mountinfo)" = 2 ] || fail "a repeated stage after the restart mounted again"
cmp "$T/blob" "$T/na/pod/mount/blob" || fail "node a lost the file"

log "unpublish and unstage undo everything, twice"
daemons=$(python3 -c 'import json,sys; print(" ".join(str(json.load(open(f))["daemonPID"]) for f in sys.argv[1:]))' "$T"/csi-n[ab]/volumes/pvc-rwx.json)
for n in a b; do
    for _ in 1 2; do
        csi n$n Node.NodeUnpublishVolume '{"volume_id":"pvc-rwx","target_path":"'$T'/n'$n'/pod/mount"}' >/dev/null
        csi n$n Node.NodeUnstageVolume '{"volume_id":"pvc-rwx","staging_target_path":"'$T'/n'$n'/staging"}' >/dev/null
    done
    csi ctl Controller.ControllerUnpublishVolume '{"volume_id":"pvc-rwx","node_id":"node-'$n'"}' >/dev/null
done
grep -q " $T/" /proc/self/mountinfo && fail "mounts left: $(grep " $T/" /proc/self/mountinfo)"
[ -e "$T/na/pod/mount" ] && fail "the target path is left"
# An exited daemon may linger as a zombie of the host's init, which does not count as running.
for p in $daemons; do
    state=$(ps -o stat= -p "$p" 2>/dev/null || true)
    [ -n "$state" ] && [ "${state#Z}" = "$state" ] && fail "cairn mount daemon $p still runs after unstage ($state)"
done
"$CAIRN" volume list | grep -q "^pvc-rwx\.d\." || fail "the mounts made no data volumes"
csi ctl Controller.DeleteVolume '{"volume_id":"pvc-rwx"}' >/dev/null
"$CAIRN" volume list | grep -q "^pvc-rwx" && fail "volumes of pvc-rwx left: $("$CAIRN" volume list)"
csi_expect NOT_FOUND ctl Controller.ControllerGetVolume '{"volume_id":"pvc-rwx"}'

log "probe: not ready while the manager is unreachable"
stop_cluster
[ "$(json_get "$(csi ctl Identity.Probe)" 'a.get("ready", False)')" = False ] || fail "probe ready without a manager"
log "PASS"
