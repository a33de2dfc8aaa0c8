//! `just bench`, rollout half: how long from a source Secret update until
//! the controller says every gateway pod serves it (Verified on all 3,
//! Converged), over many rotations on the local cluster
//! ([`certsync_testkit::local`]) — and, in the same run, the physical floor:
//! Envoy's own reload, from the agent's SDS file swap until a TLS client is
//! served the new certificate.
//!
//! ```text
//! rollout_bench [--out FILE] [--append] [--rotations N] [--interval-ms N]
//! ```
//!
//! The latency is the product's (watch, validation, the writer's atomic
//! publish, the filter's poll, the report, the controller's verdict); the
//! floor is what no verifier can beat. Their ratio says how much the
//! verification costs on top of the reload itself. The status is polled
//! every 10 ms, so figures are within 10 ms of the truth. Rotations start
//! at phases spread evenly over the report interval, so the figures are
//! not biased by a fixed position against the filters' poll timers.

use anyhow::{bail, Context, Result};
use certsync_contract::Fingerprint;
use certsync_testkit::local::agent::SwapLog;
use certsync_testkit::local::{LocalCluster, LocalOptions};
use certsync_testkit::procs;
use certsync_testkit::tls_client::probe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const STATUS_POLL: Duration = Duration::from_millis(10);
const PROBE_POLL: Duration = Duration::from_millis(2);
const TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between rotations, before the phase offset.
const SETTLE: Duration = Duration::from_millis(200);

const USAGE: &str =
    "usage: rollout_bench [--out FILE] [--append] [--rotations N] [--interval-ms N]";

struct Args {
    out: PathBuf,
    append: bool,
    rotations: usize,
    interval_ms: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        out: "bench-rollout.md".into(),
        append: false,
        rotations: 50,
        interval_ms: 1000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--out" => args.out = value("--out")?.into(),
            "--append" => args.append = true,
            "--rotations" => args.rotations = value("--rotations")?.parse()?,
            "--interval-ms" => args.interval_ms = value("--interval-ms")?.parse()?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[rollout_bench] {}", msg.as_ref());
}

fn main() -> Result<()> {
    procs::kill_children_on_panic();
    let args = parse_args()?;
    log("building fake-apiserver and cert-sync; starting the local cluster");
    let options = LocalOptions {
        report_interval: Duration::from_millis(args.interval_ms),
        ..LocalOptions::default()
    };
    let rig = LocalCluster::start(options)?;
    let mut results = run(&rig, args.rotations, args.interval_ms)?;
    drop(rig);
    log("the same rotations for a natively placed certificate (verify-only)");
    results.native = run_native(args.rotations, args.interval_ms)?;
    let md = results.markdown();
    certsync_bench::report::write(&args.out, args.append, &md)?;
    log(results.summary());
    log(format!("wrote {}", args.out.display()));
    Ok(())
}

struct Results {
    rotations: usize,
    pods: usize,
    interval_ms: u64,
    cores: usize,
    /// Secret updated → Converged with every pod Verified.
    verified: Vec<Duration>,
    /// SDS file swap → TLS client served the new certificate, per pod and rotation.
    floor: Vec<Duration>,
    /// A natively placed certificate (credentialName, verify-only): Secret
    /// updated → Converged with every pod Verified.
    native: Vec<Duration>,
}

/// `rotations` of a cert-manager style Secret referenced by an Istio
/// Gateway, cert-sync verify-only, on the native rig (the harness plays
/// istiod, pushing to every pod within 50 ms).
fn run_native(rotations: usize, interval_ms: u64) -> Result<Vec<Duration>> {
    use certsync_testkit::local::native::{
        certificate_secret, NativeCluster, NativeOptions, Route,
    };
    const HOST: &str = "shop.example.com";
    let rig = NativeCluster::start(NativeOptions {
        pods: 3,
        routes: vec![Route {
            host: HOST.into(),
            namespace: "istio-system".into(),
            secret: "shop-tls".into(),
            resource: "kubernetes://shop-tls".into(),
        }],
        pod_labels: Default::default(),
        rollout_timeout: Duration::from_secs(10),
        heartbeat_window: Duration::from_secs(6),
    })?;
    rig.put(&serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "shop", "namespace": "apps"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "hosts": [HOST], "tls": {"mode": "SIMPLE", "credentialName": "shop-tls"}}]}
    }))?;
    let pods = rig.pod_names();
    let source = "istio-system/shop-tls";
    let mut out = Vec::with_capacity(rotations);
    for r in 0..=rotations {
        let cert = rig.ca.leaf(&[HOST])?;
        let sha = cert.fingerprint.to_string();
        let sent = Instant::now();
        rig.put(&certificate_secret("istio-system", "shop-tls", &cert))?;
        let latency = loop {
            let status = rig.controller().status()?;
            if status.converged_on(source, &sha, &pods) {
                break sent.elapsed();
            }
            if sent.elapsed() > TIMEOUT {
                bail!("native rotation {r}: not Converged after {TIMEOUT:?}: {status:?}");
            }
            std::thread::sleep(STATUS_POLL);
        };
        // The first is the initial placement, not a rotation.
        if r > 0 {
            out.push(latency);
        }
        let phase = (r as f64 * 0.618_033_988_75).fract();
        std::thread::sleep(SETTLE + Duration::from_millis(interval_ms).mul_f64(phase));
    }
    Ok(out)
}

