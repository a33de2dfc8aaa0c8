//! The filter inside a real Envoy (V8, the engine istio-proxy uses): what it
//! reports equals what a TLS client is served, per SNI, through rotations,
//! rejections, outages, restarts and `--concurrency 4`; and the pod's own
//! mesh identity (`default`, `ROOTCA`) with every certificate of its chain
//! and root bundle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use anyhow::{ensure, Context, Result};
use certsync_contract::report::{LoadedCertificate, Report, Trigger};
use certsync_contract::{sds, Fingerprint};
use certsync_testkit::bootstrap::{self, Bootstrap, PluginConfig, HTTPS_BODY};
use certsync_testkit::pki::{self, TestCa, TestCert};
use certsync_testkit::sds::{PemEncoding, SdsDir, TlsSecret, DEFAULT_FILE};
use certsync_testkit::{https_get, poll, probe, Envoy, Receiver, ReceiverMode};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(15);

/// One gateway: three SNI hosts (RSA and ECDSA leaves, each with an
/// intermediate), the filter on the status listener, a report receiver.
struct Gateway {
    root: tempfile::TempDir,
    dirs: BTreeMap<&'static str, SdsDir>,
    certs: BTreeMap<&'static str, TestCert>,
    ca: TestCa,
    receiver: Receiver,
    config: Bootstrap,
}

const HOSTS: [(&str, &str); 3] = [
    ("rsa.example.com", "kubernetes://shop.rsa-tls"),
    ("p256.example.com", "kubernetes://shop.p256-tls"),
    ("fresh.example.com", "kubernetes://blog.fresh-tls"),
];

impl Gateway {
    fn new(plugin: PluginConfig, concurrency: u32) -> Result<Gateway> {
        Gateway::with_encoding(plugin, concurrency, None)
    }

    /// `encoding` for every host; by default the first host gets Istio's
    /// `inline_bytes` and the others hand-written `inline_string`.
    fn with_encoding(
        plugin: PluginConfig,
        concurrency: u32,
        encoding: Option<PemEncoding>,
    ) -> Result<Gateway> {
        let root = tempfile::tempdir()?;
        let ca = TestCa::new()?;
        let receiver = Receiver::start()?;
        let mut certs = BTreeMap::new();
        certs.insert(HOSTS[0].0, pki::rsa_fixture()?);
        certs.insert(HOSTS[1].0, pki::p256_fixture()?);
        certs.insert(HOSTS[2].0, ca.leaf(&[HOSTS[2].0])?);
        let mut dirs = BTreeMap::new();
        let mut builder = Bootstrap::builder()
            .with_filter(true)
            .plugin_config(plugin)
            .receiver_port(receiver.port())
            .concurrency(concurrency);
        for (i, (sni, resource)) in HOSTS.iter().enumerate() {
            // Istio's agent sends inline_bytes; hand-written SDS files use inline_string.
            let encoding = encoding.unwrap_or(if i == 0 {
                PemEncoding::InlineBytes
            } else {
                PemEncoding::InlineString
            });
            let secret = TlsSecret::from_cert(*resource, &certs[sni]).with_encoding(encoding);
            let dir = SdsDir::single(root.path().join(format!("h{i}")), secret)?;
            builder = builder.host(*sni, dir.source(resource)?);
            dirs.insert(*sni, dir);
        }
        let config = builder.build()?;
        let path = root.path().join("bootstrap.json");
        config.write(&path)?;
        Envoy::validate(&path).context("the generated bootstrap must pass --mode validate")?;
        Ok(Gateway {
            root,
            dirs,
            certs,
            ca,
            receiver,
            config,
        })
    }

    fn start(&self) -> Result<Envoy> {
        Envoy::start(&self.config)
    }

    /// Rotates `sni` to `cert` with an atomic `..data` swap.
    fn rotate(&mut self, sni: &'static str, cert: TestCert) -> Result<()> {
        let secret = TlsSecret::from_cert(resource_of(sni), &cert);
        self.publish(sni, secret)?;
        self.certs.insert(sni, cert);
        Ok(())
    }

    /// Publishes `secret` for `sni`, in the encoding the host already uses.
    fn publish(&mut self, sni: &'static str, secret: TlsSecret) -> Result<()> {
        let dir = self.dirs.get_mut(sni).context("unknown host")?;
        let encoding = dir.secret(DEFAULT_FILE).context("no secret")?.encoding;
        dir.rotate(secret.with_encoding(encoding))
    }

