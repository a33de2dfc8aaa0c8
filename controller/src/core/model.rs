//! Plain data the core computes on. Converted from Kubernetes objects by
//! `runtime`, so the core never sees a kube type.

use super::flat_map::FlatMap;
use certsync_contract::CertSummary;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The keys the core reads and writes: cert-sync's labels and annotations,
/// defined (and documented) with the other cross-component contracts in
/// `certsync_contract::metadata`, and Kubernetes' TLS Secret type and data
/// keys.
pub mod keys {
    pub use certsync_contract::metadata::{
        AUTOSYNC, MANAGED_BY, MANAGED_BY_VALUE, REAPPLIED_AT, REPUSHED_AT, SOURCE, SOURCE_SHA256,
    };
    /// `type` of a TLS Secret.
    pub const TLS_TYPE: &str = "kubernetes.io/tls";
    /// A TLS Secret's certificate chain.
    pub const TLS_CRT: &str = "tls.crt";
    /// A TLS Secret's private key.
    pub const TLS_KEY: &str = "tls.key";
    /// A TLS Secret's CA bundle (cert-manager writes it).
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
    /// CertMerge may name any Secret); empty when only known not to be TLS
    /// (`runtime::kube::sweep`).
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
    /// With their bytes, as read; validation keeps only the digests in
    /// the Secret modes (see [`Blob`]).
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
    /// Source and fingerprint annotations ([`FlatMap`]: a thousand of
    /// these stay in the managed store).
    pub annotations: Arc<FlatMap<String>>,
    /// Values known by digest (see [`Blob`]).
    pub data: Arc<FlatMap<Blob>>,
    /// Summaries of the values that parse as certificates, by data key:
    /// what a kept "last good" publication is reported as, computed when
    /// the Secret was read (its bytes are not kept).
    pub certificates: Certificates,
}

/// Certificate summaries by data key: one entry per Secret in practice, so
/// a slice rather than a map (a map node is ~400 bytes, per Secret).
pub type Certificates = Arc<[(String, Arc<CertSummary>)]>;

impl PublishedSecret {
    /// Carries `app.kubernetes.io/managed-by: cert-sync`.
    pub fn is_managed(&self) -> bool {
        self.labels.get(keys::MANAGED_BY).map(String::as_str) == Some(keys::MANAGED_BY_VALUE)
    }

    /// Data values by digest, and the summaries of those that are
    /// certificates (SANs and names dropped, as for validated sources).
    pub fn digest_data<'a>(
        data: impl IntoIterator<Item = (String, &'a [u8])>,
    ) -> (FlatMap<Blob>, Certificates) {
        let mut values = Vec::new();
        let mut certificates = Vec::new();
        for (key, bytes) in data {
            // Leaf chains only: a CA bundle is never a last good to report
            // (`_` cannot occur in a Secret name, so the suffix is ours).
            let ca = key == keys::CA_CRT || key.ends_with(super::naming::CA_SUFFIX);
            if key.ends_with(".crt") && !ca {
                if let Ok(summary) = certsync_contract::summarize_chain(bytes) {
                    certificates.push((key.clone(), Arc::new(lean_summary(summary))));
                }
            }
            values.push((key, Blob::digest_of(bytes)));
        }
        (values.into_iter().collect(), certificates.into())
    }

    /// The summary of the certificate under data key `key`.
    pub fn certificate(&self, key: &str) -> Option<&Arc<CertSummary>> {
        self.certificates
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, summary)| summary)
    }
}

