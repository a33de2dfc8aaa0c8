//! Private-key matching and pair validation (feature `keys`), natively and in wasm.
#![cfg(feature = "keys")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use certsync_contract::key::{check_matches, KeyAlgorithm, KeyError};
use certsync_contract::validate::{validate_pair, Invalid};

macro_rules! fixture {
    ($name:literal) => {
        certsync_fixtures::pem!($name)
    };
}

/// 2030-01-01: inside every fixture's window but the expired/future ones.
const NOW: i64 = 1_893_456_000;

#[test]
fn every_supported_key_format_matches_its_certificate() {
    let cases: [(&[u8], &[u8], KeyAlgorithm); 7] = [
        (
            fixture!("rsa.chain.pem"),
            fixture!("rsa.pkcs1.key"),
            KeyAlgorithm::Rsa,
        ),
        (
            fixture!("rsa.chain.pem"),
            fixture!("rsa.pkcs8.key"),
            KeyAlgorithm::Rsa,
        ),
        (
            fixture!("p256.chain.pem"),
            fixture!("p256.sec1.key"),
            KeyAlgorithm::EcdsaP256,
        ),
        (
            fixture!("p256.chain.pem"),
            fixture!("p256.pkcs8.key"),
            KeyAlgorithm::EcdsaP256,
        ),
        (
            fixture!("p384.chain.pem"),
            fixture!("p384.sec1.key"),
            KeyAlgorithm::EcdsaP384,
        ),
        (
            fixture!("p384.chain.pem"),
            fixture!("p384.pkcs8.key"),
            KeyAlgorithm::EcdsaP384,
        ),
        (
            fixture!("ed25519.chain.pem"),
            fixture!("ed25519.pkcs8.key"),
            KeyAlgorithm::Ed25519,
        ),
    ];
    for (cert, key, alg) in cases {
        assert_eq!(check_matches(cert, key), Ok(alg));
    }
}

#[test]
fn a_key_from_another_pair_is_a_mismatch() {
    for (cert, key) in [
        (fixture!("rsa.crt"), fixture!("p256.pkcs8.key")),
        (fixture!("p256.crt"), fixture!("p384.sec1.key")),
        (fixture!("p256.crt"), fixture!("intermediate.key")),
        (fixture!("ed25519.crt"), fixture!("rsa.pkcs1.key")),
        // The intermediate is in the chain, but the key must match the leaf.
        (fixture!("p256.chain.pem"), fixture!("intermediate.key")),
    ] {
        let err = check_matches(cert, key).unwrap_err();
        assert!(matches!(err, KeyError::Mismatch { .. }), "{err:?}");
        assert_eq!(err.reason(), "key_mismatch");
    }
}

#[test]
fn missing_malformed_and_encrypted_keys_are_named_without_their_bytes() {
    let cert = fixture!("p256.crt");
    assert_eq!(check_matches(cert, b""), Err(KeyError::NoKey));
    assert_eq!(check_matches(cert, cert), Err(KeyError::NoKey));

    let garbage = b"-----BEGIN PRIVATE KEY-----\nTUlJQmFkS2V5Qnl0ZXM=\n-----END PRIVATE KEY-----\n";
    let err = check_matches(cert, garbage).unwrap_err();
    assert_eq!(err.reason(), "malformed_key");
    assert!(!err.to_string().contains("TUlJ"), "{err}");

    let encrypted =
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert_eq!(check_matches(cert, encrypted), Err(KeyError::Encrypted));
    assert_eq!(KeyError::Encrypted.reason(), "unsupported_key");

    let two = [fixture!("p256.sec1.key"), fixture!("p256.sec1.key")].concat();
    assert_eq!(check_matches(cert, &two), Err(KeyError::MultipleKeys));
}

#[test]
fn a_good_pair_validates_and_each_defect_has_its_own_reason() {
    let ok = validate_pair(fixture!("p256.chain.pem"), fixture!("p256.sec1.key"), NOW).unwrap();
    assert_eq!(ok.key, KeyAlgorithm::EcdsaP256);
    assert_eq!(ok.summary.chain_len, 2);

    let reason = |cert: &[u8], key: &[u8]| validate_pair(cert, key, NOW).unwrap_err().reason();
    assert_eq!(
        reason(fixture!("expired.crt"), fixture!("rsa.pkcs8.key")),
        "expired"
    );
    assert_eq!(
        reason(fixture!("future.crt"), fixture!("rsa.pkcs8.key")),
        "not_yet_valid"
    );
    assert_eq!(
        reason(fixture!("p256.reversed.pem"), fixture!("p256.sec1.key")),
        "chain_order"
    );
    assert_eq!(
        reason(fixture!("rsa.crt"), fixture!("p256.sec1.key")),
        "key_mismatch"
    );
    assert_eq!(
        reason(b"garbage", fixture!("p256.sec1.key")),
        "malformed_certificate"
    );
    assert_eq!(reason(fixture!("p256.crt"), b""), "missing_key");
}

#[test]
fn expiry_is_checked_before_the_key_so_the_reason_is_the_useful_one() {
    let err = validate_pair(fixture!("expired.crt"), fixture!("p256.sec1.key"), NOW).unwrap_err();
    assert!(matches!(
        err,
        Invalid::Expired {
            not_after: 1_609_459_200
        }
    ));
}
