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

use super::manifest::{ManifestEntry, MeshProof};
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
    /// `status.podIPs` (one per address family on a dual-stack cluster):
    /// reports must come from one of them. The gateway reaches the
    /// controller through a STRICT_DNS cluster whose default `AUTO` lookup
    /// prefers IPv6, so a report may leave from either family.
    pub ips: Vec<std::net::IpAddr>,
    /// Its labels: a natively referenced certificate is expected only on
    /// the pods its gateway selects.
    pub labels: BTreeMap<String, String>,
}

/// One certificate a pod serves, as its filter reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Served {
    pub sha256: Fingerprint,
    pub serial: String,
    /// Unix seconds.
    pub not_after: i64,
    /// SHA-256 of the chain's other certificates (the mesh identity's
    /// only: `default`'s issuer and roots, `ROOTCA`'s further roots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<Fingerprint>,
}

impl Served {
    /// What `proof` says this certificate shows, when it shows `expected`
    /// (otherwise what it shows instead, for the status).
    fn shows(
        &self,
        proof: Option<MeshProof>,
        expected: &Fingerprint,
    ) -> (bool, Option<Fingerprint>) {
        match proof {
            None => (self.sha256 == *expected, Some(self.sha256)),
            Some(MeshProof::TrustsRoot) => {
                let held = self.sha256 == *expected || self.chain.contains(expected);
                (held, Some(if held { *expected } else { self.sha256 }))
            }
            Some(MeshProof::IssuedBy) => {
                let issuer = self.chain.first().copied();
                (issuer == Some(*expected), issuer)
            }
        }
    }
}

/// The last report of one pod, reduced to what verification needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
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
                        chain: c.chain_sha256.clone(),
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

/// Which publication: a source can be published more than once (its own
/// credential Secret and a member of a CertMerge's merged Secret), and each
/// rolls out on its own.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicationKey {
    /// `<namespace>/<name>` of the source Secret.
    pub source: String,
    /// The published Secret's name, or the certificate's path in directory
    /// mode.
    pub target: String,
}

impl PublicationKey {
    pub fn of(entry: &ManifestEntry) -> Self {
        PublicationKey {
            source: entry.source.clone(),
            target: target_name(entry).into_owned(),
        }
    }

    /// Whether `entry` is this publication (compared in place, no copies
    /// but for a referenced one's).
    pub fn is(&self, entry: &ManifestEntry) -> bool {
        self.source == entry.source && self.target == target_name(entry)
    }
}

/// The published Secret's name, the certificate path in directory mode, or
/// for a referenced certificate its SDS name and pod labels (two Gateway API
/// Gateways may load one Secret under one name, each on its own pods).
fn target_name(entry: &ManifestEntry) -> std::borrow::Cow<'_, str> {
    use super::manifest::TargetRef;
    match &entry.target {
        TargetRef::Credential { secret } | TargetRef::Merged { secret, .. } => secret.into(),
        TargetRef::Directory { cert, .. } => cert.into(),
        TargetRef::Referenced { pods, .. } => {
            let labels: Vec<String> = pods.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{}@{}", entry.sds_resource, labels.join(",")).into()
        }
        TargetRef::MeshCa { secret, .. } => format!("{secret}#{}", entry.sds_resource).into(),
    }
}

/// The live pods expected to load `entry`.
fn expected_on<'a>(
    entry: &'a ManifestEntry,
    pods: &'a [LivePod],
) -> impl Iterator<Item = &'a LivePod> + 'a {
    use super::manifest::TargetRef;
    let selector = match &entry.target {
        TargetRef::Referenced { pods, .. } => Some(pods),
        _ => None,
    };
    pods.iter().filter(move |pod| {
        selector.is_none_or(|s| s.iter().all(|(k, v)| pod.labels.get(k) == Some(v)))
    })
}

/// One publication across the live pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicationView {
    pub key: PublicationKey,
    pub source: String,
    pub sds_resource: String,
    pub sha256: Fingerprint,
    pub state: RolloutState,
    pub pods: BTreeMap<String, PodView>,
    /// cert-sync wrote the object (a re-push can touch it); false for a
    /// natively referenced certificate.
    pub published: bool,
    /// A stuck rollout climbs the ladder (`TargetRef::retriggers`).
    pub retriggers: bool,
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

/// The state of `sds_resource` with expected leaf `expected` on one pod
/// (for the mesh CA, the root or issuer `proof` names).
pub fn pod_state(
    observation: Option<&Observation>,
    sds_resource: &str,
    expected: &Fingerprint,
    proof: Option<MeshProof>,
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
        Some(served) => {
            let (shown, serving) = served.shows(proof, expected);
            PodView {
                state: if shown {
                    PodState::Verified
                } else {
                    PodState::Stale
                },
                served_sha256: serving,
                served_not_after: Some(served.not_after),
            }
        }
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
            let views: BTreeMap<String, PodView> = expected_on(entry, pods)
                .map(|pod| {
                    let view = pod_state(
                        observations.get(&pod.name),
                        &entry.sds_resource,
                        &entry.sha256,
                        entry.target.mesh_proof(),
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
                key: PublicationKey::of(entry),
                source: entry.source.clone(),
                sds_resource: entry.sds_resource.clone(),
                sha256: entry.sha256,
                state,
                pods: views,
                published: entry.target.is_published(),
                retriggers: entry.target.retriggers(),
            }
        })
        .collect()
}

/// Per publication: what the manifest and CertMerge status say about its rollout.
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

/// Rollout note per publication. Each note is shared too: verification
/// keeps a note's allocation while it is unchanged, so the manifest writer
/// finds the shards to rewrite by pointer.
pub type NoteMap = BTreeMap<PublicationKey, std::sync::Arc<RolloutNote>>;

/// Rollout notes per publication, shared by verification, the manifest
/// writer and `GET /v1/status` (ten thousand sources: not copied every tick).
pub type RolloutNotes = std::sync::Arc<NoteMap>;

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

mod ladder;
mod silence;
mod warnings;
pub use ladder::*;
pub use silence::*;
pub use warnings::*;

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
