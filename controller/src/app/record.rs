//! The record stage: what was published and how far it rolled out, written
//! where people and tools look — the manifest ConfigMaps and each
//! CertMerge's status. One write per change: nothing is written when the
//! publications and rollout notes are the ones last written (pointer
//! equality: the publish and verify stages replace them only when they
//! change), or when the rendered content is unchanged.
//!
//! The manifest is an index and shards (`core::manifest::shards`): a shard
//! is rendered only when one of its entries or notes is a new allocation,
//! and written only when its text changed, so one rotation costs one shard
//! of at most 32 rows, whatever the number of publications.

use super::publish::{MergeReport, Publisher};
use super::{Context, Error};
use crate::core::manifest::shards::{self, Layout, Prefix};
use crate::core::manifest::{self, Manifest, ManifestEntry};
use crate::core::merge_status;
use crate::core::model::ObjectRef;
use crate::core::rollout::{self, PublicationKey, RolloutNote, RolloutNotes};
use crate::core::status::{Publications, RefusalView};
use crate::crd::{self, CertMergeStatus};
use crate::runtime::kube::cluster;
use crate::runtime::ops::metrics::{ApiOutcome, ApiVerb};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[derive(Default)]
pub struct Recorder {
    /// What the manifest was last written from.
    manifest_from: Option<(Publications, Option<RolloutNotes>)>,
    /// The manifest's ConfigMaps as last written.
    written: Written,
    /// What the CertMerge statuses were last written from.
    merges_from: Option<(Arc<Vec<MergeReport>>, Option<RolloutNotes>)>,
    /// Status last written per CertMerge (the store may lag our own writes).
    merge_statuses: BTreeMap<ObjectRef, CertMergeStatus>,
}

impl Recorder {
    /// Writes what changed since the last call. `notes`: the rollout per
    /// source, when this instance verifies.
    pub async fn write(
        &mut self,
        ctx: &Context,
        publisher: &Publisher,
        notes: Option<&RolloutNotes>,
        now: i64,
    ) -> Result<(), Error> {
        if let Some(published) = publisher.publications() {
            let from = (Arc::clone(published), notes.cloned());
            if !same_inputs(self.manifest_from.as_ref(), &from) {
                self.write_manifest(ctx, published, notes).await?;
                self.manifest_from = Some(from);
            }
        }
        let from = (Arc::clone(publisher.merges()), notes.cloned());
        if !same_inputs(self.merges_from.as_ref(), &from) {
            self.write_merge_statuses(ctx, &from.0, notes, now).await?;
            self.merges_from = Some(from);
        }
        Ok(())
    }

    /// Takes over the manifest a previous controller wrote — its layout and
    /// texts, so nothing unchanged is written again — and returns it (the
    /// verifier's publish times survive a restart through it). Read once:
    /// at start-up, or at the first write if that read failed.
    pub async fn read_back(&mut self, ctx: &Context) -> Option<Manifest> {
        match cluster::read_manifest_parts(&ctx.client, &ctx.policy.gateway_namespace).await {
            Ok(None) => {
                self.written.loaded = true;
                None
            }
            Ok(Some((index, parts))) => {
                self.written.seed(&index, &parts);
                shards::assemble(&index, &parts).ok()
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the manifest back failed; writing it whole");
                None
            }
        }
    }

    async fn write_manifest(
        &mut self,
        ctx: &Context,
        published: &Publications,
        notes: Option<&RolloutNotes>,
    ) -> Result<(), Error> {
        if !self.written.loaded {
            // The layout the last leader wrote, so its shards are updated in
            // place rather than written again under other names.
            self.read_back(ctx).await;
        }
        // What changed since the last write, found by walking both
        // manifests and note maps once: only new keys are hashed, and a
        // shard none of whose rows changed is skipped without a lookup.
        let previous = self.written.hashed.as_ref();
        let hashes =
            shards::publication_hashes(published, previous.map(|(m, h)| (&**m, h.as_slice())));
        let last_notes = self.manifest_from.as_ref().and_then(|(_, n)| n.as_ref());
        let changed = changed_notes(last_notes, notes);
        let split = shards::split_hashed(published, &mut self.written.layout, hashes.clone());
        let note_of = |entry: &ManifestEntry| {
            notes.and_then(|n| n.get(&rollout::PublicationKey::of(entry)).cloned())
        };
        let mut labels = manifest::labels();
        labels.insert(shards::PART_LABEL.to_owned(), shards::PART_SHARD.to_owned());
        for (prefix, part) in &split.shards {
            let last = self.written.shards.get(prefix);
            if last.is_some_and(|(from, _)| from.holds(part, changed.as_ref())) {
                continue;
            }
            let inputs = ShardInputs {
                entries: part
                    .publications
                    .iter()
                    .map(|e| (Arc::clone(e), note_of(e)))
                    .collect(),
                refusals: part.refusals.iter().map(|r| (*r).clone()).collect(),
                unknown: false,
            };
            if last.is_some_and(|(from, _)| from.same(&inputs)) {
                continue;
            }
            let digest = {
                let annotate = |entry: &mut ManifestEntry| {
                    let note = inputs.entries.iter().find(|(e, _)| {
                        e.source == entry.source && e.sds_resource == entry.sds_resource
                    });
                    if let Some((_, Some(note))) = note {
                        rollout::annotate(entry, note);
                    }
                };
                let rendering = manifest::Rendering::of(part.doc(*prefix, &annotate));
                let digest = rendering.sha256()?;
                if last.is_none_or(|(_, d)| *d != digest) {
                    apply_part(ctx, &prefix.name(), &labels, &rendering).await?;
                }
                digest
            };
            self.written.shards.insert(*prefix, (inputs, digest));
        }
        self.written.hashed = Some((Arc::clone(published), hashes));
        // After the shards it names: a reader never finds the index ahead.
        let index = manifest::Rendering::of(&split.index);
        let digest = index.sha256()?;
        if self.written.index != Some(digest) {
            let mut labels = manifest::labels();
            labels.insert(shards::PART_LABEL.to_owned(), shards::PART_INDEX.to_owned());
            apply_part(ctx, manifest::NAME, &labels, &index).await?;
            self.written.index = Some(digest);
        }
        // Shards that split: emptied, so no stale rows linger under a name
        // the index no longer lists.
        let retired: Vec<Prefix> = self
            .written
            .shards
            .keys()
            .filter(|p| !split.shards.contains_key(p))
            .copied()
            .collect();
        for prefix in retired {
            let empty = shards::Part::default();
            let none = |_: &mut ManifestEntry| {};
            let rendering = manifest::Rendering::of(empty.doc(prefix, &none));
            apply_part(ctx, &prefix.name(), &labels, &rendering).await?;
            self.written.shards.remove(&prefix);
        }
        Ok(())
    }

