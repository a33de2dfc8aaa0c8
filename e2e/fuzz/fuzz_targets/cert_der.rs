//! One certificate as DER, past the PEM framing: x509-parser and what
//! certsync-contract reads from it (serial, names, SANs, validity), then the
//! public key a private key is matched against.
#![no_main]

use certsync_contract::{cert, key, pem};
use certsync_fuzz::{fixture, pem as pem_block, PAIRS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let summary = cert::summarize_der(data);
    let chain = pem_block("CERTIFICATE", data);
    // The framing gives back exactly the DER it wrapped.
    if let Ok(ders) = pem::certificates(&chain) {
        assert_eq!(ders, [data]);
    }
    if let Ok(summary) = &summary {
        assert_eq!(summary.chain_len, 1);
        assert_eq!(cert::summarize_chain(&chain).as_ref(), Ok(summary));
        // The serial is lowercase hex without leading zero bytes.
        assert!(summary
            .serial
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // Matching a key reads the certificate's SubjectPublicKeyInfo: one
        // of the fixture keys, by length, keeps each run to one derivation.
        let (_, key_name) = PAIRS[data.len() % PAIRS.len()];
        let _ = key::check_matches(&chain, fixture(key_name));
    }
});
