//! `deploy/base/rbac.yaml` is sufficient: every request the controller makes in
//! a full scenario against the fake API server (watches, reads, publication,
//! deletion, Events, manifest, Lease, gateway-side Istio objects) is allowed
//! by exactly those rules, evaluated as the API server does. And it stays
//! least-privilege: no wildcards, no Secret writes outside the gateway namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use certsync_controller::runtime::gateway::config::GatewayConfig;
use certsync_fakekube::Verb;
use std::time::Duration;
use support::*;

#[path = "support/rbac_rules.rs"]
mod rbac_rules;
use rbac_rules::{allowed, rules_of, Rule};

fn rules() -> Vec<Rule> {
    rules_of(include_str!("../deploy/base/rbac.yaml"))
}

#[test]
fn the_rules_have_no_wildcards_and_no_cluster_wide_writes() {
    for rule in rules() {
        for field in [&rule.groups, &rule.resources, &rule.verbs] {
            assert!(!field.iter().any(|x| x == "*"), "{rule:?}");
        }
        if rule.namespace.is_none() {
            let writes = ["create", "update", "patch", "delete"];
            let on_objects = rule
                .resources
                .iter()
                .any(|r| r == "secrets" || r == "configmaps");
            assert!(
                !(on_objects && rule.verbs.iter().any(|v| writes.contains(&v.as_str()))),
                "{rule:?}"
            );
        }
    }
}

