//! The conditions and member states of a CertMerge's `.status`, as
//! documented constants: `kubectl wait --for=condition=Ready`, dashboards
//! and alerts match on these words. The Event reasons are in
//! [`super::reasons`].

// Condition types.
/// Whether everything the CertMerge selects is published.
pub const READY: &str = "Ready";
/// Whether every published member is verified on every live gateway pod.
pub const ROLLED_OUT: &str = "RolledOut";

// Condition statuses: Kubernetes' three.
pub const TRUE: &str = "True";
pub const FALSE: &str = "False";
pub const UNKNOWN: &str = "Unknown";

// Reasons of `Ready`. When the CertMerge as a whole is refused, or its target
// is a Secret cert-sync does not manage, the reason is that refusal's
// (`reasons::TARGET_NOT_MANAGED`, `reasons::INVALID_TARGET`, ...).
/// `Ready=True`: every member is published. Also a member's state.
pub const PUBLISHED: &str = "Published";
/// `Ready=False`: not every member is published; each member's state says
/// why.
pub const MEMBERS_REFUSED: &str = "MembersRefused";

// Reasons of `RolledOut`.
/// `RolledOut=True`: every published member is verified on every live pod.
pub const VERIFIED: &str = "Verified";
/// `RolledOut=Unknown`: the gateway pods have not reported every published
/// member yet.
pub const NOT_VERIFIED: &str = "NotVerified";
/// `RolledOut=Unknown`: no live gateway pod to verify on.
pub const NO_PODS: &str = "NoPods";
/// `RolledOut=False`: some pods do not serve some member yet; the message
/// names them.
pub const PROGRESSING: &str = "Progressing";

// Member states, besides `PUBLISHED` and a refusal's reason.
/// Selected and not refused, but nothing published for it yet.
pub const PENDING: &str = "Pending";

/// A condition as it was last written: type, status, and when that status
/// began (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub type_: &'a str,
    pub status: &'a str,
    pub since: i64,
}

/// `lastTransitionTime` of condition `type_` now at `status`: kept while the
/// status stays what it was (a new reason or message is not a transition),
/// `now` when it changed or the condition is new.
pub fn transition_time<'a>(
    previous: impl IntoIterator<Item = Stamp<'a>>,
    type_: &str,
    status: &str,
    now: i64,
) -> i64 {
    previous
        .into_iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(now, |c| c.since)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(type_: &'static str, status: &'static str, since: i64) -> Stamp<'static> {
        Stamp {
            type_,
            status,
            since,
        }
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_its_status_holds() {
        let previous = [stamp(READY, TRUE, 100), stamp(ROLLED_OUT, FALSE, 200)];
        assert_eq!(transition_time(previous, READY, TRUE, 900), 100);
        assert_eq!(transition_time(previous, ROLLED_OUT, FALSE, 900), 200);
    }

    #[test]
    fn a_changed_status_or_a_new_condition_starts_now() {
        let previous = [stamp(READY, TRUE, 100)];
        assert_eq!(transition_time(previous, READY, FALSE, 900), 900);
        assert_eq!(transition_time(previous, ROLLED_OUT, UNKNOWN, 900), 900);
        assert_eq!(transition_time([], READY, TRUE, 900), 900);
    }
}
