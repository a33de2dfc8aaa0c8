#!/usr/bin/env bash
# The kind + Istio end-to-end of cert-sync: the real install in a real cluster.
#
#   bash e2e/kind/run.sh          # (or `just e2e-kind`) build, install, prove
#   bash e2e/kind/run.sh down     # delete the cluster
#   bash e2e/kind/run.sh pki DIR  # only the test PKI (checked by cargo test)
#
# Needs Docker, kubectl, openssl, curl and a Rust toolchain with the tools of
# `bash .ci/bootstrap` (the filter module is built on the host). kind and
# istioctl are downloaded (pinned, below) when the ones on PATH are not the
# pinned versions. See docs/kind.md.
#
# What it proves, in order:
#   1. Istio installs with the stats cert-sync's filter needs
#      (proxyStatsMatcher: ssl_context_update_by_sds, update_rejected,
#      key_rotation_failed, wasmcustom).
#   2. The controller image runs as shipped (controller/deploy/*.yaml as they
#      are, CRD from controller/crds/), elects a leader and applies the
#      gateway-side objects (EnvoyFilter, status Gateway, WasmPlugin).
#   3. An annotated TLS Secret is published: every gateway pod serves its leaf
#      (openssl s_client, SNI) and `cert-sync status` shows Converged, N/N.
#   4. Traffic flows: HTTPS through the gateway, verified against the test CA.
#   5. The filter runs in every gateway pod: its counters are in Envoy's stats.
#   6. Rotation: a new leaf is served by every pod and Converged again.
#   7. A bad key (leaf and key do not match) is refused: a Warning Event with
#      reason KeyMismatch on the source, and every pod keeps serving the
#      previous certificate.
#
# Re-runs are idempotent: an existing cluster is reused (Istio re-applied, the
# image rebuilt, reloaded and the controller restarted), and every check runs
# again against fresh certificates. The cluster is kept afterwards for
# inspection unless E2E_KIND_DELETE=1.
set -euo pipefail

# ---- pinned versions (override through the environment) ----
# kind v0.33.0: the newest kind release (its release notes, github.com/
# kubernetes-sigs/kind/releases/tag/v0.33.0; the tag postdates our mirror of
# the repository, whose newest is v0.32.0 — see docs/kind.md, "Unverified").
KIND_VERSION=${KIND_VERSION:-v0.33.0}
# The v1.34 image of the list the v0.33.0 release notes publish ("Images
# pre-built for this release"). Istio 1.28 supports Kubernetes 1.29-1.34
# (istio.io news/releases/1.28.x/announcing-1.28), and istioctl >= 1.28.2
# requires >= 1.30 (istioctl/pkg/install/k8sversion/version.go:31).
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-kindest/node:v1.34.11@sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d}
# The newest 1.28 patch (tag 1.28.10 in istio/istio, 2026-06-29; istio.io
# news/releases/1.28.x/announcing-1.28.10). The Istio behaviour cited in this
# project was read at 1.28.1; the files cited are unchanged at 1.28.10 where
# noted in docs/kind.md.
ISTIO_VERSION=${ISTIO_VERSION:-1.28.10}
CLUSTER=${CLUSTER:-cert-sync-e2e}
# How long each wait may take, in seconds.
TIMEOUT=${TIMEOUT:-180}
# build: compile the filter on the host (filter/build-wasm.sh), then copy it
# into the image; image: compile it inside the Docker build.
FILTER_BUILD=${FILTER_BUILD:-host}

# ---- fixed names: they must match the checked-in manifests ----
# (e2e/tests/kind_manifests.rs checks every one against the YAML.)
IMAGE=cert-sync:dev
GATEWAY_NAMESPACE=istio-system
GATEWAY_SELECTOR=istio=ingressgateway
GATEWAY_REPLICAS=2
GATEWAY_HTTPS_PORT=8443
APP_NAMESPACE=cert-sync-e2e
SOURCE_SECRET=demo-tls
HOST=demo.cert-sync-e2e.test
TOKEN_SECRET=cert-sync-report-token
CONTROLLER_DEPLOYMENT=cert-sync
LEASE=cert-sync

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here=$root/e2e/kind
manifests=$here/manifests
tools=$root/.tools/kind-e2e
context=kind-$CLUSTER

