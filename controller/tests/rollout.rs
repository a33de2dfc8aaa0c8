//! Rollout verification against the fake API server: reports from gateway
//! pods (who may report), per-pod states, convergence, the re-trigger
//! ladder's writes and Events, expiry and drift warnings, and the status
//! surfaces (manifest ConfigMap, `/v1/status`, metrics).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use certsync_controller::core::model::keys::REPUSHED_AT;
use certsync_controller::core::rollout::{PodState, RolloutState};
use certsync_controller::core::status::Publications;
use certsync_controller::core::status::StatusView;
use certsync_controller::runtime::gateway::reports::ReportSink;
use certsync_controller::runtime::ops::metrics::{Metrics, ReportOutcome};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::watch;

const RESOURCE: &str = "kubernetes://shop.shop-tls";
const TIMEOUT_MS: i64 = 10_000;
/// The rollout clock: the fixtures' NOW, in milliseconds.
const T0: i64 = NOW * 1000;

struct Harness {
    rig: Rig,
    sink: Arc<ReportSink>,
    verifier: Verifier,
    metrics: Metrics,
    /// Publications handed to the verifier instead of the rig's (a
    /// restarted controller that has only the manifest).
    publications: Option<Publications>,
    _leading: watch::Sender<bool>,
}

async fn mk_verifier(
    pods: &[(&str, &str, bool)],
    evict: bool,
    expiry_warning: Duration,
) -> Harness {
    let rig = Rig::new(credential_policy(), None).await;
    for (name, ip, ready) in pods {
        rig.server.put(mk_gateway_pod(name, ip, *ready)).unwrap();
    }
    let client = rig.server.client().unwrap();
    let settings = VerifySettings {
        evict,
        expiry_warning,
        ..verify_settings(
            Duration::from_secs(30),
            Duration::from_millis(TIMEOUT_MS as u64),
        )
    };
    let Verification {
        sink,
        verifier,
        metrics,
        leading,
    } = mk_verification(&client, settings, &rig.ctx.metrics).await;
    Harness {
        rig,
        sink,
        verifier,
        metrics,
        publications: None,
        _leading: leading,
    }
}

impl Harness {
    /// Publishes `pair` as shop/shop-tls.
    async fn publish(&mut self, pair: Pair) {
        self.rig.put(mk_pair("shop", "shop-tls", pair, true)).await;
        self.rig.reconcile().await;
    }

    fn report(&self, pod: &str, seq: u64, pair: Pair, at_ms: i64) -> ReportOutcome {
        let body = mk_report(pod, seq, &[(RESOURCE, pair)]);
        let auth = format!("Bearer {TOKEN}");
        self.sink
            .receive(Some(&auth), peer("127.0.0.1"), &body, at_ms)
            .0
    }

    /// One rollout pass; then the manifest and CertMerge status catch up.
    async fn step(&mut self, now_ms: i64) -> StatusView {
        let publications = self
            .publications
            .as_ref()
            .or(self.rig.publisher.publications());
        self.verifier
            .step(&self.rig.ctx, now_ms, true, None, publications)
            .await;
        let notes = self.verifier.notes().clone();
        self.rig.record(Some(&notes)).await;
        let status = self.verifier.status();
        let view = status.read().unwrap().as_ref().map(|s| s.view());
        view.unwrap()
    }

    fn manifest(&self) -> Value {
        self.rig.manifest()
    }

