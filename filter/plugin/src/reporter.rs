//! The reporting cycle, run each interval by the worker holding the lease:
//!
//! ```text
//!  tick ─▶ lease? ─▶ GET tripwire ─moved/resync─▶ GET index ─▶ GET /certs ─suspects─▶ GET secrets ─┐
//!                        │ still                    │ nothing to look at  │ none                     ▼
//!                        └──────────────────────────┴─────────────────────┴──▶ change unsent or heartbeat due? ─▶ POST report
//! ```
//!
//! The *tripwire* (`tripwire`) is a few Envoy counters that move whenever an
//! SDS update reaches a TLS context or is refused; reading it costs a
//! fraction of the index (which builds every secret's proto). So the index is
//! read when the tripwire moves, once per `resync` (secrets added or removed
//! without an update), or every interval where Envoy does not expose the
//! counters.
//!
//! Envoy does not always move a secret's stamp when what it serves changes
//! (1.36 on a `watched_directory` rotation, any version on a refused update;
//! the table in `tripwire`). So the PEM of a secret is read when it is a
//! *suspect*: its stamp moved, its failure counter moved, or fewer TLS
//! contexts hold the certificate it was last seen serving (`/certs`, read
//! whenever the tripwire moved, once per `resync` and before any PEM). The
//! cost stays in proportion to what changed.
//!
//! A secret re-read counts as changed by what it holds (`inventory`), not by
//! its stamp: for the mesh identity (`default`, `ROOTCA`) every certificate
//! of the chain or bundle, so a new intermediate behind the same leaf or a
//! root added to the bundle is reported. Such a change leaves the first
//! certificate's serial where it was, so only a moved stamp or context
//! counter finds it; istio-agent delivers both resources over xDS, which
//! moves the stamp with every update.
//!
//! One HTTP call is in flight at a time. Any failure ends the cycle and backs
//! off exponentially (capped); the next cycle starts again from the tripwire,
//! compared with the last *completed* cycle, so nothing found is lost and no
//! stale report is queued.

use crate::admin::{self, LoadedSecret, Served};
use crate::config::PluginConfig;
use crate::host::{Host, Level, Response};
use crate::inventory::{Inventory, Observed};
use crate::lease::Lease;
use crate::tripwire::{self, Tripwire};
use certsync_contract::report::{PodRef, Report, Trigger, MAX_CERTIFICATES, REPORT_VERSION};
use std::collections::BTreeSet;

/// Admin responses larger than this are refused rather than buffered.
pub const MAX_ADMIN_BODY: usize = 32 * 1024 * 1024;
const SEQ_KEY: &str = "cert-sync/report-seq";

pub mod metric {
    pub const REPORTS_SENT: &str = "cert_sync.reports_sent";
    pub const REPORTS_FAILED: &str = "cert_sync.reports_failed";
    pub const ADMIN_FAILED: &str = "cert_sync.admin_failed";
    pub const LOADED: &str = "cert_sync.loaded_certificates";
    /// Followed by the sanitized resource name; value is notAfter in Unix seconds.
    pub const NOT_AFTER_PREFIX: &str = "cert_sync.not_after.";
}

/// What the one call in flight is for.
enum Step {
    Tripwire,
    Index,
    /// `/certs`, with the secrets already known to have changed.
    ServedCerts {
        changed: BTreeSet<String>,
        total: usize,
    },
    Secrets {
        wanted: BTreeSet<String>,
    },
    Report,
}

/// The look at Envoy in progress; what it read becomes the baseline for the
/// next one only when it completes.
struct Cycle {
    tripwire: Tripwire,
    /// Read `/certs` even if no stamp moved.
    read_served: bool,
    served: Option<Served>,
}

struct Pending {
    token: u32,
    since: u64,
    step: Step,
}

