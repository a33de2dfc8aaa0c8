//! Certificate core behaviour, checked against fixtures made by openssl
//! (`e2e/fixtures/pem/gen.sh`). The same tests run natively and, compiled to
//! `wasm32-unknown-unknown`, under Node with wasm-bindgen-test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use certsync_contract::report::{
    LoadedCertificate, PodRef, Report, ReportError, Trigger, REPORT_VERSION,
};
use certsync_contract::{sds, summarize_chain, CertError, Fingerprint, San};

macro_rules! fixture {
    ($name:literal) => {
        certsync_fixtures::pem!($name)
    };
}

const EXPECTED: &str = certsync_fixtures::pem_text!("expected.txt");

/// (sha256, serial, notAfter) that openssl computed for a fixture.
fn expected(name: &str) -> (Fingerprint, String, i64) {
    let line = EXPECTED
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("no expectation for {name}"));
    let f: Vec<&str> = line.split(' ').collect();
    (
        Fingerprint::from_hex(f[1]).unwrap(),
        f[2].to_owned(),
        f[3].parse().unwrap(),
    )
}

#[test]
fn fingerprint_serial_and_expiry_match_openssl_for_every_key_type() {
    for (name, pem) in [
        ("rsa", fixture!("rsa.chain.pem")),
        ("p256", fixture!("p256.chain.pem")),
        ("p384", fixture!("p384.chain.pem")),
        ("ed25519", fixture!("ed25519.chain.pem")),
    ] {
        let (sha, serial, not_after) = expected(name);
        let s = summarize_chain(pem).unwrap();
        assert_eq!(
            s.sha256, sha,
            "{name}: fingerprint of the leaf, not the chain"
        );
        assert_eq!(s.serial, serial, "{name}");
        assert_eq!(s.not_after, not_after, "{name}");
        assert_eq!(s.chain_len, 2, "{name}");
        assert!(
            s.subject.contains(&format!("CN={name}.example.com")),
            "{}",
            s.subject
        );
        assert!(
            s.issuer.contains("cert-sync test intermediate"),
            "{}",
            s.issuer
        );
    }
}

#[test]
fn sans_of_every_kind_are_reported() {
    let s = summarize_chain(fixture!("rsa.crt")).unwrap();
    assert_eq!(
        s.sans,
        vec![
            San::Dns("rsa.example.com".into()),
            San::Dns("*.rsa.example.com".into()),
            San::Ip("192.0.2.10".parse().unwrap()),
            San::Uri("spiffe://example.com/ns/a/sa/b".into()),
        ]
    );
    let s = summarize_chain(fixture!("p256.crt")).unwrap();
    assert!(s.sans.contains(&San::Ip("2001:db8::1".parse().unwrap())));
}

#[test]
fn validity_window_is_checked_at_the_given_time() {
    let (_, _, not_after) = expected("expired");
    let s = summarize_chain(fixture!("expired.crt")).unwrap();
    assert_eq!(s.not_after, not_after);
    assert!(!s.is_valid_at(1_900_000_000));
    assert!(s.is_valid_at(not_after - 1));
}

#[test]
fn garbage_and_keys_in_the_certificate_slot_are_refused_without_echoing_them() {
    assert_eq!(summarize_chain(b"hello"), Err(CertError::NoCertificate));
    assert_eq!(summarize_chain(b""), Err(CertError::NoCertificate));

    let err = summarize_chain(fixture!("p256.pkcs8.key")).unwrap_err();
    assert_eq!(
        err,
        CertError::UnexpectedBlock {
            index: 0,
            label: "PRIVATE KEY".into()
        }
    );
    assert!(
        !err.to_string().contains("MIG"),
        "the key body must not be echoed: {err}"
    );

    let broken = b"-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        summarize_chain(broken),
        Err(CertError::MalformedCertificate { index: 0, .. })
    ));
    assert_eq!(
        summarize_chain(broken).unwrap_err().reason(),
        "malformed_certificate"
    );
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let huge = vec![b'A'; certsync_contract::pem::MAX_PEM_BYTES + 1];
    assert!(matches!(
        summarize_chain(&huge),
        Err(CertError::TooLarge { .. })
    ));
}