    /// Waits for a report in which `sni`'s resource has fingerprint `want`.
    fn wait_reported(&self, sni: &str, want: Fingerprint, timeout: Duration) -> Result<Report> {
        let resource = resource_of(sni);
        let reports = self.receiver.wait_for(
            |rs| {
                rs.last()
                    .and_then(|r| r.report.as_ref())
                    .is_some_and(|r| fingerprint_of(r, resource) == Some(want))
            },
            timeout,
        )?;
        reports
            .last()
            .and_then(|r| r.report.clone())
            .context("no report")
    }
}

fn resource_of(sni: &str) -> &'static str {
    HOSTS.iter().find(|(s, _)| *s == sni).map_or("", |(_, r)| r)
}

fn fingerprint_of(report: &Report, resource: &str) -> Option<Fingerprint> {
    report
        .certificates
        .iter()
        .find(|c| c.resource == resource)
        .map(|c| c.cert.sha256)
}

fn plugin() -> PluginConfig {
    PluginConfig::default()
        .interval_ms(1000)
        .heartbeat_ms(10_000)
}

#[test]
fn reported_fingerprints_equal_what_tls_clients_are_served() -> Result<()> {
    let gw = Gateway::new(plugin().report_token("gw-token"), 1)?;
    let envoy = gw.start()?;
    let reports = gw.receiver.wait_for(
        |rs| {
            rs.iter()
                .any(|r| r.report.as_ref().is_some_and(|r| r.certificates.len() == 3))
        },
        WAIT,
    )?;
    let received = reports
        .iter()
        .find(|r| r.report.as_ref().is_some_and(|r| r.certificates.len() == 3))
        .context("full report")?;
    let report = received.report.clone().context("decoded")?;
    assert_eq!(received.authorization.as_deref(), Some("Bearer gw-token"));
    assert_eq!(report.trigger, Trigger::Startup);
    assert_eq!(
        (report.pod.name.as_str(), report.pod.namespace.as_str()),
        ("gw-0", "istio-system")
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    for (sni, resource) in HOSTS {
        let served = probe(gw.config.https_port, sni)?;
        let loaded = report
            .certificates
            .iter()
            .find(|c| c.resource == resource)
            .context("resource reported")?;
        assert_eq!(
            loaded.cert.sha256, served.fingerprint,
            "{sni}: reported vs served"
        );
        assert_eq!(served.fingerprint, gw.certs[sni].fingerprint);
        assert_eq!(
            loaded.cert.chain_len, served.chain_len,
            "{sni}: chain with intermediate"
        );
        assert_eq!(loaded.cert.chain_len, 2);
        // The expiry gauge, in the gateway's own stats.
        let gauge = envoy.stat(&certsync_testkit::expiry_gauge_name(resource))?;
        assert_eq!(
            gauge.map(|v| v as i64),
            Some(loaded.cert.not_after),
            "{sni} gauge"
        );
    }
    assert!(
        envoy
            .stat("wasmcustom.cert_sync.reports_sent")?
            .unwrap_or(0)
            >= 1
    );
    Ok(())
}

#[test]
fn a_rotation_by_atomic_swap_is_reported_within_two_intervals_without_restart() -> Result<()> {
    let interval = Duration::from_millis(1000);
    let mut gw = Gateway::new(plugin(), 1)?;
    let mut envoy = gw.start()?;
    let pid = envoy.pid();
    gw.wait_reported(HOSTS[2].0, gw.certs[HOSTS[2].0].fingerprint, WAIT)?;

    for round in 0..3 {
        let next = gw.ca.leaf(&[HOSTS[2].0])?;
        let want = next.fingerprint;
        let swapped = Instant::now();
        gw.rotate(HOSTS[2].0, next)?;
        let report = gw
            .wait_reported(HOSTS[2].0, want, 2 * interval)
            .with_context(|| format!("round {round}: not reported within two intervals"))?;
        let took = swapped.elapsed();
        assert_eq!(report.trigger, Trigger::Change);
        assert_eq!(probe(gw.config.https_port, HOSTS[2].0)?.fingerprint, want);
        eprintln!("round {round}: rotation reported after {took:?}");
    }
    assert_eq!(envoy.pid(), pid, "no restart");
    assert!(envoy.is_running());
    Ok(())
}

/// Another leaf's chain with the served key: Envoy refuses it and keeps
/// serving the old pair, yet its config_dump shows the new chain.
fn reject_rotation(gw: &mut Gateway, sni: &'static str) -> Result<TestCert> {
    let other = gw.ca.leaf(&[sni])?;
    let bad = TlsSecret::new(
        resource_of(sni),
        other.chain_pem.clone(),
        gw.certs[sni].key_pem.clone(),
    );
    gw.publish(sni, bad)?;
    Ok(other)
}

#[test]
fn an_update_envoy_rejects_never_replaces_the_served_certificate_in_reports() -> Result<()> {
    let mut gw = Gateway::new(plugin().interval_ms(300).heartbeat_ms(300), 1)?;
    let envoy = gw.start()?;
    let sni = HOSTS[2].0;
    let served = gw.certs[sni].fingerprint;
    gw.wait_reported(sni, served, WAIT)?;

    let other = reject_rotation(&mut gw, sni)?;
    let rejected = certsync_testkit::sds_stat_name(resource_of(sni), "update_rejected");
    poll("Envoy to reject the update", WAIT, || {
        Ok((envoy.stat(&rejected)? == Some(1)).then_some(()))
    })?;
    // No stamp moves on a refusal; the secret's failure counter does.
    let flagged = wait_rejection_reported(&gw, sni, &other, WAIT)?;
    eprintln!("the rejection was reported after {flagged:?}");
    let from = gw.receiver.count();
    gw.receiver.wait_for_count(from + 4, WAIT)?;
    for r in &gw.receiver.reports()[from..] {
        let report = r.report.as_ref().context("report")?;
        assert_eq!(fingerprint_of(report, resource_of(sni)), Some(served));
    }
    assert_eq!(probe(gw.config.https_port, sni)?.fingerprint, served);
    assert_ne!(other.fingerprint, served);
    Ok(())
}

/// Waits for a report naming `sni`'s refused `other` chain as rejected.
fn wait_rejection_reported(
    gw: &Gateway,
    sni: &str,
    other: &TestCert,
    timeout: Duration,
) -> Result<Duration> {
    let start = Instant::now();
    let resource = resource_of(sni);
    let wanted = other.fingerprint.to_string();
    gw.receiver.wait_for(
        |rs| {
            rs.last().and_then(|r| r.report.as_ref()).is_some_and(|r| {
                r.errors.iter().any(|e| {
                    e.resource == resource
                        && e.error.contains("rejected")
                        && e.error.contains(&wanted)
                })
            })
        },
        timeout,
    )?;
    Ok(start.elapsed())
}

/// The configuration Envoy 1.36 (Istio 1.28's) reloads without moving any
/// stamp: PEM files swapped under the Secret's own `watched_directory`, the
/// SDS resource file unchanged. Three hosts, two workers, three rounds, then
/// a refused swap (a key that does not match).
#[test]
fn a_swap_of_watched_pem_files_is_reported_within_two_intervals() -> Result<()> {
    let interval = Duration::from_millis(1000);
    let mut gw = Gateway::with_encoding(plugin(), 2, Some(PemEncoding::Files))?;
    let envoy = gw.start()?;
    for (sni, _) in HOSTS {
        gw.wait_reported(sni, gw.certs[sni].fingerprint, WAIT)?;
    }
    for round in 0..3 {
        let sni = HOSTS[round % HOSTS.len()].0;
        let next = gw.ca.leaf(&[sni])?;
        let want = next.fingerprint;
        let swapped = Instant::now();
        gw.rotate(sni, next)?;
        gw.wait_reported(sni, want, 2 * interval)
            .with_context(|| format!("round {round}: {sni} not reported within two intervals"))?;
        eprintln!(
            "round {round}: {sni} reported after {:?}",
            swapped.elapsed()
        );
        assert_eq!(probe(gw.config.https_port, sni)?.fingerprint, want);
    }

    let sni = HOSTS[2].0;
    let served = gw.certs[sni].fingerprint;
    let other = reject_rotation(&mut gw, sni)?;
    let failed = certsync_testkit::sds_stat_name(resource_of(sni), "key_rotation_failed");
    poll("Envoy to refuse the swap", WAIT, || {
        Ok((envoy.stat(&failed)? == Some(1)).then_some(()))
    })?;
    let took = wait_rejection_reported(&gw, sni, &other, 2 * interval)?;
    eprintln!("the refused swap was reported after {took:?}");
    let last = gw
        .receiver
        .reports()
        .last()
        .and_then(|r| r.report.clone())
        .context("report")?;
    assert_eq!(
        fingerprint_of(&last, resource_of(sni)),
        Some(served),
        "still served"
    );
    assert_eq!(probe(gw.config.https_port, sni)?.fingerprint, served);
    Ok(())
}

#[test]
fn a_chain_envoy_rejected_before_the_first_poll_is_reported_as_an_error() -> Result<()> {
    // A long interval: the rejection lands before the filter's first poll.
    let mut gw = Gateway::new(plugin().interval_ms(3000), 1)?;
    let envoy = gw.start()?;
    let sni = HOSTS[2].0;
    let other = reject_rotation(&mut gw, sni)?;
    let rejected = certsync_testkit::sds_stat_name(resource_of(sni), "update_rejected");
    poll("Envoy to reject the update", WAIT, || {
        Ok((envoy.stat(&rejected)? == Some(1)).then_some(()))
    })?;
    assert_eq!(
        gw.receiver.count(),
        0,
        "the rejection must precede the first poll"
    );

    let reports = gw.receiver.wait_for_count(1, WAIT)?;
    let report = reports[0].report.clone().context("report")?;
    assert_eq!(
        fingerprint_of(&report, resource_of(sni)),
        None,
        "the rejected chain is not claimed"
    );
    let error = report
        .errors
        .iter()
        .find(|e| e.resource == resource_of(sni))
        .context("an error entry")?;
    assert!(
        error.error.contains("rejected") && error.error.contains(&other.fingerprint.to_string()),
        "{}",
        error.error
    );
    // The other hosts are reported as usual.
    assert_eq!(report.certificates.len(), 2);
    Ok(())
}

#[test]
fn with_four_workers_exactly_one_report_is_sent_per_interval() -> Result<()> {
    let interval = Duration::from_millis(500);
    let gw = Gateway::new(plugin().interval_ms(500).heartbeat_ms(500), 4)?;
    let _envoy = gw.start()?;
    gw.receiver.wait_for_count(2, WAIT)?;
    let start = Instant::now();
    let first = gw.receiver.count();
    std::thread::sleep(interval * 12);
    let window = start.elapsed();
    let reports = gw.receiver.reports();
    let new: Vec<_> = reports[first..]
        .iter()
        .filter_map(|r| r.report.as_ref().map(|rep| (r.at, rep.seq)))
        .collect();
    let expected = window.as_secs_f64() / interval.as_secs_f64();
    assert!(
        (new.len() as f64 - expected).abs() <= 1.5,
        "{} reports in {window:?} at a {interval:?} interval (expected ~{expected:.0})",
        new.len()
    );
    // Never two reports inside one interval; sequence numbers have no gaps.
    for pair in new.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(gap >= interval / 2, "two reports {gap:?} apart");
        assert_eq!(pair[1].1, pair[0].1 + 1, "seq");
    }
    Ok(())
}

