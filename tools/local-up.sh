#!/usr/bin/env bash
# One command for a person: install what is missing, build, and start a local cluster
# (manager + 3 storage nodes). Extra arguments go to `cairn local up`.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup.sh
swift build -c release --product cairn
mkdir -p "$HOME/.local/bin"
ln -sf "$PWD/.build/release/cairn" "$HOME/.local/bin/cairn"
echo "cairn is at $PWD/.build/release/cairn (linked from ~/.local/bin/cairn)"
exec .build/release/cairn local up "$@"
