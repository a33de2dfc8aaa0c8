//! The publish stage: read the stores, let `core` decide, write the
//! difference. Kept to I/O; the decisions and their tests live in `core`.
//!
//! ```text
//!  stores ─▶ select ─▶ read data (core::freshness: GET only where resourceVersion moved)
//!     ─▶ validate ─▶ keep digests (Secret modes) ─▶ render desired (keeping the last good)
//!     ─▶ look up objects in a target's way ─▶ diff ─▶ hydrate + write (write.rs)
//!     ─▶ Events on transitions (core::announce)
//!     ─▶ Publications + CertMerge statuses, for `record`
//! ```
//!
//! Between passes the controller holds metadata and digests, not PEM: its
//! memory does not grow with certificate sizes (see `core::model::Blob`).

mod mesh_ca;
mod referenced;
mod scoped;
mod tell;
mod validate;
mod write;

pub use mesh_ca::{MeshCa, MeshCaFrom, MeshCaSettings};
pub use referenced::Referenced;

use super::{Context, Error};
use crate::core::announce::{self, Announcer};
use crate::core::desired::{self, DesiredState, Entry};
use crate::core::freshness::Freshness;
use crate::core::model::{Mode, ObjectRef, Published, SourceMeta};
use crate::core::reasons::{self, Refusal, Subject};
use crate::core::scoped::Decided;
use crate::core::status::{Publications, RefusalView};
use crate::core::validation::Validations;
use crate::core::{manifest, merge_status, selection};
use crate::crd::CertMergeStatus;
use crate::runtime::gateway::files::DirectoryPublisher;
use crate::runtime::kube::cluster::{self, Stores};
use crate::runtime::ops::heap;
use crate::runtime::vault::VaultSources;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// Reads or writes in one pass from which freed pages are handed back
/// mid-pass (see `runtime::ops::heap`); a single update is far below it.
const BULK: usize = 100;

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub writes: usize,
    pub deletes: usize,
    pub files_swapped: bool,
    pub refusals: usize,
    pub reads: usize,
    /// Nothing done: a store was relisting (its end starts the next pass).
    pub deferred: bool,
    /// A scoped pass: how many sources it decided (`None`: a full pass).
    pub scoped: Option<usize>,
}

/// One CertMerge's status as the last pass computed it, before rollout:
/// `record` adds the `RolledOut` condition and writes it when it changed.
#[derive(Debug, Clone)]
pub struct MergeReport {
    pub key: ObjectRef,
    /// The merged Secret it publishes.
    pub target: String,
    pub generation: Option<i64>,
    pub computed: merge_status::MergeStatus,
    /// The status as the store has it.
    pub previous: CertMergeStatus,
}

pub struct Publisher {
    stores: Stores,
    files: Option<DirectoryPublisher>,
    /// The certificate directory as the gateway sees it, for the manifest's
    /// paths and SDS names.
    cert_dir: String,
    /// Validation results of selected sources, kept across passes.
    validations: Validations,
    /// When each selected source is read and checked again.
    freshness: Freshness,
    /// Which refusals and publications were already told.
    announcer: Announcer,
    /// What the last pass published (manifest without rollout) and
    /// refused: verification's and the recorder's input, shared.
    built: Option<Publications>,
    merges: Arc<Vec<MergeReport>>,
    /// Directory mode without a publisher (the central instance): the tree
    /// the per-pod writers publish, as last decided here. It stands in for
    /// the files on disk, so a refused source keeps its last good entry.
    decided_files: BTreeMap<String, Vec<u8>>,
    /// The last pass found a target blocked ([`Publisher::blocked`]).
    blocked: bool,
    /// Certificates gateways reference natively (verified, never written).
    referenced: Option<Referenced>,
    /// Copy annotated Secrets; false for a verify-only install, which
    /// selects nothing and so never writes or deletes a Secret.
    publish: bool,
    /// Sources kept in Vault KV (`VaultCertificate`s), when configured.
    vault: Option<VaultSources>,
    /// Refusals of this pass's Vault reads (a failed read keeps the last
    /// good certificate; the poll's own refusals come from `vault`).
    vault_reads: Vec<Refusal>,
    /// istiod's `cacerts`, when cert-sync publishes the mesh CA.
    mesh_ca: Option<MeshCa>,
    /// What the last pass decided, whole, if it succeeded: what a scoped
    /// pass splices into (see `scoped`).
    decided: Option<Decided>,
}

