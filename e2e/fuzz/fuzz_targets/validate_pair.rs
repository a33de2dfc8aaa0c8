//! `validate_pair`, the gate in front of every publication, on a
//! `tls.crt` and a `tls.key` as a Secret holds them (PEM text, the two
//! joined by a NUL byte in the input): chain parsing, order, validity
//! window and key match; a refusal never quotes the key.
#![no_main]

use certsync_contract::cert;
use certsync_contract::validate::{check_window, validate_pair};
use certsync_fuzz::{assert_no_key_bytes, fields, NOW};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [cert_pem, key_pem] = fields(data, 2)[..] else {
        return;
    };
    match validate_pair(cert_pem, key_pem, NOW) {
        Ok(pair) => {
            assert_eq!(cert::summarize_chain(cert_pem).as_ref(), Ok(&pair.summary));
            assert_eq!(cert::chain_in_order(cert_pem), Ok(true));
            assert!(check_window(&pair.summary, NOW).is_ok());
        }
        Err(invalid) => {
            assert!(!invalid.reason().is_empty());
            assert_no_key_bytes(&invalid.to_string(), key_pem, &[cert_pem]);
            assert_no_key_bytes(&format!("{invalid:?}"), key_pem, &[cert_pem]);
        }
    }
});
