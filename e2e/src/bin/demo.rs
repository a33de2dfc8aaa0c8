//! `just demo`: the cert-sync filter inside a real Envoy gateway, proving
//! which certificate each hostname serves — through a rotation and through
//! an update Envoy rejects.

use anyhow::{Context, Result};
use certsync_core::report::Report;
use certsync_e2e::config::{GatewayConfig, PluginConfig};
use certsync_e2e::pki::{self, TestCa, TestCert};
use certsync_e2e::sds::{SdsDir, TlsSecret};
use certsync_e2e::{probe, sds_stat_name, Envoy, Receiver};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);
const HOSTS: [(&str, &str); 3] = [
    ("shop.example.com", "kubernetes://shop.shop-tls"),
    ("blog.example.com", "kubernetes://blog.blog-tls"),
    ("rsa.example.com", "kubernetes://legacy.rsa-tls"),
];

fn main() -> Result<()> {
    let root = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let receiver = Receiver::start()?;
    let mut certs: Vec<TestCert> = vec![
        ca.leaf(&[HOSTS[0].0])?,
        ca.leaf(&[HOSTS[1].0])?,
        pki::rsa_fixture()?,
    ];
    let mut dirs = Vec::new();
    let mut builder = GatewayConfig::builder()
        .with_filter(true)
        .plugin_config(PluginConfig::default().interval_ms(1000).heartbeat_ms(5000))
        .receiver_port(receiver.port())
        .concurrency(2);
    for (i, (sni, resource)) in HOSTS.iter().enumerate() {
        let dir = SdsDir::single(
            root.path().join(format!("secret-{i}")),
            TlsSecret::from_cert(*resource, &certs[i]),
        )?;
        builder = builder.host(*sni, dir.source(resource)?);
        dirs.push(dir);
    }
    step("Building the filter and starting Envoy 1.40 (V8) with 3 HTTPS hostnames");
    let config = builder.build()?;
    let envoy = Envoy::start(&config)?;
    println!(
        "  HTTPS on 127.0.0.1:{}, status listener (filter) on :{}, admin on :{}",
        config.https_port,
        config.status_port.unwrap_or(0),
        config.admin_port
    );

    step("1. The filter reports what Envoy has loaded; a TLS client checks each hostname");
    let report = wait_report(&receiver, |r| r.certificates.len() == 3)?;
    show(&report, config.https_port)?;

    step("2. Rotate shop.example.com (Kubernetes-style atomic ..data swap)");
    let next = ca.leaf(&[HOSTS[0].0])?;
    let want = next.fingerprint;
    let started = Instant::now();
    dirs[0].rotate(TlsSecret::from_cert(HOSTS[0].1, &next))?;
    certs[0] = next;
    let report = wait_report(&receiver, |r| {
        sha_of(r, HOSTS[0].1) == Some(want.to_string())
    })?;
    println!(
        "  reported {:.2} s after the swap, no restart (report #{} trigger {:?})",
        started.elapsed().as_secs_f64(),
        report.seq,
        report.trigger
    );
    show(&report, config.https_port)?;

    step("3. Push a broken update to blog.example.com (certificate and key do not match)");
    let served = certs[1].fingerprint;
    let other = ca.leaf(&[HOSTS[1].0])?;
    dirs[1].rotate(TlsSecret::new(
        HOSTS[1].1,
        other.chain_pem.clone(),
        certs[1].key_pem.clone(),
    ))?;
    let rejected = sds_stat_name(HOSTS[1].1, "update_rejected");
    certsync_e2e::poll("Envoy to reject the update", WAIT, || {
        Ok((envoy.stat(&rejected)? == Some(1)).then_some(()))
    })?;
    let from = receiver.count();
    receiver.wait_for_count(from + 1, WAIT)?;
    let report = receiver.last_report().context("report")?;
    println!("  Envoy rejected it ({rejected} = 1); its config_dump nevertheless shows the new chain {}.", other.fingerprint.short());
    println!("  The filter does not take config_dump's word: reports keep the certificate actually served.");
    show(&report, config.https_port)?;
    let probed = probe(config.https_port, HOSTS[1].0)?.fingerprint;
    println!(
        "  blog.example.com: served {} = reported {} = the last good one {}",
        probed.short(),
        sha_short(&report, HOSTS[1].1),
        served.short()
    );

    step("4. Expiry of every served certificate, from the gateway's own stats");
    for (_, resource) in HOSTS {
        let name = certsync_e2e::expiry_gauge_name(resource);
        println!("  {name} = {}", envoy.stat(&name)?.unwrap_or(0));
    }
    println!("\nDone: every hostname's served certificate was proven by fingerprint, through a rotation and a rejected update.");
    Ok(())
}

fn step(title: &str) {
    println!("\n== {title}");
}

fn wait_report(receiver: &Receiver, pred: impl Fn(&Report) -> bool) -> Result<Report> {
    let reports = receiver.wait_for(
        |rs| rs.last().and_then(|r| r.report.as_ref()).is_some_and(&pred),
        WAIT,
    )?;
    reports
        .last()
        .and_then(|r| r.report.clone())
        .context("no report")
}

fn sha_of(report: &Report, resource: &str) -> Option<String> {
    report
        .certificates
        .iter()
        .find(|c| c.resource == resource)
        .map(|c| c.cert.sha256.to_string())
}

fn sha_short(report: &Report, resource: &str) -> String {
    sha_of(report, resource).map_or_else(|| "-".into(), |s| s[..12].to_owned())
}

fn show(report: &Report, https_port: u16) -> Result<()> {
    println!(
        "  {:<18} {:<30} {:<13} {:<13} {:<11} MATCH",
        "HOSTNAME", "SDS RESOURCE", "REPORTED", "SERVED", "NOT AFTER"
    );
    for (sni, resource) in HOSTS {
        let served = probe(https_port, sni)?.fingerprint;
        let cert = report.certificates.iter().find(|c| c.resource == resource);
        let not_after = cert.map_or(0, |c| c.cert.not_after);
        let days = (not_after - unix_now()) / 86_400;
        let matched = cert.is_some_and(|c| c.cert.sha256 == served);
        println!(
            "  {sni:<18} {resource:<30} {:<13} {:<13} {:<11} {}",
            sha_short(report, resource),
            served.short(),
            format!("in {days} d"),
            if matched { "yes" } else { "NO" }
        );
    }
    for e in &report.errors {
        println!("  ! {}: {}", e.resource, e.error);
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
