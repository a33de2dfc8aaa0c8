//! The reporting cycle against the fake host: what Envoy's admin API and the
//! controller would see, tick by tick.

mod mesh;
mod rig;
mod stampless;

use crate::host::Response;
use crate::reporter::{metric, not_after_metric, Reporter};
use crate::testing::{FakeHost, Shared};
use certsync_contract::report::{Report, Trigger};
use certsync_contract::{summarize_chain, Fingerprint};
use rig::*;

#[test]
fn first_report_lists_every_loaded_certificate_with_its_fingerprint() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://shop.tls", "1", RSA);
    rig.load("kubernetes://blog.tls", "1", P256);
    let (call, report) = rig.cycle().expect("a startup report");
    assert_eq!(call.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(call.path(), "/v1/reports");
    assert_eq!(report.trigger, Trigger::Startup);
    assert_eq!(report.pod.name, "gw-7d9f");
    assert_eq!(report.pod.namespace, "istio-system");
    let got: Vec<(&str, Fingerprint)> = report
        .certificates
        .iter()
        .map(|c| (c.resource.as_str(), c.cert.sha256))
        .collect();
    assert_eq!(
        got,
        vec![
            ("kubernetes://blog.tls", fp(P256)),
            ("kubernetes://shop.tls", fp(RSA))
        ]
    );
    let gauge = rig.reporter.host().gauges[&not_after_metric("kubernetes://shop.tls")];
    assert_eq!(
        gauge as i64,
        summarize_chain(RSA.as_bytes()).unwrap().not_after
    );
}

#[test]
fn an_idle_poll_reads_only_the_tripwire_and_the_index_once_per_resync() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://shop.tls", "1", RSA);
    rig.load("kubernetes://blog.tls", "1", P256);
    rig.cycle_and_ack().unwrap();
    assert_eq!(
        kinds(&rig.paths),
        ["tripwire", "index", "certs", "secrets(all)"]
    );
    for _ in 0..2 {
        assert!(
            rig.cycle().is_none(),
            "nothing changed, no heartbeat due yet"
        );
        assert_eq!(kinds(&rig.paths), ["tripwire"]);
    }
    let report = rig.cycle_and_ack().expect("heartbeat after 3 s");
    assert_eq!(report.trigger, Trigger::Heartbeat);
    assert_eq!(
        kinds(&rig.paths),
        ["tripwire"],
        "a heartbeat reads nothing more than the tripwire"
    );
    assert!(report.seq > 1);
    for _ in 0..2 {
        assert!(rig.cycle().is_none());
        assert_eq!(kinds(&rig.paths), ["tripwire"]);
    }
    rig.cycle_and_ack().expect("heartbeat after 6 s");
    assert_eq!(
        kinds(&rig.paths),
        ["tripwire", "index", "certs"],
        "the 6 s resync re-reads the index and what the contexts serve"
    );
}

#[test]
fn where_envoy_hides_the_tripwire_counters_every_poll_reads_the_index() {
    let mut rig = Rig::new(mk_config(""));
    rig.tripwire = None;
    rig.load("kubernetes://shop.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();
    assert!(rig.cycle().is_none());
    assert_eq!(kinds(&rig.paths), ["tripwire", "index"]);
    rig.load("kubernetes://shop.tls", "2", P256);
    let report = rig
        .cycle_and_ack()
        .expect("a change is still reported at once");
    assert_eq!(report.certificates[0].cert.sha256, fp(P256));
    let logs = rig.reporter.host().logs.borrow();
    assert!(
        logs.iter()
            .any(|(_, m)| m.contains("ssl_context_update_by_sds")),
        "{logs:?}"
    );
}

#[test]
fn a_rotation_fetches_only_the_changed_secret_and_reports_at_once() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.load("kubernetes://b.tls", "1", P256);
    rig.load("kubernetes://c.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();

    rig.load("kubernetes://b.tls", "2", P384);
    let report = rig.cycle_and_ack().expect("reported in the next cycle");
    assert_eq!(
        kinds(&rig.paths),
        ["tripwire", "index", "certs", "secrets(changed)"]
    );
    let fetched = &rig.paths[3];
    assert!(
        fetched.contains("b%5C.tls") && !fetched.contains("a%5C.tls"),
        "{fetched}"
    );
    assert_eq!(report.trigger, Trigger::Change);
    let b = report
        .certificates
        .iter()
        .find(|c| c.resource == "kubernetes://b.tls")
        .unwrap();
    assert_eq!((b.cert.sha256, b.version.as_str()), (fp(P384), "2"));
    assert_eq!(report.certificates.len(), 3);
}

#[test]
fn an_update_envoy_rejected_is_not_reported_as_served() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();
    rig.load_rejected("kubernetes://a.tls", P256);
    // No stamp and no context counter moved; the secret's failure counter did.
    let report = rig
        .cycle_and_ack()
        .expect("the rejection is reported in the next cycle");
    assert_eq!(
        kinds(&rig.paths),
        ["tripwire", "index", "certs", "secrets(all)"],
        "its only secret"
    );
    assert_eq!(
        report.certificates[0].cert.sha256,
        fp(RSA),
        "still serving the old one"
    );
    assert_eq!(report.certificates[0].version, "1");
    assert!(
        report.errors[0].error.contains(&fp(P256).to_string()),
        "{:?}",
        report.errors
    );
    assert!(report.errors[0].error.contains("rejected"));
    // No refetch loop: the next idle cycle reads only the tripwire.
    assert!(rig.cycle().is_none());
    assert_eq!(kinds(&rig.paths), ["tripwire"]);
    // The next accepted update clears the error.
    rig.load("kubernetes://a.tls", "3", P384);
    let report = rig.cycle_and_ack().unwrap();
    assert_eq!(report.certificates[0].cert.sha256, fp(P384));
    assert!(report.errors.is_empty());
}

