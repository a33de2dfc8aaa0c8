//! Rollout verification: for every publication × live gateway pod, is the pod
//! serving the certificate that was published? Plain functions of what the
//! manifest says, which pods are live, and what their filters last reported.
//!
//! ```text
//!  ManifestEntry* (expected sha256 per SDS resource) ─┐
//!  LivePod*       (Ready gateway pods)                ├─▶ assess ─▶ PublicationView*
//!  Observation*   (last report per pod)               ┘                │
//!                                                     Tracker::step ◀──┘ (clock)
//!                                                         │
//!                     Action* (Converged, Stalled, RePush, Reapply, Evict)
//! ```
//!
//! Per pod the state is **Verified** (serving the expected SHA-256),
//! **Stale** (the resource is loaded with another certificate, or with one
//! the filter could not parse), **Missing** (the pod reports but has not
//! loaded the resource) or **Unknown** (no report within the heartbeat
//! window — the filter is not loaded, the pod is wedged, or it just started).
//! A publication is **Converged** when every live pod is Verified.
//!
//! A publication that stays unconverged past the rollout timeout climbs a
//! ladder, one rung per timeout: re-push the published object, re-apply the
//! gateway config, evict the pods still not Verified. Rungs that do not apply
//! (nothing to re-push in directory mode, gateway config not managed,
//! eviction not enabled) are skipped. The ladder climbs once per episode;
//! evictions are additionally rate-limited across all publications.

use super::manifest::ManifestEntry;
use certsync_contract::report::Report;
use certsync_contract::Fingerprint;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// What one gateway pod does with one publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PodState {
    Verified,
    Stale,
    Missing,
    Unknown,
}

impl PodState {
    pub const ALL: [PodState; 4] = [Self::Verified, Self::Stale, Self::Missing, Self::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            PodState::Verified => "Verified",
            PodState::Stale => "Stale",
            PodState::Missing => "Missing",
            PodState::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for PodState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a publication's rollout amounts to across the live pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RolloutState {
    /// Every live pod serves the published certificate.
    Converged,
    /// At least one live pod does not (yet).
    Progressing,
    /// No live gateway pod: nothing can be verified.
    NoPods,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Converged => "Converged",
            RolloutState::Progressing => "Progressing",
            RolloutState::NoPods => "NoPods",
        }
    }
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gateway pod that counts: Ready and matching the gateway selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivePod {
    pub name: String,
    /// `status.podIP`: reports must come from it.
    pub ip: Option<std::net::IpAddr>,
}

/// One certificate a pod serves, as its filter reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    pub sha256: Fingerprint,
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// The last report of one pod, reduced to what verification needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub node_id: String,
    pub seq: u64,
    /// Unix milliseconds, the controller's clock.
    pub received_at_ms: i64,
    /// SDS resource name → served leaf.
    pub certificates: BTreeMap<String, Served>,
    /// SDS resources loaded but not parseable by the filter.
    pub unparsed: BTreeSet<String>,
}

impl Observation {
    pub fn from_report(report: &Report, received_at_ms: i64) -> Self {
        Observation {
            node_id: report.node_id.clone(),
            seq: report.seq,
            received_at_ms,
            certificates: report
                .certificates
                .iter()
                .map(|c| {
                    let served = Served {
                        sha256: c.cert.sha256,
                        serial: c.cert.serial.clone(),
                        not_after: c.cert.not_after,
                    };
                    (c.resource.clone(), served)
                })
                .collect(),
            unparsed: report.errors.iter().map(|e| e.resource.clone()).collect(),
        }
    }

    /// Same certificates loaded: a heartbeat that changes nothing.
    pub fn same_content(&self, other: &Observation) -> bool {
        self.certificates == other.certificates && self.unparsed == other.unparsed
    }
}

