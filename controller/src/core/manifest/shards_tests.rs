//! Unit tests of `manifest::shards`.

use super::*;
use crate::core::manifest::{Rendering, TargetRef};
use certsync_contract::Fingerprint;

fn mk_entry(i: usize, pods: usize) -> Arc<ManifestEntry> {
    Arc::new(ManifestEntry {
        source: format!("team-{}/site-{i}", i % 97),
        target: TargetRef::Credential {
            secret: format!("team-{}.site-{i}", i % 97),
        },
        sds_resource: format!("kubernetes://team-{}.site-{i}", i % 97),
        sds_ca_resource: None,
        sha256: Fingerprint([(i % 251) as u8; 32]),
        serial: format!("{i:x}"),
        not_after: "2027-01-01T00:00:00Z".to_owned(),
        kept: None,
        published_at: Some("2026-12-01T00:00:00Z".to_owned()),
        converged_at: None,
        state: Some("Converged".to_owned()),
        rollout: (0..pods)
            .map(|p| {
                (
                    format!("istio-ingressgateway-7d9f8c-{p:05}"),
                    "Verified".to_owned(),
                )
            })
            .collect(),
    })
}

fn mk_refusal(i: usize) -> RefusalView {
    RefusalView {
        subject: format!("secret bad-{i}/tls"),
        reason: "KeyMismatch".to_owned(),
        message: "the private key does not match the certificate".to_owned(),
    }
}

fn mk_manifest(publications: usize, refusals: usize, pods: usize) -> Manifest {
    Manifest {
        version: VERSION,
        gateway_namespace: "istio-system".to_owned(),
        mode: "credential".to_owned(),
        publications: (0..publications).map(|i| mk_entry(i, pods)).collect(),
        refusals: (0..refusals).map(mk_refusal).collect(),
    }
}

/// Renders every shard: label → JSON.
fn render_all(split: &Split<'_>) -> BTreeMap<String, String> {
    let none = |_: &mut ManifestEntry| {};
    split
        .shards
        .iter()
        .map(|(p, part)| {
            let json = Rendering::of(part.doc(*p, &none)).json().unwrap();
            (p.label(), json)
        })
        .collect()
}

fn sorted(mut m: Manifest) -> Manifest {
    m.publications
        .sort_by(|a, b| (&a.source, &a.sds_resource).cmp(&(&b.source, &b.sds_resource)));
    m.refusals
        .sort_by(|a, b| (&a.subject, &a.reason).cmp(&(&b.subject, &b.reason)));
    m
}

#[test]
fn a_small_manifest_is_one_shard() {
    let m = mk_manifest(10, 2, 3);
    let mut layout = Layout::default();
    let split = split(&m, &mut layout);
    assert_eq!(split.index.shards, vec!["s"]);
    assert_eq!(Prefix::ROOT.name(), "cert-sync-manifest-s");
    let part = &split.shards[&Prefix::ROOT];
    assert_eq!((part.publications.len(), part.refusals.len()), (10, 2));
}

#[test]
fn ten_thousand_publications_on_ten_pods_split_into_bounded_shards_and_read_back_whole() {
    let m = mk_manifest(10_000, 300, 10);
    let mut layout = Layout::default();
    let split = split(&m, &mut layout);
    for part in split.shards.values() {
        assert!(part.publications.len() + part.refusals.len() <= SHARD_ROWS);
    }
    let rendered = render_all(&split);
    let largest = rendered.values().map(String::len).max().unwrap();
    // Far below the API server's 1 MiB, and what one update writes at most.
    assert!(largest < 40 * 1024, "largest shard {largest} B");
    let index = serde_json::to_string(&split.index).unwrap();
    assert!(index.len() < 16 * 1024, "index {} B", index.len());
    assert_eq!(assemble(&index, &rendered).unwrap(), sorted(m));
}

#[test]
fn one_changed_certificate_changes_one_shard() {
    let mut m = mk_manifest(2_000, 0, 10);
    let mut layout = Layout::default();
    let before = render_all(&split(&m, &mut layout));
    let mut changed = ManifestEntry::clone(&m.publications[1234]);
    changed.sha256 = Fingerprint([0xee; 32]);
    m.publications[1234] = Arc::new(changed);
    let after = render_all(&split(&m, &mut layout));
    assert_eq!(before.len(), after.len());
    let differing = before.iter().filter(|(k, v)| after[*k] != **v).count();
    assert_eq!(differing, 1);
}