#[test]
fn controller_down_500_or_slow_costs_no_crash_bounded_retries_and_reports_resume() -> Result<()> {
    let gw = Gateway::new(
        plugin()
            .interval_ms(200)
            .heartbeat_ms(200)
            .timeout_ms(300)
            .max_backoff_ms(1000),
        1,
    )?;
    let mut envoy = gw.start()?;
    gw.receiver.wait_for_count(2, WAIT)?;

    for mode in [
        ReceiverMode::Fail(500),
        ReceiverMode::Slow(Duration::from_millis(800)),
        ReceiverMode::Down,
    ] {
        gw.receiver.set_mode(mode.clone())?;
        let before = gw.receiver.count();
        let failed_before = envoy
            .stat("wasmcustom.cert_sync.reports_failed")?
            .unwrap_or(0);
        let outage = Duration::from_secs(4);
        let start = Instant::now();
        while start.elapsed() < outage {
            // User traffic is unaffected throughout.
            let (_, response) = https_get(gw.config.https_port, HOSTS[0].0, "/")?;
            assert_eq!(response.text(), HTTPS_BODY);
            std::thread::sleep(Duration::from_millis(200));
        }
        let attempts = gw.receiver.count() - before;
        let failed = envoy
            .stat("wasmcustom.cert_sync.reports_failed")?
            .unwrap_or(0)
            - failed_before;
        // Without backoff a 200 ms interval would make 20 attempts in 4 s.
        assert!(
            attempts <= 9,
            "{mode:?}: {attempts} attempts reached the controller"
        );
        assert!(failed >= 2, "{mode:?}: failures counted ({failed})");
        assert!(envoy.is_running(), "{mode:?}: Envoy survived");

        gw.receiver.set_mode(ReceiverMode::Ok)?;
        let resumed_from = gw.receiver.count();
        gw.receiver
            .wait_for(
                |rs| rs[resumed_from..].iter().any(|r| r.status == 200),
                Duration::from_secs(5),
            )
            .with_context(|| format!("reports resume after {mode:?}"))?;
    }
    ensure!(
        envoy.log_contents()?.contains("reporting resumed"),
        "recovery is logged"
    );
    Ok(())
}

