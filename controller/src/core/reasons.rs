//! Every Event reason cert-sync writes, in one place, as documented
//! constants (the way cert-manager keeps its reasons and condition types):
//! operators filter Events and alert on these words, so they are stable
//! CamelCase, like Kubernetes' own. The conditions of a CertMerge's status
//! are in [`super::conditions`].
//!
//! Most are refusals: why something was not published. A [`Refusal`]
//! becomes a Warning Event, a log line, a metric label and a status entry;
//! its message is for people and names objects, fields and dates, never key
//! bytes. The others report publication and rollout verification.

use super::gateways::GatewayRef;
use super::model::ObjectRef;
use certsync_contract::InvalidKind;
use std::fmt;

// Refusals, selection: who may publish what, where.
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

// Refusals, validation: is the source's data publishable? One per
// certsync-contract failure kind (see [`for_invalid`]), and two of the
// Secret's shape.
/// `tls.crt` is missing or blank.
pub const MISSING_CERTIFICATE: &str = "MissingCertificate";
/// `tls.key` is missing or blank, or holds no private key block.
pub const MISSING_KEY: &str = "MissingKey";
/// A field, or the chain's length, is over its limit.
pub const TOO_LARGE: &str = "TooLarge";
/// `tls.crt` is not PEM certificates of valid X.509.
pub const MALFORMED_CERTIFICATE: &str = "MalformedCertificate";
/// `tls.key` does not parse as a private key.
pub const MALFORMED_KEY: &str = "MalformedKey";
/// `tls.key` is encrypted, or of an algorithm cert-sync does not support.
pub const UNSUPPORTED_KEY: &str = "UnsupportedKey";
/// `tls.key` does not belong to the leaf certificate.
pub const KEY_MISMATCH: &str = "KeyMismatch";
/// The leaf certificate has expired (checked again hourly while published).
pub const EXPIRED: &str = "Expired";
/// The leaf certificate is not valid yet.
pub const NOT_YET_VALID: &str = "NotYetValid";
/// Some certificate of the chain is not issued by the next one.
pub const CHAIN_ORDER: &str = "ChainOrder";
/// `ca.crt` is present but not a PEM certificate bundle.
pub const MALFORMED_CA: &str = "MalformedCA";
/// Was the catch-all for a certsync-contract failure label without a word
/// of its own. Since kinds are an enum matched exhaustively
/// ([`for_invalid`]) nothing produces it; it stays in [`REFUSALS`] only so
/// that `certsync_refusals_total`, pre-set to zero for every refusal
/// reason, keeps the same series.
pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";

// Pre-flight checks of certificates a gateway references natively
// (`core::referenced`): told on the Gateway. cert-sync writes nothing for
// them, so these warn before (and while) Istio serves them; the
// validation reasons above are used too (Expired, KeyMismatch, ...).
/// The certificate does not name a host its server or listener serves:
/// every TLS client of that host fails the handshake.
pub const HOST_NOT_COVERED: &str = "HostNotCovered";
/// A reference Istio will not serve: a Gateway API `certificateRef` to
/// another namespace without a `ReferenceGrant`, or an Istio Gateway
/// `credentialName` outside the gateway pods' namespace.
pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
/// A `certificateRef` Istio cannot use (not a Secret, too many refs).
pub const INVALID_REFERENCE: &str = "InvalidReference";

// Vault / OpenBao KV sources (`core::vault`): told on the
// VaultCertificate; the last good certificate stays published.
/// Vault cannot be reached, is sealed, or cert-sync cannot log in.
pub const VAULT_UNAVAILABLE: &str = "VaultUnavailable";
/// Vault refused cert-sync's token for the path (policy or role).
pub const VAULT_DENIED: &str = "VaultDenied";
/// `spec.path` could leave the namespace's prefix or is not a KV path.
pub const INVALID_VAULT_PATH: &str = "InvalidVaultPath";

// The mesh CA (`core::mesh_ca`): told on its source; `cacerts` keeps
// the last good CA.
/// The certificate is not a CA (basicConstraints CA:TRUE), or keyUsage
/// does not allow keyCertSign.
pub const NOT_A_CA: &str = "NotACA";
/// The chain does not verify, signature by signature, to a self-signed
/// root in `ca.crt`.
pub const CHAIN_NOT_TRUSTED: &str = "ChainNotTrusted";
/// The CA or its root has less validity left than `--mesh-ca-min-validity`.
pub const CA_EXPIRING: &str = "CAExpiring";

/// Every refusal reason, e.g. to pre-register metric label values. The
/// publication and rollout reasons below are not refusals.
pub const REFUSALS: &[&str] = &[
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
    HOST_NOT_COVERED,
    REF_NOT_PERMITTED,
    INVALID_REFERENCE,
    VAULT_UNAVAILABLE,
    VAULT_DENIED,
    INVALID_VAULT_PATH,
    NOT_A_CA,
    CHAIN_NOT_TRUSTED,
    CA_EXPIRING,
];

