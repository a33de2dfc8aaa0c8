//! Watches the published Secrets in the gateway namespace and timestamps
//! every change as it arrives.
//!
//! A watch rather than polling: polling 1,000 objects every few
//! milliseconds would cost the fake (and so the controller, on a 2-core
//! machine) far more CPU than the thing being measured, and a GET loop per
//! update only resolves to its poll interval. The watch is metadata-only
//! (the `source-sha256` annotation is all it needs) and raw, so the bench
//! knows exactly how many bytes it was sent and can subtract them from the
//! fake's traffic counters.

use crate::fake::Count;
use anyhow::{bail, Context, Result};
use futures::{AsyncBufReadExt as _, TryStreamExt as _};
use hyper::Request;
use kube::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The annotation carrying the published source's leaf SHA-256.
pub use certsync_contract::metadata::SOURCE_SHA256;

#[derive(Default)]
struct State {
    /// Published name → (source-sha256, when this content arrived).
    published: HashMap<String, (String, Instant)>,
    /// `reached[k]`: when the (k+1)-th published Secret first appeared.
    reached: Vec<Instant>,
    connected: bool,
    own: Count,
}

/// A running watch on one namespace's Secrets; stopped on drop.
pub struct Observer {
    state: Arc<Mutex<State>>,
    changed: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl Observer {
    pub fn start(client: Client, namespace: &str) -> Observer {
        let state = Arc::new(Mutex::new(State::default()));
        let (tx, changed) = watch::channel(0);
        let task = tokio::spawn(run(client, namespace.to_owned(), state.clone(), tx));
        Observer {
            state,
            changed,
            task,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests and bytes the watch has been sent so far.
    pub fn own_traffic(&self) -> Count {
        self.lock().own
    }

    /// Published name → source-sha256 now.
    pub fn snapshot(&self) -> HashMap<String, String> {
        self.lock()
            .published
            .iter()
            .map(|(k, (sha, _))| (k.clone(), sha.clone()))
            .collect()
    }

    /// Waits until `check` on the state returns a value, up to `timeout`.
    async fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&State) -> Option<T>,
    ) -> Result<T> {
        let mut changed = self.changed.clone();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check(&self.lock()) {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
        }
    }

    /// Waits until the watch stream is open.
    pub async fn connected(&self, timeout: Duration) -> Result<()> {
        self.wait("the observer's watch", timeout, |s| {
            s.connected.then_some(())
        })
        .await
    }

    /// Waits until `n` Secrets exist; returns when the n-th first appeared.
    pub async fn count_reached(&self, n: usize, timeout: Duration) -> Result<Instant> {
        let what = format!("{n} published Secrets");
        self.wait(&what, timeout, |s| {
            s.reached.get(n.saturating_sub(1)).copied()
        })
        .await
    }

    /// How many Secrets exist now.
    pub fn count(&self) -> usize {
        self.lock().published.len()
    }

    /// Waits until `name` carries `sha`; returns when that version arrived.
    pub async fn sha_reached(&self, name: &str, sha: &str, timeout: Duration) -> Result<Instant> {
        let what = format!("{name} to carry {SOURCE_SHA256}: {sha}");
        self.wait(&what, timeout, |s| {
            s.published
                .get(name)
                .filter(|(have, _)| have == sha)
                .map(|(_, at)| *at)
        })
        .await
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Watches until aborted, re-watching from the last resourceVersion when a
/// stream ends and from scratch after an error event.
async fn run(client: Client, namespace: String, state: Arc<Mutex<State>>, tx: watch::Sender<u64>) {
    let mut rv: Option<String> = None;
    loop {
        if let Err(e) = watch_once(&client, &namespace, &mut rv, &state, &tx).await {
            eprintln!("[controller_bench] observer: {e:#}; re-watching");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn watch_once(
    client: &Client,
    namespace: &str,
    rv: &mut Option<String>,
    state: &Mutex<State>,
    tx: &watch::Sender<u64>,
) -> Result<()> {
    let from = rv
        .as_deref()
        .map_or_else(String::new, |v| format!("&resourceVersion={v}"));
    let req = Request::builder()
        .uri(format!(
            "/api/v1/namespaces/{namespace}/secrets?watch=true&allowWatchBookmarks=true{from}"
        ))
        .header(
            "accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())?;
    let body = client.request_stream(req).await?;
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);
    {
        let mut s = lock();
        s.connected = true;
        s.own.requests += 1;
    }
    tx.send_modify(|v| *v += 1);
    let mut lines = body.lines();
    while let Some(line) = lines.try_next().await.context("reading the watch")? {
        let at = Instant::now();
        let event: Value = serde_json::from_str(&line).context("parsing a watch event")?;
        let meta = &event["object"]["metadata"];
        let name = meta["name"].as_str().unwrap_or_default().to_owned();
        let sha = meta["annotations"][SOURCE_SHA256]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(v) = meta["resourceVersion"].as_str() {
            *rv = Some(v.to_owned());
        }
        let mut s = lock();
        s.own.bytes += line.len() as u64 + 1;
        match event["type"].as_str() {
            Some("ADDED" | "MODIFIED") => {
                s.published.insert(name, (sha, at));
                while s.reached.len() < s.published.len() {
                    s.reached.push(at);
                }
            }
            Some("DELETED") => {
                s.published.remove(&name);
            }
            Some("ERROR") => {
                // 410 Gone: start over with a fresh initial listing.
                *rv = None;
                s.published.clear();
                return Ok(());
            }
            _ => {}
        }
        drop(s);
        tx.send_modify(|v| *v += 1);
    }
    Ok(())
}
