use super::*;
use crate::core::desired;
use crate::core::model::{Mode, Published, SourceData, SourceMeta};
use crate::core::testing::*;
use crate::core::{selection, validation};
use std::collections::BTreeMap;

type World = BTreeMap<ObjectRef, (SourceMeta, SourceData)>;

fn mk_world(sources: &[(&str, &str, Pair)]) -> World {
    sources
        .iter()
        .map(|(ns, name, pair)| {
            (
                ObjectRef::new(*ns, *name),
                (mk_source(ns, name), pair.data()),
            )
        })
        .collect()
}

/// Decides `sources` (of `world`) as a pass would, nothing published yet.
fn decide(world: &World, sources: &BTreeSet<ObjectRef>) -> Decided {
    let p = policy(Mode::Credential);
    let metas: Vec<SourceMeta> = world
        .iter()
        .filter(|(k, _)| sources.contains(*k))
        .map(|(_, (m, _))| m.clone())
        .collect();
    let data: BTreeMap<ObjectRef, SourceData> = world
        .iter()
        .map(|(k, (_, d))| (k.clone(), d.clone()))
        .collect();
    let selection = selection::select(&p, &metas, &BTreeMap::new(), &[]);
    let validations = validation::check_all(selection.sources(), &data, NOW);
    let desired = desired::render(&p, &selection, &validations, &Published::default());
    Decided {
        selection,
        entries: desired.entries,
        blocked: Vec::new(),
    }
}

fn everything(world: &World) -> BTreeSet<ObjectRef> {
    world.keys().cloned().collect()
}

/// The last pass decided `before`; `after` changed `changed`: a scoped pass
/// spliced into `before`'s decision equals a full pass over `after`.
fn assert_scoped_equals_full(before: &World, after: &World, changed: &[ObjectRef]) {
    let mut kept = decide(before, &everything(before));
    let scope = kept
        .widen(&changed.iter().cloned().collect(), &BTreeSet::new())
        .expect("decidable alone");
    let part = decide(after, &scope.sources);
    kept.splice(&scope, part.selection, part.entries, part.blocked);
    assert_eq!(kept, decide(after, &everything(after)));
}

#[test]
fn a_rotated_source_is_decided_alone() {
    let before = mk_world(&[
        ("apps", "shop", Pair::P256),
        ("apps", "blog", Pair::Rsa),
        ("web", "shop", Pair::Ed25519),
    ]);
    let mut after = before.clone();
    after.insert(
        oref("apps/shop"),
        (mk_source("apps", "shop"), Pair::Rsa.data()),
    );
    assert_scoped_equals_full(&before, &after, &[oref("apps/shop")]);
}

#[test]
fn a_new_a_deleted_and_an_unannotated_source_are_decided_alone() {
    let before = mk_world(&[("apps", "shop", Pair::P256), ("apps", "blog", Pair::Rsa)]);
    let mut after = before.clone();
    after.insert(
        oref("web/new"),
        (mk_source("web", "new"), Pair::Ed25519.data()),
    );
    after.remove(&oref("apps/blog"));
    after.insert(
        oref("apps/shop"),
        (mk_labelled("apps", "shop", &[]), Pair::P256.data()),
    );
    let changed = [oref("web/new"), oref("apps/blog"), oref("apps/shop")];
    assert_scoped_equals_full(&before, &after, &changed);
}

#[test]
fn a_source_turned_invalid_is_decided_alone() {
    let before = mk_world(&[("apps", "shop", Pair::P256), ("apps", "blog", Pair::Rsa)]);
    let mut after = before.clone();
    let mismatched = SourceData {
        key_pem: Some(Pair::Rsa.key().into()),
        ..Pair::P256.data()
    };
    after.insert(oref("apps/shop"), (mk_source("apps", "shop"), mismatched));
    assert_scoped_equals_full(&before, &after, &[oref("apps/shop")]);
}

#[test]
fn a_changed_target_is_decided_with_the_source_that_publishes_it() {
    let kept = decide(
        &mk_world(&[("apps", "shop", Pair::P256)]),
        &BTreeSet::from([oref("apps/shop")]),
    );
    let scope = kept
        .widen(&BTreeSet::new(), &BTreeSet::from(["apps.shop".to_owned()]))
        .unwrap();
    assert_eq!(scope.sources, BTreeSet::from([oref("apps/shop")]));
    assert_eq!(scope.targets, BTreeSet::from(["apps.shop".to_owned()]));
    // A target nobody publishes (our delete's echo) is decided as unclaimed.
    let scope = kept
        .widen(&BTreeSet::new(), &BTreeSet::from(["gone".to_owned()]))
        .unwrap();
    assert!(scope.sources.is_empty());
}

#[test]
fn what_depends_on_other_sources_goes_to_the_full_pass() {
    let mut kept = decide(
        &mk_world(&[("apps", "shop", Pair::P256)]),
        &BTreeSet::from([oref("apps/shop")]),
    );
    // A merged target of that name (a CertMerge's).
    kept.selection.publications.push(Publication {
        target: Target::Merged("web.tls".to_owned()),
        owner: Owner::CertMerge(oref("web/merge")),
        members: selection::Members::one(oref("web/a")),
        held: false,
    });
    assert_eq!(
        kept.widen(&BTreeSet::from([oref("web/tls")]), &BTreeSet::new()),
        None
    );
    assert!(kept
        .widen(&BTreeSet::from([oref("apps/shop")]), &BTreeSet::new())
        .is_some());
    // Any target conflict: who wins depends on every claimant.
    kept.selection.refusals.push(Refusal::new(
        Subject::Source(oref("x/y")),
        reasons::TARGET_CONFLICT,
        "claimed twice",
    ));
    assert_eq!(
        kept.widen(&BTreeSet::from([oref("apps/shop")]), &BTreeSet::new()),
        None
    );
}
