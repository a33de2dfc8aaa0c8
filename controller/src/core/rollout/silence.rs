//! Pods that stay silent. A live gateway pod that has not reported within
//! the heartbeat window is `Unknown` for every publication, and the ladder
//! cannot help it (pushes do not make a filter load). It deserves one
//! `PodNotReporting` Warning when it falls silent, none while it stays so,
//! and another if it falls silent again after reporting.

use super::{LivePod, Observation};
use std::collections::{BTreeMap, BTreeSet};

/// The pods already told to be silent.
#[derive(Debug, Default)]
pub struct Silence {
    /// First pass: no pod is called silent before it had a window to report
    /// (a restarted controller has seen no report yet).
    started_ms: Option<i64>,
    silent: BTreeSet<String>,
}

impl Silence {
    /// The live pods that fell silent since the last call: no report for
    /// longer than `window_ms` (counting from the first call for pods that
    /// never reported).
    pub fn step(
        &mut self,
        live: &[LivePod],
        observations: &BTreeMap<String, Observation>,
        now_ms: i64,
        window_ms: i64,
    ) -> Vec<String> {
        let started = *self.started_ms.get_or_insert(now_ms);
        let silent: BTreeSet<String> = live
            .iter()
            .filter(|p| {
                let last = observations
                    .get(&p.name)
                    .map_or(started, |o| o.received_at_ms);
                now_ms - last.max(started) > window_ms
            })
            .map(|p| p.name.clone())
            .collect();
        let new = silent.difference(&self.silent).cloned().collect();
        self.silent = silent;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 35_000;

    fn mk_pod(name: &str) -> LivePod {
        LivePod {
            name: name.to_owned(),
            ips: Vec::new(),
        }
    }

    fn mk_observation(at_ms: i64) -> Observation {
        Observation {
            received_at_ms: at_ms,
            ..Observation::default()
        }
    }

    #[test]
    fn a_pod_is_not_silent_before_it_had_a_window_to_report() {
        let mut s = Silence::default();
        let pods = [mk_pod("gw-a")];
        assert!(s.step(&pods, &BTreeMap::new(), 1_000, WINDOW).is_empty());
        assert!(s
            .step(&pods, &BTreeMap::new(), 1_000 + WINDOW, WINDOW)
            .is_empty());
        assert_eq!(
            s.step(&pods, &BTreeMap::new(), 1_001 + WINDOW, WINDOW),
            vec!["gw-a".to_owned()]
        );
    }

    #[test]
    fn a_silent_pod_is_told_once_and_again_after_it_reported() {
        let mut s = Silence::default();
        let pods = [mk_pod("gw-a"), mk_pod("gw-b")];
        let mut obs = BTreeMap::from([("gw-b".to_owned(), mk_observation(50_000))]);
        s.step(&pods, &obs, 0, WINDOW);
        assert_eq!(s.step(&pods, &obs, 40_000, WINDOW), vec!["gw-a".to_owned()]);
        assert!(s.step(&pods, &obs, 41_000, WINDOW).is_empty());
        // gw-a reports, then falls silent again; gw-b's last report ages out.
        obs.insert("gw-a".to_owned(), mk_observation(42_000));
        assert!(s.step(&pods, &obs, 43_000, WINDOW).is_empty());
        assert_eq!(
            s.step(&pods, &obs, 90_000, WINDOW),
            vec!["gw-a".to_owned(), "gw-b".to_owned()]
        );
    }

    #[test]
    fn a_pod_that_is_gone_is_forgotten() {
        let mut s = Silence::default();
        s.step(&[mk_pod("gw-a")], &BTreeMap::new(), 0, WINDOW);
        assert_eq!(
            s.step(&[mk_pod("gw-a")], &BTreeMap::new(), 40_000, WINDOW)
                .len(),
            1
        );
        assert!(s.step(&[], &BTreeMap::new(), 41_000, WINDOW).is_empty());
        assert_eq!(
            s.step(&[mk_pod("gw-a")], &BTreeMap::new(), 42_000, WINDOW)
                .len(),
            1
        );
    }
}
