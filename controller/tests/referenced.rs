//! Natively placed certificates against the fake API server: an Istio
//! Gateway's `credentialName` and a Gateway API listener's
//! `certificateRefs` (with and without a ReferenceGrant) become rollout
//! rows verified per pod from reports, pre-flight findings become Warning
//! Events on the Gateway, the ladder never touches a Secret cert-sync does
//! not manage, and the verify-only install asks the API server for nothing
//! its RBAC (`deploy/overlays/verify`) does not grant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use certsync_controller::app::publish::Referenced;
use certsync_controller::core::manifest::TargetRef;
use certsync_controller::core::referenced::Scope;
use certsync_controller::core::rollout::{PodState, RolloutState};
use certsync_controller::runtime::gateway::config::GatewayConfig;
use certsync_controller::runtime::kube::gateways::GatewayStores;
use certsync_fakekube::Verb;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::Notify;

const ISTIO_RESOURCE: &str = "kubernetes://shop-tls";
const API_RESOURCE: &str = "kubernetes-gateway://shop/shop-tls";
const T0: i64 = NOW * 1000;

/// A Rig whose publisher also verifies natively referenced certificates;
/// `publish` false is the verify-only install.
async fn mk_rig(publish: bool) -> Rig {
    let mut rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    let (gateways, _tasks) = GatewayStores::watch(&client, &Arc::new(Notify::new())).await;
    let mut publisher = Publisher::new(rig.stores.clone(), None, std::path::Path::new(""))
        .with_referenced(Referenced::new(
            gateways,
            Scope {
                gateway_namespace: GW.to_owned(),
                classes: vec!["istio".to_owned()],
            },
        ));
    if !publish {
        publisher = publisher.verify_only();
    }
    rig.publisher = publisher;
    rig
}

fn mk_istio_gateway(hosts: &[&str]) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "shop", "namespace": "apps"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": hosts,
                "tls": {"mode": "SIMPLE", "credentialName": "shop-tls"}
            }]
        }
    })
}

fn mk_api_gateway() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "web", "namespace": GW},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{
                "name": "https", "port": 443, "protocol": "HTTPS",
                "hostname": "rsa.example.com",
                "tls": {"mode": "Terminate", "certificateRefs": [{"name": "shop-tls", "namespace": "shop"}]}
            }]
        }
    })
}

fn mk_grant() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "gateways-read-shop-tls", "namespace": "shop"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": GW}],
            "to": [{"group": "", "kind": "Secret", "name": "shop-tls"}]
        }
    })
}

/// A pod Istio deployed for Gateway API Gateway `web` (also matching the
/// controller's gateway selector).
fn mk_web_pod(name: &str, ip: &str) -> Value {
    let mut pod = mk_gateway_pod(name, ip, true);
    pod["metadata"]["labels"]["gateway.networking.k8s.io/gateway-name"] = json!("web");
    pod
}