#[test]
fn chain_fingerprints_are_those_after_the_first_certificate_in_order() {
    use certsync_contract::cert::chain_fingerprints;
    let intermediate = expected("intermediate").0;
    // openssl x509 -in root.crt -outform der | sha256sum
    let root =
        Fingerprint::from_hex("7f4c26c64ec3917b857dd653565dc56c54be153c32bac91ba0fa081eaeaa3bd3")
            .unwrap();
    assert_eq!(
        chain_fingerprints(fixture!("rsa.chain.pem")).unwrap(),
        [intermediate]
    );
    let full = [
        fixture!("rsa.crt"),
        fixture!("intermediate.crt"),
        fixture!("root.crt"),
    ]
    .concat();
    assert_eq!(chain_fingerprints(&full).unwrap(), [intermediate, root]);
    // A root bundle: the roots after the first.
    let bundle = [fixture!("root.crt"), fixture!("intermediate.crt")].concat();
    assert_eq!(chain_fingerprints(&bundle).unwrap(), [intermediate]);
    assert_eq!(
        chain_fingerprints(fixture!("root.crt")).unwrap(),
        Vec::<Fingerprint>::new()
    );
    assert_eq!(chain_fingerprints(b"hello"), Err(CertError::NoCertificate));
    assert!(matches!(
        chain_fingerprints(fixture!("p256.pkcs8.key")),
        Err(CertError::UnexpectedBlock { .. })
    ));
}

#[test]
fn chain_order_is_detected() {
    use certsync_contract::cert::chain_in_order;
    assert!(chain_in_order(fixture!("p256.chain.pem")).unwrap());
    assert!(!chain_in_order(fixture!("p256.reversed.pem")).unwrap());
}

#[test]
fn fingerprint_hex_round_trips_and_accepts_openssl_colons() {
    let (sha, _, _) = expected("rsa");
    let hex = sha.to_string();
    assert_eq!(hex.len(), 64);
    assert_eq!(Fingerprint::from_hex(&hex), Some(sha));
    let colons: Vec<String> = hex
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_uppercase())
        .collect();
    assert_eq!(Fingerprint::from_hex(&colons.join(":")), Some(sha));
    assert_eq!(Fingerprint::from_hex(&hex[..62]), None);
    assert_eq!(Fingerprint::from_hex(&format!("{hex}00")), None);
    assert_eq!(sha.short(), hex[..12]);
}

fn mk_report(certs: &[&[u8]]) -> Report {
    Report {
        version: REPORT_VERSION,
        pod: PodRef {
            name: "istio-ingressgateway-abc".into(),
            namespace: "istio-system".into(),
        },
        node_id:
            "router~10.0.0.1~istio-ingressgateway-abc.istio-system~istio-system.svc.cluster.local"
                .into(),
        seq: 7,
        trigger: Trigger::Change,
        certificates: certs
            .iter()
            .enumerate()
            .map(|(i, pem)| LoadedCertificate {
                resource: format!("kubernetes://ns.cert{i}"),
                version: "1".into(),
                cert: summarize_chain(pem).unwrap(),
                chain_sha256: Vec::new(),
            })
            .collect(),
        errors: vec![],
    }
}

#[test]
fn report_round_trips_through_the_wire_format() {
    let report = mk_report(&[fixture!("rsa.chain.pem"), fixture!("ed25519.crt")]);
    let body = report.encode();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["certificates"][0]["sha256"],
        expected("rsa").0.to_string()
    );
    assert_eq!(json["certificates"][0]["sans"][0]["type"], "dns");
    assert_eq!(json["trigger"], "change");
    assert_eq!(Report::decode(&body).unwrap(), report);
}