fn run(rig: &LocalCluster, rotations: usize, interval_ms: u64) -> Result<Results> {
    let sites = rig.sites().to_vec();
    let pods = rig.pod_names();
    for site in &sites {
        let cert = rig.new_cert(&site.host)?;
        rig.publish(site, &cert)?;
        rig.wait_converged(site, &cert, TIMEOUT)?;
    }
    log(format!(
        "{rotations} rotations over {} hosts, {} pods",
        sites.len(),
        pods.len()
    ));
    let mut verified = Vec::with_capacity(rotations);
    let mut floor = Vec::with_capacity(rotations * pods.len());
    for r in 0..rotations {
        let site = &sites[r % sites.len()];
        let cert = rig.new_cert(&site.host)?;
        let sha = cert.fingerprint.to_string();
        let source = site.source();
        let watchers: Vec<_> = rig
            .pods()
            .iter()
            .map(|pod| {
                let log = pod.agent().swap_log();
                let (port, host, resource) = (pod.https_port(), site.host.clone(), site.resource());
                let want = cert.fingerprint;
                std::thread::spawn(move || reload_time(&log, port, &host, &resource, &want))
            })
            .collect();
        let sent = Instant::now();
        rig.publish(site, &cert)?;
        let latency = loop {
            let status = rig.status()?;
            if status.converged_on(&source, &sha, &pods) {
                break sent.elapsed();
            }
            if sent.elapsed() > TIMEOUT {
                bail!("rotation {r}: not Converged after {TIMEOUT:?}: {status:?}");
            }
            std::thread::sleep(STATUS_POLL);
        };
        verified.push(latency);
        for watcher in watchers {
            let reload = watcher
                .join()
                .map_err(|_| anyhow::anyhow!("a reload watcher panicked"))??;
            floor.push(reload);
        }
        if (r + 1) % 10 == 0 {
            log(format!("{} rotations done", r + 1));
        }
        // Rotations must not overlap, and must not keep one phase against
        // the filters' poll timers (a rotation right after the report that
        // converged the previous one would always wait the same time for
        // the next poll). A golden-ratio sequence spreads the phases evenly.
        let phase = (r as f64 * 0.618_033_988_75).fract();
        std::thread::sleep(SETTLE + Duration::from_millis(interval_ms).mul_f64(phase));
    }
    Ok(Results {
        rotations,
        pods: pods.len(),
        interval_ms,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        verified,
        floor,
        native: Vec::new(),
    })
}