    fn reasons_about(&self, name: &str) -> Vec<String> {
        self.rig
            .events_about(name)
            .iter()
            .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn only_a_live_gateway_pod_may_report_for_itself() {
    let v = mk_verifier(
        &[
            ("gw-0", "10.0.0.5", true),
            ("gw-1", "10.0.0.6", false),
            ("gw-2", "10.0.0.7,fd00::7", true),
        ],
        false,
        Duration::ZERO,
    )
    .await;
    let good = format!("Bearer {TOKEN}");
    let body = |pod: &str, seq| mk_report(pod, seq, &[(RESOURCE, P256)]);
    let receive =
        |auth: Option<&str>, ip: &str, body: &[u8]| v.sink.receive(auth, peer(ip), body, T0).0;
    use ReportOutcome::*;
    assert_eq!(receive(None, "10.0.0.5", &body("gw-0", 1)), Unauthenticated);
    assert_eq!(
        receive(Some("Bearer guess"), "10.0.0.5", &body("gw-0", 1)),
        Unauthenticated
    );
    assert_eq!(
        receive(Some(TOKEN), "10.0.0.5", &body("gw-0", 1)),
        Unauthenticated
    );
    assert_eq!(
        receive(Some(&good), "10.0.0.5", &body("intruder", 1)),
        Forbidden
    );
    assert_eq!(
        receive(Some(&good), "10.0.0.6", &body("gw-1", 1)),
        Forbidden,
        "not Ready"
    );
    assert_eq!(
        receive(Some(&good), "10.0.0.6", &body("gw-0", 1)),
        Forbidden,
        "another pod's address"
    );
    // Dual-stack: either family of the pod's own addresses, no other.
    assert_eq!(receive(Some(&good), "fd00::7", &body("gw-2", 1)), Accepted);
    assert_eq!(receive(Some(&good), "10.0.0.7", &body("gw-2", 2)), Accepted);
    assert_eq!(
        receive(Some(&good), "fd00::5", &body("gw-2", 3)),
        Forbidden,
        "an address the pod does not have"
    );
    assert_eq!(receive(Some(&good), "10.0.0.5", b"{not json"), Malformed);
    let mut other_ns: Value = serde_json::from_slice(&body("gw-0", 1)).unwrap();
    other_ns["pod"]["namespace"] = json!("tenant");
    assert_eq!(
        receive(
            Some(&good),
            "10.0.0.5",
            &serde_json::to_vec(&other_ns).unwrap()
        ),
        Forbidden
    );
    assert_eq!(receive(Some(&good), "10.0.0.5", &body("gw-0", 1)), Accepted);
    assert_eq!(receive(Some(&good), "10.0.0.5", &body("gw-0", 3)), Accepted);
    assert_eq!(
        receive(Some(&good), "10.0.0.5", &body("gw-0", 2)),
        Stale,
        "replayed"
    );
    let oversized = vec![b' '; certsync_contract::report::MAX_REPORT_BYTES + 1];
    assert_eq!(receive(Some(&good), "10.0.0.5", &oversized), TooLarge);

    // Only the accepted report counts.
    let observations = v.sink.observations();
    assert_eq!(observations.keys().collect::<Vec<_>>(), ["gw-0", "gw-2"]);
    assert_eq!(observations["gw-0"].seq, 3);
    assert_eq!(observations["gw-2"].seq, 2);
}

#[tokio::test]
async fn a_standby_replica_sends_reports_to_the_leader() {
    let v = mk_verifier(&[("gw-0", "127.0.0.1", true)], false, Duration::ZERO).await;
    v._leading.send_replace(false);
    let auth = format!("Bearer {TOKEN}");
    let body = mk_report("gw-0", 1, &[(RESOURCE, P256)]);
    let (outcome, _) = v.sink.receive(Some(&auth), peer("127.0.0.1"), &body, T0);
    assert_eq!(outcome, ReportOutcome::NotLeader);
}

#[tokio::test]
async fn reports_over_http_are_answered_and_counted() {
    let v = mk_verifier(&[("gw-0", "127.0.0.1", true)], false, Duration::ZERO).await;
    let (_ready_tx, ready) = watch::channel(true);
    let state = Arc::new(certsync_controller::runtime::ops::http::HttpState::new(
        v.metrics.clone(),
        ready,
        None,
    ));
    let app = certsync_controller::runtime::ops::http::router(state).merge(
        certsync_controller::runtime::gateway::reports::router(Arc::clone(&v.sink)),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(certsync_controller::runtime::ops::http::serve_router(
        listener,
        app,
        std::future::pending(),
    ));
    let post = |auth: Option<String>, body: Vec<u8>| async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /v1/reports HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.split(' ').nth(1).unwrap_or_default().to_owned()
    };
    let body = mk_report("gw-0", 1, &[(RESOURCE, P256)]);
    assert_eq!(post(None, body.clone()).await, "401");
    assert_eq!(
        post(Some(format!("Bearer {TOKEN}")), b"[]".to_vec()).await,
        "400"
    );
    let forged = mk_report("gw-9", 1, &[(RESOURCE, P256)]);
    assert_eq!(post(Some(format!("Bearer {TOKEN}")), forged).await, "403");
    assert_eq!(post(Some(format!("Bearer {TOKEN}")), body).await, "204");
    let text = v.metrics.encode();
    for (outcome, n) in [
        ("unauthenticated", 1),
        ("malformed", 1),
        ("forbidden", 1),
        ("accepted", 1),
    ] {
        let series = format!("certsync_reports_total{{outcome=\"{outcome}\"}} {n}");
        assert!(text.contains(&series), "missing {series} in\n{text}");
    }
}

#[tokio::test]
async fn a_rotation_converges_when_every_pod_serves_it() {
    let mut v = mk_verifier(
        &[("gw-0", "127.0.0.1", true), ("gw-1", "127.0.0.1", true)],
        false,
        Duration::ZERO,
    )
    .await;
    v.publish(P256).await;
    let view = v.step(T0).await;
    assert_eq!(
        view.publications[0].entry.state.as_deref(),
        Some("Progressing")
    );
    assert_eq!(
        view.publications[0].pods["gw-0"].state,
        PodState::Unknown,
        "no report yet"
    );

    assert_eq!(v.report("gw-0", 1, P256, T0 + 500), ReportOutcome::Accepted);
    let view = v.step(T0 + 600).await;
    assert_eq!(
        (view.publications[0].verified, view.publications[0].total),
        (1, 2)
    );

    assert_eq!(v.report("gw-1", 1, P256, T0 + 900), ReportOutcome::Accepted);
    let view = v.step(T0 + 1_000).await;
    let p = &view.publications[0];
    assert_eq!(
        p.entry.state.as_deref(),
        Some(RolloutState::Converged.as_str())
    );
    assert_eq!((p.verified, p.total), (2, 2));
    assert!(p.entry.converged_at.is_some());

    // The manifest says so too, for `cert-sync status` without the server.
    let manifest = v.manifest();
    let entry = &manifest["publications"][0];
    assert_eq!(entry["state"], "Converged");
    assert_eq!(
        entry["rollout"],
        json!({"gw-0": "Verified", "gw-1": "Verified"})
    );
    assert!(v
        .reasons_about("shop-tls")
        .contains(&"RolledOut".to_owned()));
    let metrics = v.metrics.encode();
    assert!(metrics.contains(
        "certsync_rollout_pod_state{source=\"shop/shop-tls\",pod=\"gw-1\",state=\"Verified\"} 1"
    ));
    assert!(metrics.contains("certsync_rollout_converge_seconds_count 1"));

    // Rotate: the pods serve the old certificate until they report the new one.
    v.publish(RSA).await;
    let view = v.step(T0 + 5_000).await;
    let p = &view.publications[0];
    assert_eq!(p.pods["gw-0"].state, PodState::Stale);
    assert_eq!(
        p.pods["gw-0"].served_sha256.map(|s| s.to_string()),
        Some(
            certsync_contract::summarize_chain(P256.cert.as_bytes())
                .unwrap()
                .sha256
                .to_string()
        )
    );
    v.report("gw-0", 2, RSA, T0 + 5_500);
    v.report("gw-1", 2, RSA, T0 + 5_600);
    let view = v.step(T0 + 6_000).await;
    assert_eq!(
        view.publications[0].entry.state.as_deref(),
        Some("Converged")
    );
    assert!(v
        .metrics
        .encode()
        .contains("certsync_rollout_converge_seconds_count 2"));
    assert_no_key_material(&v.rig);
}

#[tokio::test]
async fn a_stuck_pod_climbs_the_ladder_then_converges() {
    let mut v = mk_verifier(
        &[("gw-0", "127.0.0.1", true), ("gw-1", "127.0.0.1", true)],
        true,
        Duration::ZERO,
    )
    .await;
    v.publish(RSA).await;
    v.report("gw-0", 1, RSA, T0);
    v.report("gw-1", 1, P256, T0);
    let view = v.step(T0).await;
    assert_eq!(view.publications[0].pods["gw-1"].state, PodState::Stale);
    assert!(!v
        .reasons_about("shop-tls")
        .contains(&"RolloutStalled".to_owned()));

    // Past the timeout: stalled, and the published Secret is touched.
    v.report("gw-0", 2, RSA, T0 + TIMEOUT_MS);
    v.report("gw-1", 2, P256, T0 + TIMEOUT_MS);
    v.step(T0 + TIMEOUT_MS).await;
    let reasons = v.reasons_about("shop-tls");
    assert!(
        reasons.contains(&"RolloutStalled".to_owned()),
        "{reasons:?}"
    );
    assert!(reasons.contains(&"RePushed".to_owned()), "{reasons:?}");
    let published = v.rig.published("shop.shop-tls").unwrap();
    assert!(published["metadata"]["annotations"][REPUSHED_AT].is_string());
    // The touch is a metadata change: the pair itself is what was published.
    assert_eq!(data_of(&published, "tls.crt"), RSA.cert);
    assert!(v.rig.server.evictions().is_empty());

    // Next timeout: no gateway config to re-apply here, so eviction.
    v.report("gw-0", 3, RSA, T0 + 2 * TIMEOUT_MS);
    v.report("gw-1", 3, P256, T0 + 2 * TIMEOUT_MS);
    v.step(T0 + 2 * TIMEOUT_MS).await;
    let evicted: Vec<String> = v
        .rig
        .server
        .evictions()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(evicted, ["gw-1"], "only the stale pod");
    assert!(v.reasons_about("gw-1").contains(&"PodEvicted".to_owned()));
    let metrics = v.metrics.encode();
    for step in ["stalled", "repush", "evict"] {
        let series = format!("certsync_rollout_ladder_steps_total{{step=\"{step}\"}} 1");
        assert!(metrics.contains(&series), "missing {series}");
    }

    // Nothing more is tried while it stays stuck.
    v.step(T0 + 10 * TIMEOUT_MS).await;
    assert_eq!(v.rig.server.evictions().len(), 1);
}

#[tokio::test]
async fn a_silent_pod_is_unknown_and_a_restart_rebuilds_from_reports() {
    let mut v = mk_verifier(&[("gw-0", "127.0.0.1", true)], false, Duration::ZERO).await;
    v.publish(P256).await;
    v.report("gw-0", 1, P256, T0);
    assert_eq!(
        v.step(T0).await.publications[0].entry.state.as_deref(),
        Some("Converged")
    );
    let published_at = v.manifest()["publications"][0]["publishedAt"].clone();
    assert!(published_at.is_string());

    // 30 s without a report: the pod may have lost the filter, or died.
    let view = v.step(T0 + 31_000).await;
    assert_eq!(view.publications[0].pods["gw-0"].state, PodState::Unknown);
    assert_eq!(
        v.manifest()["publications"][0]["rollout"]["gw-0"],
        "Unknown"
    );

    // A new controller: nothing observed until the next heartbeat, which
    // rebuilds the state; the publish time survives through the manifest.
    let mut fresh = mk_verifier(&[("gw-0", "127.0.0.1", true)], false, Duration::ZERO).await;
    let previous: certsync_controller::core::manifest::Manifest =
        serde_json::from_value(v.manifest()).unwrap();
    fresh.verifier.seed(&previous);
    fresh.publications = Some(std::sync::Arc::new(previous));
    let view = fresh.step(T0 + 40_000).await;
    assert_eq!(view.publications[0].pods["gw-0"].state, PodState::Unknown);
    fresh.report("gw-0", 7, P256, T0 + 40_500);
    let view = fresh.step(T0 + 41_000).await;
    assert_eq!(view.publications[0].pods["gw-0"].state, PodState::Verified);
    assert_eq!(
        view.publications[0].entry.published_at.as_deref(),
        published_at.as_str()
    );
}

#[tokio::test]
async fn expiring_and_unpublished_certificates_are_warned_about_once() {
    // Every fixture expires within a century.
    let century = Duration::from_secs(100 * 365 * 86_400);
    let mut v = mk_verifier(&[("gw-0", "127.0.0.1", true)], false, century).await;
    v.publish(P256).await;
    let body = mk_report(
        "gw-0",
        1,
        &[(RESOURCE, P256), ("kubernetes://old.gone", RSA)],
    );
    let auth = format!("Bearer {TOKEN}");
    v.sink.receive(Some(&auth), peer("127.0.0.1"), &body, T0);
    let view = v.step(T0).await;
    let kinds: Vec<String> = view
        .warnings
        .iter()
        .map(|w| format!("{:?} {}", w.warning.kind, w.warning.resource))
        .collect();
    assert_eq!(
        kinds,
        [
            format!("Expiring {RESOURCE}"),
            "Drift kubernetes://old.gone".to_owned()
        ]
    );
    assert!(v
        .reasons_about("shop-tls")
        .contains(&"CertificateExpiring".to_owned()));
    assert!(v
        .reasons_about("gw-0")
        .contains(&"ServedNotPublished".to_owned()));
    let before = v.rig.events_about("shop-tls").len();
    v.step(T0 + 500).await;
    assert_eq!(v.rig.events_about("shop-tls").len(), before, "told once");
}

#[tokio::test]
async fn two_publications_of_one_source_roll_out_each_on_its_own() {
    // shop/shop-tls as its own credential Secret and as a CertMerge member.
    let mut v = mk_verifier(&[("gw-0", "127.0.0.1", true)], false, Duration::ZERO).await;
    v.rig
        .put(json!({
            "apiVersion": "certsync.istio.io/v1alpha1", "kind": "CertMerge",
            "metadata": {"name": "merge", "namespace": GW, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"name": "merged", "secretList": [{"namespace": "shop", "name": "shop-tls"}]},
        }))
        .await;
    v.rig.settle_certmerges(1).await;
    v.publish(P256).await;
    let resources: Vec<String> = v.manifest()["publications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sdsResource"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(resources.len(), 2, "{resources:?}");

    // The pod serves only the credential Secret: that one is Converged,
    // the merged one is not — neither takes the other's state.
    let body = mk_report("gw-0", 1, &[(RESOURCE, P256)]);
    let auth = format!("Bearer {TOKEN}");
    v.sink.receive(Some(&auth), peer("127.0.0.1"), &body, T0);
    let view = v.step(T0).await;
    let state = |view: &StatusView, resource: &str| {
        view.publications
            .iter()
            .find(|p| p.entry.sds_resource == resource)
            .and_then(|p| p.entry.state.clone())
    };
    assert_eq!(state(&view, RESOURCE).as_deref(), Some("Converged"));
    let merged = resources.iter().find(|r| *r != RESOURCE).unwrap();
    assert_eq!(state(&view, merged).as_deref(), Some("Progressing"));
    let manifest = v.manifest();
    let row = |resource: &str| {
        manifest["publications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["sdsResource"] == resource)
            .cloned()
            .unwrap()
    };
    assert_eq!(row(RESOURCE)["state"], "Converged");
    assert_eq!(row(RESOURCE)["rollout"]["gw-0"], "Verified");
    assert_eq!(row(merged)["rollout"]["gw-0"], "Missing");

    // Both served: both Converged, and the CertMerge says RolledOut.
    let body = mk_report("gw-0", 2, &[(RESOURCE, P256), (merged.as_str(), P256)]);
    v.sink
        .receive(Some(&auth), peer("127.0.0.1"), &body, T0 + 500);
    let view = v.step(T0 + 1_000).await;
    assert_eq!(state(&view, RESOURCE).as_deref(), Some("Converged"));
    assert_eq!(state(&view, merged).as_deref(), Some("Converged"));
    let merge = v.rig.server.get("certmerges", GW, "merge").unwrap();
    let rolled_out = merge["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "RolledOut")
        .cloned()
        .unwrap();
    assert_eq!(rolled_out["status"], "True", "{rolled_out}");
}