/// Whether a report may replace the pod's previous one: a restarted filter
/// (new node id, or a Startup report) starts its sequence again; otherwise
/// the sequence must move forward, so a replayed or reordered report never
/// rolls the observed state back.
pub fn accepts(previous: Option<&Observation>, report: &Report) -> bool {
    match previous {
        None => true,
        Some(p) if p.node_id != report.node_id => true,
        Some(_) if report.trigger == certsync_contract::report::Trigger::Startup => true,
        Some(p) => report.seq > p.seq,
    }
}

/// One pod's view of one publication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    pub state: PodState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_sha256: Option<Fingerprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_not_after: Option<i64>,
}

/// One publication across the live pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationView {
    pub source: String,
    pub sds_resource: String,
    pub sha256: Fingerprint,
    pub state: RolloutState,
    pub pods: BTreeMap<String, PodView>,
}

impl PublicationView {
    pub fn verified(&self) -> usize {
        self.pods
            .values()
            .filter(|p| p.state == PodState::Verified)
            .count()
    }

    /// Pods not serving the published certificate.
    pub fn lagging(&self) -> impl Iterator<Item = (&String, &PodView)> {
        self.pods
            .iter()
            .filter(|(_, p)| p.state != PodState::Verified)
    }
}

/// The state of `sds_resource` with expected leaf `expected` on one pod.
pub fn pod_state(
    observation: Option<&Observation>,
    sds_resource: &str,
    expected: &Fingerprint,
    now_ms: i64,
    heartbeat_window_ms: i64,
) -> PodView {
    let unknown = PodView {
        state: PodState::Unknown,
        served_sha256: None,
        served_not_after: None,
    };
    let Some(obs) = observation else {
        return unknown;
    };
    if now_ms - obs.received_at_ms > heartbeat_window_ms {
        return unknown;
    }
    match obs.certificates.get(sds_resource) {
        Some(served) => PodView {
            state: if served.sha256 == *expected {
                PodState::Verified
            } else {
                PodState::Stale
            },
            served_sha256: Some(served.sha256),
            served_not_after: Some(served.not_after),
        },
        None if obs.unparsed.contains(sds_resource) => PodView {
            state: PodState::Stale,
            served_sha256: None,
            served_not_after: None,
        },
        None => PodView {
            state: PodState::Missing,
            served_sha256: None,
            served_not_after: None,
        },
    }
}

/// Every publication of the manifest against every live pod.
pub fn assess<E: Borrow<ManifestEntry>>(
    publications: &[E],
    pods: &[LivePod],
    observations: &BTreeMap<String, Observation>,
    now_ms: i64,
    heartbeat_window_ms: i64,
) -> Vec<PublicationView> {
    publications
        .iter()
        .map(|entry| {
            let entry = entry.borrow();
            let views: BTreeMap<String, PodView> = pods
                .iter()
                .map(|pod| {
                    let view = pod_state(
                        observations.get(&pod.name),
                        &entry.sds_resource,
                        &entry.sha256,
                        now_ms,
                        heartbeat_window_ms,
                    );
                    (pod.name.clone(), view)
                })
                .collect();
            let state = if views.is_empty() {
                RolloutState::NoPods
            } else if views.values().all(|v| v.state == PodState::Verified) {
                RolloutState::Converged
            } else {
                RolloutState::Progressing
            };
            PublicationView {
                source: entry.source.clone(),
                sds_resource: entry.sds_resource.clone(),
                sha256: entry.sha256,
                state,
                pods: views,
            }
        })
        .collect()
}

/// Which ladder rungs can do something in this deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderConfig {
    pub timeout_ms: i64,
    /// There is a published object to touch (credential and merged modes).
    pub can_repush: bool,
    /// The controller manages the gateway-side Istio objects.
    pub can_reapply: bool,
    /// `--evict-stale-pods`.
    pub can_evict: bool,
    /// At most one eviction per this long, across all publications.
    pub eviction_interval_ms: i64,
}

/// A rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rung {
    RePush,
    Reapply,
    Evict,
}

