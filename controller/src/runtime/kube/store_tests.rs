//! Unit tests of `store`.

use super::*;
use crate::core::testing::Pair;
use k8s_openapi::ByteString;
use kube::ResourceExt as _;

fn source(ns: &str, name: &str, rv: &str, autosync: bool) -> PartialObjectMeta<Secret> {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
        resource_version: Some(rv.into()),
        labels: Some(BTreeMap::from([("app".into(), "web".into())])),
        annotations: Some(
            [
                ("other".to_owned(), "x".to_owned()),
                (keys::AUTOSYNC.to_owned(), "true".to_owned()),
            ]
            .into_iter()
            .filter(|(k, _)| autosync || k != keys::AUTOSYNC)
            .collect(),
        ),
        creation_timestamp: time(1_700_000_000),
        ..ObjectMeta::default()
    }
    .into_request_partial()
}

#[test]
fn text_round_trips_whatever_it_holds() {
    for s in [
        "0",
        "12345",
        "007",
        "",
        "abc",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "0F8FAD5B-D9CB-469F-A165-70867728950E",
        "0f8fad5b-d9cb-469f-a165-70867728950",
        "0f8fad5bd-9cb-469f-a165-70867728950e",
        "18446744073709551616",
    ] {
        assert_eq!(Text::new(s).to_string(), s);
    }
    assert!(matches!(Text::new("42"), Text::Number(42)));
    assert!(matches!(
        Text::new("0f8fad5b-d9cb-469f-a165-70867728950e"),
        Text::Uuid(_)
    ));
}

#[test]
fn sources_keep_what_selection_reads_and_relists_replace_everything() {
    let (store, writer) = source_store();
    writer.apply(watcher::Event::Init);
    writer.apply(watcher::Event::InitApply(source("shop", "a", "5", true)));
    writer.apply(watcher::Event::InitApply(source("blog", "b", "6", false)));
    assert!(store.is_empty(), "a relist is visible only when complete");
    writer.apply(watcher::Event::InitDone);
    assert_eq!(store.len(), 2);

    let picked = store.sources(&BTreeSet::new());
    assert_eq!(picked.len(), 1);
    let a = &picked[0];
    assert_eq!(a.key, ObjectRef::new("shop", "a"));
    assert_eq!(a.uid, "0f8fad5b-d9cb-469f-a165-70867728950e");
    assert_eq!(a.resource_version, "5");
    assert_eq!(a.created, 1_700_000_000);
    assert_eq!(a.labels["app"], "web");
    assert_eq!(
        *a.annotations,
        BTreeMap::from([(keys::AUTOSYNC.to_owned(), "true".to_owned())])
    );
    let with_blog = store.sources(&BTreeSet::from(["blog".to_owned()]));
    assert_eq!(with_blog.len(), 2);

    writer.apply(watcher::Event::Apply(source("shop", "a", "7", false)));
    writer.apply(watcher::Event::Delete(source("blog", "b", "6", false)));
    assert!(store
        .sources(&BTreeSet::from(["blog".to_owned()]))
        .is_empty());
    let view = store.state();
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].metadata.resource_version.as_deref(), Some("7"));

    writer.apply(watcher::Event::Init);
    writer.apply(watcher::Event::InitApply(source("wiki", "c", "9", true)));
    writer.apply(watcher::Event::InitDone);
    let names: Vec<_> = store.state().iter().map(|s| s.name_any()).collect();
    assert_eq!(names, ["c"]);
}

#[tokio::test]
async fn ready_after_the_first_list_and_an_error_if_the_watch_stops_before() {
    let (store, writer) = source_store();
    writer.apply(watcher::Event::Init);
    writer.apply(watcher::Event::InitDone);
    store.wait_until_ready().await.unwrap();
    let (never, writer) = source_store();
    drop(writer);
    assert!(never.wait_until_ready().await.is_err());
}

fn managed(name: &str, rv: &str, crt: &[u8]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("istio-system".into()),
            resource_version: Some(rv.into()),
            labels: Some(BTreeMap::from([(
                keys::MANAGED_BY.into(),
                keys::MANAGED_BY_VALUE.into(),
            )])),
            annotations: Some(BTreeMap::from([(keys::SOURCE.into(), "shop/a".into())])),
            ..ObjectMeta::default()
        },
        type_: Some(keys::TLS_TYPE.into()),
        data: Some(BTreeMap::from([
            ("tls.crt".into(), ByteString(crt.to_vec())),
            ("tls.key".into(), ByteString(b"key".to_vec())),
        ])),
        ..Secret::default()
    }
}

#[test]
fn managed_secrets_are_kept_by_digest_with_their_certificate_summaries() {
    let (store, writer) = managed_store();
    writer.apply(watcher::Event::Init);
    writer.apply(watcher::Event::InitDone);
    let crt = Pair::P256.cert().to_vec();
    writer.apply(watcher::Event::Apply(managed("shop.a.test1", "3", &crt)));
    let first = store.published();
    let p = &first["shop.a.test1"];
    assert_eq!(p.secret_type, keys::TLS_TYPE);
    assert!(p.is_managed());
    assert_eq!(p.annotations[keys::SOURCE], "shop/a");
    assert_eq!(p.data["tls.crt"], crt);
    assert_eq!(p.data["tls.key"], b"key".to_vec());
    assert!(
        p.data.values().all(|v| v.bytes().is_none()),
        "no bytes kept"
    );
    let summary = p.certificate("tls.crt").unwrap();
    assert_eq!(summary.sha256.to_string(), Pair::P256.sha256());
    assert!(summary.sans.is_empty());
    assert!(p.certificate("tls.key").is_none());

    // A rotation: the new value's digest, the same maps when unchanged.
    writer.apply(watcher::Event::Apply(managed(
        "shop.a.test1",
        "4",
        b"crt-2",
    )));
    let second = store.published();
    let p2 = &second["shop.a.test1"];
    assert_eq!(p2.data["tls.crt"], b"crt-2".to_vec());
    assert_ne!(p2.data["tls.crt"], crt);
    assert!(p2.certificates.is_empty(), "not a certificate");
    writer.apply(watcher::Event::Apply(managed(
        "shop.a.test1",
        "5",
        b"crt-2",
    )));
    assert!(Arc::ptr_eq(
        &store.published()["shop.a.test1"].data,
        &p2.data
    ));
    let view = store.state();
    assert_eq!(view[0].metadata.resource_version.as_deref(), Some("5"));
}
