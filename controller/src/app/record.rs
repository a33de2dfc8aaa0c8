//! The record stage: what was published and how far it rolled out, written
//! where people and tools look — the manifest ConfigMap and each
//! CertMerge's status. One write per change: nothing is written when the
//! publications and rollout notes are the ones last written (pointer
//! equality: the publish and verify stages replace them only when they
//! change), or when the rendered content is unchanged.

use super::publish::{MergeReport, Publisher};
use super::{Context, Error};
use crate::core::manifest::{self, Manifest};
use crate::core::merge_status;
use crate::core::model::ObjectRef;
use crate::core::rollout::{self, RolloutNotes};
use crate::core::status::Publications;
use crate::crd::{self, CertMergeStatus};
use crate::runtime::kube::cluster;
use crate::runtime::ops::metrics::{ApiOutcome, ApiVerb};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Default)]
pub struct Recorder {
    /// What the manifest was last written from.
    manifest_from: Option<(Publications, Option<RolloutNotes>)>,
    /// SHA-256 of the manifest data last written (not the data: it is
    /// hundreds of kilobytes at a thousand sources).
    last_manifest: Option<[u8; 32]>,
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

    async fn write_manifest(
        &mut self,
        ctx: &Context,
        published: &Publications,
        notes: Option<&RolloutNotes>,
    ) -> Result<(), Error> {
        let rendering = manifest::Rendering::new(published, |entry| {
            if let Some(note) = notes.and_then(|n| n.get(&rollout::PublicationKey::of(entry))) {
                rollout::annotate(entry, note);
            }
        });
        let digest = rendering.sha256()?;
        if self.last_manifest != Some(digest) {
            cluster::apply_config_map(
                &ctx.client,
                &ctx.policy.gateway_namespace,
                manifest::NAME,
                &manifest::labels(),
                &rendering.data(),
            )
            .await?;
            ctx.metrics.api_request(ApiVerb::Apply, ApiOutcome::Ok);
            self.last_manifest = Some(digest);
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

/// The manifest a previous controller wrote, if any.
pub async fn read_manifest(ctx: &Context) -> Option<Manifest> {
    let json = cluster::read_manifest_json(&ctx.client, &ctx.policy.gateway_namespace)
        .await
        .ok()??;
    manifest::parse(&json).ok()
}
