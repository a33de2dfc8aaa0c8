//! A Secret's `tls.key` past the PEM framing: the first byte picks the PEM
//! label (PKCS#1, SEC1, PKCS#8, anything else) and the certificate to
//! match; the rest is the key's DER. Reaches the pkcs1/sec1/pkcs8 decoders
//! and the public-key derivation of every supported algorithm.
#![no_main]

use certsync_contract::key::{self, KeyError};
use certsync_fuzz::{fixture, pem, PAIRS};
use libfuzzer_sys::fuzz_target;

const LABELS: [&str; 5] = [
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, der)) = data.split_first() else {
        return;
    };
    let label = LABELS[usize::from(selector & 0x7) % LABELS.len()];
    let (cert_name, _) = PAIRS[usize::from(selector >> 4) % PAIRS.len()];
    let key_pem = pem(label, der);
    let result = key::check_matches(fixture(cert_name), &key_pem);
    // Fixture certificates always parse: only the key can be refused.
    assert!(
        !matches!(result, Err(KeyError::Certificate(_))),
        "fixture {cert_name} refused: {result:?}"
    );
    if let Err(e) = result {
        certsync_fuzz::assert_no_key_bytes(&e.to_string(), &key_pem, &[]);
    }
});
