#!/usr/bin/env bash
# Builds the shipped filter module: cargo's release build, then binaryen's
# wasm-opt -Oz (about 20% smaller than rustc alone; the budget is 400 KiB).
# Output: target/filter/certsync_filter.wasm (+ .sha256). Tests, the demo, the
# benchmarks and the controller all load this one file.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=target/filter
mkdir -p "$out"
cargo build --quiet --locked -p certsync-filter --target wasm32-wasip1 --release
raw=target/wasm32-wasip1/release/certsync_filter.wasm
wasm_opt=${WASM_OPT:-$(command -v wasm-opt || echo "$root/.tools/npm/node_modules/.bin/wasm-opt")}
if [ ! -x "$wasm_opt" ]; then
  echo "wasm-opt not found: run 'bash .ci/bootstrap' (installs binaryen) or set WASM_OPT" >&2
  exit 1
fi
# Only rebuild when cargo produced a newer module.
if [ ! -f "$out/certsync_filter.wasm" ] || [ "$raw" -nt "$out/certsync_filter.wasm" ]; then
  # The features rustc enables by default for wasm32-wasip1 (all supported by V8).
  "$wasm_opt" -Oz --strip-debug --strip-producers \
    --enable-bulk-memory --enable-bulk-memory-opt --enable-sign-ext --enable-mutable-globals \
    --enable-nontrapping-float-to-int --enable-reference-types --enable-multivalue \
    "$raw" -o "$out/certsync_filter.wasm.tmp"
  mv "$out/certsync_filter.wasm.tmp" "$out/certsync_filter.wasm"
  sha256sum "$out/certsync_filter.wasm" | cut -d' ' -f1 > "$out/certsync_filter.wasm.sha256"
fi
echo "$root/$out/certsync_filter.wasm"