    /// `.status` of every CertMerge with the `RolledOut` condition; only
    /// the ones that changed.
    async fn write_merge_statuses(
        &mut self,
        ctx: &Context,
        merges: &[MergeReport],
        notes: Option<&RolloutNotes>,
        now: i64,
    ) -> Result<(), Error> {
        let none = BTreeMap::new();
        let notes = notes.map_or(&none, |n| &**n);
        for merge in merges {
            let rolled_out = merge_status::rolled_out(&merge.computed, &merge.target, notes);
            let status = crd::status_from(
                &merge.computed,
                &rolled_out,
                merge.generation,
                &merge.previous,
                now,
            );
            if crd::same_status(&status, &merge.previous)
                || self.merge_statuses.get(&merge.key) == Some(&status)
            {
                continue;
            }
            cluster::apply_certmerge_status(&ctx.client, &merge.key, &status).await?;
            ctx.metrics.api_request(ApiVerb::Apply, ApiOutcome::Ok);
            self.merge_statuses.insert(merge.key.clone(), status);
        }
        Ok(())
    }
}

/// Both inputs are the very ones last written from.
fn same_inputs<T>(
    last: Option<&(Arc<T>, Option<RolloutNotes>)>,
    now: &(Arc<T>, Option<RolloutNotes>),
) -> bool {
    last.is_some_and(|(data, notes)| {
        Arc::ptr_eq(data, &now.0)
            && match (notes, &now.1) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    })
}

/// Beyond this many changed notes, looking each shard's rows up is cheaper
/// than matching them against the changed keys.
const FEW_NOTES: usize = 64;

/// The keys whose note is a new allocation (or gone) between `old` and
/// `new`: one walk of both maps in key order. `None` when that cannot be
/// told cheaply (no earlier notes, or many changed).
fn changed_notes(
    old: Option<&RolloutNotes>,
    new: Option<&RolloutNotes>,
) -> Option<BTreeSet<PublicationKey>> {
    let (old, new) = match (old, new) {
        (None, None) => return Some(BTreeSet::new()),
        (Some(old), Some(new)) => (old, new),
        _ => return None,
    };
    if Arc::ptr_eq(old, new) {
        return Some(BTreeSet::new());
    }
    let mut changed = BTreeSet::new();
    let (mut a, mut b) = (old.iter().peekable(), new.iter().peekable());
    loop {
        let key = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some((ka, na)), Some((kb, nb))) => match ka.cmp(kb) {
                std::cmp::Ordering::Equal => {
                    let same = Arc::ptr_eq(na, nb);
                    let key = (!same).then(|| (*ka).clone());
                    a.next();
                    b.next();
                    key
                }
                std::cmp::Ordering::Less => a.next().map(|(k, _)| k.clone()),
                std::cmp::Ordering::Greater => b.next().map(|(k, _)| k.clone()),
            },
            (Some(_), None) => a.next().map(|(k, _)| k.clone()),
            (None, Some(_)) => b.next().map(|(k, _)| k.clone()),
        };
        if let Some(key) = key {
            changed.insert(key);
            if changed.len() > FEW_NOTES {
                return None;
            }
        }
    }
    Some(changed)
}

