//! Shared by the controller's integration tests: a fake API server, the
//! controller's watches and reconciler on it, and Secret builders.
#![allow(dead_code)] // each test binary uses part of this

use certsync_contract::report::{LoadedCertificate, PodRef, Report, Trigger, REPORT_VERSION};
pub use certsync_controller::core::model::{Mode, NamespacePolicy, Policy};
pub use certsync_controller::reconcile::{Outcome, Reconciler};
pub use certsync_controller::runtime::gateway::files::DirectoryPublisher;
use certsync_controller::runtime::gateway::pods::GatewayPods;
use certsync_controller::runtime::gateway::reports::{ReportAuth, ReportSink};
use certsync_controller::runtime::kube::cluster;
use certsync_controller::runtime::kube::events::Events;
use certsync_controller::runtime::ops::metrics::Metrics;
pub use certsync_controller::runtime::rollout::{RolloutDriver, RolloutSettings};
pub use certsync_fakekube::FakeApiServer;
pub use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

pub const GW: &str = "istio-system";
/// 2030-01-01: every fixture is valid then, but the expired one.
pub const NOW: i64 = 1_893_456_000;

#[macro_export]
macro_rules! fixture {
    ($name:literal) => {
        certsync_fixtures::pem_text!($name)
    };
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

pub fn mk_secret(ns: &str, name: &str, cert: &str, key: &str, autosync: bool) -> Value {
    let mut annotations = serde_json::Map::new();
    if autosync {
        annotations.insert("certsync.istio.io/autosync".into(), "true".into());
    }
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": ns, "annotations": annotations},
        "data": {"tls.crt": b64(cert), "tls.key": b64(key)},
    })
}

/// A matching certificate chain and key from the certsync-contract fixtures.
#[derive(Clone, Copy)]
pub struct Pair {
    pub cert: &'static str,
    pub key: &'static str,
}

pub const P256: Pair = Pair {
    cert: fixture!("p256.chain.pem"),
    key: fixture!("p256.pkcs8.key"),
};
pub const P384: Pair = Pair {
    cert: fixture!("p384.chain.pem"),
    key: fixture!("p384.pkcs8.key"),
};
pub const RSA: Pair = Pair {
    cert: fixture!("rsa.chain.pem"),
    key: fixture!("rsa.pkcs8.key"),
};
pub const ED25519: Pair = Pair {
    cert: fixture!("ed25519.chain.pem"),
    key: fixture!("ed25519.pkcs8.key"),
};

/// A TLS Secret holding `pair`.
pub fn mk_pair(ns: &str, name: &str, pair: Pair, autosync: bool) -> Value {
    mk_secret(ns, name, pair.cert, pair.key, autosync)
}

/// The bearer token test filters present.
pub const TOKEN: &str = "s3cret-report-token";

