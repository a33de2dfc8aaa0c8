//! A local cluster: everything cert-sync touches in production, as real
//! processes on one machine, for the end-to-end tests, `just demo` and the
//! rollout benchmark.
//!
//! ```text
//!  test / demo / bench ── put Secrets, Pods ──▶ fake-apiserver ◀── watch ── cert-sync (central)
//!        │                                        ▲                  --publish-files=false:
//!        │ TLS probe per SNI (rustls)             │                  manifest, Events, ladder,
//!        │                                        │                  GET /v1/status
//!        │   gateway pod gw-i (×3), one dir       │                         ▲
//!        │   writer: cert-sync --mode directory ──┘ watch                   │
//!        │     └─▶ <pod>/certs/  (..data swap)                              │
//!        │   agent thread (istio-agent's role)                              │
//!        │     └─▶ <pod>/sds/<ns>.<name>/  (file-cert: SDS resources)       │
//!        ▼   Envoy: HTTPS listener, one filter chain per SNI                │
//!            Envoy: status listener, cert-sync filter ── POST /v1/reports ──┘ (bearer token)
//! ```
//!
//! Why this shape: the controller is the product under test, so it runs as
//! its real binary against an API server speaking the real protocol; the
//! gateway side is real Envoy with the real filter, fed exactly as Istio
//! feeds a Gateway that names certificate files (`file-cert:` SDS resources
//! built from the mounted volume). Only the kubelet and istio-agent are
//! played by the harness (the pod directory and [`agent`]).
//!
//! Every process is owned by a handle that kills it on drop ([`crate::procs`],
//! [`crate::envoy`]); dropping the [`LocalCluster`] tears everything down,
//! also when a test panics. Every wait is bounded ([`LocalCluster::wait_status`]).

pub mod agent;
pub mod controller;
pub mod fake;
pub mod native;
pub mod pod;
pub mod status;

use crate::pki::{TestCa, TestCert};
use crate::procs;
use anyhow::{anyhow, Context, Result};
use certsync_contract::report::{LoadedCertificate, PodRef, Report, Trigger, REPORT_VERSION};
use controller::{Controller, ControllerSettings, RigController, GATEWAY_NS};
use fake::FakeApi;
use pod::{GatewayPod, PodSpec};
use status::Status;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

pub use fake::EventSummary;

/// Set to keep the rig's directory (logs, certificate dirs, Envoy configs).
pub const KEEP_ENV: &str = "CERTSYNC_E2E_KEEP";

/// A published source: Secret `namespace/name`, served for SNI `host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    pub namespace: String,
    pub name: String,
    pub host: String,
}

impl Site {
    pub fn new(namespace: &str, name: &str, host: &str) -> Site {
        Site {
            namespace: namespace.into(),
            name: name.into(),
            host: host.into(),
        }
    }

    /// `namespace/name`, as the status names sources.
    pub fn source(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The SDS resource every gateway serves it under.
    pub fn resource(&self) -> String {
        agent::site_resource(&self.namespace, &self.name)
    }
}

/// The default sites: three hostnames in two namespaces.
pub fn default_sites() -> Vec<Site> {
    vec![
        Site::new("shop", "shop-tls", "shop.example.com"),
        Site::new("shop", "api-tls", "api.example.com"),
        Site::new("blog", "blog-tls", "blog.example.com"),
    ]
}

/// How the rig is shaped and paced.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub pods: usize,
    pub sites: Vec<Site>,
    /// The filter's poll interval.
    pub report_interval: Duration,
    /// The filter's heartbeat.
    pub heartbeat: Duration,
    /// `--rollout-timeout`: a rollout stuck this long climbs the ladder.
    pub rollout_timeout: Duration,
    /// `--heartbeat-window`: a pod silent this long is Unknown.
    pub heartbeat_window: Duration,
    /// How often the agents look at their pod's certificate directory.
    pub agent_poll: Duration,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            pods: 3,
            sites: default_sites(),
            report_interval: Duration::from_millis(1000),
            heartbeat: Duration::from_millis(2000),
            rollout_timeout: Duration::from_secs(3),
            heartbeat_window: Duration::from_secs(4),
            agent_poll: Duration::from_millis(25),
        }
    }
}