/// Passes until `done` holds of the manifest the publisher built (the
/// gateway watches catch up asynchronously).
async fn pass_until(rig: &mut Rig, what: &str, done: impl Fn(&Rig) -> bool) {
    for _ in 0..300 {
        rig.pass(NOW).await.unwrap();
        if done(rig) {
            rig.record(None).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}");
}

fn referenced_rows(rig: &Rig) -> Vec<(String, String)> {
    rig.publisher
        .publications()
        .map(|m| {
            m.publications
                .iter()
                .filter(|p| matches!(p.target, TargetRef::Referenced { .. }))
                .map(|p| (p.source.clone(), p.sds_resource.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn refused(rig: &Rig, reason: &str) -> bool {
    rig.publisher
        .publications()
        .is_some_and(|m| m.refusals.iter().any(|r| r.reason == reason))
}

fn report(v: &Verification, pod: &str, ip: &str, seq: u64, resource: &str, pair: Pair) {
    let body = mk_report(pod, seq, &[(resource, pair)]);
    let auth = format!("Bearer {TOKEN}");
    v.sink
        .receive(Some(&auth), peer(ip), &body, T0 + seq as i64);
}

async fn step(
    rig: &Rig,
    v: &mut Verification,
    at_ms: i64,
) -> Vec<(String, RolloutState, Vec<PodState>)> {
    v.verifier
        .step(&rig.ctx, at_ms, true, None, rig.publisher.publications())
        .await;
    let status = v.verifier.status();
    let snapshot = status.read().unwrap();
    // What `/v1/status` (and so `cert-sync status`) shows.
    snapshot
        .as_ref()
        .map(|s| {
            s.view()
                .publications
                .iter()
                .map(|p| {
                    let state = match p.entry.state.as_deref() {
                        Some("Converged") => RolloutState::Converged,
                        Some("NoPods") => RolloutState::NoPods,
                        _ => RolloutState::Progressing,
                    };
                    (
                        p.entry.sds_resource.clone(),
                        state,
                        p.pods.values().map(|pod| pod.state).collect(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn secret_writes(rig: &Rig) -> Vec<String> {
    rig.server
        .requests()
        .iter()
        .filter(|r| r.resource.as_deref() == Some("secrets"))
        .filter(|r| {
            matches!(
                r.verb,
                Verb::Apply | Verb::Patch | Verb::Create | Verb::Update | Verb::Delete
            )
        })
        .map(|r| format!("{:?} {}", r.verb, r.path))
        .collect()
}

#[tokio::test]
async fn an_istio_gateway_credential_is_verified_per_pod_and_checked_before_it_is_served() {
    let mut rig = mk_rig(true).await;
    rig.server
        .put(mk_gateway_pod("gw-0", "127.0.0.1", true))
        .unwrap();
    rig.server
        .put(mk_gateway_pod("gw-1", "127.0.0.2", true))
        .unwrap();
    // cert-manager's Secret in the gateway namespace, not annotated.
    rig.put(mk_pair(GW, "shop-tls", RSA, false)).await;
    rig.server
        .put(mk_istio_gateway(&["apps/rsa.example.com"]))
        .unwrap();
    pass_until(&mut rig, "the referenced row", |r| {
        !referenced_rows(r).is_empty()
    })
    .await;
    assert_eq!(
        referenced_rows(&rig),
        [(format!("{GW}/shop-tls"), ISTIO_RESOURCE.to_owned())]
    );
    assert!(rig.publisher.publications().unwrap().refusals.is_empty());

    let settings = verify_settings(Duration::from_secs(30), Duration::from_secs(10));
    let mut v = mk_verification(&rig.server.client().unwrap(), settings, &rig.ctx.metrics).await;
    report(&v, "gw-0", "127.0.0.1", 1, ISTIO_RESOURCE, RSA);
    report(&v, "gw-1", "127.0.0.2", 1, ISTIO_RESOURCE, RSA);
    let views = step(&rig, &mut v, T0 + 100).await;
    assert_eq!(
        views,
        [(
            ISTIO_RESOURCE.to_owned(),
            RolloutState::Converged,
            vec![PodState::Verified; 2]
        )]
    );

    // Rotated to a certificate that does not name the served host: Istio
    // serves it all the same, so it is expected, and warned about first.
    rig.put(mk_pair(GW, "shop-tls", P256, false)).await;
    pass_until(&mut rig, "HostNotCovered", |r| refused(r, "HostNotCovered")).await;
    assert_warned(&rig, "shop", "HostNotCovered");
    let event = rig
        .events_about("shop")
        .into_iter()
        .find(|e| e["reason"] == "HostNotCovered")
        .unwrap();
    let about = if event["regarding"].is_object() {
        &event["regarding"]
    } else {
        &event["involvedObject"]
    };
    assert_eq!(about["apiVersion"], "networking.istio.io/v1");
    assert_eq!(about["namespace"], "apps");
    report(&v, "gw-0", "127.0.0.1", 2, ISTIO_RESOURCE, P256);
    let views = step(&rig, &mut v, T0 + 200).await;
    assert_eq!(views[0].1, RolloutState::Progressing);
    assert_eq!(views[0].2, [PodState::Verified, PodState::Stale]);

    // gw-1 stays stale past two timeouts: the rollout stalls, but the
    // ladder has no rung that may touch a Secret cert-sync does not own.
    let version =
        rig.server.get("secrets", GW, "shop-tls").unwrap()["metadata"]["resourceVersion"].clone();
    step(&rig, &mut v, T0 + 11_000).await;
    step(&rig, &mut v, T0 + 22_000).await;
    assert_warned(&rig, "shop-tls", "RolloutStalled");
    assert_eq!(
        rig.server.get("secrets", GW, "shop-tls").unwrap()["metadata"]["resourceVersion"],
        version
    );
    assert!(secret_writes(&rig).is_empty(), "{:?}", secret_writes(&rig));
    report(&v, "gw-1", "127.0.0.2", 2, ISTIO_RESOURCE, P256);
    let views = step(&rig, &mut v, T0 + 23_000).await;
    assert_eq!(views[0].1, RolloutState::Converged);

    // The status surfaces: the manifest row carries the per-pod states.
    rig.record(Some(v.verifier.notes())).await;
    let manifest = rig.manifest();
    let row = manifest["publications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["sdsResource"] == ISTIO_RESOURCE)
        .unwrap();
    assert_eq!(row["target"]["kind"], "referenced");
    assert_eq!(row["state"], "Converged");
    assert_eq!(row["rollout"]["gw-1"], "Verified");
    assert!(manifest["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["reason"] == "HostNotCovered" && r["subject"] == "gateway apps/shop"));
    assert_no_key_material(&rig);
}

#[tokio::test]
async fn a_gateway_api_listener_across_namespaces_needs_a_reference_grant() {
    let mut rig = mk_rig(true).await;
    rig.server.put(mk_web_pod("web-0", "127.0.0.1")).unwrap();
    rig.server
        .put(mk_gateway_pod("gw-0", "127.0.0.2", true))
        .unwrap();
    rig.put(mk_pair("shop", "shop-tls", RSA, false)).await;
    rig.server.put(mk_api_gateway()).unwrap();
    pass_until(&mut rig, "RefNotPermitted", |r| {
        refused(r, "RefNotPermitted")
    })
    .await;
    assert!(referenced_rows(&rig).is_empty(), "Istio would not serve it");
    assert_warned(&rig, "web", "RefNotPermitted");

    rig.server.put(mk_grant()).unwrap();
    pass_until(&mut rig, "the row", |r| !referenced_rows(r).is_empty()).await;
    assert!(!refused(&rig, "RefNotPermitted"));
    assert_eq!(
        referenced_rows(&rig),
        [("shop/shop-tls".to_owned(), API_RESOURCE.to_owned())]
    );

    // Only the Gateway's own pods are expected to serve it.
    let settings = verify_settings(Duration::from_secs(30), Duration::from_secs(10));
    let mut v = mk_verification(&rig.server.client().unwrap(), settings, &rig.ctx.metrics).await;
    report(&v, "web-0", "127.0.0.1", 1, API_RESOURCE, RSA);
    report(&v, "gw-0", "127.0.0.2", 1, "kubernetes://other", P256);
    let views = step(&rig, &mut v, T0 + 100).await;
    assert_eq!(
        views,
        [(
            API_RESOURCE.to_owned(),
            RolloutState::Converged,
            vec![PodState::Verified]
        )]
    );
}

/// The verify-only install: an annotated Secret is not copied, the
/// referenced one is verified, and every request of the scenario (leader
/// election, gateway-side objects, watches, reads, manifest, Events) is
/// allowed by the base ClusterRole plus the overlay's Role — which grants
/// no Secret write at all.
#[tokio::test]
async fn a_verify_only_install_asks_for_nothing_its_rbac_does_not_grant() {
    let mut rig = mk_rig(false).await;
    let client = rig.server.client().unwrap();
    let leading = lead(&client, "replica-a");
    let mut gateway_config = GatewayConfig::new(certsync_wasmplugin::GatewaySettings::default());
    gateway_config.apply(&client).await.unwrap();
    rig.server
        .put(mk_gateway_pod("gw-0", "127.0.0.1", true))
        .unwrap();
    rig.put(mk_pair("shop", "annotated", P256, true)).await;
    rig.put(mk_pair(GW, "shop-tls", RSA, false)).await;
    rig.server
        .put(mk_istio_gateway(&["nope.example.com"]))
        .unwrap();
    rig.server.put(mk_api_gateway()).unwrap();
    pass_until(&mut rig, "both findings", |r| {
        refused(r, "HostNotCovered") && refused(r, "RefNotPermitted")
    })
    .await;
    assert!(
        rig.published("shop.annotated").is_none(),
        "verify-only copies nothing"
    );
    let settings = VerifySettings {
        evict: true,
        manages_gateway_config: true,
        ..verify_settings(Duration::from_secs(30), Duration::from_millis(1))
    };
    let mut v = mk_verification(&client, settings, &rig.ctx.metrics).await;
    report(&v, "gw-0", "127.0.0.1", 1, ISTIO_RESOURCE, P256);
    for i in 0..4 {
        v.verifier
            .step(
                &rig.ctx,
                T0 + i * 10_000,
                true,
                Some(&mut gateway_config),
                rig.publisher.publications(),
            )
            .await;
    }
    rig.record(Some(v.verifier.notes())).await;
    assert_eq!(
        rig.server.evictions().len(),
        1,
        "the ladder reached eviction without a re-push"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(*leading.borrow());

    // The base ClusterRole and the overlay's Role (which replaces the base's).
    let mut rules = rbac::cluster_rules_of(include_str!("../deploy/base/rbac.yaml"));
    rules.extend(rbac::rules_of(include_str!(
        "../deploy/overlays/verify/role.yaml"
    )));
    assert!(rules
        .iter()
        .all(|r| !(r.resources.contains(&"secrets".to_owned())
            && r.verbs
                .iter()
                .any(|v| ["create", "patch", "update", "delete"].contains(&v.as_str())))));
    let requests = rig.server.requests();
    let denied: Vec<String> = requests
        .iter()
        .filter(|r| !rbac::allowed(&rules, r))
        .map(|r| format!("{:?} {} {:?}/{:?}", r.verb, r.path, r.resource, r.name))
        .collect();
    assert!(denied.is_empty(), "the verify overlay denies: {denied:#?}");
    for (verb, resource) in [
        (Verb::Watch, "gateways.networking.istio.io"),
        (Verb::Watch, "gateways.gateway.networking.k8s.io"),
        (Verb::Watch, "referencegrants.gateway.networking.k8s.io"),
        (Verb::Get, "secrets"),
        (Verb::Apply, "configmaps"),
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.verb == verb && r.resource.as_deref() == Some(resource)),
            "{verb:?} {resource}"
        );
    }
    assert!(secret_writes(&rig).is_empty(), "{:?}", secret_writes(&rig));
}

#[path = "support/rbac_rules.rs"]
mod rbac;