impl Publisher {
    /// `files`: this instance swaps the certificate directory itself.
    pub fn new(stores: Stores, files: Option<DirectoryPublisher>, cert_dir: &Path) -> Self {
        Publisher {
            stores,
            files,
            cert_dir: cert_dir.display().to_string(),
            validations: Validations::default(),
            freshness: Freshness::default(),
            announcer: Announcer::default(),
            built: None,
            merges: Arc::new(Vec::new()),
            decided_files: BTreeMap::new(),
            blocked: false,
            referenced: None,
            publish: true,
            vault: None,
            vault_reads: Vec::new(),
            mesh_ca: None,
            decided: None,
        }
    }

    /// Also publish the mesh CA (`cacerts`).
    pub fn with_mesh_ca(mut self, mesh_ca: MeshCa) -> Self {
        self.mesh_ca = Some(mesh_ca);
        self
    }

    /// Also publish the certificates VaultCertificates name.
    pub fn with_vault(mut self, vault: VaultSources) -> Self {
        self.vault = Some(vault);
        self
    }

    /// The Gateway API Gateways whose pods cert-sync verifies (empty
    /// without `--verify-referenced`).
    pub fn gateway_api_names(&self) -> &[String] {
        self.referenced
            .as_ref()
            .map_or(&[], Referenced::api_gateways)
    }

    /// Also verify what gateways reference natively.
    pub fn with_referenced(mut self, referenced: Referenced) -> Self {
        self.referenced = Some(referenced);
        self
    }

    /// Verify only: publish nothing (see [`Publisher::publish`]).
    pub fn verify_only(mut self) -> Self {
        self.publish = false;
        self
    }

    /// What the last pass published and refused.
    pub fn publications(&self) -> Option<&Publications> {
        self.built.as_ref()
    }

    /// An object cert-sync does not manage blocks a target. Such objects are
    /// not watched (an Opaque Secret is outside every watch), so the loop
    /// checks again soon rather than at the next resync.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Every CertMerge's status as the last pass computed it (replaced, not
    /// updated, by each pass: pointer equality means nothing new).
    pub fn merges(&self) -> &Arc<Vec<MergeReport>> {
        &self.merges
    }

