//! Shared by the controller's integration tests: a fake API server, the
//! controller's watches and publish/record stages on it, and Secret
//! builders. Waits are on explicit conditions (the stores agree with the
//! server) and fail loudly when they time out.
#![allow(dead_code)] // each test binary uses part of this

use certsync_contract::report::{LoadedCertificate, PodRef, Report, Trigger, REPORT_VERSION};
pub use certsync_controller::app::publish::{Outcome, Publisher};
pub use certsync_controller::app::record::Recorder;
pub use certsync_controller::app::verify::{Settings as VerifySettings, Verifier};
pub use certsync_controller::app::Context;
pub use certsync_controller::core::model::{Mode, NamespacePolicy, Policy};
pub use certsync_controller::runtime::gateway::files::DirectoryPublisher;
use certsync_controller::runtime::gateway::pods::GatewayPods;
use certsync_controller::runtime::gateway::reports::{ReportAuth, ReportSink};
use certsync_controller::runtime::kube::cluster;
use certsync_controller::runtime::ops::metrics::Metrics;
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
/// A TLS Secret with its key in the certificate slot (and the chain in the
/// key's): refused as malformed, and the refusal must never quote the key.
pub fn mk_swapped(ns: &str, name: &str) -> Value {
    mk_secret(
        ns,
        name,
        fixture!("rsa.pkcs8.key"),
        fixture!("rsa.chain.pem"),
        true,
    )
}

pub fn mk_pair(ns: &str, name: &str, pair: Pair, autosync: bool) -> Value {
    mk_secret(ns, name, pair.cert, pair.key, autosync)
}

/// The bearer token test filters present.
pub const TOKEN: &str = "s3cret-report-token";

/// A gateway pod (`istio: ingressgateway`) in the gateway namespace; `ips`
/// is `10.0.0.5` or, dual-stack, `10.0.0.5,fd00::5` (`podIP` is the first).
pub fn mk_gateway_pod(name: &str, ips: &str, ready: bool) -> Value {
    let listed: Vec<Value> = ips.split(',').map(|ip| json!({ "ip": ip })).collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": GW, "labels": {"istio": "ingressgateway"}},
        "status": {
            "phase": "Running",
            "podIP": ips.split(',').next(),
            "podIPs": listed,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
        }
    })
}

pub fn peer(ip: &str) -> Option<SocketAddr> {
    Some(SocketAddr::new(ip.parse().ok()?, 40000))
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
                chain_sha256: Vec::new(),
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
    pub ctx: Context,
    pub publisher: Publisher,
    pub recorder: Recorder,
    pub stores: cluster::Stores,
}

/// The controller's watches (CertMerges included), once listed. Their
/// tasks run until the test's runtime ends.
async fn watched(client: &kube::Client) -> cluster::Stores {
    let (stores, _tasks) = cluster::watch(
        client,
        GW,
        false,
        true,
        Arc::new(Notify::new()),
        Arc::new(Notify::new()),
    );
    stores.wait_ready().await.unwrap();
    stores
}

/// An object as the stores see it: `namespace/name` and resourceVersion.
type StoreKey = (String, String);

/// How long the stores may take to catch up with the server.
const SETTLE: Duration = Duration::from_secs(5);

impl Rig {
    pub async fn new(
        policy: Policy,
        files: Option<(DirectoryPublisher, std::path::PathBuf)>,
    ) -> Rig {
        let (files, cert_dir) = match files {
            Some((publisher, dir)) => (Some(publisher), dir),
            None => (None, std::path::PathBuf::new()),
        };
        Rig::build(policy, files, &cert_dir).await
    }

    /// The controller restarts: fresh watches, stores and state, the same
    /// cluster.
    pub async fn restart(&mut self) {
        let client = self.server.client().unwrap();
        let stores = watched(&client).await;
        let policy = self.ctx.policy.clone();
        self.ctx = Context::new(client, policy, Metrics::new(), "test-replica");
        self.publisher = Publisher::new(stores.clone(), None, std::path::Path::new(""));
        self.recorder = Recorder::default();
        self.stores = stores;
    }

