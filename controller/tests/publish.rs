//! The controller against the fake API server, mode by mode: what a user
//! sees published, and what never happens (bad input replacing a good
//! certificate, writes over objects cert-sync does not manage, key bytes in
//! Events or the manifest).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use support::*;

#[tokio::test]
async fn an_annotated_secret_is_published_as_namespace_dot_name_with_provenance() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "shop-tls", P256, true)).await;
    rig.put(mk_pair("shop", "not-annotated", RSA, false)).await;
    rig.reconcile().await;

    let published = rig.published("shop.shop-tls").expect("published");
    assert_eq!(published["type"], "kubernetes.io/tls");
    assert_eq!(data_of(&published, "tls.crt"), fixture!("p256.chain.pem"));
    assert_eq!(data_of(&published, "tls.key"), fixture!("p256.pkcs8.key"));
    let meta = &published["metadata"];
    assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "cert-sync");
    assert_eq!(
        meta["annotations"]["certsync.istio.io/source"],
        "shop/shop-tls"
    );
    assert_eq!(
        meta["annotations"]["certsync.istio.io/source-sha256"],
        "ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a"
    );
    assert!(rig.published("shop.not-annotated").is_none());
    let managers = certsync_fakekube::field_managers(&published);
    assert!(
        managers.iter().all(|(m, _)| m == "cert-sync"),
        "{managers:?}"
    );

    let text = rig.manifest().to_string();
    assert!(
        text.contains("shop/shop-tls") && text.contains("kubernetes://shop.shop-tls"),
        "{text}"
    );
    assert!(!text.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn nothing_changed_means_no_write() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    let first = rig.reconcile().await;
    assert_eq!(first.writes, 1);
    let writes = rig.server.write_count("secrets", GW, "shop.tls");
    for _ in 0..3 {
        let again = rig.reconcile().await;
        assert_eq!((again.writes, again.reads), (0, 0), "{again:?}");
    }
    assert_eq!(rig.server.write_count("secrets", GW, "shop.tls"), writes);
}

#[tokio::test]
async fn a_rotation_is_published_and_a_bad_update_never_replaces_the_good_one() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    rig.reconcile().await;
    rig.put(mk_pair("shop", "tls", P384, true)).await;
    rig.reconcile().await;
    assert_eq!(
        data_of(&rig.published("shop.tls").unwrap(), "tls.crt"),
        fixture!("p384.chain.pem")
    );

    // A key that does not match: refused, the P-384 pair stays.
    rig.put(mk_secret(
        "shop",
        "tls",
        fixture!("rsa.chain.pem"),
        fixture!("p384.pkcs8.key"),
        true,
    ))
    .await;
    let outcome = rig.reconcile().await;
    assert!(outcome.refusals >= 1);
    let kept = rig.published("shop.tls").unwrap();
    assert_eq!(data_of(&kept, "tls.crt"), fixture!("p384.chain.pem"));
    assert_eq!(data_of(&kept, "tls.key"), fixture!("p384.pkcs8.key"));
    let events = rig.events_about("tls");
    let warning = events
        .iter()
        .find(|e| e["type"] == "Warning")
        .expect("a Warning Event on the source");
    assert_eq!(warning["reason"], "KeyMismatch");
    // Events only on transitions: reconciling again repeats nothing.
    rig.reconcile().await;
    assert_eq!(rig.events_about("tls").len(), events.len());
    let dump = serde_json::to_string(&rig.server.list("events", None)).unwrap()
        + &serde_json::to_string(&rig.server.list("events.events.k8s.io", None)).unwrap();
    for line in fixture!("p384.pkcs8.key")
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(!dump.contains(line), "key bytes in an Event");
    }
}

#[tokio::test]
async fn removing_the_annotation_unpublishes_only_that_source() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.put(mk_pair("blog", "a", RSA, true)).await;
    rig.reconcile().await;
    assert!(
        rig.published("shop.a").is_some() && rig.published("blog.a").is_some(),
        "same name, two namespaces"
    );
    rig.put(mk_pair("shop", "a", P256, false)).await;
    let outcome = rig.reconcile().await;
    assert_eq!(outcome.deletes, 1);
    assert!(rig.published("shop.a").is_none());
    assert!(rig.published("blog.a").is_some());
}

