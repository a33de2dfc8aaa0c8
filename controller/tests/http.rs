//! The controller's HTTP server over real sockets: each route's status,
//! headers and body, the filter module's ETag round trip, readiness
//! following the ready channel, bounded request bodies on merged routes,
//! and graceful shutdown ending `serve`.
//!
//! Requests are written by hand on a `TcpStream`, so the test depends on
//! nothing but HTTP/1.1 itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use certsync_controller::core::model::ObjectRef;
use certsync_controller::runtime::ops::http::{
    router, serve, serve_router, HttpState, DEFAULT_BODY_LIMIT,
};
use certsync_controller::runtime::ops::metrics::{
    ApiOutcome, ApiVerb, Metrics, FAMILIES, ON_DEMAND_FAMILIES,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const MODULE: &[u8] = b"\0asm\x01\0\0\0 not really a filter, but bytes all the same";

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Splits a complete HTTP/1.1 response (the connection was closed after it).
fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = std::str::from_utf8(&raw[..split]).expect("utf-8 head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&raw[..eol]).expect("utf-8 size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}

/// One request on its own connection (`Connection: close`).
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: cert-sync\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    parse(&raw)
}

async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[]).await
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve ends after shutdown")
            .expect("serve task")
    }
}

async fn start_with<F, Fut>(serve_fn: F) -> Server
where
    F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(serve_fn(listener, stopped));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn start(state: Arc<HttpState>) -> Server {
    start_with(|listener, stopped| {
        serve(listener, state, async move {
            let _ = stopped.await;
        })
    })
    .await
}

fn state(ready: watch::Receiver<bool>, module: Option<&[u8]>) -> Arc<HttpState> {
    Arc::new(HttpState::new(
        Metrics::new(),
        ready,
        module.map(|m| Arc::new(m.to_vec())),
    ))
}

#[tokio::test]
async fn healthz_metrics_and_unknown_routes() {
    let (_ready_tx, ready) = watch::channel(false);
    let state = state(ready, None);
    let metrics = state.metrics().clone();
    let server = start(state).await;

    let r = get(server.addr, "/healthz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");

    metrics.set_leader(true);
    metrics.refused("Expired");
    metrics.set_not_after(&ObjectRef::new("shop", "shop-tls"), 1_900_000_000);
    metrics.api_request(ApiVerb::Create, ApiOutcome::Ok);
    let r = get(server.addr, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    // Every pre-set family, and the two labelled ones given a series above.
    let populated = [
        "certsync_source_not_after_seconds",
        "certsync_api_requests_total",
    ];
    let expected = FAMILIES
        .iter()
        .filter(|f| !ON_DEMAND_FAMILIES.contains(f) || populated.contains(f));
    for family in expected {
        assert!(text.contains(&format!("# TYPE {family} ")), "{family}");
    }
    assert!(text.contains("\ncertsync_leader 1\n"), "{text}");
    assert!(text.contains("certsync_refusals_total{reason=\"Expired\"} 1\n"));
    assert!(!text.contains("# EOF"));

    // A scraper that asks for OpenMetrics gets it.
    let r = request(
        server.addr,
        "GET",
        "/metrics",
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )],
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/openmetrics-text")));
    assert!(r.text().ends_with("# EOF\n"));

    assert_eq!(get(server.addr, "/nope").await.status, 404);
    let r = request(server.addr, "POST", "/healthz", &[("Content-Length", "0")]).await;
    assert_eq!(r.status, 405);

    server.stop().await.expect("serve result");
}

#[tokio::test]
async fn readyz_follows_the_ready_channel() {
    let (ready_tx, ready) = watch::channel(false);
    let server = start(state(ready, None)).await;

    let r = get(server.addr, "/readyz").await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains("not ready"), "{}", r.text());

    ready_tx.send_replace(true);
    let r = get(server.addr, "/readyz").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");

    ready_tx.send_replace(false);
    assert_eq!(get(server.addr, "/readyz").await.status, 503);

    // Liveness does not depend on readiness.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    server.stop().await.expect("serve result");
}

#[tokio::test]
async fn filter_wasm_etag_round_trip() {
    let (_ready_tx, ready) = watch::channel(true);
    let state = state(ready, Some(MODULE));
    let hex: String = Sha256::digest(MODULE)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(state.filter_sha256(), Some(hex.as_str()));
    let etag = format!("\"sha256:{hex}\"");
    let server = start(state).await;

    let r = get(server.addr, "/v1/filter.wasm").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/wasm"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(
        r.header("content-length"),
        Some(MODULE.len().to_string().as_str())
    );
    assert_eq!(r.body, MODULE);

    // Revalidation with the ETag just received: 304, no body.
    let r = request(
        server.addr,
        "GET",
        "/v1/filter.wasm",
        &[("If-None-Match", &etag)],
    )
    .await;
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.is_empty());

    // Weak and listed forms match too; another tag does not.
    let weak_list = format!("\"sha256:other\", W/{etag}");
    let r = request(
        server.addr,
        "GET",
        "/v1/filter.wasm",
        &[("If-None-Match", &weak_list)],
    )
    .await;
    assert_eq!(r.status, 304);
    let stale = "\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"";
    let r = request(
        server.addr,
        "GET",
        "/v1/filter.wasm",
        &[("If-None-Match", stale)],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, MODULE);

    // HEAD: the headers of a GET, no body.
    let r = request(server.addr, "HEAD", "/v1/filter.wasm", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.is_empty());

    server.stop().await.expect("serve result");
}

