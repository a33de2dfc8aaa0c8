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