/// Waits for the agent's swap of `resource` to `want`, then probes Envoy
/// until it serves `want`: Envoy's own reload time.
fn reload_time(
    log: &SwapLog,
    port: u16,
    host: &str,
    resource: &str,
    want: &Fingerprint,
) -> Result<Duration> {
    let deadline = Instant::now() + TIMEOUT;
    let swap = loop {
        if let Some(swap) = log.swap_to(resource, want) {
            break swap;
        }
        if Instant::now() > deadline {
            bail!(
                "no SDS swap of {resource} to {} within {TIMEOUT:?}",
                want.short()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    loop {
        if probe(port, host).is_ok_and(|p| p.fingerprint == *want) {
            return Ok(swap.at.elapsed());
        }
        if Instant::now() > deadline {
            bail!("Envoy on :{port} never served {} for {host}", want.short());
        }
        std::thread::sleep(PROBE_POLL);
    }
}

/// The `p`-th percentile (nearest rank) of `samples`.
fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        "n/a".into()
    } else {
        format!("{:.1}×", a.as_secs_f64() / b.as_secs_f64())
    }
}

impl Results {
    fn figures(&self) -> [(Duration, Duration); 3] {
        let (v, f) = (&self.verified, &self.floor);
        [
            (percentile(v, 50.0), percentile(f, 50.0)),
            (percentile(v, 99.0), percentile(f, 99.0)),
            (percentile(v, 100.0), percentile(f, 100.0)),
        ]
    }

    fn summary(&self) -> String {
        let [(v50, f50), (v99, f99), _] = self.figures();
        let (n50, n99) = (
            percentile(&self.native, 50.0),
            percentile(&self.native, 99.0),
        );
        format!(
            "Secret → Verified on all {} pods: p50 {}, p99 {} (target p99 ≤ 2 s); \
             Envoy reload floor p50 {}, p99 {}; ratio p50 {}, p99 {}; \
             natively placed: p50 {}, p99 {} ({} / {} of the copy path)",
            self.pods,
            secs(v50),
            secs(v99),
            secs(f50),
            secs(f99),
            ratio(v50, f50),
            ratio(v99, f99),
            secs(n50),
            secs(n99),
            ratio(n50, v50),
            ratio(n99, v99)
        )
    }

    fn native_markdown(&self) -> String {
        let [(v50, _), (v99, _), (vmax, _)] = self.figures();
        let n = |p| percentile(&self.native, p);
        format!(
            "\n### Natively placed certificates (verify-only)\n\n\
             The same number of rotations of a cert-manager style Secret referenced by an \
             Istio Gateway's `credentialName`, with cert-sync verify-only \
             (`e2e/kit/src/local/native.rs`: the harness plays istiod and pushes the Secret \
             to every pod's Envoy as `kubernetes://shop-tls`, polling the API every 50 ms). \
             Latency from the Secret update until `/v1/status` shows it Converged on all \
             {pods} pods, in the same run as the copy path above.\n\n\
             | | p50 | p99 | max |\n|---|---|---|---|\n\
             | natively placed: Secret → Verified on all {pods} pods | {n50} | {n99} | {nmax} |\n\
             | copy path (above) | {v50} | {v99} | {vmax} |\n\
             | ratio | {r50} | {r99} | |\n",
            pods = self.pods,
            n50 = secs(n(50.0)),
            n99 = secs(n(99.0)),
            nmax = secs(n(100.0)),
            v50 = secs(v50),
            v99 = secs(v99),
            vmax = secs(vmax),
            r50 = ratio(n(50.0), v50),
            r99 = ratio(n(99.0), v99),
        )
    }

    fn markdown(&self) -> String {
        let mut md = self.copy_markdown();
        if !self.native.is_empty() {
            md.push_str(&self.native_markdown());
        }
        md
    }

    fn copy_markdown(&self) -> String {
        let [(v50, f50), (v99, f99), (vmax, fmax)] = self.figures();
        let verdict = if v99 <= Duration::from_secs(2) {
            "met"
        } else {
            "missed"
        };
        format!(
            "## Rollout verification: Secret updated → Verified on every gateway pod\n\n\
             The local cluster (`e2e/kit/src/local`): fake API server and the `cert-sync` \
             controller as processes, {pods} gateway pods each with a directory-mode \
             writer, an SDS agent and Envoy 1.40 with the filter (report interval \
             {interval} ms). {rotations} rotations of a source Secret; latency is from the \
             Secret update until `/v1/status` shows the new SHA-256 Converged with every pod \
             Verified (polled every 10 ms); rotations start at phases spread evenly over the \
             report interval. The floor, measured in the same run, is Envoy's \
             own reload: from the agent's SDS file swap until a TLS client is served the \
             new certificate ({floors} samples, one per pod and rotation; an upper bound, as \
             it includes the probing TLS handshake, 2 ms apart). {cores} cores.\n\n\
             | | p50 | p99 | max |\n|---|---|---|---|\n\
             | Secret → Verified on all {pods} pods | {v50} | {v99} | {vmax} |\n\
             | floor: SDS swap → served by Envoy | {f50} | {f99} | {fmax} |\n\
             | ratio | {r50} | {r99} | |\n\n\
             Target p99 ≤ 2 s with a {interval} ms report interval: **{verdict}**. Most \
             of the latency is the filters' poll interval: each pod reports a change on \
             its next poll, and the rollout is verified when the slowest of the {pods} \
             pods has (the latest of {pods} independent phases: on average {expected}% of \
             an interval); the rest is the watch, validation, the writer's atomic publish \
             and the agent's pickup.\n",
            pods = self.pods,
            interval = self.interval_ms,
            rotations = self.rotations,
            floors = self.floor.len(),
            cores = self.cores,
            v50 = secs(v50),
            v99 = secs(v99),
            vmax = secs(vmax),
            f50 = secs(f50),
            f99 = secs(f99),
            fmax = secs(fmax),
            r50 = ratio(v50, f50),
            r99 = ratio(v99, f99),
            expected = 100 * self.pods / (self.pods + 1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|m| Duration::from_millis(*m))
                .collect::<Vec<_>>()
        };
        let s = ms(&[5, 1, 4, 2, 3]);
        assert_eq!(percentile(&s, 50.0), Duration::from_millis(3));
        assert_eq!(percentile(&s, 99.0), Duration::from_millis(5));
        assert_eq!(percentile(&s, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }
}
