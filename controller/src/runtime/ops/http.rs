//! The controller's HTTP server: probes for the kubelet, metrics for
//! Prometheus, and the filter module for the gateway pods.
//!
//! | route | answer |
//! |---|---|
//! | `GET /healthz` | 200 `ok` while the process serves at all (liveness) |
//! | `GET /readyz` | 200 once the caches are synced, else 503 with a reason (readiness) |
//! | `GET /metrics` | Prometheus text 0.0.4, or OpenMetrics if the scraper asks for it |
//! | `GET /v1/filter/<sha256>.wasm` | the proxy-wasm module if its SHA-256 is `<sha256>`; 503 naming the one served for another digest; 404 for a malformed name |
//! | `GET /v1/filter.wasm` | the module whatever its digest (for the static manifest), `ETag: "sha256:<hex>"`, 304 on a matching `If-None-Match`; 503 when started without a module |
//!
//! Istio's WasmPlugin fetches the module over plain HTTP from this server,
//! pinned by the `sha256` the controller writes into the WasmPlugin, so no
//! OCI registry is needed. The controller's WasmPlugin uses the
//! content-addressed path: while replicas of two versions sit behind the
//! Service (a rolling upgrade), a fetch that lands on the other version gets
//! a 503, which istio-agent retries (it retries 5xx but 501/505/511, and
//! gives up at once on a 4xx: istio 1.28.10 `pkg/wasm/httpfetcher.go:112-140`),
//! never bytes whose digest mismatches (not retried: it falls back to
//! `FAIL_OPEN`, `pkg/wasm/cache.go:275`, `pkg/wasm/convert.go:132-151`). The module is
//! served from process start, before `/readyz` passes, and the leader checks
//! it through the Service before pointing a WasmPlugin at it
//! (`runtime::gateway::module`).
//!
//! More routes (reports, status) are added by merging into [`router`] and
//! serving the result with [`serve_router`], which bounds every request body
//! (to the largest report, 2 MiB) for all routes, merged ones included: a report
//! endpoint that gateway pods can reach must not let one buffer unbounded
//! input.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;

use super::metrics::Metrics;

/// Largest request body any route accepts, unless [`bounded`] is given
/// another limit.
pub const DEFAULT_BODY_LIMIT: usize = certsync_contract::report::MAX_REPORT_BYTES;

/// `Content-Type` of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// `Content-Type` of the OpenMetrics text format.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// `Content-Type` of a WebAssembly module.
pub const WASM: &str = "application/wasm";

/// The filter module, with its digest computed once.
#[derive(Debug, Clone)]
struct FilterModule {
    bytes: Bytes,
    sha256_hex: String,
    etag: HeaderValue,
}

/// What the handlers read. Shared by every connection.
#[derive(Debug)]
pub struct HttpState {
    metrics: Metrics,
    ready: watch::Receiver<bool>,
    filter: Option<FilterModule>,
}

impl HttpState {
    /// `ready` turns `true` once the controller's caches are synced (and may
    /// turn `false` again); `filter_wasm` is the proxy-wasm module the
    /// WasmPlugin downloads, if the controller was given one.
    pub fn new(
        metrics: Metrics,
        ready: watch::Receiver<bool>,
        filter_wasm: Option<Arc<Vec<u8>>>,
    ) -> Self {
        let filter = filter_wasm.map(|module| {
            let sha256_hex = hex(&Sha256::digest(module.as_slice()));
            // Hex digits and quotes only: always a valid header value.
            let etag = HeaderValue::from_str(&format!("\"sha256:{sha256_hex}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"sha256:\""));
            let bytes = Bytes::from_owner(ArcBytes(module));
            FilterModule {
                bytes,
                sha256_hex,
                etag,
            }
        });
        HttpState {
            metrics,
            ready,
            filter,
        }
    }

    /// The metrics served at `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Lowercase hex SHA-256 of the served filter module: the value for the
    /// WasmPlugin's `sha256`.
    pub fn filter_sha256(&self) -> Option<&str> {
        self.filter.as_ref().map(|f| f.sha256_hex.as_str())
    }
}

/// Lets `Bytes` borrow the module without copying it.
struct ArcBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// The built-in routes, with their state applied. Merge more routes into
/// the result (`router(state).merge(other)`), then serve it with
/// [`serve_router`].
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(certsync_contract::wire::MODULE_PATH, get(filter_wasm))
        .route("/v1/filter/{file}", get(filter_wasm_by_digest))
        .with_state(state)
}