#[tokio::test]
async fn the_content_addressed_path_serves_only_its_own_digest() {
    let (_ready_tx, ready) = watch::channel(true);
    let hex: String = Sha256::digest(MODULE)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let server = start(state(ready, Some(MODULE))).await;
    let path = certsync_contract::wire::module_path(&hex);
    let r = get(server.addr, &path).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, MODULE);
    assert_eq!(r.header("content-type"), Some("application/wasm"));
    // Another build's digest (a replica of another version answering): 503,
    // which istio-agent retries (a 4xx it would not), never bytes that
    // mismatch the WasmPlugin.
    let other = certsync_contract::wire::module_path(&"0".repeat(64));
    let r = get(server.addr, &other).await;
    assert_eq!(r.status, 503);
    assert!(r.text().contains(&hex), "{}", r.text());
    for malformed in ["/v1/filter/x", "/v1/filter/x.wasm"] {
        assert_eq!(get(server.addr, malformed).await.status, 404, "{malformed}");
    }
    let upper = certsync_contract::wire::module_path(&hex.to_uppercase());
    assert_eq!(get(server.addr, &upper).await.status, 404);
    server.stop().await.expect("serve result");

    let (_ready_tx, ready) = watch::channel(true);
    let server = start(state(ready, None)).await;
    assert_eq!(get(server.addr, &path).await.status, 503);
    server.stop().await.expect("serve result");
}

#[tokio::test]
async fn filter_wasm_without_a_module_is_503() {
    let (_ready_tx, ready) = watch::channel(true);
    let server = start(state(ready, None)).await;
    let r = get(server.addr, "/v1/filter.wasm").await;
    assert_eq!(r.status, 503);
    assert!(r.header("etag").is_none());
    assert!(r.text().contains("without"), "{}", r.text());
    server.stop().await.expect("serve result");
}

/// Sends `POST /echo` with `body`, either with a Content-Length or chunked.
async fn post_echo(addr: SocketAddr, body: &[u8], chunked: bool) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut req = Vec::new();
    req.extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: cert-sync\r\nConnection: close\r\n");
    if chunked {
        req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for chunk in body.chunks(64 * 1024) {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
    } else {
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
    }
    let (mut rd, mut wr) = stream.split();
    // Write and read at once: the server may answer before reading it all.
    let write = async {
        let _ = wr.write_all(&req).await;
    };
    let mut raw = Vec::new();
    let read = async {
        let _ = rd.read_to_end(&mut raw).await;
    };
    tokio::time::timeout(Duration::from_secs(10), async { tokio::join!(write, read) })
        .await
        .expect("response in time");
    parse(&raw)
}

#[tokio::test]
async fn request_bodies_of_merged_routes_are_bounded() {
    let (_ready_tx, ready) = watch::channel(true);
    let app = router(state(ready, None)).merge(Router::new().route(
        "/echo",
        post(|body: Bytes| async move { body.len().to_string() }),
    ));
    let server = start_with(|listener, stopped| {
        serve_router(listener, app, async move {
            let _ = stopped.await;
        })
    })
    .await;

    let r = post_echo(server.addr, b"hello", false).await;
    assert_eq!((r.status, r.text().as_str()), (200, "5"));
    let exactly = vec![b'x'; DEFAULT_BODY_LIMIT];
    let r = post_echo(server.addr, &exactly, true).await;
    assert_eq!((r.status, r.text()), (200, DEFAULT_BODY_LIMIT.to_string()));

    // Declared too large: refused before any of it is read.
    let too_large = vec![b'x'; DEFAULT_BODY_LIMIT + 1];
    let r = post_echo(server.addr, &too_large, false).await;
    assert_eq!(r.status, 413);
    // Streamed without a length: reading stops at the limit.
    let r = post_echo(server.addr, &too_large, true).await;
    assert_eq!(r.status, 413);

    // The built-in routes are still there.
    assert_eq!(get(server.addr, "/healthz").await.status, 200);
    server.stop().await.expect("serve result");
}

#[tokio::test]
async fn shutdown_ends_serve_even_with_an_idle_keep_alive_connection() {
    let (_ready_tx, ready) = watch::channel(true);
    let server = start(state(ready, None)).await;

    // A keep-alive connection that has been answered and now sits idle.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: cert-sync\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"ok\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));

    let addr = server.addr;
    server
        .stop()
        .await
        .expect("serve returns Ok after shutdown");

    // The idle connection was closed, and nothing listens any more.
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(TcpStream::connect(addr).await.is_err());
}