pub struct Reporter<H: Host> {
    host: H,
    config: PluginConfig,
    pod: PodRef,
    node_id: String,
    lease: Lease,
    inventory: Inventory,
    pending: Option<Pending>,
    leading: bool,
    next_cycle_at: u64,
    failures: u32,
    unsent_change: bool,
    last_report_at: Option<u64>,
    /// Tripwire reading when the inventory was last brought up to date.
    tripwire: Option<Tripwire>,
    /// What the TLS contexts served then.
    served: Option<Served>,
    cycle: Option<Cycle>,
    /// When a completed cycle last read the index and `/certs` although no
    /// counter moved: the `resync` clock.
    last_full_look_at: Option<u64>,
    warned_no_tripwire: bool,
}

impl<H: Host> Reporter<H> {
    /// `id` must differ between the VMs of one Envoy (a random number will do).
    pub fn new(host: H, config: PluginConfig, id: u64) -> Self {
        let node_id = host.property(&["node", "id"]).unwrap_or_default();
        let pod = pod_identity(&host, &config, &node_id);
        let ttl = interval_ms(&config).saturating_mul(5) / 2;
        Reporter {
            host,
            config,
            pod,
            node_id,
            lease: Lease::new(id, ttl),
            inventory: Inventory::default(),
            pending: None,
            leading: false,
            next_cycle_at: 0,
            failures: 0,
            unsent_change: false,
            last_report_at: None,
            tripwire: None,
            served: None,
            cycle: None,
            last_full_look_at: None,
            warned_no_tripwire: false,
        }
    }

    pub fn host(&self) -> &H {
        &self.host
    }

    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    pub fn pod(&self) -> &PodRef {
        &self.pod
    }

    pub fn on_tick(&mut self) {
        let now = self.host.now_ms();
        if !self.lease.hold(&self.host, now) {
            if self.leading {
                self.host
                    .log(Level::Info, "another worker took over reporting");
                self.step_down();
            }
            return;
        }
        if !self.leading {
            self.leading = true;
            self.unsent_change = true;
        }
        if let Some(p) = &self.pending {
            // Envoy answers every call by its timeout; this only guards a lost callback.
            let deadline = p.since + 2 * self.config.timeout.as_millis() as u64;
            if now < deadline {
                return;
            }
            self.pending = None;
        }
        if now < self.next_cycle_at {
            return;
        }
        // A quarter interval of slack absorbs timer jitter between ticks.
        self.next_cycle_at = now + interval_ms(&self.config) * 3 / 4;
        self.cycle = None;
        self.get_admin(tripwire::PATH, Step::Tripwire);
    }

    pub fn on_response(&mut self, token: u32, response: Response) {
        let Some(pending) = self.pending.take_if(|p| p.token == token) else {
            return;
        };
        let body = match response.status {
            Some(_) if matches!(pending.step, Step::Report) => Ok(&response.body[..]),
            Some(200) => Ok(&response.body[..]),
            Some(status) => Err(format!(
                "admin API (cluster {:?}) answered HTTP {status}",
                self.config.admin_cluster
            )),
            None => Err(format!(
                "admin API (cluster {:?}) unreachable or timed out",
                self.config.admin_cluster
            )),
        };
        let outcome = match pending.step {
            Step::Report => return self.on_report(response.status),
            Step::Tripwire => body.and_then(tripwire::parse).map(|t| self.on_tripwire(t)),
            Step::Index => body.and_then(admin::parse_index).map(|i| self.on_index(i)),
            Step::ServedCerts { changed, total } => body
                .and_then(admin::parse_served)
                .map(|served| self.on_served(served, changed, total)),
            Step::Secrets { wanted } => body
                .and_then(|b| admin::parse_secrets(b, |n| wanted.contains(n)))
                .map(|s| self.on_secrets(s)),
        };
        if let Err(e) = outcome {
            self.fail(metric::ADMIN_FAILED, &e);
        }
    }

