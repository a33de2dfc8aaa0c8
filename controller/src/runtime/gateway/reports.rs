//! `POST /v1/reports`: what each gateway pod's filter says it serves.
//!
//! # Who may report
//!
//! A report counts only if a live gateway pod sends it about itself:
//!
//! 1. **Bearer token.** The controller hands the filter a token through the
//!    WasmPlugin's `pluginConfig` (`report_token`); a request without it, or
//!    with another, is refused (401) before its body is parsed. The token
//!    proves "this is our filter", not which pod.
//! 2. **Pod identity.** The report names a pod; it must be a Ready pod that
//!    matches the gateway selector in the gateway namespace (403 otherwise).
//! 3. **Source address.** The connection must come from that pod's
//!    one of its `status.podIPs` (403 otherwise), so one gateway pod cannot report for
//!    another, and a stolen token is useless outside the gateway pods. This
//!    needs the controller to see the pod's address: it runs without a
//!    sidecar (`sidecar.istio.io/inject: "false"`). `--report-source-check=false`
//!    turns it off where a proxy in between hides the address.
//!
//! Bodies are bounded (`MAX_REPORT_BYTES`, then `Report::decode`'s checks),
//! a replayed or reordered report (sequence not moving forward) is refused
//! (409). A standby passes a report on to the leader and returns its
//! answer (`forward`), keeping the report too so a leader change loses
//! none; without a reachable leader it answers 503 and the filter retries.
//! Every answer is counted in `certsync_reports_total{outcome}`.
//! Nothing here blocks: the observation is stored under a short lock and
//! the rollout loop is poked only when what the pod serves changed.

use crate::core::rollout::{self, Observation};
use crate::runtime::gateway::forward::{Forwarded, Forwarder, FORWARDED_FOR, FORWARD_KEY};
use crate::runtime::gateway::pods::GatewayPods;
use crate::runtime::ops::metrics::{Metrics, ReportOutcome};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use certsync_contract::report::{Report, ReportError, REPORT_PATH};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, Notify};

/// Where reports land, and what judging them needs.
pub struct ReportSink {
    /// SHA-256 of the expected token: compared digest to digest, so the
    /// comparison's time does not depend on how much of a guess was right.
    token_digest: Option<[u8; 32]>,
    check_source: bool,
    gateway_namespace: String,
    pods: GatewayPods,
    leading: watch::Receiver<bool>,
    metrics: Metrics,
    observations: Mutex<BTreeMap<String, Observation>>,
    /// Poked when a pod's served certificates change.
    changed: Arc<Notify>,
    /// Passes reports to the leader while this replica stands by.
    forwarder: Option<Forwarder>,
}

/// How the sink judges reports.
#[derive(Debug, Clone)]
pub struct ReportAuth {
    /// `None` accepts reports without a token (only sensible with the source check).
    pub token: Option<String>,
    pub check_source: bool,
}

impl ReportSink {
    pub fn new(
        auth: ReportAuth,
        gateway_namespace: &str,
        pods: GatewayPods,
        leading: watch::Receiver<bool>,
        metrics: Metrics,
        changed: Arc<Notify>,
    ) -> Self {
        ReportSink {
            token_digest: auth.token.map(|t| Sha256::digest(t.as_bytes()).into()),
            check_source: auth.check_source,
            gateway_namespace: gateway_namespace.to_owned(),
            pods,
            leading,
            metrics,
            observations: Mutex::new(BTreeMap::new()),
            changed,
            forwarder: None,
        }
    }