/// What the runtime must do (or tell) after a step of the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// All live pods serve the publication for the first time; `after_ms`
    /// since it was published. (Converging again after a pod was Unknown
    /// for a while is not a rollout and is not announced.)
    Converged {
        source: String,
        sha256: Fingerprint,
        after_ms: i64,
    },
    /// Unconverged past the timeout; `pods` are the ones lagging, with their state.
    Stalled {
        source: String,
        sha256: Fingerprint,
        pods: Vec<(String, PodState)>,
    },
    /// Touch what was published for `source`, so the gateway is pushed again.
    RePush { source: String },
    /// Re-apply the gateway-side config (one action, however many publications are stuck).
    Reapply,
    /// Evict `pod`, which still does not serve `source`'s certificate.
    Evict { pod: String, source: String },
}

/// Progress of one publication (a source at one sha256).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Episode {
    sha256: Fingerprint,
    /// Start of the current unconverged stretch (None while converged).
    progressing_since_ms: Option<i64>,
    /// When this sha256 was first expected: the publish time.
    published_at_ms: i64,
    converged_at_ms: Option<i64>,
    /// Time of the last rung taken (or of the stall), this episode.
    last_step_ms: Option<i64>,
    /// Rungs taken this episode.
    taken: BTreeSet<Rung>,
    stalled: bool,
}

/// At most this many ladder rungs (re-pushes, evictions) per rollout
/// timeout across all publications: a rotation of a thousand certificates
/// that stalls on one pod must not turn into a thousand writes at once.
pub const LADDER_BUDGET: usize = 100;

/// Publish times, convergence and ladder progress across assessments.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    episodes: BTreeMap<String, Episode>,
    last_eviction_ms: Option<i64>,
    /// Start of the current budget period and rungs taken in it.
    budget: (i64, usize),
}

impl Tracker {
    /// Seeds publish (and convergence) times, e.g. from the manifest a
    /// previous controller wrote, so a restart neither resets them nor
    /// announces every publication as newly rolled out.
    pub fn remember_published(
        &mut self,
        source: &str,
        sha256: Fingerprint,
        published_at_ms: i64,
        converged_at_ms: Option<i64>,
    ) {
        self.episodes.entry(source.to_owned()).or_insert(Episode {
            sha256,
            progressing_since_ms: Some(published_at_ms),
            published_at_ms,
            converged_at_ms,
            last_step_ms: None,
            taken: BTreeSet::new(),
            stalled: false,
        });
    }

    /// When `source`'s current certificate was first published.
    pub fn published_at_ms(&self, source: &str) -> Option<i64> {
        self.episodes.get(source).map(|e| e.published_at_ms)
    }

    /// When `source`'s current certificate was first verified on every pod.
    pub fn converged_at_ms(&self, source: &str) -> Option<i64> {
        self.episodes.get(source).and_then(|e| e.converged_at_ms)
    }

