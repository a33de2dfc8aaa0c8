//! Writes through a real kube `Client`: server-side apply and managedFields,
//! optimistic concurrency, not-found handling, a Lease loop, and a custom
//! resource with a status subresource.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod common;

use certsync_fakekube::{field_managers, Verb};
use common::*;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{
    Api, DeleteParams, EvictParams, ObjectMeta, Patch, PatchParams, PostParams, ResourceExt,
    WatchEvent, WatchParams,
};
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::json;

fn applied_cm(data: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "manifest", "namespace": "istio-system"},
        "data": data,
    })
}

#[tokio::test]
async fn server_side_apply_creates_merges_and_skips_no_ops() {
    let fake = fake().await;
    let api: Api<ConfigMap> = Api::namespaced(fake.client().expect("client"), "istio-system");
    let pp = PatchParams::apply("cert-sync");

    let created = api
        .patch(
            "manifest",
            &pp,
            &Patch::Apply(applied_cm(json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("apply creates");
    assert_eq!(
        field_managers(&serde_json::to_value(&created).expect("json")),
        vec![("cert-sync".to_string(), "Apply".to_string())]
    );
    let first = rv(&created);

    // The same apply again: no new resourceVersion, no write, no event.
    let mut events = api
        .watch(&WatchParams::default().timeout(30), &first.to_string())
        .await
        .expect("watch")
        .boxed();
    let same = api
        .patch(
            "manifest",
            &pp,
            &Patch::Apply(applied_cm(json!({"a": "1", "b": "2"}))),
        )
        .await
        .expect("no-op apply");
    assert_eq!(rv(&same), first);
    assert_eq!(fake.resource_version(), first);
    assert_eq!(
        fake.write_count("configmaps", "istio-system", "manifest"),
        1
    );
    assert_eq!(
        fake.write_requests("configmaps", "istio-system", "manifest"),
        2
    );

    // Dropping a field the manager applied before removes it.
    let changed = api
        .patch(
            "manifest",
            &pp,
            &Patch::Apply(applied_cm(json!({"a": "1"}))),
        )
        .await
        .expect("apply");
    assert!(rv(&changed) > first);
    assert_eq!(
        changed.data,
        Some([("a".to_string(), "1".to_string())].into())
    );
    match next(&mut events).await.expect("event") {
        WatchEvent::Modified(cm) => {
            assert_eq!(rv(&cm), rv(&changed), "first event is the real change")
        }
        other => panic!("unexpected {other:?}"),
    }

    // Another manager changing an owned field conflicts unless forced.
    let other = PatchParams::apply("kubectl");
    let conflict = api
        .patch(
            "manifest",
            &other,
            &Patch::Apply(applied_cm(json!({"a": "9"}))),
        )
        .await;
    assert_eq!(api_code(conflict), 409);
    let forced = api
        .patch(
            "manifest",
            &other.clone().force(),
            &Patch::Apply(applied_cm(json!({"a": "9"}))),
        )
        .await
        .expect("forced apply");
    let value = serde_json::to_value(&forced).expect("json");
    assert_eq!(
        field_managers(&value),
        vec![("kubectl".to_string(), "Apply".to_string())]
    );

    let apply_requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Apply)
        .collect();
    assert_eq!(apply_requests.len(), 5);
    assert_eq!(
        apply_requests[0].field_manager.as_deref(),
        Some("cert-sync")
    );
    assert_eq!(apply_requests[0].status, 201);

    let missing_manager = api
        .patch(
            "manifest",
            &PatchParams::default(),
            &Patch::Apply(applied_cm(json!({}))),
        )
        .await;
    assert_eq!(api_code(missing_manager), 422);
}

#[tokio::test]
async fn stale_resource_version_conflicts_and_missing_objects_are_not_found() {
    let fake = fake().await;
    let api: Api<Secret> = Api::namespaced(fake.client().expect("client"), "istio-system");
    let created = api
        .create(&PostParams::default(), &tls_secret("istio-system", "foo"))
        .await
        .expect("create");
    let dup = api
        .create(&PostParams::default(), &tls_secret("istio-system", "foo"))
        .await;
    match dup {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }

    let mut fresh = created.clone();
    fresh.labels_mut().insert("v".into(), "2".into());
    let updated = api
        .replace("foo", &PostParams::default(), &fresh)
        .await
        .expect("replace at current resourceVersion");
    assert!(rv(&updated) > rv(&created));

    let mut stale = created.clone();
    stale.labels_mut().insert("v".into(), "3".into());
    match api.replace("foo", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(s.message.contains("the object has been modified"));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    let stale_patch = api
        .patch(
            "foo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": created.resource_version()}})),
        )
        .await;
    assert_eq!(api_code(stale_patch), 409);
    assert_eq!(api_code(api.get("nope").await), 404);
    assert_eq!(
        api_code(api.delete("nope", &DeleteParams::default()).await),
        404
    );
    assert!(api.get_opt("nope").await.expect("get_opt").is_none());
    api.delete("foo", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(fake.get("secrets", "istio-system", "foo").is_none());
    assert_eq!(fake.write_count("secrets", "istio-system", "foo"), 3);
}

