//! Certificates kept in Vault (or OpenBao) KV v2 rather than in Secrets.
//! A `VaultCertificate` names a KV secret and the fields holding the
//! certificate, key and CA; cert-sync treats it as an annotated TLS Secret
//! of the same namespace and name (validated, published in every mode,
//! last good kept), reading Vault instead of the API server.
//!
//! ```text
//!  VaultCertificate* ─▶ kv_path (tenant prefix) ─▶ poller: metadata current_version
//!                                                        │ Poll per key
//!       sources() ◀── source_meta (resourceVersion = object rv : KV version)
//!       read      ◀── layout (fields → SourceData) ◀── data of that version
//!       refusals  ◀── poll_refusal (unreachable, sealed, denied, gone)
//! ```
//!
//! Tenants are isolated by the path: a VaultCertificate in namespace `apps`
//! reads only below `<prefix>/apps/`, whatever its `spec.path` says.

use super::model::{keys, Blob, ObjectRef, SourceData, SourceMeta};
use super::reasons::{self, Refusal, Subject};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One `VaultCertificate` (certsync.istio.io/v1alpha1), as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSource {
    /// Where the object lives: also the source's name in every output.
    pub key: ObjectRef,
    pub uid: String,
    /// The object's resourceVersion: a changed spec reads the data again.
    pub resource_version: String,
    pub created: i64,
    /// `spec.path`, relative to the namespace's prefix.
    pub path: String,
    pub fields: Fields,
}

/// Which KV fields hold what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    pub certificate: String,
    pub private_key: String,
    pub ca: String,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            certificate: keys::TLS_CRT.to_owned(),
            private_key: keys::TLS_KEY.to_owned(),
            ca: keys::CA_CRT.to_owned(),
        }
    }
}

/// What the last look at a KV secret's metadata found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Not looked at yet.
    Pending,
    /// `current_version`.
    Version(u64),
    /// No such secret, or its current version is deleted.
    Gone,
    /// The look failed; `last` is the version seen before, if any (what
    /// stays published).
    Failed {
        reason: &'static str,
        message: String,
        last: Option<u64>,
    },
}

impl Poll {
    /// The version to read, when one is known.
    pub fn version(&self) -> Option<u64> {
        match self {
            Poll::Version(v) => Some(*v),
            Poll::Failed { last, .. } => *last,
            Poll::Pending | Poll::Gone => None,
        }
    }
}

/// The KV path (below the mount) a VaultCertificate in `namespace` reads:
/// `<prefix>/<namespace>/<path>`. Refuses a path that could leave the
/// namespace's prefix or that Vault would read as something else.
pub fn kv_path(prefix: &str, namespace: &str, path: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("spec.path {path:?} {why}"));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.starts_with('/') || path.ends_with('/') {
        return bad("must not start or end with '/'");
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("must not contain empty, '.' or '..' segments");
    }
    if !path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return bad("may contain only letters, digits, '-', '_', '.' and '/'");
    }
    let prefix = prefix.trim_matches('/');
    Ok(if prefix.is_empty() {
        format!("{namespace}/{path}")
    } else {
        format!("{prefix}/{namespace}/{path}")
    })
}

/// The source a VaultCertificate stands for while a version is known: an
/// annotated TLS Secret to selection, whose resourceVersion moves with the
/// object and with the KV version.
pub fn source_meta(source: &VaultSource, poll: &Poll) -> Option<SourceMeta> {
    let version = match poll {
        Poll::Gone => return None,
        // Unknown yet (or Vault down since start-up): still selected, so
        // what was published before the controller started is kept.
        Poll::Pending | Poll::Failed { last: None, .. } => "unknown".to_owned(),
        _ => poll.version()?.to_string(),
    };
    Some(SourceMeta {
        key: source.key.clone(),
        uid: source.uid.clone(),
        resource_version: format!("vault:{}:{version}", source.resource_version),
        secret_type: keys::TLS_TYPE.to_owned(),
        labels: Arc::default(),
        annotations: Arc::new(BTreeMap::from([(
            keys::AUTOSYNC.to_owned(),
            "true".to_owned(),
        )])),
        created: source.created,
    })
}

/// The certificate, key and CA among a KV version's fields.
pub fn layout(fields: &Fields, mut values: BTreeMap<String, Blob>) -> SourceData {
    SourceData {
        cert_pem: values.remove(&fields.certificate),
        key_pem: values.remove(&fields.private_key),
        ca_pem: values.remove(&fields.ca),
    }
}