    fn on_tripwire(&mut self, tripwire: Tripwire) {
        let now = self.host.now_ms();
        let blind = tripwire.contexts.is_none();
        if blind && !self.warned_no_tripwire {
            self.warned_no_tripwire = true;
            self.host.log(
                Level::Info,
                "Envoy exposes no ssl_context_update_by_sds counters, so every poll reads the \
                 full secret index; expose them (Istio: proxyStatsMatcher inclusionSuffixes \
                 ssl_context_update_by_sds) to make idle polls cheap",
            );
        }
        let slack = interval_ms(&self.config) / 4;
        let resync_ms = self.config.resync.as_millis() as u64;
        let moved = self.tripwire.as_ref() != Some(&tripwire);
        // A secret added or removed moves no counter (a new TLS context is
        // not an update), hence the `resync` look. Not every heartbeat: at a
        // thousand certificates the index and `/certs` cost ~32 ms and
        // ~23 ms of Envoy's main thread against ~8 ms for the tripwire
        // (Envoy 1.40, measured through its admin API).
        let resync = self
            .last_full_look_at
            .is_none_or(|at| now + slack >= at.saturating_add(resync_ms));
        if moved || resync || blind {
            self.cycle = Some(Cycle {
                tripwire,
                read_served: moved || resync,
                served: None,
            });
            self.get_admin(admin::INDEX_PATH, Step::Index);
        } else {
            self.report_if_due();
        }
    }

    /// The inventory now reflects Envoy as of this cycle's readings.
    fn up_to_date(&mut self) {
        if let Some(cycle) = self.cycle.take() {
            self.tripwire = Some(cycle.tripwire);
            if cycle.served.is_some() {
                self.served = cycle.served;
                self.last_full_look_at = Some(self.host.now_ms());
            }
        }
        self.report_if_due();
    }

    fn on_index(&mut self, mut index: Vec<admin::IndexEntry>) {
        index.retain(|e| self.config.reports_resource(&e.name));
        if index.len() > MAX_CERTIFICATES {
            self.host.log(
                Level::Warn,
                &format!(
                    "{} SDS secrets loaded; reporting the first {MAX_CERTIFICATES}",
                    index.len()
                ),
            );
            index.truncate(MAX_CERTIFICATES);
        }
        for gone in self.inventory.remove_missing(&index) {
            self.host.set_gauge(&not_after_metric(&gone), 0);
            self.unsent_change = true;
        }
        let mut changed: BTreeSet<String> = self
            .inventory
            .changed(&index)
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut read_served = !changed.is_empty();
        if let Some(cycle) = &self.cycle {
            read_served |= cycle.read_served;
            // A refused update moves only its secret's failure counter.
            let failed = cycle.tripwire.failed_since(self.tripwire.as_ref());
            if !failed.is_empty() {
                changed.extend(
                    index
                        .iter()
                        .filter(|e| failed.contains(&tripwire::stat_name(&e.name).as_str()))
                        .map(|e| e.name.clone()),
                );
            }
        }
        if !read_served && changed.is_empty() {
            return self.up_to_date();
        }
        let total = index.len();
        self.get_admin(admin::CERTS_PATH, Step::ServedCerts { changed, total });
    }

    fn on_served(&mut self, served: Served, changed: BTreeSet<String>, total: usize) {
        let mut wanted = changed;
        let displaced = self.inventory.displaced(self.served.as_ref(), &served);
        wanted.extend(displaced.into_iter().map(str::to_owned));
        if let Some(cycle) = &mut self.cycle {
            cycle.served = Some(served);
        }
        if wanted.is_empty() {
            return self.up_to_date();
        }
        let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
        let path = admin::secrets_path(&names, total);
        self.get_admin(&path, Step::Secrets { wanted });
    }

