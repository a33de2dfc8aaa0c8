//! The scoped pass: what the watches journaled since the last pass, decided
//! alone when `core::scoped` says it can be, spliced into what the last pass
//! decided. Its reads and writes are the full pass's, on the scope's sources
//! and targets only.
//!
//! ```text
//!  journals ─▶ scope ─▶ select S ─▶ validate S ─▶ render + diff T ─▶ write
//!     │          └─ None ─▶ full pass                                   │
//!     └────────── splice into Decided ◀─ manifest::splice ◀─ tell ◀────┘
//! ```

use super::{Outcome, Publisher};
use crate::app::{Context, Error};
use crate::core::desired;
use crate::core::manifest;
use crate::core::model::{Mode, ObjectRef, Published, SourceMeta};
use crate::core::scoped::Scope;
use crate::core::selection;
use crate::runtime::kube::journal::Changes;
use std::collections::{BTreeMap, BTreeSet};

impl Publisher {
    /// A pass over what changed since the last one: scoped when the change
    /// can be decided alone, the full pass otherwise. A scoped pass that
    /// fails leaves the next pass full (its journal was taken).
    pub async fn pass_changed(&mut self, ctx: &Context, now: i64) -> Result<Outcome, Error> {
        let sources = self.stores.tls_sources.take_changes();
        let targets = self.stores.managed.take_changes();
        let Some(scope) = self.scope(ctx, sources, targets) else {
            return self.pass(ctx, now).await;
        };
        let result = self.scoped(ctx, now, &scope).await;
        if result.is_err() {
            self.decided = None;
        }
        result
    }

    /// A source or managed Secret changed since the last pass took the
    /// journals: more publishing is due.
    pub fn changes_pending(&self) -> bool {
        self.stores.tls_sources.changes_pending() || self.stores.managed.changes_pending()
    }

    /// Whether this instance's passes can ever be scoped: it copies, in
    /// credential mode, without a certificate directory of its own.
    pub(super) fn scopes(&self, ctx: &Context) -> bool {
        self.publish && self.files.is_none() && matches!(ctx.policy.mode, Mode::Credential)
    }

    /// The scope of a pass over `sources` and `targets`, if one can be
    /// decided alone (see `core::scoped`); the runtime's part of the
    /// conditions: the mode, CertMerges, Vault and the sweep.
    fn scope(&self, ctx: &Context, sources: Changes, targets: Changes) -> Option<Scope> {
        let decided = self.decided.as_ref()?;
        let plain = self.scopes(ctx) && self.built.is_some() && !self.stores.relisting();
        let (true, Changes::Keys(sources), Changes::Keys(targets)) = (plain, sources, targets)
        else {
            return None;
        };
        let gateway = &ctx.policy.gateway_namespace;
        let targets: BTreeSet<String> = targets
            .into_iter()
            .filter(|(namespace, _)| namespace == gateway)
            .map(|(_, name)| name)
            .collect();
        // Our credential Secrets are TLS Secrets too: the source watch
        // journals them as well, but they are never sources (unless someone
        // took one over: no longer labelled ours, it is decided as one).
        let taken_over = |key: &ObjectRef| {
            let meta = self.stores.tls_sources.source(key);
            meta.is_some_and(|m| !selection::is_managed(&m.labels))
        };
        let sources: BTreeSet<ObjectRef> = sources
            .into_iter()
            .map(|(namespace, name)| ObjectRef::new(namespace, name))
            .filter(|s| s.namespace != *gateway || !targets.contains(&s.name) || taken_over(s))
            .collect();
        let scope = decided.widen(&sources, &targets)?;
        // A CertMerge may read any Secret of the namespaces it names.
        let merges = self.stores.cert_merges(&ctx.policy.gateway_namespace);
        let read_by_merges = super::merge_namespaces(&merges);
        let vault = |s: &ObjectRef| self.vault.as_ref().is_some_and(|v| v.contains(s));
        let non_tls = self.stores.non_tls.current();
        let swept = |s: &ObjectRef| non_tls.iter().any(|m| m.key == *s);
        let alone = scope
            .sources
            .iter()
            .all(|s| !read_by_merges.contains(&s.namespace) && !vault(s) && !swept(s));
        alone.then_some(scope)
    }

    async fn scoped(&mut self, ctx: &Context, now: i64, scope: &Scope) -> Result<Outcome, Error> {
        let started = std::time::Instant::now();
        let mut outcome = Outcome {
            scoped: Some(scope.sources.len()),
            ..Outcome::default()
        };
        let metas: Vec<SourceMeta> = scope
            .sources
            .iter()
            .filter_map(|s| self.stores.tls_sources.source(s))
            .collect();
        let namespaces = self
            .stores
            .namespace_labels_of(scope.sources.iter().map(|s| s.namespace.as_str()));
        let selection = selection::select(&ctx.policy, &metas, &namespaces, &[]);
        let versions: BTreeMap<&ObjectRef, &str> = metas
            .iter()
            .map(|s| (&s.key, s.resource_version.as_str()))
            .collect();
        let wanted: BTreeSet<ObjectRef> = selection.sources().into_iter().cloned().collect();
        self.forget_validations(
            scope
                .sources
                .iter()
                .filter(|s| !wanted.contains(*s))
                .cloned(),
        );
        self.refresh_validations(ctx, &wanted, &versions, now, &mut outcome)
            .await?;
        drop(versions);

        let mut current = Published {
            secrets: scope
                .targets
                .iter()
                .filter_map(|t| Some((t.clone(), self.stores.managed.published_one(t)?)))
                .collect(),
            files: BTreeMap::new(),
        };
        let desired = self.render(ctx, &selection, &mut current).await?;
        let plan = desired::diff(&current, &desired);
        self.write(ctx, &desired, &plan, &current, &mut outcome)
            .await?;

        let built = match &self.built {
            Some(b) => manifest::splice(
                b,
                &ctx.policy,
                &desired,
                &plan,
                &self.cert_dir,
                &scope.sources,
            ),
            None => manifest::build(&ctx.policy, &desired, &plan, &self.cert_dir),
        };
        let Some(mut decided) = self.decided.take() else {
            return Ok(outcome);
        };
        decided.splice(
            scope,
            selection,
            desired.entries.clone(),
            plan.refusals.clone(),
        );
        let news = super::News {
            fresh: &desired.entries,
            plan: &plan,
            scope: Some(&scope.sources),
            files_written: false,
        };
        self.finish(ctx, now, built, &decided, news, &mut outcome)
            .await?;
        self.decided = Some(decided);
        tracing::debug!(
            sources = scope.sources.len(),
            targets = scope.targets.len(),
            total = ?started.elapsed(),
            "scoped pass"
        );
        Ok(outcome)
    }
}
