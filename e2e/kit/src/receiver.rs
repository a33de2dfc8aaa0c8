//! An in-process stand-in for the controller's report endpoint.
//!
//! It listens on `127.0.0.1:<port>` (hyper, HTTP/1.1) on a tokio runtime of
//! its own, so plain synchronous tests can use it, records every
//! `POST /v1/reports` with its arrival time, headers and decoded
//! [`Report`], and can be switched at run time between answering normally,
//! failing, answering slowly and being down, to exercise the filter's retry
//! and backoff against a real Envoy.

use anyhow::{anyhow, bail, Context, Result};
use certsync_contract::report::{Report, MAX_REPORT_BYTES, REPORT_PATH};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Runtime;
use tokio::sync::watch;

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverMode {
    /// 200 for a valid report (400 if it does not decode, 401 on a wrong token).
    Ok,
    /// Records the report, then answers with this status (e.g. 500, 503).
    Fail(u16),
    /// Records the report, waits this long, then answers as `Ok` would.
    Slow(Duration),
    /// Not listening: new connections are refused and open ones closed.
    Down,
}

/// One `POST /v1/reports` as received.
#[derive(Debug, Clone)]
pub struct ReceivedReport {
    /// 0 for the first report this receiver saw.
    pub index: usize,
    pub at: Instant,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// The decoded report, if the body was one.
    pub report: Option<Report>,
    pub decode_error: Option<String>,
    /// The status the receiver answered (or, in `Slow` mode, will answer).
    pub status: u16,
}

impl ReceivedReport {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    reports: Vec<ReceivedReport>,
    /// `METHOD path` of requests that were not report posts.
    other_requests: Vec<String>,
    required_token: Option<String>,
    listening: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The report receiver; stops when dropped.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    mode: watch::Sender<ReceiverMode>,
    runtime: Option<Runtime>,
}

