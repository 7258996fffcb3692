#!/usr/bin/env bash
# Fails if src/gen/ or dist/ differ from what `npm run generate` makes of proto/ and
# src/ now: the committed JavaScript is what users run, with no build step of theirs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cp -r "$here/src" "$here/tsconfig.json" "$here/buf.gen.yaml" "$here/package.json" "$tmp/"
rm -rf "$tmp/src/gen"
ln -s "$here/node_modules" "$tmp/node_modules"
cd "$here"
PATH="$here/node_modules/.bin:$PATH" buf generate ../../proto --template buf.gen.yaml -o "$tmp"
"$here/node_modules/.bin/tsc" -p "$tmp/tsconfig.json"
if ! diff -ru "$tmp/src/gen" "$here/src/gen" || ! diff -ru "$tmp/dist" "$here/dist"; then
    echo "the generated code or dist/ is stale: run \`npm run generate\` in clients/typescript" >&2
    exit 1
fi
echo "generated code and dist/ up to date"
