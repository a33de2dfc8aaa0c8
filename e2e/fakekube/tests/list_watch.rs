//! List and watch through a real kube `Client`: events and their
//! resourceVersions, selectors (including selector transitions), metadata-only
//! responses, and paginated lists.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod common;

use std::collections::BTreeSet;

use certsync_fakekube::Verb;
use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, ResourceExt, WatchEvent,
    WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

#[tokio::test]
async fn list_then_watch_sees_added_modified_deleted_in_order() {
    let fake = fake().await;
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    api.create(&PostParams::default(), &tls_secret("apps", "before"))
        .await
        .expect("create");

    let list = api.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1);
    let list_rv: u64 = list
        .metadata
        .resource_version
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("list resourceVersion");

    let mut events = api
        .watch(&WatchParams::default().timeout(30), &list_rv.to_string())
        .await
        .expect("watch")
        .boxed();
    api.create(&PostParams::default(), &tls_secret("apps", "a"))
        .await
        .expect("create");
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .expect("patch");
    api.delete("a", &DeleteParams::default())
        .await
        .expect("delete");

    let mut rvs = vec![list_rv];
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let (kind, obj) = match next(&mut events).await.expect("event") {
            WatchEvent::Added(s) => ("ADDED", s),
            WatchEvent::Modified(s) => ("MODIFIED", s),
            WatchEvent::Deleted(s) => ("DELETED", s),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(obj.name_any(), "a");
        kinds.push(kind);
        rvs.push(rv(&obj));
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "increasing: {rvs:?}");
}

#[tokio::test]
async fn field_selector_on_secret_type_filters_list_and_watch() {
    let fake = fake().await;
    let client = fake.client().expect("client");
    let all: Api<Secret> = Api::all(client.clone());
    let ns: Api<Secret> = Api::namespaced(client, "apps");
    fake.put(secret("apps", "opaque", "Opaque")).expect("put");
    fake.put(tls_secret("apps", "tls")).expect("put");
    fake.put(tls_secret("other", "tls2")).expect("put");

    let lp = ListParams::default().fields("type=kubernetes.io/tls");
    let names: BTreeSet<String> = all
        .list(&lp)
        .await
        .expect("cluster-wide list")
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["tls".to_string(), "tls2".to_string()])
    );
    assert_eq!(
        fake.requests().last().map(|r| r.path.as_str()),
        Some("/api/v1/secrets")
    );

    let wp = WatchParams::default()
        .fields("type=kubernetes.io/tls")
        .timeout(30);
    let rv = fake.resource_version().to_string();
    let mut events = ns.watch(&wp, &rv).await.expect("watch").boxed();
    fake.put(secret("apps", "opaque2", "Opaque")).expect("put");
    fake.put(tls_secret("apps", "tls3")).expect("put");
    match next(&mut events).await.expect("event") {
        WatchEvent::Added(s) => assert_eq!(s.name_any(), "tls3"),
        other => panic!("unexpected {other:?}"),
    }

    let bad = all
        .list(&ListParams::default().fields("spec.foo=bar"))
        .await;
    assert_eq!(api_code(bad), 400, "unsupported field label is refused");
}

#[tokio::test]
async fn object_leaving_a_label_selector_is_deleted_for_that_watcher() {
    let fake = fake().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().expect("client"), "apps");
    let mut cm = configmap("apps", "c");
    cm.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create");

    let wp = WatchParams::default()
        .labels("app in (web,api)")
        .timeout(30);
    let mut events = api.watch(&wp, "0").await.expect("watch").boxed();
    match next(&mut events).await.expect("initial") {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "c"),
        other => panic!("unexpected {other:?}"),
    }
    let relabel = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"app": v}}}));
    let moved = api
        .patch("c", &PatchParams::default(), &relabel("db"))
        .await
        .expect("relabel");
    match next(&mut events).await.expect("left") {
        WatchEvent::Deleted(c) => assert_eq!(rv(&c), rv(&moved)),
        other => panic!("unexpected {other:?}"),
    }
    api.patch("c", &PatchParams::default(), &relabel("api"))
        .await
        .expect("relabel back");
    assert!(matches!(next(&mut events).await, Ok(WatchEvent::Added(_))));
}

