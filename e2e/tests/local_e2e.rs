//! Local end-to-end: the fake API server and the `cert-sync` controller as
//! processes, three gateway pods each with a directory-mode writer, an SDS
//! agent and a real Envoy carrying the filter ([`certsync_testkit::local`]).
//!
//! Every scenario asserts what a user would notice: the certificate a TLS
//! client is served by each Envoy, what `/v1/status` says, and what the
//! real `cert-sync status -o wide` table shows (Converged, Stale, Unknown,
//! Missing, kept after a refusal). One rig serves every scenario in order, so the
//! suite costs one cluster start-up; each scenario leaves the cluster
//! Converged for the next.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use anyhow::{ensure, Context, Result};
use certsync_testkit::local::controller::STALL_REASONS;
use certsync_testkit::local::{LocalCluster, LocalOptions, Site};
use certsync_testkit::pki::TestCert;
use std::time::{Duration, Instant};

/// Generous for a loaded 2-core CI machine; convergence normally takes ~1–2 s.
const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn local_cluster_end_to_end() -> Result<()> {
    let started = Instant::now();
    let mut rig = LocalCluster::start(LocalOptions::default())?;
    let outcome = scenarios(&mut rig, &started);
    if outcome.is_err() {
        rig.keep_files();
    }
    outcome
}

fn scenarios(rig: &mut LocalCluster, started: &Instant) -> Result<()> {
    let sites = rig.sites().to_vec();
    step(started, "publish → Converged");
    let mut current = publish_converges(rig, &sites)?;
    step(started, "rotate → Converged");
    current[0] = rotate_converges(rig, &sites[0])?;
    step(started, "bad key → refused, nothing served changes");
    current[0] = bad_key_is_refused(rig, &sites[0], &current[0])?;
    step(
        started,
        "frozen writer → Stale → ladder → Converged after thaw",
    );
    current[1] = frozen_writer_climbs_the_ladder(rig, &sites[1], &current[1])?;
    step(started, "killed Envoy → Unknown → restarted → Verified");
    killed_envoy_is_unknown_then_verified(rig, &sites, &current)?;
    step(started, "controller restart → state rebuilt from reports");
    controller_restart_rebuilds_state(rig, &sites, &current)?;
    step(started, "forged reports → refused");
    forged_reports_are_refused(rig, &sites[2], &current[2])?;
    step(started, "a host no gateway serves → Missing on every pod");
    unrouted_host_is_missing(rig)?;
    rig.check_alive()?;
    step(started, "done");
    Ok(())
}

fn step(started: &Instant, what: &str) {
    eprintln!(
        "[local_e2e +{:>5.1}s] {what}",
        started.elapsed().as_secs_f64()
    );
}

/// Every site published; every pod serves it and the status says Converged.
fn publish_converges(rig: &LocalCluster, sites: &[Site]) -> Result<Vec<TestCert>> {
    let certs = sites
        .iter()
        .map(|s| rig.new_cert(&s.host))
        .collect::<Result<Vec<_>>>()?;
    for (site, cert) in sites.iter().zip(&certs) {
        rig.publish(site, cert)?;
    }
    for site in sites {
        // What the gateways are checked against: the SDS resource Istio
        // names after the files as the gateway mounts them.
        let source = site.source();
        let status = rig.wait_status(&format!("{source} published"), CONVERGE, |s| {
            s.publication(&source).is_some()
        })?;
        let published = status.publication(&source).map(|p| &p["sdsResource"]);
        ensure!(
            published.and_then(|r| r.as_str()) == Some(site.resource().as_str()),
            "the manifest names {source}'s SDS resource {published:?}, the gateways serve it as {:?}",
            site.resource()
        );
    }
    for (site, cert) in sites.iter().zip(&certs) {
        let status = rig.wait_converged(site, cert, CONVERGE)?;
        ensure!(
            status.kept(&site.source()).is_none(),
            "nothing refused: {status:?}"
        );
        rig.wait_served(site, cert, Duration::from_secs(5))?;
    }
    let pods = rig.pods().len();
    for (site, cert) in sites.iter().zip(&certs) {
        table_says(
            rig,
            &site.source(),
            &[
                &cert.fingerprint.short(),
                &format!("{pods}/{pods}"),
                "Converged",
            ],
        )?;
    }
    Ok(certs)
}

/// A new certificate in the source Secret reaches every pod.
fn rotate_converges(rig: &LocalCluster, site: &Site) -> Result<TestCert> {
    let next = rig.new_cert(&site.host)?;
    rig.publish(site, &next)?;
    rig.wait_converged(site, &next, CONVERGE)?;
    rig.wait_served(site, &next, Duration::from_secs(5))?;
    Ok(next)
}

