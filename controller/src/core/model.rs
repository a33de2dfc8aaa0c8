//! Plain data the core computes on. Converted from Kubernetes objects by
//! `runtime`, so the core never sees a kube type.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Weak};

/// Label and annotation keys of the contract (DESIGN.md).
pub mod keys {
    /// On a source Secret: publish it.
    pub const AUTOSYNC: &str = "certsync.istio.io/autosync";
    /// On everything cert-sync writes.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    pub const MANAGED_BY_VALUE: &str = "cert-sync";
    /// On a published object: `<namespace>/<name>` of its source(s), comma-separated.
    pub const SOURCE: &str = "certsync.istio.io/source";
    /// On a published object: SHA-256 of its source's leaf (comma-separated, in `SOURCE` order).
    pub const SOURCE_SHA256: &str = "certsync.istio.io/source-sha256";
    pub const TLS_TYPE: &str = "kubernetes.io/tls";
    pub const TLS_CRT: &str = "tls.crt";
    pub const TLS_KEY: &str = "tls.key";
    pub const CA_CRT: &str = "ca.crt";
}

/// A namespaced object name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectRef {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the metadata-only watch knows about a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMeta {
    pub key: ObjectRef,
    pub uid: String,
    pub resource_version: String,
    /// `type` of the Secret (the watch filters `kubernetes.io/tls`, but a
    /// CertMerge may name any Secret).
    pub secret_type: String,
    /// Shared with the watch store (interned: most Secrets carry one of a
    /// few label sets), so listing a thousand candidates copies no maps.
    pub labels: Arc<BTreeMap<String, String>>,
    /// Only the annotations cert-sync reads (the autosync annotation).
    pub annotations: Arc<BTreeMap<String, String>>,
    /// Unix seconds; orders claims on one target (older wins).
    pub created: i64,
}

/// A Secret's data, read only for selected sources. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SourceData {
    /// Moved out of the API response, then shared by the validation result,
    /// the desired state and what is applied: one copy per certificate.
    pub cert_pem: Option<Blob>,
    pub key_pem: Option<Blob>,
    pub ca_pem: Option<Blob>,
}

impl fmt::Debug for SourceData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceData")
            .field("cert_pem", &self.cert_pem.as_ref().map(|b| b.len()))
            .field("key_pem", &self.key_pem.as_ref().map(|_| "[redacted]"))
            .field("ca_pem", &self.ca_pem.as_ref().map(|b| b.len()))
            .finish()
    }
}

/// A label selector (`matchLabels` + `matchExpressions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelExpression>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelExpression {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: String,
    pub values: Vec<String>,
}

/// One `CertMerge` (certsync.istio.io/v1alpha1), as the core needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertMerge {
    /// Where the CertMerge object lives.
    pub key: ObjectRef,
    pub created: i64,
    /// The merged Secret to write: `spec.name` in `spec.namespace`
    /// (default: the gateway namespace).
    pub target: ObjectRef,
    /// `spec.selector`: label selector per namespace.
    pub selectors: Vec<MergeSelector>,
    /// `spec.secretList`.
    pub secrets: Vec<ObjectRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeSelector {
    pub label_selector: LabelSelector,
    pub namespace: String,
}

/// Which source namespaces may publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamespacePolicy {
    #[default]
    All,
    List(Vec<String>),
    /// Namespaces whose labels match.
    Selector(LabelSelector),
}

/// Where annotated sources are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// One Secret per source in the gateway namespace, `<namespace>.<name>`.
    Credential,
    /// One Secret with `<namespace>.<name>.crt`/`.key` per source.
    Merged { secret_name: String },
    /// Files `<root>/<namespace>/<name>.crt`/`.key`, swapped atomically.
    Directory,
}

/// Cluster-wide settings the core decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub gateway_namespace: String,
    pub mode: Mode,
    pub namespaces: NamespacePolicy,
}

/// A Secret in the gateway namespace as read back from the cluster: the last
/// publication, which an invalid source never replaces. `Debug` shows data
/// keys and sizes only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct PublishedSecret {
    pub name: String,
    pub secret_type: String,
    /// Shared with the watch store: every reconcile reads all of them.
    pub labels: Arc<BTreeMap<String, String>>,
    pub annotations: Arc<BTreeMap<String, String>>,
    pub data: Arc<BTreeMap<String, Blob>>,
}

impl PublishedSecret {
    /// Carries `app.kubernetes.io/managed-by: cert-sync`.
    pub fn is_managed(&self) -> bool {
        self.labels.get(keys::MANAGED_BY).map(String::as_str) == Some(keys::MANAGED_BY_VALUE)
    }
}

impl fmt::Debug for PublishedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishedSecret")
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .field("data", &DataSizes(&self.data))
            .finish()
    }
}

/// What is published now: the input that lets the core keep the last good
/// certificate of a source that turned invalid.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Published {
    /// Secrets in the gateway namespace, by name: at least every one labelled
    /// managed-by cert-sync, plus any whose name a target uses (so an object
    /// cert-sync does not manage is recognised and left alone).
    pub secrets: BTreeMap<String, PublishedSecret>,
    /// Directory mode: the current tree, relative path → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Published")
            .field("secrets", &self.secrets)
            .field("files", &DataSizes(&self.files))
            .finish()
    }
}

/// Immutable bytes of a Secret's data value, shared rather than copied:
/// what is published, what the watch reads back and what the next desired
/// state carries are one allocation while they are equal (the data of a
/// thousand published Secrets is megabytes). Compares by content; `Debug`
/// shows the size only, since the bytes may be a private key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Blob(Arc<[u8]>);

impl Blob {
    /// A weak handle, for caches that must not keep the bytes alive.
    pub fn downgrade(&self) -> Weak<[u8]> {
        Arc::downgrade(&self.0)
    }

    pub fn upgrade(weak: &Weak<[u8]>) -> Option<Blob> {
        weak.upgrade().map(Blob)
    }

    /// Whether both are the same allocation (not merely equal bytes).
    pub fn same_bytes_as(&self, other: &Blob) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for Blob {
    fn default() -> Self {
        Blob(Arc::from(&[][..]))
    }
}

impl Deref for Blob {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Blob {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob(Arc::from(v))
    }
}

impl From<&[u8]> for Blob {
    fn from(v: &[u8]) -> Self {
        Blob(Arc::from(v))
    }
}

impl<const N: usize> From<&[u8; N]> for Blob {
    fn from(v: &[u8; N]) -> Self {
        Blob(Arc::from(&v[..]))
    }
}

impl PartialEq<[u8]> for Blob {
    fn eq(&self, other: &[u8]) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&[u8]> for Blob {
    fn eq(&self, other: &&[u8]) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Vec<u8>> for Blob {
    fn eq(&self, other: &Vec<u8>) -> bool {
        *self.0 == **other
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ByteCount(self.0.len()).fmt(f)
    }
}

/// Debug-prints a data map as `key: <n bytes>`: keys are names, values may be keys.
pub(crate) struct DataSizes<'a, V>(pub &'a BTreeMap<String, V>);

impl<V: AsRef<[u8]>> fmt::Debug for DataSizes<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, ByteCount(v.as_ref().len()))))
            .finish()
    }
}

struct ByteCount(usize);

impl fmt::Debug for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}
