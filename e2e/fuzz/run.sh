#!/usr/bin/env bash
# Builds cert-sync's fuzz targets (cargo-fuzz, libFuzzer, stable Rust: no
# sanitizer) and runs each for SECONDS, from its committed seeds
# (seeds/<target>/) and the corpus grown by earlier runs (corpus/<target>/,
# git-ignored). Prints, per target, the executions, the coverage libFuzzer
# reached (cov: edges, ft: features), the corpus size, and any crash; exits
# non-zero if a target crashed (the input is kept under artifacts/<target>/).
#
#   bash e2e/fuzz/run.sh SECONDS [TARGET...]     # all targets when none named
#
# Environment:
#   FUZZ_JOBS=N         targets run N at a time (default 1)
#   FUZZ_LOG_DIR=DIR    each target's full libFuzzer log (default e2e/fuzz/logs)
#   FUZZ_SUMMARY=FILE   also append each target's summary line to FILE
#   FUZZ_NO_BUILD=1     use the binaries already built
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
usage="usage: bash e2e/fuzz/run.sh SECONDS [TARGET...]"
seconds=${1:?$usage}
shift
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "$usage" >&2; exit 2; }

all=()
for src in "$here"/fuzz_targets/*.rs; do
  name=${src##*/}
  all+=("${name%.rs}")
done
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [ -f "$here/fuzz_targets/$t.rs" ] || { echo "no fuzz target $t (${all[*]})" >&2; exit 2; }
done

jobs=${FUZZ_JOBS:-1}
logs=${FUZZ_LOG_DIR:-$here/logs}
summary=${FUZZ_SUMMARY:-}
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=$here/target/$triple/release
mkdir -p "$logs"
[ -z "$summary" ] || mkdir -p "$(dirname "$summary")"

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
  # --locked: the fuzz workspace's Cargo.lock is committed; fail rather
  # than resolve anew.
  cargo metadata --locked --format-version 1 --manifest-path "$here/Cargo.toml" >/dev/null
  # Stable Rust: no sanitizer (ASan needs nightly's -Zsanitizer); Rust's own
  # checks, debug assertions and overflow checks find the bugs. 16 codegen
  # units: a much shorter build for a slightly slower run.
  cargo fuzz build --fuzz-dir "$here" --sanitizer none --codegen-units 16
fi

# One target: run it, then print its summary line from libFuzzer's log.
run_one() {
  local t=$1 log=$logs/$1.log corpus=$here/corpus/$1 artifacts=$here/artifacts/$1/
  mkdir -p "$corpus" "$artifacts"
  local start=$SECONDS rc=0
  # -timeout: an input that takes 10 s is a hang, reported like a crash.
  # -rss_limit_mb: a parser that allocates without bound is a bug too.
  "$bin/$t" "$corpus" "$here/seeds/$t" \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts" >"$log" 2>&1 || rc=$?
  local execs cov ft corp crash line
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  line=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
  # libFuzzer's corpus (seeds and grown inputs, reduced): units/size.
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$line")
  crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
  if [ "$rc" -ne 0 ] && [ -z "$crash" ]; then
    crash="exit $rc, see $log"
  fi
  line=$(printf '%-15s %5ss  execs %-10s cov %-6s ft %-7s corpus %-11s crash %s' \
    "$t" "$((SECONDS - start))" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${crash:-none}")
  echo "$line"
  [ -z "$summary" ] || echo "$line" >>"$summary"
  [ -z "$crash" ] || { echo "$t: $crash" >>"$failed"; grep -m1 -A30 -E '^(thread|==[0-9]+==)' "$log" >&2 || true; }
}

failed=$(mktemp)
trap 'rm -f "$failed"' EXIT
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  run_one "$t" &
done
wait
if [ -s "$failed" ]; then
  echo "fuzzing found crashes (the inputs are under e2e/fuzz/artifacts/):" >&2
  cat "$failed" >&2
  exit 1
fi
