#!/usr/bin/env bash
# Regenerates the gRPC stubs in src/onceward/v1/ from the repository's proto/.
# Usage: scripts/generate.sh [OUT_DIR]   (default: src; check_stubs.sh passes a temp dir)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
proto_root="$here/../../proto"
out="${1:-$here/src}"
python="${PYTHON:-python3}"

mkdir -p "$out"
"$python" -m grpc_tools.protoc \
    -I "$proto_root" \
    --python_out="$out" \
    --pyi_out="$out" \
    --grpc_python_out="$out" \
    "$proto_root/onceward/v1/onceward.proto"
# protoc writes modules, not packages; onceward.v1 must be importable.
printf '"""Generated from proto/onceward/v1/onceward.proto by scripts/generate.sh; do not edit."""\n' \
    >"$out/onceward/v1/__init__.py"
