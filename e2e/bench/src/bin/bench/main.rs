//! `just bench`: the filter's costs, each compared side by side with a
//! baseline in the same run (these machines are noisy), written as Markdown.
//!
//! 1. user traffic with the filter installed vs not: throughput and p99 ratio;
//! 2. Envoy CPU of polling 1,000 loaded certificates, idle and one change per
//!    interval, on both Envoy lines (the pinned one and Istio 1.28's 1.36);
//! 3. the release module's size.

mod poll_cost;
mod user_traffic;

use anyhow::{Context, Result};
use certsync_testkit::bootstrap::{Bootstrap, PluginConfig};
use certsync_testkit::pki::TestCa;
use certsync_testkit::sds::{PemEncoding, SdsDir, TlsSecret};
use certsync_testkit::{filter_wasm_path, Envoy, Receiver};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

const SIZE_BUDGET: u64 = 400 * 1024;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| "bench-report.md".into());
    let quick = args.iter().any(|a| a == "--quick");
    let only_poll = args.iter().any(|a| a == "--only-poll");
    let (rounds, round_len, certs, phase) = if quick {
        (2, Duration::from_secs(1), 100, Duration::from_secs(5))
    } else {
        (
            30,
            Duration::from_millis(1500),
            1000,
            Duration::from_secs(30),
        )
    };

    let mut report = String::from("# cert-sync filter benchmarks\n\n");
    let _ = writeln!(
        report,
        "Machine: {} cores; Envoy from `{}`.\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        certsync_testkit::envoy_binary()?.display()
    );

    eprintln!("[bench] module size");
    let wasm = filter_wasm_path()?;
    let size = std::fs::metadata(&wasm)?.len();
    let _ = writeln!(report, "## Release module size\n\n| module | bytes | KiB | budget | verdict |\n|---|---|---|---|---|");
    let _ = writeln!(
        report,
        "| `{}` | {size} | {:.1} | 400 KiB | {} |\n",
        wasm.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        size as f64 / 1024.0,
        verdict(size <= SIZE_BUDGET)
    );

    if !only_poll {
        eprintln!("[bench] user traffic: {rounds} alternating rounds of {round_len:?}");
        let (with, without, pinned) = user_traffic_rounds(rounds, round_len)?;
        let med = |v: &[user_traffic::Round], f: fn(&user_traffic::Round) -> f64| {
            median(v.iter().map(f).collect())
        };
        // The median of per-pair ratios: adjacent rounds share the machine's state.
        let pair_ratio = |f: fn(&user_traffic::Round) -> f64| {
            median(
                with.iter()
                    .zip(&without)
                    .map(|(a, b)| f(a) / f(b))
                    .collect(),
            )
        };
        let rps_ratio = pair_ratio(|r| r.requests_per_sec);
        let p99_ratio = pair_ratio(|r| r.p99_us as f64);
        let _ = writeln!(report, "## User traffic: filter installed vs not\n\nHTTPS keep-alive GETs (4 connections) against two identical Envoys (1 worker each, 3 SNI hosts), one of them with the filter on its status listener polling every 1 s and reporting every 1 s; rounds alternate between them ({rounds} pairs of {round_len:?}; {}). Ratios are medians of per-pair ratios.\n", if pinned { "both Envoys pinned to CPU 0, load generator to CPU 1" } else { "unpinned: taskset unavailable" });
        let _ = writeln!(
            report,
            "| gateway | requests/s | p50 µs | p99 µs |\n|---|---|---|---|"
        );
        let _ = writeln!(
            report,
            "| without filter | {:.0} | {:.0} | {:.0} |",
            med(&without, |r| r.requests_per_sec),
            med(&without, |r| r.p50_us as f64),
            med(&without, |r| r.p99_us as f64)
        );
        let _ = writeln!(
            report,
            "| with filter | {:.0} | {:.0} | {:.0} |",
            med(&with, |r| r.requests_per_sec),
            med(&with, |r| r.p50_us as f64),
            med(&with, |r| r.p99_us as f64)
        );
        let _ = writeln!(report, "\n**Throughput ratio (with / without): {rps_ratio:.3}** (target ≥ 0.99: {}); p99 ratio {p99_ratio:.3} (lower is better).\n", verdict(rps_ratio >= 0.99));
    }

    let _ = writeln!(report, "## Poll cost at {certs} loaded certificates\n\nTwo Envoys share the same {certs} SDS volumes; one runs the filter (1 s interval). Extra CPU of the filter Envoy over the baseline, same {phase:?} window each, on each Envoy line and for both ways of delivering a rotation: the SDS resource file swapped (its stamp moves), and PEM files swapped under a `watched_directory` while the resource file stays (Envoy 1.36 moves no stamp; the filter finds the change through `/certs`).\n");
    let _ = writeln!(report, "| Envoy | rotation by | idle, % of a core | idle, per interval | one rotation per interval, % of a core | per interval | baseline Envoy's own reloads | reports | idle target ≤ 1 % |\n|---|---|---|---|---|---|---|---|---|");
    for envoy in envoy_lines()? {
        let version = certsync_testkit::envoy_version(&envoy)?;
        for (encoding, label) in [
            (PemEncoding::InlineString, "resource file swap"),
            (PemEncoding::Files, "watched PEM files swap"),
        ] {
            eprintln!("[bench] poll cost on Envoy {version}, {label}: {certs} certificates, {phase:?} per phase");
            let cost = poll_cost::measure(certs, phase, encoding, &envoy)?;
            let ms = |share: f64| share * cost.interval.as_secs_f64() * 1000.0;
            let _ = writeln!(
                report,
                "| {version} | {label} | {:.2} % | {:.2} ms | {:.2} % | {:.2} ms | {:.2} % | {} | {} |",
                cost.idle_core_share * 100.0,
                ms(cost.idle_core_share),
                cost.change_core_share * 100.0,
                ms(cost.change_core_share),
                cost.baseline_change_core_share * 100.0,
                cost.reports_in_change_phase,
                verdict(cost.idle_core_share <= 0.01)
            );
        }
    }
    let _ = writeln!(report);

    std::fs::write(&out, &report).with_context(|| format!("writing {out}"))?;
    println!("{report}");
    eprintln!("[bench] wrote {out}");
    Ok(())
}