/// A gateway pod (`istio: ingressgateway`) in the gateway namespace.
pub fn mk_gateway_pod(name: &str, ip: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": GW, "labels": {"istio": "ingressgateway"}},
        "status": {
            "phase": "Running", "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

pub fn peer(ip: &str) -> Option<SocketAddr> {
    format!("{ip}:40000").parse().ok()
}

/// What a gateway pod's filter would report serving `pair` under `resource`.
pub fn mk_report(pod: &str, seq: u64, served: &[(&str, Pair)]) -> Vec<u8> {
    Report {
        version: REPORT_VERSION,
        pod: PodRef {
            name: pod.into(),
            namespace: GW.into(),
        },
        node_id: format!("router~10.0.0.1~{pod}.{GW}~{GW}.svc.cluster.local"),
        seq,
        trigger: if seq == 1 {
            Trigger::Startup
        } else {
            Trigger::Change
        },
        certificates: served
            .iter()
            .map(|(resource, pair)| LoadedCertificate {
                resource: (*resource).into(),
                version: "1".into(),
                cert: certsync_contract::summarize_chain(pair.cert.as_bytes()).unwrap(),
            })
            .collect(),
        errors: vec![],
    }
    .encode()
}

pub fn credential_policy() -> Policy {
    Policy {
        gateway_namespace: GW.into(),
        mode: Mode::Credential,
        namespaces: NamespacePolicy::All,
    }
}

pub struct Rig {
    pub server: FakeApiServer,
    pub reconciler: Reconciler,
    pub stores: cluster::Stores,
}

impl Rig {
    pub async fn new(
        policy: Policy,
        files: Option<(DirectoryPublisher, std::path::PathBuf)>,
    ) -> Rig {
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client().unwrap();
        let (stores, _tasks) = cluster::watch(&client, GW, false, true, Arc::new(Notify::new()));
        stores.wait_ready().await.unwrap();
        let events = Events::new(client.clone(), "test-replica");
        let reconciler = Reconciler::new(
            client,
            policy,
            stores.clone(),
            events,
            Metrics::new(),
            files,
        );
        Rig {
            server,
            reconciler,
            stores,
        }
    }

    /// Stores a Secret and waits until the watches have seen it.
    pub async fn put(&self, obj: Value) {
        let stored = self.server.put(obj).unwrap();
        self.settle(
            stored["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("0"),
        )
        .await;
    }

    /// Waits until the source store holds every object at or past `rv`.
    pub async fn settle(&self, _rv: &str) {
        let target = self.server.resource_version();
        for _ in 0..200 {
            let seen =
                max_resource_version(self.stores.tls_sources.state().iter().map(|s| &s.metadata));
            let managed =
                max_resource_version(self.stores.managed.state().iter().map(|s| &s.metadata));
            if seen.max(managed) >= target {
                tokio::time::sleep(Duration::from_millis(20)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the CertMerge store holds `n` objects.
    pub async fn settle_certmerges(&self, n: usize) {
        for _ in 0..300 {
            if self
                .stores
                .certmerges
                .as_ref()
                .is_some_and(|s| s.state().len() >= n)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("CertMerge store never reached {n} objects");
    }

    /// Waits until the source store no longer holds `ns/name`.
    pub async fn settle_deleted(&self, ns: &str, name: &str) {
        for _ in 0..300 {
            let present = self.stores.tls_sources.state().iter().any(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.name.as_deref() == Some(name)
            });
            if !present {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{ns}/{name} never left the source store");
    }

    pub async fn reconcile(&mut self) -> Outcome {
        let outcome = self.reconciler.reconcile(NOW).await.unwrap();
        // Let the managed store see our own writes before the next round.
        tokio::time::sleep(Duration::from_millis(100)).await;
        outcome
    }

    pub fn published(&self, name: &str) -> Option<Value> {
        self.server.get("secrets", GW, name)
    }

    pub fn events_about(&self, name: &str) -> Vec<Value> {
        let mut all = self.server.list("events", None);
        all.extend(self.server.list("events.events.k8s.io", None));
        all.into_iter()
            .filter(|e| e["regarding"]["name"] == name || e["involvedObject"]["name"] == name)
            .collect()
    }
}

fn max_resource_version<'a>(
    metas: impl Iterator<Item = &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) -> u64 {
    metas
        .filter_map(|m| m.resource_version.as_deref()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// Fails unless a Warning Event with `reason` was recorded about `name`.
pub fn assert_warned(rig: &Rig, name: &str, reason: &str) {
    let events = rig.events_about(name);
    let seen: Vec<(&Value, &Value)> = events.iter().map(|e| (&e["type"], &e["reason"])).collect();
    assert!(
        seen.iter().any(|(t, r)| *t == "Warning" && *r == reason),
        "expected a Warning Event {reason} about {name}, got {seen:?}"
    );
}

pub fn data_of(secret: &Value, key: &str) -> String {
    use base64::Engine;
    let b = secret["data"][key].as_str().unwrap_or("");
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b).unwrap()).unwrap()
}

/// No private-key line of any fixture in Events, ConfigMaps or published
/// annotations.
pub fn assert_no_key_material(rig: &Rig) {
    let mut dump = String::new();
    for resource in ["events", "events.events.k8s.io", "configmaps"] {
        dump.push_str(&serde_json::to_string(&rig.server.list(resource, None)).unwrap());
    }
    for key in [
        fixture!("p256.pkcs8.key"),
        fixture!("p384.pkcs8.key"),
        fixture!("rsa.pkcs8.key"),
        fixture!("rsa.pkcs1.key"),
    ] {
        for line in key.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!dump.contains(line), "private key bytes leaked");
            assert!(
                !dump.contains(&b64(line)[..20]),
                "base64 of private key bytes leaked"
            );
        }
    }
}

/// Rollout verification wired as `main` wires it: the gateway pod watch,
/// the report sink (leading, token [`TOKEN`], source check on) and the driver.
pub struct Verification {
    pub sink: Arc<ReportSink>,
    pub driver: RolloutDriver,
    pub metrics: Metrics,
    pub leading: tokio::sync::watch::Sender<bool>,
}

pub async fn mk_verification(
    client: &kube::Client,
    settings: RolloutSettings,
    manages_gateway_config: bool,
) -> Verification {
    let (pods, _task) =
        GatewayPods::watch(client, GW, "istio=ingressgateway", Arc::new(Notify::new()));
    pods.wait_ready().await.unwrap();
    let (leading, leading_rx) = tokio::sync::watch::channel(true);
    let metrics = Metrics::new();
    let sink = Arc::new(ReportSink::new(
        ReportAuth {
            token: Some(TOKEN.into()),
            check_source: true,
        },
        GW,
        pods.clone(),
        leading_rx,
        metrics.clone(),
        Arc::new(Notify::new()),
    ));
    let driver = RolloutDriver::new(
        client.clone(),
        Mode::Credential,
        GW,
        "",
        settings,
        manages_gateway_config,
        Arc::clone(&sink),
        pods,
        metrics.clone(),
        "test-replica",
    );
    Verification {
        sink,
        driver,
        metrics,
        leading,
    }
}