#[test]
fn receiver_refuses_bad_reports() {
    let mut report = mk_report(&[fixture!("p256.crt")]);
    report.version = 99;
    assert!(matches!(
        Report::decode(&report.encode()),
        Err(ReportError::UnsupportedVersion(99))
    ));

    let mut report = mk_report(&[]);
    report.pod.name.clear();
    assert!(matches!(
        Report::decode(&report.encode()),
        Err(ReportError::MissingPod)
    ));

    assert!(matches!(
        Report::decode(b"{\"version\":1"),
        Err(ReportError::Malformed(_))
    ));
    let huge = vec![b' '; certsync_contract::report::MAX_REPORT_BYTES + 1];
    assert!(matches!(
        Report::decode(&huge),
        Err(ReportError::TooLarge { .. })
    ));

    let mut json: serde_json::Value = serde_json::from_slice(&mk_report(&[]).encode()).unwrap();
    json["certificates"] = serde_json::json!([{"resource": "x", "sha256": "nothex"}]);
    assert!(Report::decode(json.to_string().as_bytes()).is_err());
}

#[test]
fn chain_fingerprints_travel_only_when_present_and_old_reports_still_decode() {
    let mut report = mk_report(&[fixture!("rsa.chain.pem"), fixture!("p256.chain.pem")]);
    report.certificates[0].resource = sds::WORKLOAD_CERT.into();
    report.certificates[0].chain_sha256 =
        certsync_contract::cert::chain_fingerprints(fixture!("rsa.chain.pem")).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&report.encode()).unwrap();
    assert_eq!(
        json["certificates"][0]["chain_sha256"],
        serde_json::json!([expected("intermediate").0.to_string()])
    );
    assert!(
        json["certificates"][1].get("chain_sha256").is_none(),
        "left out when empty: {}",
        json["certificates"][1]
    );
    assert_eq!(Report::decode(&report.encode()).unwrap(), report);
    assert_eq!(
        report.certificates[0].fingerprints().collect::<Vec<_>>(),
        [expected("rsa").0, expected("intermediate").0]
    );

    // A report of a filter from before the field: still version 1, decodes
    // with an empty list.
    let old = r#"{"version":1,"pod":{"name":"gw-0","namespace":"istio-system"},
        "node_id":"router~10.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local",
        "seq":3,"trigger":"heartbeat","certificates":[{"resource":"default","version":"7",
        "sha256":"e9bbceeba1a8bfc11a5129ba593548743d2fcf4f0ecce2856d0d4e67c407ee24",
        "serial":"63c20a0b0c","not_before":0,"not_after":4948973195,
        "subject":"CN=rsa.example.com","issuer":"CN=cert-sync test intermediate",
        "sans":[],"chain_len":2}]}"#;
    let decoded = Report::decode(old.as_bytes()).unwrap();
    assert_eq!(decoded.version, REPORT_VERSION);
    assert_eq!(REPORT_VERSION, 1);
    let loaded = &decoded.certificates[0];
    assert_eq!(loaded.resource, "default");
    assert_eq!(loaded.cert.sha256, expected("rsa").0);
    assert!(loaded.chain_sha256.is_empty());

    // A malformed fingerprint in the list fails the report, as the leaf's does.
    let mut json: serde_json::Value = serde_json::from_slice(&report.encode()).unwrap();
    json["certificates"][0]["chain_sha256"] = serde_json::json!(["nothex"]);
    assert!(Report::decode(json.to_string().as_bytes()).is_err());
}

#[test]
fn unknown_fields_are_ignored_for_forward_compatibility() {
    let mut json: serde_json::Value = serde_json::from_slice(&mk_report(&[]).encode()).unwrap();
    json["added_in_a_later_minor"] = serde_json::json!(true);
    assert!(Report::decode(json.to_string().as_bytes()).is_ok());
}
