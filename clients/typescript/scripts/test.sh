#!/usr/bin/env bash
# The TypeScript client's whole check: `npm ci` from the committed package-lock.json
# (again only when the lock file changed), the freshness check of the generated code
# and dist/, then the node:test suite against real sidecars it starts from
# $ONCEWARD_BIN (default ../../target/debug/onceward).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"

stamp=node_modules/.onceward-lock.sha256
if ! sha256sum --quiet -c "$stamp" >/dev/null 2>&1; then
    npm ci --no-audit --no-fund --loglevel=error
    sha256sum package-lock.json > "$stamp"
fi
scripts/check_generated.sh
exec node --test "$@" test/*.test.js
