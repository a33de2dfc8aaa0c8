//! How soon a failed watch is retried.
//!
//! kube's default (800 ms doubling to 30 s, reset only after two quiet
//! minutes) is made for not hammering a struggling API server; after an
//! API-server restart it left cert-sync's watches waiting ~30 s to relist,
//! with stores stale all that time. A controller with a handful of watches
//! can afford more: start at 200 ms, double to at most 2 s, and start over
//! as soon as the watch delivers anything. At the cap that is one request
//! per watch every 2 s during an outage (half a dozen watches: a few
//! requests a second), and recovery within 2 s of the API server answering
//! again.

use kube::runtime::utils::Backoff;
use std::time::Duration;

const FIRST: Duration = Duration::from_millis(200);
const CAP: Duration = Duration::from_secs(2);

/// Exponential, capped, jittered down (so watches that failed together
/// spread out), reset on the first success.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
    seed: u64,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() as u64 | 1);
        WatchBackoff { next: FIRST, seed }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(CAP);
        // xorshift: a fraction in [0.75, 1.0) of the delay.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let quarter = delay / 4;
        let jitter = quarter.mul_f64((self.seed % 1000) as f64 / 1000.0);
        Some(delay - jitter)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_start_over_after_a_success() {
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = b.by_ref().take(8).collect();
        for (delay, nominal) in delays
            .iter()
            .zip([200, 400, 800, 1600, 2000, 2000, 2000, 2000])
        {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *delay <= nominal && *delay > nominal * 3 / 4,
                "{delay:?} vs {nominal:?}"
            );
        }
        b.reset();
        assert!(b.next().is_some_and(|d| d <= FIRST));
    }
}