/// The running rig. Fields drop in order: pods (Envoy, agent, writer), then
/// the controller, then the fake API server, then the directory.
pub struct LocalCluster {
    pods: Vec<GatewayPod>,
    controller: Controller,
    fake: FakeApi,
    pub ca: TestCa,
    token: String,
    options: LocalOptions,
    dir: Option<TempDir>,
    keep: bool,
}

impl LocalCluster {
    /// Builds the binaries if needed, then starts the fake API server
    /// (seeded with the namespaces and gateway Pods), the controller and
    /// every pod. No source Secret exists yet: see [`LocalCluster::publish`].
    pub fn start(options: LocalOptions) -> Result<LocalCluster> {
        let bins = procs::cluster_binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("certsync-local-")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let fake = FakeApi::start(&bins, &root)?;
        let mut objects = vec![fake::namespace(GATEWAY_NS)];
        let mut namespaces: Vec<&str> =
            options.sites.iter().map(|s| s.namespace.as_str()).collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        objects.extend(namespaces.iter().map(|ns| fake::namespace(ns)));
        objects.extend((0..options.pods).map(|i| fake::gateway_pod(GATEWAY_NS, &pod_name(i))));
        fake.put(&serde_json::Value::Array(objects))?;

        let RigController {
            controller,
            token,
            addr: controller_addr,
        } = RigController::start(
            &bins,
            fake.kubeconfig(),
            &root,
            (options.rollout_timeout, options.heartbeat_window),
            ControllerSettings::directory_central(),
        )?;

        let ca = TestCa::new()?;
        let placeholder = ca.leaf(&["placeholder.invalid"])?;
        let mut pods = Vec::new();
        for i in 0..options.pods {
            pods.push(GatewayPod::start(PodSpec {
                name: pod_name(i),
                dir: root.join(pod_name(i)),
                bins: &bins,
                kubeconfig: fake.kubeconfig(),
                sites: &options.sites,
                placeholder: &placeholder,
                controller_port: controller_addr.port(),
                report_token: &token,
                report_interval: options.report_interval,
                heartbeat: options.heartbeat,
                agent_poll: options.agent_poll,
            })?);
        }
        Ok(LocalCluster {
            pods,
            controller,
            fake,
            ca,
            token,
            options,
            dir: Some(dir),
            keep: std::env::var_os(KEEP_ENV).is_some(),
        })
    }

    pub fn options(&self) -> &LocalOptions {
        &self.options
    }

    pub fn sites(&self) -> &[Site] {
        &self.options.sites
    }

