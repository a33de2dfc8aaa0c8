//! The mesh CA stage of a pass: read the CA source (a cert-manager CA
//! Secret, or a Vault KV secret) only when its version moved, check it
//! (`core::mesh_ca`), and keep istiod's `cacerts` equal to the last CA
//! that passed — never over a `cacerts` cert-sync does not manage.
//!
//! ```text
//!  source version (TLS watch's resourceVersion │ KV current_version)
//!     ─▶ moved? read ─▶ core::mesh_ca::check ─▶ last good CA (kept on refusal)
//!  GET cacerts ─▶ not ours? refuse │ differs? apply (one object: every key at once)
//!     ─▶ manifest rows: ROOTCA trusts the root, default issued by the CA
//! ```

use super::super::{Context, Error};
use crate::core::manifest::ManifestEntry;
use crate::core::mesh_ca::{self, ValidCa};
use crate::core::model::{ObjectRef, SourceData};
use crate::core::reasons::{self, Refusal, Subject};
use crate::core::vault::{self as vault_core, Fields};
use crate::runtime::kube::cluster::{self, Stores};
use crate::runtime::kube::events;
use crate::runtime::vault::{self, VaultClient};
use k8s_openapi::api::core::v1::ObjectReference;

/// Where the mesh CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeshCaFrom {
    /// A `kubernetes.io/tls` CA Secret (cert-manager's `tls.crt`,
    /// `tls.key`, `ca.crt`).
    Secret(ObjectRef),
    /// A KV v2 secret below `--vault-kv-mount` with the same fields; the
    /// path is the operator's, not a tenant's.
    Vault { path: String },
}

impl MeshCaFrom {
    /// `secret:<ns>/<name>` or `vault:<path>`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("secret", key)) => match key.split_once('/') {
                Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                    Ok(MeshCaFrom::Secret(ObjectRef::new(ns, name)))
                }
                _ => Err(format!(
                    "--mesh-ca-from {text:?}: expected secret:<namespace>/<name>"
                )),
            },
            Some(("vault", path)) if !path.trim_matches('/').is_empty() => Ok(MeshCaFrom::Vault {
                path: path.trim_matches('/').to_owned(),
            }),
            _ => Err(format!(
                "--mesh-ca-from {text:?}: expected secret:<namespace>/<name> or vault:<path>"
            )),
        }
    }

    /// How the manifest and annotations name it.
    pub fn label(&self) -> String {
        match self {
            MeshCaFrom::Secret(key) => key.to_string(),
            MeshCaFrom::Vault { path } => format!("vault:{path}"),
        }
    }
}

/// The mesh CA's settings.
#[derive(Debug, Clone)]
pub struct MeshCaSettings {
    pub from: MeshCaFrom,
    /// `<istiod namespace>/cacerts`.
    pub target: ObjectRef,
    /// Seconds of validity the CA and its root must still have.
    pub min_left: i64,
}

/// What the stage found in one pass.
#[derive(Debug, Default)]
pub struct MeshFound {
    pub entries: Vec<ManifestEntry>,
    pub refusals: Vec<Refusal>,
    pub writes: usize,
    pub reads: usize,
}

pub struct MeshCa {
    settings: MeshCaSettings,
    /// With its KV mount, when the CA is in Vault.
    vault: Option<(VaultClient, String)>,
    /// The source version last read and checked.
    read_version: Option<String>,
    /// The last CA that passed every check: what `cacerts` must hold.
    good: Option<ValidCa>,
    /// Why the source's current version is refused, while it is.
    refused: Option<Refusal>,
}

impl MeshCa {
    pub fn new(settings: MeshCaSettings, vault: Option<(VaultClient, String)>) -> Self {
        MeshCa {
            settings,
            vault,
            read_version: None,
            good: None,
            refused: None,
        }
    }

    /// Where this stage's Events go: the CA Secret, or `cacerts` for a
    /// CA in Vault.
    pub fn event_reference(&self) -> ObjectReference {
        match &self.settings.from {
            MeshCaFrom::Secret(key) => events::secret_reference(key),
            MeshCaFrom::Vault { .. } => events::secret_reference(&self.settings.target),
        }
    }