# ---- logging ----
step_no=0
started=$SECONDS
step() {
  step_no=$((step_no + 1))
  printf '\n\033[1m==> [%d] %s\033[0m  (+%ds)\n' "$step_no" "$*" "$((SECONDS - started))" >&2
}
info() { printf '    %s\n' "$*" >&2; }
ok() { printf '    \033[32mok\033[0m %s\n' "$*" >&2; }
die() {
  printf '\n\033[31mFAILED:\033[0m %s\n' "$*" >&2
  exit 1
}

# ---- cleanup: port-forwards and scratch files; diagnostics on failure ----
work=$(mktemp -d "${TMPDIR:-/tmp}/cert-sync-kind.XXXXXX")
pf_pids=()
SUMMARY=()

stop_port_forwards() {
  local pid
  # (The +-expansion keeps bash 3.2, macOS's, quiet about an empty array.)
  for pid in ${pf_pids[@]+"${pf_pids[@]}"}; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pf_pids=()
}

diagnostics() {
  printf '\n---- diagnostics (context %s) ----\n' "$context" >&2
  kubectl --context "$context" get pods -A -o wide >&2 || true
  printf '\n---- cert-sync logs (last 60 lines per pod) ----\n' >&2
  kubectl --context "$context" -n "$GATEWAY_NAMESPACE" logs -l app.kubernetes.io/name=cert-sync \
    --tail=60 --prefix >&2 || true
  printf '\n---- gateway logs mentioning cert-sync / wasm ----\n' >&2
  kubectl --context "$context" -n "$GATEWAY_NAMESPACE" logs -l "$GATEWAY_SELECTOR" --tail=400 --prefix 2>/dev/null \
    | grep -iE 'cert.sync|wasm' | tail -n 40 >&2 || true
  printf '\n---- events in %s ----\n' "$APP_NAMESPACE" >&2
  kubectl --context "$context" -n "$APP_NAMESPACE" get events --sort-by=.lastTimestamp >&2 || true
  printf '\nThe cluster is kept: kubectl --context %s ...; delete it with: bash e2e/kind/run.sh down\n' "$context" >&2
}

on_exit() {
  local rc=$?
  stop_port_forwards
  if [ "$rc" -ne 0 ] && [ "${phase:-}" = cluster ]; then
    diagnostics
  fi
  rm -rf "$work"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ---- helpers ----
k() { kubectl --context "$context" "$@"; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required: $2"
}

# Runs "$@" until it succeeds or TIMEOUT seconds pass; $1 says what for.
wait_until() {
  local what=$1 deadline=$((SECONDS + TIMEOUT))
  shift
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "timed out after ${TIMEOUT}s waiting for: $what"
    fi
    sleep 2
  done
}

with_timeout() {
  if command -v timeout >/dev/null 2>&1; then
    timeout "$@"
  else
    shift
    "$@"
  fi
}

# Sets OS (linux, darwin) and ARCH (amd64, arm64).
os_arch() {
  case "$(uname -s)" in
    Linux) OS=linux ;;
    Darwin) OS=darwin ;;
    *) die "unsupported OS $(uname -s)" ;;
  esac
  case "$(uname -m)" in
    x86_64 | amd64) ARCH=amd64 ;;
    aarch64 | arm64) ARCH=arm64 ;;
    *) die "unsupported architecture $(uname -m)" ;;
  esac
}

# kind: the pinned version from PATH, else downloaded into .tools/kind-e2e.
resolve_kind() {
  if command -v kind >/dev/null 2>&1 && kind version 2>/dev/null | grep -q "kind $KIND_VERSION "; then
    KIND=$(command -v kind)
    return
  fi
  KIND=$tools/kind-$KIND_VERSION
  if [ ! -x "$KIND" ]; then
    os_arch
    info "downloading kind $KIND_VERSION ($OS/$ARCH)"
    mkdir -p "$tools"
    curl -fsSL -o "$KIND.tmp" "https://kind.sigs.k8s.io/dl/$KIND_VERSION/kind-$OS-$ARCH"
    chmod +x "$KIND.tmp"
    mv "$KIND.tmp" "$KIND"
  fi
}

