//! SDS resource names as Istio gives them to a gateway's Envoy. The filter
//! reports certificates under these names and the controller predicts them
//! for what it publishes, so a report maps back to its source; both sides
//! build and match them with what is here.
//!
//! The scheme is Istio's, not ours: `pilot/pkg/model/credentials` (the
//! `kubernetes://` and `kubernetes-gateway://` forms, the `-cacert` suffix)
//! and `pkg/security` (`file-cert:`/`file-root:` of a Gateway's certificate
//! files, `default`/`ROOTCA` of the pod's own mesh identity).

/// A Gateway `credentialName` Secret in the gateway's own namespace:
/// `kubernetes://<secret>`.
pub const KUBERNETES_PREFIX: &str = "kubernetes://";
/// A Secret referenced by a Kubernetes Gateway API listener:
/// `kubernetes-gateway://<namespace>/<name>`. Not covered by
/// [`KUBERNETES_PREFIX`] (the two differ after `kubernetes`).
pub const KUBERNETES_GATEWAY_PREFIX: &str = "kubernetes-gateway://";
/// Appended to a credential's resource name for its CA (mutual TLS).
pub const CA_SUFFIX: &str = "-cacert";
/// A Gateway's `serverCertificate`/`privateKey` files:
/// `file-cert:<cert path>~<key path>`.
pub const FILE_CERT_PREFIX: &str = "file-cert:";
/// A Gateway's `caCertificates` file: `file-root:<ca path>`.
pub const FILE_ROOT_PREFIX: &str = "file-root:";
/// Separates the certificate and key paths of a `file-cert:` name.
pub const FILE_SEPARATOR: char = '~';
/// The pod's own workload (mesh) certificate.
pub const WORKLOAD_CERT: &str = "default";
/// The mesh's root certificate.
pub const ROOT_CA: &str = "ROOTCA";

/// Whether `resource` is the pod's own mesh identity: its workload
/// certificate ([`WORKLOAD_CERT`]) or the mesh's root bundle ([`ROOT_CA`]),
/// by exact name. For these the filter reports the fingerprints of the whole
/// chain or bundle (`LoadedCertificate::chain_sha256`), not only the first.
pub fn is_mesh_identity(resource: &str) -> bool {
    resource == WORKLOAD_CERT || resource == ROOT_CA
}

/// `kubernetes://<secret>`: a `credentialName: <secret>` listener.
pub fn credential(secret: &str) -> String {
    format!("{KUBERNETES_PREFIX}{secret}")
}

/// `kubernetes://<secret>-cacert`: the CA of a `credentialName: <secret>`
/// listener.
pub fn credential_ca(secret: &str) -> String {
    format!("{KUBERNETES_PREFIX}{secret}{CA_SUFFIX}")
}

/// `kubernetes-gateway://<namespace>/<name>`: a Gateway API listener's
/// certificate reference.
pub fn gateway_credential(namespace: &str, name: &str) -> String {
    format!("{KUBERNETES_GATEWAY_PREFIX}{namespace}/{name}")
}

/// `file-cert:<cert>~<key>`: a certificate and key Envoy reads from files.
pub fn file_cert(cert_path: &str, key_path: &str) -> String {
    format!("{FILE_CERT_PREFIX}{cert_path}{FILE_SEPARATOR}{key_path}")
}

/// `file-root:<ca>`: a CA bundle Envoy reads from a file.
pub fn file_root(ca_path: &str) -> String {
    format!("{FILE_ROOT_PREFIX}{ca_path}")
}

/// The name Envoy gives an SDS resource inside stat names: the secret's
/// counters are `sds.<stat name>.<counter>`. Envoy's
/// `Stats::Utility::sanitizeStatsName` (`source/common/stats/utility.cc`):
/// one leading and one trailing dot dropped; `://`, `:/`, `:` and NUL become `_`.
pub fn stat_name(resource: &str) -> String {
    let trimmed = resource.strip_suffix('.').unwrap_or(resource);
    let trimmed = trimmed.strip_prefix('.').unwrap_or(trimmed);
    trimmed
        .replace("://", "_")
        .replace(":/", "_")
        .replace([':', '\0'], "_")
}

/// The Secret name of a `kubernetes://` certificate resource; `None` for
/// anything else, a `-cacert` resource included.
pub fn credential_secret(resource: &str) -> Option<&str> {
    resource
        .strip_prefix(KUBERNETES_PREFIX)
        .filter(|secret| !secret.ends_with(CA_SUFFIX))
}
