#!/usr/bin/env bash
# The shared filesystem's two-mount test with its metadata (inodes, entries, file maps,
# locks) in etcd: `cairn local up --meta etcd`, the manager proxying the filesystem's
# metadata store to the mounts.
command -v etcd >/dev/null || { echo "etcd is not installed (tools/setup.sh installs etcd-server)" >&2; exit 1; }
CAIRN_TEST_META=etcd exec bash "$(dirname "$0")/test_fs_two_mounts.sh"