    /// The site serving `host`.
    pub fn site(&self, host: &str) -> Result<&Site> {
        self.options
            .sites
            .iter()
            .find(|s| s.host == host)
            .ok_or_else(|| anyhow!("no site serves {host}"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new("."), TempDir::path)
    }

    pub fn pods(&self) -> &[GatewayPod] {
        &self.pods
    }

    pub fn pod(&self, i: usize) -> &GatewayPod {
        &self.pods[i]
    }

    pub fn pod_mut(&mut self, i: usize) -> &mut GatewayPod {
        &mut self.pods[i]
    }

    /// Names of every gateway pod.
    pub fn pod_names(&self) -> Vec<String> {
        self.pods.iter().map(|p| p.name().to_owned()).collect()
    }

    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    pub fn controller_mut(&mut self) -> &mut Controller {
        &mut self.controller
    }

    pub fn fake(&self) -> &FakeApi {
        &self.fake
    }

    /// The report token (what every filter is configured with).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A fresh certificate for `host` from the rig's CA.
    pub fn new_cert(&self, host: &str) -> Result<TestCert> {
        self.ca.leaf(&[host])
    }

    /// Creates or replaces the source Secret of `site` with `cert`.
    pub fn publish(&self, site: &Site, cert: &TestCert) -> Result<()> {
        self.fake
            .put(&fake::tls_secret_for(&site.namespace, &site.name, cert))
    }

    /// Replaces the source Secret of `site` with `cert`'s chain but a key
    /// that does not match it (a valid key of another certificate).
    pub fn publish_bad_key(&self, site: &Site, cert: &TestCert) -> Result<()> {
        let other = self.ca.leaf(&[&site.host])?;
        self.fake.put(&fake::tls_secret(
            &site.namespace,
            &site.name,
            &cert.chain_pem,
            &other.key_pem,
        ))
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status> {
        self.controller.status()
    }

    /// Polls `/v1/status` until `check` holds, up to `timeout`; the error
    /// carries the last status seen and the controller's log tail.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Status) -> bool,
    ) -> Result<Status> {
        self.controller.wait_status(what, timeout, check)
    }

    /// Waits until `site` is Converged on `cert` with every pod Verified.
    pub fn wait_converged(
        &self,
        site: &Site,
        cert: &TestCert,
        timeout: Duration,
    ) -> Result<Status> {
        let source = site.source();
        let sha = cert.fingerprint.to_string();
        let pods = self.pod_names();
        self.wait_status(
            &format!("{source} Converged on {}", cert.fingerprint.short()),
            timeout,
            |s| s.converged_on(&source, &sha, &pods),
        )
    }

    /// Waits until every running Envoy serves `cert` for `site.host`.
    pub fn wait_served(&self, site: &Site, cert: &TestCert, timeout: Duration) -> Result<()> {
        for pod in &self.pods {
            crate::poll(
                &format!(
                    "{} serving {} for {}",
                    pod.name(),
                    cert.fingerprint.short(),
                    site.host
                ),
                timeout,
                || Ok((pod.served(&site.host)? == cert.fingerprint).then_some(())),
            )?;
        }
        Ok(())
    }

    /// What each pod's Envoy serves for `host`, in pod order.
    pub fn served(&self, host: &str) -> Result<Vec<certsync_contract::Fingerprint>> {
        self.pods.iter().map(|p| p.served(host)).collect()
    }

    /// Events in `namespace`.
    pub fn events(&self, namespace: &str) -> Result<Vec<EventSummary>> {
        self.fake.events(namespace)
    }

    /// Waits for an Event in `namespace` whose reason is one of `reasons`.
    pub fn wait_event(
        &self,
        namespace: &str,
        reasons: &[&str],
        timeout: Duration,
    ) -> Result<EventSummary> {
        crate::poll(
            &format!("an Event {reasons:?} in {namespace}"),
            timeout,
            || {
                Ok(self
                    .events(namespace)?
                    .into_iter()
                    .find(|e| reasons.contains(&e.reason.as_str())))
            },
        )
        .with_context(|| format!("Events in {namespace}: {:?}", self.events(namespace)))
    }

    /// A report claiming pod `pod` serves `cert` for `site`, well formed but
    /// sent by the test process, i.e. from outside any gateway.
    pub fn forged_report(&self, pod: &str, site: &Site, cert: &TestCert) -> Result<Vec<u8>> {
        let summary = certsync_contract::summarize_chain(cert.chain_pem.as_bytes())
            .map_err(|e| anyhow!("summarizing the forged chain: {e}"))?;
        let report = Report {
            version: REPORT_VERSION,
            pod: PodRef {
                name: pod.into(),
                namespace: GATEWAY_NS.into(),
            },
            node_id: format!("router~127.0.0.1~{pod}.{GATEWAY_NS}~{GATEWAY_NS}.svc.cluster.local"),
            seq: 1_000_000,
            trigger: Trigger::Change,
            certificates: vec![LoadedCertificate {
                resource: site.resource(),
                version: String::new(),
                cert: summary,
                chain_sha256: Vec::new(),
            }],
            errors: Vec::new(),
        };
        Ok(serde_json::to_vec(&report)?)
    }

    /// Fails if any process died unexpectedly.
    pub fn check_alive(&mut self) -> Result<()> {
        self.fake.check_alive()?;
        self.controller.check_alive()?;
        for pod in &mut self.pods {
            pod.check_writer()
                .with_context(|| format!("{}'s writer", pod.name()))?;
        }
        Ok(())
    }

    /// Keeps the rig's directory (logs, certificate and SDS dirs) when it is
    /// dropped, and says where; done on panic anyway. For a failing test
    /// that returns its error.
    pub fn keep_files(&mut self) {
        self.keep = true;
        for pod in &mut self.pods {
            pod.keep_files();
        }
    }

    /// Stops everything now (also what dropping does).
    pub fn shutdown(mut self) {
        self.pods.clear();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.pods.clear();
        if self.keep || std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!("local cluster files kept in {}", dir.keep().display());
            }
        }
    }
}

/// `gw-<i>`.
pub fn pod_name(i: usize) -> String {
    format!("gw-{i}")
}

/// 32 random bytes as hex, from the kernel.
pub(crate) fn random_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
