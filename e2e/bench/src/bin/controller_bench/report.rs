//! The figures of one run and their Markdown section, with the issue's
//! targets and a met/MISSED verdict next to each figure that has one.

use crate::fake::{Count, Traffic};
use crate::seed::{Scale, SeedSizes};
use certsync_testkit::procs::Memory;
use std::fmt::Write as _;
use std::time::Duration;

/// cert-sync's peak RSS over the naive watcher's.
pub const RSS_RATIO_TARGET: f64 = 0.25;
/// Publish latency p99.
pub const P99_TARGET: Duration = Duration::from_millis(50);

pub struct NaiveRun {
    pub objects: usize,
    pub synced: Duration,
    pub memory: Memory,
    pub cpu_seconds: f64,
    pub traffic: Traffic,
}

pub struct CertSyncRun {
    pub ready: Duration,
    pub all_published: Duration,
    /// When `/readyz` first answered 200: caches synced, publishing under way.
    pub memory_ready: Memory,
    pub memory_synced: Memory,
    pub memory_after_updates: Memory,
    pub cpu_sync: f64,
    pub cpu_updates: f64,
    pub traffic_sync: Traffic,
    pub traffic_updates: Traffic,
    /// One per update, in order.
    pub latencies: Vec<Duration>,
}

pub struct Results {
    pub scale: Scale,
    pub sizes: SeedSizes,
    pub debounce_ms: u64,
    pub cores: usize,
    pub naive: NaiveRun,
    pub certsync: CertSyncRun,
    pub referenced: Option<crate::referenced::ReferencedRun>,
}

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn traffic_cell(c: Count) -> String {
    format!(
        "{} / {:.2} MiB",
        c.requests,
        c.bytes as f64 / (1024.0 * 1024.0)
    )
}

impl Results {
    pub fn rss_ratio(&self) -> f64 {
        let peak = self
            .certsync
            .memory_after_updates
            .peak_kib
            .max(self.certsync.memory_synced.peak_kib);
        peak as f64 / self.naive.memory.peak_kib.max(1) as f64
    }

    pub fn sorted_latencies(&self) -> Vec<Duration> {
        let mut v = self.certsync.latencies.clone();
        v.sort();
        v
    }

    /// One line for the console.
    pub fn summary(&self) -> String {
        let lat = self.sorted_latencies();
        format!(
            "all published {}; publish p50 {} p99 {}; peak RSS {} vs naive {} (ratio {:.3})",
            secs(self.certsync.all_published),
            ms(percentile(&lat, 50.0)),
            ms(percentile(&lat, 99.0)),
            mib(self.certsync.memory_after_updates.peak_kib),
            mib(self.naive.memory.peak_kib),
            self.rss_ratio()
        )
    }