# istioctl: the pinned version from PATH, else downloaded into .tools/kind-e2e.
# `istioctl version --remote=false` prints `client version: 1.28.10`: istioctl
# forces --short on (istioctl/pkg/version/version.go:49-55) and the short form
# is "client version: %s" (pkg/version/cobra.go:88). The download names follow
# release/downloadIstioCtl.sh:79-80 (istioctl-<v>-<os>-<arch>.tar.gz, macOS
# amd64 without an arch suffix), with istioctl at the top of the tarball.
resolve_istioctl() {
  if command -v istioctl >/dev/null 2>&1 \
    && [ "$(istioctl version --remote=false 2>/dev/null || true)" = "client version: $ISTIO_VERSION" ]; then
    ISTIOCTL=$(command -v istioctl)
    return
  fi
  ISTIOCTL=$tools/istioctl-$ISTIO_VERSION
  if [ ! -x "$ISTIOCTL" ]; then
    local platform
    os_arch
    case "$OS-$ARCH" in
      linux-*) platform=linux-$ARCH ;;
      darwin-amd64) platform=osx ;;
      darwin-arm64) platform=osx-arm64 ;;
    esac
    info "downloading istioctl $ISTIO_VERSION ($platform)"
    mkdir -p "$tools"
    curl -fsSL -o "$work/istioctl.tar.gz" \
      "https://github.com/istio/istio/releases/download/$ISTIO_VERSION/istioctl-$ISTIO_VERSION-$platform.tar.gz"
    tar -xzf "$work/istioctl.tar.gz" -C "$work" istioctl
    mv "$work/istioctl" "$ISTIOCTL"
    chmod +x "$ISTIOCTL"
  fi
}

cluster_exists() {
  "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"
}

# Lowercase hex SHA-256 of a PEM certificate's DER (what cert-sync reports).
cert_fingerprint() {
  openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^[^=]*=//; s/://g' | tr 'A-F' 'a-f'
}

# The fingerprint of the leaf served on 127.0.0.1:$1 for SNI $HOST (empty on failure).
served_fingerprint() {
  with_timeout 10 openssl s_client -connect "127.0.0.1:$1" -servername "$HOST" </dev/null 2>/dev/null \
    | openssl x509 -noout -fingerprint -sha256 2>/dev/null \
    | sed 's/^[^=]*=//; s/://g' | tr 'A-F' 'a-f'
}

# Starts `kubectl port-forward <target> :<remote>` in namespace $1; sets PF_PORT.
port_forward() {
  local namespace=$1 target=$2 remote=$3 log deadline
  log=$(mktemp "$work/port-forward.XXXXXX")
  # kubectl itself (not the k function, which would fork a subshell), so
  # that $! is the process to stop.
  kubectl --context "$context" -n "$namespace" port-forward "$target" ":$remote" >"$log" 2>&1 &
  pf_pids+=("$!")
  deadline=$((SECONDS + 30))
  PF_PORT=
  while [ -z "$PF_PORT" ]; do
    PF_PORT=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$log" | head -n 1)
    if [ -z "$PF_PORT" ]; then
      [ "$SECONDS" -lt "$deadline" ] || die "port-forward to $target:$remote did not start: $(cat "$log")"
      sleep 0.5
    fi
  done
}

# Names of the running gateway pods that are not terminating, one a line.
gateway_pods() {
  k -n "$GATEWAY_NAMESPACE" get pods -l "$GATEWAY_SELECTOR" --field-selector=status.phase=Running -o go-template \
    --template '{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}'
}

gateway_pods_running() {
  [ "$(gateway_pods | grep -c .)" -eq "$GATEWAY_REPLICAS" ]
}

# Every gateway pod serves the leaf with fingerprint $1. One port-forward per
# pod, so a pod that lags cannot hide behind the Service.
all_pods_serve() {
  local want=$1 pod fp all=0 seen=0 lag=
  stop_port_forwards
  for pod in $(gateway_pods); do
    seen=$((seen + 1))
    port_forward "$GATEWAY_NAMESPACE" "pod/$pod" "$GATEWAY_HTTPS_PORT"
    fp=$(served_fingerprint "$PF_PORT" || true)
    if [ "$fp" != "$want" ]; then
      lag="$lag $pod serves ${fp:-nothing yet};"
      all=1
    fi
  done
  stop_port_forwards
  if [ "$seen" -ne "$GATEWAY_REPLICAS" ]; then
    lag="$lag $seen running gateway pods, want $GATEWAY_REPLICAS;"
    all=1
  fi
  # Say what lags when it changes, not on every poll.
  if [ -n "$lag" ] && [ "$lag" != "${LAST_LAG:-}" ]; then
    info "waiting:$lag"
  fi
  LAST_LAG=$lag
  return "$all"
}

