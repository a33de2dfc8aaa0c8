//! Pods that stay silent. A live gateway pod without a report within the
//! heartbeat window is `Unknown` for every publication; *why* it is silent
//! decides what can help:
//!
//! ```text
//!  Ready pod ──report within window──▶ Reporting
//!     │  (none yet, window not over)  ▶ Awaiting
//!     ├─never reported, window over──▶ FilterNotLoaded ─▶ re-apply WasmPlugin (backoff) ─▶ Event
//!     └─reported, then silent────────▶ NotReporting    ─▶ Event
//! ```
//!
//! A pod that never reported most likely runs without the filter: istio-agent
//! gives up on a module after five attempts (3–10 s) and, with `FAIL_OPEN`,
//! installs an allow-all filter in its place and ACKs (istio 1.28.10
//! `pkg/wasm/httpfetcher.go:65-140`, `pkg/wasm/convert.go:132-151`). It
//! remembers no failure and fetches again on the next ECDS push
//! (`pkg/wasm/cache.go:295`), which re-applying ours with a new
//! `certsync.istio.io/reapplied-at` causes (`pilot/pkg/xds/ecds.go`; istiod
//! pushes a metadata-only change because the key contains `istio.io`,
//! `pilot/pkg/bootstrap/config_compare.go:38-58`), so that is the one thing
//! that helps. Re-applies push to every gateway pod, so they back off: one at
//! once, then after 2, 4, 8… windows, at most [`MAX_REAPPLY_INTERVAL_MS`]
//! apart. A pod still silent a window after a re-apply (or at once when the
//! controller cannot re-apply) gets one `FilterNotLoaded` Warning.
//!
//! A pod that reported and then stopped is wedged or cut off from the
//! controller; pushes do not help. It gets one `PodNotReporting` Warning,
//! and another if it falls silent again after reporting.

use super::{LivePod, Observation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Re-applies for pods without the filter are at least this far apart once
/// the backoff has grown.
pub const MAX_REAPPLY_INTERVAL_MS: i64 = 15 * 60 * 1000;

/// How a live pod reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reporting {
    /// Reported within the heartbeat window.
    Reporting,
    /// No report yet, but its first window is not over.
    Awaiting,
    /// Never reported within a window of being Ready: the filter is not
    /// loaded there.
    FilterNotLoaded,
    /// Reported before, silent past the window since.
    NotReporting,
}

impl Reporting {
    pub const ALL: [Reporting; 4] = [
        Self::Reporting,
        Self::Awaiting,
        Self::FilterNotLoaded,
        Self::NotReporting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reporting => "Reporting",
            Self::Awaiting => "Awaiting",
            Self::FilterNotLoaded => "FilterNotLoaded",
            Self::NotReporting => "NotReporting",
        }
    }
}

impl fmt::Display for Reporting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the runtime must do about silent pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SilenceAction {
    /// Re-apply the gateway-side objects so istiod pushes the WasmPlugin
    /// again (the `attempt`-th time this episode) for these pods.
    ReapplyForFilter { pods: Vec<String>, attempt: u32 },
    /// Tell once: the filter is not loaded on `pod` (`reapplied` times tried).
    FilterNotLoaded { pod: String, reapplied: u32 },
    /// Tell once: `pod` reported before and fell silent.
    NotReporting { pod: String },
}

/// Silence across steps: when each pod was first seen live, which pods were
/// told about, and the re-apply backoff.
#[derive(Debug, Default)]
pub struct Silence {
    /// First step: no pod is called silent before it had a window to report
    /// (a restarted controller has seen no report yet).
    started_ms: Option<i64>,
    first_live_ms: BTreeMap<String, i64>,
    states: BTreeMap<String, Reporting>,
    told: BTreeSet<String>,
    reapplies: u32,
    last_reapply_ms: Option<i64>,
}

impl Silence {
    /// Classifies the live pods and says what to do. `can_reapply`: the
    /// controller manages the gateway-side objects.
    pub fn step(
        &mut self,
        live: &[LivePod],
        observations: &BTreeMap<String, Observation>,
        now_ms: i64,
        window_ms: i64,
        can_reapply: bool,
    ) -> Vec<SilenceAction> {
        let started = *self.started_ms.get_or_insert(now_ms);
        let names: BTreeSet<&str> = live.iter().map(|p| p.name.as_str()).collect();
        self.first_live_ms.retain(|p, _| names.contains(p.as_str()));
        self.told.retain(|p| names.contains(p.as_str()));
        let mut states = BTreeMap::new();
        for pod in live {
            let first = *self.first_live_ms.entry(pod.name.clone()).or_insert(now_ms);
            let state = classify(
                observations.get(&pod.name).map(|o| o.received_at_ms),
                first.max(started),
                now_ms,
                window_ms,
            );
            if matches!(state, Reporting::Reporting | Reporting::Awaiting) {
                self.told.remove(&pod.name);
            }
            states.insert(pod.name.clone(), state);
        }
        self.states = states;

        let mut actions = Vec::new();
        let without_filter: Vec<String> = self.pods_in(Reporting::FilterNotLoaded);
        if without_filter.is_empty() {
            self.reapplies = 0;
            self.last_reapply_ms = None;
        } else if can_reapply && self.reapply_due(now_ms, window_ms) {
            self.reapplies += 1;
            self.last_reapply_ms = Some(now_ms);
            actions.push(SilenceAction::ReapplyForFilter {
                pods: without_filter.clone(),
                attempt: self.reapplies,
            });
        }
        // Tell once a re-apply had a window to work, or at once without one.
        let reapply_had_a_window = self
            .last_reapply_ms
            .is_some_and(|at| now_ms - at > window_ms);
        if !can_reapply || reapply_had_a_window {
            for pod in without_filter {
                if self.told.insert(pod.clone()) {
                    actions.push(SilenceAction::FilterNotLoaded {
                        pod,
                        reapplied: self.reapplies,
                    });
                }
            }
        }
        for pod in self.pods_in(Reporting::NotReporting) {
            if self.told.insert(pod.clone()) {
                actions.push(SilenceAction::NotReporting { pod });
            }
        }
        actions
    }

    /// How each live pod reported, as of the last step.
    pub fn states(&self) -> &BTreeMap<String, Reporting> {
        &self.states
    }

    fn pods_in(&self, state: Reporting) -> Vec<String> {
        self.states
            .iter()
            .filter(|(_, s)| **s == state)
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The first re-apply at once; the n-th 2^(n-1) windows after the one
    /// before, capped.
    fn reapply_due(&self, now_ms: i64, window_ms: i64) -> bool {
        let Some(last) = self.last_reapply_ms else {
            return true;
        };
        let factor = 1_i64 << self.reapplies.min(20);
        let interval = window_ms
            .saturating_mul(factor)
            .min(MAX_REAPPLY_INTERVAL_MS);
        now_ms - last >= interval
    }
}

/// One pod's state from its last report (if any) and the start of its first
/// window (`since_ms`: when it was first seen live, or the controller
/// started, whichever is later).
fn classify(last_report_ms: Option<i64>, since_ms: i64, now_ms: i64, window_ms: i64) -> Reporting {
    match last_report_ms {
        Some(at) if now_ms - at.max(since_ms) <= window_ms => Reporting::Reporting,
        Some(_) => Reporting::NotReporting,
        None if now_ms - since_ms <= window_ms => Reporting::Awaiting,
        None => Reporting::FilterNotLoaded,
    }
}

#[cfg(test)]
#[path = "silence_tests.rs"]
mod tests;
