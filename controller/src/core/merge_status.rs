//! What a CertMerge's `.status` says: per member, whether it is published
//! (and which certificate) or why not; and whether the merge as a whole is
//! Ready. Plain data; `runtime` turns it into the CRD's status.

use crate::core::conditions::{
    self, MEMBERS_REFUSED, NOT_VERIFIED, NO_PODS, PENDING, PROGRESSING, PUBLISHED, VERIFIED,
};
use crate::core::desired::{DesiredState, Plan};
use crate::core::model::ObjectRef;
use crate::core::reasons::{self, Refusal, Subject};
use crate::core::selection::{Owner, Selection};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub source: ObjectRef,
    /// Leaf SHA-256 of what is published for this member, if anything.
    pub sha256: Option<String>,
    pub not_after: Option<i64>,
    /// `Published`, or the reason it is not (or not current).
    pub state: String,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeStatus {
    pub members: Vec<MemberState>,
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

/// The status of CertMerge `merge` after a reconcile.
pub fn compute(
    merge: &ObjectRef,
    selection: &Selection,
    desired: &DesiredState,
    plan: &Plan,
    refusals: &[Refusal],
) -> MergeStatus {
    let own = |r: &&Refusal| match &r.subject {
        Subject::CertMerge(m) | Subject::Member { merge: m, .. } => m == merge,
        _ => false,
    };
    let by_source: BTreeMap<&ObjectRef, &Refusal> = refusals
        .iter()
        .filter_map(|r| match &r.subject {
            Subject::Source(s) => Some((s, r)),
            _ => None,
        })
        .collect();
    let mut members = Vec::new();
    let publication = selection
        .publications
        .iter()
        .find(|p| matches!(&p.owner, Owner::CertMerge(m) if m == merge));
    if let Some(publication) = publication {
        for source in &publication.members {
            let entry = desired
                .entries
                .iter()
                .find(|e| &e.source == source && e.target == publication.target);
            let refused = by_source.get(source);
            members.push(MemberState {
                source: source.clone(),
                sha256: entry.map(|e| e.summary.sha256.to_string()),
                not_after: entry.map(|e| e.summary.not_after),
                state: match (entry, refused) {
                    (Some(e), _) if e.kept.is_none() => PUBLISHED.to_owned(),
                    (_, Some(r)) => r.reason.to_owned(),
                    _ => PENDING.to_owned(),
                },
                message: refused.map(|r| r.message.clone()),
            });
        }
    }
    for refusal in refusals.iter().filter(own) {
        if let Subject::Member { source, .. } = &refusal.subject {
            members.push(MemberState {
                source: source.clone(),
                sha256: None,
                not_after: None,
                state: refusal.reason.to_owned(),
                message: Some(refusal.message.clone()),
            });
        }
    }
    members.sort_by(|a, b| a.source.cmp(&b.source));

    let whole = refusals
        .iter()
        .find(|r| matches!(&r.subject, Subject::CertMerge(m) if m == merge));
    let blocked = publication
        .and_then(|p| p.target.secret_name())
        .filter(|name| plan.blocked(name));
    let published = members.iter().filter(|m| m.state == PUBLISHED).count();
    let (ready, reason, message) = match (whole, blocked) {
        (Some(r), _) => (false, r.reason.to_owned(), r.message.clone()),
        (None, Some(name)) => (
            false,
            reasons::TARGET_NOT_MANAGED.to_owned(),
            format!("Secret {name} exists and is not managed by cert-sync"),
        ),
        (None, None) => (
            published == members.len(),
            if published == members.len() {
                PUBLISHED
            } else {
                MEMBERS_REFUSED
            }
            .to_owned(),
            format!("{published} of {} members published", members.len()),
        ),
    };
    MergeStatus {
        members,
        ready,
        reason,
        message,
    }
}

/// The `RolledOut` condition of a CertMerge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledOut {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

/// `True` when every published member's certificate is verified on every
/// live gateway pod; `False` naming the lagging pods; `Unknown` before any
/// verification (no reports yet, or nothing published).
pub fn rolled_out(
    merge: &MergeStatus,
    target: &str,
    notes: &crate::core::rollout::NoteMap,
) -> RolledOut {
    use crate::core::rollout::{PodState, RolloutState};
    let published: Vec<(&MemberState, Option<&crate::core::rollout::RolloutNote>)> = merge
        .members
        .iter()
        .filter(|m| m.sha256.is_some())
        .map(|m| {
            let key = crate::core::rollout::PublicationKey {
                source: m.source.to_string(),
                target: target.to_owned(),
            };
            let note = notes
                .get(&key)
                .map(|n| &**n)
                .filter(|n| Some(n.sha256.to_string()) == m.sha256);
            (m, note)
        })
        .collect();
    let known: Vec<_> = published
        .iter()
        .filter_map(|(m, n)| n.map(|n| (*m, n)))
        .collect();
    if known.is_empty() || known.len() < published.len() {
        return RolledOut {
            status: conditions::UNKNOWN,
            reason: NOT_VERIFIED.to_owned(),
            message: "gateway pods have not reported every published member yet".to_owned(),
        };
    }
    let converged = known
        .iter()
        .filter(|(_, n)| n.state == RolloutState::Converged)
        .count();
    if converged == known.len() {
        let pods = known.first().map_or(0, |(_, n)| n.pods.len());
        return RolledOut {
            status: conditions::TRUE,
            reason: VERIFIED.to_owned(),
            message: format!("{converged} members verified on all {pods} gateway pods"),
        };
    }
    if known.iter().all(|(_, n)| n.state == RolloutState::NoPods) {
        return RolledOut {
            status: conditions::UNKNOWN,
            reason: NO_PODS.to_owned(),
            message: "no live gateway pod to verify on".to_owned(),
        };
    }
    let lagging: Vec<String> = known
        .iter()
        .flat_map(|(m, n)| {
            n.pods
                .iter()
                .filter(|(_, s)| **s != PodState::Verified)
                .map(move |(p, s)| format!("{} on {p}: {s}", m.source))
        })
        .take(5)
        .collect();
    RolledOut {
        status: conditions::FALSE,
        reason: PROGRESSING.to_owned(),
        message: format!(
            "{converged} of {} members verified on every pod; {}",
            known.len(),
            lagging.join("; ")
        ),
    }
}

#[cfg(test)]
mod rolled_out_tests {
    use super::*;
    use crate::core::rollout::{PodState, PublicationKey, RolloutNote, RolloutState};
    use certsync_contract::Fingerprint;
    use std::sync::Arc;

    fn mk_member(source: &str, sha: Option<u8>) -> MemberState {
        MemberState {
            source: ObjectRef::new(
                source.split('/').next().unwrap_or(""),
                source.split('/').nth(1).unwrap_or(""),
            ),
            sha256: sha.map(|b| Fingerprint([b; 32]).to_string()),
            not_after: None,
            state: PUBLISHED.to_owned(),
            message: None,
        }
    }

    fn mk_note(sha: u8, state: RolloutState, pods: &[(&str, PodState)]) -> Arc<RolloutNote> {
        Arc::new(RolloutNote {
            sha256: Fingerprint([sha; 32]),
            state,
            published_at: None,
            converged_at: None,
            pods: pods.iter().map(|(p, s)| ((*p).to_owned(), *s)).collect(),
        })
    }

    fn merge(members: Vec<MemberState>) -> MergeStatus {
        MergeStatus {
            members,
            ready: true,
            reason: PUBLISHED.to_owned(),
            message: String::new(),
        }
    }

    const MERGED: &str = "istio-ingressgateway-certs";

    fn mk_key(source: &str) -> PublicationKey {
        PublicationKey {
            source: source.to_owned(),
            target: MERGED.to_owned(),
        }
    }

    #[test]
    fn rolled_out_follows_the_members_rollouts() {
        let m = merge(vec![mk_member("a/x", Some(1)), mk_member("b/y", Some(2))]);
        let verified = [("gw-0", PodState::Verified), ("gw-1", PodState::Verified)];
        let mut notes = BTreeMap::new();
        assert_eq!(rolled_out(&m, MERGED, &notes).status, "Unknown");
        notes.insert(
            mk_key("a/x"),
            mk_note(1, RolloutState::Converged, &verified),
        );
        assert_eq!(
            rolled_out(&m, MERGED, &notes).status,
            "Unknown",
            "one member not verified yet"
        );
        notes.insert(
            mk_key("b/y"),
            mk_note(
                2,
                RolloutState::Progressing,
                &[("gw-0", PodState::Verified), ("gw-1", PodState::Stale)],
            ),
        );
        let r = rolled_out(&m, MERGED, &notes);
        assert_eq!((r.status, r.reason.as_str()), ("False", "Progressing"));
        assert!(r.message.contains("b/y on gw-1: Stale"), "{}", r.message);
        notes.insert(
            mk_key("b/y"),
            mk_note(2, RolloutState::Converged, &verified),
        );
        let r = rolled_out(&m, MERGED, &notes);
        assert_eq!((r.status, r.reason.as_str()), ("True", "Verified"));
        // A note about an older certificate says nothing about the new one.
        notes.insert(
            mk_key("b/y"),
            mk_note(9, RolloutState::Converged, &verified),
        );
        assert_eq!(rolled_out(&m, MERGED, &notes).status, "Unknown");
    }

    #[test]
    fn a_members_rollout_is_its_publication_in_the_merged_secret() {
        // The same source also published as its own credential Secret:
        // that publication's rollout says nothing about the member's.
        let m = merge(vec![mk_member("a/x", Some(1))]);
        let verified = [("gw-0", PodState::Verified)];
        let mut notes = BTreeMap::new();
        notes.insert(
            PublicationKey {
                source: "a/x".to_owned(),
                target: "a.x".to_owned(),
            },
            mk_note(1, RolloutState::Converged, &verified),
        );
        assert_eq!(rolled_out(&m, MERGED, &notes).status, "Unknown");
        notes.insert(
            mk_key("a/x"),
            mk_note(1, RolloutState::Converged, &verified),
        );
        assert_eq!(rolled_out(&m, MERGED, &notes).status, "True");
    }
}
