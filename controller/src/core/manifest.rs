//! The manifest ConfigMap (`cert-sync-manifest` in the gateway namespace):
//! the public index of what is published. Per source and target it says
//! where the certificate is, which SDS resource name a gateway shows for it
//! (so a report from the filter maps back to a source), and which leaf
//! (SHA-256, serial, notAfter) the gateway must serve. It is readable by
//! anyone who may read ConfigMaps there, so it holds no key material, and it
//! is rendered deterministically (sorted, no timestamps of its own) so an
//! unchanged publication gives a byte-identical ConfigMap and no write.

use super::desired::{DesiredState, Entry, Plan};
use super::error::CoreError;
use super::model::{keys, Mode, ObjectRef, Policy};
use super::naming;
use super::selection::Target;
use certsync_contract::Fingerprint;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

pub const NAME: &str = "cert-sync-manifest";
/// The one data key of the ConfigMap.
pub const DATA_KEY: &str = "manifest.json";
/// 2: split into an index and shards ([`shards`]); a whole version-1
/// manifest (one ConfigMap) is still read.
pub const VERSION: u32 = 2;

pub mod shards;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: u32,
    pub gateway_namespace: String,
    /// `credential`, `merged` or `directory`: how annotated Secrets are published.
    pub mode: String,
    /// Sorted by source, then target. Shared across builds: an entry that
    /// did not change is the same allocation in the next manifest (see
    /// [`rebuild`]), so a rotation of one certificate costs one new entry.
    pub publications: Vec<Arc<ManifestEntry>>,
    /// What is not published, and why (reason and a message for people;
    /// never key material): the same rows `cert-sync status` shows whether
    /// it reads this ConfigMap or the controller.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<RefusalView>,
}

/// A source (or CertMerge, member or target) that is not published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalView {
    pub subject: String,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    /// `<namespace>/<name>` of the source Secret.
    pub source: String,
    pub target: TargetRef,
    /// The SDS resource name the gateway shows for the certificate.
    pub sds_resource: String,
    /// The SDS resource name of the CA, when one is published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sds_ca_resource: Option<String>,
    /// SHA-256 of the published leaf: what every gateway pod must serve.
    pub sha256: Fingerprint,
    pub serial: String,
    /// RFC 3339, UTC.
    pub not_after: String,
    /// When set, the source itself was refused for this reason and the
    /// published certificate is the last good one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<String>,
    /// When this certificate was first published (RFC 3339), once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_at: Option<String>,
    /// When every live gateway pod first served it (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub converged_at: Option<String>,
    /// `Converged`, `Progressing` or `NoPods`, once rollout verification ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Pod name → rollout state (`Verified`, `Stale`, `Missing`, `Unknown`),
    /// filled by rollout verification; empty until then.
    #[serde(default)]
    pub rollout: BTreeMap<String, String>,
}

/// Where the certificate is published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum TargetRef {
    /// A `kubernetes.io/tls` Secret in the gateway namespace.
    Credential { secret: String },
    /// Keys of a merged Secret in the gateway namespace.
    Merged {
        secret: String,
        cert_key: String,
        key_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_key: Option<String>,
    },
    /// Absolute file paths on the gateway.
    Directory {
        cert: String,
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca: Option<String>,
    },
    /// Not published by cert-sync: gateways reference the Secret natively
    /// (`core::referenced`), and only the pods with these labels load it.
    Referenced {
        /// `<gateway> <server>` for every server or listener that references it.
        by: Vec<String>,
        pods: BTreeMap<String, String>,
    },
    /// istiod's plugged-in CA (`<namespace>/cacerts`, `core::mesh_ca`),
    /// proven on every gateway pod by its own mesh identity.
    MeshCa { secret: String, proof: MeshProof },
}

/// How a pod shows it has taken up the mesh CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MeshProof {
    /// Its `ROOTCA` bundle holds the root (`sha256`).
    TrustsRoot,
    /// Its `default` workload certificate is issued by the CA (`sha256`
    /// is the CA's: the chain's second certificate).
    IssuedBy,
}