    /// A full pass: every source and target decided again. Whatever the
    /// watches journaled is decided with it.
    pub async fn pass(&mut self, ctx: &Context, now: i64) -> Result<Outcome, Error> {
        let started = std::time::Instant::now();
        let mut outcome = Outcome::default();
        // Until this pass succeeds, nothing can be spliced into.
        self.decided = None;
        self.stores.tls_sources.take_changes();
        self.stores.managed.take_changes();
        if self.stores.relisting() {
            tracing::debug!("a store is relisting; publishing when it is done");
            outcome.deferred = true;
            return Ok(outcome);
        }
        let gateway = ctx.policy.gateway_namespace.clone();
        self.vault_reads.clear();
        let (merges, sources) = if self.publish {
            let merges = self.stores.cert_merges(&gateway);
            let sources = self.sources(ctx, &merges, &mut outcome).await?;
            (merges, sources)
        } else {
            (Vec::new(), Vec::new())
        };
        let selection = selection::select(
            &ctx.policy,
            &sources,
            &self.stores.namespace_labels(),
            &merges,
        );
        let versions: BTreeMap<&ObjectRef, &str> = sources
            .iter()
            .map(|s| (&s.key, s.resource_version.as_str()))
            .collect();
        let selected_at = started.elapsed();
        let wanted: BTreeSet<ObjectRef> = selection.sources().into_iter().cloned().collect();
        self.retain_validations(&wanted);
        self.refresh_validations(ctx, &wanted, &versions, now, &mut outcome)
            .await?;
        // Not needed past this point; the rest of the pass is its peak.
        drop((versions, wanted));
        drop((sources, merges));
        if outcome.reads >= BULK {
            // An initial sync's reads leave their buffers in the heap's holes.
            heap::release_free_pages();
        }

        let mut current = Published {
            // Verify-only: nothing is published, so nothing is "current"
            // either (a leftover of a copying install is left alone).
            secrets: if self.publish {
                self.stores.managed_secrets()
            } else {
                BTreeMap::new()
            },
            files: BTreeMap::new(),
        };
        let central = matches!(ctx.policy.mode, Mode::Directory);
        if let Some(files) = &self.files {
            current.files = files
                .current()?
                .into_iter()
                .map(|(path, bytes)| (path.display().to_string(), bytes))
                .collect();
        } else if central {
            current.files = std::mem::take(&mut self.decided_files);
        }
        let desired = self.render(ctx, &selection, &mut current).await?;
        let plan = desired::diff(&current, &desired);
        let planned_at = started.elapsed();
        if self.files.is_none() && central {
            self.decided_files = desired.files.clone();
        }

        self.write(ctx, &desired, &plan, &current, &mut outcome)
            .await?;
        if outcome.writes >= BULK {
            heap::release_free_pages();
        }
        let written_at = started.elapsed();

        // Most passes change nothing published: keep the manifest (and what
        // verification holds of it). A changed one shares its unchanged
        // entries with the last.
        let built = match &self.built {
            Some(b) => manifest::rebuild(b, &ctx.policy, &desired, &plan, &self.cert_dir),
            None => manifest::build(&ctx.policy, &desired, &plan, &self.cert_dir),
        };
        let files_written = outcome.files_swapped || (self.files.is_none() && plan.files_changed);
        let decided = Decided {
            selection,
            entries: desired.entries.clone(),
            blocked: plan.refusals.clone(),
        };
        let news = News {
            fresh: &desired.entries,
            plan: &plan,
            scope: None,
            files_written,
        };
        let refusals = self
            .finish(ctx, now, built, &decided, news, &mut outcome)
            .await?;
        self.merges = Arc::new(self.merge_reports(&decided.selection, &desired, &plan, &refusals));
        // Kept only where a scoped pass can use it (held between passes).
        self.decided = self.scopes(ctx).then_some(decided);
        tracing::debug!(
            ?selected_at,
            ?planned_at,
            ?written_at,
            total = ?started.elapsed(),
            "reconcile phases"
        );
        Ok(outcome)
    }

    /// The desired state of `selection`'s targets. Objects in a target's way
    /// that cert-sync does not manage are not in the managed store: they are
    /// looked up (and added to `current`), so `diff` refuses to touch them.
    async fn render(
        &self,
        ctx: &Context,
        selection: &selection::Selection,
        current: &mut Published,
    ) -> Result<DesiredState, Error> {
        let desired = desired::render(&ctx.policy, selection, &self.validations, current);
        let mut in_the_way = false;
        let unknown: Vec<String> = desired::unknown_targets(&desired, current)
            .map(str::to_owned)
            .collect();
        for name in unknown {
            let found =
                cluster::read_target(&ctx.client, &ctx.policy.gateway_namespace, &name).await?;
            if let Some(found) = found {
                current.secrets.insert(name, found);
                in_the_way = true;
            }
        }
        Ok(if in_the_way {
            desired::render(&ctx.policy, selection, &self.validations, current)
        } else {
            desired
        })
    }

