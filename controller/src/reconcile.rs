//! One reconcile: read the stores, let `core` decide, write the difference.
//! Kept thin on purpose; the decisions and their tests live in `core`.
//!
//! ```text
//!  stores ─▶ select ─▶ read data (GET only where resourceVersion moved) ─▶ validate
//!     ─▶ keep digests (Secret modes) ─▶ render desired (keeping the last good publication)
//!     ─▶ diff ─▶ hydrate (GET source / target, match by digest) ─▶ SSA / delete / file swap
//!     ─▶ manifest ConfigMap ─▶ Events on transitions
//! ```
//!
//! Between reconciles the controller holds metadata and digests, not PEM:
//! its memory does not grow with certificate sizes (see `core::model::Blob`).

use crate::core::desired::{self, Action, DesiredState};
use crate::core::flat_map::FlatMap;
use crate::core::model::{keys, Blob, ObjectRef, Policy, Published, SourceMeta};
use crate::core::reasons::{Refusal, Subject};
use crate::core::rollout::{self, RolloutNotes};
use crate::core::status::{Publications, RefusalView};
use crate::core::validation::Validations;
use crate::core::{manifest, merge_status, selection, validation};
use crate::crd;
use crate::runtime::gateway::files::{DirectoryPublisher, FilesError};
use crate::runtime::kube::cluster::{self, Stores};
use crate::runtime::kube::events::{self, Events};
use crate::runtime::ops::heap;
use crate::runtime::ops::metrics::{ApiOutcome, ApiVerb, Metrics, PublishedKind};
use certsync_contract::Fingerprint;
use kube::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificate directory: {0}")]
    Files(#[from] FilesError),
    #[error("manifest: {0}")]
    Manifest(#[from] crate::core::error::CoreError),
    #[error("data of {0:?} changed since it was checked; reading the sources again")]
    DataChanged(Vec<String>),
}

/// Reads or writes in one reconcile from which freed pages are handed back
/// mid-pass (see `runtime::ops::heap`); a single update is far below it.
const BULK: usize = 100;

/// Where [`Reconciler::hydrate`] looks for a value's bytes.
#[derive(Clone, Copy)]
enum Origin {
    /// The Secret as published (a kept last good, a merged Secret's members).
    Published,
    /// The sources the Secret publishes (a newly validated certificate).
    Sources,
}

/// What one reconcile did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub writes: usize,
    pub deletes: usize,
    pub files_swapped: bool,
    pub refusals: usize,
    pub reads: usize,
}

pub struct Reconciler {
    client: Client,
    policy: Policy,
    stores: Stores,
    events: Events,
    metrics: Metrics,
    files: Option<DirectoryPublisher>,
    cert_dir: String,
    /// Validation results of selected sources, kept across reconciles.
    validations: Validations,
    /// resourceVersion and hour at which each selected source was validated:
    /// a source is read and checked again only when its resourceVersion
    /// moves, and re-checked (validity window) once an hour.
    checked: BTreeMap<ObjectRef, (String, i64)>,
    /// Refusals already announced (Events only on transitions).
    announced: BTreeSet<(String, &'static str, String)>,
    /// Fingerprint last published per source (a Normal Event when it moves).
    published: BTreeMap<ObjectRef, Fingerprint>,
    /// SHA-256 of the manifest data last written (not the data: it is
    /// hundreds of kilobytes at a thousand sources).
    last_manifest: Option<[u8; 32]>,
    /// Status last written per CertMerge (the store may lag our own writes).
    merge_statuses: BTreeMap<ObjectRef, crd::CertMergeStatus>,
    /// Rollout per source, from verification: goes into the manifest and
    /// the CertMerge `RolledOut` condition.
    notes: RolloutNotes,
    /// What the last reconcile published (manifest without rollout) and
    /// refused: verification's input, shared with it rather than copied.
    built: Option<Publications>,
    /// Directory mode without a publisher (the central instance): the tree
    /// the per-pod writers publish, as last decided here. It stands in for
    /// the files on disk, so a refused source keeps its last good entry.
    decided_files: BTreeMap<String, Vec<u8>>,
    /// The caller writes the manifest (after rollout verification has
    /// looked at the new publications), so an update is one write, not two.
    manifest_deferred: bool,
}

impl Reconciler {
    pub fn new(
        client: Client,
        policy: Policy,
        stores: Stores,
        events: Events,
        metrics: Metrics,
        files: Option<(DirectoryPublisher, PathBuf)>,
    ) -> Self {
        let (files, cert_dir) = match files {
            Some((publisher, dir)) => (Some(publisher), dir.display().to_string()),
            None => (None, String::new()),
        };
        Reconciler {
            client,
            policy,
            stores,
            events,
            metrics,
            files,
            cert_dir,
            validations: Validations::default(),
            checked: BTreeMap::new(),
            announced: BTreeSet::new(),
            published: BTreeMap::new(),
            last_manifest: None,
            merge_statuses: BTreeMap::new(),
            notes: RolloutNotes::default(),
            built: None,
            decided_files: BTreeMap::new(),
            manifest_deferred: false,
        }
    }