#[test]
fn an_unreachable_admin_api_is_retried_with_backoff_and_traffic_flows() -> Result<()> {
    // The admin cluster is missing, as on a gateway before the EnvoyFilter lands.
    let gw = Gateway::new(
        plugin()
            .interval_ms(200)
            .max_backoff_ms(1000)
            .admin_cluster("no-such-cluster"),
        1,
    )?;
    let mut envoy = gw.start()?;
    poll("admin failures to be counted", WAIT, || {
        Ok((envoy
            .stat("wasmcustom.cert_sync.admin_failed")?
            .unwrap_or(0)
            >= 3)
            .then_some(()))
    })?;
    std::thread::sleep(Duration::from_secs(2));
    let failures = envoy
        .stat("wasmcustom.cert_sync.admin_failed")?
        .unwrap_or(0);
    assert!(
        failures <= 10,
        "{failures} attempts in ~3 s: backoff must bound them"
    );
    assert_eq!(gw.receiver.count(), 0, "nothing is reported without data");
    let (_, response) = https_get(gw.config.https_port, HOSTS[1].0, "/")?;
    assert_eq!(response.text(), HTTPS_BODY);
    assert!(envoy.is_running());
    assert!(
        envoy.log_contents()?.contains("no-such-cluster"),
        "the log names the cluster"
    );
    Ok(())
}

