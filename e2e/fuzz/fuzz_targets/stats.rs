//! Envoy's `/stats` answer to the filter's tripwire query: the counters
//! that say whether a certificate may have changed, and the per-secret
//! failure counters by stat name.
#![no_main]

use certsync_filter::tripwire;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reading) = tripwire::parse(data) else {
        return;
    };
    // Against no earlier reading every failing secret is new; against
    // itself none is.
    assert_eq!(reading.failed_since(None).len(), reading.failures.len());
    assert!(reading.failed_since(Some(&reading)).is_empty());
    assert!(reading.failures.keys().all(|name| !name.is_empty()));
});
