//! Envoy's `/certs`: the serial numbers every TLS context serves, which the
//! filter counts per normalized serial to tell what Envoy really serves.
#![no_main]

use certsync_filter::admin::{self, normalize_serial};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(served) = admin::parse_served(data) else {
        return;
    };
    // Serials are compared normalized: normalizing twice changes nothing.
    if let Ok(text) = std::str::from_utf8(data) {
        for word in text.split('"').filter(|w| w.len() < 80) {
            let once = normalize_serial(word);
            assert_eq!(normalize_serial(&once), once);
            let _ = served.contains(&once);
        }
    }
});