    fn on_secrets(&mut self, secrets: Vec<LoadedSecret>) {
        let served = self
            .cycle
            .as_mut()
            .and_then(|c| c.served.take())
            .unwrap_or_default();
        for secret in secrets {
            let summary = secret
                .pem
                .and_then(|pem| Observed::read(&secret.name, &pem));
            // A chain whose leaf no TLS context holds was rejected by Envoy.
            let rejected = summary
                .as_ref()
                .is_ok_and(|o| !served.contains(&admin::normalize_serial(&o.cert.serial)));
            if rejected {
                let shown = summary
                    .as_ref()
                    .map_or_else(|_| String::new(), |o| o.cert.sha256.to_string());
                let why = format!(
                    "Envoy rejected the latest update (sha256 {shown}): no TLS context serves it"
                );
                let name = secret.name.clone();
                if self
                    .inventory
                    .record_rejected(secret.name, secret.stamp, why.clone())
                {
                    self.host.log(Level::Warn, &format!("{name}: {why}"));
                    self.unsent_change = true;
                }
                continue;
            }
            let changed = self.inventory.record(
                secret.name.clone(),
                secret.version,
                secret.stamp,
                summary.clone(),
            );
            if !changed {
                continue;
            }
            self.unsent_change = true;
            match &summary {
                Ok(Observed { cert, chain_sha256 }) => {
                    let not_after = u64::try_from(cert.not_after).unwrap_or(0);
                    self.host
                        .set_gauge(&not_after_metric(&secret.name), not_after);
                    let chain: Vec<String> = chain_sha256.iter().map(|f| f.short()).collect();
                    let then = if chain.is_empty() {
                        String::new()
                    } else {
                        format!(", then sha256 {}", chain.join(", "))
                    };
                    self.host.log(
                        Level::Info,
                        &format!(
                            "{} now serves sha256 {} (serial {}, notAfter {}){then}",
                            secret.name, cert.sha256, cert.serial, cert.not_after
                        ),
                    );
                }
                Err(e) => self.host.log(Level::Warn, &format!("{}: {e}", secret.name)),
            }
        }
        if let Some(cycle) = &mut self.cycle {
            cycle.served = Some(served);
        }
        self.up_to_date();
    }

    fn report_if_due(&mut self) {
        let now = self.host.now_ms();
        let slack = interval_ms(&self.config) / 4;
        let heartbeat_due = self.last_report_at.is_none_or(|at| {
            now + slack >= at.saturating_add(self.config.heartbeat.as_millis() as u64)
        });
        if !(self.unsent_change || heartbeat_due) {
            return;
        }
        let trigger = match (self.last_report_at, self.unsent_change) {
            (None, _) => Trigger::Startup,
            (Some(_), true) => Trigger::Change,
            (Some(_), false) => Trigger::Heartbeat,
        };
        let (certificates, errors) = self.inventory.report_parts();
        self.host
            .set_gauge(metric::LOADED, certificates.len() as u64);
        let body = Report {
            version: REPORT_VERSION,
            pod: self.pod.clone(),
            node_id: self.node_id.clone(),
            seq: self.next_seq(),
            trigger,
            certificates,
            errors,
        }
        .encode();
        let authorization = self
            .config
            .report_token
            .as_ref()
            .map(|t| format!("Bearer {t}"));
        let mut headers = vec![
            (":method", "POST"),
            (":path", self.config.report_path.as_str()),
            (":authority", self.config.report_authority.as_str()),
            ("content-type", "application/json"),
        ];
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        let call = self.host.http_call(
            &self.config.report_cluster,
            &headers,
            Some(&body),
            self.config.timeout,
        );
        match call {
            Ok(token) => {
                self.pending = Some(Pending {
                    token,
                    since: now,
                    step: Step::Report,
                })
            }
            Err(e) => self.fail(metric::REPORTS_FAILED, &e),
        }
    }

    fn on_report(&mut self, status: Option<u16>) {
        if !matches!(status, Some(200..=299)) {
            let what = match status {
                Some(status) => format!("controller answered HTTP {status}"),
                None => "controller unreachable or timed out".to_owned(),
            };
            return self.fail(metric::REPORTS_FAILED, &what);
        }
        if self.failures > 0 {
            self.host.log(
                Level::Info,
                &format!("reporting resumed after {} failures", self.failures),
            );
        }
        self.failures = 0;
        self.unsent_change = false;
        self.last_report_at = Some(self.host.now_ms());
        self.host.add_counter(metric::REPORTS_SENT, 1);
    }

