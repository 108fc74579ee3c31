#!/usr/bin/env bash
# The CLI, authentication, error and writer-fencing system test with the manager's
# metadata on a real etcd (`cairn local up --meta etcd`).
command -v etcd >/dev/null || { echo "etcd is not installed (tools/setup.sh installs etcd-server)" >&2; exit 1; }
CAIRN_TEST_META=etcd exec bash "$(dirname "$0")/test_cli_auth_fencing.sh"
