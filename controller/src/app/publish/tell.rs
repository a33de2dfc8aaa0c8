//! Telling people: Events, log lines and metrics for what
//! `core::announce` calls news, and the published-count gauges.

use super::{MeshCa, News, Publisher};
use crate::app::Context;
use crate::core::announce;
use crate::core::desired::{self, Entry};
use crate::core::manifest;
use crate::core::model::ObjectRef;
use crate::core::reasons::{self, Refusal, Subject};
use crate::core::selection::Target;
use crate::runtime::kube::events;
use crate::runtime::ops::metrics::PublishedKind;

impl Publisher {
    /// The object a source's Events go to: its Secret, or its
    /// VaultCertificate.
    pub(super) fn source_reference(
        &self,
        source: &ObjectRef,
    ) -> k8s_openapi::api::core::v1::ObjectReference {
        match &self.vault {
            Some(v) if v.contains(source) => events::vault_certificate_reference(source),
            _ => events::secret_reference(source),
        }
    }

    /// Events and logs for what `core::announce` calls news.
    /// `entries`: every entry decided so far (the blocked-target Events go
    /// to their sources); `news`: what this pass decided.
    pub(super) async fn announce(
        &mut self,
        ctx: &Context,
        refusals: &[Refusal],
        entries: &[Entry],
        news: &News<'_>,
    ) {
        let all: Vec<&Refusal> = refusals.iter().collect();
        for refusal in self.announcer.refusals(&all) {
            ctx.metrics.refused(refusal.reason);
            let subject = announce::subject_key(&refusal.subject);
            tracing::warn!(%subject, reason = refusal.reason, "{}", refusal.message);
            // A CertMerge's member problems are told on the CertMerge: a tenant's
            // CertMerge must not put Events on another tenant's Secrets.
            let about: Vec<_> = match &refusal.subject {
                Subject::Source(s) => vec![self.source_reference(s)],
                Subject::CertMerge(m) | Subject::Member { merge: m, .. } => {
                    vec![events::certmerge_reference(m)]
                }
                // A blocked credential Secret is told to its source's owner
                // (a merged target's members hear it through their CertMerge).
                Subject::Target(t) => entries
                    .iter()
                    .filter(|e| matches!(&e.target, Target::Credential(name) if *name == t.name))
                    .map(|e| self.source_reference(&e.source))
                    .collect(),
                Subject::Gateway(g) => vec![events::gateway_reference(g)],
                Subject::MeshCa(_) => self.mesh_ca.iter().map(MeshCa::event_reference).collect(),
            };
            for about in about {
                ctx.emit(about, true, refusal.reason, &refusal.message)
                    .await;
            }
        }
        for entry in news.fresh {
            ctx.metrics
                .set_not_after(&entry.source, entry.summary.not_after);
        }
        let told =
            self.announcer
                .publications_of(news.fresh, news.plan, news.files_written, news.scope);
        for entry in told.published {
            let message = format!(
                "published sha256 {} (serial {}, notAfter {})",
                entry.summary.sha256.short(),
                entry.summary.serial,
                manifest::rfc3339(entry.summary.not_after)
            );
            tracing::info!(source = %entry.source, "{message}");
            ctx.emit(
                self.source_reference(&entry.source),
                false,
                reasons::PUBLISHED,
                &message,
            )
            .await;
        }
        for source in &told.gone {
            ctx.metrics.forget_source(source);
        }
    }
}

/// Publications that are in place: a blocked target publishes nothing.
pub(super) fn count_published(ctx: &Context, entries: &[Entry], blocked: &[Refusal]) {
    let in_place = |e: &&Entry| {
        blocked.is_empty()
            || !e
                .target
                .secret_name()
                .is_some_and(|n| desired::blocked(blocked, n))
    };
    let count = |pred: fn(&Target) -> bool| {
        entries
            .iter()
            .filter(|e| pred(&e.target))
            .filter(in_place)
            .count()
    };
    ctx.metrics.set_published(
        PublishedKind::Secret,
        count(|t| matches!(t, Target::Credential(_))),
    );
    ctx.metrics.set_published(
        PublishedKind::MergedEntry,
        count(|t| matches!(t, Target::Merged(_))),
    );
    ctx.metrics.set_published(
        PublishedKind::FilePair,
        count(|t| matches!(t, Target::Directory)),
    );
}
