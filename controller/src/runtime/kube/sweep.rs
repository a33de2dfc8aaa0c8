//! Annotated Secrets that are not `kubernetes.io/tls`.
//!
//! The source watch's field selector (`type=kubernetes.io/tls`) keeps
//! cert-sync's memory with the TLS Secrets, so a Secret of another type that
//! carries the autosync annotation is never seen, and its owner would hear
//! nothing. A background task lists the other Secrets metadata-only, a page
//! at a time, keeps only the annotated ones, and hands them to the
//! reconciler, whose selection refuses them (`NotTLS`: Event, log, metric,
//! status). It never reads Secret data and never delays a publication.
//!
//! ```text
//!  LIST type!=kubernetes.io/tls (metadata, 200 a page) ──▶ annotated only
//!      ──▶ NonTlsSources ──(set changed: poke)──▶ reconcile ──▶ NotTLS
//!  hourly; after a failure, again in a few minutes
//! ```

use crate::core::model::{keys, SourceMeta};
use crate::core::selection::is_autosync;
use crate::runtime::kube::cluster::source_meta;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PartialObjectMeta};
use kube::{Api, Client};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often the other Secrets are swept: the delay before an annotated
/// non-TLS Secret is reported (or, once fixed, no longer is).
pub const EVERY: Duration = Duration::from_secs(3600);
/// After a failed sweep (403, throttling, an expired continue token).
pub const RETRY: Duration = Duration::from_secs(300);
/// Metadata-only page size, as for the source watch.
const PAGE: u32 = 200;

/// What the last sweep found; empty until one has run (or when none runs,
/// as in a per-pod directory writer). Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct NonTlsSources(Arc<RwLock<Arc<[SourceMeta]>>>);

impl NonTlsSources {
    pub fn current(&self) -> Arc<[SourceMeta]> {
        Arc::clone(&self.0.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the set; whether it changed.
    fn replace(&self, found: Vec<SourceMeta>) -> bool {
        let mut held = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if **held == *found {
            return false;
        }
        *held = found.into();
        true
    }
}

/// Sweeps into `into` now and then every `every`; pokes `changed` when the
/// set moves, so the reconciler runs.
pub fn spawn(
    client: &Client,
    into: NonTlsSources,
    every: Duration,
    changed: Arc<Notify>,
) -> JoinHandle<()> {
    let client = client.clone();
    tokio::spawn(async move {
        loop {
            let wait = match annotated_non_tls(&client).await {
                Ok(found) => {
                    if into.replace(found) {
                        changed.notify_one();
                    }
                    every
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?RETRY, "could not look for annotated Secrets that are not kubernetes.io/tls");
                    RETRY
                }
            };
            tokio::time::sleep(wait).await;
        }
    })
}

/// One sweep: every Secret that is not `kubernetes.io/tls` and asks for
/// autosync, as a [`SourceMeta`] with an unknown type (`""`: the list is
/// metadata-only) and only the autosync annotation.
pub async fn annotated_non_tls(client: &Client) -> Result<Vec<SourceMeta>, kube::Error> {
    let api = Api::<PartialObjectMeta<Secret>>::all(client.clone());
    let mut params = ListParams::default()
        .fields(&format!("type!={}", keys::TLS_TYPE))
        .limit(PAGE);
    let mut found = Vec::new();
    loop {
        let page = api.list_metadata(&params).await?;
        found.extend(
            page.items
                .iter()
                .map(|secret| source_meta(secret, String::new()))
                .filter(is_autosync),
        );
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}
