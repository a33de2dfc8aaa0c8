//! Bad input, kind by kind: each refusal is a Warning Event with its reason on
//! the source, and what was published before stays byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::sync::Notify;

/// A source first published good, then updated to `bad`.
async fn refused_update(bad_crt: &str, bad_key: Option<&str>, reason: &str) {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    rig.reconcile().await;
    let before = rig
        .published("shop.tls")
        .expect("the good version is published");
    let writes = rig.server.write_count("secrets", GW, "shop.tls");

    let mut bad = mk_secret("shop", "tls", bad_crt, bad_key.unwrap_or(""), true);
    if bad_key.is_none() {
        bad["data"].as_object_mut().unwrap().remove("tls.key");
    }
    rig.put(bad).await;
    let outcome = rig.reconcile().await;
    assert!(outcome.refusals >= 1, "{reason}: refused");
    let after = rig.published("shop.tls").unwrap();
    assert_eq!(
        after["data"], before["data"],
        "{reason}: the last good pair stays"
    );
    assert_eq!(
        rig.server.write_count("secrets", GW, "shop.tls"),
        writes,
        "{reason}: no write"
    );
    assert_warned(&rig, "tls", reason);
    assert_no_key_material(&rig);
}

#[tokio::test]
async fn an_annotated_secret_that_is_not_tls_is_refused_with_an_event() {
    use certsync_controller::runtime::kube::sweep;
    let mut rig = Rig::new(credential_policy(), None).await;
    let mut opaque = mk_pair("shop", "plain", P256, true);
    opaque["type"] = json!("Opaque");
    // Outside the TLS watch: nothing to settle on but the Secret after it.
    rig.server.put(opaque).unwrap();
    let mut other = mk_pair("shop", "not-asked", P256, false);
    other["type"] = json!("Opaque");
    rig.server.put(other).unwrap();
    rig.put(mk_pair("shop", "good", P256, true)).await;
    let client = rig.server.client().unwrap();
    let poked = Arc::new(Notify::new());
    let found = rig.stores.non_tls.clone();
    let _sweep = sweep::spawn(&client, found.clone(), sweep::EVERY, Arc::clone(&poked));
    tokio::time::timeout(Duration::from_secs(5), poked.notified())
        .await
        .expect("the sweep reports what it found");
    let keys: Vec<String> = found.current().iter().map(|m| m.key.to_string()).collect();
    assert_eq!(keys, ["shop/plain"], "annotated ones only");

    let outcome = rig.reconcile().await;
    assert_eq!(outcome.refusals, 1);
    assert!(rig.published("shop.plain").is_none());
    assert!(rig.published("shop.good").is_some(), "the others go on");
    assert_warned(&rig, "plain", "NotTLS");
    let reads = rig
        .server
        .requests()
        .into_iter()
        .filter(|r| r.name.as_deref() == Some("plain"))
        .count();
    assert_eq!(reads, 0, "its data is never read");
    assert_no_key_material(&rig);
}

#[tokio::test]
async fn the_sweep_pages_through_every_other_secret() {
    use certsync_controller::runtime::kube::sweep;
    let server = FakeApiServer::start().await.unwrap();
    let opaque: Vec<Value> = (0..450)
        .map(|i| {
            let mut s = mk_pair(
                &format!("ns{}", i % 7),
                &format!("s{i:03}"),
                P256,
                i % 50 == 0,
            );
            s["type"] = json!("Opaque");
            s
        })
        .collect();
    server.put_all(Value::Array(opaque)).unwrap();
    server.put(mk_pair("shop", "tls", P256, true)).unwrap();
    let found = sweep::annotated_non_tls(&server.client().unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = found.iter().map(|m| m.key.name.as_str()).collect();
    assert_eq!(
        names,
        ["s000", "s350", "s050", "s400", "s100", "s150", "s200", "s250", "s300"],
        "sorted by namespace, then name; TLS Secrets are not its business"
    );
    let lists = server
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("secrets"))
        .count();
    assert!(lists >= 3, "200 a page: {lists} requests");
}

