//! Envoy CPU spent on the filter's polling with 1,000 loaded certificates:
//! two Envoys share the same 1,000 SDS volumes, one with the filter and one
//! without, measured over the same window, idle and with one rotation per
//! interval. The difference is the filter's cost.
//!
//! Run per Envoy line and per way the secrets are delivered: the SDS
//! resource file swapped (a stamp moves on every line), and PEM files under
//! a `watched_directory` swapped while the resource file stays (Envoy 1.36
//! moves no stamp: the filter finds the change through `/certs`).

use anyhow::{Context, Result};
use certsync_testkit::bootstrap::{Bootstrap, PluginConfig};
use certsync_testkit::pki::TestCa;
use certsync_testkit::sds::{PemEncoding, SdsDir, TlsSecret};
use certsync_testkit::{Envoy, EnvoyOptions, Receiver};
use std::path::Path;
use std::time::{Duration, Instant};

pub struct PollCost {
    pub interval: Duration,
    /// Extra CPU of the filter Envoy over the baseline, as a share of one core.
    pub idle_core_share: f64,
    pub change_core_share: f64,
    /// Baseline Envoy's own CPU in the change phase (SDS reloads), share of a core.
    pub baseline_change_core_share: f64,
    pub reports_in_change_phase: usize,
}

/// The filter's defaults at a 1 s interval; `CERTSYNC_BENCH_PLUGIN` (JSON)
/// overrides fields, to take the cost apart.
fn plugin_config() -> serde_json::Value {
    let mut config = PluginConfig::default()
        .interval_ms(1000)
        .heartbeat_ms(10_000)
        .to_json();
    if let Some(extra) = std::env::var("CERTSYNC_BENCH_PLUGIN")
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    {
        if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
    }
    config
}

/// User + system CPU time of a process, from /proc.
fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(") ").context("stat format")?.1;
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // CLK_TCK is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// File-based SDS costs Envoy one inotify instance per secret (Istio's gRPC
/// SDS does not); two Envoys with 1,000 secrets each exceed the default 128.
fn ensure_inotify_instances(needed: u64) -> Result<()> {
    const KNOB: &str = "/proc/sys/fs/inotify/max_user_instances";
    let current: u64 = std::fs::read_to_string(KNOB)?.trim().parse()?;
    if current < needed {
        std::fs::write(KNOB, needed.to_string()).with_context(|| {
            format!("{KNOB} is {current}; the benchmark needs {needed}: run `sysctl -w fs.inotify.max_user_instances={needed}` as root")
        })?;
    }
    Ok(())
}

pub fn measure(
    certificates: usize,
    phase: Duration,
    encoding: PemEncoding,
    envoy: &Path,
) -> Result<PollCost> {
    // Watched PEM files add a `watched_directory` watcher to each secret's
    // resource-file watcher.
    let per_secret = if encoding == PemEncoding::Files { 2 } else { 1 };
    ensure_inotify_instances(2 * per_secret * certificates as u64 + 256)?;
    let interval = Duration::from_secs(1);
    let root = tempfile::tempdir()?;
    let ca = TestCa::new()?;
    let receiver = Receiver::start()?;
    let mut dirs = Vec::with_capacity(certificates);
    let mut with_filter = Bootstrap::builder()
        .with_filter(true)
        .plugin_config(plugin_config())
        .receiver_port(receiver.port());
    let mut baseline = Bootstrap::builder();
    for i in 0..certificates {
        let sni = format!("host-{i}.example.com");
        let resource = format!("kubernetes://bench.host-{i}");
        let dir = SdsDir::single(
            root.path().join(format!("s{i}")),
            TlsSecret::from_cert(&resource, &ca.leaf(&[&sni])?).with_encoding(encoding),
        )?;
        with_filter = with_filter.host(&sni, dir.source(&resource)?);
        baseline = baseline.host(&sni, dir.source(&resource)?);
        dirs.push((sni, resource, dir));
    }
    let options = EnvoyOptions {
        ready_timeout: Duration::from_secs(120),
        binary: Some(envoy.to_path_buf()),
        ..EnvoyOptions::default()
    };
    let filtered = Envoy::start_with(&with_filter.build()?, options.clone())?;
    let plain = Envoy::start_with(&baseline.build()?, options)?;
    receiver
        .wait_for(
            |rs| {
                rs.iter().any(|r| {
                    r.report
                        .as_ref()
                        .is_some_and(|r| r.certificates.len() == certificates)
                })
            },
            Duration::from_secs(120),
        )
        .context("the filter's first full report")?;
    std::thread::sleep(Duration::from_secs(3)); // past the startup burst

    let (fpid, ppid) = (filtered.pid().context("pid")?, plain.pid().context("pid")?);
    let sample = || -> Result<(Duration, Duration)> { Ok((cpu_time(fpid)?, cpu_time(ppid)?)) };
    let share = |a: (Duration, Duration), b: (Duration, Duration), took: Duration| {
        let extra =
            (b.0.as_secs_f64() - a.0.as_secs_f64()) - (b.1.as_secs_f64() - a.1.as_secs_f64());
        (
            extra / took.as_secs_f64(),
            (b.1 - a.1).as_secs_f64() / took.as_secs_f64(),
        )
    };

    let start = sample()?;
    let t = Instant::now();
    std::thread::sleep(phase);
    let (idle_core_share, _) = share(start, sample()?, t.elapsed());

    let reports_before = receiver.count();
    let start = sample()?;
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < phase {
        let (sni, resource, dir) = &mut dirs[n % certificates];
        dir.rotate(
            TlsSecret::from_cert(resource.as_str(), &ca.leaf(&[sni.as_str()])?)
                .with_encoding(encoding),
        )?;
        n += 1;
        std::thread::sleep(interval);
    }
    let (change_core_share, baseline_change_core_share) = share(start, sample()?, t.elapsed());
    Ok(PollCost {
        interval,
        idle_core_share,
        change_core_share,
        baseline_change_core_share,
        reports_in_change_phase: receiver.count() - reports_before,
    })
}