// Publication (Normal, on the source).
/// A source's certificate was published; the message names its sha256,
/// serial and notAfter. Also the `Ready` reason, see
/// [`super::conditions::PUBLISHED`].
pub const PUBLISHED: &str = "Published";

// Rollout verification and its re-trigger ladder.
/// Normal, on the source: every live gateway pod serves the published
/// certificate.
pub const ROLLED_OUT: &str = "RolledOut";
/// Warning, on the source: past the rollout timeout, some live gateway pod
/// still does not serve it.
pub const ROLLOUT_STALLED: &str = "RolloutStalled";
/// Warning, on the source: the ladder re-pushed the published Secret (or
/// says why it could not).
pub const REPUSHED: &str = "RePushed";
/// Warning, on the WasmPlugin: the ladder re-applied the gateway-side
/// objects (or says why it could not).
pub const GATEWAY_CONFIG_REAPPLIED: &str = "GatewayConfigReapplied";
/// Warning, on the pod: the ladder evicted a gateway pod that kept serving
/// an old certificate.
pub const POD_EVICTED: &str = "PodEvicted";
/// Warning, on the pod: that eviction was refused (a PodDisruptionBudget?).
pub const EVICTION_FAILED: &str = "EvictionFailed";
/// Warning, on the source (or the pod when no source publishes the
/// resource): a certificate a gateway pod serves expires soon.
pub const CERTIFICATE_EXPIRING: &str = "CertificateExpiring";
/// Warning, as [`CERTIFICATE_EXPIRING`]: a served certificate has expired.
pub const CERTIFICATE_EXPIRED: &str = "CertificateExpired";
/// Warning, on the pod: it serves, under a name cert-sync publishes, a
/// certificate no source publishes.
pub const SERVED_DRIFT: &str = "ServedNotPublished";
/// Warning, on the mesh CA's source: the new `cacerts` holds another root,
/// which istiod ignores until restarted (`docs/mesh-ca.md`).
pub const MESH_ROOT_CHANGED: &str = "MeshRootChanged";
/// Warning, on the pod: a live gateway pod has not reported within the
/// heartbeat window, so its rollouts are Unknown.
pub const POD_NOT_REPORTING: &str = "PodNotReporting";
/// Warning, on the pod: a Ready gateway pod never reported within a
/// heartbeat window, even after the WasmPlugin was re-applied: the filter is
/// not loaded there (istio-agent could not fetch or start the module and
/// fell back to `FAIL_OPEN`).
pub const FILTER_NOT_LOADED: &str = "FilterNotLoaded";

/// Every reason that is not a refusal.
pub const PUBLICATION_AND_ROLLOUT: &[&str] = &[
    PUBLISHED,
    ROLLED_OUT,
    ROLLOUT_STALLED,
    REPUSHED,
    GATEWAY_CONFIG_REAPPLIED,
    POD_EVICTED,
    EVICTION_FAILED,
    CERTIFICATE_EXPIRING,
    CERTIFICATE_EXPIRED,
    SERVED_DRIFT,
    POD_NOT_REPORTING,
    FILTER_NOT_LOADED,
    MESH_ROOT_CHANGED,
];

/// The `action` of an Event (`events.k8s.io/v1`): what cert-sync was doing
/// when it wrote it.
pub mod actions {
    /// Publishing a source (Normal Events).
    pub const PUBLISH: &str = "Publish";
    /// Declining to publish a source (Warning Events, the refusals).
    pub const REFUSE: &str = "Refuse";
    /// Verifying rollouts against the gateways' reports.
    pub const VERIFY: &str = "Verify";
    /// Climbing the re-trigger ladder for a stuck rollout.
    pub const RETRIGGER: &str = "Retrigger";
}

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
    /// A gateway whose configuration references a certificate natively
    /// (pre-flight findings, `core::referenced`).
    Gateway(GatewayRef),
    /// istiod's plugged-in CA Secret (`<namespace>/cacerts`).
    MeshCa(ObjectRef),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Source(s) => write!(f, "Secret {s}"),
            Subject::CertMerge(m) => write!(f, "CertMerge {m}"),
            Subject::Member { merge, source } => write!(f, "CertMerge {merge} member {source}"),
            Subject::Target(t) => write!(f, "target {t}"),
            Subject::Gateway(g) => write!(f, "{g}"),
            Subject::MeshCa(t) => write!(f, "mesh CA {t}"),
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
            Subject::CertMerge(_)
            | Subject::Target(_)
            | Subject::Gateway(_)
            | Subject::MeshCa(_) => None,
        }
    }

    /// The CertMerge this refusal concerns, if any (for its status).
    pub fn cert_merge(&self) -> Option<&ObjectRef> {
        match &self.subject {
            Subject::CertMerge(m) | Subject::Member { merge: m, .. } => Some(m),
            Subject::Source(_) | Subject::Target(_) | Subject::Gateway(_) | Subject::MeshCa(_) => {
                None
            }
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
        for r in REFUSALS.iter().chain(PUBLICATION_AND_ROLLOUT) {
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
            assert!(REFUSALS.contains(&reason), "{kind}: {reason}");
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
