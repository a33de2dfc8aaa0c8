//! The re-trigger ladder: which rung a stalled rollout climbs next, once
//! per episode, within a budget per timeout.

use super::{PodState, PublicationKey, PublicationView, RolloutState};
use certsync_contract::Fingerprint;
use std::collections::{BTreeMap, BTreeSet};

/// Which ladder rungs can do something in this deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LadderConfig {
    pub timeout_ms: i64,
    /// There is a published object to touch (credential and merged modes).
    pub can_repush: bool,
    /// The controller manages the gateway-side Istio objects.
    pub can_reapply: bool,
    /// `--evict-stale-pods`.
    pub can_evict: bool,
    /// At most one eviction per this long, across all publications.
    pub eviction_interval_ms: i64,
}

/// A rung of the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rung {
    RePush,
    Reapply,
    Evict,
}

/// What the runtime must do (or tell) after a step of the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// All live pods serve the publication for the first time; `after_ms`
    /// since it was published. (Converging again after a pod was Unknown
    /// for a while is not a rollout and is not announced.)
    Converged {
        source: String,
        sha256: Fingerprint,
        after_ms: i64,
    },
    /// Unconverged past the timeout; `pods` are the ones lagging, with their state.
    Stalled {
        source: String,
        sha256: Fingerprint,
        pods: Vec<(String, PodState)>,
    },
    /// Touch the published object, so the gateway is pushed again.
    RePush { key: PublicationKey },
    /// Re-apply the gateway-side config (one action, however many publications are stuck).
    Reapply,
    /// Evict `pod`, which still does not serve `source`'s certificate.
    Evict { pod: String, source: String },
}

/// Progress of one publication (a source at one sha256).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Episode {
    sha256: Fingerprint,
    /// Start of the current unconverged stretch (None while converged).
    progressing_since_ms: Option<i64>,
    /// When this sha256 was first expected: the publish time.
    published_at_ms: i64,
    converged_at_ms: Option<i64>,
    /// Time of the last rung taken (or of the stall), this episode.
    last_step_ms: Option<i64>,
    /// Rungs taken this episode.
    taken: BTreeSet<Rung>,
    stalled: bool,
}

/// At most this many ladder rungs (re-pushes, evictions) per rollout
/// timeout across all publications: a rotation of a thousand certificates
/// that stalls on one pod must not turn into a thousand writes at once.
pub const LADDER_BUDGET: usize = 100;

/// Publish times, convergence and ladder progress across assessments.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    episodes: BTreeMap<PublicationKey, Episode>,
    last_eviction_ms: Option<i64>,
    /// Start of the current budget period and rungs taken in it.
    budget: (i64, usize),
}

impl Tracker {
    /// Seeds publish (and convergence) times, e.g. from the manifest a
    /// previous controller wrote, so a restart neither resets them nor
    /// announces every publication as newly rolled out.
    pub fn remember_published(
        &mut self,
        key: PublicationKey,
        sha256: Fingerprint,
        published_at_ms: i64,
        converged_at_ms: Option<i64>,
    ) {
        self.episodes.entry(key).or_insert(Episode {
            sha256,
            progressing_since_ms: Some(published_at_ms),
            published_at_ms,
            converged_at_ms,
            last_step_ms: None,
            taken: BTreeSet::new(),
            stalled: false,
        });
    }

    /// Publish and convergence times of every publication, in key order.
    pub fn times(&self) -> impl Iterator<Item = (&PublicationKey, i64, Option<i64>)> {
        self.episodes
            .iter()
            .map(|(k, e)| (k, e.published_at_ms, e.converged_at_ms))
    }

    /// When the publication's current certificate was first published.
    pub fn published_at_ms(&self, key: &PublicationKey) -> Option<i64> {
        self.episodes.get(key).map(|e| e.published_at_ms)
    }

    /// When the publication's current certificate was first verified on
    /// every pod.
    pub fn converged_at_ms(&self, key: &PublicationKey) -> Option<i64> {
        self.episodes.get(key).and_then(|e| e.converged_at_ms)
    }