    /// `reconcile` leaves the manifest to [`Reconciler::write_manifest`].
    pub fn defer_manifest(&mut self) {
        self.manifest_deferred = true;
    }

    /// Whether any CertMerge exists (its status carries the rollout too).
    pub fn has_cert_merges(&self) -> bool {
        self.stores
            .certmerges
            .as_ref()
            .is_some_and(|s| !s.state().is_empty())
    }

    /// Writes the manifest ConfigMap for the last reconcile's publications
    /// with the current rollout notes; nothing when it is unchanged, and
    /// nothing from a directory-mode writer (the central instance owns it).
    pub async fn write_manifest(&mut self) -> Result<(), ReconcileError> {
        let writer =
            self.files.is_some() && matches!(self.policy.mode, crate::core::model::Mode::Directory);
        let Some(built) = &self.built else {
            return Ok(());
        };
        if writer {
            return Ok(());
        }
        let notes = &self.notes;
        let rendering = manifest::Rendering::new(&built.0, |entry| {
            if let Some(note) = notes.get(&entry.source) {
                rollout::annotate(entry, note);
            }
        });
        let digest = rendering.sha256()?;
        if self.last_manifest != Some(digest) {
            cluster::apply_config_map(
                &self.client,
                &self.policy.gateway_namespace,
                manifest::NAME,
                &manifest::labels(),
                &rendering.data(),
            )
            .await?;
            self.metrics.api_request(ApiVerb::Apply, ApiOutcome::Ok);
            self.last_manifest = Some(digest);
        }
        Ok(())
    }

    /// The certificate directory as the gateway sees it, for the manifest's
    /// paths and SDS names; needed when this instance writes no files itself
    /// (with a publisher, its directory is used).
    pub fn set_cert_dir(&mut self, dir: &std::path::Path) {
        if self.files.is_none() {
            self.cert_dir = dir.display().to_string();
        }
    }

    /// Rollout states to write with the next manifest and CertMerge status.
    pub fn set_rollout_notes(&mut self, notes: RolloutNotes) {
        self.notes = notes;
    }

    /// What the last reconcile published and refused.
    pub fn published(&self) -> Option<&Publications> {
        self.built.as_ref()
    }