    /// The part of a pass after its writes, full or scoped: natively
    /// referenced certificates and the mesh CA, then every refusal, the
    /// news, the gauges and the manifest. Returns the refusals.
    async fn finish(
        &mut self,
        ctx: &Context,
        now: i64,
        mut built: manifest::Manifest,
        decided: &Decided,
        news: News<'_>,
        outcome: &mut Outcome,
    ) -> Result<Vec<Refusal>, Error> {
        let found = match self.referenced.as_mut() {
            Some(r) => {
                let copied: BTreeSet<&str> = built
                    .publications
                    .iter()
                    .map(|p| p.sds_resource.as_str())
                    .collect();
                r.pass(ctx, &self.stores, &copied, now).await?
            }
            None => referenced::Found::default(),
        };
        outcome.reads += found.reads;
        let mut rows = found.entries;
        let mesh = match self.mesh_ca.as_mut() {
            Some(m) => m.pass(ctx, &self.stores, now).await?,
            None => mesh_ca::MeshFound::default(),
        };
        outcome.reads += mesh.reads;
        outcome.writes += mesh.writes;
        rows.extend(mesh.entries);
        add_referenced(&mut built, self.built.as_deref(), rows);

        let vault_refusals = self
            .vault
            .as_ref()
            .map(VaultSources::refusals)
            .unwrap_or_default();
        let refusals: Vec<Refusal> = decided
            .selection
            .refusals
            .iter()
            .chain(self.validations.refusals())
            .chain(decided.blocked.iter())
            .chain(found.refusals.iter())
            .chain(mesh.refusals.iter())
            .chain(self.vault_reads.iter())
            .cloned()
            .chain(vault_refusals)
            .collect();
        outcome.refusals = refusals.len();
        self.announce(ctx, &refusals, &decided.entries, &news).await;
        tell::count_published(ctx, &decided.entries, &decided.blocked);
        self.blocked = !decided.blocked.is_empty();

        built.refusals = refusals
            .iter()
            .map(|r| RefusalView {
                subject: match (&r.subject, &self.vault) {
                    (Subject::Source(s), Some(v)) if v.contains(s) => {
                        format!("vaultcertificate {s}")
                    }
                    (subject, _) => announce::subject_key(subject),
                },
                reason: r.reason.to_owned(),
                message: r.message.clone(),
            })
            .collect();
        if self.built.as_deref() != Some(&built) {
            self.built = Some(Arc::new(built));
        }
        Ok(refusals)
    }

    /// Every candidate source: the TLS watch's, Secrets CertMerges list
    /// that the watch does not hold (their type looked up), and the
    /// sweep's annotated non-TLS Secrets.
    async fn sources(
        &mut self,
        ctx: &Context,
        merges: &[crate::core::model::CertMerge],
        outcome: &mut Outcome,
    ) -> Result<Vec<SourceMeta>, Error> {
        let mut sources = self.stores.sources(&merge_namespaces(merges));
        // Listed Secrets outside the TLS watch: look up their type.
        let known: BTreeSet<&ObjectRef> = sources.iter().map(|s| &s.key).collect();
        let unknown: BTreeSet<ObjectRef> = merges
            .iter()
            .flat_map(|m| m.secrets.iter())
            .filter(|s| !s.namespace.is_empty() && !known.contains(*s))
            .cloned()
            .collect();
        drop(known);
        for listed in &unknown {
            outcome.reads += 1;
            if let Some(meta) = cluster::read_source_meta(&ctx.client, listed).await? {
                sources.push(meta);
            }
        }
        // Annotated Secrets of another type (the sweep's last look), unless
        // fresher news of them is already here: recreated as TLS, or listed
        // by a CertMerge and just read.
        let non_tls = self.stores.non_tls.current();
        if !non_tls.is_empty() {
            let fresh: BTreeSet<&ObjectRef> = sources.iter().map(|s| &s.key).collect();
            let stale: Vec<SourceMeta> = non_tls
                .iter()
                .filter(|m| !fresh.contains(&m.key))
                .cloned()
                .collect();
            drop(fresh);
            sources.extend(stale);
        }
        if let Some(vault) = &self.vault {
            let secrets: BTreeSet<ObjectRef> = sources.iter().map(|s| s.key.clone()).collect();
            for meta in vault.metas() {
                if secrets.contains(&meta.key) {
                    // One name, one source: the Secret keeps it.
                    self.vault_reads.push(Refusal::new(
                        Subject::Source(meta.key.clone()),
                        reasons::TARGET_CONFLICT,
                        format!(
                            "a Secret {} is a source too; rename the VaultCertificate",
                            meta.key
                        ),
                    ));
                } else {
                    sources.push(meta);
                }
            }
        }
        Ok(sources)
    }