#[test]
fn a_rejected_chain_seen_at_startup_is_never_claimed_as_served() {
    let mut rig = Rig::new(mk_config(""));
    rig.load_rejected("kubernetes://a.tls", RSA);
    let report = rig.cycle_and_ack().unwrap();
    assert!(report.certificates.is_empty(), "{:?}", report.certificates);
    assert!(
        report.errors[0].error.contains("rejected"),
        "{:?}",
        report.errors
    );
}

#[test]
fn a_tls_server_added_or_removed_is_reported_at_the_next_poll() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.cycle_and_ack().unwrap();
    // A new server arrives as a listener update; no TLS context counter moves.
    rig.add_server("kubernetes://b.tls", "1", P256);
    let report = rig.cycle_and_ack().expect("the listener counter moved");
    assert_eq!(report.certificates.len(), 2);
    assert_eq!(kinds(&rig.paths)[..2], ["tripwire", "index"]);
    rig.remove_server("kubernetes://b.tls");
    let report = rig.cycle_and_ack().expect("the listener counter moved");
    assert_eq!(report.certificates.len(), 1);
}

#[test]
fn a_removed_secret_leaves_the_report_within_a_resync_and_zeroes_its_gauge() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.load("kubernetes://b.tls", "1", P256);
    rig.cycle_and_ack().unwrap();
    // Removing a secret touches no TLS context's counter: the resync's
    // index read finds it (the 3 s heartbeat in between still lists it).
    rig.loaded.retain(|(n, _, _)| *n != "kubernetes://b.tls");
    let report = (0..6)
        .filter_map(|_| rig.cycle_and_ack())
        .find(|r| r.certificates.len() == 1)
        .expect("within the 6 s resync");
    assert_eq!(report.certificates.len(), 1);
    assert_eq!(
        rig.reporter.host().gauges[&not_after_metric("kubernetes://b.tls")],
        0
    );
}

#[test]
fn an_unparseable_chain_is_reported_as_an_error_not_dropped() {
    let mut rig = Rig::new(mk_config(""));
    rig.load(
        "kubernetes://bad.tls",
        "1",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    );
    let report = rig.cycle_and_ack().unwrap();
    assert!(report.certificates.is_empty());
    assert_eq!(report.errors[0].resource, "kubernetes://bad.tls");
    assert!(
        report.errors[0].error.contains("not valid X.509"),
        "{}",
        report.errors[0].error
    );
}