#[test]
fn an_invalid_plugin_config_is_logged_clearly_and_user_traffic_keeps_flowing() -> Result<()> {
    let mut gw = Gateway::new(plugin(), 1)?;
    // Like Istio, deliver the status listener dynamically: Envoy rejects it
    // (the plugin refuses its configuration) and keeps every other listener.
    gw.config.status_lds = Some(gw.root.path().join("lds.json"));
    gw.config.plugin =
        Some(serde_json::json!({ "report_cluster": "cert-sync-controller", "interval_ms": 5 }));
    let envoy = gw.start()?;
    poll("the configuration error in Envoy's log", WAIT, || {
        Ok(envoy
            .log_contents()?
            .contains("invalid plugin configuration")
            .then_some(()))
    })?;
    let log = envoy.log_contents()?;
    let line = log
        .lines()
        .find(|l| l.contains("invalid plugin configuration"))
        .context("line")?;
    assert!(
        line.contains("`interval_ms` is 5, below the minimum of 100"),
        "{line}"
    );
    for (sni, _) in HOSTS {
        let (served, response) = https_get(gw.config.https_port, sni, "/")?;
        assert_eq!(response.text(), HTTPS_BODY);
        assert_eq!(served.fingerprint, gw.certs[sni].fingerprint);
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(gw.receiver.count(), 0);
    Ok(())
}

#[test]
fn after_an_envoy_restart_the_filter_reports_again_from_scratch() -> Result<()> {
    let gw = Gateway::new(plugin(), 2)?;
    let mut envoy = gw.start()?;
    gw.receiver.wait_for(
        |rs| {
            rs.iter()
                .any(|r| r.report.as_ref().is_some_and(|r| r.certificates.len() == 3))
        },
        WAIT,
    )?;
    envoy.restart()?;
    let from = gw.receiver.count();
    let reports = gw.receiver.wait_for(
        |rs| {
            rs[from..]
                .iter()
                .any(|r| r.report.as_ref().is_some_and(|r| r.certificates.len() == 3))
        },
        WAIT,
    )?;
    let report = reports[from..]
        .iter()
        .find_map(|r| r.report.clone())
        .context("report")?;
    assert_eq!(report.trigger, Trigger::Startup);
    assert_eq!(report.seq, 1, "sequence restarts with the process");
    Ok(())
}

#[test]
fn no_private_key_bytes_reach_reports_or_envoy_logs() -> Result<()> {
    let gw = Gateway::new(plugin(), 1)?;
    let envoy = gw.start()?;
    gw.receiver.wait_for(
        |rs| {
            rs.iter()
                .any(|r| r.report.as_ref().is_some_and(|r| r.certificates.len() == 3))
        },
        WAIT,
    )?;
    let mut haystack: Vec<u8> = gw
        .receiver
        .reports()
        .iter()
        .flat_map(|r| r.body.clone())
        .collect();
    haystack.extend(envoy.log_contents()?.into_bytes());
    let haystack = String::from_utf8_lossy(&haystack);
    for cert in gw.certs.values() {
        for line in cert
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
        {
            assert!(!haystack.contains(line), "a private key line leaked");
        }
    }
    assert!(!haystack.contains("PRIVATE KEY"));
    Ok(())
}

/// The fingerprint of each certificate in `pem`, in order, each computed on
/// its own (as [`TestCert`] computes a leaf's), not by the filter's code.
fn each_fingerprint(pem: &str) -> Result<Vec<Fingerprint>> {
    pem.split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|block| block.contains("BEGIN CERTIFICATE"))
        .map(|block| Ok(TestCert::from_pem(block, "")?.fingerprint))
        .collect()
}