    pub async fn pass(
        &mut self,
        ctx: &Context,
        stores: &Stores,
        now: i64,
    ) -> Result<MeshFound, Error> {
        let mut found = MeshFound::default();
        let subject = Subject::MeshCa(self.settings.target.clone());
        let refuse =
            |reason: &'static str, message: String| Refusal::new(subject.clone(), reason, message);
        match self.version(stores).await {
            Err(refusal) => found.refusals.push(refuse(refusal.0, refusal.1)),
            Ok(version) if version != self.read_version => {
                found.reads += 1;
                match self.read(ctx, &version).await? {
                    Err((reason, message)) => found.refusals.push(refuse(reason, message)),
                    Ok(data) => {
                        let min_left = self.settings.min_left;
                        self.refused = match mesh_ca::check(&data, now, min_left) {
                            Ok(valid) => {
                                self.good = Some(valid);
                                None
                            }
                            Err(r) => Some(refuse(
                                r.reason,
                                format!(
                                    "{}: {}; cacerts keeps the last good CA",
                                    self.settings.from.label(),
                                    r.message
                                ),
                            )),
                        };
                        self.read_version = version;
                    }
                }
            }
            Ok(_) => {}
        }
        found.refusals.extend(self.refused.clone());
        let Some(good) = &self.good else {
            return Ok(found);
        };
        if good.not_after - now < self.settings.min_left && self.refused.is_none() {
            found.refusals.push(refuse(
                reasons::CA_EXPIRING,
                format!(
                    "the CA in cacerts expires at {}; rotate {}",
                    crate::core::manifest::rfc3339(good.not_after),
                    self.settings.from.label()
                ),
            ));
        }
        let target = &self.settings.target;
        let current = cluster::read_target(&ctx.client, &target.namespace, &target.name).await?;
        if current.as_ref().is_some_and(|c| !c.is_managed()) {
            found.refusals.push(refuse(
                reasons::TARGET_NOT_MANAGED,
                format!(
                    "{target} exists and is not managed by cert-sync; it is never overwritten \
                     (delete it, or label it app.kubernetes.io/managed-by=cert-sync to hand it over)"
                ),
            ));
            return Ok(found);
        }
        let label = self.settings.from.label();
        let desired = mesh_ca::desired(good, target, &label);
        if !current
            .as_ref()
            .is_some_and(|c| mesh_ca::up_to_date(c, &desired))
        {
            let root_changed = mesh_ca::root_changed(
                current
                    .as_ref()
                    .and_then(|c| c.data.get(mesh_ca::keys::ROOT_CERT)),
                good,
            );
            cluster::apply_secret(&ctx.client, &desired).await?;
            found.writes += 1;
            let message = format!(
                "wrote {target}: CA sha256 {} (serial {}), root sha256 {}",
                good.signing.short(),
                good.signing_serial,
                good.roots[0].short()
            );
            tracing::info!(source = %label, "{message}");
            ctx.emit(self.event_reference(), false, reasons::PUBLISHED, &message)
                .await;
            if root_changed {
                let message = format!(
                    "{target} now holds another root: istiod ignores such an update until it is \
                     restarted (pilot/pkg/bootstrap/istio_ca.go:349-367); see docs/mesh-ca.md"
                );
                tracing::warn!(source = %label, "{message}");
                ctx.emit(
                    self.event_reference(),
                    true,
                    reasons::MESH_ROOT_CHANGED,
                    &message,
                )
                .await;
            }
        }
        found.entries = mesh_ca::entries(good, target, &label).into();
        Ok(found)
    }

    /// The source's current version; `Err` (reason, message) when there
    /// is none to read.
    async fn version(&self, stores: &Stores) -> Result<Option<String>, (&'static str, String)> {
        match &self.settings.from {
            MeshCaFrom::Secret(key) => match stores.tls_sources.resource_version_of(key) {
                Some(rv) => Ok(Some(rv)),
                None => Err((
                    reasons::NOT_FOUND,
                    format!("mesh CA source Secret {key} (kubernetes.io/tls) not found"),
                )),
            },
            MeshCaFrom::Vault { path } => {
                let Some((client, mount)) = &self.vault else {
                    return Err((
                        reasons::VAULT_UNAVAILABLE,
                        "--mesh-ca-from vault: needs --vault-addr".to_owned(),
                    ));
                };
                match client.version(mount, path).await {
                    Ok(Some(v)) if !v.deleted => Ok(Some(v.current.to_string())),
                    Ok(_) => Err((
                        reasons::NOT_FOUND,
                        format!(
                            "{mount}/{path}: no such KV secret, or its current version is deleted"
                        ),
                    )),
                    Err(e) => Err((
                        vault::reason_of(&e),
                        format!("{mount}/{path}: {e}; cacerts keeps the last good CA"),
                    )),
                }
            }
        }
    }

    async fn read(
        &self,
        ctx: &Context,
        version: &Option<String>,
    ) -> Result<Result<SourceData, (&'static str, String)>, Error> {
        let gone = |what: String| {
            Err((
                reasons::NOT_FOUND,
                format!("{what} could not be read (deleted?)"),
            ))
        };
        match &self.settings.from {
            MeshCaFrom::Secret(key) => Ok(match cluster::read_source(&ctx.client, key).await? {
                Some((_, data)) => Ok(data),
                None => gone(key.to_string()),
            }),
            MeshCaFrom::Vault { path } => {
                let (Some((client, mount)), Some(v)) =
                    (&self.vault, version.as_deref().and_then(|v| v.parse().ok()))
                else {
                    return Ok(gone(path.clone()));
                };
                Ok(match client.read(mount, path, v).await {
                    Ok(Some(fields)) => Ok(vault_core::layout(&Fields::default(), fields)),
                    Ok(None) => gone(format!("{mount}/{path}")),
                    Err(e) => Err((vault::reason_of(&e), format!("{mount}/{path}: {e}"))),
                })
            }
        }
    }
}