impl MeshProof {
    pub fn as_str(self) -> &'static str {
        match self {
            MeshProof::TrustsRoot => "trusts root",
            MeshProof::IssuedBy => "issued by",
        }
    }
}

impl TargetRef {
    /// Whether cert-sync writes this target (so the ladder may touch it).
    pub fn is_published(&self) -> bool {
        !matches!(
            self,
            TargetRef::Referenced { .. } | TargetRef::MeshCa { .. }
        )
    }

    /// How a pod proves a mesh CA row; `None` for a certificate it serves.
    pub fn mesh_proof(&self) -> Option<MeshProof> {
        match self {
            TargetRef::MeshCa { proof, .. } => Some(*proof),
            _ => None,
        }
    }

    /// A stuck rollout climbs the re-trigger ladder: not the mesh CA's,
    /// whose workload certificates move at their own renewal (~12 h,
    /// `docs/istio-reading.md`), which no push or re-apply hastens.
    pub fn retriggers(&self) -> bool {
        !matches!(self, TargetRef::MeshCa { .. })
    }
}

/// The manifest for `desired` once `plan` is applied: entries whose target
/// was refused (`TargetNotManaged`) are not published, so not listed.
/// `certdir` is the directory-mode root as the gateway sees it.
pub fn build(policy: &Policy, desired: &DesiredState, plan: &Plan, certdir: &str) -> Manifest {
    let publications = published_entries(desired, plan)
        .map(|e| Arc::new(entry(e, certdir)))
        .collect();
    header(policy, publications)
}

/// [`build`], taking every entry that is unchanged from `previous` rather
/// than allocating it again. At a thousand sources a manifest is about
/// half a megabyte; an update then costs the changed entry and a vector of
/// pointers, and an unchanged manifest compares equal at pointer speed.
pub fn rebuild(
    previous: &Manifest,
    policy: &Policy,
    desired: &DesiredState,
    plan: &Plan,
    certdir: &str,
) -> Manifest {
    // Keyed by what identifies an entry: its source and SDS resource (one
    // per target). Entry order is desired's, which is not the strings'.
    let earlier: HashMap<(&str, &str), &Arc<ManifestEntry>> = previous
        .publications
        .iter()
        .map(|p| ((p.source.as_str(), p.sds_resource.as_str()), p))
        .collect();
    let publications = published_entries(desired, plan)
        .map(|e| {
            let fresh = entry(e, certdir);
            match earlier.get(&(fresh.source.as_str(), fresh.sds_resource.as_str())) {
                Some(&same) if **same == fresh => Arc::clone(same),
                _ => Arc::new(fresh),
            }
        })
        .collect();
    header(policy, publications)
}

/// [`rebuild`] for a scoped pass: `previous`'s published entries of sources
/// outside `scope` stay as they are (shared, not compared), and `desired`
/// and `plan` hold what the pass decided for the sources inside. The cost
/// is the scope's entries and a vector of pointers.
pub fn splice(
    previous: &Manifest,
    policy: &Policy,
    desired: &DesiredState,
    plan: &Plan,
    certdir: &str,
    scope: &BTreeSet<ObjectRef>,
) -> Manifest {
    let inside: BTreeSet<String> = scope.iter().map(ToString::to_string).collect();
    let (was_inside, mut publications): (Vec<_>, Vec<_>) = previous
        .publications
        .iter()
        .filter(|p| p.target.is_published())
        .cloned()
        .partition(|p| inside.contains(&p.source));
    publications.extend(published_entries(desired, plan).map(|e| {
        let fresh = entry(e, certdir);
        match was_inside
            .iter()
            .find(|p| p.source == fresh.source && p.sds_resource == fresh.sds_resource)
        {
            Some(same) if **same == fresh => Arc::clone(same),
            _ => Arc::new(fresh),
        }
    }));
    header(policy, publications)
}

