//! Unit tests of `desired`.

use super::*;
use crate::core::model::{Mode, SourceData, SourceMeta};
use crate::core::selection::select;
use crate::core::testing::*;
use crate::core::validation::check_all;

/// What the runtime would read back after applying `desired`.
fn apply(desired: &DesiredState) -> Published {
    Published {
        secrets: desired
            .secrets
            .iter()
            .map(|d| {
                (
                    d.name.clone(),
                    PublishedSecret {
                        name: d.name.clone(),
                        secret_type: d.secret_type.clone(),
                        labels: Arc::clone(&d.labels),
                        annotations: Arc::clone(&d.annotations),
                        data: Arc::clone(&d.data),
                        certificates: Default::default(),
                    },
                )
            })
            .collect(),
        files: desired.files.clone(),
    }
}

/// One reconcile: select, validate, render.
fn reconcile(
    mode: Mode,
    sources: &[(SourceMeta, SourceData)],
    current: &Published,
) -> DesiredState {
    render_sources(mode, sources, current).1
}

fn mismatched() -> SourceData {
    let mut d = Pair::Rsa.data();
    d.key_pem = Some(Pair::P256.key().into());
    d
}

fn secret<'a>(d: &'a DesiredState, name: &str) -> &'a DesiredSecret {
    d.secrets.iter().find(|s| s.name == name).unwrap()
}

#[test]
fn a_credential_secret_is_tls_typed_labelled_and_annotated() {
    let mut data = Pair::P256.data();
    data.ca_pem = Some(ca_pem());
    let d = reconcile(
        Mode::Credential,
        &[(mk_source("shop", "tls"), data)],
        &Published::default(),
    );
    assert_eq!(d.secrets.len(), 1);
    let s = &d.secrets[0];
    assert_eq!(
        (s.name.as_str(), s.namespace.as_str()),
        ("shop.tls", GATEWAY_NS)
    );
    assert_eq!(s.secret_type, "kubernetes.io/tls");
    assert_eq!(
        *s.labels,
        map(&[("app.kubernetes.io/managed-by", "cert-sync")])
    );
    assert_eq!(
        *s.annotations,
        FlatMap::from(map(&[
            ("certsync.istio.io/source", "shop/tls"),
            ("certsync.istio.io/source-sha256", Pair::P256.sha256()),
        ]))
    );
    assert_eq!(s.data["tls.crt"], Pair::P256.cert());
    assert_eq!(s.data["tls.key"], Pair::P256.key());
    assert_eq!(s.data["ca.crt"], ca_pem());
    assert_eq!(d.entries.len(), 1);
    assert_eq!(d.entries[0].summary.sha256.to_string(), Pair::P256.sha256());
    assert!(d.entries[0].has_ca);
    assert_eq!(d.entries[0].kept, None);
    assert!(d.deletions.is_empty());
}

#[test]
fn an_unchanged_publication_is_rendered_from_the_published_maps() {
    let src = mk_source("shop", "tls");
    let published = apply(&reconcile(
        Mode::Credential,
        &[(src.clone(), Pair::P256.data())],
        &Published::default(),
    ));
    let again = reconcile(Mode::Credential, &[(src, Pair::P256.data())], &published);
    let (d, p) = (secret(&again, "shop.tls"), &published.secrets["shop.tls"]);
    assert!(Arc::ptr_eq(&d.labels, &p.labels));
    assert!(Arc::ptr_eq(&d.annotations, &p.annotations));
    assert!(Arc::ptr_eq(&d.data, &p.data));
    assert_eq!(diff(&published, &again).writes().count(), 0);
}

#[test]
fn only_bytes_with_the_decided_digest_fill_a_value() {
    let decided = Blob::from(Pair::P256.cert()).digest_only();
    let key = Blob::from(Pair::P256.key()).digest_only();
    let mut data = FlatMap::from([
        ("tls.crt".to_owned(), decided.clone()),
        ("tls.key".to_owned(), key),
    ]);
    // The source moved on to another certificate: nothing of it is taken.
    fill_by_digest(&mut data, &[Blob::from(Pair::Rsa.cert()), decided.clone()]);
    assert!(data.values().all(|v| v.bytes().is_none()));
    fill_by_digest(&mut data, &[Blob::from(Pair::P256.cert())]);
    assert_eq!(data["tls.crt"].bytes(), Some(Pair::P256.cert()));
    assert_eq!(data["tls.key"].bytes(), None, "still to be found");
}

