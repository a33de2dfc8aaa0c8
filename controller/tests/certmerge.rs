//! CertMerge resources through the fake API server: merged targets, tenancy,
//! conflicts, and members that cannot be published.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use support::*;

fn mk_certmerge(ns: &str, name: &str, target: &str, created: &str, spec_extra: Value) -> Value {
    let mut spec = json!({ "name": target });
    if let (Some(s), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        s.extend(extra.clone());
    }
    json!({
        "apiVersion": "certsync.istio.io/v1alpha1", "kind": "CertMerge",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": spec,
    })
}

fn labelled(mut secret: Value, key: &str, value: &str) -> Value {
    secret["metadata"]["labels"] = json!({ key: value });
    secret
}

#[tokio::test]
async fn a_certmerge_merges_selected_and_listed_secrets_into_one_target() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(labelled(mk_pair("shop", "a", P256, false), "merge", "yes"))
        .await;
    rig.put(mk_pair("blog", "b", RSA, false)).await;
    rig.put(labelled(
        mk_pair("shop", "unlabelled", P384, false),
        "merge",
        "no",
    ))
    .await;
    rig.server
        .put(mk_certmerge(GW, "gw-merge", "merged-certs", "2026-01-01T00:00:00Z", json!({
            "selector": [{"labelSelector": {"matchLabels": {"merge": "yes"}}, "namespace": "shop"}],
            "secretList": [{"name": "b", "namespace": "blog"}],
        })))
        .unwrap();
    rig.settle_certmerges(1).await;
    rig.reconcile().await;
    let merged = rig.published("merged-certs").expect("the merged target");
    assert_eq!(data_of(&merged, "shop.a.crt"), fixture!("p256.chain.pem"));
    assert_eq!(data_of(&merged, "blog.b.key"), fixture!("rsa.pkcs8.key"));
    assert!(merged["data"].get("shop.unlabelled.crt").is_none());
    assert_eq!(
        merged["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "cert-sync"
    );
}

#[tokio::test]
async fn two_claims_on_one_target_the_older_wins_and_the_newer_is_told() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, false)).await;
    rig.put(mk_pair("blog", "b", RSA, false)).await;
    let list = |ns: &str, name: &str| json!({"secretList": [{"name": name, "namespace": ns}]});
    rig.server
        .put(mk_certmerge(
            GW,
            "first",
            "shared",
            "2026-01-01T00:00:00Z",
            list("shop", "a"),
        ))
        .unwrap();
    rig.server
        .put(mk_certmerge(
            GW,
            "second",
            "shared",
            "2026-02-01T00:00:00Z",
            list("blog", "b"),
        ))
        .unwrap();
    rig.settle_certmerges(2).await;
    rig.reconcile().await;
    let shared = rig.published("shared").unwrap();
    assert!(shared["data"].get("shop.a.crt").is_some());
    assert!(
        shared["data"].get("blog.b.crt").is_none(),
        "the newer claim must not write"
    );
    let events = rig.events_about("second");
    assert!(
        events.iter().any(|e| e["reason"] == "TargetConflict"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_tenant_cannot_select_another_namespace_or_write_a_foreign_target() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, false)).await;
    rig.put(mk_pair("bank", "vault", RSA, false)).await;
    // Its own target, but reaching into another tenant's namespace.
    rig.server.put(mk_certmerge("shop", "grab", "shop.merged", "2026-01-01T00:00:00Z", json!({
        "secretList": [{"name": "a", "namespace": "shop"}, {"name": "vault", "namespace": "bank"}],
    }))).unwrap();
    // A target named like another tenant's.
    rig.server
        .put(mk_certmerge(
            "shop",
            "hijack",
            "bank.merged",
            "2026-01-01T00:00:00Z",
            json!({
                "secretList": [{"name": "a", "namespace": "shop"}],
            }),
        ))
        .unwrap();
    rig.settle_certmerges(2).await;
    rig.reconcile().await;
    let own = rig
        .published("shop.merged")
        .expect("its own namespace's member is published");
    assert!(own["data"].get("shop.a.crt").is_some());
    assert!(
        own["data"].get("bank.vault.crt").is_none(),
        "no cross-namespace selection"
    );
    assert!(rig.published("bank.merged").is_none(), "no foreign target");
    let grab = rig.events_about("grab");
    assert!(
        grab.iter().any(|e| e["reason"] == "CrossNamespace"),
        "{grab:?}"
    );
    let hijack = rig.events_about("hijack");
    assert!(
        hijack.iter().any(|e| e["reason"] == "TargetNotOwned"),
        "{hijack:?}"
    );
}