#[tokio::test]
async fn an_unmanaged_object_in_the_way_is_never_overwritten() {
    let mut rig = Rig::new(credential_policy(), None).await;
    rig.put(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "shop.tls", "namespace": GW}, "data": {"hand": b64("made")}}),
    )
    .await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    let outcome = rig.reconcile().await;
    assert_eq!(outcome.writes, 0);
    let still = rig.published("shop.tls").unwrap();
    assert_eq!(data_of(&still, "hand"), "made");
    assert!(outcome.refusals >= 1);
    // Said as it is: a Warning to the source's owner, nothing "Published",
    // nothing counted, and the loop is told to look again soon (the blocker
    // is outside every watch).
    assert_warned(&rig, "tls", "TargetNotManaged");
    assert_eq!(published_events(&rig, "tls"), 0);
    assert!(rig
        .ctx
        .metrics
        .encode()
        .contains("certsync_published_objects{kind=\"secret\"} 0"));
    assert!(rig.publisher.blocked());

    // The blocker goes: the next pass publishes, and says so once.
    rig.server.delete("secrets", GW, "shop.tls").unwrap();
    let outcome = rig.reconcile().await;
    assert_eq!(outcome.writes, 1);
    assert_eq!(
        data_of(&rig.published("shop.tls").unwrap(), "tls.crt"),
        P256.cert
    );
    assert_eq!(published_events(&rig, "tls"), 1);
    assert!(!rig.publisher.blocked());
}

/// Normal `Published` Events about `name`, and their notes.
fn published_notes(rig: &Rig, name: &str) -> Vec<String> {
    rig.events_about(name)
        .iter()
        .filter(|e| e["type"] == "Normal" && e["reason"] == "Published")
        .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn published_events(rig: &Rig, name: &str) -> usize {
    published_notes(rig, name).len()
}

#[tokio::test]
async fn a_restarted_controller_announces_nothing_it_did_not_write() {
    let mut rig = Rig::new(credential_policy(), None).await;
    for name in ["a", "b", "c"] {
        rig.put(mk_pair("shop", name, P256, true)).await;
    }
    rig.reconcile().await;
    let before = rig.server.list("events.events.k8s.io", None).len();
    assert_eq!(before, 3, "one Published Event per source");

    // A new controller over the same cluster: nothing to write, nothing to say.
    rig.restart().await;
    let outcome = rig.reconcile().await;
    assert_eq!((outcome.writes, outcome.deletes), (0, 0));
    assert_eq!(rig.server.list("events.events.k8s.io", None).len(), before);

    // It announces what it does write.
    rig.put(mk_pair("shop", "b", RSA, true)).await;
    rig.reconcile().await;
    assert_eq!(published_events(&rig, "b"), 2);
}

#[tokio::test]
async fn each_rotation_is_announced_with_its_own_fingerprint() {
    let mut rig = Rig::new(credential_policy(), None).await;
    let mut shas = Vec::new();
    for pair in [P256, RSA, P384] {
        rig.put(mk_pair("shop", "tls", pair, true)).await;
        rig.reconcile().await;
        let leaf = certsync_contract::summarize_chain(pair.cert.as_bytes()).unwrap();
        shas.push(leaf.sha256.short());
    }
    // Within minutes of each other, yet one Event each, each naming the
    // fingerprint it published (not a series on the first one's note).
    let notes = published_notes(&rig, "tls");
    assert_eq!(notes.len(), 3, "{notes:?}");
    for sha in &shas {
        assert!(
            notes.iter().any(|n| n.contains(sha.as_str())),
            "{sha} in {notes:?}"
        );
    }
}

#[tokio::test]
async fn a_namespace_outside_the_policy_is_refused_with_an_event() {
    let policy = Policy {
        namespaces: NamespacePolicy::List(vec!["shop".into()]),
        ..credential_policy()
    };
    let mut rig = Rig::new(policy, None).await;
    rig.put(mk_pair("rogue", "tls", P256, true)).await;
    rig.reconcile().await;
    assert!(rig.published("rogue.tls").is_none());
    let events = rig.events_about("tls");
    assert!(
        events.iter().any(|e| e["reason"] == "NamespaceNotAllowed"),
        "{events:?}"
    );
}

#[tokio::test]
async fn merged_mode_writes_one_secret_with_a_pair_per_source() {
    let policy = Policy {
        mode: Mode::Merged {
            secret_name: "istio-ingressgateway-certs".into(),
        },
        ..credential_policy()
    };
    let mut rig = Rig::new(policy, None).await;
    rig.put(mk_pair("shop", "a", P256, true)).await;
    rig.put(mk_pair("blog", "b", RSA, true)).await;
    rig.reconcile().await;
    let merged = rig
        .published("istio-ingressgateway-certs")
        .expect("merged secret");
    assert_eq!(data_of(&merged, "shop.a.crt"), fixture!("p256.chain.pem"));
    assert_eq!(data_of(&merged, "blog.b.key"), fixture!("rsa.pkcs8.key"));
}

#[tokio::test]
async fn directory_mode_swaps_files_into_the_shared_volume() {
    let dir = tempfile::tempdir().unwrap();
    let publisher = DirectoryPublisher::open(dir.path()).unwrap();
    let policy = Policy {
        mode: Mode::Directory,
        ..credential_policy()
    };
    let mut rig = Rig::new(policy, Some((publisher, dir.path().to_path_buf()))).await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    let outcome = rig.reconcile().await;
    assert!(outcome.files_swapped);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shop/tls.crt")).unwrap(),
        fixture!("p256.chain.pem")
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shop/tls.key")).unwrap(),
        fixture!("p256.pkcs8.key")
    );
    assert!(
        rig.published("shop.tls").is_none(),
        "directory mode writes no Secret"
    );
    assert!(!rig.reconcile().await.files_swapped, "unchanged: no swap");
}

