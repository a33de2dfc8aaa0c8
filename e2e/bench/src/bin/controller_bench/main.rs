//! `just bench`, controller half: cert-sync against 10,000 TLS Secrets
//! (1,000 annotated) in the fake API server, and the same cluster watched
//! by a naive controller that caches every Secret with its data.
//!
//! ```text
//! controller_bench [--out FILE] [--append] [--quick] [--no-build] [--keep]
//! ```
//!
//! Measures initial sync time (ready, all published), publish latency over
//! 100 single updates (p50/p99/max), peak RSS of both controllers and the
//! API traffic each caused, and writes them as Markdown to `--out`
//! (appended with `--append`). `--quick` is a 1,000-Secret smoke run;
//! `--large` the 100,000-Secret scale (10,000 annotated, 20,000 others);
//! `--dense` 10,000 Secrets, every one annotated.
//! The binaries it runs are built first (release profile) unless
//! `--no-build`. `--keep` keeps the work directory (seed, kubeconfig, the
//! processes' logs) for inspection.

mod fake;
mod observer;
mod referenced;
mod report;
mod seed;

use anyhow::{bail, Context, Result};
use certsync_testkit::procs::{self, Proc};
use fake::FakeApi;
use observer::Observer;
use report::{CertSyncRun, NaiveRun, Results};
use seed::{Pki, Scale};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::time::Instant;

/// The gateway namespace cert-sync publishes into.
pub(crate) const GATEWAY_NS: &str = "istio-system";
/// cert-sync's debounce; part of every publish latency.
pub(crate) const DEBOUNCE_MS: u64 = 10;
/// An update slower than this is logged (the p99 target).
const SLOW_UPDATE: Duration = Duration::from_millis(50);
/// Time given to a process to settle after sync before reading its memory.
pub(crate) const SETTLE: Duration = Duration::from_secs(2);

const USAGE: &str =
    "usage: controller_bench [--out FILE] [--append] [--quick | --large | --dense] [--no-build] [--keep]";

struct Args {
    out: PathBuf,
    append: bool,
    quick: bool,
    large: bool,
    dense: bool,
    build: bool,
    keep: bool,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        out: "bench-controller.md".into(),
        append: false,
        quick: false,
        large: false,
        dense: false,
        build: true,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => args.out = it.next().context("--out needs a file")?.into(),
            "--append" => args.append = true,
            "--quick" => args.quick = true,
            "--large" => args.large = true,
            "--dense" => args.dense = true,
            "--no-build" => args.build = false,
            "--keep" => args.keep = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    procs::kill_children_on_panic();
    let args = parse_args()?;
    if args.build {
        eprintln!("[controller_bench] building fake-apiserver, cert-sync, naive-watcher");
        tokio::task::spawn_blocking(|| {
            procs::build_binaries(&[
                ("certsync-fakekube", "fake-apiserver"),
                ("cert-sync", "cert-sync"),
                ("certsync-bench", "naive-watcher"),
            ])
        })
        .await??;
    }
    let scale = if args.quick {
        Scale::QUICK
    } else if args.large {
        Scale::LARGE
    } else if args.dense {
        Scale::DENSE
    } else {
        Scale::FULL
    };
    let results = run(scale, args.keep).await?;
    let md = results.markdown();
    certsync_bench::report::write(&args.out, args.append, &md)?;
    eprintln!("[controller_bench] {}", results.summary());
    eprintln!("[controller_bench] wrote {}", args.out.display());
    Ok(())
}

pub(crate) fn log(msg: impl AsRef<str>) {
    eprintln!("[controller_bench] {}", msg.as_ref());
}

