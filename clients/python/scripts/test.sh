#!/usr/bin/env bash
# The Python client's whole check: a venv under .venv (made once), the package and its
# pinned dev dependencies, the stub freshness check, then pytest against a real sidecar.
# The sidecar binary is $ONCEWARD_BIN, default ../../target/debug/onceward.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

if [[ ! -x .venv/bin/python ]]; then
    python3 -m venv .venv
fi
export PYTHON="$here/.venv/bin/python"
"$PYTHON" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
"$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps -e .

scripts/check_stubs.sh
exec "$PYTHON" -m pytest "$@"