    /// Advances every publication to `now_ms` and says what to do.
    pub fn step(
        &mut self,
        views: &[PublicationView],
        now_ms: i64,
        ladder: &LadderConfig,
    ) -> Vec<Action> {
        let live: BTreeSet<&str> = views.iter().map(|v| v.source.as_str()).collect();
        self.episodes
            .retain(|source, _| live.contains(source.as_str()));
        let mut actions = Vec::new();
        let mut reapply = false;
        for view in views {
            let episode = self
                .episodes
                .entry(view.source.clone())
                .or_insert_with(|| Episode::new(view.sha256, now_ms));
            if episode.sha256 != view.sha256 {
                *episode = Episode::new(view.sha256, now_ms);
            }
            match view.state {
                RolloutState::Converged => {
                    if episode.progressing_since_ms.take().is_some() {
                        if episode.converged_at_ms.is_none() {
                            actions.push(Action::Converged {
                                source: view.source.clone(),
                                sha256: view.sha256,
                                after_ms: now_ms - episode.published_at_ms,
                            });
                            episode.converged_at_ms = Some(now_ms);
                        }
                        episode.last_step_ms = None;
                        episode.taken.clear();
                        episode.stalled = false;
                    }
                }
                RolloutState::NoPods => {}
                RolloutState::Progressing => {
                    let since = *episode.progressing_since_ms.get_or_insert(now_ms);
                    let due = episode.last_step_ms.unwrap_or(since) + ladder.timeout_ms;
                    // Pods that do not report cannot be helped by a push and
                    // prove nothing when evicted: the ladder is for pods that
                    // report the wrong certificate, or none for the resource.
                    let actionable = view.lagging().any(|(_, v)| v.state != PodState::Unknown);
                    if now_ms < due || !actionable {
                        continue;
                    }
                    if now_ms - self.budget.0 >= ladder.timeout_ms {
                        self.budget = (now_ms, 0);
                    }
                    if self.budget.1 >= LADDER_BUDGET {
                        continue;
                    }
                    if !episode.stalled {
                        episode.stalled = true;
                        episode.last_step_ms = Some(now_ms);
                        actions.push(Action::Stalled {
                            source: view.source.clone(),
                            sha256: view.sha256,
                            pods: view.lagging().map(|(p, v)| (p.clone(), v.state)).collect(),
                        });
                    }
                    let Some(rung) = next_rung(&episode.taken, ladder) else {
                        continue;
                    };
                    if rung == Rung::Evict {
                        let rested = self
                            .last_eviction_ms
                            .is_none_or(|t| now_ms - t >= ladder.eviction_interval_ms);
                        if !rested {
                            continue;
                        }
                        // Evict one lagging pod per rung: the budget is global.
                        let Some((pod, _)) =
                            view.lagging().find(|(_, v)| v.state != PodState::Unknown)
                        else {
                            continue;
                        };
                        self.last_eviction_ms = Some(now_ms);
                        actions.push(Action::Evict {
                            pod: pod.clone(),
                            source: view.source.clone(),
                        });
                    } else if rung == Rung::RePush {
                        actions.push(Action::RePush {
                            source: view.source.clone(),
                        });
                    } else {
                        reapply = true;
                    }
                    if rung != Rung::Reapply {
                        // One re-apply serves all publications: not counted.
                        self.budget.1 += 1;
                    }
                    episode.taken.insert(rung);
                    episode.last_step_ms = Some(now_ms);
                }
            }
        }
        if reapply {
            actions.push(Action::Reapply);
        }
        actions
    }
}

impl Episode {
    fn new(sha256: Fingerprint, now_ms: i64) -> Self {
        Episode {
            sha256,
            progressing_since_ms: Some(now_ms),
            published_at_ms: now_ms,
            converged_at_ms: None,
            last_step_ms: None,
            taken: BTreeSet::new(),
            stalled: false,
        }
    }
}

fn next_rung(taken: &BTreeSet<Rung>, ladder: &LadderConfig) -> Option<Rung> {
    [
        (Rung::RePush, ladder.can_repush),
        (Rung::Reapply, ladder.can_reapply),
        (Rung::Evict, ladder.can_evict),
    ]
    .into_iter()
    .find(|(rung, enabled)| *enabled && !taken.contains(rung))
    .map(|(rung, _)| rung)
}

/// Per source: what the manifest and CertMerge status say about its rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutNote {
    pub sha256: Fingerprint,
    pub state: RolloutState,
    /// Unix milliseconds.
    pub published_at: Option<i64>,
    /// Unix milliseconds: first time every live pod served it.
    pub converged_at: Option<i64>,
    pub pods: BTreeMap<String, PodState>,
}

/// Rollout notes per source, shared by verification, the manifest writer
/// and `GET /v1/status` (a thousand sources: not copied every tick).
pub type RolloutNotes = std::sync::Arc<BTreeMap<String, RolloutNote>>;

/// Writes `note` into a manifest entry, when it is about the same
/// certificate (a new publication has no rollout yet).
pub fn annotate(entry: &mut ManifestEntry, note: &RolloutNote) {
    if note.sha256 != entry.sha256 {
        return;
    }
    entry.state = Some(note.state.as_str().to_owned());
    entry.published_at = note.published_at.map(super::manifest::rfc3339_ms);
    entry.converged_at = note.converged_at.map(super::manifest::rfc3339_ms);
    entry.rollout = note
        .pods
        .iter()
        .map(|(p, s)| (p.clone(), s.as_str().to_owned()))
        .collect();
}