#[test]
fn a_bad_rotation_keeps_the_last_good_credential_unchanged() {
    let src = mk_source("shop", "tls");
    let before = reconcile(
        Mode::Credential,
        &[(src.clone(), Pair::P256.data())],
        &Published::default(),
    );
    let published = apply(&before);

    let after = reconcile(Mode::Credential, &[(src.clone(), mismatched())], &published);
    assert_eq!(after.secrets, before.secrets, "the good pair stays");
    assert_eq!(after.entries[0].kept, Some(reasons::KEY_MISMATCH));
    assert_eq!(
        after.entries[0].summary.sha256.to_string(),
        Pair::P256.sha256()
    );
    let plan = diff(&published, &after);
    assert_eq!(plan.writes().count(), 0, "{plan:?}");

    // A good rotation then goes through.
    let fixed = reconcile(Mode::Credential, &[(src, Pair::Rsa.data())], &published);
    assert_eq!(fixed.secrets[0].data["tls.crt"], Pair::Rsa.cert());
    assert_eq!(
        fixed.secrets[0].annotations[keys::SOURCE_SHA256],
        Pair::Rsa.sha256()
    );
    assert_eq!(
        diff(&published, &fixed).changes,
        [Change {
            name: "shop.tls".to_owned(),
            action: Action::Update
        }]
    );
}

#[test]
fn a_source_invalid_from_the_start_publishes_nothing() {
    let d = reconcile(
        Mode::Credential,
        &[(mk_source("shop", "tls"), mismatched())],
        &Published::default(),
    );
    assert!(d.secrets.is_empty());
    assert!(d.entries.is_empty());
    let merged = reconcile(
        merged_mode(),
        &[(mk_source("shop", "tls"), mismatched())],
        &Published::default(),
    );
    assert!(
        merged.secrets[0].data.is_empty(),
        "the mounted Secret, empty"
    );
    assert!(merged.entries.is_empty());
    let dir = reconcile(
        Mode::Directory,
        &[(mk_source("shop", "tls"), mismatched())],
        &Published::default(),
    );
    assert!(dir.files.is_empty());
}

#[test]
fn a_published_object_whose_data_is_unreadable_is_left_alone_while_claimed() {
    let src = mk_source("shop", "tls");
    let mut published = apply(&reconcile(
        Mode::Credential,
        &[(src.clone(), Pair::P256.data())],
        &Published::default(),
    ));
    let s = published.secrets.get_mut("shop.tls").unwrap();
    Arc::make_mut(&mut s.data).insert("tls.crt".to_owned(), b"truncated".to_vec().into());
    let after = reconcile(Mode::Credential, &[(src, mismatched())], &published);
    assert!(after.secrets.is_empty(), "nothing good to write");
    assert!(after.deletions.is_empty(), "and nothing deleted");
    assert!(after.entries.is_empty());
}

#[test]
fn a_deselected_source_is_unpublished_and_nothing_else_is_touched() {
    let tls = mk_source("shop", "tls");
    let blog = mk_source("blog", "tls");
    let before = reconcile(
        Mode::Credential,
        &[
            (tls.clone(), Pair::P256.data()),
            (blog.clone(), Pair::Rsa.data()),
        ],
        &Published::default(),
    );
    let mut published = apply(&before);
    // Someone else's Secret, and a cert-sync object that is not a publication.
    published.secrets.insert(
        "istio-ca-secret".to_owned(),
        PublishedSecret {
            name: "istio-ca-secret".to_owned(),
            ..PublishedSecret::default()
        },
    );
    published.secrets.insert(
        "cert-sync-report-token".to_owned(),
        PublishedSecret {
            name: "cert-sync-report-token".to_owned(),
            labels: Arc::new(map(&[(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)])),
            ..PublishedSecret::default()
        },
    );
    let mut unannotated = blog.clone();
    unannotated.annotations = Default::default();
    let after = reconcile(
        Mode::Credential,
        &[(tls, Pair::P256.data()), (unannotated, Pair::Rsa.data())],
        &published,
    );
    assert_eq!(after.deletions, ["blog.tls"]);
    let plan = diff(&published, &after);
    assert_eq!(
        plan.changes,
        [
            Change {
                name: "blog.tls".to_owned(),
                action: Action::Delete
            },
            Change {
                name: "shop.tls".to_owned(),
                action: Action::Unchanged
            },
        ]
    );
}