/// The pinned Envoy, then Istio 1.28's line (`$ENVOY_ISTIO_BIN`, set by the
/// Justfile) when it is a different binary.
fn envoy_lines() -> Result<Vec<PathBuf>> {
    let mut lines = vec![certsync_testkit::envoy_binary()?];
    if let Some(istio) = std::env::var_os("ENVOY_ISTIO_BIN").map(PathBuf::from) {
        anyhow::ensure!(
            istio.is_file(),
            "ENVOY_ISTIO_BIN={} is not a file",
            istio.display()
        );
        if !lines.contains(&istio) {
            lines.push(istio);
        }
    }
    Ok(lines)
}

/// Pins every thread of `pid` to `cpus` (e.g. "0"); false if taskset is unavailable.
fn pin(pid: u32, cpus: &str) -> bool {
    std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Alternating rounds against the two gateways; returns (with, without)
/// per round, in pairs. Both Envoys share CPU 0 and the load generator
/// runs on CPU 1, so the pairs see the same scheduling.
fn user_traffic_rounds(
    rounds: usize,
    round_len: Duration,
) -> Result<(Vec<user_traffic::Round>, Vec<user_traffic::Round>, bool)> {
    let root = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let receiver = Receiver::start()?;
    let sni = "bench.example.com";
    let mut with = Bootstrap::builder()
        .with_filter(true)
        .plugin_config(PluginConfig::default().interval_ms(1000).heartbeat_ms(1000))
        .receiver_port(receiver.port());
    let mut without = Bootstrap::builder();
    let mut dirs = Vec::new();
    for (i, host) in [sni, "a.example.com", "b.example.com"].iter().enumerate() {
        let resource = format!("kubernetes://bench.h{i}");
        let dir = SdsDir::single(
            root.path().join(format!("h{i}")),
            TlsSecret::from_cert(&resource, &ca.leaf(&[host])?),
        )?;
        with = with.host(*host, dir.source(&resource)?);
        without = without.host(*host, dir.source(&resource)?);
        dirs.push(dir);
    }
    let (with, without) = (with.build()?, without.build()?);
    let (a, b) = (Envoy::start(&with)?, Envoy::start(&without)?);
    let pinned = [a.pid(), b.pid()]
        .iter()
        .all(|p| p.is_some_and(|p| pin(p, "0")))
        && pin(std::process::id(), "1");
    receiver.wait_for_count(1, Duration::from_secs(30))?;
    // Warm both up.
    user_traffic::drive(with.https_port, sni, 4, Duration::from_millis(500))?;
    user_traffic::drive(without.https_port, sni, 4, Duration::from_millis(500))?;
    let (mut w, mut wo) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so drift over time cancels out.
        if round % 2 == 0 {
            w.push(user_traffic::drive(with.https_port, sni, 4, round_len)?);
            wo.push(user_traffic::drive(without.https_port, sni, 4, round_len)?);
        } else {
            wo.push(user_traffic::drive(without.https_port, sni, 4, round_len)?);
            w.push(user_traffic::drive(with.https_port, sni, 4, round_len)?);
        }
    }
    Ok((w, wo, pinned))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}