#[tokio::test]
async fn a_listed_secret_that_is_not_tls_is_refused_and_the_rest_published() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, false)).await;
    rig.server
        .put(
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "password", "namespace": "shop"}, "data": {"x": b64("hunter2")}}),
        )
        .unwrap();
    rig.server.put(mk_certmerge(GW, "m", "merged", "2026-01-01T00:00:00Z", json!({
        "secretList": [{"name": "a", "namespace": "shop"}, {"name": "password", "namespace": "shop"}],
    }))).unwrap();
    rig.settle_certmerges(1).await;
    let outcome = rig.reconcile().await;
    assert!(outcome.refusals >= 1);
    let merged = rig.published("merged").unwrap();
    assert!(merged["data"].get("shop.a.crt").is_some());
    assert!(merged["data"].get("shop.password.crt").is_none());
    assert_warned(&rig, "m", "NotTLS");
}

#[tokio::test]
async fn deleting_a_source_removes_what_was_published_for_it_and_nothing_else() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.put(mk_pair("shop", "b", RSA, true)).await;
    rig.reconcile().await;
    rig.server.delete("secrets", "shop", "a");
    rig.settle_deleted("shop", "a").await;
    let outcome = rig.reconcile().await;
    assert_eq!(outcome.deletes, 1);
    assert!(rig.published("shop.a").is_none());
    assert!(rig.published("shop.b").is_some());
}

#[tokio::test]
async fn the_certmerge_status_lists_members_and_says_whether_it_is_ready() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, false)).await;
    rig.put(mk_secret(
        "shop",
        "bad",
        fixture!("expired.crt"),
        fixture!("rsa.pkcs8.key"),
        false,
    ))
    .await;
    rig.server
        .put(mk_certmerge(GW, "m", "merged", "2026-01-01T00:00:00Z", json!({
            "secretList": [{"name": "a", "namespace": "shop"}, {"name": "bad", "namespace": "shop"}],
        })))
        .unwrap();
    rig.settle_certmerges(1).await;
    rig.reconcile().await;
    let m = rig
        .server
        .get("certmerges.certsync.istio.io", GW, "m")
        .unwrap();
    let status = &m["status"];
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{status}");
    assert_eq!(members[0]["source"], "shop/a");
    assert_eq!(members[0]["state"], "Published");
    assert_eq!(
        members[0]["sha256"],
        "ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a"
    );
    assert_eq!(members[1]["source"], "shop/bad");
    assert_eq!(members[1]["state"], "Expired");
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("MembersRefused"))
    );
    assert!(!serde_json::to_string(status).unwrap().contains("PRIVATE"));

    // Nothing changed: the status is not written again.
    let writes = rig
        .server
        .write_count("certmerges.certsync.istio.io", GW, "m");
    rig.reconcile().await;
    assert_eq!(
        rig.server
            .write_count("certmerges.certsync.istio.io", GW, "m"),
        writes
    );

    // Fixed: Ready.
    rig.put(mk_pair("shop", "bad", RSA, false)).await;
    rig.reconcile().await;
    let m = rig
        .server
        .get("certmerges.certsync.istio.io", GW, "m")
        .unwrap();
    let ready = m["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "True", "{}", m["status"]);
}
