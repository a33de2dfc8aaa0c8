//! Envoy's `config_dump` of the active SDS secrets, as the filter reads it:
//! the index (names and stamps) and the full secrets, whose PEM chains the
//! filter then summarizes for its report; and the admin path it builds
//! from the names found (regex-escaped, percent-encoded).
#![no_main]

use certsync_filter::admin;
use certsync_filter::inventory::Observed;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let index = admin::parse_index(data);
    let secrets = admin::parse_secrets(data, |name| !name.ends_with("-skip"));
    // One document behind both reads.
    assert_eq!(index.is_ok(), secrets.is_ok());
    if let Ok(index) = &index {
        assert!(index.iter().all(|e| !e.name.is_empty()));
        let names: Vec<&str> = index.iter().map(|e| e.name.as_str()).collect();
        let path = admin::secrets_path(&names, names.len() * 3);
        assert!(
            path.is_ascii() && !path.contains([' ', '#', '\n']),
            "{path}"
        );
    }
    for secret in secrets.into_iter().flatten() {
        assert!(!secret.name.ends_with("-skip"));
        if let Ok(pem) = &secret.pem {
            let _ = Observed::read(&secret.name, pem);
        }
    }
});
