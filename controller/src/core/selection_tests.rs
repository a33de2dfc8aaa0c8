//! Unit tests of `selection`.

use super::*;
use crate::core::model::{LabelExpression, LabelSelector};
use crate::core::testing::*;

fn no_namespaces() -> BTreeMap<String, BTreeMap<String, String>> {
    BTreeMap::new()
}

fn run(policy: &Policy, sources: &[SourceMeta], merges: &[CertMerge]) -> Selection {
    select(policy, sources, &no_namespaces(), merges)
}

#[test]
fn members_stay_sorted_and_unique_however_they_are_added() {
    let key = |s: &str| ObjectRef::new("shop", s);
    let mut m: Members = [key("c"), key("a"), key("c")].into_iter().collect();
    assert!(m.insert(key("b")));
    assert!(!m.insert(key("a")), "already a member");
    m.extend([key("d"), key("b")]);
    let names: Vec<&str> = m.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c", "d"]);
    assert!(m.remove(&key("c")) && !m.contains(&key("c")));
    assert!(!m.remove(&key("c")));
    assert_eq!(m.len(), 3);
}

fn members(sel: &Selection, target: &Target) -> Vec<String> {
    sel.publication(target)
        .map(|p| p.members.iter().map(ToString::to_string).collect())
        .unwrap_or_default()
}

fn reasons_for(sel: &Selection) -> Vec<(String, &'static str)> {
    sel.refusals
        .iter()
        .map(|r| (r.subject.to_string(), r.reason))
        .collect()
}

fn credential(name: &str) -> Target {
    Target::Credential(name.to_owned())
}

fn merged(name: &str) -> Target {
    Target::Merged(name.to_owned())
}

#[test]
fn an_annotated_tls_secret_gets_its_own_credential_secret() {
    let sel = run(
        &policy(Mode::Credential),
        &[mk_source("shop", "tls"), mk_labelled("shop", "other", &[])],
        &[],
    );
    assert_eq!(sel.publications.len(), 1);
    assert_eq!(members(&sel, &credential("shop.tls")), ["shop/tls"]);
    assert!(sel.refusals.is_empty());
    assert_eq!(
        sel.sources().into_iter().cloned().collect::<Vec<_>>(),
        [oref("shop/tls")]
    );
}

#[test]
fn only_the_value_true_in_any_case_selects() {
    let with = |v: &str| {
        let mut s = mk_source("shop", "tls");
        s.annotations = map(&[(keys::AUTOSYNC, v)]).into();
        s
    };
    for (value, published) in [
        ("true", true),
        ("TRUE", true),
        ("True", true),
        ("false", false),
        ("yes", false),
        ("", false),
        (" true", false),
    ] {
        let sel = run(&policy(Mode::Credential), &[with(value)], &[]);
        assert_eq!(!sel.publications.is_empty(), published, "{value:?}");
        assert!(sel.refusals.is_empty());
    }
}

#[test]
fn a_namespace_outside_the_list_is_refused_never_published() {
    let mut p = policy(Mode::Credential);
    p.namespaces = NamespacePolicy::List(vec!["shop".to_owned()]);
    let sel = run(
        &p,
        &[mk_source("shop", "tls"), mk_source("blog", "tls")],
        &[],
    );
    assert_eq!(members(&sel, &credential("shop.tls")), ["shop/tls"]);
    assert!(sel.publication(&credential("blog.tls")).is_none());
    assert_eq!(
        reasons_for(&sel),
        [("Secret blog/tls".to_owned(), reasons::NAMESPACE_NOT_ALLOWED)]
    );
}

