//! kube-rs' watcher against injected stream failures: a dropped stream is
//! resumed from the last resourceVersion (no relist); a restart or a
//! compaction yields 410 inside the stream, and the watcher relists and
//! converges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod common;

use std::collections::BTreeSet;

use certsync_fakekube::Verb;
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ResourceExt, WatchEvent, WatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;

fn names(store: &Store<Secret>) -> BTreeSet<String> {
    store.state().iter().map(|s| s.name_any()).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Runs a reflector in the background; returns its store and a counter of
/// watcher errors seen.
fn reflect(
    api: Api<Secret>,
) -> (
    Store<Secret>,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let (reader, writer) = reflector::store();
    let errors = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let errs = errors.clone();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()));
    let task = tokio::spawn(async move {
        let mut stream = stream.boxed();
        while let Some(ev) = stream.next().await {
            if ev.is_err() {
                errs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    (reader, errors, task)
}

#[tokio::test]
async fn watcher_resumes_after_dropped_stream_without_relisting() {
    let fake = fake().await;
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    fake.put(tls_secret("apps", "a")).expect("put");
    let (store, errors, task) = reflect(api);
    eventually("initial sync", || async { names(&store) == set(&["a"]) }).await;
    assert!(fake.wait_for_watches(1, WAIT).await);

    fake.drop_watches();
    fake.put(tls_secret("apps", "b")).expect("put");
    eventually("sync after drop", || async {
        names(&store) == set(&["a", "b"])
    })
    .await;

    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.verb == Verb::List).count(),
        1,
        "no relist"
    );
    assert!(
        reqs.iter().filter(|r| r.verb == Verb::Watch).count() >= 2,
        "re-watched"
    );
    assert_eq!(errors.load(std::sync::atomic::Ordering::SeqCst), 0);
    task.abort();
}

#[tokio::test]
async fn watcher_relists_after_restart_gone_and_converges() {
    let fake = fake().await;
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    fake.put(tls_secret("apps", "a")).expect("put");
    fake.put(tls_secret("apps", "b")).expect("put");
    let (store, errors, task) = reflect(api);
    eventually("initial sync", || async {
        names(&store) == set(&["a", "b"])
    })
    .await;
    assert!(fake.wait_for_watches(1, WAIT).await);

    // Changes made while the API server is "down" are seen only by a relist.
    fake.restart();
    fake.delete("secrets", "apps", "a").expect("delete");
    fake.put(tls_secret("apps", "c")).expect("put");
    eventually("converged after restart", || async {
        names(&store) == set(&["b", "c"])
    })
    .await;

    let reqs = fake.requests();
    assert_eq!(
        reqs.iter().filter(|r| r.verb == Verb::List).count(),
        2,
        "relisted once"
    );
    assert!(
        errors.load(std::sync::atomic::Ordering::SeqCst) >= 1,
        "410 surfaced"
    );

    // And it keeps following changes afterwards.
    fake.put(tls_secret("apps", "d")).expect("put");
    eventually("following again", || async {
        names(&store) == set(&["b", "c", "d"])
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn too_old_resource_version_is_an_in_stream_410() {
    let fake = fake().await;
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    fake.put(tls_secret("apps", "a")).expect("put");
    let old = fake.resource_version();
    fake.put(tls_secret("apps", "b")).expect("put");
    fake.compact(fake.resource_version());

    let mut events = api
        .watch(&WatchParams::default(), &old.to_string())
        .await
        .expect("watch starts with 200")
        .boxed();
    match next(&mut events).await.expect("event") {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected ERROR, got {other:?}"),
    }
    let end = tokio::time::timeout(WAIT, events.next())
        .await
        .expect("stream ends");
    assert!(end.is_none(), "stream closed after the error");

    // The current resourceVersion is still fine.
    let mut ok = api
        .watch(
            &WatchParams::default(),
            &fake.resource_version().to_string(),
        )
        .await
        .expect("watch")
        .boxed();
    fake.put(tls_secret("apps", "c")).expect("put");
    assert!(matches!(next(&mut ok).await, Ok(WatchEvent::Added(s)) if s.name_any() == "c"));
}

#[tokio::test]
async fn watch_honours_timeout_and_sends_bookmarks() {
    let options = certsync_fakekube::Options {
        bookmark_interval: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let fake = certsync_fakekube::FakeApiServer::start_with(options)
        .await
        .expect("start");
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    let from = fake.resource_version();
    let mut events = api
        .watch(&WatchParams::default().timeout(1), &from.to_string())
        .await
        .expect("watch")
        .boxed();
    // A write elsewhere advances the revision; the idle watcher learns it by bookmark.
    fake.put(tls_secret("elsewhere", "x")).expect("put");
    match next(&mut events).await.expect("event") {
        WatchEvent::Bookmark(b) => {
            assert!(b.metadata.resource_version.parse::<u64>().expect("rv") > from)
        }
        other => panic!("expected BOOKMARK, got {other:?}"),
    }
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(ev) = events.next().await {
            ev.expect("only bookmarks");
        }
    })
    .await;
    assert!(ended.is_ok(), "stream ended by timeoutSeconds");
}