async fn run(scale: Scale, keep: bool) -> Result<Results> {
    let mut dir = tempfile::Builder::new()
        .prefix("controller-bench")
        .tempdir()?;
    if keep {
        dir.disable_cleanup(true);
        log(format!("keeping {}", dir.path().display()));
    }
    let bins = procs::bin_dir()?;
    log(format!(
        "generating {} certificates and the seed ({} Secrets)",
        scale.pairs + scale.updates,
        scale.secrets
    ));
    let pki = Pki::generate(&scale)?;
    let seed_path = dir.path().join("seed.json");
    let sizes = seed::write_seed(&seed_path, &scale, &pki)?;
    log(format!(
        "seed: data per Secret {}..{} bytes (mean {}), file {} bytes",
        sizes.min, sizes.max, sizes.mean, sizes.file_bytes
    ));

    let kubeconfig = dir.path().join("kubeconfig");
    let mut cmd = Command::new(bins.join("fake-apiserver"));
    cmd.arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .arg("--seed")
        .arg(&seed_path)
        .args(["--event-log", "100000"])
        .env("RUST_LOG", "warn");
    let mut fake_proc = Proc::spawn("fake-apiserver", cmd, dir.path().join("fake.log"), true)?;
    let line = tokio::task::block_in_place(|| {
        fake_proc.wait_for_line("listening on ", Duration::from_secs(180))
    })?;
    let url = line.trim_start_matches("listening on ").trim().to_owned();
    log(format!("fake API server at {url}"));
    let api = FakeApi::connect(&url)?;

    let naive = naive_phase(&scale, &bins, &kubeconfig, dir.path(), &api).await?;
    let certsync = certsync_phase(&scale, &bins, &kubeconfig, dir.path(), &api, &pki).await?;
    // The verify-only phase at the default scale (10,000 Gateways at the
    // large one measure the Gateway watches, not this issue's paths).
    let referenced = if scale.others == 0 {
        Some(
            referenced::referenced_phase(&scale, &bins, &kubeconfig, dir.path(), &api, &pki)
                .await?,
        )
    } else {
        None
    };
    fake_proc.check_alive()?;
    Ok(Results {
        scale,
        sizes,
        debounce_ms: DEBOUNCE_MS,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        naive,
        certsync,
        referenced,
    })
}

/// The baseline: `naive-watcher` alone against the seeded fake.
async fn naive_phase(
    scale: &Scale,
    bins: &Path,
    kubeconfig: &Path,
    dir: &Path,
    api: &FakeApi,
) -> Result<NaiveRun> {
    log("naive watcher: initial sync");
    let before = api.traffic().await?;
    let mut cmd = Command::new(bins.join("naive-watcher"));
    cmd.env("KUBECONFIG", kubeconfig);
    let start = Instant::now();
    let mut proc = Proc::spawn("naive-watcher", cmd, dir.join("naive.log"), true)?;
    let line =
        tokio::task::block_in_place(|| proc.wait_for_line("synced ", Duration::from_secs(300)))?;
    let synced = start.elapsed();
    let objects: usize = line
        .trim_start_matches("synced ")
        .trim()
        .parse()
        .with_context(|| format!("naive-watcher printed {line:?}"))?;
    if objects < scale.secrets {
        bail!(
            "naive-watcher synced {objects} Secrets, expected {}",
            scale.secrets
        );
    }
    tokio::time::sleep(SETTLE).await;
    proc.check_alive()?;
    let run = NaiveRun {
        objects,
        synced,
        memory: proc.memory()?,
        cpu_seconds: proc.cpu_seconds()?,
        traffic: api.traffic().await?.since(&before),
    };
    log(format!(
        "naive watcher: synced {objects} in {synced:.2?}, peak RSS {} KiB",
        run.memory.peak_kib
    ));
    Ok(run)
}

