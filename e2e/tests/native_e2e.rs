//! Natively placed certificates, end to end with real Envoys
//! ([`certsync_testkit::local::native`]): the user's Secrets are referenced
//! by an Istio Gateway (`credentialName`) and a Gateway API Gateway
//! (`certificateRefs` across namespaces), cert-sync runs verify-only, and
//! each Envoy loads them under Istio's SDS names. Asserted as a user would
//! notice: what a TLS client is served by each Envoy, what `/v1/status` says
//! per pod, which Warning Events land on the Gateways.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use anyhow::{ensure, Result};
use certsync_testkit::local::native::{
    certificate_secret, NativeCluster, NativeOptions, Route, GATEWAY_NAME_LABEL,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CONVERGE: Duration = Duration::from_secs(30);
const GW: &str = "istio-system";
const SHOP: &str = "shop.example.com";
const API: &str = "api.example.com";

fn routes() -> Vec<Route> {
    vec![
        // An Istio Gateway's `credentialName: shop-tls`: read from the
        // gateway pods' namespace, named `kubernetes://shop-tls`.
        Route {
            host: SHOP.into(),
            namespace: GW.into(),
            secret: "shop-tls".into(),
            resource: "kubernetes://shop-tls".into(),
        },
        // A Gateway API listener's certificateRef to Secret shop/api-tls.
        Route {
            host: API.into(),
            namespace: "shop".into(),
            secret: "api-tls".into(),
            resource: "kubernetes-gateway://shop/api-tls".into(),
        },
    ]
}

fn istio_gateway() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "shop", "namespace": "apps"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": [format!("apps/{SHOP}")],
                "tls": {"mode": "SIMPLE", "credentialName": "shop-tls"}
            }]
        }
    })
}

fn api_gateway() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "web", "namespace": GW},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{
                "name": "https", "port": 443, "protocol": "HTTPS", "hostname": API,
                "tls": {"mode": "Terminate", "certificateRefs": [{"name": "api-tls", "namespace": "shop"}]}
            }]
        }
    })
}

fn reference_grant() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
        "metadata": {"name": "web-reads-api-tls", "namespace": "shop"},
        "spec": {
            "from": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "namespace": GW}],
            "to": [{"group": "", "kind": "Secret", "name": "api-tls"}]
        }
    })
}

#[test]
fn natively_placed_certificates_end_to_end() -> Result<()> {
    let started = Instant::now();
    let mut rig = NativeCluster::start(NativeOptions {
        pods: 3,
        routes: routes(),
        // One gateway Deployment serves both Gateways here: its pods carry
        // the label Istio gives a Gateway API Gateway's pods too.
        pod_labels: BTreeMap::from([(GATEWAY_NAME_LABEL.to_owned(), "web".to_owned())]),
        rollout_timeout: Duration::from_secs(3),
        heartbeat_window: Duration::from_secs(4),
    })?;
    let outcome = scenarios(&rig, &started);
    if outcome.is_err() {
        rig.keep_files();
    }
    outcome
}

fn step(started: &Instant, what: &str) {
    eprintln!(
        "[native_e2e +{:>5.1}s] {what}",
        started.elapsed().as_secs_f64()
    );
}

