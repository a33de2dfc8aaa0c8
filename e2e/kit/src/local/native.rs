//! A local cluster for certificates placed natively: the user's Secrets
//! are referenced by Istio Gateways and Gateway API Gateways, cert-sync runs
//! verify-only (it copies nothing), and each gateway pod's Envoy loads
//! every certificate under exactly the SDS name Istio gives it
//! (`kubernetes://<name>`, `kubernetes-gateway://<ns>/<name>`).
//!
//! ```text
//!  test ── Secrets, Gateways, ReferenceGrants ──▶ fake-apiserver ◀── watch ── cert-sync --publish=false
//!                                                    │ GET Secret                 ▲ /v1/status, Events
//!                                  "istiod" thread ◀─┘                            │
//!                         (push per pod, unless frozen)                           │
//!                                    ▼                                            │
//!          gateway pod gw-i: <pod>/sds/<route>/ ─▶ Envoy (one chain per SNI) + filter ── POST /v1/reports
//! ```
//!
//! The harness plays istiod and istio-agent: it reads each referenced
//! Secret from the API server (Istio's keys: `cert`/`key` before
//! `tls.crt`/`tls.key`) and pushes it to every pod that is not frozen, as
//! an SDS resource of Istio's name. A frozen pod keeps what it had — the
//! stale-push failure cert-sync exists to catch.

use super::controller::{Controller, ControllerSettings, RigController, GATEWAY_NS};
use super::fake::{self, EventSummary, FakeApi};
use super::status::Status;
use crate::bootstrap::{Bootstrap, PluginConfig};
use crate::envoy::{Envoy, EnvoyOptions};
use crate::pki::{TestCa, TestCert};
use crate::procs;
use crate::sds::{SdsDir, TlsSecret};
use crate::tls_client::probe;
use anyhow::{Context, Result};
use certsync_contract::Fingerprint;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use tempfile::TempDir;

/// The label Istio puts on the pods of a Gateway API Gateway.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// A host the gateways serve, the Secret behind it and the SDS name Istio
/// gives that Secret's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub host: String,
    pub namespace: String,
    pub secret: String,
    pub resource: String,
}

impl Route {
    /// `namespace/secret`, as the status names the source.
    pub fn source(&self) -> String {
        format!("{}/{}", self.namespace, self.secret)
    }
}

/// How the rig is shaped and paced.
#[derive(Debug, Clone)]
pub struct NativeOptions {
    pub pods: usize,
    pub routes: Vec<Route>,
    /// Labels every gateway pod carries besides `istio: ingressgateway`.
    pub pod_labels: BTreeMap<String, String>,
    pub rollout_timeout: Duration,
    pub heartbeat_window: Duration,
}

/// The running rig; fields drop in order (pods, istiod, controller, API).
pub struct NativeCluster {
    pods: Vec<(String, Envoy, Bootstrap)>,
    istiod: Istiod,
    controller: Controller,
    fake: FakeApi,
    pub ca: TestCa,
    dir: Option<TempDir>,
}

impl NativeCluster {
    pub fn start(options: NativeOptions) -> Result<NativeCluster> {
        let bins = procs::cluster_binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("certsync-native-")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let fake = FakeApi::start(&bins, &root)?;
        let mut namespaces: BTreeSet<&str> = options
            .routes
            .iter()
            .map(|r| r.namespace.as_str())
            .collect();
        namespaces.insert(GATEWAY_NS);
        namespaces.insert("apps");
        let mut objects: Vec<Value> = namespaces.iter().map(|ns| fake::namespace(ns)).collect();
        for i in 0..options.pods {
            let mut pod = fake::gateway_pod(GATEWAY_NS, &super::pod_name(i));
            for (k, v) in &options.pod_labels {
                pod["metadata"]["labels"][k] = json!(v);
            }
            objects.push(pod);
        }
        fake.put(&Value::Array(objects))?;

        let RigController {
            controller,
            token,
            addr: controller_addr,
        } = RigController::start(
            &bins,
            fake.kubeconfig(),
            &root,
            (options.rollout_timeout, options.heartbeat_window),
            ControllerSettings::verify_only(),
        )?;

        let ca = TestCa::new()?;
        let placeholder = ca.leaf(&["placeholder.invalid"])?;
        let mut pods = Vec::new();
        let mut volumes = Vec::new();
        for i in 0..options.pods {
            let name = super::pod_name(i);
            let pod_dir = root.join(&name);
            let mut builder = Bootstrap::builder()
                .with_filter(true)
                .plugin_config(
                    PluginConfig::default()
                        .report_token(&token)
                        .pod(&name, GATEWAY_NS)
                        .interval_ms(1000)
                        .heartbeat_ms(2000),
                )
                .receiver_port(controller_addr.port())
                .node_id(format!(
                    "router~127.0.0.1~{name}.{GATEWAY_NS}~{GATEWAY_NS}.svc.cluster.local"
                ));
            let mut pod_volumes = BTreeMap::new();
            for (n, route) in options.routes.iter().enumerate() {
                let mut sds = SdsDir::create(pod_dir.join("sds").join(n.to_string()))?;
                sds.set(
                    crate::sds::DEFAULT_FILE,
                    TlsSecret::from_cert(&route.resource, &placeholder),
                )?;
                builder = builder.host(&route.host, sds.source(&route.resource)?);
                pod_volumes.insert(route.resource.clone(), (sds, None));
            }
            volumes.push((name.clone(), pod_volumes));
            let config = builder.build()?;
            let envoy = Envoy::start_with(
                &config,
                EnvoyOptions {
                    component_log_level: None,
                    temp_root: Some(pod_dir),
                    ..EnvoyOptions::default()
                },
            )
            .with_context(|| format!("starting {name}'s Envoy"))?;
            pods.push((name, envoy, config));
        }
        let istiod = Istiod::start(fake.addr(), options.routes.clone(), volumes)?;
        Ok(NativeCluster {
            pods,
            istiod,
            controller,
            fake,
            ca,
            dir: Some(dir),
        })
    }

