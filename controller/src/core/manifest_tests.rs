//! Unit tests of `manifest`.

use super::*;
use crate::core::desired::diff;
use crate::core::model::{Published, PublishedSecret, SourceData, SourceMeta};
use crate::core::testing::*;

fn desired(mode: Mode, sources: &[(SourceMeta, SourceData)]) -> (Policy, DesiredState) {
    render_sources(mode, sources, &Published::default())
}

fn with_ca(pair: Pair) -> SourceData {
    let mut d = pair.data();
    d.ca_pem = Some(ca_pem());
    d
}

fn manifest_json(mode: Mode) -> String {
    let (p, d) = desired(
        mode,
        &[
            (mk_source("shop", "tls"), with_ca(Pair::P256)),
            (mk_source("blog", "tls"), Pair::Rsa.data()),
        ],
    );
    let m = build(&p, &d, &diff(&Published::default(), &d), "/etc/certs");
    render(&m).unwrap().remove(DATA_KEY).unwrap()
}

#[test]
fn credential_entries_name_the_secret_and_the_sds_resources() {
    let (p, d) = desired(
        Mode::Credential,
        &[(mk_source("shop", "tls"), with_ca(Pair::P256))],
    );
    let m = build(&p, &d, &Plan::default(), "/unused");
    assert_eq!(m.mode, "credential");
    assert_eq!(m.gateway_namespace, GATEWAY_NS);
    let e = &m.publications[0];
    assert_eq!(e.source, "shop/tls");
    assert_eq!(
        e.target,
        TargetRef::Credential {
            secret: "shop.tls".to_owned()
        }
    );
    assert_eq!(e.sds_resource, "kubernetes://shop.tls");
    assert_eq!(
        e.sds_ca_resource.as_deref(),
        Some("kubernetes://shop.tls-cacert")
    );
    assert_eq!(e.sha256.to_string(), Pair::P256.sha256());
    assert_eq!(e.serial, "252b0a0b0c");
    assert_eq!(e.not_after, "2126-10-29T18:46:35Z");
    assert_eq!(e.kept, None);
    assert!(e.rollout.is_empty());
}

#[test]
fn merged_and_directory_entries_name_the_files_the_gateway_reads() {
    let (p, d) = desired(
        merged_mode(),
        &[(mk_source("shop", "tls"), Pair::P256.data())],
    );
    let e = &build(&p, &d, &Plan::default(), "/unused").publications[0];
    assert_eq!(
        e.sds_resource,
        "file-cert:/etc/istio/ingressgateway-certs/shop.tls.crt~/etc/istio/ingressgateway-certs/shop.tls.key"
    );
    assert_eq!(e.sds_ca_resource, None);

    let (p, d) = desired(
        Mode::Directory,
        &[(mk_source("shop", "tls"), with_ca(Pair::P256))],
    );
    let e = &build(&p, &d, &Plan::default(), "/etc/certs/").publications[0];
    assert_eq!(
        e.target,
        TargetRef::Directory {
            cert: "/etc/certs/shop/tls.crt".to_owned(),
            key: "/etc/certs/shop/tls.key".to_owned(),
            ca: Some("/etc/certs/shop/tls_ca.crt".to_owned()),
        }
    );
    assert_eq!(
        e.sds_resource,
        "file-cert:/etc/certs/shop/tls.crt~/etc/certs/shop/tls.key"
    );
    assert_eq!(
        e.sds_ca_resource.as_deref(),
        Some("file-root:/etc/certs/shop/tls_ca.crt")
    );
}

#[test]
fn the_manifest_never_holds_key_material() {
    for mode in [Mode::Credential, merged_mode(), Mode::Directory] {
        let json = manifest_json(mode);
        assert!(!json.contains("PRIVATE KEY"));
        assert!(!json.contains("BEGIN"));
        for key in [Pair::P256.key(), Pair::Rsa.key()] {
            for line in String::from_utf8_lossy(key)
                .lines()
                .filter(|l| !l.starts_with("-----"))
            {
                assert!(!json.contains(line), "key bytes in the manifest");
            }
        }
    }
}

#[test]
fn annotated_rendering_matches_the_manifest_with_the_annotation_applied() {
    let m = parse(&manifest_json(merged_mode())).unwrap();
    assert_eq!(
        render(&m).unwrap()[DATA_KEY],
        serde_json::to_string(&m).unwrap(),
        "the hand-written serializer must match the derive"
    );
    let mark = |e: &mut ManifestEntry| e.state = Some(format!("seen {}", e.source));
    let mut annotated = m.clone();
    annotated
        .publications
        .iter_mut()
        .for_each(|e| mark(Arc::make_mut(e)));
    let rendering = Rendering::new(&m, mark);
    let json = rendering.json().unwrap();
    assert_eq!(parse(&json).unwrap(), annotated);
    let digest: [u8; 32] = Sha256::digest(json.as_bytes()).into();
    assert_eq!(rendering.sha256().unwrap(), digest);
    // The ConfigMap body carries the same text, escaped as a string.
    let body = serde_json::to_value(rendering.data()).unwrap();
    assert_eq!(body, serde_json::json!({ DATA_KEY: json }));
    assert_ne!(annotated, m);
}