/// `Patch::Json` needs kube's `jsonpatch` feature; a raw request exercises
/// the same server path.
#[tokio::test]
async fn json_patch_and_strategic_merge_patch() {
    let fake = fake().await;
    let client = fake.client().expect("client");
    fake.put(configmap("apps", "c")).expect("put");
    let req = hyper::http::Request::patch("/api/v1/namespaces/apps/configmaps/c")
        .header("Content-Type", "application/json-patch+json")
        .body(
            serde_json::to_vec(&json!([
                {"op": "add", "path": "/data/x", "value": "1"},
                {"op": "remove", "path": "/data/k"}
            ]))
            .expect("json"),
        )
        .expect("request");
    let out: ConfigMap = client.request(req).await.expect("json patch");
    assert_eq!(out.data, Some([("x".to_string(), "1".to_string())].into()));

    let api: Api<ConfigMap> = Api::namespaced(client, "apps");
    let out = api
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"y": "2"}})),
        )
        .await
        .expect("strategic");
    assert_eq!(out.data.map(|d| d.len()), Some(2));
}

#[tokio::test]
async fn lease_loop_acquires_renews_and_loses_races() {
    let fake = fake().await;
    let api: Api<Lease> = Api::namespaced(fake.client().expect("client"), "istio-system");

    async fn try_acquire(api: &Api<Lease>, me: &str) -> Result<bool, kube::Error> {
        match api.get_opt("cert-sync-leader").await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some("cert-sync-leader".into()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.into()),
                        lease_duration_seconds: Some(15),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(Default::default);
                if spec.holder_identity.as_deref() != Some(me) {
                    return Ok(false);
                }
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                match api
                    .replace("cert-sync-leader", &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }

    assert!(try_acquire(&api, "a").await.expect("a acquires"));
    assert!(!try_acquire(&api, "b").await.expect("b is refused"));
    assert!(try_acquire(&api, "a").await.expect("a renews"));

    // b read the lease, then a renewed: b's takeover write is stale.
    let mut seen_by_b = api.get("cert-sync-leader").await.expect("get");
    assert!(try_acquire(&api, "a").await.expect("a renews"));
    if let Some(spec) = seen_by_b.spec.as_mut() {
        spec.holder_identity = Some("b".into());
    }
    let takeover = api
        .replace("cert-sync-leader", &PostParams::default(), &seen_by_b)
        .await;
    assert_eq!(api_code(takeover), 409);
    let lease = api.get("cert-sync-leader").await.expect("get");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("a")
    );
    assert_eq!(
        fake.write_count("leases", "istio-system", "cert-sync-leader"),
        3
    );
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "certsync.istio.io",
    version = "v1alpha1",
    kind = "CertMerge",
    namespaced,
    status = "CertMergeStatus",
    schema = "disabled"
)]
pub struct CertMergeSpec {
    pub secret_name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct CertMergeStatus {
    pub members: u32,
}

#[tokio::test]
async fn custom_resource_with_status_subresource() {
    let fake = fake().await;
    let api: Api<CertMerge> = Api::namespaced(fake.client().expect("client"), "istio-system");
    let mut cm = CertMerge::new(
        "merge",
        CertMergeSpec {
            secret_name: "out".into(),
        },
    );
    cm.status = Some(CertMergeStatus { members: 7 });
    let created = api
        .create(&PostParams::default(), &cm)
        .await
        .expect("create");
    assert_eq!(
        created.status, None,
        "status is not set through the main resource"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let patched = api
        .patch_status(
            "merge",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"members": 2}, "spec": {"secret_name": "ignored"}})),
        )
        .await
        .expect("patch status");
    assert_eq!(patched.status, Some(CertMergeStatus { members: 2 }));
    assert_eq!(
        patched.spec.secret_name, "out",
        "status writes change only status"
    );
    assert_eq!(patched.metadata.generation, Some(1));

    let mut edit = patched.clone();
    edit.spec.secret_name = "renamed".into();
    edit.status = Some(CertMergeStatus { members: 99 });
    let replaced = api
        .replace("merge", &PostParams::default(), &edit)
        .await
        .expect("replace");
    assert_eq!(replaced.spec.secret_name, "renamed");
    assert_eq!(
        replaced.status,
        Some(CertMergeStatus { members: 2 }),
        "status ignored"
    );
    assert_eq!(replaced.metadata.generation, Some(2));

    // The merge patch above made "unknown" (no fieldManager, no User-Agent)
    // own .status.members, so a plain apply conflicts; controllers force.
    let status = Patch::Apply(json!({
        "apiVersion": "certsync.istio.io/v1alpha1",
        "kind": "CertMerge",
        "status": {"members": 3}
    }));
    let conflict = api
        .patch_status("merge", &PatchParams::apply("cert-sync"), &status)
        .await;
    assert_eq!(api_code(conflict), 409);
    let applied = api
        .patch_status("merge", &PatchParams::apply("cert-sync").force(), &status)
        .await
        .expect("apply status");
    assert_eq!(applied.status, Some(CertMergeStatus { members: 3 }));
    let managed = applied.metadata.managed_fields.unwrap_or_default();
    assert!(managed
        .iter()
        .any(|m| m.manager.as_deref() == Some("cert-sync")
            && m.subresource.as_deref() == Some("status")));
}

