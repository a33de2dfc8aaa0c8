# cert-sync task runner. Tools come from `bash .ci/bootstrap` (installed into .tools/).
set shell := ["bash", "-euo", "pipefail", "-c"]

tools := justfile_directory() / ".tools"
export PATH := tools / "bin" + ":" + tools / "venv/bin" + ":" + tools / "npm/node_modules/.bin" + ":" + env_var("PATH")
export ENVOY_BIN := env_var_or_default("ENVOY_BIN", tools / "venv/bin/envoy")
# Istio 1.28's Envoy line; `.ci/bootstrap` pins both.
export ENVOY_ISTIO_BIN := env_var_or_default("ENVOY_ISTIO_BIN", tools / "envoy-1.36.4/bin/envoy")
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER := "wasm-bindgen-test-runner"

# List the recipes.
default:
    @just --list

# The local demo: fake API server, the cert-sync controller, 3 Envoy gateway pods; publish, rotate, break a key, freeze a writer.
demo:
    cargo run --quiet --locked -p certsync-demo --bin demo

# Everything CI checks: lints, unit tests, the core under Node (wasm), real-Envoy tests on both Envoy lines, every fuzz target briefly.
test: lint
    cargo test --workspace --locked
    cargo test --locked -p certsync-contract --target wasm32-unknown-unknown
    just test-envoy-istio
    FUZZ_JOBS=2 bash e2e/fuzz/run.sh 20

# The real-Envoy suites again on the Envoy line Istio 1.28 ships (1.36): the filter in Envoy, the rendered Istio objects under --mode validate, the local end-to-end's gateway pods.
test-envoy-istio:
    "$ENVOY_ISTIO_BIN" --version | grep -q /1.36.
    ENVOY_BIN="$ENVOY_ISTIO_BIN" cargo test --locked -p certsync-e2e --test filter_in_envoy --test local_e2e --test native_e2e --test mesh_ca_envoy
    ENVOY_BIN="$ENVOY_ISTIO_BIN" cargo test --locked -p certsync-wasmplugin --test envoy

# fmt and clippy (native and wasm32, and the fuzz workspace) with warnings as errors.
lint:
    cargo fmt --all --check
    cargo fmt --manifest-path e2e/fuzz/Cargo.toml --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy --locked -p certsync-filter --target wasm32-wasip1 -- -D warnings
    cargo clippy --manifest-path e2e/fuzz/Cargo.toml --target-dir target --all-targets --locked -- -D warnings

# Fuzz campaign: every target (or those named) for `seconds` each, two at a time; crashes land in e2e/fuzz/artifacts/ (e2e/fuzz/run.sh).
fuzz seconds="1800" *targets:
    FUZZ_JOBS=2 bash e2e/fuzz/run.sh {{seconds}} {{targets}}

# The kind + Istio end-to-end: the real install in a real cluster (needs Docker; docs/kind.md).
e2e-kind:
    bash e2e/kind/run.sh

# Build the shipped filter module: target/filter/certsync_filter.wasm.
filter-wasm:
    bash filter/build-wasm.sh

# Benchmarks; writes bench-report.md (the filter's, then the controller's, the rollout's and failover/recovery appended).
bench:
    cargo run --quiet --release --locked -p certsync-bench --bin bench -- --out bench-report.md
    cargo run --quiet --release --locked -p certsync-bench --bin controller_bench -- --out bench-report.md --append
    cargo run --quiet --release --locked -p certsync-bench --bin rollout_bench -- --out bench-report.md --append
    cargo run --quiet --release --locked -p certsync-bench --bin failover_bench -- --out bench-report.md --append

# The controller at 100,000 TLS Secrets (10,000 annotated) and 20,000 others, against the naive watcher; writes bench-large.md (~10 min).
bench-large:
    cargo run --quiet --release --locked -p certsync-bench --bin controller_bench -- --large --out bench-large.md

# 10,000 TLS Secrets, every one annotated (10,000 publications): the scoped-pass latency figure in a few minutes; writes bench-dense.md.
bench-dense:
    cargo run --quiet --release --locked -p certsync-bench --bin controller_bench -- --dense --out bench-dense.md
