//! The `VaultCertificate` custom resource (certsync.istio.io/v1alpha1): a
//! certificate kept in Vault (or OpenBao) KV v2, published as an annotated
//! TLS Secret of the same namespace and name would be (see `core::vault`).
//! A sibling of CertMerge rather than a field of it: a CertMerge selects
//! Secrets that exist; this names data that never becomes a Secret in the
//! source namespace. Its CRD is `crds/vaultcertificate.yaml`, generated
//! from these types (`tests/crd.rs`).

use crate::core::model::ObjectRef;
use crate::core::vault::{Fields, VaultSource};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "certsync.istio.io",
    version = "v1alpha1",
    kind = "VaultCertificate",
    namespaced,
    shortname = "vaultcert",
    printcolumn = r#"{"name":"Path","type":"string","jsonPath":".spec.path"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VaultCertificateSpec {
    /// The KV v2 secret, relative to this namespace's prefix: cert-sync
    /// reads `<mount>/data/<prefix>/<namespace>/<path>` (`--vault-kv-mount`,
    /// `--vault-kv-prefix`), so a namespace reads only its own subtree.
    pub path: String,
    /// Which KV fields hold the certificate chain, the private key and the
    /// CA bundle (default `tls.crt`, `tls.key`, `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<VaultFields>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

impl VaultCertificate {
    /// The core's view of this object.
    pub fn to_model(&self) -> VaultSource {
        let defaults = Fields::default();
        let fields = self.spec.fields.as_ref();
        let pick = |f: Option<&String>, default: String| f.cloned().unwrap_or(default);
        VaultSource {
            key: ObjectRef::new(
                self.metadata.namespace.clone().unwrap_or_default(),
                self.metadata.name.clone().unwrap_or_default(),
            ),
            uid: self.metadata.uid.clone().unwrap_or_default(),
            resource_version: self.metadata.resource_version.clone().unwrap_or_default(),
            created: self
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
            path: self.spec.path.clone(),
            fields: Fields {
                certificate: pick(
                    fields.and_then(|f| f.certificate.as_ref()),
                    defaults.certificate,
                ),
                private_key: pick(
                    fields.and_then(|f| f.private_key.as_ref()),
                    defaults.private_key,
                ),
                ca: pick(fields.and_then(|f| f.ca.as_ref()), defaults.ca),
            },
        }
    }
}
