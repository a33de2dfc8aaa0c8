//! Looks at each tracked KV secret's metadata (`current_version`), one
//! request at a time: at most `rate` a second, each key again after
//! `interval` ± 10 % (so a thousand keys created together spread out).
//! When Vault itself fails (unreachable, sealed, login impossible) every
//! key waits a doubling backoff (1 s … 60 s) instead of its own interval:
//! one failing request, not a thousand, tells the outage.

use super::{Tracked, VaultSources};
use crate::core::vault::{self, Poll};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often and how fast.
#[derive(Debug, Clone, Copy)]
pub struct PollSettings {
    /// Each KV secret's metadata is read again after this (± 10 %).
    pub interval: Duration,
    /// At most this many requests a second, whatever the number of keys.
    pub rate: u32,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub(super) async fn run(
    sources: VaultSources,
    settings: PollSettings,
    woken: Arc<Notify>,
    changed: Arc<Notify>,
) {
    let gap = Duration::from_secs(1) / settings.rate.max(1);
    let jitter = RandomState::new();
    let mut due: std::collections::BTreeMap<crate::core::model::ObjectRef, Instant> =
        Default::default();
    let mut backoff = FIRST_BACKOFF;
    let mut round: u64 = 0;
    loop {
        if sync(&sources, &mut due) {
            changed.notify_one();
        }
        let now = Instant::now();
        let ready: Vec<_> = due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            let Some(tracked) = sources.lock().get(&key).cloned() else {
                continue;
            };
            let Ok(path) = &tracked.kv_path else {
                due.remove(&key);
                continue;
            };
            let answer = sources.client.version(&sources.kv.mount, path).await;
            let outage = answer.as_ref().err().is_some_and(|e| e.is_outage());
            let poll = match answer {
                Ok(Some(v)) if !v.deleted => Poll::Version(v.current),
                Ok(_) => Poll::Gone,
                Err(e) => Poll::Failed {
                    reason: super::reason_of(&e),
                    message: e.to_string(),
                    last: tracked.poll.version(),
                },
            };
            if poll != tracked.poll {
                match &poll {
                    Poll::Failed { message, .. } => {
                        tracing::warn!(source = %key, %path, "Vault: {message}")
                    }
                    Poll::Version(v) => {
                        tracing::debug!(source = %key, %path, version = v, "Vault KV version")
                    }
                    Poll::Gone => tracing::info!(source = %key, %path, "Vault KV secret gone"),
                    Poll::Pending => {}
                }
                if let Some(t) = sources.lock().get_mut(&key) {
                    t.poll = poll;
                }
                changed.notify_one();
            }
            round = round.wrapping_add(1);
            if outage {
                // Everything waits: the next request is the next probe.
                let at = Instant::now() + backoff;
                for when in due.values_mut() {
                    *when = (*when).max(at);
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                break;
            }
            backoff = FIRST_BACKOFF;
            let spread = settings.interval / 10;
            let offset = jittered(&jitter, &key, round, spread);
            due.insert(key, Instant::now() + settings.interval - spread + offset);
            tokio::time::sleep(gap).await;
        }
        let next = due.values().min().copied();
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            at.saturating_duration_since(Instant::now())
        });
        // A new or changed VaultCertificate is looked at at once.
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = woken.notified() => {}
        }
    }
}

/// Brings the table in line with the watched objects: new ones due now,
/// changed ones (path or fields) polled again, deleted ones dropped.
/// True when the set of sources changed.
fn sync(
    sources: &VaultSources,
    due: &mut std::collections::BTreeMap<crate::core::model::ObjectRef, Instant>,
) -> bool {
    let objects: Vec<_> = sources.store.state().iter().map(|o| o.to_model()).collect();
    let mut table = sources.lock();
    let before = table.len();
    let mut changed = false;
    let present: std::collections::BTreeSet<_> = objects.iter().map(|o| o.key.clone()).collect();
    table.retain(|k, _| present.contains(k));
    due.retain(|k, _| present.contains(k));
    for source in objects {
        let kv_path = vault::kv_path(&sources.kv.prefix, &source.key.namespace, &source.path);
        match table.get_mut(&source.key) {
            Some(t) if t.source == source => {}
            Some(t) => {
                // The object changed: its resourceVersion is in the source
                // meta, so the data is read again; a new path starts over.
                if t.kv_path != kv_path {
                    t.poll = Poll::Pending;
                    due.insert(source.key.clone(), Instant::now());
                }
                t.source = source;
                t.kv_path = kv_path;
                changed = true;
            }
            None => {
                due.insert(source.key.clone(), Instant::now());
                table.insert(
                    source.key.clone(),
                    Tracked {
                        source,
                        kv_path,
                        poll: Poll::Pending,
                    },
                );
                changed = true;
            }
        }
    }
    changed || table.len() != before
}

/// An offset in `[0, 2 × spread)`, different per key and round.
fn jittered(
    state: &RandomState,
    key: &crate::core::model::ObjectRef,
    round: u64,
    spread: Duration,
) -> Duration {
    let span = (spread.as_millis() as u64).saturating_mul(2).max(1);
    Duration::from_millis(state.hash_one((key, round)) % span)
}