    /// Standing by, pass reports on to the leader `forwarder` finds.
    pub fn with_forwarder(mut self, forwarder: Forwarder) -> Self {
        self.forwarder = Some(forwarder);
        self
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Observation>> {
        // A panic while holding the lock cannot leave a half-written map
        // (each update is one insert), so a poisoned lock is still usable.
        self.observations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The last accepted report of every pod that ever reported.
    pub fn observations(&self) -> BTreeMap<String, Observation> {
        self.lock().clone()
    }

    /// Forgets pods that are gone, so their reports cannot count again.
    pub fn retain_pods(&self, live: &std::collections::BTreeSet<String>) {
        self.lock().retain(|pod, _| live.contains(pod));
    }

    fn authorized(&self, header: Option<&str>) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let Some(token) = header.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        let got: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        got.iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Judges and stores one report; the answer's status and a short reason.
    pub fn receive(
        &self,
        authorization: Option<&str>,
        peer: Option<SocketAddr>,
        body: &[u8],
        now_ms: i64,
    ) -> (ReportOutcome, &'static str) {
        if !*self.leading.borrow() {
            return (ReportOutcome::NotLeader, "not the leader; retry");
        }
        self.judge(authorization, peer, body, now_ms)
    }

    /// [`ReportSink::receive`] whether or not this replica leads.
    fn judge(
        &self,
        authorization: Option<&str>,
        peer: Option<SocketAddr>,
        body: &[u8],
        now_ms: i64,
    ) -> (ReportOutcome, &'static str) {
        if !self.authorized(authorization) {
            return (
                ReportOutcome::Unauthenticated,
                "missing or wrong bearer token",
            );
        }
        let report = match Report::decode(body) {
            Ok(r) => r,
            Err(ReportError::TooLarge { .. } | ReportError::TooManyCertificates(_)) => {
                return (ReportOutcome::TooLarge, "report over the size bounds")
            }
            Err(_) => return (ReportOutcome::Malformed, "not a valid version-1 report"),
        };
        if report.pod.namespace != self.gateway_namespace {
            return (ReportOutcome::Forbidden, "not a gateway pod");
        }
        let Some(pod) = self
            .pods
            .live()
            .into_iter()
            .find(|p| p.name == report.pod.name)
        else {
            return (ReportOutcome::Forbidden, "not a live gateway pod");
        };
        if self.check_source {
            let from = peer.map(|p| p.ip().to_canonical());
            if !from.is_some_and(|from| pod.ips.iter().any(|ip| ip.to_canonical() == from)) {
                return (
                    ReportOutcome::Forbidden,
                    "report does not come from the pod's address",
                );
            }
        }
        let observation = Observation::from_report(&report, now_ms);
        let mut observations = self.lock();
        let previous = observations.get(&report.pod.name);
        if !rollout::accepts(previous, &report) {
            return (ReportOutcome::Stale, "sequence number did not move forward");
        }
        let changed = previous.is_none_or(|p| !p.same_content(&observation));
        observations.insert(report.pod.name.clone(), observation);
        drop(observations);
        if changed {
            self.changed.notify_one();
        }
        (ReportOutcome::Accepted, "accepted")
    }
}

/// The report route, to merge into the controller's router.
pub fn router(sink: Arc<ReportSink>) -> Router {
    Router::new()
        .route(REPORT_PATH, post(post_report))
        .with_state(sink)
}

async fn post_report(State(sink): State<Arc<ReportSink>>, request: Request) -> Response {
    // Read before the body: the request (its body is not Sync) must not be
    // borrowed across an await.
    let (authorization, forwarded_for, peer) = {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        // A standby's forward names the gateway pod's address; believed
        // only with this replica's own key.
        let forwarded_for = sink.forwarder.as_ref().and_then(|f| {
            f.forwarded_for(
                header(FORWARD_KEY).as_deref(),
                header(FORWARDED_FOR).as_deref(),
            )
        });
        let peer = match forwarded_for {
            Some(ip) => Some(SocketAddr::new(ip, 0)),
            None => request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        };
        (header(AUTHORIZATION.as_str()), forwarded_for, peer)
    };
    let body: Bytes = match axum::body::to_bytes(
        request.into_body(),
        certsync_contract::report::MAX_REPORT_BYTES,
    )
    .await
    {
        Ok(b) => b,
        Err(_) => {
            sink.metrics.report(ReportOutcome::TooLarge);
            return (StatusCode::PAYLOAD_TOO_LARGE, "report too large\n").into_response();
        }
    };
    let now_ms = jiff::Timestamp::now().as_millisecond();
    // Never forwarded twice: a forward that lands on a replica that no
    // longer leads is answered 503, and the filter retries.
    if !*sink.leading.borrow() && forwarded_for.is_none() {
        if let Some(forwarder) = &sink.forwarder {
            let ip = peer.map(|p| p.ip());
            match forwarder
                .forward(authorization.as_deref(), ip, body.clone())
                .await
            {
                Forwarded::Answered(status, answer) => {
                    if status == StatusCode::NO_CONTENT {
                        sink.metrics.report(ReportOutcome::Forwarded);
                        // Kept, judged as the leader judged it: should this
                        // replica lead next, it starts from every pod's
                        // latest report rather than from nothing.
                        let _ = sink.judge(authorization.as_deref(), peer, &body, now_ms);
                    }
                    return (status, answer).into_response();
                }
                Forwarded::NotForwarded(why) => {
                    tracing::debug!(%why, "report not forwarded to the leader");
                }
            }
        }
    }
    let (outcome, why) = sink.receive(authorization.as_deref(), peer, &body, now_ms);
    sink.metrics.report(outcome);
    if outcome != ReportOutcome::Accepted {
        tracing::debug!(outcome = outcome.as_str(), ?peer, "report refused: {why}");
    }
    let status = match outcome {
        ReportOutcome::Accepted => StatusCode::NO_CONTENT,
        ReportOutcome::Unauthenticated => StatusCode::UNAUTHORIZED,
        ReportOutcome::Forbidden => StatusCode::FORBIDDEN,
        ReportOutcome::Malformed => StatusCode::BAD_REQUEST,
        ReportOutcome::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ReportOutcome::Stale => StatusCode::CONFLICT,
        ReportOutcome::NotLeader | ReportOutcome::Forwarded => {
            // A fresh connection may land on the leader behind the Service.
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(RETRY_AFTER, "1"), (CONNECTION, "close")],
                format!("{why}\n"),
            )
                .into_response();
        }
    };
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (status, format!("{why}\n")).into_response()
}