    /// Advances every publication to `now_ms` and says what to do.
    pub fn step(
        &mut self,
        views: &[PublicationView],
        now_ms: i64,
        ladder: &LadderConfig,
    ) -> Vec<Action> {
        // The views in key order, walked beside the episodes (a map in the
        // same order): one pass without lookups or key copies at ten
        // thousand publications, and the episode of a publication that is
        // gone drops out.
        let mut sorted: Vec<&PublicationView> = views.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.dedup_by(|a, b| a.key == b.key);
        let mut old = std::mem::take(&mut self.episodes).into_iter().peekable();
        let mut kept: Vec<(PublicationKey, Episode)> = Vec::with_capacity(sorted.len());
        let mut actions = Vec::new();
        let mut reapply = false;
        for view in sorted {
            while old.next_if(|(k, _)| *k < view.key).is_some() {}
            let (key, mut episode) = old
                .next_if(|(k, _)| *k == view.key)
                .unwrap_or_else(|| (view.key.clone(), Episode::new(view.sha256, now_ms)));
            if episode.sha256 != view.sha256 {
                episode = Episode::new(view.sha256, now_ms);
            }
            self.advance(
                &mut episode,
                view,
                now_ms,
                ladder,
                &mut actions,
                &mut reapply,
            );
            kept.push((key, episode));
        }
        self.episodes = kept.into_iter().collect();
        if reapply {
            actions.push(Action::Reapply);
        }
        actions
    }

    /// One publication's episode at `now_ms`: convergence, or the next rung.
    fn advance(
        &mut self,
        episode: &mut Episode,
        view: &PublicationView,
        now_ms: i64,
        ladder: &LadderConfig,
        actions: &mut Vec<Action>,
        reapply: &mut bool,
    ) {
        match view.state {
            RolloutState::Converged => {
                if episode.progressing_since_ms.take().is_some() {
                    if episode.converged_at_ms.is_none() {
                        actions.push(Action::Converged {
                            source: view.source.clone(),
                            sha256: view.sha256,
                            after_ms: now_ms - episode.published_at_ms,
                        });
                        episode.converged_at_ms = Some(now_ms);
                    }
                    episode.last_step_ms = None;
                    episode.taken.clear();
                    episode.stalled = false;
                }
            }
            RolloutState::NoPods => {}
            RolloutState::Progressing => {
                let since = *episode.progressing_since_ms.get_or_insert(now_ms);
                if !view.retriggers {
                    return;
                }
                let due = episode.last_step_ms.unwrap_or(since) + ladder.timeout_ms;
                // Pods that do not report cannot be helped by a push and
                // prove nothing when evicted: the ladder is for pods that
                // report the wrong certificate, or none for the resource.
                let actionable = view.lagging().any(|(_, v)| v.state != PodState::Unknown);
                if now_ms < due || !actionable {
                    return;
                }
                if now_ms - self.budget.0 >= ladder.timeout_ms {
                    self.budget = (now_ms, 0);
                }
                if self.budget.1 >= LADDER_BUDGET {
                    return;
                }
                if !episode.stalled {
                    episode.stalled = true;
                    episode.last_step_ms = Some(now_ms);
                    actions.push(Action::Stalled {
                        source: view.source.clone(),
                        sha256: view.sha256,
                        pods: view.lagging().map(|(p, v)| (p.clone(), v.state)).collect(),
                    });
                }
                let Some(rung) = next_rung(&episode.taken, ladder, view.published) else {
                    return;
                };
                if rung == Rung::Evict {
                    let rested = self
                        .last_eviction_ms
                        .is_none_or(|t| now_ms - t >= ladder.eviction_interval_ms);
                    if !rested {
                        return;
                    }
                    // Evict one lagging pod per rung: the budget is global.
                    let Some((pod, _)) = view.lagging().find(|(_, v)| v.state != PodState::Unknown)
                    else {
                        return;
                    };
                    self.last_eviction_ms = Some(now_ms);
                    actions.push(Action::Evict {
                        pod: pod.clone(),
                        source: view.source.clone(),
                    });
                } else if rung == Rung::RePush {
                    actions.push(Action::RePush {
                        key: view.key.clone(),
                    });
                } else {
                    *reapply = true;
                }
                if rung != Rung::Reapply {
                    // One re-apply serves all publications: not counted.
                    self.budget.1 += 1;
                }
                episode.taken.insert(rung);
                episode.last_step_ms = Some(now_ms);
            }
        }
    }
}

impl Episode {
    fn new(sha256: Fingerprint, now_ms: i64) -> Self {
        Episode {
            sha256,
            progressing_since_ms: Some(now_ms),
            published_at_ms: now_ms,
            converged_at_ms: None,
            last_step_ms: None,
            taken: BTreeSet::new(),
            stalled: false,
        }
    }
}

/// `published`: cert-sync wrote the object; a natively referenced
/// certificate's Secret is never touched (it is not ours).
fn next_rung(taken: &BTreeSet<Rung>, ladder: &LadderConfig, published: bool) -> Option<Rung> {
    [
        (Rung::RePush, ladder.can_repush && published),
        (Rung::Reapply, ladder.can_reapply),
        (Rung::Evict, ladder.can_evict),
    ]
    .into_iter()
    .find(|(rung, enabled)| *enabled && !taken.contains(rung))
    .map(|(rung, _)| rung)
}
