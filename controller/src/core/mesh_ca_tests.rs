use super::*;
use certsync_testkit::mesh_pki::{CaSpec, MeshRoot};

const DAY: i64 = 86_400;

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn mk_data(chain: &str, key: &str, roots: &str) -> SourceData {
    SourceData {
        cert_pem: Some(Blob::from(chain.as_bytes().to_vec())),
        key_pem: Some(Blob::from(key.as_bytes().to_vec())),
        ca_pem: Some(Blob::from(roots.as_bytes().to_vec())),
    }
}

#[test]
fn a_good_intermediate_is_laid_out_for_istiod() {
    let root = MeshRoot::new("root").unwrap();
    let ca = root.intermediate(&CaSpec::default()).unwrap();
    let valid = check(
        &mk_data(&ca.cert_pem, &ca.key_pem, &root.pem()),
        now(),
        30 * DAY,
    )
    .unwrap();
    assert_eq!(valid.signing, ca.sha256);
    assert_eq!(valid.roots, vec![root.sha256()]);
    let text = |k: &str| String::from_utf8(valid.data[k].bytes().unwrap().to_vec()).unwrap();
    // ca-cert.pem is the signing certificate, re-encoded: same DER.
    let der = pem::certificates(text(keys::CA_CERT).as_bytes()).unwrap();
    assert_eq!(Fingerprint::of_der(&der[0]), ca.sha256);
    assert_eq!(text(keys::CERT_CHAIN), ca.cert_pem);
    assert_eq!(text(keys::ROOT_CERT), root.pem());
    assert_eq!(text(keys::CA_KEY), ca.key_pem);
    // No tls.crt: istiod would prefer it over the *.pem keys.
    assert_eq!(valid.data.len(), 4);
    assert!(!format!("{valid:?}").contains("PRIVATE"));
}

#[test]
fn a_leaf_is_not_a_ca() {
    let root = MeshRoot::new("root").unwrap();
    let leaf = root
        .intermediate(&CaSpec {
            is_ca: false,
            ..CaSpec::default()
        })
        .unwrap();
    let refused = check(
        &mk_data(&leaf.cert_pem, &leaf.key_pem, &root.pem()),
        now(),
        DAY,
    )
    .unwrap_err();
    assert_eq!(refused.reason, reasons::NOT_A_CA, "{}", refused.message);
}

#[test]
fn a_ca_that_may_not_sign_certificates_is_refused() {
    let root = MeshRoot::new("root").unwrap();
    let ca = root
        .intermediate(&CaSpec {
            key_cert_sign: false,
            ..CaSpec::default()
        })
        .unwrap();
    let refused = check(&mk_data(&ca.cert_pem, &ca.key_pem, &root.pem()), now(), DAY).unwrap_err();
    assert_eq!(refused.reason, reasons::NOT_A_CA);
    assert!(
        refused.message.contains("keyCertSign"),
        "{}",
        refused.message
    );
}

#[test]
fn the_wrong_key_is_refused_without_quoting_it() {
    let root = MeshRoot::new("root").unwrap();
    let ca = root.intermediate(&CaSpec::default()).unwrap();
    let other = root.intermediate(&CaSpec::default()).unwrap();
    let refused = check(
        &mk_data(&ca.cert_pem, &other.key_pem, &root.pem()),
        now(),
        DAY,
    )
    .unwrap_err();
    assert_eq!(refused.reason, reasons::KEY_MISMATCH);
    assert!(!refused.message.contains("PRIVATE"), "{}", refused.message);
}

#[test]
fn a_chain_to_another_root_is_not_trusted() {
    let root = MeshRoot::new("root").unwrap();
    let stranger = MeshRoot::new("root").unwrap();
    let ca = root.intermediate(&CaSpec::default()).unwrap();
    let refused = check(
        &mk_data(&ca.cert_pem, &ca.key_pem, &stranger.pem()),
        now(),
        DAY,
    )
    .unwrap_err();
    // Same subject names: only the signature tells them apart.
    assert_eq!(
        refused.reason,
        reasons::CHAIN_NOT_TRUSTED,
        "{}",
        refused.message
    );
    let missing = SourceData {
        ca_pem: None,
        ..mk_data(&ca.cert_pem, &ca.key_pem, "")
    };
    assert_eq!(
        check(&missing, now(), DAY).unwrap_err().reason,
        reasons::CHAIN_NOT_TRUSTED
    );
}

#[test]
fn a_root_bundle_may_hold_the_next_root_too() {
    let old = MeshRoot::new("old root").unwrap();
    let new = MeshRoot::new("new root").unwrap();
    let ca = new.intermediate(&CaSpec::default()).unwrap();
    let bundle = format!("{}{}", old.pem(), new.pem());
    let valid = check(&mk_data(&ca.cert_pem, &ca.key_pem, &bundle), now(), DAY).unwrap();
    // The root the chain verifies to comes first; the other is still listed.
    assert_eq!(valid.roots, vec![new.sha256(), old.sha256()]);
}

#[test]
fn a_ca_expiring_within_the_threshold_is_refused() {
    let root = MeshRoot::new("root").unwrap();
    let ca = root
        .intermediate(&CaSpec {
            not_after: Some(now() + 5 * DAY),
            ..CaSpec::default()
        })
        .unwrap();
    let data = mk_data(&ca.cert_pem, &ca.key_pem, &root.pem());
    let refused = check(&data, now(), 7 * DAY).unwrap_err();
    assert_eq!(refused.reason, reasons::CA_EXPIRING, "{}", refused.message);
    assert!(check(&data, now(), 3 * DAY).is_ok());
    // Expired outright is the validation reason.
    assert_eq!(
        check(&data, now() + 6 * DAY, 0).unwrap_err().reason,
        reasons::EXPIRED
    );
}

#[test]
fn garbage_is_malformed() {
    let refused = check(&mk_data("not pem", "x", "y"), now(), DAY).unwrap_err();
    assert_eq!(refused.reason, reasons::MALFORMED_CERTIFICATE);
    let empty = SourceData::default();
    assert_eq!(
        check(&empty, now(), DAY).unwrap_err().reason,
        reasons::MISSING_CERTIFICATE
    );
}

#[test]
fn a_new_root_is_noticed() {
    let root = MeshRoot::new("root").unwrap();
    let ca = root.intermediate(&CaSpec::default()).unwrap();
    let valid = check(&mk_data(&ca.cert_pem, &ca.key_pem, &root.pem()), now(), DAY).unwrap();
    let same = Blob::from(root.pem().into_bytes());
    let other = Blob::from(MeshRoot::new("root").unwrap().pem().into_bytes());
    assert!(!root_changed(Some(&same), &valid));
    assert!(root_changed(Some(&other), &valid));
    assert!(!root_changed(None, &valid));
}
