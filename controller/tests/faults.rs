//! Faults between the controller and the API server: a write failing mid-way
//! (the controller killed between two writes), conflicts, throttling, server
//! errors, dropped watches and an API server restart. Each published Secret
//! is always a complete, matching pair, and the controller converges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use certsync_controller::app::Error as ReconcileError;
use certsync_fakekube::{Fault, FaultMatch, Verb};
use support::*;

/// Every published credential Secret holds a cert and key that belong together.
fn assert_consistent_pairs(rig: &Rig) {
    use base64::Engine;
    for secret in rig.server.list("secrets", Some(GW)) {
        if secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "cert-sync" {
            continue;
        }
        let get = |k: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(secret["data"][k].as_str().unwrap_or(""))
                .unwrap()
        };
        certsync_contract::key::check_matches(&get("tls.crt"), &get("tls.key")).unwrap();
        let sha = certsync_contract::summarize_chain(&get("tls.crt"))
            .unwrap()
            .sha256
            .to_string();
        assert_eq!(
            secret["metadata"]["annotations"]["certsync.istio.io/source-sha256"],
            sha
        );
    }
}

async fn two_sources(rig: &Rig) {
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.put(mk_pair("shop", "b", RSA, true)).await;
}

#[tokio::test]
async fn a_write_failing_between_two_publications_leaves_whole_pairs_and_is_retried() {
    let mut rig = Rig::new(credential_policy(), None).await;
    two_sources(&rig).await;
    rig.server
        .fail_once(Verb::Apply, "secrets", GW, "shop.b", 500);
    let failed = rig.pass(NOW).await;
    assert!(failed.is_err(), "the failure surfaces, so the loop retries");
    assert!(rig.published("shop.a").is_some());
    assert!(rig.published("shop.b").is_none(), "nothing half-written");
    assert_consistent_pairs(&rig);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    rig.reconcile().await;
    assert!(rig.published("shop.b").is_some());
    assert_consistent_pairs(&rig);
}

/// The bytes written are the bytes checked: a rotation that lands between
/// cert-sync's check of a source and its write (here a broken one, whose key
/// does not match) is not published on the strength of the earlier check.
#[tokio::test]
async fn a_source_changed_between_its_check_and_the_write_is_checked_again_first() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.reconcile().await;

    rig.put(mk_pair("shop", "a", P384, true)).await;
    // The first GET (the check) sees P384; the broken rotation lands just
    // before the second (the write reading the bytes again).
    let broken = mk_secret("shop", "a", P384.cert, RSA.key, true);
    rig.server.inject(
        Fault::write(
            broken,
            FaultMatch::object("secrets", "shop", "a").verb(Verb::Get),
        )
        .skip(1)
        .times(1),
    );
    let raced = rig.pass(NOW).await;
    assert!(
        matches!(&raced, Err(ReconcileError::DataChanged(s)) if s == &["shop.a"]),
        "{raced:?}"
    );
    let published = |rig: &Rig| data_of(&rig.published("shop.a").unwrap(), "tls.crt");
    assert_eq!(
        published(&rig),
        P256.cert,
        "nothing written from the raced read"
    );
    assert_consistent_pairs(&rig);

    // The next pass checks what is there now: refused, the last good stays.
    rig.settle().await;
    rig.reconcile().await;
    assert_eq!(published(&rig), P256.cert);
    assert_consistent_pairs(&rig);
    assert!(
        rig.events_about("a")
            .iter()
            .any(|e| e["reason"] == "KeyMismatch"),
        "the owner learns why"
    );

    rig.put(mk_pair("shop", "a", P384, true)).await;
    rig.reconcile().await;
    assert_eq!(published(&rig), P384.cert);
    assert_consistent_pairs(&rig);
}

#[tokio::test]
async fn a_conflict_is_retried_on_the_next_reconcile() {
    let mut rig = Rig::new(credential_policy(), None).await;
    two_sources(&rig).await;
    rig.server
        .fail_once(Verb::Apply, "secrets", GW, "shop.a", 409);
    assert!(rig.pass(NOW).await.is_err());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    rig.reconcile().await;
    assert!(rig.published("shop.a").is_some() && rig.published("shop.b").is_some());
}

#[tokio::test]
async fn server_errors_fail_the_reconcile_and_nothing_is_lost_once_they_stop() {
    let mut rig = Rig::new(credential_policy(), None).await;
    two_sources(&rig).await;
    rig.reconcile().await;
    rig.put(mk_pair("shop", "a", P384, true)).await;
    rig.server
        .fail_next(3, 500, FaultMatch::any().verb(Verb::Apply));
    for _ in 0..3 {
        assert!(rig.pass(NOW).await.is_err());
        assert_eq!(
            data_of(&rig.published("shop.a").unwrap(), "tls.crt"),
            fixture!("p256.chain.pem")
        );
    }
    rig.reconcile().await;
    assert_eq!(
        data_of(&rig.published("shop.a").unwrap(), "tls.crt"),
        fixture!("p384.chain.pem")
    );
    assert_consistent_pairs(&rig);
}

#[tokio::test]
async fn a_dropped_watch_and_an_api_server_restart_converge() {
    let mut rig = Rig::new(credential_policy(), None).await;
    two_sources(&rig).await;
    rig.reconcile().await;

    rig.server.drop_watches();
    rig.put(mk_pair("shop", "a", P384, true)).await;
    rig.reconcile().await;
    assert_eq!(
        data_of(&rig.published("shop.a").unwrap(), "tls.crt"),
        fixture!("p384.chain.pem")
    );

    // Restart: every resourceVersion the watches hold is now too old (410 → relist).
    rig.server.restart();
    rig.put(mk_pair("shop", "b", ED25519, true)).await;
    rig.put(mk_pair("shop", "c", P256, true)).await;
    rig.reconcile().await;
    assert_eq!(
        data_of(&rig.published("shop.b").unwrap(), "tls.crt"),
        fixture!("ed25519.chain.pem")
    );
    assert!(rig.published("shop.c").is_some());
    assert_consistent_pairs(&rig);
}

#[tokio::test]
async fn throttling_reaches_the_controller_as_a_retryable_failure() {
    let mut rig = Rig::new(credential_policy(), None).await;
    two_sources(&rig).await;
    rig.server
        .throttle_next(2, 1, FaultMatch::any().verb(Verb::Apply));
    // kube's client honours Retry-After itself; either way the pairs end up published.
    let _ = rig.pass(NOW).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    rig.reconcile().await;
    assert!(rig.published("shop.a").is_some() && rig.published("shop.b").is_some());
    assert_consistent_pairs(&rig);
}
