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

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::core::model::ObjectRef;
use crate::core::reasons;

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

/// `reason` label for a refusal reason that is not in [`reasons::ALL`]: the
/// label set stays closed even if a caller passes an unexpected string.
pub const OTHER_REASON: &str = "Other";

/// What kind of object a publication count is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublishedKind {
    /// `credential` mode: one Secret per source.
    Secret,
    /// `merged` mode: one `.crt`/`.key` entry pair in the merged Secret.
    MergedEntry,
    /// `directory` mode: one `.crt`/`.key` file pair.
    FilePair,
}

impl PublishedKind {
    /// Every kind, e.g. to report zero for the ones not in use.
    pub const ALL: [PublishedKind; 3] = [Self::Secret, Self::MergedEntry, Self::FilePair];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::MergedEntry => "merged_entry",
            Self::FilePair => "file_pair",
        }
    }
}

/// The API verb of a request to the Kubernetes API server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiVerb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Apply,
    Delete,
}

impl ApiVerb {
    /// The label value (Kubernetes audit-log verb names).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch => "patch",
            Self::Apply => "apply",
            Self::Delete => "delete",
        }
    }
}

/// How a request to the API server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiOutcome {
    /// 2xx.
    Ok,
    /// 404: often expected (absent object, already deleted), so it is kept
    /// apart from `error`.
    NotFound,
    /// 409: optimistic-concurrency conflict or AlreadyExists.
    Conflict,
    /// 429: the API server asked us to slow down.
    Throttled,
    /// Anything else: 5xx, transport errors, timeouts.
    Error,
}

impl ApiOutcome {
    /// Classifies a kube client result.
    pub fn of<T>(result: &Result<T, kube::Error>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(kube::Error::Api(status)) => match status.code {
                404 => Self::NotFound,
                409 => Self::Conflict,
                429 => Self::Throttled,
                _ => Self::Error,
            },
            Err(_) => Self::Error,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }
}

/// How one reconcile pass ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReconcileOutcome {
    Ok,
    Error,
}

impl ReconcileOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
        }
    }
}

/// What became of one `POST /v1/reports`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportOutcome {
    Accepted,
    /// No or a wrong bearer token: 401.
    Unauthenticated,
    /// Authenticated, but not a live gateway pod reporting for itself: 403.
    Forbidden,
    /// Not a report this controller understands: 400.
    Malformed,
    /// Over the size or certificate-count bounds: 413.
    TooLarge,
    /// An older sequence number than the pod's last report: 409.
    Stale,
    /// This replica is not the leader: 503, the filter retries.
    NotLeader,
}

impl ReportOutcome {
    pub const ALL: [ReportOutcome; 7] = [
        Self::Accepted,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::Malformed,
        Self::TooLarge,
        Self::Stale,
        Self::NotLeader,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::Stale => "stale",
            Self::NotLeader => "not_leader",
        }
    }
}

/// A step the rollout ladder took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LadderStep {
    /// A rollout passed its timeout unconverged (an Event, no action yet).
    Stalled,
    RePush,
    ReapplyGatewayConfig,
    Evict,
}

impl LadderStep {
    pub const ALL: [LadderStep; 4] = [
        Self::Stalled,
        Self::RePush,
        Self::ReapplyGatewayConfig,
        Self::Evict,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stalled => "stalled",
            Self::RePush => "repush",
            Self::ReapplyGatewayConfig => "reapply_gateway_config",
            Self::Evict => "evict",
        }
    }
}