fn loaded<'a>(report: &'a Report, resource: &str) -> Option<&'a LoadedCertificate> {
    report.certificates.iter().find(|c| c.resource == resource)
}

/// Waits for the last report to satisfy `check` on `resource`'s entry.
fn wait_loaded(
    receiver: &Receiver,
    resource: &str,
    check: impl Fn(&LoadedCertificate) -> bool,
) -> Result<Report> {
    let reports = receiver
        .wait_for(
            |rs| {
                rs.last()
                    .and_then(|r| r.report.as_ref())
                    .and_then(|r| loaded(r, resource))
                    .is_some_and(&check)
            },
            WAIT,
        )
        .with_context(|| format!("waiting for {resource}: {:?}", receiver.last_report()))?;
    reports
        .last()
        .and_then(|r| r.report.clone())
        .context("no report")
}

/// An Istio gateway's own identity: the workload certificate `default`
/// (leaf, issuing intermediate, root) and `ROOTCA` (during a root rotation,
/// the old root and the new), loaded by an `ISTIO_MUTUAL`-style upstream
/// cluster; the gateway's credential beside them. With the shipped
/// WasmPlugin's prefixes, the report carries the fingerprint of every
/// certificate after the first for those two and for nothing else; a new
/// issuer behind the same leaf (Envoy moves no version then, only
/// `last_updated`), then the end of the root rotation, are each reported.
#[test]
fn the_mesh_identity_is_reported_with_its_issuers_and_every_trusted_root() -> Result<()> {
    let root = tempfile::tempdir()?;
    let mesh = TestCa::new()?;
    let next = TestCa::new()?;
    let workload = mesh.leaf(&["gw-0.istio-system.svc.cluster.local"])?;
    let chain = format!("{}{}", workload.chain_pem, mesh.root_pem());
    let mut identity = SdsDir::single(
        root.path().join("workload"),
        TlsSecret::new(sds::WORKLOAD_CERT, chain.clone(), workload.key_pem.clone()),
    )?;
    std::fs::create_dir(root.path().join("roots"))?;
    let roots_file = root.path().join("roots").join("rootca.json");
    let bundle = format!("{}{}", mesh.root_pem(), next.root_pem());
    let roots = bootstrap::write_ca_secret(&roots_file, sds::ROOT_CA, &bundle)?;
    let credential = mesh.leaf(&["shop.example.com"])?;
    let shop = SdsDir::single(
        root.path().join("shop"),
        TlsSecret::from_cert(sds::credential("shop-tls"), &credential),
    )?;

    let receiver = Receiver::start()?;
    // The prefixes the shipped WasmPlugin carries (certsync-wasmplugin's
    // `PluginSettings::default`).
    let prefixes = [
        sds::KUBERNETES_PREFIX,
        sds::FILE_CERT_PREFIX,
        sds::FILE_ROOT_PREFIX,
        sds::WORKLOAD_CERT,
        sds::ROOT_CA,
    ];
    let config = Bootstrap::builder()
        .with_filter(true)
        .plugin_config(plugin().resource_prefixes(&prefixes))
        .receiver_port(receiver.port())
        .host(
            "shop.example.com",
            shop.source(&sds::credential("shop-tls"))?,
        )
        .mesh_identity(identity.source(sds::WORKLOAD_CERT)?, roots)
        .build()?;
    let path = root.path().join("bootstrap.json");
    config.write(&path)?;
    Envoy::validate(&path).context("the generated bootstrap must pass --mode validate")?;
    let _envoy = Envoy::start(&config)?;

    let [intermediate, mesh_root] = each_fingerprint(&chain)?[1..] else {
        panic!("a chain of three");
    };
    assert_eq!(each_fingerprint(&chain)?[0], workload.fingerprint);
    let next_root = each_fingerprint(&next.root_pem())?[0];
    let report = receiver
        .wait_for(
            |rs| {
                rs.iter()
                    .any(|r| r.report.as_ref().is_some_and(|r| r.certificates.len() == 3))
            },
            WAIT,
        )?
        .into_iter()
        .find_map(|r| r.report.filter(|r| r.certificates.len() == 3))
        .context("a report of all three")?;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let workload_entry = loaded(&report, sds::WORKLOAD_CERT).context("default")?;
    assert_eq!(workload_entry.cert.sha256, workload.fingerprint);
    assert_eq!(workload_entry.cert.chain_len, 3);
    assert_eq!(workload_entry.chain_sha256, [intermediate, mesh_root]);
    let roots_entry = loaded(&report, sds::ROOT_CA).context("ROOTCA")?;
    assert_eq!(roots_entry.cert.sha256, mesh_root);
    assert_eq!(roots_entry.chain_sha256, [next_root]);
    assert_eq!(
        roots_entry.fingerprints().collect::<Vec<_>>(),
        [mesh_root, next_root],
        "both roots the pod trusts"
    );
    let shop_entry = loaded(&report, &sds::credential("shop-tls")).context("credential")?;
    assert_eq!(shop_entry.cert.sha256, credential.fingerprint);
    assert!(shop_entry.chain_sha256.is_empty(), "not the mesh identity");
    assert_eq!(
        probe(config.https_port, "shop.example.com")?.fingerprint,
        credential.fingerprint
    );

    // The same leaf behind another issuer (here the next CA's intermediate
    // and root; Envoy does not check its own chain): only the chain differs.
    let reissued = format!(
        "{}{}{}",
        leaf_pem(&chain),
        next.intermediate_pem(),
        next.root_pem()
    );
    let next_intermediate = each_fingerprint(&next.intermediate_pem())?[0];
    identity.rotate(TlsSecret::new(
        sds::WORKLOAD_CERT,
        reissued,
        workload.key_pem.clone(),
    ))?;
    let report = wait_loaded(&receiver, sds::WORKLOAD_CERT, |c| {
        c.chain_sha256 == [next_intermediate, next_root]
    })?;
    assert_eq!(report.trigger, Trigger::Change);
    let workload_entry = loaded(&report, sds::WORKLOAD_CERT).context("default")?;
    assert_eq!(
        workload_entry.cert.sha256, workload.fingerprint,
        "same leaf"
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);

    // The root rotation ends: only the new root is trusted.
    bootstrap::write_ca_secret(&roots_file, sds::ROOT_CA, &next.root_pem())?;
    let report = wait_loaded(&receiver, sds::ROOT_CA, |c| {
        c.cert.sha256 == next_root && c.chain_sha256.is_empty()
    })?;
    assert_eq!(report.trigger, Trigger::Change);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    Ok(())
}

/// The first PEM block of `chain`.
fn leaf_pem(chain: &str) -> String {
    chain
        .split_inclusive("-----END CERTIFICATE-----\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}