#[tokio::test]
async fn metadata_only_list_and_watch_carry_no_data_and_cost_fewer_bytes() {
    let fake = fake().await;
    let client = fake.client().expect("client");
    let api: Api<Secret> = Api::namespaced(client.clone(), "apps");
    for i in 0..5 {
        fake.put(tls_secret("apps", &format!("s{i}"))).expect("put");
    }

    let meta = api
        .list_metadata(&ListParams::default())
        .await
        .expect("list_metadata");
    assert_eq!(meta.items.len(), 5);
    assert_eq!(meta.types.kind, "PartialObjectMetadataList");
    let raw = client
        .request_text(
            kube::core::Request::new("/api/v1/namespaces/apps/secrets")
                .list_metadata(&ListParams::default())
                .expect("request"),
        )
        .await
        .expect("raw metadata list");
    assert!(!raw.contains("\"data\""), "no data in {raw}");
    assert!(raw.contains("\"kind\":\"PartialObjectMetadata\""));
    api.list(&ListParams::default()).await.expect("full list");
    let last_list = |meta_only: bool| {
        fake.requests()
            .iter()
            .rev()
            .find(|r| r.verb == Verb::List && r.metadata_only == meta_only)
            .map(|r| r.bytes)
            .expect("list recorded")
    };
    let (meta_bytes, full_bytes) = (last_list(true), last_list(false));
    assert!(
        meta_bytes > 0 && meta_bytes * 2 < full_bytes,
        "{meta_bytes} vs {full_bytes}"
    );
    assert_eq!(fake.bytes_served(Verb::List, false), full_bytes);
    assert_eq!(fake.bytes_served(Verb::List, true), 2 * meta_bytes);

    let got = api.get_metadata("s0").await.expect("get_metadata");
    assert_eq!(
        got.types.map(|t| t.kind),
        Some("PartialObjectMetadata".to_string())
    );

    // kube 5: a watcher over `Api<PartialObjectMeta<K>>` is metadata-only.
    let meta_api: Api<PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), "apps");
    let mut stream = watcher(meta_api, watcher::Config::default())
        .applied_objects()
        .boxed();
    let mut seen = BTreeSet::new();
    while seen.len() < 5 {
        seen.insert(next(&mut stream).await.expect("object").name_any());
    }
    fake.put(tls_secret("apps", "late")).expect("put");
    let late = next(&mut stream).await.expect("object");
    assert_eq!(late.name_any(), "late");
    assert!(fake.bytes_served(Verb::Watch, true) > 0);
    assert!(fake
        .requests()
        .iter()
        .any(|r| r.verb == Verb::Watch && r.metadata_only));
}

#[tokio::test]
async fn paged_list_is_a_consistent_snapshot_and_expires_with_compaction() {
    let fake = fake().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().expect("client"), "apps");
    for i in 0..7 {
        fake.put(configmap("apps", &format!("c{i}"))).expect("put");
    }
    let page1 = api
        .list(&ListParams::default().limit(3))
        .await
        .expect("page 1");
    assert_eq!(page1.items.len(), 3);
    assert_eq!(page1.metadata.remaining_item_count, Some(4));
    let token = page1.metadata.continue_.clone().expect("continue token");

    // Changes after page 1 are not visible in later pages of the same list.
    fake.put(configmap("apps", "c9")).expect("put");
    fake.delete("configmaps", "apps", "c5").expect("delete");

    let mut names: Vec<String> = page1.iter().map(|c| c.name_any()).collect();
    let mut next_token = Some(token.clone());
    while let Some(t) = next_token {
        let page = api
            .list(&ListParams::default().limit(3).continue_token(&t))
            .await
            .expect("next page");
        assert_eq!(
            page.metadata.resource_version,
            page1.metadata.resource_version
        );
        names.extend(page.iter().map(|c| c.name_any()));
        next_token = page.metadata.continue_.filter(|t| !t.is_empty());
    }
    assert_eq!(names, (0..7).map(|i| format!("c{i}")).collect::<Vec<_>>());

    fake.compact(fake.resource_version());
    let expired = api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await;
    assert_eq!(api_code(expired), 410);

    // kube's watcher pages its initial list and still sees everything.
    let objs: Vec<ConfigMap> = watcher(api, watcher::Config::default().page_size(2))
        .applied_objects()
        .take(7)
        .try_collect()
        .await
        .expect("watcher");
    assert_eq!(objs.len(), 7);
    let list_requests = fake
        .requests()
        .iter()
        .filter(|r| r.verb == Verb::List && r.query.contains("limit=2"))
        .count();
    assert_eq!(list_requests, 4, "7 objects in pages of 2");
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_end_bookmark() {
    let fake = fake().await;
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    for name in ["a", "b"] {
        fake.put(tls_secret("apps", name)).expect("put");
    }
    let mut stream = watcher(api, watcher::Config::default().streaming_lists()).boxed();
    let mut initial = BTreeSet::new();
    loop {
        match next(&mut stream).await.expect("event") {
            watcher::Event::Init => {}
            watcher::Event::InitApply(s) => {
                initial.insert(s.name_any());
            }
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(initial, BTreeSet::from(["a".to_string(), "b".to_string()]));
    fake.put(tls_secret("apps", "c")).expect("put");
    match next(&mut stream).await.expect("event") {
        watcher::Event::Apply(s) => assert_eq!(s.name_any(), "c"),
        other => panic!("unexpected {other:?}"),
    }
    let reqs = fake.requests();
    assert!(
        reqs.iter().all(|r| r.verb != Verb::List),
        "no list with streaming lists"
    );
    assert!(reqs
        .iter()
        .any(|r| r.query.contains("sendInitialEvents=true")));
}
