//! Watch streams.
//!
//! Each watch request gets a task that writes newline-delimited JSON events
//! into the response body. It replays the store's event log from the
//! requested resourceVersion, then follows new commits (woken by a
//! `tokio::sync::watch` channel carrying the latest revision). It ends the
//! stream cleanly when `timeoutSeconds` passes, when the fault API drops
//! all watches or restarts the server, on shutdown, or when the client goes
//! away. A resourceVersion older than the retained log yields an in-stream
//! `ERROR` event with a 410 `Status` (HTTP 200), which is what the real API
//! server does and what kube-rs' watcher needs to trigger a relist.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::error::ApiError;
use crate::meta;
use crate::record::Verb;
use crate::store::{EventType, WatchFilter};
use crate::Shared;

/// A parsed watch request.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    /// What to watch.
    pub filter: WatchFilter,
    /// Resume after this revision; `None` starts with ADDED for every
    /// current object (resourceVersion unset or "0").
    pub start: Option<u64>,
    /// `allowWatchBookmarks=true`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// Serve `PartialObjectMetadata` objects.
    pub metadata_only: bool,
    /// `sendInitialEvents=true`: end the initial ADDED burst with a
    /// bookmark annotated `k8s.io/initial-events-end`.
    pub initial_events_end: bool,
}

/// Starts a watch task; returns the receiving end for the response body.
pub fn spawn(shared: Arc<Shared>, req: WatchRequest) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(64);
    let (initial, pos, rv_rx) = {
        let store = shared.store();
        let rv_rx = store.subscribe();
        match req.start {
            None => {
                let (items, pos) = store.watch_initial(&req.filter);
                (items, pos, rv_rx)
            }
            Some(rv) => (Vec::new(), rv, rv_rx),
        }
    };
    let epoch_rx = shared.epoch.subscribe();
    let shutdown_rx = shared.shutdown.subscribe();
    tokio::spawn(async move {
        shared.open_watches.fetch_add(1, Ordering::SeqCst);
        let mut w = Watcher {
            shared: shared.clone(),
            req,
            tx,
            sent_rv: 0,
        };
        w.run(initial, pos, rv_rx, epoch_rx, shutdown_rx).await;
        shared.open_watches.fetch_sub(1, Ordering::SeqCst);
    });
    rx
}

struct Watcher {
    shared: Arc<Shared>,
    req: WatchRequest,
    tx: mpsc::Sender<Bytes>,
    sent_rv: u64,
}

impl Watcher {
    async fn run(
        &mut self,
        initial: Vec<Arc<Value>>,
        mut pos: u64,
        mut rv_rx: tokio::sync::watch::Receiver<u64>,
        mut epoch_rx: tokio::sync::watch::Receiver<u64>,
        mut shutdown_rx: tokio::sync::watch::Receiver<bool>,
    ) {
        let deadline = self.req.timeout.map(|t| Instant::now() + t);
        let started_fresh = self.req.start.is_none();
        for obj in initial {
            if !self.send_event(EventType::Added, &obj).await {
                return;
            }
        }
        if started_fresh && self.req.initial_events_end && !self.send_bookmark(pos, true).await {
            return;
        }
        let interval = self.shared.options.bookmark_interval;
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        loop {
            rv_rx.borrow_and_update();
            let scan = self.shared.store().watch_scan(&self.req.filter, pos);
            match scan {
                Err(compacted) => {
                    let status =
                        ApiError::expired(format!("too old resource version: {pos} ({compacted})"))
                            .to_status();
                    self.send_line(&json!({"type": "ERROR", "object": status}))
                        .await;
                    return;
                }
                Ok((events, new_pos)) => {
                    for (kind, obj) in events {
                        if !self.send_event(kind, &obj).await {
                            return;
                        }
                    }
                    pos = new_pos;
                }
            }
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown_rx.changed() => return,
                _ = epoch_rx.changed() => return,
                _ = self.tx.closed() => return,
                _ = timeout => {
                    if self.req.bookmarks {
                        self.send_bookmark(pos, false).await;
                    }
                    return;
                }
                changed = rv_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = ticker.tick(), if self.req.bookmarks => {
                    if pos > self.sent_rv && !self.send_bookmark(pos, false).await {
                        return;
                    }
                }
            }
        }
    }

    async fn send_event(&mut self, kind: EventType, obj: &Value) -> bool {
        let rv = meta::resource_version(obj);
        let view;
        let obj = if self.req.metadata_only {
            view = meta::partial(obj);
            &view
        } else {
            obj
        };
        let mut line = Vec::with_capacity(256);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_str().as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        if serde_json::to_writer(&mut line, obj).is_err() {
            return false;
        }
        line.extend_from_slice(b"}\n");
        self.sent_rv = self.sent_rv.max(rv);
        self.send_bytes(line).await
    }

    async fn send_bookmark(&mut self, rv: u64, initial_end: bool) -> bool {
        let (api_version, kind) = if self.req.metadata_only {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            )
        } else {
            (
                self.req.filter.rt.api_version(),
                self.req.filter.rt.kind.clone(),
            )
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.sent_rv = self.sent_rv.max(rv);
        self.send_line(&json!({
            "type": "BOOKMARK",
            "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata},
        }))
        .await
    }

    async fn send_line(&mut self, v: &Value) -> bool {
        match serde_json::to_vec(v) {
            Ok(mut line) => {
                line.push(b'\n');
                self.send_bytes(line).await
            }
            Err(_) => false,
        }
    }

    async fn send_bytes(&mut self, line: Vec<u8>) -> bool {
        let n = line.len() as u64;
        if self.tx.send(Bytes::from(line)).await.is_err() {
            return false;
        }
        self.shared
            .recorder()
            .add_bytes(Verb::Watch, self.req.metadata_only, n);
        true
    }
}
