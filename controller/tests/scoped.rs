//! Scoped passes against the fake API server: after each change, a pass
//! over what the watches journaled decides only the sources and targets
//! it affects, and a full pass right after finds nothing to do and the same
//! manifest and refusals: a scoped pass never decides differently from the
//! full one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use certsync_fakekube::{Fault, FaultMatch, Verb};
use support::*;

/// A full pass after the scoped one (`outcome`) decides the same: no write,
/// no delete, the same manifest and refusals.
async fn assert_full_pass_agrees(rig: &mut Rig, outcome: &Outcome) {
    let scoped = rig.publisher.publications().cloned().unwrap();
    let full = rig.reconcile().await;
    assert_eq!((full.writes, full.deletes), (0, 0), "after {outcome:?}");
    assert_eq!(full.refusals, outcome.refusals, "after {outcome:?}");
    assert_eq!(
        rig.publisher.publications().cloned().unwrap(),
        scoped,
        "after {outcome:?}"
    );
}

/// API requests since `since`, other than watches and Events.
fn requests_since(rig: &Rig, since: u64) -> Vec<String> {
    rig.server
        .requests()
        .iter()
        .filter(|r| r.seq > since && r.verb != Verb::Watch)
        .filter(|r| {
            !r.resource
                .as_deref()
                .unwrap_or_default()
                .starts_with("events")
        })
        .map(|r| format!("{:?} {}", r.verb, r.path))
        .collect()
}

fn last_seq(rig: &Rig) -> u64 {
    rig.server.requests().last().map_or(0, |r| r.seq)
}

#[tokio::test]
async fn each_change_is_decided_alone_and_as_the_full_pass_would() {
    let mut rig = Rig::new(credential_policy(), None).await;
    for i in 0..40 {
        let pair = [P256, RSA, ED25519][i % 3];
        rig.put(mk_pair("shop", &format!("s{i:02}"), pair, true))
            .await;
    }
    rig.put(mk_pair("blog", "plain", P256, false)).await;
    let first = rig.reconcile().await;
    assert_eq!((first.writes, first.scoped), (40, None));
    // Our own writes' echo: decided again, nothing to do.
    let echo = rig.reconcile_changed().await;
    assert_eq!(echo.writes + echo.deletes, 0);

    // A rotation: one source read, one Secret written; nothing listed.
    let since = last_seq(&rig);
    rig.put(mk_pair("shop", "s07", P384, true)).await;
    let outcome = rig.reconcile_changed().await;
    assert_eq!((outcome.scoped, outcome.writes), (Some(1), 1));
    let requests = requests_since(&rig, since);
    assert!(
        requests.iter().all(|r| !r.starts_with("List")),
        "{requests:?}"
    );
    assert!(
        requests.iter().filter(|r| r.contains("/secrets/")).count() <= 3,
        "the source's read, the target's apply (and the test's put): {requests:?}"
    );
    assert_eq!(
        data_of(&rig.published("shop.s07").unwrap(), "tls.crt"),
        fixture!("p384.chain.pem")
    );
    assert_full_pass_agrees(&mut rig, &outcome).await;

    // A bad update: refused, the last good stays, told once.
    rig.put(mk_secret(
        "shop",
        "s08",
        fixture!("rsa.chain.pem"),
        fixture!("p384.pkcs8.key"),
        true,
    ))
    .await;
    let outcome = rig.reconcile_changed().await;
    assert_eq!((outcome.scoped, outcome.writes), (Some(1), 0));
    assert_eq!(outcome.refusals, 1);
    assert_full_pass_agrees(&mut rig, &outcome).await;

    // A new source, an unannotated one and a deleted one, in one pass.
    rig.put(mk_pair("blog", "plain", RSA, true)).await;
    rig.put(mk_pair("shop", "s01", P256, false)).await;
    rig.server.delete("secrets", "shop", "s02").unwrap();
    rig.settle_deleted("shop", "s02").await;
    let outcome = rig.reconcile_changed().await;
    assert_eq!(outcome.scoped, Some(3));
    // (Deletes count as writes too.)
    assert_eq!((outcome.writes, outcome.deletes), (3, 2));
    assert!(rig.published("blog.plain").is_some());
    assert!(rig.published("shop.s01").is_none() && rig.published("shop.s02").is_none());
    assert_full_pass_agrees(&mut rig, &outcome).await;

    // Someone deletes a published Secret, or edits one: put back.
    rig.server.delete("secrets", GW, "shop.s03").unwrap();
    let mut edited = rig.published("shop.s04").unwrap();
    edited["data"]["tls.crt"] = json!("AAAA");
    rig.put(edited).await;
    let outcome = rig.reconcile_changed().await;
    assert_eq!(outcome.scoped, Some(2));
    assert_eq!(outcome.writes, 2);
    assert_full_pass_agrees(&mut rig, &outcome).await;

    // The manifest the recorder wrote from scoped passes is the full one's.
    rig.reconcile_changed().await;
    let manifest = rig.manifest();
    assert_eq!(manifest["publications"].as_array().unwrap().len(), 39);
}

#[tokio::test]
async fn a_change_a_certmerge_may_read_goes_to_the_full_pass() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.put(mk_pair("web", "b", RSA, false)).await;
    rig.put(json!({
        "apiVersion": "certsync.istio.io/v1alpha1", "kind": "CertMerge",
        "metadata": {"name": "bundle", "namespace": "web", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"name": "web-bundle", "secrets": ["b"]},
    }))
    .await;
    rig.settle_certmerges(1).await;
    rig.reconcile().await;
    rig.reconcile_changed().await;

    rig.put(mk_pair("web", "b", P384, false)).await;
    let outcome = rig.reconcile_changed().await;
    assert_eq!(outcome.scoped, None, "web is a CertMerge's namespace");
    rig.put(mk_pair("shop", "a", P384, true)).await;
    let outcome = rig.reconcile_changed().await;
    assert_eq!(outcome.scoped, Some(1));
    assert_full_pass_agrees(&mut rig, &outcome).await;
}

#[tokio::test]
async fn a_failed_scoped_pass_leaves_the_next_pass_full() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.reconcile().await;
    rig.reconcile_changed().await;
    rig.put(mk_pair("shop", "a", P384, true)).await;
    rig.server.inject(
        Fault::status(
            500,
            FaultMatch::object("secrets", GW, "shop.a").verb(Verb::Apply),
        )
        .times(1),
    );
    assert!(rig.publisher.pass_changed(&rig.ctx, NOW).await.is_err());
    // The journal was taken by the failed pass: only a full one can know.
    let outcome = rig.reconcile_changed().await;
    assert_eq!((outcome.scoped, outcome.writes), (None, 1));
}