/// Why a served certificate deserves a Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum WarningKind {
    /// notAfter is within the expiry-warning window.
    Expiring,
    /// notAfter has passed: clients are failing.
    Expired,
    /// A pod serves a resource in cert-sync's namespace of names that no
    /// source publishes (left over after an unpublish, or written by hand).
    Drift,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Warning {
    pub kind: WarningKind,
    pub pod: String,
    pub resource: String,
    pub sha256: Fingerprint,
    /// Unix seconds.
    pub not_after: i64,
}

impl Warning {
    pub fn message(&self) -> String {
        let when = super::manifest::rfc3339(self.not_after);
        let sha = self.sha256.short();
        match self.kind {
            WarningKind::Expiring => format!(
                "pod {} serves {} (sha256 {sha}) which expires at {when}",
                self.pod, self.resource
            ),
            WarningKind::Expired => format!(
                "pod {} serves {} (sha256 {sha}) which EXPIRED at {when}",
                self.pod, self.resource
            ),
            WarningKind::Drift => format!(
                "pod {} serves {} (sha256 {sha}, notAfter {when}) but no source publishes it",
                self.pod, self.resource
            ),
        }
    }
}

/// Expiry and drift over what live pods serve. `ours` says whether a
/// resource name is in cert-sync's namespace of names (so the pod's mesh
/// identity and hand-configured credentials are not judged).
pub fn warnings<E: Borrow<ManifestEntry>>(
    publications: &[E],
    pods: &[LivePod],
    observations: &BTreeMap<String, Observation>,
    ours: impl Fn(&str) -> bool,
    now: i64,
    expiry_warning_secs: i64,
) -> Vec<Warning> {
    let published: BTreeSet<&str> = publications
        .iter()
        .map(Borrow::borrow)
        .flat_map(|p: &ManifestEntry| {
            std::iter::once(p.sds_resource.as_str()).chain(p.sds_ca_resource.as_deref())
        })
        .collect();
    let mut out = Vec::new();
    for pod in pods {
        let Some(obs) = observations.get(&pod.name) else {
            continue;
        };
        for (resource, served) in &obs.certificates {
            let is_published = published.contains(resource.as_str());
            if !is_published && !ours(resource) {
                continue;
            }
            let kind = if !is_published {
                Some(WarningKind::Drift)
            } else if served.not_after < now {
                Some(WarningKind::Expired)
            } else if served.not_after - now <= expiry_warning_secs {
                Some(WarningKind::Expiring)
            } else {
                None
            };
            if let Some(kind) = kind {
                out.push(Warning {
                    kind,
                    pod: pod.name.clone(),
                    resource: resource.clone(),
                    sha256: served.sha256,
                    not_after: served.not_after,
                });
            }
        }
    }
    out.sort();
    out
}

/// Whether an SDS resource is in the namespace of names cert-sync
/// publishes under `mode`: what drift is judged on. Credential-mode names
/// are `<namespace>.<name>` (a namespace has no dots, so the first dot
/// splits them); CA resources (`-cacert`) belong to their certificate.
pub fn is_ours(mode: &super::model::Mode, certdir: &str, resource: &str) -> bool {
    use super::model::Mode;
    match mode {
        Mode::Directory => resource
            .strip_prefix("file-cert:")
            .is_some_and(|p| p.starts_with(&format!("{}/", certdir.trim_end_matches('/')))),
        Mode::Merged { secret_name } => resource.strip_prefix("file-cert:").is_some_and(|p| {
            p.starts_with(&format!(
                "{}/",
                super::naming::merged_mount_dir(secret_name)
            ))
        }),
        Mode::Credential => resource
            .strip_prefix("kubernetes://")
            .filter(|name| !name.ends_with("-cacert"))
            .and_then(|name| name.split_once('.'))
            .is_some_and(|(ns, name)| {
                !ns.is_empty()
                    && !name.is_empty()
                    && ns
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }),
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