/// Time alone turns a published certificate bad: the hourly re-check
/// refuses it from what it checked before (no read of the unchanged
/// Secret), and it stays published as the last good until it is replaced.
#[tokio::test]
async fn a_certificate_expiring_while_published_is_refused_at_the_hourly_recheck() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    rig.reconcile().await;
    let before = rig.published("shop.tls").unwrap();
    let not_after = certsync_contract::summarize_chain(P256.cert.as_bytes())
        .unwrap()
        .not_after;

    let next_hour = rig.pass(NOW + 3600).await.unwrap();
    assert_eq!(next_hour.reads, 0, "an unchanged Secret is not read again");
    assert_eq!(next_hour.refusals, 0);

    let expired = rig.pass(not_after + 1).await.unwrap();
    assert_eq!(expired.reads, 0);
    assert_eq!(expired.refusals, 1);
    assert_eq!(expired.writes, 0);
    assert_eq!(rig.published("shop.tls").unwrap()["data"], before["data"]);
    assert_warned(&rig, "tls", "Expired");
}

#[tokio::test]
async fn garbage_pem() {
    refused_update(
        "garbage",
        Some(fixture!("p256.pkcs8.key")),
        "MalformedCertificate",
    )
    .await;
}

#[tokio::test]
async fn key_and_certificate_do_not_match() {
    refused_update(
        fixture!("rsa.chain.pem"),
        Some(fixture!("p256.pkcs8.key")),
        "KeyMismatch",
    )
    .await;
}

#[tokio::test]
async fn expired_certificate() {
    refused_update(
        fixture!("expired.crt"),
        Some(fixture!("rsa.pkcs8.key")),
        "Expired",
    )
    .await;
}

#[tokio::test]
async fn not_yet_valid_certificate() {
    refused_update(
        fixture!("future.crt"),
        Some(fixture!("rsa.pkcs8.key")),
        "NotYetValid",
    )
    .await;
}

#[tokio::test]
async fn missing_tls_key() {
    refused_update(fixture!("p384.chain.pem"), None, "MissingKey").await;
}

#[tokio::test]
async fn oversized_certificate() {
    let huge = fixture!("p384.chain.pem").repeat(200);
    refused_update(&huge, Some(fixture!("p384.pkcs8.key")), "TooLarge").await;
}

#[tokio::test]
async fn encrypted_key_is_unsupported() {
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
    refused_update(
        fixture!("p384.chain.pem"),
        Some(encrypted),
        "UnsupportedKey",
    )
    .await;
}

#[tokio::test]
async fn chain_in_the_wrong_order() {
    refused_update(
        fixture!("p256.reversed.pem"),
        Some(fixture!("p256.pkcs8.key")),
        "ChainOrder",
    )
    .await;
}

#[tokio::test]
async fn key_pasted_into_the_certificate_slot() {
    refused_update(
        fixture!("p256.pkcs8.key"),
        Some(fixture!("p256.chain.pem")),
        "MalformedCertificate",
    )
    .await;
}

#[tokio::test]
async fn annotation_removed_while_invalid_unpublishes() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    rig.reconcile().await;
    rig.put(mk_secret("shop", "tls", "garbage", "garbage", true))
        .await;
    rig.reconcile().await;
    assert!(rig.published("shop.tls").is_some(), "kept while invalid");
    rig.put(mk_secret("shop", "tls", "garbage", "garbage", false))
        .await;
    rig.reconcile().await;
    assert!(rig.published("shop.tls").is_none(), "deselected: removed");
}

#[tokio::test]
async fn a_never_published_invalid_source_publishes_nothing() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_secret(
        "shop",
        "tls",
        fixture!("expired.crt"),
        fixture!("rsa.pkcs8.key"),
        true,
    ))
    .await;
    let outcome = rig.reconcile().await;
    assert_eq!(outcome.writes, 0);
    assert!(rig.published("shop.tls").is_none());
}