#[test]
fn a_namespace_label_selector_allows_by_namespace_labels() {
    let mut p = policy(Mode::Credential);
    p.namespaces = NamespacePolicy::Selector(LabelSelector {
        match_labels: map(&[("certs", "publish")]),
        match_expressions: vec![],
    });
    let namespaces = BTreeMap::from([
        ("shop".to_owned(), map(&[("certs", "publish")])),
        ("blog".to_owned(), map(&[("certs", "no")])),
    ]);
    let sources = [
        mk_source("shop", "tls"),
        mk_source("blog", "tls"),
        mk_source("unknown", "tls"),
    ];
    let sel = select(&p, &sources, &namespaces, &[]);
    assert_eq!(sel.publications.len(), 1);
    assert_eq!(members(&sel, &credential("shop.tls")), ["shop/tls"]);
    assert_eq!(
        reasons_for(&sel),
        [
            ("Secret blog/tls".to_owned(), reasons::NAMESPACE_NOT_ALLOWED),
            (
                "Secret unknown/tls".to_owned(),
                reasons::NAMESPACE_NOT_ALLOWED
            ),
        ]
    );
}

#[test]
fn gateway_namespace_sources_publish_but_cert_sync_outputs_never_do() {
    let mut output = mk_source(GATEWAY_NS, "shop.tls");
    output.labels = map(&[(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)]).into();
    let sel = run(
        &policy(Mode::Credential),
        &[mk_source(GATEWAY_NS, "wildcard"), output],
        &[],
    );
    assert_eq!(
        members(&sel, &credential("istio-system.wildcard")),
        ["istio-system/wildcard"]
    );
    assert_eq!(sel.publications.len(), 1);
    assert_eq!(
        reasons_for(&sel),
        [(
            "Secret istio-system/shop.tls".to_owned(),
            reasons::MANAGED_BY_CERT_SYNC
        )]
    );
}

#[test]
fn an_annotated_secret_that_is_not_tls_is_refused() {
    let mut opaque = mk_source("shop", "creds");
    opaque.secret_type = "Opaque".to_owned();
    let sel = run(&policy(Mode::Credential), &[opaque], &[]);
    assert!(sel.publications.is_empty());
    assert_eq!(sel.refusals[0].reason, reasons::NOT_TLS);
    assert!(sel.refusals[0].message.contains("Opaque"));
}

#[test]
fn merged_mode_puts_every_annotated_source_in_the_one_secret_even_none() {
    let sel = run(
        &policy(merged_mode()),
        &[mk_source("shop", "tls"), mk_source("blog", "tls")],
        &[],
    );
    assert_eq!(sel.publications.len(), 1);
    assert_eq!(
        members(&sel, &merged("istio-ingressgateway-certs")),
        ["blog/tls", "shop/tls"]
    );
    let empty = run(&policy(merged_mode()), &[], &[]);
    assert_eq!(
        empty.publications.len(),
        1,
        "the mounted Secret always exists"
    );
    assert!(empty.publications[0].members.is_empty());
}

#[test]
fn directory_mode_puts_every_annotated_source_in_the_directory() {
    let sel = run(
        &policy(Mode::Directory),
        &[mk_source("shop", "tls"), mk_source("blog", "tls")],
        &[],
    );
    assert_eq!(members(&sel, &Target::Directory), ["blog/tls", "shop/tls"]);
}

#[test]
fn a_cert_merge_takes_selected_and_listed_secrets_and_names_the_missing() {
    let mut opaque = mk_labelled("shop", "opaque", &[("merge", "yes")]);
    opaque.secret_type = "Opaque".to_owned();
    let sources = [
        mk_labelled("shop", "a", &[("merge", "yes")]),
        mk_labelled("shop", "b", &[("merge", "no")]),
        mk_labelled("shop", "c", &[]),
        opaque.clone(),
        {
            let mut o = opaque.clone();
            o.key = oref("shop/listed-opaque");
            o
        },
    ];
    let mut merge = mk_merge(
        "shop",
        "m",
        "shop.bundle",
        &["shop/c", "shop/gone", "shop/listed-opaque"],
    );
    merge.selectors = vec![selector("shop", &[("merge", "yes")])];
    let sel = run(&policy(Mode::Credential), &sources, &[merge]);
    let p = sel.publication(&merged("shop.bundle")).unwrap();
    assert_eq!(p.owner, Owner::CertMerge(oref("shop/m")));
    assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/a", "shop/c"]);
    assert_eq!(
        reasons_for(&sel),
        [
            (
                "CertMerge shop/m member shop/gone".to_owned(),
                reasons::NOT_FOUND
            ),
            (
                "CertMerge shop/m member shop/listed-opaque".to_owned(),
                reasons::NOT_TLS
            ),
        ]
    );
}