#[test]
fn merged_secret_updates_valid_members_and_keeps_the_last_good_of_an_invalid_one() {
    let a = mk_source("shop", "a");
    let b = mk_source("shop", "b");
    let c = mk_source("blog", "c");
    let before = reconcile(
        merged_mode(),
        &[
            (a.clone(), Pair::P256.data()),
            (b.clone(), Pair::P256.data()),
            (c.clone(), Pair::Rsa.data()),
        ],
        &Published::default(),
    );
    let s = secret(&before, "istio-ingressgateway-certs");
    assert_eq!(s.secret_type, "Opaque");
    assert_eq!(
        s.data.keys().collect::<Vec<_>>(),
        [
            "blog.c.crt",
            "blog.c.key",
            "shop.a.crt",
            "shop.a.key",
            "shop.b.crt",
            "shop.b.key"
        ]
    );
    assert_eq!(s.annotations[keys::SOURCE], "blog/c,shop/a,shop/b");
    assert_eq!(
        s.annotations[keys::SOURCE_SHA256],
        format!(
            "{},{},{}",
            Pair::Rsa.sha256(),
            Pair::P256.sha256(),
            Pair::P256.sha256()
        )
    );
    let published = apply(&before);

    // a rotates well, b breaks, c is deleted, d is new but broken.
    let d = mk_source("shop", "d");
    let after = reconcile(
        merged_mode(),
        &[
            (a, Pair::Ed25519.data()),
            (b, mismatched()),
            (d, mismatched()),
        ],
        &published,
    );
    let s = secret(&after, "istio-ingressgateway-certs");
    assert_eq!(
        s.data.keys().collect::<Vec<_>>(),
        ["shop.a.crt", "shop.a.key", "shop.b.crt", "shop.b.key"]
    );
    assert_eq!(s.data["shop.a.crt"], Pair::Ed25519.cert());
    assert_eq!(s.data["shop.b.crt"], Pair::P256.cert(), "last good kept");
    assert_eq!(s.data["shop.b.key"], Pair::P256.key());
    assert_eq!(s.annotations[keys::SOURCE], "shop/a,shop/b");
    assert_eq!(
        s.annotations[keys::SOURCE_SHA256],
        format!("{},{}", Pair::Ed25519.sha256(), Pair::P256.sha256())
    );
    let kept: Vec<_> = after
        .entries
        .iter()
        .map(|e| (e.source.to_string(), e.kept))
        .collect();
    assert_eq!(
        kept,
        [
            ("shop/a".to_owned(), None),
            ("shop/b".to_owned(), Some(reasons::KEY_MISMATCH))
        ]
    );
    assert!(after.deletions.is_empty(), "the merged Secret itself stays");
}

#[test]
fn directory_mode_renders_the_whole_tree_and_keeps_last_good_files() {
    let a = mk_source("shop", "a");
    let mut with_ca = Pair::P256.data();
    with_ca.ca_pem = Some(ca_pem());
    let before = reconcile(
        Mode::Directory,
        &[
            (a.clone(), with_ca),
            (mk_source("blog", "b"), Pair::Rsa.data()),
        ],
        &Published::default(),
    );
    assert!(before.secrets.is_empty());
    assert_eq!(
        before.files.keys().collect::<Vec<_>>(),
        [
            "blog/b.crt",
            "blog/b.key",
            "shop/a.crt",
            "shop/a.key",
            "shop/a_ca.crt"
        ]
    );
    let published = apply(&before);
    // blog/b is gone; shop/a turns invalid.
    let after = reconcile(Mode::Directory, &[(a, mismatched())], &published);
    assert_eq!(
        after.files.keys().collect::<Vec<_>>(),
        ["shop/a.crt", "shop/a.key", "shop/a_ca.crt"]
    );
    assert_eq!(after.files["shop/a.key"], Pair::P256.key());
    assert!(diff(&published, &after).files_changed);
    let again = reconcile(
        Mode::Directory,
        &[(mk_source("shop", "a"), mismatched())],
        &apply(&after),
    );
    assert!(!diff(&apply(&after), &again).files_changed);
}

#[test]
fn a_held_cert_merge_target_is_kept_exactly() {
    let p = policy(Mode::Credential);
    let sources = [mk_labelled("shop", "a", &[]), mk_labelled("shop", "b", &[])];
    let data = BTreeMap::from([
        (oref("shop/a"), Pair::P256.data()),
        (oref("shop/b"), Pair::Rsa.data()),
    ]);
    let good = mk_merge("shop", "m", "shop.bundle", &["shop/a", "shop/b"]);
    let sel = select(&p, &sources, &BTreeMap::new(), std::slice::from_ref(&good));
    let before = render(
        &p,
        &sel,
        &check_all(sel.sources(), &data, NOW),
        &Published::default(),
    );
    let published = apply(&before);

    let mut broken = good;
    broken.secrets = vec![oref("shop/a")];
    broken.selectors = vec![{
        let mut s = selector("shop", &[]);
        s.label_selector.match_expressions = vec![crate::core::model::LabelExpression {
            key: "x".to_owned(),
            operator: "Bogus".to_owned(),
            values: vec![],
        }];
        s
    }];
    let sel = select(&p, &sources, &BTreeMap::new(), &[broken]);
    let after = render(&p, &sel, &check_all(sel.sources(), &data, NOW), &published);
    assert_eq!(after.secrets, before.secrets);
    assert!(after.deletions.is_empty());
    assert!(after
        .entries
        .iter()
        .all(|e| e.kept == Some(reasons::INVALID_SELECTOR)));
    assert_eq!(diff(&published, &after).writes().count(), 0);
}

