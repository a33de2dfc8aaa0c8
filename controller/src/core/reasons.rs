//! Why something was not published, in one place. A [`Refusal`] becomes a
//! Warning Event, a log line, a metric label and a status entry, so its reason
//! is a stable CamelCase word (like Kubernetes Event reasons) and its message
//! is for people. Messages name objects, fields and dates, never key bytes.

use super::model::ObjectRef;
use certsync_contract::InvalidKind;
use std::fmt;

// Selection: who may publish what, where.
/// The source's namespace is outside the configured namespace policy.
pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
/// A Secret named or annotated for publication is not `kubernetes.io/tls`.
pub const NOT_TLS: &str = "NotTLS";
/// A Secret a CertMerge lists (or a selected source) does not exist.
pub const NOT_FOUND: &str = "NotFound";
/// A Secret cert-sync itself publishes cannot be a source (no feedback loops).
pub const MANAGED_BY_CERT_SYNC: &str = "ManagedByCertSync";
/// A tenant CertMerge reached outside its own namespace.
pub const CROSS_NAMESPACE: &str = "CrossNamespace";
/// A tenant CertMerge's target does not start with `<its namespace>.`.
pub const TARGET_NOT_OWNED: &str = "TargetNotOwned";
/// A CertMerge's target is not a valid Secret name or not in the gateway namespace.
pub const INVALID_TARGET: &str = "InvalidTarget";
/// A CertMerge's label selector is not valid Kubernetes selector syntax.
pub const INVALID_SELECTOR: &str = "InvalidSelector";
/// Another, older claim owns the same target (Secret name, merged key or file).
pub const TARGET_CONFLICT: &str = "TargetConflict";
/// The target exists and cert-sync does not manage it: never overwritten or deleted.
pub const TARGET_NOT_MANAGED: &str = "TargetNotManaged";

// Validation: is the source's data publishable?
pub const MISSING_CERTIFICATE: &str = "MissingCertificate";
pub const MISSING_KEY: &str = "MissingKey";
pub const TOO_LARGE: &str = "TooLarge";
pub const MALFORMED_CERTIFICATE: &str = "MalformedCertificate";
pub const MALFORMED_KEY: &str = "MalformedKey";
pub const UNSUPPORTED_KEY: &str = "UnsupportedKey";
pub const KEY_MISMATCH: &str = "KeyMismatch";
pub const EXPIRED: &str = "Expired";
pub const NOT_YET_VALID: &str = "NotYetValid";
pub const CHAIN_ORDER: &str = "ChainOrder";
/// `ca.crt` is present but not a PEM certificate bundle.
pub const MALFORMED_CA: &str = "MalformedCA";
/// Was the catch-all for a certsync-contract failure label without a word
/// of its own. Since kinds are an enum matched exhaustively
/// ([`for_invalid`]) nothing produces it; it stays in [`ALL`] only so that
/// `certsync_refusals_total`, pre-set to zero for every reason, keeps the
/// same series.
pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";

/// Every reason, e.g. to pre-register metric label values.
pub const ALL: &[&str] = &[
    NAMESPACE_NOT_ALLOWED,
    NOT_TLS,
    NOT_FOUND,
    MANAGED_BY_CERT_SYNC,
    CROSS_NAMESPACE,
    TARGET_NOT_OWNED,
    INVALID_TARGET,
    INVALID_SELECTOR,
    TARGET_CONFLICT,
    TARGET_NOT_MANAGED,
    MISSING_CERTIFICATE,
    MISSING_KEY,
    TOO_LARGE,
    MALFORMED_CERTIFICATE,
    MALFORMED_KEY,
    UNSUPPORTED_KEY,
    KEY_MISMATCH,
    EXPIRED,
    NOT_YET_VALID,
    CHAIN_ORDER,
    MALFORMED_CA,
    INVALID_CERTIFICATE,
];

/// The reason for a kind of invalid pair. Exhaustive on purpose: a kind
/// added to certsync-contract does not compile until it has a reason here.
pub fn for_invalid(kind: InvalidKind) -> &'static str {
    match kind {
        InvalidKind::TooLarge => TOO_LARGE,
        InvalidKind::MalformedCertificate => MALFORMED_CERTIFICATE,
        InvalidKind::MissingKey => MISSING_KEY,
        InvalidKind::MalformedKey => MALFORMED_KEY,
        InvalidKind::UnsupportedKey => UNSUPPORTED_KEY,
        InvalidKind::KeyMismatch => KEY_MISMATCH,
        InvalidKind::Expired => EXPIRED,
        InvalidKind::NotYetValid => NOT_YET_VALID,
        InvalidKind::ChainOrder => CHAIN_ORDER,
    }
}

/// What a refusal is about: where its Event goes and which status lists it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Subject {
    /// A source Secret (annotated, or any source failing validation).
    Source(ObjectRef),
    /// A CertMerge as a whole.
    CertMerge(ObjectRef),
    /// One member (listed or selected) of a CertMerge; the source may not exist.
    Member { merge: ObjectRef, source: ObjectRef },
    /// A target object in the gateway namespace.
    Target(ObjectRef),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Source(s) => write!(f, "Secret {s}"),
            Subject::CertMerge(m) => write!(f, "CertMerge {m}"),
            Subject::Member { merge, source } => write!(f, "CertMerge {merge} member {source}"),
            Subject::Target(t) => write!(f, "target {t}"),
        }
    }
}

/// Something cert-sync declined to do, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Refusal {
    pub subject: Subject,
    /// One of the constants of this module.
    pub reason: &'static str,
    /// For people; never contains key material.
    pub message: String,
}

impl Refusal {
    pub fn new(subject: Subject, reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            subject,
            reason,
            message: message.into(),
        }
    }

    /// The source this refusal concerns, if any (for an Event on the source).
    pub fn source(&self) -> Option<&ObjectRef> {
        match &self.subject {
            Subject::Source(s) | Subject::Member { source: s, .. } => Some(s),
            Subject::CertMerge(_) | Subject::Target(_) => None,
        }
    }

    /// The CertMerge this refusal concerns, if any (for its status).
    pub fn cert_merge(&self) -> Option<&ObjectRef> {
        match &self.subject {
            Subject::CertMerge(m) | Subject::Member { merge: m, .. } => Some(m),
            Subject::Source(_) | Subject::Target(_) => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.subject, self.reason, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_unique_camel_case_words() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ALL {
            assert!(seen.insert(*r), "{r} listed twice");
            assert!(r.starts_with(|c: char| c.is_ascii_uppercase()), "{r}");
            assert!(r.chars().all(|c| c.is_ascii_alphanumeric()), "{r}");
        }
    }

    #[test]
    fn every_certsync_contract_kind_has_its_own_reason() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in InvalidKind::ALL {
            let reason = for_invalid(kind);
            assert_ne!(reason, INVALID_CERTIFICATE, "{kind}");
            assert!(ALL.contains(&reason), "{kind}: {reason}");
            assert!(seen.insert(reason), "{kind}: {reason} used twice");
        }
    }

    #[test]
    fn a_member_refusal_points_at_both_the_merge_and_the_source() {
        let r = Refusal::new(
            Subject::Member {
                merge: ObjectRef::new("a", "m"),
                source: ObjectRef::new("a", "s"),
            },
            NOT_FOUND,
            "gone",
        );
        assert_eq!(r.source(), Some(&ObjectRef::new("a", "s")));
        assert_eq!(r.cert_merge(), Some(&ObjectRef::new("a", "m")));
        assert_eq!(
            r.to_string(),
            "CertMerge a/m member a/s: NotFound: gone".to_owned()
        );
    }
}