    /// A directory-mode instance that writes no files: `cert_dir` is the
    /// path the gateways see.
    pub async fn central(policy: Policy, cert_dir: &std::path::Path) -> Rig {
        Rig::build(policy, None, cert_dir).await
    }

    async fn build(
        policy: Policy,
        files: Option<DirectoryPublisher>,
        cert_dir: &std::path::Path,
    ) -> Rig {
        let server = FakeApiServer::start().await.unwrap();
        let client = server.client().unwrap();
        let stores = watched(&client).await;
        let publisher = Publisher::new(stores.clone(), files, cert_dir);
        Rig {
            server,
            ctx: Context::new(client, policy, Metrics::new(), "test-replica"),
            publisher,
            recorder: Recorder::default(),
            stores,
        }
    }

    /// Stores an object and waits until the watches have seen it.
    pub async fn put(&self, obj: Value) {
        self.server.put(obj).unwrap();
        self.settle().await;
    }

    /// Waits until the source and managed stores hold exactly what the
    /// server holds (names and resourceVersions) and none is relisting;
    /// panics after [`SETTLE`].
    pub async fn settle(&self) {
        self.settle_within(SETTLE).await;
    }

    /// [`Rig::settle`] with a longer wait (thousands of objects).
    pub async fn settle_within(&self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let (want, seen) = self.store_views();
            if want == seen && !self.stores.relisting() {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "the stores never caught up with the server: {} objects wanted, {} seen, first differences {:?}",
                    want.len(),
                    seen.len(),
                    want.iter().zip(&seen).filter(|(a, b)| a != b).take(3).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// (server, stores): every TLS Secret and every managed Secret, by
    /// `namespace/name` and resourceVersion.
    fn store_views(&self) -> (Vec<StoreKey>, Vec<StoreKey>) {
        let key = |ns: &str, name: &str, rv: &str| (format!("{ns}/{name}"), rv.to_owned());
        let mut want = Vec::new();
        for s in self.server.list("secrets", None) {
            let m = &s["metadata"];
            let (ns, name) = (
                m["namespace"].as_str().unwrap_or(""),
                m["name"].as_str().unwrap_or(""),
            );
            let rv = m["resourceVersion"].as_str().unwrap_or("");
            if s["type"] == "kubernetes.io/tls" {
                want.push(key(ns, name, rv));
            }
            if ns == GW && m["labels"]["app.kubernetes.io/managed-by"] == "cert-sync" {
                want.push(key(&format!("managed:{ns}"), name, rv));
            }
        }
        let mut seen = Vec::new();
        let meta_key =
            |prefix: &str, m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
                key(
                    &format!("{prefix}{}", m.namespace.as_deref().unwrap_or("")),
                    m.name.as_deref().unwrap_or(""),
                    m.resource_version.as_deref().unwrap_or(""),
                )
            };
        seen.extend(
            self.stores
                .tls_sources
                .state()
                .iter()
                .map(|s| meta_key("", &s.metadata)),
        );
        seen.extend(
            self.stores
                .managed
                .state()
                .iter()
                .map(|s| meta_key("managed:", &s.metadata)),
        );
        want.sort();
        seen.sort();
        (want, seen)
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

    /// One publish pass at `now`, nothing else.
    pub async fn pass(&mut self, now: i64) -> Result<Outcome, certsync_controller::app::Error> {
        self.publisher.pass(&self.ctx, now).await
    }

    /// A pass over what the watches journaled since the last (scoped when
    /// it can be), the manifest recorded, the stores caught up.
    pub async fn reconcile_changed(&mut self) -> Outcome {
        let outcome = self.publisher.pass_changed(&self.ctx, NOW).await.unwrap();
        self.record(None).await;
        self.settle().await;
        outcome
    }

    /// A publish pass at [`NOW`], the manifest and CertMerge statuses
    /// recorded (without rollout), and the stores caught up with our writes.
    pub async fn reconcile(&mut self) -> Outcome {
        let outcome = self.pass(NOW).await.unwrap();
        self.record(None).await;
        self.settle().await;
        outcome
    }

    /// The record stage, with `notes` from a verifier if there is one.
    pub async fn record(
        &mut self,
        notes: Option<&certsync_controller::core::rollout::RolloutNotes>,
    ) {
        self.recorder
            .write(&self.ctx, &self.publisher, notes, NOW)
            .await
            .unwrap();
    }

    /// The manifest as a reader sees it: the index ConfigMap and the shards
    /// it names, assembled (`null` when there is no index yet).
    pub fn manifest(&self) -> Value {
        manifest_in(&self.server)
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

/// [`Rig::manifest`] for any fake API server.
pub fn manifest_in(server: &FakeApiServer) -> Value {
    use certsync_controller::core::manifest::{self, shards};
    let Some(index) = server.get("configmaps", GW, manifest::NAME) else {
        return Value::Null;
    };
    let text = |cm: &Value| cm["data"][manifest::DATA_KEY].as_str().unwrap().to_owned();
    let parts = server
        .list("configmaps", Some(GW))
        .into_iter()
        .filter(|cm| cm["metadata"]["labels"][shards::PART_LABEL] == shards::PART_SHARD)
        .map(|cm| {
            let name = cm["metadata"]["name"].as_str().unwrap();
            let label = name.strip_prefix("cert-sync-manifest-").unwrap().to_owned();
            (label, text(&cm))
        })
        .collect();
    let assembled = shards::assemble(&text(&index), &parts).unwrap();
    serde_json::to_value(&assembled).unwrap()
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

/// Rollout verification wired as `app` wires it: the gateway pod watch,
/// the report sink (leading, token [`TOKEN`], source check on) and the verifier.
pub struct Verification {
    pub sink: Arc<ReportSink>,
    pub verifier: Verifier,
    pub metrics: Metrics,
    pub leading: tokio::sync::watch::Sender<bool>,
}

pub async fn mk_verification(
    client: &kube::Client,
    settings: VerifySettings,
    metrics: &Metrics,
) -> Verification {
    let (pods, _task) =
        GatewayPods::watch(client, GW, "istio=ingressgateway", Arc::new(Notify::new()));
    pods.wait_ready().await.unwrap();
    let (leading, leading_rx) = tokio::sync::watch::channel(true);
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
    let verifier = Verifier::new(&credential_policy(), settings, Arc::clone(&sink), pods);
    Verification {
        sink,
        verifier,
        metrics: metrics.clone(),
        leading,
    }
}

/// Verification settings for tests: `heartbeat`, `timeout`, eviction off,
/// 14 days' expiry warning, gateway config not managed.
pub fn verify_settings(heartbeat: Duration, timeout: Duration) -> VerifySettings {
    VerifySettings {
        heartbeat_window: heartbeat,
        timeout,
        evict: false,
        expiry_warning: Duration::from_secs(14 * 86_400),
        manages_gateway_config: false,
        cert_dir: String::new(),
    }
}

/// Runs leader election as replica `id` (a 1.5 s Lease, as the tests pace
/// it) until the test ends; the receiver says whether it leads.
pub fn lead(client: &kube::Client, id: &str) -> tokio::sync::watch::Receiver<bool> {
    use certsync_controller::runtime::kube::leader::{LeaderElector, LeaseConfig};
    LeaderElector::new(
        client.clone(),
        GW,
        "cert-sync",
        id,
        LeaseConfig {
            lease_duration: Duration::from_millis(1500),
            renew_deadline: Duration::from_millis(1000),
            retry_period: Duration::from_millis(200),
        },
    )
    .unwrap()
    .run(std::future::pending())
}