# Builds the host `cert-sync` binary used for `cert-sync status`.
build_cli() {
  (cd "$root" && cargo build --quiet --locked -p cert-sync --bin cert-sync)
  CERT_SYNC=${CARGO_TARGET_DIR:-$root/target}/debug/cert-sync
  [ -x "$CERT_SYNC" ] || die "cargo built cert-sync but $CERT_SYNC is missing"
}

leader_pod() {
  k -n "$GATEWAY_NAMESPACE" get lease "$LEASE" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true
}

# The Lease has a holder and the holder is a live pod.
leader_ready() {
  local leader
  leader=$(leader_pod)
  [ -n "$leader" ] && k -n "$GATEWAY_NAMESPACE" get pod "$leader" >/dev/null 2>&1
}

# `cert-sync status --server` through a port-forward to the leader (gateways'
# reports are accepted by the leader only, so only its view has the rollout).
# Sets STATUS_TABLE.
status_table() {
  local leader
  STATUS_TABLE=
  leader=$(leader_pod)
  [ -n "$leader" ] || return 1
  stop_port_forwards
  port_forward "$GATEWAY_NAMESPACE" "pod/$leader" 8080
  STATUS_TABLE=$("$CERT_SYNC" status --server "http://127.0.0.1:$PF_PORT" 2>&1 || true)
  stop_port_forwards
}

# `cert-sync status` shows the source Converged on all N pods with fingerprint $1.
converged() {
  local want=$1 row
  status_table || return 1
  LAST_STATUS=$STATUS_TABLE
  row=$(awk -v src="$APP_NAMESPACE/$SOURCE_SECRET" '$1 == src' <<<"$STATUS_TABLE")
  LAST_ROW=$row
  [ -n "$row" ] || return 1
  awk -v sha="${want:0:12}" -v pods="$GATEWAY_REPLICAS/$GATEWAY_REPLICAS" \
    '$3 == sha && $5 == pods && $6 == "Converged" { found = 1 } END { exit !found }' <<<"$row"
}

wait_converged() {
  local want=$1 deadline=$((SECONDS + TIMEOUT))
  until converged "$want"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "${LAST_STATUS:-no status}" >&2
      die "cert-sync status did not show $APP_NAMESPACE/$SOURCE_SECRET Converged $GATEWAY_REPLICAS/$GATEWAY_REPLICAS at ${want:0:12} within ${TIMEOUT}s"
    fi
    sleep 3
  done
  printf '%s\n' "$LAST_STATUS" | sed 's/^/      /' >&2
}

# HTTPS through the gateway Service to the backend answers 200, with the
# chain verified against the test CA.
https_ok() {
  local code
  stop_port_forwards
  port_forward "$GATEWAY_NAMESPACE" "svc/istio-ingressgateway" 443
  code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$work/ca.crt" \
    --resolve "$HOST:$PF_PORT:127.0.0.1" "https://$HOST:$PF_PORT/" 2>/dev/null || true)
  stop_port_forwards
  [ "$code" = 200 ] || {
    info "GET https://$HOST/ answered ${code:-nothing}, want 200"
    return 1
  }
}

# The controller applied its gateway-side objects (names as in
# wasmplugin/manifests/gateway.yaml).
gateway_objects_exist() {
  k -n "$GATEWAY_NAMESPACE" get envoyfilter.networking.istio.io/cert-sync \
    gateway.networking.istio.io/cert-sync-status wasmplugin.extensions.istio.io/cert-sync >/dev/null 2>&1
}

# A Warning Event with reason KeyMismatch exists on the source Secret.
key_mismatch_event() {
  [ -n "$(k -n "$APP_NAMESPACE" get events -o name \
    --field-selector "type=Warning,reason=KeyMismatch,involvedObject.name=$SOURCE_SECRET")" ]
}

# Lowercase hex SHA-256 of the leaf in the published credential Secret.
published_fingerprint() {
  k -n "$GATEWAY_NAMESPACE" get secret "$APP_NAMESPACE.$SOURCE_SECRET" -o jsonpath='{.data.tls\.crt}' \
    | openssl base64 -d -A | openssl x509 -noout -fingerprint -sha256 \
    | sed 's/^[^=]*=//; s/://g' | tr 'A-F' 'a-f'
}