#[tokio::test]
async fn eviction_deletes_the_pod_and_is_recorded() {
    let fake = fake().await;
    let api: Api<Pod> = Api::namespaced(fake.client().expect("client"), "istio-system");
    fake.put(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gw-1", "namespace": "istio-system", "labels": {"istio": "ingressgateway"}},
        "spec": {"containers": [{"name": "istio-proxy", "image": "proxyv2"}]},
        "status": {"phase": "Running"}
    }))
    .expect("put pod");
    let pod = api.get("gw-1").await.expect("get");
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));

    api.evict("gw-1", &EvictParams::default())
        .await
        .expect("evict");
    assert!(api.get_opt("gw-1").await.expect("get").is_none());
    let evictions = fake.evictions();
    assert_eq!(evictions.len(), 1);
    assert_eq!(
        (evictions[0].namespace.as_str(), evictions[0].name.as_str()),
        ("istio-system", "gw-1")
    );
}

#[tokio::test]
async fn kube_event_recorder_creates_then_patches_a_series() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};

    let fake = fake().await;
    let recorder = Recorder::new(
        fake.client().expect("client"),
        Reporter {
            controller: "cert-sync".into(),
            instance: None,
        },
    );
    let source = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        namespace: Some("apps".into()),
        name: Some("web-tls".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: "InvalidCertificate".into(),
        note: Some("key does not match certificate".into()),
        action: "Validate".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &source)
        .await
        .expect("first publish creates");
    recorder
        .publish(&event, &source)
        .await
        .expect("second publish patches");

    let events = fake.list("events.events.k8s.io", Some("apps"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "InvalidCertificate");
    assert_eq!(events[0]["series"]["count"], 2);
    let verbs: Vec<Verb> = fake.requests().iter().map(|r| r.verb).collect();
    assert_eq!(verbs, [Verb::Create, Verb::Patch]);
}

#[tokio::test]
async fn config_map_and_secret_data_over_one_mebibyte_is_invalid() {
    let fake = fake().await;
    let client = fake.client().expect("client");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "istio-system");
    let pp = PatchParams::apply("cert-sync");
    let big = "x".repeat(1024 * 1024);
    for (name, data) in [("apply", json!({"m": big})), ("ok", json!({"m": "small"}))] {
        let mut body = applied_cm(data);
        body["metadata"]["name"] = json!(name);
        let result = configmaps.patch(name, &pp, &Patch::Apply(body)).await;
        if name == "ok" {
            result.expect("a small ConfigMap is accepted");
            continue;
        }
        match result {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422);
                assert!(status.message.contains("Too long"), "{}", status.message);
            }
            other => panic!("expected 422, got {other:?}"),
        }
    }
    // An update that grows past the limit is refused too; the object stays.
    let grown = applied_cm(json!({"m": "x".repeat(600 * 1024), "n": "y".repeat(600 * 1024)}));
    let mut grown = grown;
    grown["metadata"]["name"] = json!("ok");
    assert!(configmaps
        .patch("ok", &pp, &Patch::Apply(grown))
        .await
        .is_err());
    assert_eq!(
        configmaps.get("ok").await.unwrap().data.unwrap()["m"],
        "small"
    );
    // Secrets count decoded bytes: 1 MiB of base64 is 768 KiB of data.
    let secrets: Api<Secret> = Api::namespaced(client, "istio-system");
    let secret = |name: &str, len: usize| {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "namespace": "istio-system"},
               "data": {"k": "QUFB".repeat(len / 4)}})
    };
    secrets
        .patch("fits", &pp, &Patch::Apply(secret("fits", 1024 * 1024)))
        .await
        .expect("768 KiB of data fits");
    assert!(secrets
        .patch("big", &pp, &Patch::Apply(secret("big", 1400 * 1024)))
        .await
        .is_err());
}
