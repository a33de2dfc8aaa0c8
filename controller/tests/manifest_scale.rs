//! The manifest past the size one ConfigMap can hold: thousands of
//! publications against the fake API server, which refuses ConfigMap data
//! over 1 MiB as a real one does. One rotation rewrites one shard; a
//! restarted controller takes the layout over and writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use certsync_controller::core::manifest::shards::SHARD_ROWS;
use serde_json::Value;
use std::time::Duration;
use support::*;

const SOURCES: usize = 4_000;

fn manifest_config_maps(rig: &Rig) -> Vec<Value> {
    rig.server
        .list("configmaps", Some(GW))
        .into_iter()
        .filter(|cm| {
            cm["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("cert-sync-manifest"))
        })
        .collect()
}

fn data_len(cm: &Value) -> usize {
    cm["data"]["manifest.json"].as_str().map_or(0, str::len)
}

/// ConfigMap writes (apply patches) since the request log was cleared.
fn config_map_writes(rig: &Rig) -> Vec<String> {
    rig.server
        .requests()
        .into_iter()
        .filter(|r| r.resource.as_deref() == Some("configmaps") && r.method == "PATCH")
        .filter_map(|r| r.name)
        .collect()
}

#[tokio::test]
async fn thousands_of_publications_fit_and_one_rotation_writes_one_shard() {
    let mut rig = Rig::new(credential_policy(), None).await;
    for i in 0..SOURCES {
        let pair = if i % 2 == 0 { P256 } else { ED25519 };
        rig.server
            .put(mk_pair(
                &format!("team-{}", i % 50),
                &format!("site-{i}"),
                pair,
                true,
            ))
            .unwrap();
    }
    rig.settle_within(Duration::from_secs(60)).await;
    rig.reconcile().await;

    let manifest = rig.manifest();
    assert_eq!(manifest["publications"].as_array().unwrap().len(), SOURCES);
    let parts = manifest_config_maps(&rig);
    let total: usize = parts.iter().map(data_len).sum();
    // Whole, it would be refused (the fake answers 422 past 1 MiB, as the
    // API server does); split, every part is small.
    assert!(total > 1024 * 1024, "{total} B in all");
    let largest = parts.iter().map(data_len).max().unwrap();
    assert!(largest < 32 * 1024, "largest part {largest} B");
    for cm in &parts {
        let doc: Value =
            serde_json::from_str(cm["data"]["manifest.json"].as_str().unwrap()).unwrap();
        let rows = doc["publications"].as_array().map_or(0, Vec::len)
            + doc["refusals"].as_array().map_or(0, Vec::len);
        assert!(
            rows <= SHARD_ROWS,
            "{}: {rows} rows",
            cm["metadata"]["name"]
        );
    }

    let sha_of = |m: &Value| {
        m["publications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["source"] == "team-7/site-7")
            .map(|p| p["sha256"].clone())
            .unwrap()
    };
    let before = sha_of(&manifest);

    // One rotation: the published Secret and exactly one shard.
    rig.server.clear_requests();
    rig.put(mk_pair("team-7", "site-7", P384, true)).await;
    rig.reconcile().await;
    let writes = config_map_writes(&rig);
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].starts_with("cert-sync-manifest-s"), "{writes:?}");
    let shard = rig.server.get("configmaps", GW, &writes[0]).unwrap();
    assert!(data_len(&shard) < 32 * 1024);
    assert_ne!(sha_of(&rig.manifest()), before);

    // Nothing changed: nothing written.
    rig.server.clear_requests();
    rig.reconcile().await;
    assert_eq!(config_map_writes(&rig), Vec::<String>::new());

    // A restarted controller reads the layout and texts back: no write.
    rig.restart().await;
    rig.server.clear_requests();
    rig.reconcile().await;
    assert_eq!(config_map_writes(&rig), Vec::<String>::new());
    assert_eq!(
        rig.manifest()["publications"].as_array().unwrap().len(),
        SOURCES
    );

    // Sources go: their rows leave their shards; shards never merge, and
    // the index still covers every row.
    rig.server.clear_requests();
    for i in 0..100 {
        rig.server
            .delete("secrets", &format!("team-{}", i % 50), &format!("site-{i}"))
            .unwrap();
    }
    rig.settle().await;
    rig.reconcile().await;
    assert_eq!(
        rig.manifest()["publications"].as_array().unwrap().len(),
        SOURCES - 100
    );
    assert!(config_map_writes(&rig).len() <= 100);
    assert_no_key_material(&rig);
}