#[test]
fn a_tenant_cert_merge_cannot_reach_into_another_namespace() {
    let sources = [
        mk_labelled("shop", "a", &[("m", "1")]),
        mk_labelled("bank", "vault", &[("m", "1")]),
    ];
    let mut merge = mk_merge("shop", "m", "shop.bundle", &["bank/vault", "a"]);
    merge.selectors = vec![selector("bank", &[("m", "1")]), selector("", &[("m", "1")])];
    let sel = run(&policy(Mode::Credential), &sources, &[merge]);
    assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/a"]);
    assert_eq!(
        reasons_for(&sel),
        [
            ("CertMerge shop/m".to_owned(), reasons::CROSS_NAMESPACE),
            (
                "CertMerge shop/m member bank/vault".to_owned(),
                reasons::CROSS_NAMESPACE
            ),
        ]
    );
}

#[test]
fn a_tenant_cert_merge_may_only_write_targets_named_after_its_namespace() {
    let sources = [mk_labelled("shop", "a", &[])];
    for target in [
        "bank.bundle",
        "shopping.bundle",
        "istio-ingressgateway-certs",
    ] {
        let merge = mk_merge("shop", "m", target, &["shop/a"]);
        let sel = run(&policy(Mode::Credential), &sources, &[merge]);
        assert!(sel.publications.is_empty(), "{target}");
        assert_eq!(
            reasons_for(&sel),
            [("CertMerge shop/m".to_owned(), reasons::TARGET_NOT_OWNED)]
        );
        assert!(sel.refusals[0].message.contains("\"shop.\""));
    }
}

#[test]
fn targets_are_valid_secret_names_in_the_gateway_namespace() {
    let mut elsewhere = mk_merge(GATEWAY_NS, "m", "bundle", &[]);
    elsewhere.target.namespace = "default".to_owned();
    let invalid = mk_merge(GATEWAY_NS, "n", "Not_A_Name", &[]);
    let sel = run(&policy(Mode::Credential), &[], &[elsewhere, invalid]);
    assert!(sel.publications.is_empty());
    assert_eq!(
        reasons_for(&sel),
        [
            (
                "CertMerge istio-system/m".to_owned(),
                reasons::INVALID_TARGET
            ),
            (
                "CertMerge istio-system/n".to_owned(),
                reasons::INVALID_TARGET
            ),
        ]
    );
}

#[test]
fn a_gateway_cert_merge_selects_from_any_allowed_namespace() {
    let mut p = policy(Mode::Credential);
    p.namespaces = NamespacePolicy::List(vec!["shop".to_owned(), "blog".to_owned()]);
    let sources = [
        mk_labelled("shop", "a", &[("edge", "1")]),
        mk_labelled("blog", "b", &[]),
        mk_labelled("bank", "c", &[("edge", "1")]),
        mk_labelled("bank", "d", &[]),
    ];
    let mut merge = mk_merge(GATEWAY_NS, "edge", "edge-certs", &["blog/b", "bank/d"]);
    merge.selectors = vec![
        selector("shop", &[("edge", "1")]),
        selector("bank", &[("edge", "1")]),
    ];
    let sel = run(&p, &sources, &[merge]);
    assert_eq!(members(&sel, &merged("edge-certs")), ["blog/b", "shop/a"]);
    assert_eq!(
        reasons_for(&sel),
        [
            (
                "CertMerge istio-system/edge".to_owned(),
                reasons::NAMESPACE_NOT_ALLOWED
            ),
            (
                "CertMerge istio-system/edge member bank/d".to_owned(),
                reasons::NAMESPACE_NOT_ALLOWED
            ),
        ]
    );
}

