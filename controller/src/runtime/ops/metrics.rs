//! The controller's Prometheus metrics: what operators alert on (refusals,
//! expiry, publish latency, API errors, who leads), served at `/metrics`.
//!
//! Every label value comes from a closed set — an enum, a refusal reason
//! constant from [`crate::core::reasons`], or a source's `<namespace>/<name>`
//! — so a metric can never carry key material or any other Secret data, and
//! the number of series stays bounded by the number of sources. Callers use
//! methods named for what just happened ([`Metrics::refused`],
//! [`Metrics::observe_publish`], ...) rather than touching metric objects, so
//! names and labels are defined once, here.
//!
//! Like client_golang, a labelled family is listed once it has a series:
//! `certsync_source_not_after_seconds` appears with the first published
//! source and `certsync_api_requests_total` with the first request. The
//! other families are pre-set to zero for every label value.
//!
//! [`Metrics::encode`] produces the Prometheus text format 0.0.4 that every
//! scraper accepts; [`Metrics::encode_openmetrics`] the OpenMetrics text the
//! underlying `prometheus-client` crate speaks natively, for scrapers that
//! ask for it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::core::model::ObjectRef;
use crate::core::reasons;
use crate::core::rollout::Reporting;

/// Every metric family, as named in the Prometheus text format.
pub const FAMILIES: [&str; 13] = [
    "certsync_publish_latency_seconds",
    "certsync_refusals_total",
    "certsync_published_objects",
    "certsync_source_not_after_seconds",
    "certsync_api_requests_total",
    "certsync_reconcile_total",
    "certsync_leader",
    "certsync_reports_total",
    "certsync_rollout_ladder_steps_total",
    "certsync_rollout_pod_state",
    "certsync_served_not_after_seconds",
    "certsync_rollout_publications",
    "certsync_rollout_converge_seconds",
];

/// Families listed only once they have a series (labelled, not pre-set).
pub const ON_DEMAND_FAMILIES: [&str; 5] = [
    "certsync_source_not_after_seconds",
    "certsync_api_requests_total",
    "certsync_rollout_pod_state",
    "certsync_served_not_after_seconds",
    "certsync_rollout_publications",
];

/// Upper bounds (seconds) of the publish-latency buckets: 1 ms to 10 s.
pub const PUBLISH_LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds (seconds) of the time-to-converge buckets: 100 ms to 10 min.
pub const CONVERGE_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// `reason` label for a refusal reason that is not in [`reasons::REFUSALS`]: the
/// label set stays closed even if a caller passes an unexpected string.
pub const OTHER_REASON: &str = "Other";