macro_rules! label_value_via_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
                encoder.write_str(self.as_str())
            }
        }
    )*};
}
label_value_via_as_str!(
    PublishedKind,
    ApiVerb,
    ApiOutcome,
    ReconcileOutcome,
    ReportOutcome,
    LadderStep
);

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
        for reason in reasons::ALL.iter().copied().chain([OTHER_REASON]) {
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
                converge,
            }),
        }
    }

    /// A source change took `latency` to be published.
    pub fn observe_publish(&self, latency: Duration) {
        self.inner.publish_latency.observe(latency.as_secs_f64());
    }

    /// A source was refused for `reason`, one of [`reasons::ALL`] (anything
    /// else is counted as [`OTHER_REASON`]).
    pub fn refused(&self, reason: &str) {
        let reason = reasons::ALL
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
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn sample_lines(text: &str) -> impl Iterator<Item = &str> {
        text.lines().filter(|l| !l.starts_with('#'))
    }

    fn value_of(text: &str, series: &str) -> Option<String> {
        sample_lines(text)
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    /// One event of each kind, so every family has a series.
    fn busy() -> Metrics {
        let m = Metrics::new();
        m.set_not_after(&ObjectRef::new("shop", "shop-tls"), 1_900_000_000);
        m.api_request(ApiVerb::Get, ApiOutcome::Ok);
        let view = crate::core::rollout::PublicationView {
            source: "shop/shop-tls".into(),
            sds_resource: "kubernetes://shop.shop-tls".into(),
            sha256: certsync_contract::Fingerprint([1; 32]),
            state: crate::core::rollout::RolloutState::Converged,
            pods: std::collections::BTreeMap::from([(
                "gw-0".to_owned(),
                crate::core::rollout::PodView {
                    state: crate::core::rollout::PodState::Verified,
                    served_sha256: None,
                    served_not_after: Some(1_900_000_000),
                },
            )]),
        };
        m.set_rollout(&[view]);
        m
    }

    #[test]
    fn encode_has_every_family_with_help_and_type() {
        let text = busy().encode();
        for family in FAMILIES {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family} HELP in:\n{text}"
            );
            assert!(text.contains(&format!("# TYPE {family} ")), "{family} TYPE");
        }
        assert!(text.contains("# TYPE certsync_refusals_total counter\n"));
        assert!(text.contains("# TYPE certsync_publish_latency_seconds histogram\n"));
        assert!(text.contains("# TYPE certsync_leader gauge\n"));
        assert!(!text.contains("# EOF"), "0.0.4 has no EOF marker");
        // Pre-registered series start at zero.
        assert_eq!(
            value_of(&text, "certsync_refusals_total{reason=\"KeyMismatch\"}").as_deref(),
            Some("0")
        );
        assert_eq!(value_of(&text, "certsync_leader").as_deref(), Some("0"));

        // A labelled family without any series yet is left out, as
        // client_golang does; the unlabelled and pre-registered ones are not.
        let fresh = Metrics::new().encode();
        for family in FAMILIES {
            let listed = fresh.contains(&format!("# TYPE {family} "));
            assert_eq!(listed, !ON_DEMAND_FAMILIES.contains(&family), "{family}");
        }
    }

    #[test]
    fn openmetrics_ends_with_eof() {
        let text = busy().encode_openmetrics();
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE certsync_refusals counter\n"));
    }

    #[test]
    fn methods_move_their_series() {
        let m = Metrics::new();
        let clone = m.clone();
        m.observe_publish(Duration::from_millis(3));
        m.observe_publish(Duration::from_secs(20));
        m.refused(reasons::KEY_MISMATCH);
        clone.refused(reasons::KEY_MISMATCH);
        m.refused("something a caller made up");
        m.set_published(PublishedKind::MergedEntry, 4);
        m.set_not_after(&ObjectRef::new("shop", "shop-tls"), 1_900_000_000);
        m.api_request(ApiVerb::Update, ApiOutcome::Conflict);
        m.reconciled(ReconcileOutcome::Error);
        m.set_leader(true);
        let text = m.encode();
        let expect = [
            ("certsync_publish_latency_seconds_count", "2"),
            ("certsync_publish_latency_seconds_bucket{le=\"0.001\"}", "0"),
            ("certsync_publish_latency_seconds_bucket{le=\"0.005\"}", "1"),
            ("certsync_publish_latency_seconds_bucket{le=\"10.0\"}", "1"),
            ("certsync_publish_latency_seconds_bucket{le=\"+Inf\"}", "2"),
            ("certsync_refusals_total{reason=\"KeyMismatch\"}", "2"),
            ("certsync_refusals_total{reason=\"Other\"}", "1"),
            ("certsync_published_objects{kind=\"merged_entry\"}", "4"),
            ("certsync_published_objects{kind=\"secret\"}", "0"),
            (
                "certsync_source_not_after_seconds{source=\"shop/shop-tls\"}",
                "1900000000",
            ),
            (
                "certsync_api_requests_total{verb=\"update\",outcome=\"conflict\"}",
                "1",
            ),
            ("certsync_reconcile_total{outcome=\"error\"}", "1"),
            ("certsync_leader", "1"),
        ];
        for (series, value) in expect {
            assert_eq!(
                value_of(&text, series).as_deref(),
                Some(value),
                "{series} in:\n{text}"
            );
        }
        assert!(!text.contains("something a caller made up"));
        m.set_leader(false);
        assert_eq!(
            value_of(&m.encode(), "certsync_leader").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn forgotten_source_disappears() {
        let m = Metrics::new();
        let a = ObjectRef::new("shop", "a");
        let b = ObjectRef::new("shop", "b");
        m.set_not_after(&a, 1);
        m.set_not_after(&b, 2);
        m.forget_source(&a);
        m.forget_source(&ObjectRef::new("shop", "never-published"));
        let text = m.encode();
        assert!(!text.contains("source=\"shop/a\""), "{text}");
        assert!(text.contains("source=\"shop/b\""));
        assert!(text.contains("# TYPE certsync_source_not_after_seconds gauge"));
    }

    #[test]
    fn label_names_are_a_closed_set_and_values_carry_no_data() {
        let m = Metrics::new();
        m.refused(reasons::EXPIRED);
        m.refused("-----BEGIN PRIVATE KEY-----");
        m.set_not_after(&ObjectRef::new("ns", "name"), 5);
        for verb in [ApiVerb::Get, ApiVerb::Apply, ApiVerb::Watch] {
            for outcome in [ApiOutcome::Ok, ApiOutcome::Throttled, ApiOutcome::Error] {
                m.api_request(verb, outcome);
            }
        }
        m.observe_publish(Duration::from_millis(1));
        let text = m.encode();
        let allowed: BTreeSet<&str> = [
            "reason", "source", "kind", "verb", "outcome", "le", "step", "state", "pod",
        ]
        .into_iter()
        .collect();
        let mut reason_values = BTreeSet::new();
        for line in sample_lines(&text) {
            let Some((_, labels)) = line.split_once('{') else {
                continue;
            };
            let labels = labels.split_once('}').map_or("", |(l, _)| l);
            for pair in labels.split("\",") {
                let (name, value) = pair.split_once("=\"").unwrap_or((pair, ""));
                assert!(allowed.contains(name), "unexpected label {name} in {line}");
                if name == "reason" {
                    reason_values.insert(value.trim_end_matches('"').to_owned());
                }
            }
        }
        let known: BTreeSet<String> = reasons::ALL
            .iter()
            .chain(&[OTHER_REASON])
            .map(|r| (*r).to_owned())
            .collect();
        assert_eq!(reason_values, known);
        assert!(!text.contains("PRIVATE KEY"));
    }

    #[test]
    fn prometheus_text_conversion() {
        let om =
            "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 3\n\
                  # HELP b Bytes.\n# TYPE b gauge\n# UNIT b bytes\nb 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 3\n\
             # HELP b Bytes.\n# TYPE b gauge\nb 1\n"
        );
    }
}