#[tokio::test]
async fn every_request_of_a_full_scenario_is_allowed() {
    let mut rig = Rig::new(credential_policy(), None).await;
    let client = rig.server.client().unwrap();
    // Leadership, as a replica takes it.
    let leading = lead(&client, "replica-a");
    // Publication, rotation, refusal, removal, CertMerge, manifest, Events.
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.put(mk_secret(
        "blog",
        "b",
        fixture!("rsa.chain.pem"),
        fixture!("expired.crt"),
        true,
    ))
    .await;
    rig.server.put(json!({"apiVersion": "certsync.istio.io/v1alpha1", "kind": "CertMerge",
        "metadata": {"name": "m", "namespace": GW},
        "spec": {"name": "merged", "secretList": [{"name": "a", "namespace": "shop"}, {"name": "nope", "namespace": "shop"}]}})).unwrap();
    rig.settle_certmerges(1).await;
    rig.reconcile().await;
    rig.put(mk_pair("shop", "a", P384, true)).await;
    rig.reconcile().await;
    rig.put(mk_pair("shop", "a", P384, false)).await;
    rig.reconcile().await;
    // The gateway-side Istio objects.
    let settings = certsync_wasmplugin::GatewaySettings::default();
    let mut gateway_config = GatewayConfig::new(settings);
    // With a Gateway API Gateway's objects, then without (deleted).
    gateway_config.set_gateway_api(vec!["web".to_owned()]);
    gateway_config.apply(&client).await.unwrap();
    gateway_config.set_gateway_api(Vec::new());
    gateway_config.apply(&client).await.unwrap();
    // Rollout verification: pod discovery, reports, the whole ladder.
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.reconcile().await;
    rig.server
        .put(mk_gateway_pod("gw-0", "127.0.0.1", true))
        .unwrap();
    let settings = VerifySettings {
        evict: true,
        expiry_warning: Duration::from_secs(100 * 365 * 86_400),
        manages_gateway_config: true,
        ..verify_settings(Duration::from_secs(60), Duration::from_millis(1))
    };
    let Verification {
        sink, mut verifier, ..
    } = mk_verification(&client, settings, &rig.ctx.metrics).await;
    let stale = mk_report(
        "gw-0",
        1,
        &[("kubernetes://shop.a", P384), ("kubernetes://x.gone", RSA)],
    );
    let auth = format!("Bearer {TOKEN}");
    sink.receive(Some(&auth), peer("127.0.0.1"), &stale, NOW * 1000);
    for step in 0..4 {
        verifier
            .step(
                &rig.ctx,
                NOW * 1000 + step * 10_000,
                true,
                Some(&mut gateway_config),
                rig.publisher.publications(),
            )
            .await;
    }
    assert_eq!(
        rig.server.evictions().len(),
        1,
        "the ladder reached eviction"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(*leading.borrow(), "the replica leads");

    let rules = rules();
    let requests = rig.server.requests();
    assert!(requests.len() > 20, "a real scenario ran");
    let denied: Vec<String> = requests
        .iter()
        .filter(|r| !allowed(&rules, r))
        .map(|r| format!("{:?} {} {:?}/{:?}", r.verb, r.path, r.resource, r.name))
        .collect();
    assert!(
        denied.is_empty(),
        "deploy/base/rbac.yaml denies: {denied:#?}"
    );
    // And the scenario exercised the writes the rules grant.
    for (verb, resource) in [
        (Verb::Apply, "secrets"),
        (Verb::Delete, "secrets"),
        (Verb::Apply, "configmaps"),
        (Verb::Patch, "secrets"),
        (Verb::Delete, "wasmplugins.extensions.istio.io"),
        (Verb::Watch, "pods"),
        (Verb::Create, "pods"),
    ] {
        assert!(
            requests
                .iter()
                .any(|r| r.verb == verb && r.resource.as_deref() == Some(resource)),
            "{verb:?} {resource}"
        );
    }
}

/// The directory overlay's per-pod writer (`cert-sync --mode directory`,
/// the binary as the gateway pod runs it): everything it asks of the API
/// server in a publish-rotate-refuse scenario is allowed by the read-only
/// `cert-sync-writer` ClusterRole alone.
#[tokio::test]
async fn every_request_of_a_directory_writer_is_allowed_by_its_own_role() {
    let rules = rules_of(include_str!(
        "../deploy/overlays/directory/writer-rbac.yaml"
    ));
    for rule in &rules {
        let writes = rule
            .verbs
            .iter()
            .any(|v| ["create", "update", "patch", "delete"].contains(&v.as_str()));
        assert!(!writes || rule.resources == ["events"], "{rule:?}");
    }
    let server = FakeApiServer::start().await.unwrap();
    server.put(mk_pair("shop", "a", P256, true)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let certs = dir.path().join("certs");
    let mut writer = tokio::process::Command::new(env!("CARGO_BIN_EXE_cert-sync"))
        .env_remove("RUST_LOG")
        .env("KUBECONFIG", &kubeconfig)
        .args(["--mode", "directory", "--pod-name", "gw-0-writer"])
        .args(["--http-addr", "127.0.0.1:0", "--cert-dir"])
        .arg(&certs)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let crt = certs.join("shop/a.crt");
    wait_for("published", || crt.exists()).await;
    // Rotation, then a source whose key is in the certificate slot.
    server.put(mk_pair("shop", "a", P384, true)).unwrap();
    server.put(mk_swapped("shop", "swapped")).unwrap();
    let want = fixture!("p384.chain.pem");
    wait_for("rotated", || {
        std::fs::read_to_string(&crt).is_ok_and(|t| t == want)
    })
    .await;
    wait_for("refused", || {
        let mut all = server.list("events.events.k8s.io", None);
        all.extend(server.list("events", None));
        all.iter().any(|e| e["reason"] == "MalformedCertificate")
    })
    .await;
    writer.kill().await.unwrap();

    let requests = server.requests();
    let denied: Vec<String> = requests
        .iter()
        .filter(|r| !allowed(&rules, r))
        .map(|r| format!("{:?} {} {:?}/{:?}", r.verb, r.path, r.resource, r.name))
        .collect();
    assert!(denied.is_empty(), "writer-rbac.yaml denies: {denied:#?}");
    assert!(
        requests
            .iter()
            .any(|r| r.verb == Verb::Watch && r.resource.as_deref() == Some("secrets")),
        "the writer watched Secrets"
    );
}

async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