#[test]
fn a_selector_never_picks_cert_sync_outputs_or_non_tls_secrets() {
    let mut output = mk_labelled(GATEWAY_NS, "shop.tls", &[]);
    output.labels = map(&[(keys::MANAGED_BY, keys::MANAGED_BY_VALUE)]).into();
    let mut opaque = mk_labelled(GATEWAY_NS, "token", &[]);
    opaque.secret_type = "Opaque".to_owned();
    let mut merge = mk_merge(GATEWAY_NS, "all", "everything", &[]);
    merge.selectors = vec![selector(GATEWAY_NS, &[])];
    let sel = run(
        &policy(Mode::Credential),
        &[output, opaque, mk_labelled(GATEWAY_NS, "wildcard", &[])],
        &[merge],
    );
    assert_eq!(
        members(&sel, &merged("everything")),
        ["istio-system/wildcard"]
    );
    assert!(sel.refusals.is_empty(), "a selector filters quietly");
}

#[test]
fn two_cert_merges_on_one_target_the_older_wins_and_is_named() {
    let sources = [mk_labelled("shop", "a", &[]), mk_labelled("shop", "b", &[])];
    let mut old = mk_merge("shop", "zz-old", "shop.bundle", &["shop/a"]);
    old.created = 10;
    let new = mk_merge("shop", "aa-new", "shop.bundle", &["shop/b"]);
    let sel = run(
        &policy(Mode::Credential),
        &sources,
        &[new.clone(), old.clone()],
    );
    assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/a"]);
    assert_eq!(
        reasons_for(&sel),
        [("CertMerge shop/aa-new".to_owned(), reasons::TARGET_CONFLICT)]
    );
    assert!(
        sel.refusals[0].message.contains("CertMerge shop/zz-old"),
        "{}",
        sel.refusals[0].message
    );

    // Same age: the smaller name wins.
    let mut twin = old.clone();
    twin.key = oref("shop/aa-twin");
    let sel = run(&policy(Mode::Credential), &sources, &[old, twin]);
    assert_eq!(
        sel.publications[0].owner,
        Owner::CertMerge(oref("shop/aa-twin"))
    );
}

#[test]
fn a_cert_merge_on_an_annotation_credential_name_settles_by_age() {
    let mut annotated = mk_source("shop", "bundle");
    let merge = mk_merge("shop", "m", "shop.bundle", &["shop/other"]);
    let other = mk_labelled("shop", "other", &[]);

    // The annotated Secret (1000) is older than the CertMerge (2000).
    let sel = run(
        &policy(Mode::Credential),
        &[annotated.clone(), other.clone()],
        std::slice::from_ref(&merge),
    );
    assert_eq!(
        sel.publication(&credential("shop.bundle"))
            .map(|p| p.owner.clone()),
        Some(Owner::Annotation)
    );
    assert_eq!(
        reasons_for(&sel),
        [("CertMerge shop/m".to_owned(), reasons::TARGET_CONFLICT)]
    );
    assert!(sel.refusals[0].message.contains("Secret shop/bundle"));

    annotated.created = 3000;
    let sel = run(&policy(Mode::Credential), &[annotated, other], &[merge]);
    assert_eq!(members(&sel, &merged("shop.bundle")), ["shop/other"]);
    assert!(sel.publication(&credential("shop.bundle")).is_none());
    assert_eq!(
        reasons_for(&sel),
        [("Secret shop/bundle".to_owned(), reasons::TARGET_CONFLICT)]
    );
}