    pub async fn reconcile(&mut self, now: i64) -> Result<Outcome, ReconcileError> {
        let started = std::time::Instant::now();
        let mut outcome = Outcome::default();
        let gateway = self.policy.gateway_namespace.clone();
        let merges = self.stores.cert_merges(&gateway);
        let merge_namespaces: BTreeSet<String> = merges
            .iter()
            .flat_map(|m| {
                let own = std::iter::once(m.key.namespace.clone());
                let selected = m.selectors.iter().map(|s| s.namespace.clone());
                let listed = m.secrets.iter().map(|s| s.namespace.clone());
                own.chain(selected).chain(listed)
            })
            .collect();
        let mut sources = self.stores.sources(&merge_namespaces);
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
            if let Some(meta) = cluster::read_source_meta(&self.client, listed).await? {
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
        let selection = selection::select(
            &self.policy,
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
        self.refresh_validations(&wanted, &versions, now, &mut outcome)
            .await?;
        // Not needed past this point; the rest of the pass is its peak.
        drop((versions, wanted));
        drop((sources, merges));
        if outcome.reads >= BULK {
            // An initial sync's reads leave their buffers in the heap's holes.
            heap::release_free_pages();
        }
        let validations = &self.validations;

        let mut current = Published {
            secrets: self.stores.managed_secrets(),
            files: BTreeMap::new(),
        };
        let central = matches!(self.policy.mode, crate::core::model::Mode::Directory);
        if let Some(files) = &self.files {
            current.files = files
                .current()?
                .into_iter()
                .map(|(path, bytes)| (path.display().to_string(), bytes))
                .collect();
        } else if central {
            current.files = std::mem::take(&mut self.decided_files);
        }
        let mut desired = desired::render(&self.policy, &selection, validations, &current);
        // Objects in a target's way that cert-sync does not manage are not in
        // the managed store: look them up, so `diff` refuses to touch them.
        let mut in_the_way = false;
        for secret in &desired.secrets {
            if !current.secrets.contains_key(&secret.name) {
                if let Some(found) =
                    cluster::read_target(&self.client, &gateway, &secret.name).await?
                {
                    current.secrets.insert(secret.name.clone(), found);
                    in_the_way = true;
                }
            }
        }
        if in_the_way {
            desired = desired::render(&self.policy, &selection, &self.validations, &current);
        }
        let plan = desired::diff(&current, &desired);
        let planned_at = started.elapsed();
        if self.files.is_none() && central {
            self.decided_files = desired.files.clone();
        }

        self.write(&desired, &plan, &current, &mut outcome).await?;
        if outcome.writes >= BULK {
            heap::release_free_pages();
        }
        let written_at = started.elapsed();

        let refusals: Vec<Refusal> = selection
            .refusals
            .iter()
            .chain(self.validations.refusals())
            .chain(plan.refusals.iter())
            .cloned()
            .collect();
        outcome.refusals = refusals.len();
        self.announce(&refusals.iter().collect::<Vec<_>>(), &desired)
            .await;
        self.write_merge_statuses(&selection, &desired, &plan, &refusals, now)
            .await?;
        self.count_published(&desired);

        let refusal_views: Vec<RefusalView> = refusals
            .iter()
            .map(|r| RefusalView {
                subject: subject_key(&r.subject),
                reason: r.reason.to_owned(),
                message: r.message.clone(),
            })
            .collect();
        // Most passes change nothing published: keep the manifest (and what
        // verification holds of it). A changed one shares its unchanged
        // entries with the last.
        let built = match &self.built {
            Some(b) => manifest::rebuild(&b.0, &self.policy, &desired, &plan, &self.cert_dir),
            None => manifest::build(&self.policy, &desired, &plan, &self.cert_dir),
        };
        let same = self
            .built
            .as_ref()
            .is_some_and(|b| b.0 == built && b.1 == refusal_views);
        if !same {
            self.built = Some(Arc::new((built, refusal_views)));
        }
        if !self.manifest_deferred {
            self.write_manifest().await?;
        }
        tracing::debug!(
            ?selected_at,
            ?planned_at,
            ?written_at,
            total = ?started.elapsed(),
            "reconcile phases"
        );
        Ok(outcome)
    }

    /// `.status` of every CertMerge: members with what is published for them
    /// or why not, and the `Ready` / `RolledOut` conditions. Written only
    /// when it changes.
    async fn write_merge_statuses(
        &mut self,
        selection: &selection::Selection,
        desired: &DesiredState,
        plan: &desired::Plan,
        refusals: &[Refusal],
        now: i64,
    ) -> Result<(), ReconcileError> {
        let Some(store) = &self.stores.certmerges else {
            return Ok(());
        };
        for object in store.state() {
            let key = ObjectRef::new(
                object.metadata.namespace.clone().unwrap_or_default(),
                object.metadata.name.clone().unwrap_or_default(),
            );
            let computed = merge_status::compute(&key, selection, desired, plan, refusals);
            let rolled_out = merge_status::rolled_out(&computed, &self.notes);
            let previous = object.status.clone().unwrap_or_default();
            let status = crd::status_from(
                &computed,
                &rolled_out,
                object.metadata.generation,
                &previous,
                now,
            );
            if crd::same_status(&status, &previous)
                || self.merge_statuses.get(&key) == Some(&status)
            {
                continue;
            }
            cluster::apply_certmerge_status(&self.client, &key, &status).await?;
            self.metrics.api_request(ApiVerb::Apply, ApiOutcome::Ok);
            self.merge_statuses.insert(key, status);
        }
        Ok(())
    }

    /// Brings `self.validations` up to date for `wanted`, reading a source's
    /// data only when its resourceVersion moved (or, once an hour, when it
    /// is refused: time may have made it valid). With 1,000 sources a change
    /// to one costs one read and one validation, not a thousand.
    async fn refresh_validations(
        &mut self,
        wanted: &BTreeSet<ObjectRef>,
        versions: &BTreeMap<&ObjectRef, &str>,
        now: i64,
        outcome: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        let hour = now.div_euclid(3600);
        // Directory mode renders files from the validated bytes.
        let keep_bytes = matches!(self.policy.mode, crate::core::model::Mode::Directory);
        self.checked.retain(|k, _| wanted.contains(k));
        self.validations.ok.retain(|k, _| wanted.contains(k));
        self.validations.refused.retain(|k, _| wanted.contains(k));
        for source in wanted {
            let seen = self.checked.get(source);
            let same_version =
                seen.is_some_and(|(rv, _)| Some(&rv.as_str()) == versions.get(source));
            if same_version && seen.is_some_and(|(_, h)| *h == hour) {
                continue;
            }
            // Same version, new hour: only the validity window can have
            // changed, and the summary holds it (no read). A refused source
            // is read again: it may have become valid.
            if same_version {
                if let Some(valid) = self.validations.ok.get(source) {
                    if let Err(refusal) = validation::recheck(valid, now) {
                        self.validations.ok.remove(source);
                        self.validations.refused.insert(source.clone(), refusal);
                    }
                    if let Some((_, h)) = self.checked.get_mut(source) {
                        *h = hour;
                    }
                    continue;
                }
            }
            outcome.reads += 1;
            let read = cluster::read_source(&self.client, source).await?;
            let result = match &read {
                Some((_, data)) => validation::check(source, data, now),
                None => Err(Refusal::new(
                    Subject::Source(source.clone()),
                    crate::core::reasons::NOT_FOUND,
                    "Secret data could not be read (deleted?)",
                )),
            };
            self.validations.ok.remove(source);
            self.validations.refused.remove(source);
            match result {
                Ok(mut valid) => {
                    if !keep_bytes {
                        // Written from a fresh read when needed (`hydrate`):
                        // a thousand sources are not held as PEM in between.
                        valid.cert_pem = valid.cert_pem.digest_only();
                        valid.key_pem = valid.key_pem.digest_only();
                        valid.ca_pem = valid.ca_pem.as_ref().map(Blob::digest_only);
                    }
                    self.validations.ok.insert(source.clone(), valid);
                }
                Err(refusal) => {
                    self.validations.refused.insert(source.clone(), refusal);
                }
            }
            match read {
                Some((rv, _)) => {
                    self.checked.insert(source.clone(), (rv, hour));
                }
                None => {
                    self.checked.remove(source);
                }
            }
        }
        Ok(())
    }

    async fn write(
        &mut self,
        desired: &DesiredState,
        plan: &desired::Plan,
        current: &Published,
        outcome: &mut Outcome,
    ) -> Result<(), ReconcileError> {
        let gateway = self.policy.gateway_namespace.clone();
        let by_name: BTreeMap<&str, &desired::DesiredSecret> = desired
            .secrets
            .iter()
            .map(|s| (s.name.as_str(), s))
            .collect();
        let mut first_error = None;
        let mut unavailable = Vec::new();
        for change in plan.writes() {
            // Every value's bytes first: nothing is deleted or written half-known.
            let ready = match (change.action, by_name.get(change.name.as_str())) {
                (Action::Create | Action::Update | Action::Replace, Some(secret)) => {
                    match self.hydrate(secret).await {
                        Ok(Some(ready)) => Some(ready),
                        Ok(None) => {
                            unavailable.push(change.name.clone());
                            continue;
                        }
                        Err(e) => {
                            tracing::warn!(secret = %change.name, error = %e, "reading data to write failed; retrying on the next reconcile");
                            first_error.get_or_insert(e);
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let (verb, result) = match (change.action, &ready) {
                (Action::Create | Action::Update, Some(secret)) => (
                    ApiVerb::Apply,
                    cluster::apply_secret(&self.client, secret).await,
                ),
                (Action::Replace, Some(secret)) => {
                    let rv = self.stores.managed.resource_version(&change.name);
                    match cluster::delete_secret(&self.client, &gateway, &change.name, rv).await {
                        Ok(()) => (
                            ApiVerb::Apply,
                            cluster::apply_secret(&self.client, secret).await,
                        ),
                        other => (ApiVerb::Delete, other),
                    }
                }
                (Action::Delete, _) => {
                    outcome.deletes += 1;
                    let rv = self.stores.managed.resource_version(&change.name);
                    (
                        ApiVerb::Delete,
                        cluster::delete_secret(&self.client, &gateway, &change.name, rv).await,
                    )
                }
                _ => continue,
            };
            self.metrics.api_request(verb, ApiOutcome::of(&result));
            match result {
                Ok(()) => outcome.writes += 1,
                Err(e) => {
                    tracing::warn!(secret = %change.name, error = %e, "write failed; retrying on the next reconcile");
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(files) = &self.files {
            if plan.files_changed || desired.files.len() != current.files.len() {
                let tree = desired
                    .files
                    .iter()
                    .map(|(path, bytes)| (PathBuf::from(path), bytes.clone()))
                    .collect();
                outcome.files_swapped = matches!(
                    files.publish(&tree)?,
                    crate::runtime::gateway::files::PublishOutcome::Published { .. }
                );
            }
        }
        match (first_error, unavailable.is_empty()) {
            (Some(e), _) => Err(e.into()),
            (None, false) => Err(ReconcileError::DataChanged(unavailable)),
            (None, true) => Ok(()),
        }
    }

    /// `secret` with the bytes of every data value, for writing. Values
    /// known only by digest are read again, from the sources the Secret
    /// publishes and from the Secret as published (a kept last good), and
    /// taken only where the digest matches: exactly the bytes validated are
    /// written, or nothing. `None` when a value is nowhere (its source
    /// changed since it was checked): the sources are read and checked
    /// again on the next reconcile.
    async fn hydrate(
        &mut self,
        secret: &desired::DesiredSecret,
    ) -> Result<Option<desired::DesiredSecret>, kube::Error> {
        let complete = |data: &FlatMap<Blob>| data.values().all(|v| v.bytes().is_some());
        if complete(&secret.data) {
            return Ok(Some(secret.clone()));
        }
        let sources = secret
            .annotations
            .get(keys::SOURCE)
            .map(|list| desired::parse_sources(list))
            .unwrap_or_default();
        let mut data = (*secret.data).clone();
        // A merged Secret's values are mostly published already: read it
        // first, and the members' sources only if still needed.
        let order = if sources.len() > 1 {
            [Origin::Published, Origin::Sources]
        } else {
            [Origin::Sources, Origin::Published]
        };
        for origin in order {
            if complete(&data) {
                break;
            }
            let mut found = Vec::new();
            match origin {
                Origin::Published => {
                    let read =
                        cluster::read_secret_values(&self.client, &secret.namespace, &secret.name)
                            .await;
                    self.metrics
                        .api_request(ApiVerb::Get, ApiOutcome::of(&read));
                    found = read?;
                }
                Origin::Sources => {
                    for source in &sources {
                        let read = cluster::read_source(&self.client, source).await;
                        self.metrics
                            .api_request(ApiVerb::Get, ApiOutcome::of(&read));
                        if let Some((_, d)) = read? {
                            found.extend([d.cert_pem, d.key_pem, d.ca_pem].into_iter().flatten());
                        }
                    }
                }
            }
            desired::fill_by_digest(&mut data, &found);
        }
        if !complete(&data) {
            for source in &sources {
                self.checked.remove(source);
            }
            return Ok(None);
        }
        Ok(Some(desired::DesiredSecret {
            data: Arc::new(data),
            ..secret.clone()
        }))
    }

    /// Events and logs for refusals that are new, and for sources whose
    /// published certificate changed. Nothing is repeated while nothing changes.
    async fn announce(&mut self, refusals: &[&Refusal], desired: &DesiredState) {
        let mut now_refused = BTreeSet::new();
        for refusal in refusals {
            let key = (
                subject_key(&refusal.subject),
                refusal.reason,
                refusal.message.clone(),
            );
            now_refused.insert(key.clone());
            if self.announced.contains(&key) {
                continue;
            }
            self.metrics.refused(refusal.reason);
            tracing::warn!(subject = %key.0, reason = refusal.reason, "{}", refusal.message);
            // A CertMerge's member problems are told on the CertMerge: a tenant's
            // CertMerge must not put Events on another tenant's Secrets.
            let about = match &refusal.subject {
                Subject::Source(s) => Some(events::secret_reference(s)),
                Subject::CertMerge(m) | Subject::Member { merge: m, .. } => {
                    Some(events::certmerge_reference(m))
                }
                Subject::Target(_) => None,
            };
            if let Some(about) = about {
                if let Err(e) = self
                    .events
                    .emit(about, true, refusal.reason, &refusal.message)
                    .await
                {
                    tracing::warn!(error = %e, "could not record an Event");
                }
            }
        }
        self.announced = now_refused;

        // Updated in place: a pass over a thousand unchanged sources
        // allocates nothing here.
        let mut seen = BTreeSet::new();
        for entry in &desired.entries {
            let sha = entry.summary.sha256;
            seen.insert(&entry.source);
            self.metrics
                .set_not_after(&entry.source, entry.summary.not_after);
            if self.published.get(&entry.source) == Some(&sha) {
                continue;
            }
            if entry.kept.is_none() {
                let message = format!(
                    "published sha256 {} (serial {}, notAfter {})",
                    &sha.to_string()[..12],
                    entry.summary.serial,
                    manifest::rfc3339(entry.summary.not_after)
                );
                tracing::info!(source = %entry.source, "{message}");
                if let Err(e) = self
                    .events
                    .emit(
                        events::secret_reference(&entry.source),
                        false,
                        "Published",
                        &message,
                    )
                    .await
                {
                    tracing::warn!(error = %e, "could not record an Event");
                }
            }
            self.published.insert(entry.source.clone(), sha);
        }
        let metrics = &self.metrics;
        self.published.retain(|source, _| {
            let keep = seen.contains(source);
            if !keep {
                metrics.forget_source(source);
            }
            keep
        });
    }
}

impl Reconciler {
    fn count_published(&self, desired: &DesiredState) {
        use crate::core::selection::Target;
        let count =
            |pred: fn(&Target) -> bool| desired.entries.iter().filter(|e| pred(&e.target)).count();
        self.metrics.set_published(
            PublishedKind::Secret,
            count(|t| matches!(t, Target::Credential(_))),
        );
        self.metrics.set_published(
            PublishedKind::MergedEntry,
            count(|t| matches!(t, Target::Merged(_))),
        );
        self.metrics.set_published(
            PublishedKind::FilePair,
            count(|t| matches!(t, Target::Directory)),
        );
    }
}

fn subject_key(subject: &Subject) -> String {
    match subject {
        Subject::Source(s) => format!("secret {s}"),
        Subject::CertMerge(m) => format!("certmerge {m}"),
        Subject::Member { merge, source } => format!("certmerge {merge} member {source}"),
        Subject::Target(t) => format!("target {t}"),
    }
}
