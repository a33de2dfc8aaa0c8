//! A Secret's `tls.crt` (or a CA bundle, or a chain Envoy reports) as PEM
//! text: the framing (certsync-contract `pem`), then every certificate's
//! X.509 and the chain checks the controller and the filter apply to it.
#![no_main]

use certsync_contract::{cert, pem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ders = pem::certificates(data);
    let summary = cert::summarize_chain(data);
    let fingerprints = cert::chain_fingerprints(data);
    let in_order = cert::chain_in_order(data);
    // One framing behind all four: they agree on what the chain is.
    assert_eq!(ders.is_ok(), fingerprints.is_ok());
    if let (Ok(ders), Ok(fingerprints)) = (&ders, &fingerprints) {
        assert!(!ders.is_empty() && ders.len() <= pem::MAX_CHAIN_LEN);
        assert_eq!(fingerprints.len(), ders.len() - 1);
    }
    if let Ok(summary) = &summary {
        let ders = ders.as_ref().map(Vec::len).unwrap_or_default();
        assert_eq!(summary.chain_len, ders);
        assert!(in_order.is_ok(), "a chain that summarizes has an order");
    }
});