#[tokio::test]
async fn a_central_directory_instance_indexes_what_the_writers_publish() {
    // The instance that verifies: no files of its own, the manifest names
    // the paths the gateways mount, and a refused update keeps the last good.
    let policy = Policy {
        mode: Mode::Directory,
        ..credential_policy()
    };
    let mut rig = Rig::central(policy, std::path::Path::new("/etc/istio/cert-sync")).await;
    rig.put(mk_pair("shop", "tls", P256, true)).await;
    rig.reconcile().await;
    let manifest = |rig: &Rig| -> Value { rig.manifest() };
    let entry = manifest(&rig)["publications"][0].clone();
    assert_eq!(
        entry["sdsResource"],
        "file-cert:/etc/istio/cert-sync/shop/tls.crt~/etc/istio/cert-sync/shop/tls.key"
    );
    assert_eq!(entry["target"]["cert"], "/etc/istio/cert-sync/shop/tls.crt");
    assert!(rig.published("shop.tls").is_none(), "no Secret");

    rig.put(mk_secret("shop", "tls", P256.cert, RSA.key, true))
        .await;
    rig.reconcile().await;
    let kept = manifest(&rig)["publications"][0].clone();
    assert_eq!(
        kept["sha256"], entry["sha256"],
        "the last good stays indexed"
    );
    assert_eq!(kept["kept"], "KeyMismatch");
}

#[tokio::test]
async fn a_change_to_one_of_many_sources_reads_and_writes_only_that_one() {
    let mut rig = Rig::new(credential_policy(), None).await;
    for name in ["a", "b", "c", "d"] {
        rig.put(mk_secret(
            "shop",
            name,
            fixture!("p256.chain.pem"),
            fixture!("p256.pkcs8.key"),
            true,
        ))
        .await;
    }
    assert_eq!(rig.reconcile().await.reads, 4);
    rig.put(mk_pair("shop", "c", P384, true)).await;
    let outcome = rig.reconcile().await;
    assert_eq!((outcome.reads, outcome.writes), (1, 1), "{outcome:?}");
}