/// Entries are ordered by source, then SDS resource: the same order however
/// the manifest was made (built, rebuilt or spliced; referenced rows added).
fn header(policy: &Policy, mut publications: Vec<Arc<ManifestEntry>>) -> Manifest {
    publications.sort_by(|a, b| {
        (a.source.as_str(), a.sds_resource.as_str())
            .cmp(&(b.source.as_str(), b.sds_resource.as_str()))
    });
    Manifest {
        version: VERSION,
        gateway_namespace: policy.gateway_namespace.clone(),
        mode: mode_name(&policy.mode).to_owned(),
        publications,
        refusals: Vec::new(),
    }
}

fn mode_name(mode: &Mode) -> &'static str {
    match mode {
        Mode::Credential => "credential",
        Mode::Merged { .. } => "merged",
        Mode::Directory => "directory",
    }
}

/// `desired`'s entries whose target is not refused.
fn published_entries<'a>(
    desired: &'a DesiredState,
    plan: &'a Plan,
) -> impl Iterator<Item = &'a Entry> + Clone {
    desired.entries.iter().filter(|e| {
        e.target
            .secret_name()
            .is_none_or(|name| !plan.blocked(name))
    })
}

fn entry(e: &Entry, certdir: &str) -> ManifestEntry {
    let names = &e.names;
    let (target, sds_resource, sds_ca_resource) = match &e.target {
        Target::Credential(secret) => (
            TargetRef::Credential {
                secret: secret.clone(),
            },
            naming::credential_sds(secret),
            e.has_ca.then(|| naming::credential_ca_sds(secret)),
        ),
        Target::Merged(secret) => {
            let dir = naming::merged_mount_dir(secret);
            (
                TargetRef::Merged {
                    secret: secret.clone(),
                    cert_key: names.cert.clone(),
                    key_key: names.key.clone(),
                    ca_key: e.has_ca.then(|| names.ca.clone()),
                },
                naming::file_cert_sds(&dir, names),
                e.has_ca.then(|| naming::file_root_sds(&dir, names)),
            )
        }
        Target::Directory => {
            let dir = certdir.trim_end_matches('/');
            (
                TargetRef::Directory {
                    cert: format!("{dir}/{}", names.cert),
                    key: format!("{dir}/{}", names.key),
                    ca: e.has_ca.then(|| format!("{dir}/{}", names.ca)),
                },
                naming::file_cert_sds(dir, names),
                e.has_ca.then(|| naming::file_root_sds(dir, names)),
            )
        }
    };
    ManifestEntry {
        source: e.source.to_string(),
        target,
        sds_resource,
        sds_ca_resource,
        sha256: e.summary.sha256,
        serial: e.summary.serial.clone(),
        not_after: rfc3339(e.summary.not_after),
        kept: e.kept.map(str::to_owned),
        published_at: None,
        converged_at: None,
        state: None,
        rollout: BTreeMap::new(),
    }
}

/// The ConfigMap's labels.
pub fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(
        keys::MANAGED_BY.to_owned(),
        keys::MANAGED_BY_VALUE.to_owned(),
    )])
}

/// The ConfigMap's `data`: compact JSON under [`DATA_KEY`] (at a thousand
/// sources it is hundreds of kilobytes, written on every change; `cert-sync
/// status` is the human view).
pub fn render(manifest: &Manifest) -> Result<BTreeMap<String, String>, CoreError> {
    let json = Rendering::new(manifest, |_| {}).json()?;
    Ok(BTreeMap::from([(DATA_KEY.to_owned(), json)]))
}

/// A manifest document as it is written: its digest is computed while
/// serializing, and the ConfigMap body is serialized straight from the
/// entries, so hundreds of kilobytes of JSON are never held as text.
pub struct Rendering<T> {
    inner: T,
}

impl<'a, F: Fn(&mut ManifestEntry)> Rendering<Annotated<'a, F>> {
    /// The whole manifest, each entry passed through `annotate` on the way
    /// out (the rollout state).
    pub fn new(manifest: &'a Manifest, annotate: F) -> Self {
        Rendering {
            inner: Annotated { manifest, annotate },
        }
    }
}