# ---- test PKI (openssl only; works with OpenSSL 1.1+/3 and LibreSSL) ----
make_ca() {
  printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' \
    >"$work/ca.cnf"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$work/ca.key" -sha256 -days 90 -subj "/CN=cert-sync e2e CA" \
    -config "$work/ca.cnf" -extensions v3_ca -out "$work/ca.crt"
}

# make_leaf NAME: NAME.key and NAME.crt for $HOST, signed by the test CA.
make_leaf() {
  local name=$1
  printf '[req]\ndistinguished_name=dn\n[dn]\n' >"$work/req.cnf"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:%s\nauthorityKeyIdentifier=keyid\n' \
    "$HOST" >"$work/leaf.ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/$name.key" 2>/dev/null
  openssl req -new -key "$work/$name.key" -subj "/CN=$HOST" -config "$work/req.cnf" -out "$work/$name.csr"
  openssl x509 -req -in "$work/$name.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days 90 -sha256 -extfile "$work/leaf.ext" \
    -out "$work/$name.crt" 2>/dev/null
}

# publish_source CERT KEY: the annotated source Secret, created or replaced.
# `create secret generic --type` rather than `create secret tls`, which
# refuses a mismatched pair client-side (the bad-key step needs one).
publish_source() {
  k -n "$APP_NAMESPACE" create secret generic "$SOURCE_SECRET" --type=kubernetes.io/tls \
    --from-file=tls.crt="$1" --from-file=tls.key="$2" --dry-run=client -o yaml \
    | k annotate --local -f - certsync.istio.io/autosync=true --overwrite -o yaml \
    | k apply -f -
}

# ------------------------------------------------------------------------
case "${1:-up}" in
  up) ;;
  down)
    resolve_kind
    if cluster_exists; then
      "$KIND" delete cluster --name "$CLUSTER"
    else
      echo "no kind cluster named $CLUSTER"
    fi
    exit 0
    ;;
  pki)
    # The test PKI alone, into directory $2 (no cluster, no Docker): what
    # e2e/tests/kind_manifests.rs checks with cert-sync's own validation.
    [ -n "${2:-}" ] || die "usage: $0 pki DIR"
    mkdir -p "$2"
    make_ca
    make_leaf leaf1
    make_leaf leaf2
    make_leaf leaf3
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/wrong.key" 2>/dev/null
    cp "$work"/ca.crt "$work"/leaf[123].crt "$work"/leaf[123].key "$work/wrong.key" "$2/"
    for name in leaf1 leaf2 leaf3; do
      printf '%s %s\n' "$name" "$(cert_fingerprint "$work/$name.crt")"
    done
    exit 0
    ;;
  *) die "usage: $0 [up|down|pki DIR]" ;;
esac

step "Prerequisites"
need docker "https://docs.docker.com/engine/install/"
need kubectl "https://kubernetes.io/docs/tasks/tools/"
need openssl "your package manager's openssl"
need curl "your package manager's curl"
need cargo "a Rust toolchain (rustup)"
docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable (docker info failed)"
docker buildx version >/dev/null 2>&1 || die "docker buildx (BuildKit) is required: controller/Dockerfile uses cache mounts"
resolve_kind
resolve_istioctl
info "kind $KIND_VERSION: $KIND"
info "istioctl $ISTIO_VERSION: $ISTIOCTL"
info "node image $KIND_NODE_IMAGE"
info "scratch directory $work"

step "Build the filter module, the controller image and the cert-sync CLI"
case "$FILTER_BUILD" in
  host)
    # build-wasm.sh reads target/, whatever CARGO_TARGET_DIR says.
    (cd "$root" && env -u CARGO_TARGET_DIR bash filter/build-wasm.sh >/dev/null) \
      || die "filter/build-wasm.sh failed: run 'bash .ci/bootstrap' once (wasm32-wasip1 target, wasm-opt), or FILTER_BUILD=image"
    filter_source=prebuilt
    ;;
  image) filter_source=build ;;
  *) die "FILTER_BUILD must be host or image, not $FILTER_BUILD" ;;
esac
docker buildx build --load -f "$root/controller/Dockerfile" --build-arg "FILTER_SOURCE=$filter_source" \
  -t "$IMAGE" "$root"
image_id=$(docker image inspect -f '{{.Id}}' "$IMAGE")
ok "image $IMAGE ($image_id), filter from $filter_source stage"
build_cli
ok "cert-sync CLI: $CERT_SYNC"