    /// Starts a GET on the admin API; the answer comes back as `step`.
    fn get_admin(&mut self, path: &str, step: Step) {
        let headers = [
            (":method", "GET"),
            (":path", path),
            (":authority", self.config.admin_authority.as_str()),
        ];
        let call = self.host.http_call(
            &self.config.admin_cluster,
            &headers,
            None,
            self.config.timeout,
        );
        match call {
            Ok(token) => {
                let since = self.host.now_ms();
                self.pending = Some(Pending { token, since, step });
            }
            Err(e) => self.fail(metric::ADMIN_FAILED, &e),
        }
    }

    /// Ends the cycle and waits `interval × 2^(failures-1)`, capped.
    fn fail(&mut self, counter: &str, why: &str) {
        self.failures = self.failures.saturating_add(1);
        self.host.add_counter(counter, 1);
        let interval = interval_ms(&self.config);
        let backoff = interval
            .saturating_mul(1u64 << self.failures.saturating_sub(1).min(16))
            .min(self.config.max_backoff.as_millis() as u64);
        self.next_cycle_at = self.host.now_ms().saturating_add(backoff);
        // Log the first failure and then every tenth, so an outage cannot flood the log.
        if self.failures == 1 || self.failures.is_multiple_of(10) {
            self.host.log(
                Level::Warn,
                &format!(
                    "{why} (failure {}, next attempt in {backoff} ms)",
                    self.failures
                ),
            );
        }
    }

    fn step_down(&mut self) {
        self.leading = false;
        self.pending = None;
        self.inventory.clear();
        self.last_report_at = None;
        self.failures = 0;
        self.next_cycle_at = 0;
        self.tripwire = None;
        self.served = None;
        self.cycle = None;
        self.last_full_look_at = None;
    }

    /// Per-pod sequence number, shared by all workers so it keeps increasing
    /// across a change of reporting worker.
    fn next_seq(&self) -> u64 {
        for _ in 0..3 {
            let (value, cas) = self.host.shared_get(SEQ_KEY);
            let current = value
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            let next = current + 1;
            if self
                .host
                .shared_set(SEQ_KEY, next.to_string().as_bytes(), cas)
            {
                return next;
            }
        }
        // Only the lease holder writes this key, so contention means a takeover race.
        self.host.now_ms()
    }
}

fn interval_ms(config: &PluginConfig) -> u64 {
    config.interval.as_millis() as u64
}

/// Envoy stat names use '.' as a separator; keep resource names to one segment.
pub fn not_after_metric(resource: &str) -> String {
    let sanitized: String = resource
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}{sanitized}", metric::NOT_AFTER_PREFIX)
}

/// Pod name and namespace: configuration first, then Istio's node metadata,
/// then the node id (`router~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`).
fn pod_identity(host: &impl Host, config: &PluginConfig, node_id: &str) -> PodRef {
    let from_node_id = node_id
        .split('~')
        .nth(2)
        .and_then(|s| s.split_once('.'))
        .map(|(pod, ns)| (pod.to_owned(), ns.to_owned()));
    let name = config
        .pod_name
        .clone()
        .or_else(|| host.property(&["node", "metadata", "NAME"]))
        .or_else(|| from_node_id.as_ref().map(|(p, _)| p.clone()))
        .unwrap_or_else(|| {
            if node_id.is_empty() {
                "unknown".into()
            } else {
                node_id.into()
            }
        });
    let namespace = config
        .pod_namespace
        .clone()
        .or_else(|| host.property(&["node", "metadata", "NAMESPACE"]))
        .or_else(|| from_node_id.map(|(_, ns)| ns))
        .unwrap_or_else(|| "unknown".into());
    PodRef { name, namespace }
}