impl Receiver {
    /// Starts listening on a free port on 127.0.0.1 in `Ok` mode.
    pub fn start() -> Result<Receiver> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("certsync-receiver")
            .enable_all()
            .build()
            .context("starting the receiver's runtime")?;
        let listener = runtime.block_on(bind(0))?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                listening: true,
                ..State::default()
            }),
            changed: Condvar::new(),
        });
        let (mode, _) = watch::channel(ReceiverMode::Ok);
        runtime.spawn(serve(listener, port, shared.clone(), mode.clone()));
        Ok(Receiver {
            port,
            shared,
            mode,
            runtime: Some(runtime),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn mode(&self) -> ReceiverMode {
        self.mode.borrow().clone()
    }

    /// Switches mode. Switching to or from `Down` returns once the listener
    /// is closed or listening again on the same port.
    pub fn set_mode(&self, mode: ReceiverMode) -> Result<()> {
        let want_listening = mode != ReceiverMode::Down;
        self.mode.send_replace(mode);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut state = self.shared.lock();
        while state.listening != want_listening {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "receiver did not {} within 5s",
                    if want_listening {
                        "listen again"
                    } else {
                        "stop listening"
                    }
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    /// Requires `authorization: Bearer <token>` on reports (401 otherwise); `None` accepts any.
    pub fn require_token(&self, token: Option<&str>) {
        self.shared.lock().required_token = token.map(str::to_owned);
    }

    /// Every report received so far, in arrival order.
    pub fn reports(&self) -> Vec<ReceivedReport> {
        self.shared.lock().reports.clone()
    }

    pub fn count(&self) -> usize {
        self.shared.lock().reports.len()
    }

    /// The most recent report that decoded.
    pub fn last_report(&self) -> Option<Report> {
        self.shared
            .lock()
            .reports
            .iter()
            .rev()
            .find_map(|r| r.report.clone())
    }

    /// `METHOD path` of requests other than report posts.
    pub fn other_requests(&self) -> Vec<String> {
        self.shared.lock().other_requests.clone()
    }

    /// Forgets everything received so far (indices keep counting from 0 again).
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.reports.clear();
        state.other_requests.clear();
    }

    /// Waits until `predicate` holds for the reports received so far and
    /// returns them; errors after `timeout`, saying how many had arrived.
    pub fn wait_for(
        &self,
        mut predicate: impl FnMut(&[ReceivedReport]) -> bool,
        timeout: Duration,
    ) -> Result<Vec<ReceivedReport>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if predicate(&state.reports) {
                return Ok(state.reports.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let last = state
                    .reports
                    .last()
                    .map(|r| {
                        format!(
                            "; the last answered {}: {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        )
                    })
                    .unwrap_or_default();
                return Err(anyhow!(
                    "timed out after {timeout:?} waiting for reports: {} received{last}",
                    state.reports.len()
                ));
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until at least `n` reports have arrived.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> Result<Vec<ReceivedReport>> {
        self.wait_for(|reports| reports.len() >= n, timeout)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Does not block, so dropping inside an async test is fine.
            runtime.shutdown_background();
        }
    }
}

async fn bind(port: u16) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .with_context(|| format!("binding the receiver to 127.0.0.1:{port}"))?;
    Ok(socket.listen(1024)?)
}

fn set_listening(shared: &Shared, listening: bool) {
    shared.lock().listening = listening;
    shared.changed.notify_all();
}

/// Accepts connections while not `Down`; closes the listener while `Down`
/// and binds the same port again afterwards.
async fn serve(
    mut listener: TcpListener,
    port: u16,
    shared: Arc<Shared>,
    mode: watch::Sender<ReceiverMode>,
) {
    let mut mode_rx = mode.subscribe();
    loop {
        let down = *mode_rx.borrow_and_update() == ReceiverMode::Down;
        if down {
            drop(listener);
            set_listening(&shared, false);
            loop {
                if mode_rx.changed().await.is_err() {
                    return;
                }
                if *mode_rx.borrow_and_update() != ReceiverMode::Down {
                    break;
                }
            }
            listener = loop {
                match bind(port).await {
                    Ok(l) => break l,
                    // The port may linger briefly; Down→up is rare, so retry.
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            set_listening(&shared, true);
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(connection(stream, shared.clone(), mode.subscribe()));
                }
            }
            changed = mode_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Serves one connection until it ends or the receiver goes `Down`.
async fn connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    mut mode: watch::Receiver<ReceiverMode>,
) {
    let service_shared = shared.clone();
    let service_mode = mode.clone();
    let service =
        service_fn(move |request| handle(request, service_shared.clone(), service_mode.clone()));
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = mode.wait_for(|m| *m == ReceiverMode::Down) => {
            // Dropping the connection closes the socket.
        }
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    mode: watch::Receiver<ReceiverMode>,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if method != Method::POST || path != REPORT_PATH {
        shared
            .lock()
            .other_requests
            .push(format!("{method} {path}"));
        return Ok(respond(StatusCode::NOT_FOUND, "not found"));
    }
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let authorization = headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone());
    let body = match Limited::new(request.into_body(), MAX_REPORT_BYTES + 1)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(_) => {
            return Ok(respond(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or broken",
            ))
        }
    };
    let (report, decode_error) = match Report::decode(&body) {
        Ok(report) => (Some(report), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let current_mode = mode.borrow().clone();
    let (status, delay) = {
        let mut state = shared.lock();
        let ok_status = if state.required_token.as_ref().is_some_and(|token| {
            authorization.as_deref() != Some(format!("Bearer {token}").as_str())
        }) {
            StatusCode::UNAUTHORIZED
        } else if report.is_none() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        let (status, delay) = match &current_mode {
            ReceiverMode::Fail(code) => (
                StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                None,
            ),
            ReceiverMode::Slow(delay) => (ok_status, Some(*delay)),
            ReceiverMode::Ok | ReceiverMode::Down => (ok_status, None),
        };
        let index = state.reports.len();
        state.reports.push(ReceivedReport {
            index,
            at,
            headers,
            authorization,
            body,
            report,
            decode_error: decode_error.clone(),
            status: status.as_u16(),
        });
        (status, delay)
    };
    shared.changed.notify_all();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let text = match (status, decode_error) {
        (StatusCode::OK, _) => "ok".to_owned(),
        (StatusCode::BAD_REQUEST, Some(e)) => e,
        (status, _) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    Ok(respond(status, &text))
}

fn respond(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() = status;
    response
}