step "kind cluster $CLUSTER"
phase=cluster
if cluster_exists; then
  info "reusing the existing cluster"
else
  "$KIND" create cluster --name "$CLUSTER" --image "$KIND_NODE_IMAGE" \
    --config "$manifests/kind-cluster.yaml" --wait "${TIMEOUT}s"
fi
k cluster-info >/dev/null
ok "context $context"

step "Istio $ISTIO_VERSION (ingress gateway x$GATEWAY_REPLICAS, proxyStatsMatcher for the filter)"
"$ISTIOCTL" --context "$context" install -y -f "$manifests/istio-operator.yaml"
k -n "$GATEWAY_NAMESPACE" rollout status deployment/istio-ingressgateway --timeout="${TIMEOUT}s"
wait_until "$GATEWAY_REPLICAS running gateway pods" gateway_pods_running
ok "gateway pods: $(gateway_pods | tr '\n' ' ')"

step "Load the image into the cluster"
"$KIND" load docker-image "$IMAGE" --name "$CLUSTER"
ok "$IMAGE loaded"

step "Application namespace, backend and the source TLS Secret"
k apply -f "$manifests/app.yaml"
make_ca
make_leaf leaf1
fp1=$(cert_fingerprint "$work/leaf1.crt")
publish_source "$work/leaf1.crt" "$work/leaf1.key"
k -n "$APP_NAMESPACE" rollout status deployment/echo --timeout="${TIMEOUT}s"
ok "source $APP_NAMESPACE/$SOURCE_SECRET, leaf sha256 $fp1"

step "cert-sync: report token, then the credential overlay (CRD, RBAC, Deployment, Service, PDB)"
if k -n "$GATEWAY_NAMESPACE" get secret "$TOKEN_SECRET" >/dev/null 2>&1; then
  info "report token Secret exists; kept"
else
  k -n "$GATEWAY_NAMESPACE" create secret generic "$TOKEN_SECRET" \
    --from-literal=token="$(openssl rand -hex 32)"
fi
k apply -f "$root/controller/crds/certmerge.yaml"
k wait --for=condition=Established crd/certmerges.certsync.istio.io --timeout="${TIMEOUT}s"
existed=false
k -n "$GATEWAY_NAMESPACE" get deployment "$CONTROLLER_DEPLOYMENT" >/dev/null 2>&1 && existed=true
k apply -k "$root/controller/deploy/overlays/credential"
if [ "$existed" = true ]; then
  info "restarting the controller to pick up the reloaded image"
  k -n "$GATEWAY_NAMESPACE" rollout restart deployment/"$CONTROLLER_DEPLOYMENT"
fi
k -n "$GATEWAY_NAMESPACE" rollout status deployment/"$CONTROLLER_DEPLOYMENT" --timeout="${TIMEOUT}s"
wait_until "a cert-sync leader (Lease $LEASE)" leader_ready
ok "leader $(leader_pod)"

step "Gateway-side objects applied by the controller"
wait_until "EnvoyFilter, Gateway and WasmPlugin cert-sync in $GATEWAY_NAMESPACE" gateway_objects_exist
ok "envoyfilter/cert-sync, gateway/cert-sync-status, wasmplugin/cert-sync"

step "User routing: Gateway (credentialName $APP_NAMESPACE.$SOURCE_SECRET) and VirtualService"
k apply -f "$manifests/gateway.yaml"
wait_until "the published credential $GATEWAY_NAMESPACE/$APP_NAMESPACE.$SOURCE_SECRET" \
  k -n "$GATEWAY_NAMESPACE" get secret "$APP_NAMESPACE.$SOURCE_SECRET" -o name
ok "credential published"

step "Every gateway pod serves the source's leaf"
t0=$SECONDS
wait_until "all gateway pods serving ${fp1:0:12}" all_pods_serve "$fp1"
ok "$GATEWAY_REPLICAS/$GATEWAY_REPLICAS pods serve $fp1 (waited $((SECONDS - t0))s)"
SUMMARY+=("publish: every pod serves ${fp1:0:12} after $((SECONDS - t0))s")

step "HTTPS through the gateway, verified against the test CA"
wait_until "GET https://$HOST/ through the gateway answering 200" https_ok
ok "GET https://$HOST/ -> 200 (chain verified by curl)"
SUMMARY+=("traffic: HTTPS through the gateway, chain verified")