fn scenarios(rig: &NativeCluster, started: &Instant) -> Result<()> {
    let pods = rig.pod_names();
    let shop = format!("{GW}/shop-tls");
    let api = "shop/api-tls";

    step(started, "credentialName Secret → Verified on every pod");
    let first = rig.ca.leaf(&[SHOP])?;
    rig.put(&certificate_secret(GW, "shop-tls", &first))?;
    rig.put(&istio_gateway())?;
    rig.wait_served(SHOP, &first, CONVERGE)?;
    let sha = first.fingerprint.to_string();
    let status = rig.wait_status("shop-tls Converged", CONVERGE, |s| {
        s.converged_on(&shop, &sha, &pods)
    })?;
    let row = status.publication(&shop).unwrap();
    ensure!(row["target"]["kind"] == "referenced", "{status:?}");
    ensure!(row["sdsResource"] == "kubernetes://shop-tls", "{status:?}");
    ensure!(status.refusals().is_empty(), "{status:?}");

    step(started, "rotated → Verified");
    let second = rig.ca.leaf(&[SHOP])?;
    rig.put(&certificate_secret(GW, "shop-tls", &second))?;
    rig.wait_served(SHOP, &second, CONVERGE)?;
    let sha = second.fingerprint.to_string();
    rig.wait_status("rotation Converged", CONVERGE, |s| {
        s.converged_on(&shop, &sha, &pods)
    })?;

    step(
        started,
        "Gateway API ref without a ReferenceGrant → refused",
    );
    let api_cert = rig.ca.leaf(&[API])?;
    rig.put(&certificate_secret("shop", "api-tls", &api_cert))?;
    rig.put(&api_gateway())?;
    let status = rig.wait_status("RefNotPermitted", CONVERGE, |s| {
        s.refusals()
            .iter()
            .any(|(_, reason, _)| reason == "RefNotPermitted")
    })?;
    ensure!(status.publication(api).is_none(), "{status:?}");
    rig.wait_event(GW, "RefNotPermitted", "web", CONVERGE)?;

    step(started, "… with one → Verified on the Gateway's pods");
    rig.put(&reference_grant())?;
    rig.wait_served(API, &api_cert, CONVERGE)?;
    let sha = api_cert.fingerprint.to_string();
    let status = rig.wait_status("api-tls Converged", CONVERGE, |s| {
        s.converged_on(api, &sha, &pods)
    })?;
    ensure!(
        status.publication(api).unwrap()["sdsResource"] == "kubernetes-gateway://shop/api-tls",
        "{status:?}"
    );
    ensure!(
        !status
            .refusals()
            .iter()
            .any(|(_, reason, _)| reason == "RefNotPermitted"),
        "{status:?}"
    );

    step(
        started,
        "a certificate missing the host → Warning before and while served",
    );
    for pod in &pods {
        rig.freeze(pod);
    }
    let wrong = rig.ca.leaf(&["other.example.com"])?;
    rig.put(&certificate_secret(GW, "shop-tls", &wrong))?;
    rig.wait_event("apps", "HostNotCovered", "shop", CONVERGE)?;
    ensure!(
        rig.served(SHOP)?.iter().all(|f| *f == second.fingerprint),
        "warned before any pod serves it"
    );
    for pod in &pods {
        rig.thaw(pod);
    }
    rig.wait_served(SHOP, &wrong, CONVERGE)?;
    let sha = wrong.fingerprint.to_string();
    let status = rig.wait_status("the wrong certificate Converged", CONVERGE, |s| {
        s.converged_on(&shop, &sha, &pods)
    })?;
    ensure!(
        status.refusals().iter().any(
            |(subject, reason, _)| reason == "HostNotCovered" && subject == "gateway apps/shop"
        ),
        "still warned while served: {status:?}"
    );
    let table = rig.controller().status_table(false)?;
    ensure!(table.contains("HostNotCovered"), "{table}");

    step(
        started,
        "one pod frozen → Stale → stall, the user's Secret untouched → thaw → Converged",
    );
    let version = |rig: &NativeCluster| -> Result<Value> {
        Ok(rig
            .get(&format!("/api/v1/namespaces/{GW}/secrets/shop-tls"))?
            .map(|s| s["metadata"]["resourceVersion"].clone())
            .unwrap_or_default())
    };
    rig.freeze(&pods[1]);
    let fixed = rig.ca.leaf(&[SHOP])?;
    rig.put(&certificate_secret(GW, "shop-tls", &fixed))?;
    let written = version(rig)?;
    let sha = fixed.fingerprint.to_string();
    rig.wait_status("gw-1 Stale", CONVERGE, |s| {
        s.pod_state(&shop, &pods[1]) == Some("Stale") && s.sha256(&shop) == Some(sha.as_str())
    })?;
    rig.wait_event(GW, "RolloutStalled", "shop-tls", CONVERGE)?;
    ensure!(
        version(rig)? == written,
        "cert-sync wrote a Secret it does not manage"
    );
    let status = rig.wait_status("HostNotCovered cleared", CONVERGE, |s| {
        !s.refusals()
            .iter()
            .any(|(_, reason, _)| reason == "HostNotCovered")
    })?;
    ensure!(status.publication(&shop).is_some(), "{status:?}");
    rig.thaw(&pods[1]);
    rig.wait_served(SHOP, &fixed, CONVERGE)?;
    rig.wait_status("Converged after thaw", CONVERGE, |s| {
        s.converged_on(&shop, &sha, &pods)
    })?;
    ensure!(
        version(rig)? == written,
        "cert-sync wrote a Secret it does not manage"
    );
    step(started, "done");
    Ok(())
}
