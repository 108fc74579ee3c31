#!/usr/bin/env bash
# Installs what Cairn needs on Debian 12 when it is missing: the C libraries of the
# frontends and the real clients the tests drive. Safe to run again.
set -euo pipefail
PACKAGES=(
    pkg-config libsqlite3-dev curl python3
    libfuse3-dev fuse3
    libnbd-dev libnbd-bin python3-libnbd nbdkit qemu-utils
    libiscsi-dev libiscsi-bin qemu-block-extra
    fio e2fsprogs xfsprogs util-linux openssl
    prometheus
    etcd-server etcd-client
    git bindfs
)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! command -v swift >/dev/null 2>&1; then
    for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
fi
# The packaging test validates the Kubernetes objects with kubernetes-validate (PyPI).
python3 -c 'import kubernetes_validate' 2>/dev/null || python3 -m pip install -q kubernetes-validate==1.37.0
# The CSI tests drive the plugin with a Python gRPC client, stubs generated from proto/csi.proto.
python3 -c 'import grpc, grpc_tools' 2>/dev/null || python3 -m pip install -q grpcio grpcio-tools
command -v swift >/dev/null 2>&1 || {
    echo "setup: Swift 6 is required (https://www.swift.org/install/linux/); put it on PATH" >&2
    exit 1
}