    pub fn pod_names(&self) -> Vec<String> {
        self.pods.iter().map(|(n, _, _)| n.clone()).collect()
    }

    pub fn put(&self, object: &Value) -> Result<()> {
        self.fake.put(object)
    }

    /// `GET` a Kubernetes API path from the fake API server.
    pub fn get(&self, path: &str) -> Result<Option<Value>> {
        self.fake.get(path)
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Status) -> bool,
    ) -> Result<Status> {
        self.controller.wait_status(what, timeout, check)
    }

    /// Waits for an Event in `namespace` with `reason` about `object`.
    pub fn wait_event(
        &self,
        namespace: &str,
        reason: &str,
        object: &str,
        timeout: Duration,
    ) -> Result<EventSummary> {
        crate::poll(
            &format!("an Event {reason} about {namespace}/{object}"),
            timeout,
            || {
                Ok(self
                    .fake
                    .events(namespace)?
                    .into_iter()
                    .find(|e| e.reason == reason && e.object == object))
            },
        )
    }

    /// What each pod's Envoy serves for `host` (a real TLS handshake each).
    pub fn served(&self, host: &str) -> Result<Vec<Fingerprint>> {
        self.pods
            .iter()
            .map(|(_, _, config)| Ok(probe(config.https_port, host)?.fingerprint))
            .collect()
    }

    /// Waits until every pod's Envoy serves `cert` for `host`.
    pub fn wait_served(&self, host: &str, cert: &TestCert, timeout: Duration) -> Result<()> {
        crate::poll(&format!("every pod serving {host}"), timeout, || {
            Ok(self
                .served(host)?
                .iter()
                .all(|f| *f == cert.fingerprint)
                .then_some(()))
        })
    }

    /// istiod stops pushing to `pod` (it keeps serving what it has).
    pub fn freeze(&self, pod: &str) {
        self.istiod.frozen().insert(pod.to_owned());
    }

    /// istiod pushes to `pod` again (it catches up at the next tick).
    pub fn thaw(&self, pod: &str) {
        self.istiod.frozen().remove(pod);
    }

    /// Keeps the rig's directory (logs, SDS files) and says where.
    pub fn keep_files(&mut self) {
        for (_, envoy, _) in &mut self.pods {
            envoy.keep_files();
        }
        if let Some(dir) = self.dir.take() {
            eprintln!("native cluster files kept in {}", dir.keep().display());
        }
    }
}

/// A cert-manager style Secret (no cert-sync annotation): `tls.crt`,
/// `tls.key`, `ca.crt`.
pub fn certificate_secret(namespace: &str, name: &str, cert: &TestCert) -> Value {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace,
            "annotations": {"cert-manager.io/certificate-name": name}},
        "data": {"tls.crt": b64(&cert.chain_pem), "tls.key": b64(&cert.key_pem), "ca.crt": ""},
    })
}

type Volumes = Vec<(String, BTreeMap<String, (SdsDir, Option<(String, String)>)>)>;

/// The thread playing istiod and istio-agent.
struct Istiod {
    stop: Arc<AtomicBool>,
    frozen: Arc<Mutex<BTreeSet<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Istiod {
    fn start(api: SocketAddr, routes: Vec<Route>, mut volumes: Volumes) -> Result<Istiod> {
        let stop = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(Mutex::new(BTreeSet::new()));
        let thread = {
            let (stop, frozen) = (stop.clone(), frozen.clone());
            std::thread::Builder::new()
                .name("istiod".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        push(api, &routes, &mut volumes, &frozen);
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
                .context("starting the istiod thread")?
        };
        Ok(Istiod {
            stop,
            frozen,
            thread: Some(thread),
        })
    }

    fn frozen(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.frozen.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Istiod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One round: every route's Secret as istiod reads it, pushed where it changed.
fn push(
    api: SocketAddr,
    routes: &[Route],
    volumes: &mut Volumes,
    frozen: &Mutex<BTreeSet<String>>,
) {
    let frozen = frozen
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for route in routes {
        let path = format!(
            "/api/v1/namespaces/{}/secrets/{}",
            route.namespace, route.secret
        );
        let Ok(response) = crate::http1::get(api, &path) else {
            continue;
        };
        if !response.is_success() {
            continue;
        }
        let Some(pair) = istio_pair(&response.text()) else {
            continue;
        };
        for (pod, pod_volumes) in volumes.iter_mut() {
            if frozen.contains(pod) {
                continue;
            }
            let Some((sds, pushed)) = pod_volumes.get_mut(&route.resource) else {
                continue;
            };
            if pushed.as_ref() == Some(&pair) {
                continue;
            }
            let secret = TlsSecret::new(&route.resource, pair.0.clone(), pair.1.clone());
            if sds.set(crate::sds::DEFAULT_FILE, secret).is_ok() {
                *pushed = Some(pair.clone());
            }
        }
    }
}

/// Chain and key of a Secret, Istio's keys first.
fn istio_pair(secret_json: &str) -> Option<(String, String)> {
    use base64::Engine;
    let secret: Value = serde_json::from_str(secret_json).ok()?;
    let data = &secret["data"];
    let field = |keys: [&str; 2]| {
        keys.iter().find_map(|k| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data[*k].as_str()?)
                .ok()?;
            String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
        })
    };
    Some((field(["cert", "tls.crt"])?, field(["key", "tls.key"])?))
}
