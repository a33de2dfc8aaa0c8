//! Injected faults as the kube client sees them: 429 with Retry-After (and
//! kube 5's built-in retry honouring it), 500, one-shot failures on one
//! object, added latency, and a PDB-like eviction refusal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod common;

use std::time::{Duration, Instant};

use certsync_fakekube::{Fault, FaultMatch, Verb};
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, EvictParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn throttling_is_seen_by_the_client_with_retry_after() {
    let fake = fake().await;
    fake.put(tls_secret("apps", "a")).expect("put");

    // Without kube's retry layer the 429 reaches the caller.
    let api: Api<Secret> = Api::namespaced(client_without_retry(&fake), "apps");
    fake.throttle_next(1, 7, FaultMatch::any().verb(Verb::Get).resource("secrets"));
    match api.get("a").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"))
        }
        other => panic!("expected 429, got {other:?}"),
    }
    api.get("a")
        .await
        .expect("only the next request was throttled");

    // kube 5's default client retries 429 and waits for Retry-After.
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "apps");
    fake.throttle_next(1, 1, FaultMatch::any().verb(Verb::Get));
    let started = Instant::now();
    api.get("a").await.expect("retried after Retry-After");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
    let statuses: Vec<(u16, bool)> = fake
        .requests()
        .iter()
        .rev()
        .take(2)
        .map(|r| (r.status, r.injected))
        .collect();
    assert_eq!(statuses, [(200, false), (429, true)]);
}

#[tokio::test]
async fn server_errors_reach_the_client_and_stop_after_k() {
    let fake = fake().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().expect("client"), "apps");
    let cm = api
        .create(&PostParams::default(), &configmap("apps", "c"))
        .await
        .expect("create");
    fake.fail_next(2, 500, FaultMatch::any().verb(Verb::Update));
    for _ in 0..2 {
        assert_eq!(
            api_code(api.replace("c", &PostParams::default(), &cm).await),
            500
        );
    }
    api.replace("c", &PostParams::default(), &cm)
        .await
        .expect("third update goes through");
    assert_eq!(
        fake.write_count("configmaps", "apps", "c"),
        1,
        "failed writes changed nothing"
    );
}

#[tokio::test]
async fn one_shot_fault_hits_only_the_chosen_object_once() {
    let fake = fake().await;
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "istio-system");
    let foo = fake.put(tls_secret("istio-system", "foo")).expect("put");
    let bar = fake.put(tls_secret("istio-system", "bar")).expect("put");
    let foo: Secret = serde_json::from_value(foo).expect("secret");
    let bar: Secret = serde_json::from_value(bar).expect("secret");
    fake.fail_once(Verb::Update, "secrets", "istio-system", "foo", 409);

    api.get("foo").await.expect("other verbs are not affected");
    api.replace("bar", &PostParams::default(), &bar)
        .await
        .expect("other objects are not affected");
    match api.replace("foo", &PostParams::default(), &foo).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("expected the injected 409, got {other:?}"),
    }
    api.replace("foo", &PostParams::default(), &foo)
        .await
        .expect("fires only once");
    let injected: Vec<_> = fake.requests().into_iter().filter(|r| r.injected).collect();
    assert_eq!(injected.len(), 1);
    assert_eq!(injected[0].name.as_deref(), Some("foo"));
}

#[tokio::test]
async fn latency_applies_to_matching_requests_until_removed() {
    let fake = fake().await;
    fake.put(configmap("apps", "c")).expect("put");
    fake.put(tls_secret("apps", "s")).expect("put");
    let client = fake.client().expect("client");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    let secrets: Api<Secret> = Api::namespaced(client, "apps");
    cms.get("c").await.expect("warm up the connection");

    let id = fake.add_latency(
        Duration::from_millis(80),
        FaultMatch::any().resource("configmaps"),
    );
    let t = Instant::now();
    cms.get("c").await.expect("get");
    assert!(t.elapsed() >= Duration::from_millis(80));
    let t = Instant::now();
    secrets.get("s").await.expect("get");
    assert!(
        t.elapsed() < Duration::from_millis(80),
        "other resources are not delayed"
    );
    fake.remove_fault(id);
    let t = Instant::now();
    cms.get("c").await.expect("get");
    assert!(t.elapsed() < Duration::from_millis(80));
}

#[tokio::test]
async fn eviction_refused_like_a_disruption_budget() {
    let fake = fake().await;
    fake.put(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gw-1", "namespace": "istio-system"},
        "spec": {"containers": [{"name": "istio-proxy"}]}
    }))
    .expect("put pod");
    let api: Api<Pod> = Api::namespaced(client_without_retry(&fake), "istio-system");
    let pdb = fake.inject(Fault::status(
        429,
        FaultMatch::any().resource("pods").subresource("eviction"),
    ));
    match api.evict("gw-1", &EvictParams::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 429);
            assert!(s.message.contains("disruption budget"));
        }
        other => panic!("expected refusal, got {other:?}"),
    }
    assert!(fake.get("pods", "istio-system", "gw-1").is_some());
    assert!(fake.evictions().is_empty());
    fake.remove_fault(pdb);
    api.evict("gw-1", &EvictParams::default())
        .await
        .expect("evict");
    assert!(fake.get("pods", "istio-system", "gw-1").is_none());
}
