#!/usr/bin/env bash
# The volume core's system test (RF=3 import with a node killed -9, rebuild, repair,
# whole-cluster restart) with the manager's metadata on a real etcd (Debian etcd-server)
# that `cairn local up --meta etcd` starts.
command -v etcd >/dev/null || { echo "etcd is not installed (tools/setup.sh installs etcd-server)" >&2; exit 1; }
CAIRN_TEST_META=etcd exec bash "$(dirname "$0")/test_replication_failover.sh"