    /// Every CertMerge's status: members with what is published for them or
    /// why not, and `Ready`.
    fn merge_reports(
        &self,
        selection: &selection::Selection,
        desired: &DesiredState,
        plan: &desired::Plan,
        refusals: &[Refusal],
    ) -> Vec<MergeReport> {
        let Some(store) = &self.stores.certmerges else {
            return Vec::new();
        };
        store
            .state()
            .iter()
            .map(|object| {
                let key = ObjectRef::new(
                    object.metadata.namespace.clone().unwrap_or_default(),
                    object.metadata.name.clone().unwrap_or_default(),
                );
                MergeReport {
                    computed: merge_status::compute(&key, selection, desired, plan, refusals),
                    target: object.spec.name.clone(),
                    key,
                    generation: object.metadata.generation,
                    previous: object.status.clone().unwrap_or_default(),
                }
            })
            .collect()
    }
}

/// The namespaces CertMerges read Secrets from: their own, their
/// selectors' and their lists'.
fn merge_namespaces(merges: &[crate::core::model::CertMerge]) -> BTreeSet<String> {
    merges
        .iter()
        .flat_map(|m| {
            let own = std::iter::once(m.key.namespace.clone());
            let selected = m.selectors.iter().map(|s| s.namespace.clone());
            let listed = m.secrets.iter().map(|s| s.namespace.clone());
            own.chain(selected).chain(listed)
        })
        .collect()
}

/// What a pass's news is about: the entries it decided (all of them in a
/// full pass) and the plan it wrote.
struct News<'a> {
    fresh: &'a [Entry],
    plan: &'a desired::Plan,
    /// A scoped pass: the sources it decided again (only these can be gone).
    scope: Option<&'a BTreeSet<ObjectRef>>,
    files_written: bool,
}

/// Adds the natively referenced rows to `built`, each the allocation the
/// previous manifest had when it did not change, keeping the order by
/// source then SDS name.
fn add_referenced(
    built: &mut manifest::Manifest,
    previous: Option<&manifest::Manifest>,
    entries: Vec<manifest::ManifestEntry>,
) {
    if entries.is_empty() {
        return;
    }
    let earlier: BTreeMap<(&str, &str), &Arc<manifest::ManifestEntry>> = previous
        .iter()
        .flat_map(|m| m.publications.iter())
        .filter(|p| !p.target.is_published())
        .map(|p| ((p.source.as_str(), p.sds_resource.as_str()), p))
        .collect();
    let mut added: Vec<Arc<manifest::ManifestEntry>> = entries
        .into_iter()
        .map(
            |e| match earlier.get(&(e.source.as_str(), e.sds_resource.as_str())) {
                Some(p) if ***p == e => Arc::clone(p),
                _ => Arc::new(e),
            },
        )
        .collect();
    drop(earlier);
    built.publications.append(&mut added);
    built.publications.sort_by(|a, b| {
        (a.source.as_str(), a.sds_resource.as_str())
            .cmp(&(b.source.as_str(), b.sds_resource.as_str()))
    });
}