#[test]
fn growth_only_splits_crowded_shards_and_rows_stay_put_otherwise() {
    let small = mk_manifest(500, 0, 1);
    let mut layout = Layout::default();
    let first = split(&small, &mut layout);
    let home: BTreeMap<String, Prefix> = first
        .shards
        .iter()
        .flat_map(|(p, part)| part.publications.iter().map(|e| (e.source.clone(), *p)))
        .collect();
    let before = layout.clone();
    let big = mk_manifest(600, 0, 1);
    let second = split(&big, &mut layout);
    for (p, part) in &second.shards {
        for e in &part.publications {
            if let Some(old) = home.get(&e.source) {
                // Either the same shard, or a child of it that split.
                assert!(old == p || covers(*old, *p), "{} moved", e.source);
                if old != p {
                    assert!(!layout.leaves.contains(old));
                }
            }
        }
    }
    // Shrinking never merges: the next leader reads the same layout back.
    let third_layout = {
        let mut l = layout.clone();
        let _ = split(&small, &mut l);
        l
    };
    assert_eq!(third_layout, layout);
    assert_ne!(before, layout);
    let labels: Vec<String> = layout.leaves().map(Prefix::label).collect();
    assert_eq!(
        Layout::from_labels(labels.iter().map(String::as_str)),
        Some(layout)
    );
}

#[test]
fn an_index_that_does_not_cover_every_hash_once_is_not_a_layout() {
    assert_eq!(Layout::from_labels(["s"]), Some(Layout::default()));
    assert!(Layout::from_labels(["s0", "s1"]).is_some());
    assert!(Layout::from_labels(["s0", "s10", "s11"]).is_some());
    // A gap, an overlap, garbage.
    assert_eq!(Layout::from_labels(["s0"]), None);
    assert_eq!(Layout::from_labels(["s", "s0"]), None);
    assert_eq!(Layout::from_labels(["s0", "s1", "s10"]), None);
    assert_eq!(Layout::from_labels(["s0", "x1"]), None);
    assert_eq!(Layout::from_labels(["s0", "s12"]), None);
}

#[test]
fn labels_round_trip() {
    for (bits, len) in [(0, 0), (0, 1), (1, 1), (0b101, 3), (0xabcdef, 24)] {
        let p = Prefix { bits, len };
        assert_eq!(Prefix::parse(&p.label()), Some(p));
    }
    assert_eq!(Prefix { bits: 0b01, len: 2 }.label(), "s01");
    assert_eq!(Prefix::parse(&format!("s{}", "0".repeat(25))), None);
}

#[test]
fn a_reader_between_writes_is_told_and_a_version_1_manifest_still_reads() {
    let m = mk_manifest(100, 0, 1);
    let mut layout = Layout::default();
    let split = split(&m, &mut layout);
    let index = serde_json::to_string(&split.index).unwrap();
    let mut rendered = render_all(&split);
    let (label, json) = rendered.pop_first().unwrap();
    let err = assemble(&index, &rendered).unwrap_err();
    assert!(err.to_string().contains("is missing"), "{err}");
    // A shard of another layout under that name.
    let wrong = json.replacen(&format!("\"shard\":\"{label}\""), "\"shard\":\"s\"", 1);
    rendered.insert(label, wrong);
    assert!(assemble(&index, &rendered).is_err());

    let mut v1 = mk_manifest(3, 1, 1);
    v1.version = 1;
    let json = serde_json::to_string(&v1).unwrap();
    assert_eq!(assemble(&json, &BTreeMap::new()).unwrap(), v1);
    let v3 = json.replacen("\"version\":1", "\"version\":3", 1);
    assert!(assemble(&v3, &BTreeMap::new()).is_err());
}

#[test]
fn hashes_carried_over_from_the_previous_manifest_are_the_ones_computed_afresh() {
    let before = sorted(mk_manifest(500, 0, 1));
    let hashes = publication_hashes(&before, None);
    // Rotated (a new allocation, same key), added, removed.
    let mut after = before.clone();
    after.publications[7] = mk_entry(7_000, 2);
    after.publications.remove(100);
    after.publications.push(mk_entry(9_999, 1));
    after.publications[200] = Arc::new(ManifestEntry {
        serial: "rotated".to_owned(),
        ..(*after.publications[200]).clone()
    });
    let after = sorted(after);
    assert_eq!(
        publication_hashes(&after, Some((&before, &hashes))),
        publication_hashes(&after, None)
    );
    // A previous manifest out of order costs hashing, never a wrong hash.
    let mut shuffled = before.clone();
    shuffled.publications.reverse();
    let reversed: Vec<u32> = hashes.iter().rev().copied().collect();
    assert_eq!(
        publication_hashes(&after, Some((&shuffled, &reversed))),
        publication_hashes(&after, None)
    );
}