#[test]
fn rebuild_equals_build_and_shares_every_unchanged_entry() {
    let sources = [
        (mk_source("shop", "tls"), with_ca(Pair::P256)),
        (mk_source("blog", "tls"), Pair::Rsa.data()),
    ];
    let (p, d) = desired(Mode::Credential, &sources);
    let plan = diff(&Published::default(), &d);
    let m = build(&p, &d, &plan, "/etc/certs");
    let same = rebuild(&m, &p, &d, &plan, "/etc/certs");
    assert_eq!(same, m);
    let shared = |a: &Manifest, b: &Manifest| {
        a.publications
            .iter()
            .filter(|e| b.publications.iter().any(|f| Arc::ptr_eq(e, f)))
            .count()
    };
    assert_eq!(shared(&same, &m), 2);

    // One certificate rotated: one new entry, the other one shared.
    let (_, rotated) = desired(
        Mode::Credential,
        &[
            sources[0].clone(),
            (mk_source("blog", "tls"), Pair::P256.data()),
        ],
    );
    let next = rebuild(&m, &p, &rotated, &plan, "/etc/certs");
    assert_eq!(next, build(&p, &rotated, &plan, "/etc/certs"));
    assert_ne!(next, m);
    assert_eq!(shared(&next, &m), 1);

    let (_, fewer) = desired(Mode::Credential, &sources[..1]);
    assert_eq!(
        rebuild(&m, &p, &fewer, &plan, "/etc/certs")
            .publications
            .len(),
        1
    );
    let merged = Policy {
        mode: merged_mode(),
        ..p.clone()
    };
    assert_ne!(rebuild(&m, &merged, &d, &plan, "/etc/certs"), m);
    let (dp, dd) = desired(Mode::Directory, &sources);
    let dplan = diff(&Published::default(), &dd);
    let files = build(&dp, &dd, &dplan, "/etc/certs");
    assert_eq!(rebuild(&files, &dp, &dd, &dplan, "/etc/certs"), files);
    let moved = rebuild(&files, &dp, &dd, &dplan, "/elsewhere");
    assert_ne!(moved, files);
    assert_eq!(shared(&moved, &files), 0);
}

#[test]
fn rendering_is_deterministic_and_reads_back() {
    let json = manifest_json(Mode::Credential);
    assert_eq!(json, manifest_json(Mode::Credential));
    let m = parse(&json).unwrap();
    let sources: Vec<_> = m.publications.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources, ["blog/tls", "shop/tls"]);
    assert_eq!(render(&m).unwrap()[DATA_KEY], json);
    assert!(
        json.contains("\"sdsResource\":\"kubernetes://blog.tls\""),
        "{json}"
    );
    assert!(json.contains("\"kind\":\"credential\""), "{json}");
    let merged = manifest_json(merged_mode());
    assert!(merged.contains("\"certKey\":\"shop.tls.crt\""), "{merged}");
}

#[test]
fn a_refused_target_is_not_listed_and_a_kept_one_says_why() {
    let (p, d) = desired(
        Mode::Credential,
        &[
            (mk_source("shop", "tls"), Pair::P256.data()),
            (mk_source("blog", "tls"), Pair::Rsa.data()),
        ],
    );
    let mut current = Published::default();
    current.secrets.insert(
        "blog.tls".to_owned(),
        PublishedSecret {
            name: "blog.tls".to_owned(),
            ..PublishedSecret::default()
        },
    );
    let m = build(&p, &d, &diff(&current, &d), "/unused");
    let sources: Vec<_> = m.publications.iter().map(|e| e.source.as_str()).collect();
    assert_eq!(sources, ["shop/tls"]);

    let mut e = d.entries[0].clone();
    e.kept = Some(crate::core::reasons::EXPIRED);
    assert_eq!(entry(&e, "/").kept.as_deref(), Some("Expired"));
}

#[test]
fn other_versions_are_refused() {
    let json = manifest_json(Mode::Credential).replace("\"version\":2", "\"version\":3");
    assert!(matches!(
        parse(&json),
        Err(CoreError::ManifestVersion { found: 3, .. })
    ));
    // Version 1 (one ConfigMap, written by an older cert-sync) still reads.
    let json = manifest_json(Mode::Credential).replace("\"version\":2", "\"version\":1");
    assert_eq!(parse(&json).unwrap().version, 1);
}

#[test]
fn dates_are_rfc_3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_609_459_200), "2021-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339(4_133_980_800), "2101-01-01T00:00:00Z");
}