#[test]
fn resource_prefixes_keep_mesh_identity_out_when_asked() {
    let mut rig = Rig::new(mk_config(r#","resource_prefixes":["kubernetes://"]"#));
    rig.load("kubernetes://a.tls", "1", RSA);
    rig.load("default", "1", P256);
    let report = rig.cycle_and_ack().unwrap();
    assert_eq!(report.certificates.len(), 1);
}

#[test]
fn controller_failures_back_off_exponentially_up_to_the_cap_and_recover() {
    let mut rig = Rig::new(mk_config(""));
    rig.load("kubernetes://a.tls", "1", RSA);
    let mut attempts_at = vec![];
    for _ in 0..30 {
        if let Some((call, _)) = rig.cycle() {
            attempts_at.push(rig.now);
            rig.respond(
                &call,
                Response {
                    status: Some(500),
                    body: vec![],
                },
            );
        }
    }
    let gaps: Vec<u64> = attempts_at
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1000)
        .collect();
    assert_eq!(&gaps[..4], &[1, 2, 4, 8], "{gaps:?}");
    assert!(
        gaps.iter().all(|g| *g <= 8),
        "capped at max_backoff: {gaps:?}"
    );
    let host = rig.reporter.host();
    assert_eq!(
        host.counter(metric::REPORTS_FAILED),
        attempts_at.len() as u64
    );
    let warnings = host
        .logs
        .borrow()
        .iter()
        .filter(|(_, m)| m.contains("HTTP 500"))
        .count();
    assert!(warnings < attempts_at.len(), "failures are logged sparsely");

    // The controller comes back: the unsent startup report goes out.
    let report = loop {
        if let Some(r) = rig.cycle_and_ack() {
            break r;
        }
    };
    assert_eq!(report.trigger, Trigger::Startup);
    assert!(rig
        .reporter
        .host()
        .logs
        .borrow()
        .iter()
        .any(|(_, m)| m.contains("resumed")));
}

#[test]
fn admin_api_errors_and_timeouts_back_off_without_reporting_stale_data() {
    let mut rig = Rig::new(mk_config(""));
    rig.tick();
    let call = rig.calls().remove(0);
    rig.respond(
        &call,
        Response {
            status: None,
            body: vec![],
        },
    );
    rig.tick();
    let call = rig.calls().remove(0);
    rig.respond(&call, ok(b"<html>not json".to_vec()));
    assert!(rig.calls().is_empty(), "no report from a failed poll");
    rig.tick();
    assert!(
        rig.calls().is_empty(),
        "second failure: waits two intervals"
    );
    rig.tick();
    assert_eq!(rig.calls().len(), 1);
    assert_eq!(rig.reporter.host().counter(metric::ADMIN_FAILED), 2);
}

#[test]
fn a_missing_cluster_is_a_failure_not_a_crash() {
    let mut rig = Rig::new(mk_config(""));
    rig.reporter.host().refuse_calls.set(true);
    for _ in 0..5 {
        rig.tick();
    }
    assert!(rig.reporter.host().counter(metric::ADMIN_FAILED) >= 2);
}

#[test]
fn with_four_workers_exactly_one_report_is_sent_per_interval() {
    let shared = Shared::default();
    let mut workers: Vec<Reporter<FakeHost>> = (0..4)
        .map(|i| {
            Reporter::new(
                FakeHost::new(&shared),
                mk_config(r#","heartbeat_ms":1000"#),
                100 + i,
            )
        })
        .collect();
    let dump = mk_dump(&[("kubernetes://a.tls", "1", RSA)]);
    let mut reports_per_interval = vec![];
    for second in 0..12u64 {
        let mut reports = 0;
        // Workers tick at different offsets inside each second.
        for (i, worker) in workers.iter_mut().enumerate() {
            shared.set_now(second * 1000 + i as u64 * 200);
            worker.on_tick();
            while let Some(call) = worker.host().take_calls().pop() {
                let body = if call.cluster == "cert-sync" {
                    reports += 1;
                    vec![]
                } else {
                    dump.clone()
                };
                worker.on_response(call.token, ok(body));
            }
        }
        reports_per_interval.push(reports);
    }
    assert_eq!(
        reports_per_interval[0], 0,
        "first tick: provisional claim only"
    );
    assert!(
        reports_per_interval[1..].iter().all(|n| *n == 1),
        "{reports_per_interval:?}"
    );
}

#[test]
fn sequence_numbers_keep_increasing_across_a_change_of_reporting_worker() {
    let shared = Shared::default();
    let cfg = || mk_config(r#","heartbeat_ms":1000"#);
    let mut a = Reporter::new(FakeHost::new(&shared), cfg(), 1);
    let mut b = Reporter::new(FakeHost::new(&shared), cfg(), 2);
    let dump = mk_dump(&[("kubernetes://a.tls", "1", RSA)]);
    let mut seqs = vec![];
    let mut run = |w: &mut Reporter<FakeHost>, now: u64| {
        shared.set_now(now);
        w.on_tick();
        while let Some(call) = w.host().take_calls().pop() {
            if call.cluster == "cert-sync" {
                seqs.push(Report::decode(call.body.as_deref().unwrap()).unwrap().seq);
            }
            w.on_response(
                call.token,
                ok(if call.cluster == "cert-sync" {
                    vec![]
                } else {
                    dump.clone()
                }),
            );
        }
    };
    for t in 0..4 {
        run(&mut a, t * 1000);
    }
    // `a` stalls; `b` takes over once the lease expires.
    for t in 4..10 {
        run(&mut b, t * 1000);
    }
    assert!(seqs.len() >= 5, "{seqs:?}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[test]
fn pod_identity_prefers_config_then_node_metadata() {
    let shared = Shared::default();
    let mut host = FakeHost::new(&shared);
    host.properties
        .insert("node.metadata.NAME".into(), "meta-pod".into());
    host.properties
        .insert("node.metadata.NAMESPACE".into(), "meta-ns".into());
    let r = Reporter::new(host, mk_config(r#","pod_name":"cfg-pod""#), 1);
    assert_eq!(
        (r.pod().name.as_str(), r.pod().namespace.as_str()),
        ("cfg-pod", "meta-ns")
    );
}