step "cert-sync status: Converged on every pod"
t0=$SECONDS
wait_converged "$fp1"
ok "Converged $GATEWAY_REPLICAS/$GATEWAY_REPLICAS (waited $((SECONDS - t0))s)"
SUMMARY+=("status: Converged $GATEWAY_REPLICAS/$GATEWAY_REPLICAS at ${fp1:0:12}")

step "The filter's stats in every gateway pod (proxyStatsMatcher)"
for pod in $(gateway_pods); do
  stats=$(k -n "$GATEWAY_NAMESPACE" exec "$pod" -c istio-proxy -- pilot-agent request GET stats 2>/dev/null || true)
  sent=$(sed -n 's/^wasmcustom\.cert_sync\.reports_sent: \([0-9]*\)$/\1/p' <<<"$stats" | head -n 1)
  [ "${sent:-0}" -gt 0 ] || die "$pod: no wasmcustom.cert_sync.reports_sent > 0 in Envoy's stats: $(grep -E 'wasm|cert_sync' <<<"$stats" | head -n 20)"
  grep -q 'ssl_context_update_by_sds' <<<"$stats" \
    || die "$pod: ssl_context_update_by_sds is not in Envoy's stats (proxyStatsMatcher not applied?)"
  ok "$pod: reports_sent=$sent, ssl_context_update_by_sds exposed"
done
SUMMARY+=("filter: reporting from every pod; tripwire counters exposed")

step "Rotation: a new leaf"
make_leaf leaf2
fp2=$(cert_fingerprint "$work/leaf2.crt")
[ "$fp2" != "$fp1" ] || die "the new leaf has the old fingerprint"
t0=$SECONDS
publish_source "$work/leaf2.crt" "$work/leaf2.key"
wait_until "all gateway pods serving the rotated leaf ${fp2:0:12}" all_pods_serve "$fp2"
ok "every pod serves $fp2 ($((SECONDS - t0))s after the Secret changed)"
wait_converged "$fp2"
rotated_in=$((SECONDS - t0))
ok "Converged again ${rotated_in}s after the Secret changed"
SUMMARY+=("rotation: every pod serves ${fp2:0:12}, Converged ${rotated_in}s after the change")

step "Bad input: a leaf whose key does not match"
make_leaf leaf3
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/wrong.key" 2>/dev/null
k -n "$APP_NAMESPACE" delete events --field-selector reason=KeyMismatch --ignore-not-found >/dev/null
publish_source "$work/leaf3.crt" "$work/wrong.key"
wait_until "a Warning Event KeyMismatch on $APP_NAMESPACE/$SOURCE_SECRET" key_mismatch_event
k -n "$APP_NAMESPACE" get events --field-selector "reason=KeyMismatch,involvedObject.name=$SOURCE_SECRET" >&2
ok "Warning Event KeyMismatch recorded on the source"
# The refusal is decided before anything is written; give a wrongly
# published pair time to reach the gateways before checking that none did.
sleep 10
all_pods_serve "$fp2" || die "a gateway pod no longer serves the last good leaf ${fp2:0:12}"
ok "every pod still serves the last good leaf $fp2"
[ "$(published_fingerprint)" = "$fp2" ] || die "the published credential changed although the source was refused"
ok "the published credential still holds the last good leaf"
wait_converged "$fp2"
if grep -q 'KeyMismatch' <<<"$LAST_ROW"; then
  ok "cert-sync status marks the publication as kept (KeyMismatch)"
else
  info "note: the status row does not mention KeyMismatch: $LAST_ROW"
fi
SUMMARY+=("bad key: refused (Warning KeyMismatch), every pod keeps ${fp2:0:12}")

phase=finished
step "Summary"
for line in "${SUMMARY[@]}"; do
  printf '    \033[32m✔\033[0m %s\n' "$line" >&2
done
printf '\n    kind %s (%s), Istio %s, %s gateway pods, %ss in all\n' \
  "$KIND_VERSION" "${KIND_NODE_IMAGE%@*}" "$ISTIO_VERSION" "$GATEWAY_REPLICAS" "$((SECONDS - started))" >&2
if [ "${E2E_KIND_DELETE:-0}" = 1 ]; then
  "$KIND" delete cluster --name "$CLUSTER"
else
  printf '    cluster kept: kubectl --context %s ...; delete it with: bash e2e/kind/run.sh down\n' "$context" >&2
fi
echo "kind e2e: passed"
