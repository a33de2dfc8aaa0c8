//! Changes Envoy makes without moving a secret's stamp: a `watched_directory`
//! rotation on Envoy 1.36 and refused updates on every version.

use super::rig::*;
use certsync_contract::report::Trigger;

#[test]
fn a_file_rotation_that_moves_no_stamp_is_found_by_what_the_contexts_serve() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.load("kubernetes://b.tls", "1", P256);
    rig.load("kubernetes://c.tls", "1", P384);
    rig.cycle_and_ack().unwrap();

    rig.rotate_files("kubernetes://b.tls", RSA);
    let report = rig.cycle_and_ack().expect("reported in the next cycle");
    assert_eq!(report.trigger, Trigger::Change);
    assert_eq!(
        kinds(&rig.paths),
        ["tripwire", "index", "certs", "secrets(changed)"]
    );
    let fetched = &rig.paths[3];
    assert!(
        fetched.contains("b%5C.tls")
            && !fetched.contains("a%5C.tls")
            && !fetched.contains("c%5C.tls"),
        "only the displaced secret's PEM is read: {fetched}"
    );
    let b = report
        .certificates
        .iter()
        .find(|c| c.resource == "kubernetes://b.tls")
        .unwrap();
    assert_eq!(b.cert.sha256, fp(RSA));

    assert!(rig.cycle().is_none(), "then idle again");
    assert_eq!(kinds(&rig.paths), ["tripwire"]);
}

#[test]
fn two_secrets_serving_one_certificate_are_both_looked_at_and_only_the_change_reported() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.load("kubernetes://b.tls", "1", RSA);
    rig.load("kubernetes://c.tls", "1", P384);
    rig.load("kubernetes://d.tls", "1", P384);
    rig.load("kubernetes://e.tls", "1", P384);
    rig.cycle_and_ack().unwrap();

    rig.rotate_files("kubernetes://b.tls", P256);
    let report = rig.cycle_and_ack().unwrap();
    let fetched = &rig.paths[3];
    assert!(
        fetched.contains("a%5C.tls") && fetched.contains("b%5C.tls"),
        "{fetched}"
    );
    assert!(!fetched.contains("c%5C.tls"), "{fetched}");
    let served: Vec<_> = report
        .certificates
        .iter()
        .take(2)
        .map(|c| (c.resource.as_str(), c.cert.sha256))
        .collect();
    assert_eq!(
        served,
        [
            ("kubernetes://a.tls", fp(RSA)),
            ("kubernetes://b.tls", fp(P256))
        ]
    );
    let logs = rig.reporter.host().logs.borrow();
    let news: Vec<_> = logs
        .iter()
        .filter(|(_, m)| m.contains("now serves"))
        .collect();
    assert_eq!(
        news.len(),
        6,
        "a.tls unchanged is not announced again: {news:?}"
    );
}

#[test]
fn a_look_that_fails_midway_is_repeated_not_forgotten() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();

    rig.rotate_files("kubernetes://a.tls", P256);
    rig.failing = Some("secrets(all)");
    assert!(rig.cycle().is_none(), "the PEM read failed");
    rig.failing = None;
    // The failure backs off one interval; the next look compares with the
    // last completed one, so the displaced secret is still a suspect.
    let report = (0..3)
        .find_map(|_| rig.cycle_and_ack())
        .expect("found on retry");
    assert_eq!(report.certificates[0].cert.sha256, fp(P256));
}

#[test]
fn without_the_counters_a_file_rotation_is_found_at_the_next_resync() {
    let mut rig = Rig::new(mk_config(""));
    rig.tripwire = None;
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();

    rig.rotate_files("kubernetes://a.tls", P256);
    assert!(rig.cycle().is_none(), "a blind poll reads only the index");
    assert_eq!(kinds(&rig.paths), ["tripwire", "index"]);
    // The 3 s heartbeat still reports the old certificate (no stamp moved);
    // the 6 s resync reads /certs and finds the new one.
    let report = (0..6)
        .filter_map(|_| rig.cycle_and_ack())
        .find(|r| r.certificates[0].cert.sha256 == fp(P256))
        .expect("the 6 s resync reads /certs");
    assert_eq!(report.certificates[0].cert.sha256, fp(P256));
}

#[test]
fn a_refused_file_rotation_is_reported_as_rejected_and_a_fix_clears_it() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();

    rig.load_rejected("kubernetes://a.tls", P256);
    let report = rig.cycle_and_ack().expect("the failure counter moved");
    assert_eq!(report.certificates[0].cert.sha256, fp(RSA), "still served");
    assert!(
        report.errors[0].error.contains("rejected"),
        "{:?}",
        report.errors
    );
    assert!(rig.cycle().is_none(), "no refetch loop");

    // The user fixes the files: accepted, again without a stamp.
    rig.rotate_files("kubernetes://a.tls", P256);
    let report = rig.cycle_and_ack().expect("the fix is reported");
    assert_eq!(report.certificates[0].cert.sha256, fp(P256));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn where_failure_counters_are_hidden_a_refused_update_still_never_counts_as_served() {
    let mut rig = Rig::new(mk_config(""));
    rig.failure_counters = false;
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();
    rig.load_rejected("kubernetes://a.tls", P256);
    for _ in 0..5 {
        if let Some(report) = rig.cycle_and_ack() {
            assert_eq!(report.certificates[0].cert.sha256, fp(RSA));
        }
    }
}
