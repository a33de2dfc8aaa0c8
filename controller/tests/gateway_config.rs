//! The gateway-side Istio objects against the fake API server and a real
//! module server: applied once, only after the module the WasmPlugin names
//! can be fetched through its URL and matches its `sha256` (a server that
//! fails the first fetches, one that serves other bytes), never over an
//! object cert-sync does not manage, and re-applied for Ready gateway pods
//! that never report (the filter is not loaded there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::IntoResponse;
use certsync_controller::core::model::keys::REAPPLIED_AT;
use certsync_controller::core::rollout::Reporting;
use certsync_controller::runtime::gateway::config::{GatewayConfig, GatewayConfigError};
use certsync_controller::runtime::ops::http::{self, HttpState};
use certsync_controller::runtime::ops::metrics::Metrics;
use certsync_wasmplugin::{GatewaySettings, ModuleSource};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const MODULE: &[u8] = b"\0asm\x01\0\0\0 a module of some version";
const WASM_PLUGINS: &str = "wasmplugins.extensions.istio.io";

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The controller's own HTTP routes serving `module`, answering 503 to the
/// first `fail_first` requests (a Service without a Ready endpoint yet).
/// Returns the address and the request count.
async fn module_server(module: &[u8], fail_first: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let (ready_tx, ready) = tokio::sync::watch::channel(true);
    std::mem::forget(ready_tx); // ready for the whole test
    let state = Arc::new(HttpState::new(
        Metrics::new(),
        ready,
        Some(Arc::new(module.to_vec())),
    ));
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = http::router(state).layer(middleware::from_fn(move |req: Request, next: Next| {
        let counted = Arc::clone(&counted);
        async move {
            if counted.fetch_add(1, Ordering::SeqCst) < fail_first {
                (StatusCode::SERVICE_UNAVAILABLE, "no endpoint yet").into_response()
            } else {
                next.run(req).await
            }
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(http::serve_router(listener, app, std::future::pending()));
    (addr, hits)
}

/// Settings whose module the controller at `addr` serves, pinned to `sha256`.
fn settings(addr: SocketAddr, sha256: &str) -> GatewaySettings {
    GatewaySettings {
        namespace: GW.into(),
        controller_host: addr.ip().to_string(),
        controller_port: addr.port(),
        module: ModuleSource::Controller {
            sha256: Some(sha256.to_owned()),
        },
        ..GatewaySettings::default()
    }
}

#[tokio::test]
async fn gateway_side_objects_are_applied_once_and_point_at_the_served_module() {
    let rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    let (addr, hits) = module_server(MODULE, 0).await;
    let sha = hex(MODULE);
    let mut config = GatewayConfig::new(settings(addr, &sha));
    assert_eq!(config.apply(&client).await.unwrap(), 3);
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the module was checked");
    let plugin = rig.server.get(WASM_PLUGINS, GW, "cert-sync").unwrap();
    assert_eq!(plugin["spec"]["sha256"], sha.as_str());
    assert_eq!(
        plugin["spec"]["url"],
        format!("http://{addr}/v1/filter/{sha}.wasm").as_str(),
        "content-addressed"
    );
    for (resource, name) in [
        ("envoyfilters.networking.istio.io", "cert-sync"),
        ("gateways.networking.istio.io", "cert-sync-status"),
    ] {
        assert!(rig.server.get(resource, GW, name).is_some(), "{name}");
    }
    let writes = rig.server.write_count(WASM_PLUGINS, GW, "cert-sync");
    assert_eq!(
        config.apply(&client).await.unwrap(),
        0,
        "unchanged: no write"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "and no fetch");
    config.invalidate();
    assert_eq!(
        config.apply(&client).await.unwrap(),
        3,
        "re-apply on request"
    );
    assert_eq!(
        rig.server.write_count(WASM_PLUGINS, GW, "cert-sync"),
        writes,
        "an identical apply changes nothing server-side"
    );
}

/// Istio-deployed pods of Gateway API Gateways get the filter through a
/// second set of objects that name the Gateways in `targetRefs`; the set
/// goes when the last Gateway does (an empty targetRefs would select every
/// workload of the namespace), and the pods count as gateway pods.
#[tokio::test]
async fn gateway_api_gateways_get_their_own_objects_until_the_last_goes() {
    let rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    let (addr, _) = module_server(MODULE, 0).await;
    let mut config = GatewayConfig::new(settings(addr, &hex(MODULE)));
    config.set_gateway_api(vec!["web".to_owned(), "api".to_owned()]);
    assert_eq!(config.apply(&client).await.unwrap(), 6);
    let plugin = rig
        .server
        .get(WASM_PLUGINS, GW, "cert-sync-gateway-api")
        .unwrap();
    assert_eq!(plugin["spec"]["targetRefs"][0]["name"], "api");
    assert_eq!(plugin["spec"]["targetRefs"][1]["name"], "web");
    assert!(plugin["spec"].get("selector").is_none());
    let filter = rig
        .server
        .get(
            "envoyfilters.networking.istio.io",
            GW,
            "cert-sync-gateway-api",
        )
        .unwrap();
    assert_eq!(filter["spec"]["targetRefs"][1]["name"], "web");
    let status = rig
        .server
        .get(
            "gateways.networking.istio.io",
            GW,
            "cert-sync-status-gateway-api",
        )
        .unwrap();
    assert_eq!(
        status["spec"]["selector"]["gateway.istio.io/managed"],
        "istio.io-gateway-controller"
    );

    // The pods Istio deployed for `web` are gateway pods; others are not.
    let mut web = mk_gateway_pod("web-0", "10.0.0.7", true);
    web["metadata"]["labels"] = json!({"gateway.networking.k8s.io/gateway-name": "web"});
    let mut other = mk_gateway_pod("other-0", "10.0.0.8", true);
    other["metadata"]["labels"] = json!({"gateway.networking.k8s.io/gateway-name": "other"});
    rig.server.put(web).unwrap();
    rig.server.put(other).unwrap();
    rig.server
        .put(mk_gateway_pod("gw-0", "10.0.0.9", true))
        .unwrap();
    let (pods, _task) = certsync_controller::runtime::gateway::pods::GatewayPods::watch(
        &client,
        GW,
        "istio=ingressgateway",
        Arc::new(tokio::sync::Notify::new()),
    );
    pods.wait_ready().await.unwrap();
    let names = |pods: &certsync_controller::runtime::gateway::pods::GatewayPods| -> Vec<String> {
        pods.live().into_iter().map(|p| p.name).collect()
    };
    assert_eq!(names(&pods), ["gw-0"]);
    pods.set_gateway_api(&["api".to_owned(), "web".to_owned()]);
    assert_eq!(names(&pods), ["gw-0", "web-0"]);

    config.set_gateway_api(Vec::new());
    assert_eq!(config.apply(&client).await.unwrap(), 3);
    assert!(rig
        .server
        .get(WASM_PLUGINS, GW, "cert-sync-gateway-api")
        .is_none());
    assert!(rig
        .server
        .get(
            "gateways.networking.istio.io",
            GW,
            "cert-sync-status-gateway-api"
        )
        .is_none());
    assert!(
        rig.server.get(WASM_PLUGINS, GW, "cert-sync").is_some(),
        "the classic set stays"
    );
}

#[tokio::test]
async fn the_wasmplugin_waits_for_a_module_server_that_fails_the_first_fetches() {
    let rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    let (addr, hits) = module_server(MODULE, 2).await;
    let mut config = GatewayConfig::new(settings(addr, &hex(MODULE)));
    for attempt in 1..=2 {
        let err = config.apply(&client).await.unwrap_err();
        assert!(
            matches!(err, GatewayConfigError::ModuleUnavailable(_)),
            "{err}"
        );
        assert!(err.to_string().contains("503"), "{err}");
        assert_eq!(hits.load(Ordering::SeqCst), attempt);
        assert!(
            rig.server.get(WASM_PLUGINS, GW, "cert-sync").is_none(),
            "nothing points gateways at a module they cannot fetch"
        );
    }
    assert_eq!(config.apply(&client).await.unwrap(), 3);
    assert!(rig.server.get(WASM_PLUGINS, GW, "cert-sync").is_some());
}

#[tokio::test]
async fn a_module_of_another_digest_is_never_pinned() {
    let rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    // A replica of another version answers the content-addressed path 503.
    let (addr, _) = module_server(b"another build", 0).await;
    let err = GatewayConfig::new(settings(addr, &hex(MODULE)))
        .apply(&client)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    // A server that ignores the path (a misrouted Service) hands over other
    // bytes: the digest is checked, not trusted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wrong = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "not the module" });
    tokio::spawn(http::serve_router(listener, app, std::future::pending()));
    let err = GatewayConfig::new(settings(wrong, &hex(MODULE)))
        .apply(&client)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("not the {}", hex(MODULE))),
        "{err}"
    );
    assert!(rig.server.get(WASM_PLUGINS, GW, "cert-sync").is_none());
}

#[tokio::test]
async fn an_object_cert_sync_does_not_manage_is_left_alone() {
    let rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    let theirs = json!({
        "apiVersion": "extensions.istio.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "cert-sync", "namespace": GW, "labels": {"team": "edge"}},
        "spec": {"url": "oci://example.com/their-plugin:1", "selector": {"matchLabels": {"istio": "ingressgateway"}}},
    });
    rig.server.put(theirs).unwrap();
    let (addr, _) = module_server(MODULE, 0).await;
    let mut config = GatewayConfig::new(settings(addr, &hex(MODULE)));
    let err = config.apply(&client).await.unwrap_err();
    assert!(matches!(err, GatewayConfigError::NotOurs { .. }), "{err}");
    assert!(err.to_string().contains("managed-by"), "{err}");
    let plugin = rig.server.get(WASM_PLUGINS, GW, "cert-sync").unwrap();
    assert_eq!(plugin["spec"]["url"], "oci://example.com/their-plugin:1");
    assert_eq!(plugin["metadata"]["labels"]["team"], "edge");
}

#[tokio::test]
async fn a_ready_pod_that_never_reports_gets_the_wasmplugin_reapplied_then_a_warning() {
    let mut rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    let (addr, hits) = module_server(MODULE, 0).await;
    let mut config = GatewayConfig::new(settings(addr, &hex(MODULE)));
    config.apply(&client).await.unwrap();
    rig.put(mk_pair("shop", "shop-tls", P256, true)).await;
    rig.reconcile().await;
    rig.server
        .put(mk_gateway_pod("gw-0", "10.0.0.5", true))
        .unwrap();
    rig.server
        .put(mk_gateway_pod("gw-1", "10.0.0.6", true))
        .unwrap();
    let window = Duration::from_secs(30);
    let settings = VerifySettings {
        manages_gateway_config: true,
        ..verify_settings(window, Duration::from_secs(600))
    };
    let Verification {
        sink, mut verifier, ..
    } = mk_verification(&client, settings, &rig.ctx.metrics).await;
    let t0 = NOW * 1000;
    let report = |pod: &str, seq: u64, at: i64| {
        let body = mk_report(pod, seq, &[("kubernetes://shop.shop-tls", P256)]);
        let auth = format!("Bearer {TOKEN}");
        let ip = if pod == "gw-0" {
            "10.0.0.5"
        } else {
            "10.0.0.6"
        };
        sink.receive(Some(&auth), peer(ip), &body, at).0
    };
    let status = verifier.status();
    macro_rules! step {
        ($at:expr) => {{
            let publications = rig.publisher.publications().cloned();
            verifier
                .step(
                    &rig.ctx,
                    $at,
                    true,
                    Some(&mut config),
                    publications.as_ref(),
                )
                .await;
        }};
    }
    let stamp = || {
        rig.server.get(WASM_PLUGINS, GW, "cert-sync").unwrap()["metadata"]["annotations"]
            [REAPPLIED_AT]
            .as_str()
            .map(str::to_owned)
    };
    step!(t0);
    report("gw-1", 1, t0 + 1_000);
    // A window on: gw-0 never reported; gw-1 did.
    step!(t0 + 31_000);
    let first = stamp().expect("re-applied so istiod pushes the WasmPlugin again");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the module checked again first"
    );
    report("gw-1", 2, t0 + 31_000);
    let reporting = |pod: &str| {
        status
            .read()
            .unwrap()
            .as_ref()
            .unwrap()
            .view()
            .pods
            .iter()
            .find(|p| p.name == pod)
            .and_then(|p| p.reporting)
    };
    assert_eq!(reporting("gw-0"), Some(Reporting::FilterNotLoaded));
    assert_eq!(reporting("gw-1"), Some(Reporting::Reporting));
    assert!(
        rig.events_about("gw-0").is_empty(),
        "no warning yet: the re-apply may help"
    );
    // Still silent a window after the re-apply: one warning, no re-apply yet.
    step!(t0 + 62_000);
    assert_warned(&rig, "gw-0", "FilterNotLoaded");
    assert_eq!(stamp(), Some(first.clone()));
    let metrics = rig.ctx.metrics.encode();
    assert!(
        metrics.contains("certsync_gateway_pods{state=\"FilterNotLoaded\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("certsync_rollout_ladder_steps_total{step=\"reapply_for_filter\"} 1"),
        "{metrics}"
    );
    // Backoff: the second re-apply two windows after the first.
    step!(t0 + 91_000);
    let second = stamp().unwrap();
    assert_ne!(second, first);
    // The filter loads: the pod reports and is Reporting.
    report("gw-0", 1, t0 + 92_000);
    step!(t0 + 92_000);
    assert_eq!(reporting("gw-0"), Some(Reporting::Reporting));
    assert!(rig
        .ctx
        .metrics
        .encode()
        .contains("certsync_gateway_pods{state=\"FilterNotLoaded\"} 0"));
}