/// Bounds every request body of `router` to `limit` bytes: a declared
/// `Content-Length` above it is answered 413 at once, and a streamed body
/// stops being read at the limit (extractors then answer 413).
pub fn bounded(router: Router, limit: usize) -> Router {
    router
        // axum's extractors have a limit of their own (2 MiB unless told):
        // the same value, so neither is stricter than the other.
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
}

/// Serves the built-in routes until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<HttpState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_router(listener, router(state), shutdown).await
}

/// Serves `router` (bounded to [`DEFAULT_BODY_LIMIT`]) until `shutdown`
/// completes, then stops accepting, lets requests in flight finish and
/// returns.
pub async fn serve_router(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("HTTP listener address")?;
    tracing::info!(%addr, "HTTP server listening");
    // Handlers see the peer address (the report endpoint checks it).
    let app = bounded(router, DEFAULT_BODY_LIMIT)
        .into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .with_context(|| format!("HTTP server on {addr}"))?;
    tracing::info!(%addr, "HTTP server stopped");
    Ok(())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<HttpState>>) -> Response {
    if *state.ready.borrow() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches not synced\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (OPENMETRICS_TEXT, state.metrics.encode_openmetrics())
    } else {
        (PROMETHEUS_TEXT, state.metrics.encode())
    };
    ([(CONTENT_TYPE, content_type)], body).into_response()
}

async fn filter_wasm(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let Some(module) = &state.filter else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no filter module: the controller was started without one\n",
        )
            .into_response();
    };
    // Fetchers revalidate every time; the answer is a 304 while unchanged.
    let cache = (CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if if_none_match_hits(&headers, &module.etag) {
        return (
            StatusCode::NOT_MODIFIED,
            [(ETAG, module.etag.clone()), cache],
        )
            .into_response();
    }
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(WASM)),
            (ETAG, module.etag.clone()),
            cache,
        ],
        module.bytes.clone(),
    )
        .into_response()
}

async fn filter_wasm_by_digest(
    State(state): State<Arc<HttpState>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let asked = file.strip_suffix(".wasm").unwrap_or_default();
    let is_digest = asked.len() == 64
        && asked
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    match &state.filter {
        _ if !is_digest => (
            StatusCode::NOT_FOUND,
            "not a module: /v1/filter/<sha256 in lowercase hex>.wasm\n",
        )
            .into_response(),
        Some(module) if asked == module.sha256_hex => filter_wasm(State(state), headers).await,
        // Another version's replica (or one without a module): retryable,
        // so istio-agent's next attempt may reach one that has it.
        Some(module) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this replica serves the filter module sha256 {}, not {asked}\n",
                module.sha256_hex
            ),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no filter module: this replica was started without one\n",
        )
            .into_response(),
    }
}

/// `If-None-Match` uses the weak comparison (RFC 9110 §13.1.2): `*`, or any
/// listed tag equal to ours once a `W/` prefix is dropped.
fn if_none_match_hits(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default();
    headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_str(value).expect("header"));
        h
    }

    #[test]
    fn if_none_match_weak_comparison() {
        let etag = HeaderValue::from_static("\"sha256:ab\"");
        assert!(if_none_match_hits(&headers("\"sha256:ab\""), &etag));
        assert!(if_none_match_hits(&headers("W/\"sha256:ab\""), &etag));
        assert!(if_none_match_hits(&headers("\"x\", \"sha256:ab\""), &etag));
        assert!(if_none_match_hits(&headers("*"), &etag));
        assert!(!if_none_match_hits(&headers("\"sha256:cd\""), &etag));
        assert!(!if_none_match_hits(&headers("sha256:ab"), &etag));
        assert!(!if_none_match_hits(&HeaderMap::new(), &etag));
    }

    #[test]
    fn filter_digest_is_the_sha256_of_the_module() {
        let (_tx, rx) = watch::channel(false);
        let state = HttpState::new(Metrics::new(), rx, Some(Arc::new(b"abc".to_vec())));
        assert_eq!(
            state.filter_sha256(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        let (_tx, rx) = watch::channel(false);
        assert_eq!(
            HttpState::new(Metrics::new(), rx, None).filter_sha256(),
            None
        );
    }
}