#[test]
fn diff_creates_updates_replaces_and_skips_unchanged() {
    let d = reconcile(
        Mode::Credential,
        &[(mk_source("shop", "tls"), Pair::P256.data())],
        &Published::default(),
    );
    assert_eq!(
        diff(&Published::default(), &d).changes,
        [Change {
            name: "shop.tls".to_owned(),
            action: Action::Create
        }]
    );
    let mut current = apply(&d);
    // Labels and annotations added by others do not count as a change.
    let s = current.secrets.get_mut("shop.tls").unwrap();
    Arc::make_mut(&mut s.labels).insert("team".to_owned(), "web".to_owned());
    Arc::make_mut(&mut s.annotations).insert(
        "kubectl.kubernetes.io/last-applied-configuration".to_owned(),
        "{}".to_owned(),
    );
    assert_eq!(diff(&current, &d).changes[0].action, Action::Unchanged);
    // A changed annotation of ours is.
    let s = current.secrets.get_mut("shop.tls").unwrap();
    Arc::make_mut(&mut s.annotations).insert(keys::SOURCE_SHA256.to_owned(), "0".repeat(64));
    assert_eq!(diff(&current, &d).changes[0].action, Action::Update);
    // A type change needs delete-then-create.
    let s = current.secrets.get_mut("shop.tls").unwrap();
    s.secret_type = OPAQUE_TYPE.to_owned();
    assert_eq!(diff(&current, &d).changes[0].action, Action::Replace);
}

#[test]
fn an_object_cert_sync_does_not_manage_is_never_overwritten_or_deleted() {
    let d = reconcile(
        Mode::Credential,
        &[(mk_source("shop", "tls"), Pair::P256.data())],
        &Published::default(),
    );
    let mut current = apply(&d);
    let s = current.secrets.get_mut("shop.tls").unwrap();
    Arc::make_mut(&mut s.labels).clear();
    let foreign_data = s.data.clone();
    let plan = diff(&current, &d);
    assert!(plan.changes.is_empty());
    assert_eq!(plan.refusals.len(), 1);
    assert_eq!(plan.refusals[0].reason, reasons::TARGET_NOT_MANAGED);
    assert!(plan.refusals[0].message.contains("shop/tls"));
    assert!(plan.blocked("shop.tls"));
    // Nor kept as "last good", nor deleted, when its source turns invalid or goes.
    let broken = reconcile(
        Mode::Credential,
        &[(mk_source("shop", "tls"), mismatched())],
        &current,
    );
    assert!(broken.secrets.is_empty());
    let gone = reconcile(Mode::Credential, &[], &current);
    assert!(gone.deletions.is_empty());
    assert_eq!(current.secrets["shop.tls"].data, foreign_data);
}

#[test]
fn the_same_input_renders_the_same_output() {
    let sources = [
        (mk_source("shop", "a"), Pair::P256.data()),
        (mk_source("blog", "b"), Pair::Rsa.data()),
        (mk_source("wiki", "c"), mismatched()),
    ];
    let mut reversed = sources.clone();
    reversed.reverse();
    for mode in [Mode::Credential, merged_mode(), Mode::Directory] {
        let one = reconcile(mode.clone(), &sources, &Published::default());
        let two = reconcile(mode, &reversed, &Published::default());
        assert_eq!(one, two);
        assert_eq!(diff(&apply(&one), &two).writes().count(), 0);
    }
}

#[test]
fn debug_output_of_the_desired_state_has_no_key_material() {
    for mode in [Mode::Credential, merged_mode(), Mode::Directory] {
        let d = reconcile(
            mode,
            &[(mk_source("shop", "a"), Pair::Rsa.data())],
            &Published::default(),
        );
        let shown = format!("{d:?} {:?}", apply(&d));
        for line in String::from_utf8_lossy(Pair::Rsa.key())
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!shown.contains(line), "key bytes in debug output");
        }
    }
}

#[test]
fn source_lists_parse_back() {
    assert_eq!(
        parse_sources("a/x, b/y,,bad,/z"),
        BTreeSet::from([oref("a/x"), oref("b/y")])
    );
}
