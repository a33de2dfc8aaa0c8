//! `Report::decode`: the body of `POST /v1/reports` as the controller's
//! receiver gets it from any gateway pod. What it accepts honours the
//! limits it checks and encodes back to the same report.
#![no_main]

use certsync_contract::report::{Report, MAX_CERTIFICATES, REPORT_VERSION};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(report) = Report::decode(data) else {
        return;
    };
    assert_eq!(report.version, REPORT_VERSION);
    assert!(report.certificates.len() <= MAX_CERTIFICATES);
    assert!(!report.pod.name.is_empty() && !report.pod.namespace.is_empty());
    let again = Report::decode(&report.encode());
    assert!(
        again.as_ref().ok() == Some(&report),
        "{again:?} != {report:?}"
    );
});
