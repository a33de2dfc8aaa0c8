//! Scoped passes: deciding again only what a change affects.
//!
//! A full pass selects, validates, renders and diffs every source; at ten
//! thousand publications that is most of a second of CPU for a change to
//! one Secret. The watches journal which sources and managed targets
//! changed; when those can be decided on their own, a pass decides only
//! them and splices the result into what the last pass decided.
//!
//! ```text
//!  journal: sources S, targets T ──▶ widen(kept, S, T) ──▶ Scope (or a full pass)
//!  Scope.sources ─▶ select ─▶ validate ─▶ render + diff Scope.targets ─▶ write
//!        └──────────────── Decided::splice ◀─────────────────┘
//! ```
//!
//! A scope stays on its own only in credential mode with annotated sources:
//! each source claims exactly `naming::credential_name(source)`, so the
//! targets a change can touch are known from the keys alone. Anything that
//! can make one source's decision depend on another's sends the pass back
//! to the full one: a target conflict, a CertMerge (checked by the caller),
//! a merged target. The full pass also stays the periodic safety net.

use super::desired::Entry;
use super::model::ObjectRef;
use super::naming;
use super::reasons::{self, Refusal, Subject};
use super::selection::{Owner, Publication, Selection, Target};
use std::collections::BTreeSet;

/// What the last pass decided, whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    pub selection: Selection,
    /// Sorted by source, then target (as `desired::render` sorts them).
    pub entries: Vec<Entry>,
    /// Targets blocked by an object cert-sync does not manage (the plan's
    /// refusals), sorted.
    pub blocked: Vec<Refusal>,
}

/// The sources and (credential) targets a scoped pass decides again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub sources: BTreeSet<ObjectRef>,
    pub targets: BTreeSet<String>,
}

impl Decided {
    /// The publication of `target` (publications are sorted by target).
    pub fn publication(&self, target: &Target) -> Option<&Publication> {
        let all = &self.selection.publications;
        all.binary_search_by(|p| p.target.cmp(target))
            .ok()
            .and_then(|i| all.get(i))
    }

    /// The scope of a pass over `sources` and managed `targets` that
    /// changed, or `None` when they cannot be decided apart from the rest.
    /// A changed target is decided with the source that publishes it (our
    /// own write's echo, or someone editing or deleting it).
    pub fn widen(
        &self,
        sources: &BTreeSet<ObjectRef>,
        targets: &BTreeSet<String>,
    ) -> Option<Scope> {
        if self
            .selection
            .refusals
            .iter()
            .any(|r| r.reason == reasons::TARGET_CONFLICT)
        {
            return None;
        }
        let mut scope = Scope {
            sources: sources.clone(),
            targets: targets.clone(),
        };
        for target in targets {
            if let Some(p) = self.publication(&Target::Credential(target.clone())) {
                scope.sources.extend(p.members.iter().cloned());
            }
        }
        scope
            .targets
            .extend(scope.sources.iter().map(naming::credential_name));
        let alone = scope.targets.iter().all(|t| {
            let merged = self.publication(&Target::Merged(t.clone())).is_none();
            let credential = self
                .publication(&Target::Credential(t.clone()))
                .is_none_or(|p| {
                    p.owner == Owner::Annotation
                        && p.members.iter().all(|m| scope.sources.contains(m))
                });
            merged && credential
        });
        alone.then_some(scope)
    }

    /// Replaces what was decided for `scope` by what a scoped pass decided:
    /// its selection, entries and blocked targets.
    pub fn splice(
        &mut self,
        scope: &Scope,
        selection: Selection,
        entries: Vec<Entry>,
        blocked: Vec<Refusal>,
    ) {
        let in_scope = |t: &Target| matches!(t, Target::Credential(n) if scope.targets.contains(n));
        let kept = &mut self.selection;
        kept.publications.retain(|p| !in_scope(&p.target));
        kept.publications.extend(selection.publications);
        kept.publications.sort_by(|a, b| a.target.cmp(&b.target));
        kept.refusals
            .retain(|r| !matches!(&r.subject, Subject::Source(s) if scope.sources.contains(s)));
        kept.refusals.extend(selection.refusals);
        kept.refusals.sort();
        kept.refusals.dedup();
        self.entries
            .retain(|e| !scope.sources.contains(&e.source) && !in_scope(&e.target));
        self.entries.extend(entries);
        self.entries
            .sort_by(|a, b| (&a.source, &a.target).cmp(&(&b.source, &b.target)));
        self.blocked.retain(
            |r| !matches!(&r.subject, Subject::Target(t) if scope.targets.contains(&t.name)),
        );
        self.blocked.extend(blocked);
        self.blocked.sort();
    }
}

#[cfg(test)]
#[path = "scoped_tests.rs"]
mod tests;