#[test]
fn in_merged_mode_the_merged_secret_name_is_reserved() {
    let mut merge = mk_merge(GATEWAY_NS, "legacy", "istio-ingressgateway-certs", &[]);
    merge.created = -5;
    let sel = run(
        &policy(merged_mode()),
        &[mk_source("shop", "tls")],
        &[merge],
    );
    let p = sel
        .publication(&merged("istio-ingressgateway-certs"))
        .unwrap();
    assert_eq!(p.owner, Owner::Annotation);
    assert_eq!(
        reasons_for(&sel),
        [(
            "CertMerge istio-system/legacy".to_owned(),
            reasons::TARGET_CONFLICT
        )]
    );
    assert!(sel.refusals[0].message.contains("reserved"));
}

#[test]
fn a_malformed_selector_holds_the_target_instead_of_shrinking_it() {
    let mut merge = mk_merge("shop", "m", "shop.bundle", &["shop/a"]);
    merge.selectors = vec![MergeSelectorBuilder::bad("shop")];
    let sel = run(
        &policy(Mode::Credential),
        &[mk_labelled("shop", "a", &[])],
        &[merge],
    );
    let p = sel.publication(&merged("shop.bundle")).unwrap();
    assert!(p.held);
    assert_eq!(
        reasons_for(&sel),
        [("CertMerge shop/m".to_owned(), reasons::INVALID_SELECTOR)]
    );
}

struct MergeSelectorBuilder;
impl MergeSelectorBuilder {
    fn bad(ns: &str) -> crate::core::model::MergeSelector {
        let mut s = selector(ns, &[]);
        s.label_selector.match_expressions = vec![LabelExpression {
            key: "tier".to_owned(),
            operator: "In".to_owned(),
            values: vec![],
        }];
        s
    }
}

#[test]
fn a_tenant_cert_merge_in_a_disallowed_namespace_is_refused_whole() {
    let mut p = policy(Mode::Credential);
    p.namespaces = NamespacePolicy::List(vec!["blog".to_owned()]);
    let merge = mk_merge("shop", "m", "shop.bundle", &["shop/a"]);
    let sel = run(&p, &[mk_labelled("shop", "a", &[])], &[merge]);
    assert!(sel.publications.is_empty());
    assert_eq!(
        reasons_for(&sel),
        [(
            "CertMerge shop/m".to_owned(),
            reasons::NAMESPACE_NOT_ALLOWED
        )]
    );
}

#[test]
fn a_crafted_name_colliding_with_a_hash_suffixed_one_loses_to_the_older() {
    let long = "x".repeat(253);
    let crafted = naming::merged_keys(&oref(&format!("shop/{long}")));
    let crafted_name = crafted
        .cert
        .trim_start_matches("shop.")
        .trim_end_matches(".crt")
        .to_owned();
    let mut newer = mk_source("shop", &crafted_name);
    newer.created = 5000;
    let sel = run(
        &policy(merged_mode()),
        &[mk_source("shop", &long), newer],
        &[],
    );
    assert_eq!(sel.publications[0].members.len(), 1);
    assert_eq!(sel.refusals.len(), 1);
    assert_eq!(sel.refusals[0].reason, reasons::TARGET_CONFLICT);
    assert_eq!(
        sel.refusals[0].source(),
        Some(&oref(&format!("shop/{crafted_name}")))
    );
}

#[test]
fn the_outcome_does_not_depend_on_input_order() {
    let sources = vec![
        mk_source("shop", "tls"),
        mk_source("blog", "tls"),
        mk_labelled("shop", "a", &[("m", "1")]),
        mk_labelled("shop", "b", &[("m", "1")]),
    ];
    let mut m1 = mk_merge("shop", "m1", "shop.x", &["shop/gone"]);
    m1.selectors = vec![selector("shop", &[("m", "1")])];
    let m2 = mk_merge("shop", "m2", "shop.x", &["shop/b"]);
    let merges = vec![m1, m2];
    let forward = run(&policy(Mode::Credential), &sources, &merges);
    let mut rs = sources.clone();
    rs.reverse();
    let mut rm = merges.clone();
    rm.reverse();
    assert_eq!(forward, run(&policy(Mode::Credential), &rs, &rm));
}