/// cert-sync: initial sync, then one update at a time.
async fn certsync_phase(
    scale: &Scale,
    bins: &Path,
    kubeconfig: &Path,
    dir: &Path,
    api: &FakeApi,
    pki: &Pki,
) -> Result<CertSyncRun> {
    let observer = Observer::start(api.client.clone(), GATEWAY_NS);
    observer.connected(Duration::from_secs(10)).await?;
    let before = api.traffic().await?;
    let own_before = observer.own_traffic();

    let http_port = certsync_testkit::ports::free_port()?;
    let http_addr = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let mut cmd = Command::new(bins.join("cert-sync"));
    cmd.env("KUBECONFIG", kubeconfig)
        .args(["--mode", "credential", "--gateway-namespace", GATEWAY_NS])
        .args([
            "--leader-election",
            "false",
            "--manage-gateway-config",
            "false",
        ])
        .args(["--certmerge", "false"])
        .arg("--http-addr")
        .arg(http_addr.to_string())
        .arg("--debounce-ms")
        .arg(DEBOUNCE_MS.to_string());
    log("cert-sync: initial sync");
    let start = Instant::now();
    let mut proc = Proc::spawn("cert-sync", cmd, dir.join("cert-sync.log"), false)?;

    let timeout = Duration::from_secs(600);
    let mut ready = None;
    let mut memory_ready = procs::Memory::default();
    while ready.is_none() || observer.count() < scale.annotated {
        proc.check_alive()?;
        if start.elapsed() > timeout {
            bail!(
                "cert-sync: after {timeout:?}, ready {ready:?}, {} of {} published{}",
                observer.count(),
                scale.annotated,
                proc.log_tail()
            );
        }
        if ready.is_none() && readyz(http_addr).await {
            ready = Some(start.elapsed());
            memory_ready = proc.memory()?;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_at = observer
        .count_reached(scale.annotated, Duration::from_secs(1))
        .await?;
    let all_published = all_at.saturating_duration_since(start);
    let ready = ready.unwrap_or_default();
    log(format!(
        "cert-sync: ready after {ready:.2?}, all {} published after {all_published:.2?}",
        scale.annotated
    ));
    check_fingerprints(scale, pki, &observer)?;
    tokio::time::sleep(SETTLE).await;
    proc.check_alive()?;
    let memory_synced = proc.memory()?;
    let cpu_sync = proc.cpu_seconds()?;
    let mid = api.traffic().await?;
    let own_mid = observer.own_traffic();
    let traffic_sync = mid
        .since(&before)
        .without("watch", true, own_mid.minus(own_before));

    log(format!("cert-sync: {} updates", scale.updates));
    let patches_before = api.own_patches();
    let mut latencies = Vec::with_capacity(scale.updates);
    for (u, cert) in pki.updates.iter().enumerate() {
        let (namespace, name) = scale.source(scale.update_target(u));
        let published = format!("{namespace}.{name}");
        let sha = cert.fingerprint.to_string();
        let sent = Instant::now();
        api.patch_data(&namespace, &name, &pki.data(cert)).await?;
        let arrived = observer
            .sha_reached(&published, &sha, Duration::from_secs(30))
            .await
            .with_context(|| format!("update {u}{}", proc.log_tail()))?;
        let latency = arrived.saturating_duration_since(sent);
        if latency > SLOW_UPDATE {
            // With a UTC time, to find what cert-sync was doing in its log.
            log(format!(
                "update {u} ({namespace}/{name}) took {latency:.1?}, sent at {}",
                jiff::Timestamp::now() - latency
            ));
        }
        latencies.push(latency);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proc.check_alive()?;
    let memory_after_updates = proc.memory()?;
    let cpu_updates = proc.cpu_seconds()? - cpu_sync;
    let traffic_updates = api
        .traffic()
        .await?
        .since(&mid)
        .without("watch", true, observer.own_traffic().minus(own_mid))
        .without("patch", false, api.own_patches().minus(patches_before));
    Ok(CertSyncRun {
        ready,
        all_published,
        memory_ready,
        memory_synced,
        memory_after_updates,
        cpu_sync,
        cpu_updates,
        traffic_sync,
        traffic_updates,
        latencies,
    })
}

/// `GET /readyz` answered 200.
pub(crate) async fn readyz(addr: std::net::SocketAddr) -> bool {
    tokio::task::spawn_blocking(move || certsync_testkit::http1::get(addr, "/readyz"))
        .await
        .ok()
        .and_then(Result::ok)
        .is_some_and(|r| r.is_success())
}

/// Every published Secret carries its source's fingerprint, and nothing
/// else was published.
fn check_fingerprints(scale: &Scale, pki: &Pki, observer: &Observer) -> Result<()> {
    let published = observer.snapshot();
    let mut wrong = Vec::new();
    for k in (0..scale.secrets).filter(|k| scale.is_annotated(*k)) {
        let (namespace, name) = scale.source(k);
        let key = format!("{namespace}.{name}");
        let want = pki.initial(scale, k)?.fingerprint.to_string();
        if published.get(&key) != Some(&want) {
            wrong.push(key);
        }
    }
    if !wrong.is_empty() || published.len() != scale.annotated {
        bail!(
            "{} published Secrets lack the expected {}, {} published in all (expected {}); e.g. {:?}",
            wrong.len(),
            observer::SOURCE_SHA256,
            published.len(),
            scale.annotated,
            wrong.iter().take(3).collect::<Vec<_>>()
        );
    }
    Ok(())
}