/// Server-side applies one manifest ConfigMap (index or shard).
async fn apply_part<T: serde::Serialize>(
    ctx: &Context,
    name: &str,
    labels: &BTreeMap<String, String>,
    rendering: &manifest::Rendering<T>,
) -> Result<(), Error> {
    cluster::apply_config_map(
        &ctx.client,
        &ctx.policy.gateway_namespace,
        name,
        labels,
        &rendering.data(),
    )
    .await?;
    ctx.metrics.api_request(ApiVerb::Apply, ApiOutcome::Ok);
    Ok(())
}

/// The manifest ConfigMaps as last written (or found at start-up).
#[derive(Default)]
struct Written {
    /// The layout was read back from the cluster (or there was none).
    loaded: bool,
    layout: Layout,
    /// Per shard: what it was rendered from and the digest of its text.
    shards: BTreeMap<Prefix, (ShardInputs, [u8; 32])>,
    /// Digest of the index's text.
    index: Option<[u8; 32]>,
    /// The publications last split, with their hashes.
    hashed: Option<(Publications, Vec<u32>)>,
}

impl Written {
    /// Takes over the layout and texts a previous leader wrote: a shard
    /// whose text is the one this instance would write is not written again.
    fn seed(&mut self, index: &str, parts: &BTreeMap<String, String>) {
        use sha2::{Digest as _, Sha256};
        self.loaded = true;
        let Ok(parsed) = serde_json::from_str::<shards::Index>(index) else {
            return;
        };
        let Some(layout) = Layout::from_labels(parsed.shards.iter().map(String::as_str)) else {
            return;
        };
        for prefix in layout.leaves() {
            if let Some(text) = parts.get(&prefix.label()) {
                self.shards.insert(
                    prefix,
                    (
                        ShardInputs::unknown(),
                        Sha256::digest(text.as_bytes()).into(),
                    ),
                );
            }
        }
        self.layout = layout;
        self.index = Some(Sha256::digest(index.as_bytes()).into());
    }
}

/// What a shard was rendered from: its entries (the very allocations) with
/// their rollout notes, and its refusals.
struct ShardInputs {
    entries: Vec<(Arc<ManifestEntry>, Option<Arc<RolloutNote>>)>,
    refusals: Vec<RefusalView>,
    /// Read back from the cluster: compare by rendering.
    unknown: bool,
}

impl ShardInputs {
    fn unknown() -> Self {
        ShardInputs {
            entries: Vec::new(),
            refusals: Vec::new(),
            unknown: true,
        }
    }

    /// Whether `part` has exactly these entries and refusals and none of
    /// its notes changed (`changed`: the keys whose note is new; `None`:
    /// unknown), so the shard needs no look at all.
    fn holds(&self, part: &shards::Part<'_>, changed: Option<&BTreeSet<PublicationKey>>) -> bool {
        let Some(changed) = changed else {
            return false;
        };
        !self.unknown
            && self.entries.len() == part.publications.len()
            && self
                .entries
                .iter()
                .zip(&part.publications)
                .all(|((a, _), b)| Arc::ptr_eq(a, b) && !changed.iter().any(|k| k.is(b)))
            && self.refusals.iter().eq(part.refusals.iter().copied())
    }

    fn same(&self, other: &ShardInputs) -> bool {
        !self.unknown
            && !other.unknown
            && self.refusals == other.refusals
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((a, an), (b, bn))| {
                    Arc::ptr_eq(a, b)
                        && match (an, bn) {
                            (Some(x), Some(y)) => Arc::ptr_eq(x, y),
                            (None, None) => true,
                            _ => false,
                        }
                })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rollout::{NoteMap, RolloutState};
    use certsync_contract::Fingerprint;

    fn mk_note(sha: u8) -> Arc<RolloutNote> {
        Arc::new(RolloutNote {
            sha256: Fingerprint([sha; 32]),
            state: RolloutState::NoPods,
            published_at: None,
            converged_at: None,
            pods: BTreeMap::new(),
        })
    }

    fn key(source: &str) -> PublicationKey {
        PublicationKey {
            source: source.to_owned(),
            target: source.replace('/', "."),
        }
    }

    #[test]
    fn changed_notes_are_the_new_the_replaced_and_the_gone() {
        let kept = mk_note(1);
        let old: NoteMap = [
            (key("a/kept"), Arc::clone(&kept)),
            (key("a/replaced"), mk_note(2)),
            (key("a/gone"), mk_note(3)),
        ]
        .into();
        let new: NoteMap = [
            (key("a/kept"), kept),
            (key("a/replaced"), mk_note(2)),
            (key("b/new"), mk_note(4)),
        ]
        .into();
        let (old, new) = (Arc::new(old), Arc::new(new));
        assert_eq!(
            changed_notes(Some(&old), Some(&new)),
            Some(BTreeSet::from([
                key("a/gone"),
                key("a/replaced"),
                key("b/new")
            ]))
        );
        assert_eq!(changed_notes(Some(&old), Some(&old)), Some(BTreeSet::new()));
        assert_eq!(changed_notes(None, Some(&new)), None);
        let many: NoteMap = (0..=FEW_NOTES)
            .map(|i| (key(&format!("c/{i}")), mk_note(5)))
            .collect();
        assert_eq!(changed_notes(Some(&old), Some(&Arc::new(many))), None);
    }
}