mod labels;
pub use labels::{ApiOutcome, ApiVerb, LadderStep, PublishedKind, ReconcileOutcome, ReportOutcome};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabels {
    kind: PublishedKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourceLabels {
    source: String,
}

impl SourceLabels {
    fn of(source: &ObjectRef) -> Self {
        SourceLabels {
            source: source.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ApiLabels {
    verb: ApiVerb,
    outcome: ApiOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: ReconcileOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReportLabels {
    outcome: ReportOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StepLabels {
    step: LadderStep,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PodStateLabels {
    source: String,
    pod: String,
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SourcePodLabels {
    source: String,
    pod: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

struct Inner {
    registry: Registry,
    publish_latency: Histogram,
    refusals: Family<ReasonLabels, Counter>,
    published: Family<KindLabels, Gauge>,
    not_after: Family<SourceLabels, Gauge>,
    api_requests: Family<ApiLabels, Counter>,
    reconciles: Family<OutcomeLabels, Counter>,
    leader: Gauge,
    reports: Family<ReportLabels, Counter>,
    ladder: Family<StepLabels, Counter>,
    pod_state: Family<PodStateLabels, Gauge>,
    served_not_after: Family<SourcePodLabels, Gauge>,
    publications: Family<StateLabels, Gauge>,
    gateway_pods: Family<StateLabels, Gauge>,
    converge: Histogram,
}

/// The controller's metrics. Cloning is cheap and every clone updates the
/// same series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family. Refusal reasons, published kinds, reconcile
    /// outcomes and the leader gauge start at zero, so dashboards and
    /// `increase()` alerts see them before the first event.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let publish_latency = Histogram::new(PUBLISH_LATENCY_BUCKETS);
        registry.register(
            "certsync_publish_latency_seconds",
            "Seconds from seeing a source change to its publication being written",
            publish_latency.clone(),
        );
        let refusals = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "certsync_refusals",
            "Sources refused by selection or validation, by reason",
            refusals.clone(),
        );
        let published = Family::<KindLabels, Gauge>::default();
        registry.register(
            "certsync_published_objects",
            "Objects currently published, by kind (secret, merged_entry, file_pair)",
            published.clone(),
        );
        let not_after = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "certsync_source_not_after_seconds",
            "notAfter of each published source's leaf certificate, Unix seconds",
            not_after.clone(),
        );
        let api_requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "certsync_api_requests",
            "Requests to the Kubernetes API server, by verb and outcome",
            api_requests.clone(),
        );
        let reconciles = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "certsync_reconcile",
            "Reconcile passes, by outcome",
            reconciles.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "certsync_leader",
            "1 while this replica holds the leader lease, else 0",
            leader.clone(),
        );

        let reports = Family::<ReportLabels, Counter>::default();
        registry.register(
            "certsync_reports",
            "Reports received from gateway pods, by outcome",
            reports.clone(),
        );
        let ladder = Family::<StepLabels, Counter>::default();
        registry.register(
            "certsync_rollout_ladder_steps",
            "Steps the re-trigger ladder took for stuck rollouts, by step",
            ladder.clone(),
        );
        let pod_state = Family::<PodStateLabels, Gauge>::default();
        registry.register(
            "certsync_rollout_pod_state",
            "1 for each publication and gateway pod in its current state (Verified, Stale, Missing, Unknown)",
            pod_state.clone(),
        );
        let served_not_after = Family::<SourcePodLabels, Gauge>::default();
        registry.register(
            "certsync_served_not_after_seconds",
            "notAfter of the certificate each gateway pod serves for each publication, Unix seconds",
            served_not_after.clone(),
        );
        let publications = Family::<StateLabels, Gauge>::default();
        registry.register(
            "certsync_rollout_publications",
            "Publications by rollout state (Converged, Progressing, NoPods)",
            publications.clone(),
        );
        let gateway_pods = Family::<StateLabels, Gauge>::default();
        registry.register(
            "certsync_gateway_pods",
            "Live gateway pods by how they report (Reporting, Awaiting, FilterNotLoaded, NotReporting)",
            gateway_pods.clone(),
        );
        for state in Reporting::ALL {
            drop(gateway_pods.get_or_create(&StateLabels {
                state: state.as_str(),
            }));
        }
        let converge = Histogram::new(CONVERGE_BUCKETS);
        registry.register(
            "certsync_rollout_converge_seconds",
            "Seconds from publishing a certificate to every live gateway pod serving it",
            converge.clone(),
        );

        // `get_or_create` creates the series; the returned guard is not needed.
        for outcome in ReportOutcome::ALL {
            drop(reports.get_or_create(&ReportLabels { outcome }));
        }
        for step in LadderStep::ALL {
            drop(ladder.get_or_create(&StepLabels { step }));
        }
        for reason in reasons::REFUSALS.iter().copied().chain([OTHER_REASON]) {
            drop(refusals.get_or_create(&ReasonLabels { reason }));
        }
        for kind in PublishedKind::ALL {
            drop(published.get_or_create(&KindLabels { kind }));
        }
        for outcome in [ReconcileOutcome::Ok, ReconcileOutcome::Error] {
            drop(reconciles.get_or_create(&OutcomeLabels { outcome }));
        }

        Metrics {
            inner: Arc::new(Inner {
                registry,
                publish_latency,
                refusals,
                published,
                not_after,
                api_requests,
                reconciles,
                leader,
                reports,
                ladder,
                pod_state,
                served_not_after,
                publications,
                gateway_pods,
                converge,
            }),
        }
    }

    /// A source change took `latency` to be published.
    pub fn observe_publish(&self, latency: Duration) {
        self.inner.publish_latency.observe(latency.as_secs_f64());
    }

    /// A source was refused for `reason`, one of [`reasons::REFUSALS`] (anything
    /// else is counted as [`OTHER_REASON`]).
    pub fn refused(&self, reason: &str) {
        let reason = reasons::REFUSALS
            .iter()
            .copied()
            .find(|r| *r == reason)
            .unwrap_or(OTHER_REASON);
        self.inner
            .refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// `n` objects of `kind` are published now.
    pub fn set_published(&self, kind: PublishedKind, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.inner
            .published
            .get_or_create(&KindLabels { kind })
            .set(n);
    }

    /// `source` is published with a leaf valid until `not_after` (Unix
    /// seconds).
    pub fn set_not_after(&self, source: &ObjectRef, not_after: i64) {
        self.inner
            .not_after
            .get_or_create(&SourceLabels::of(source))
            .set(not_after);
    }

    /// `source` is no longer published: its series disappear.
    pub fn forget_source(&self, source: &ObjectRef) {
        self.inner.not_after.remove(&SourceLabels::of(source));
    }

    /// One request to the API server ended with `outcome`.
    pub fn api_request(&self, verb: ApiVerb, outcome: ApiOutcome) {
        self.inner
            .api_requests
            .get_or_create(&ApiLabels { verb, outcome })
            .inc();
    }

    /// One reconcile pass ended with `outcome`.
    pub fn reconciled(&self, outcome: ReconcileOutcome) {
        self.inner
            .reconciles
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A report was answered with `outcome`.
    pub fn report(&self, outcome: ReportOutcome) {
        self.inner
            .reports
            .get_or_create(&ReportLabels { outcome })
            .inc();
    }

    /// The ladder took `step`.
    pub fn ladder_step(&self, step: LadderStep) {
        self.inner.ladder.get_or_create(&StepLabels { step }).inc();
    }

    /// A publication converged `after` publishing.
    pub fn observe_converge(&self, after: Duration) {
        self.inner.converge.observe(after.as_secs_f64());
    }

    /// Replaces the rollout series with `views`: one state series per
    /// publication and pod, and the served notAfter where known. Series of
    /// publications and pods that are gone disappear.
    pub fn set_rollout(&self, views: &[crate::core::rollout::PublicationView]) {
        use crate::core::rollout::RolloutState;
        self.inner.pod_state.clear();
        self.inner.served_not_after.clear();
        let mut counts = [0i64; 3];
        for view in views {
            counts[match view.state {
                RolloutState::Converged => 0,
                RolloutState::Progressing => 1,
                RolloutState::NoPods => 2,
            }] += 1;
            for (pod, p) in &view.pods {
                let labels = PodStateLabels {
                    source: view.source.clone(),
                    pod: pod.clone(),
                    state: p.state.as_str(),
                };
                self.inner.pod_state.get_or_create(&labels).set(1);
                if let Some(not_after) = p.served_not_after {
                    let labels = SourcePodLabels {
                        source: view.source.clone(),
                        pod: pod.clone(),
                    };
                    self.inner
                        .served_not_after
                        .get_or_create(&labels)
                        .set(not_after);
                }
            }
        }
        for (state, n) in [
            RolloutState::Converged,
            RolloutState::Progressing,
            RolloutState::NoPods,
        ]
        .into_iter()
        .zip(counts)
        {
            self.inner
                .publications
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(n);
        }
    }

    /// How many live gateway pods are in each [`Reporting`] state.
    pub fn set_gateway_pods<'a>(&self, states: impl IntoIterator<Item = &'a Reporting>) {
        let mut counts: BTreeMap<Reporting, i64> = Reporting::ALL.iter().map(|s| (*s, 0)).collect();
        for state in states {
            *counts.entry(*state).or_default() += 1;
        }
        for (state, n) in counts {
            self.inner
                .gateway_pods
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(n);
        }
    }

    /// This replica started (`true`) or stopped (`false`) leading.
    pub fn set_leader(&self, leading: bool) {
        self.inner.leader.set(i64::from(leading));
    }

    /// The Prometheus text exposition format, version 0.0.4
    /// (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        to_prometheus_text(&self.encode_openmetrics())
    }

    /// The OpenMetrics text format, version 1.0.0
    /// (`application/openmetrics-text; version=1.0.0`), ending in `# EOF`.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would only
        // truncate the output, never panic.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// OpenMetrics text → Prometheus text 0.0.4. They differ only where a
/// counter is concerned (OpenMetrics names the family `x` and its sample
/// `x_total`; 0.0.4 names both `x_total`) and in the `# EOF` / `# UNIT`
/// lines, which 0.0.4 does not have. Gauges and histograms are identical.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some((help_name, help)) = pending_help.take() {
                if help_name == name {
                    let _ = writeln!(out, "# HELP {name}{suffix} {help}");
                }
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        if let Some((name, help)) = pending_help.take() {
            let _ = writeln!(out, "# HELP {name} {help}");
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