    pub fn markdown(&self) -> String {
        let s = &self.scale;
        let c = &self.certsync;
        let n = &self.naive;
        let lat = self.sorted_latencies();
        let (p50, p99) = (percentile(&lat, 50.0), percentile(&lat, 99.0));
        let max = lat.last().copied().unwrap_or_default();
        let mean = lat.iter().sum::<Duration>() / u32::try_from(lat.len().max(1)).unwrap_or(1);
        let ratio = self.rss_ratio();
        let mut md = String::new();
        let _ = writeln!(
            md,
            "# cert-sync controller benchmark\n\n\
             ## {} TLS Secrets, {} annotated\n",
            s.secrets, s.annotated
        );
        let _ = writeln!(
            md,
            "Machine: {} cores. The fake API server runs as its own process, seeded with {} \
             `kubernetes.io/tls` Secrets in {} namespaces, every {}th annotated \
             `certsync.istio.io/autosync: \"true\"`. Each holds a valid P-256 leaf (4–40 SANs) + \
             intermediate in `tls.crt`, its key in `tls.key` and the root in `ca.crt`: \
             {:.1}–{:.1} KiB of data per Secret (mean {:.1} KiB; {} distinct pairs reused; \
             seed file {:.1} MiB).\n",
            self.cores,
            s.secrets,
            s.namespaces,
            s.secrets / s.annotated.max(1),
            self.sizes.min as f64 / 1024.0,
            self.sizes.max as f64 / 1024.0,
            self.sizes.mean as f64 / 1024.0,
            s.pairs,
            self.sizes.file_bytes as f64 / (1024.0 * 1024.0),
        );
        let _ = writeln!(
            md,
            "The two controllers run one after the other against the same fake, so neither \
             competes with the other for CPU: first `naive-watcher` (a kube-rs `watcher` + \
             `reflector` over every Secret with its data, as a straightforward controller \
             would cache them), then `cert-sync --mode credential --leader-election false \
             --manage-gateway-config false --certmerge false --debounce-ms {}` (TLS Secrets \
             metadata-only via the `type=kubernetes.io/tls` field selector, data read only for \
             annotated ones). RSS is `VmHWM` (peak) / `VmRSS` (now) from `/proc/<pid>/status`.\n",
            self.debounce_ms
        );
        let _ = writeln!(
            md,
            "| measure | cert-sync | naive watcher | target | verdict |\n|---|---|---|---|---|"
        );
        let _ = writeln!(
            md,
            "| initial sync: ready (`/readyz` 200 / `synced` printed), from process start | {} | {} ({} objects) | — | |",
            secs(c.ready),
            secs(n.synced),
            n.objects
        );
        let _ = writeln!(
            md,
            "| initial sync: all {} published in istio-system | {} | — | — | |",
            s.annotated,
            secs(c.all_published)
        );
        let _ = writeln!(
            md,
            "| CPU time during initial sync | {:.2} s | {:.2} s | — | |",
            c.cpu_sync, n.cpu_seconds
        );
        let _ = writeln!(
            md,
            "| peak RSS when first ready | {} (now {}) | — | — | |",
            mib(c.memory_ready.peak_kib),
            mib(c.memory_ready.rss_kib)
        );
        let _ = writeln!(
            md,
            "| peak RSS after sync | {} (now {}) | {} (now {}) | — | |",
            mib(c.memory_synced.peak_kib),
            mib(c.memory_synced.rss_kib),
            mib(n.memory.peak_kib),
            mib(n.memory.rss_kib)
        );
        let _ = writeln!(
            md,
            "| peak RSS after {} updates | {} (now {}) | — | — | |",
            s.updates,
            mib(c.memory_after_updates.peak_kib),
            mib(c.memory_after_updates.rss_kib)
        );
        let _ = writeln!(
            md,
            "| **peak RSS ratio cert-sync / naive** | **{ratio:.3}** | 1 | ≤ {RSS_RATIO_TARGET} | {} |",
            verdict(ratio <= RSS_RATIO_TARGET)
        );
        let _ = writeln!(
            md,
            "| publish latency p50 ({} updates) | {} | — | — | |",
            lat.len(),
            ms(p50)
        );
        let _ = writeln!(
            md,
            "| **publish latency p99** | **{}** | — | ≤ {} | {} |",
            ms(p99),
            ms(P99_TARGET),
            verdict(p99 <= P99_TARGET)
        );
        let _ = writeln!(
            md,
            "| publish latency mean / max | {} / {} | — | — | |",
            ms(mean),
            ms(max)
        );
        let _ = writeln!(
            md,
            "| CPU time for the {} updates | {:.2} s | — | — | |\n",
            s.updates, c.cpu_updates
        );
        let _ = writeln!(
            md,
            "Publish latency: one update at a time, the bench replaces an annotated source's \
             data with a fresh certificate (JSON merge patch) and stops the clock when its \
             metadata-only watch on istio-system delivers the published Secret carrying the new \
             `certsync.istio.io/source-sha256`. It includes the patch round trip, watch delivery \
             to cert-sync and back to the bench, and cert-sync's {} ms debounce.\n",
            self.debounce_ms
        );
        let _ = writeln!(
            md,
            "API traffic served by the fake (requests / response bytes; the bench's own watch \
             and patches subtracted):\n\n\
             | client, phase | reads, full objects | reads, metadata-only | writes |\n|---|---|---|---|"
        );
        for (who, t) in [
            ("naive watcher, initial sync", &n.traffic),
            ("cert-sync, initial sync", &c.traffic_sync),
            ("cert-sync, updates", &c.traffic_updates),
        ] {
            let _ = writeln!(
                md,
                "| {who} | {} | {} | {} |",
                traffic_cell(t.reads_full()),
                traffic_cell(t.reads_metadata()),
                traffic_cell(t.writes())
            );
        }
        let writes = c.traffic_updates.writes();
        let _ = writeln!(
            md,
            "\nWritten per update (request bodies cert-sync sent, all writes: the published \
             Secret, the manifest shard, Events): {:.1} KiB over {:.1} requests.\n",
            writes.sent as f64 / 1024.0 / s.updates.max(1) as f64,
            writes.requests as f64 / s.updates.max(1) as f64,
        );
        if self.referenced.is_some() {
            md.push_str(&self.referenced_markdown());
        }
        md
    }