impl<T: Serialize> Rendering<T> {
    /// Any document written as a manifest part (`shards`).
    pub fn of(inner: T) -> Self {
        Rendering { inner }
    }

    /// SHA-256 of the JSON text.
    pub fn sha256(&self) -> Result<[u8; 32], CoreError> {
        struct Hasher(Sha256);
        impl std::io::Write for Hasher {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut hasher = Hasher(Sha256::new());
        serde_json::to_writer(&mut hasher, &self.inner)?;
        Ok(hasher.0.finalize().into())
    }

    /// The JSON text (tests and `cert-sync status` fixtures).
    pub fn json(&self) -> Result<String, CoreError> {
        Ok(serde_json::to_string(&self.inner)?)
    }

    /// The ConfigMap's `data`: the JSON text under [`DATA_KEY`].
    pub fn data(&self) -> impl Serialize + '_ {
        ConfigMapData(&self.inner)
    }
}

/// `{DATA_KEY: "<json>"}`, the JSON written as an escaped string directly.
struct ConfigMapData<'a, T>(&'a T);

impl<T: Serialize> Serialize for ConfigMapData<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry(DATA_KEY, &JsonText(self.0))?;
        map.end()
    }
}

/// A value serialized as the string of its JSON text, without building it.
struct JsonText<'a, T>(&'a T);

impl<T: Serialize> Serialize for JsonText<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<T: Serialize> std::fmt::Display for JsonText<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // serde_json writes whole UTF-8 fragments (it splits only at ASCII).
        struct Out<'a, 'b>(&'a mut std::fmt::Formatter<'b>);
        impl std::io::Write for Out<'_, '_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let text = std::str::from_utf8(buf).map_err(std::io::Error::other)?;
                self.0.write_str(text).map_err(std::io::Error::other)?;
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        serde_json::to_writer(Out(f), self.0).map_err(|_| std::fmt::Error)
    }
}

/// Entries serialized one at a time, each passed through the annotation.
pub(crate) struct Entries<'a, I, F> {
    pub entries: I,
    pub annotate: &'a F,
}

impl<'a, I, F> Serialize for Entries<'a, I, F>
where
    I: Iterator<Item = &'a Arc<ManifestEntry>> + ExactSizeIterator + Clone,
    F: Fn(&mut ManifestEntry),
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.entries.len()))?;
        for entry in self.entries.clone() {
            let mut entry = ManifestEntry::clone(entry);
            (self.annotate)(&mut entry);
            seq.serialize_element(&entry)?;
        }
        seq.end()
    }
}

/// Serializes like [`Manifest`]'s derive, one annotated entry at a time.
pub struct Annotated<'a, F> {
    manifest: &'a Manifest,
    annotate: F,
}

impl<F: Fn(&mut ManifestEntry)> Serialize for Annotated<'_, F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let m = self.manifest;
        let entries = Entries {
            entries: m.publications.iter(),
            annotate: &self.annotate,
        };
        let mut out = serializer.serialize_struct("Manifest", 5)?;
        out.serialize_field("version", &m.version)?;
        out.serialize_field("gatewayNamespace", &m.gateway_namespace)?;
        out.serialize_field("mode", &m.mode)?;
        out.serialize_field("publications", &entries)?;
        if !m.refusals.is_empty() {
            out.serialize_field("refusals", &m.refusals)?;
        }
        out.end()
    }
}

/// Reads a manifest back (e.g. for `cert-sync status`).
pub fn parse(json: &str) -> Result<Manifest, CoreError> {
    let manifest: Manifest = serde_json::from_str(json)?;
    if !(1..=VERSION).contains(&manifest.version) {
        return Err(CoreError::ManifestVersion {
            found: manifest.version,
            supported: VERSION,
        });
    }
    Ok(manifest)
}

/// Unix milliseconds → RFC 3339 (UTC, whole seconds).
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339(ms.div_euclid(1000))
}

/// Unix seconds → `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