/// A key that does not match: refused with KeyMismatch (status and Event),
/// the last good certificate stays published and served. Then a good
/// certificate is accepted again.
fn bad_key_is_refused(rig: &LocalCluster, site: &Site, good: &TestCert) -> Result<TestCert> {
    let source = site.source();
    let rejected = rig.new_cert(&site.host)?;
    rig.publish_bad_key(site, &rejected)?;
    let status = rig.wait_status(&format!("{source} kept with a reason"), CONVERGE, |s| {
        s.kept(&source).is_some()
    })?;
    let kept = status.kept(&source).unwrap_or_default().to_owned();
    ensure!(kept.contains("KeyMismatch"), "kept says {kept:?}");
    ensure!(
        status.sha256(&source) == Some(good.fingerprint.to_string().as_str()),
        "the last good certificate stays published: {status:?}"
    );
    table_says(
        rig,
        &source,
        &[&good.fingerprint.short(), "(kept: KeyMismatch)"],
    )?;
    ensure!(
        status
            .refusals()
            .iter()
            .any(|(subject, reason, _)| subject.contains(&site.name) && reason == "KeyMismatch"),
        "a KeyMismatch refusal names {source}: {status:?}"
    );
    let event = rig.wait_event(&site.namespace, &["KeyMismatch"], CONVERGE)?;
    ensure!(
        !event.message.contains("PRIVATE KEY"),
        "no key material in Events"
    );
    // Nothing served changes, for longer than a rollout takes.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for (pod, served) in rig.served(&site.host)?.iter().enumerate() {
            ensure!(
                *served == good.fingerprint,
                "gw-{pod} serves {} after a refused update",
                served.short()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    rig.wait_converged(site, good, Duration::from_secs(5))?;
    // Fixing the Secret publishes again.
    rotate_converges(rig, site)
}

/// One pod's writer frozen: that pod keeps the old certificate (Stale), the
/// rollout stalls and climbs the ladder (Events), and converges once the
/// writer runs again.
fn frozen_writer_climbs_the_ladder(
    rig: &mut LocalCluster,
    site: &Site,
    old: &TestCert,
) -> Result<TestCert> {
    let source = site.source();
    rig.pod_mut(1).freeze_writer()?;
    let next = rig.new_cert(&site.host)?;
    rig.publish(site, &next)?;
    let sha = next.fingerprint.to_string();
    let status = rig.wait_status(&format!("gw-1 Stale on {source}"), CONVERGE, |s| {
        s.sha256(&source) == Some(sha.as_str())
            && s.pod_state(&source, "gw-1") == Some("Stale")
            && s.pod_state(&source, "gw-0") == Some("Verified")
            && s.pod_state(&source, "gw-2") == Some("Verified")
    })?;
    ensure!(
        status.state(&source) == Some("Progressing"),
        "not Converged while a pod is Stale: {status:?}"
    );
    ensure!(
        rig.pod(1).served(&site.host)? == old.fingerprint,
        "the frozen pod still serves the old certificate"
    );
    table_says(rig, &source, &["Progressing", "gw-1=Stale"])?;
    // Past --rollout-timeout the ladder starts.
    let event = rig.wait_event(&site.namespace, &STALL_REASONS, CONVERGE)?;
    eprintln!("  stall Event: {} {}", event.reason, event.message);
    let steps = rig
        .controller()
        .metric("certsync_rollout_ladder_steps_total", &[])?;
    eprintln!("  certsync_rollout_ladder_steps_total = {steps}");
    rig.pod_mut(1).thaw_writer()?;
    rig.wait_converged(site, &next, CONVERGE)?;
    rig.wait_served(site, &next, Duration::from_secs(5))?;
    Ok(next)
}

/// A dead Envoy's reports stop: Unknown after the heartbeat window; back
/// to Verified once it runs again (its Pod object never went away).
fn killed_envoy_is_unknown_then_verified(
    rig: &mut LocalCluster,
    sites: &[Site],
    certs: &[TestCert],
) -> Result<()> {
    rig.pod_mut(2).kill_envoy();
    let sources: Vec<String> = sites.iter().map(Site::source).collect();
    let window = rig.options().heartbeat_window;
    let status = rig.wait_status("gw-2 Unknown everywhere", window + CONVERGE, |s| {
        sources
            .iter()
            .all(|src| s.pod_state(src, "gw-2") == Some("Unknown"))
    })?;
    for src in &sources {
        ensure!(
            status.state(src) != Some("Converged"),
            "a pod that does not report cannot count as Verified: {status:?}"
        );
        ensure!(
            status.pod_state(src, "gw-0") == Some("Verified"),
            "the other pods stay Verified: {status:?}"
        );
    }
    ensure!(
        rig.pod(2).probe(&sites[0].host).is_err(),
        "gw-2's Envoy is down"
    );
    table_says(rig, &sources[0], &["Progressing", "gw-2=Unknown"])?;
    rig.pod_mut(2).restart_envoy()?;
    for (site, cert) in sites.iter().zip(certs) {
        rig.wait_converged(site, cert, CONVERGE)?;
    }
    rig.wait_served(&sites[0], &certs[0], Duration::from_secs(5))
}

/// A fresh controller knows nothing but the cluster and the reports that
/// arrive: it converges again on the same publications.
fn controller_restart_rebuilds_state(
    rig: &mut LocalCluster,
    sites: &[Site],
    certs: &[TestCert],
) -> Result<()> {
    let before = rig.status()?;
    rig.controller_mut().restart()?;
    let restarted = Instant::now();
    for (site, cert) in sites.iter().zip(certs) {
        let status = rig.wait_converged(site, cert, CONVERGE)?;
        ensure!(
            status.sha256(&site.source()) == before.sha256(&site.source()),
            "the same publication after a restart: {status:?}"
        );
    }
    eprintln!(
        "  reconverged {:.1}s after the restart",
        restarted.elapsed().as_secs_f64()
    );
    for (site, cert) in sites.iter().zip(certs) {
        rig.wait_served(site, cert, Duration::from_secs(5))?;
    }
    Ok(())
}

/// Reports from outside the gateways are refused and counted; they change
/// nothing.
fn forged_reports_are_refused(rig: &LocalCluster, site: &Site, current: &TestCert) -> Result<()> {
    let controller = rig.controller();
    let metric = |outcome: &str| {
        controller.metric(
            "certsync_reports_total",
            &[&format!("outcome=\"{outcome}\"")],
        )
    };
    let (unauthenticated, forbidden) = (metric("unauthenticated")?, metric("forbidden")?);
    let impostor = rig.new_cert(&site.host)?;
    let body = rig.forged_report("gw-0", site, &impostor)?;
    let status = controller.post_report(None, &body)?;
    ensure!(status == 401, "no token: {status}");
    let status = controller.post_report(Some("not-the-token"), &body)?;
    ensure!(status == 401, "wrong token: {status}");
    let body = rig.forged_report("gw-forged", site, &impostor)?;
    let status = controller.post_report(Some(rig.token()), &body)?;
    ensure!(status == 403, "a pod that does not exist: {status}");
    ensure!(
        metric("unauthenticated")? >= unauthenticated + 2.0,
        "unauthenticated reports counted"
    );
    ensure!(
        metric("forbidden")? >= forbidden + 1.0,
        "forbidden reports counted"
    );
    let status = rig.status()?;
    ensure!(
        status.pod("gw-forged").is_none(),
        "no forged pod in the status: {status:?}"
    );
    rig.wait_converged(site, current, Duration::from_secs(5))
        .context("still Converged on the real certificate")?;
    Ok(())
}

/// A certificate published for a host no gateway is configured for (the
/// Gateway server is not there yet): every pod reports, none has loaded
/// the resource, so every pod is Missing and the rollout never converges.
fn unrouted_host_is_missing(rig: &LocalCluster) -> Result<()> {
    let site = Site::new("shop", "not-routed-tls", "not-routed.example.test");
    let cert = rig.new_cert(&site.host)?;
    rig.publish(&site, &cert)?;
    let source = site.source();
    let pods = rig.pod_names();
    let status = rig.wait_status(&format!("{source} Missing on every pod"), CONVERGE, |s| {
        pods.iter()
            .all(|p| s.pod_state(&source, p) == Some("Missing"))
    })?;
    ensure!(
        status.state(&source) == Some("Progressing"),
        "nothing serves it, so it is not Converged: {status:?}"
    );
    table_says(
        rig,
        &source,
        &[&format!("0/{}", pods.len()), "gw-0=Missing"],
    )
}

/// `cert-sync status -o wide` (the real binary against the controller) has
/// a row for `source` containing every one of `words`.
fn table_says(rig: &LocalCluster, source: &str, words: &[&str]) -> Result<()> {
    let table = rig.controller().status_table(true)?;
    let row = table
        .lines()
        .find(|l| l.starts_with(&format!("{source} ")))
        .with_context(|| format!("no row for {source} in\n{table}"))?;
    for word in words {
        ensure!(
            row.contains(word),
            "the row for {source} lacks {word:?}:\n{table}"
        );
    }
    Ok(())
}