impl fmt::Debug for PublishedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishedSecret")
            .field("name", &self.name)
            .field("secret_type", &self.secret_type)
            .field("labels", &self.labels)
            .field("annotations", &self.annotations)
            .field("data", &DataSizes(&*self.data))
            .field(
                "certificates",
                &self.certificates.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A summary as the controller keeps it: fingerprint, serial and validity.
/// SANs (up to hundreds per certificate) and names are dropped: the
/// controller never shows them, and they would be most of a thousand cached
/// summaries.
pub fn lean_summary(mut summary: CertSummary) -> CertSummary {
    summary.sans = Vec::new();
    summary.subject = String::new();
    summary.issuer = String::new();
    summary
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

/// One data value of a Secret: its SHA-256 and length always, its bytes
/// only while something needs them. Compares by content (digest and
/// length), so a value known only by digest (what the watch saw published)
/// equals the bytes it was computed from.
///
/// ```text
///  source GET ──▶ Blob (bytes) ──▶ validation ──▶ digest only (Secret modes)
///  managed watch ──▶ digest only                      │
///  write: desired value without bytes ──▶ hydrate (GET source / target, match by digest) ──▶ SSA
/// ```
///
/// The controller's memory is thus flat in certificate sizes: a thousand
/// published Secrets are a thousand digests, not megabytes of PEM.
/// `Debug` shows the size only, since the bytes may be a private key.
#[derive(Clone)]
pub struct Blob(Arc<BlobInner>);

struct BlobInner {
    sha256: [u8; 32],
    len: usize,
    bytes: Option<Box<[u8]>>,
}

impl Blob {
    /// A value known only by the digest of `bytes` (which are not kept).
    pub fn digest_of(bytes: &[u8]) -> Blob {
        Blob(Arc::new(BlobInner {
            sha256: Sha256::digest(bytes).into(),
            len: bytes.len(),
            bytes: None,
        }))
    }

    /// The same value without its bytes.
    pub fn digest_only(&self) -> Blob {
        if self.0.bytes.is_none() {
            return self.clone();
        }
        Blob(Arc::new(BlobInner {
            sha256: self.0.sha256,
            len: self.0.len,
            bytes: None,
        }))
    }

    /// The bytes, when held.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.0.bytes.as_deref()
    }

    pub fn len(&self) -> usize {
        self.0.len
    }

    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Whether `bytes` are this value's bytes.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.0.len == bytes.len() && self.0.sha256 == <[u8; 32]>::from(Sha256::digest(bytes))
    }
}

impl Default for Blob {
    fn default() -> Self {
        Blob::from(Vec::new())
    }
}

impl PartialEq for Blob {
    fn eq(&self, other: &Blob) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.len == other.0.len && self.0.sha256 == other.0.sha256)
    }
}

impl Eq for Blob {}

impl From<Vec<u8>> for Blob {
    fn from(v: Vec<u8>) -> Self {
        Blob(Arc::new(BlobInner {
            sha256: Sha256::digest(&v).into(),
            len: v.len(),
            bytes: Some(v.into_boxed_slice()),
        }))
    }
}

impl From<&[u8]> for Blob {
    fn from(v: &[u8]) -> Self {
        Blob::from(v.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Blob {
    fn from(v: &[u8; N]) -> Self {
        Blob::from(v.to_vec())
    }
}

impl PartialEq<[u8]> for Blob {
    fn eq(&self, other: &[u8]) -> bool {
        self.matches(other)
    }
}

impl PartialEq<&[u8]> for Blob {
    fn eq(&self, other: &&[u8]) -> bool {
        self.matches(other)
    }
}

impl PartialEq<Vec<u8>> for Blob {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.matches(other)
    }
}

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ByteCount(self.0.len).fmt(f)
    }
}

/// The length of a data value, for `Debug` output that never shows bytes.
pub(crate) trait ByteLen {
    fn byte_len(&self) -> usize;
}

impl ByteLen for Blob {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

impl ByteLen for Vec<u8> {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

/// Debug-prints a data map as `key: <n bytes>`: keys are names, values may
/// be keys. Takes a `&BTreeMap` or a `&FlatMap`.
pub(crate) struct DataSizes<M>(pub M);

impl<'a, M, V> fmt::Debug for DataSizes<M>
where
    M: IntoIterator<Item = (&'a String, &'a V)> + Copy,
    V: ByteLen + 'a,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.0
                    .into_iter()
                    .map(|(k, v)| (k, ByteCount(v.byte_len()))),
            )
            .finish()
    }
}

struct ByteCount(usize);

impl fmt::Debug for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}
