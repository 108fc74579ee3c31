#!/usr/bin/env bash
# Regenerates Sources/CairnCSIProto from proto/csi.proto (the generated code is
# committed, so a normal build needs neither protoc nor the plugins).
#
# Needs protoc (Debian: protobuf-compiler) and the two Swift plugins, built in a scratch
# package outside the repository, pinned to the versions Package.swift uses:
#   swift-protobuf 1.39.0       -> protoc-gen-swift
#   grpc-swift-protobuf 2.4.1   -> protoc-gen-grpc-swift-2
# Usage: tools/gen-csi.sh [--check]
#   --check: regenerate into a temporary folder and fail if the committed code differs.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
scratch=${CAIRN_PROTOC_PLUGINS:-/tmp/cairn-protoc-plugins}
out="$here/Sources/CairnCSIProto"
check=0
[ "${1:-}" = "--check" ] && check=1

command -v protoc >/dev/null || { echo "gen-csi: protoc missing (apt-get install protobuf-compiler)" >&2; exit 1; }
if [ ! -x "$scratch/.build/debug/protoc-gen-swift" ] || [ ! -x "$scratch/.build/debug/protoc-gen-grpc-swift-2" ]; then
    mkdir -p "$scratch/Sources/none"
    : > "$scratch/Sources/none/none.swift"
    cat > "$scratch/Package.swift" <<'PKG'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "protoc-plugins",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", exact: "2.4.1"),
    ],
    targets: [.target(name: "none")]
)
PKG
    (cd "$scratch" && swift build --product protoc-gen-swift && swift build --product protoc-gen-grpc-swift-2)
fi

dest="$out"
if [ $check = 1 ]; then dest=$(mktemp -d); trap 'rm -rf "$dest"' EXIT; fi
protoc -I "$here/proto" \
    --plugin=protoc-gen-swift="$scratch/.build/debug/protoc-gen-swift" \
    --plugin=protoc-gen-grpc-swift-2="$scratch/.build/debug/protoc-gen-grpc-swift-2" \
    --swift_out="$dest" --swift_opt=Visibility=Public \
    --grpc-swift-2_out="$dest" --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true \
    "$here/proto/csi.proto"
if [ $check = 1 ]; then
    for f in csi.pb.swift csi.grpc.swift; do
        cmp -s "$dest/$f" "$out/$f" || { echo "gen-csi: $out/$f is not current; run tools/gen-csi.sh" >&2; exit 1; }
    done
    echo "gen-csi: generated code is current"
fi
