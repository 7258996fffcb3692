#!/usr/bin/env bash
# Fails if src/onceward/v1/ differs from what scripts/generate.sh makes of proto/ now.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$here/scripts/generate.sh" "$tmp"
if ! diff -ru --exclude=__pycache__ "$tmp/onceward/v1" "$here/src/onceward/v1"; then
    echo "the Python stubs are stale: run clients/python/scripts/generate.sh" >&2
    exit 1
fi
echo "stubs up to date"