    /// The verify-only section: natively referenced certificates, against
    /// the copy phase of the same run.
    fn referenced_markdown(&self) -> String {
        let Some(r) = &self.referenced else {
            return String::new();
        };
        let c = &self.certsync;
        let mut lat = r.latencies.clone();
        lat.sort_unstable();
        let copy = self.sorted_latencies();
        let per = |cpu: f64, n: usize| cpu * 1000.0 / n.max(1) as f64;
        let ratio = |a: Duration, b: Duration| {
            if b.is_zero() {
                "n/a".to_owned()
            } else {
                format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
            }
        };
        let mut md = String::new();
        let _ = writeln!(
            md,
            "### Verify-only: {} Istio Gateways referencing {} Secrets\n\n\
             The same fake API server after the copy phase: one Gateway per published \
             Secret, referencing it by `credentialName`; `cert-sync --publish=false` alone. \
             Latency: Secret updated → the manifest expects the new SHA-256 (seen through a \
             watch on the manifest ConfigMap). Copy-path figures are the phase above.\n\n\
             | | verify-only | copy path | ratio |\n|---|---|---|---|\n\
             | ready | {} | {} | {} |\n\
             | all rows / all published | {} | {} | {} |\n\
             | RSS after initial sync | {} | {} | {:.2}× |\n\
             | peak RSS | {} | {} | {:.2}× |\n\
             | CPU, initial sync | {:.2} s | {:.2} s | {:.2}× |\n\
             | CPU per change | {:.1} ms | {:.1} ms | {:.2}× |\n\
             | update p50 | {} | {} | {} |\n\
             | update p99 | {} | {} | {} |\n",
            r.gateways,
            r.gateways,
            secs(r.ready),
            secs(c.ready),
            ratio(r.ready, c.ready),
            secs(r.all_rows),
            secs(c.all_published),
            ratio(r.all_rows, c.all_published),
            mib(r.memory_synced.rss_kib),
            mib(c.memory_synced.rss_kib),
            r.memory_synced.rss_kib as f64 / c.memory_synced.rss_kib.max(1) as f64,
            mib(r.memory_after_updates.peak_kib),
            mib(c.memory_after_updates.peak_kib),
            r.memory_after_updates.peak_kib as f64 / c.memory_after_updates.peak_kib.max(1) as f64,
            r.cpu_sync,
            c.cpu_sync,
            r.cpu_sync / c.cpu_sync.max(1e-9),
            per(r.cpu_updates, r.latencies.len()),
            per(c.cpu_updates, c.latencies.len()),
            per(r.cpu_updates, r.latencies.len()) / per(c.cpu_updates, c.latencies.len()).max(1e-9),
            ms(percentile(&lat, 50.0)),
            ms(percentile(&copy, 50.0)),
            ratio(percentile(&lat, 50.0), percentile(&copy, 50.0)),
            ms(percentile(&lat, 99.0)),
            ms(percentile(&copy, 99.0)),
            ratio(percentile(&lat, 99.0), percentile(&copy, 99.0)),
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&v[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 99.0), Duration::ZERO);
    }
}