/// Why a VaultCertificate's last poll leaves it unread, if it does.
pub fn poll_refusal(source: &VaultSource, kv_path: &str, poll: &Poll) -> Option<Refusal> {
    let subject = Subject::Source(source.key.clone());
    match poll {
        Poll::Failed {
            reason, message, ..
        } => Some(Refusal::new(
            subject,
            reason,
            format!("{kv_path}: {message}; the last good certificate stays published"),
        )),
        Poll::Gone => Some(Refusal::new(
            subject,
            reasons::NOT_FOUND,
            format!("{kv_path}: no such KV secret, or its current version is deleted"),
        )),
        Poll::Pending | Poll::Version(_) => None,
    }
}

/// The message for a source whose KV field is missing, naming the field
/// (validation's own message names `tls.crt`/`tls.key`).
pub fn missing_field(fields: &Fields, data: &SourceData) -> Option<(&'static str, String)> {
    if data.cert_pem.is_none() {
        return Some((
            reasons::MISSING_CERTIFICATE,
            format!("KV field {:?} is missing", fields.certificate),
        ));
    }
    if data.key_pem.is_none() {
        return Some((
            reasons::MISSING_KEY,
            format!("KV field {:?} is missing", fields.private_key),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_source() -> VaultSource {
        VaultSource {
            key: ObjectRef::new("apps", "shop"),
            uid: "u1".into(),
            resource_version: "7".into(),
            created: 1,
            path: "shop".into(),
            fields: Fields::default(),
        }
    }

    #[test]
    fn paths_stay_below_the_namespace_prefix() {
        assert_eq!(
            kv_path("cert-sync", "apps", "shop/tls").unwrap(),
            "cert-sync/apps/shop/tls"
        );
        assert_eq!(kv_path("/", "apps", "shop").unwrap(), "apps/shop");
        for bad in [
            "",
            "/shop",
            "shop/",
            "../team-b/shop",
            "a/../../b",
            "a//b",
            "a?version=1",
            "a%2f..",
        ] {
            assert!(kv_path("cert-sync", "apps", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_known_version_is_an_annotated_tls_source() {
        let meta = source_meta(&mk_source(), &Poll::Version(3)).unwrap();
        assert_eq!(meta.key, ObjectRef::new("apps", "shop"));
        assert_eq!(meta.resource_version, "vault:7:3");
        assert_eq!(meta.secret_type, keys::TLS_TYPE);
        assert_eq!(
            meta.annotations.get(keys::AUTOSYNC).map(String::as_str),
            Some("true")
        );
    }

    #[test]
    fn a_failed_poll_keeps_the_source_at_its_last_version() {
        let failed = Poll::Failed {
            reason: reasons::VAULT_UNAVAILABLE,
            message: "down".into(),
            last: Some(3),
        };
        assert_eq!(
            source_meta(&mk_source(), &failed).unwrap().resource_version,
            "vault:7:3"
        );
        let refusal = poll_refusal(&mk_source(), "cert-sync/apps/shop", &failed).unwrap();
        assert_eq!(refusal.reason, reasons::VAULT_UNAVAILABLE);
        assert!(refusal.message.contains("last good"), "{}", refusal.message);
        // Never seen: still a source (what was published stays), unread.
        let never = Poll::Failed {
            reason: reasons::VAULT_DENIED,
            message: "denied".into(),
            last: None,
        };
        assert_eq!(
            source_meta(&mk_source(), &never).unwrap().resource_version,
            "vault:7:unknown"
        );
    }

    #[test]
    fn a_deleted_secret_is_no_source_and_says_why() {
        assert_eq!(source_meta(&mk_source(), &Poll::Gone), None);
        let refusal = poll_refusal(&mk_source(), "p", &Poll::Gone).unwrap();
        assert_eq!(refusal.reason, reasons::NOT_FOUND);
        assert_eq!(poll_refusal(&mk_source(), "p", &Poll::Version(1)), None);
    }

    #[test]
    fn fields_are_mapped_and_named_when_missing() {
        let fields = Fields {
            certificate: "certificate".into(),
            private_key: "private_key".into(),
            ca: "issuing_ca".into(),
        };
        let values = BTreeMap::from([
            ("certificate".to_owned(), Blob::from(b"C".to_vec())),
            ("issuing_ca".to_owned(), Blob::from(b"A".to_vec())),
        ]);
        let data = layout(&fields, values);
        assert!(data.cert_pem.is_some() && data.ca_pem.is_some());
        let (reason, message) = missing_field(&fields, &data).unwrap();
        assert_eq!(reason, reasons::MISSING_KEY);
        assert!(message.contains("private_key"), "{message}");
    }
}
