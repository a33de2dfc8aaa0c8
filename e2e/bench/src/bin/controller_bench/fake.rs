//! The bench's own client of the fake API server: source updates and the
//! fake's traffic counters.
//!
//! The fake counts response bytes per (verb, metadata-only) for all
//! clients together, so a phase's traffic is the difference of two
//! snapshots minus what the bench itself was sent. To know the latter
//! exactly, the bench's requests go through raw kube `Client` calls whose
//! response bodies it measures (see also `observer`).

use anyhow::{Context, Result};
use hyper::{Method, Request};
use k8s_openapi::ByteString;
use kube::Client;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Requests and response bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub requests: u64,
    /// Response bytes.
    pub bytes: u64,
    /// Request body bytes (what the client wrote).
    pub sent: u64,
}

impl Count {
    pub fn minus(self, other: Count) -> Count {
        Count {
            requests: self.requests.saturating_sub(other.requests),
            bytes: self.bytes.saturating_sub(other.bytes),
            sent: self.sent.saturating_sub(other.sent),
        }
    }

    fn plus(self, other: Count) -> Count {
        Count {
            requests: self.requests + other.requests,
            bytes: self.bytes + other.bytes,
            sent: self.sent + other.sent,
        }
    }
}

/// The fake's counters, keyed by (verb, metadata-only).
#[derive(Debug, Clone, Default)]
pub struct Traffic(BTreeMap<(String, bool), Count>);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    verb: Option<String>,
    metadata_only: bool,
    requests: u64,
    bytes: u64,
    #[serde(default)]
    request_bytes: u64,
}

impl Traffic {
    /// `self - earlier`, per key.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.minus(earlier.get(&k.0, k.1))))
                .collect(),
        )
    }

    /// Removes what the bench itself caused.
    pub fn without(mut self, verb: &str, metadata_only: bool, own: Count) -> Traffic {
        let key = (verb.to_owned(), metadata_only);
        let left = self.get(verb, metadata_only).minus(own);
        self.0.insert(key, left);
        self
    }

    fn get(&self, verb: &str, metadata_only: bool) -> Count {
        self.0
            .get(&(verb.to_owned(), metadata_only))
            .copied()
            .unwrap_or_default()
    }

    /// Reads (get, list, watch) with full objects.
    pub fn reads_full(&self) -> Count {
        self.sum(|verb, meta| !meta && is_read(verb))
    }

    /// Reads of `PartialObjectMetadata`.
    pub fn reads_metadata(&self) -> Count {
        self.sum(|verb, meta| meta && is_read(verb))
    }

    /// Writes of any kind.
    pub fn writes(&self) -> Count {
        self.sum(|verb, _| !is_read(verb) && verb != "discovery")
    }

    fn sum(&self, pick: impl Fn(&str, bool) -> bool) -> Count {
        self.0
            .iter()
            .filter(|((verb, meta), _)| pick(verb, *meta))
            .fold(Count::default(), |acc, (_, c)| acc.plus(*c))
    }
}

fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

/// A client of the fake, metering its own writes.
#[derive(Clone)]
pub struct FakeApi {
    pub client: Client,
    patches: std::sync::Arc<AtomicU64>,
    patch_bytes: std::sync::Arc<AtomicU64>,
    patch_sent: std::sync::Arc<AtomicU64>,
}

impl FakeApi {
    pub fn connect(url: &str) -> Result<FakeApi> {
        let config = kube::Config::new(url.parse().context("parsing the fake's URL")?);
        Ok(FakeApi {
            client: Client::try_from(config)?,
            patches: Default::default(),
            patch_bytes: Default::default(),
            patch_sent: Default::default(),
        })
    }

    /// The fake's traffic counters now (its `/__fake` API is not counted).
    pub async fn traffic(&self) -> Result<Traffic> {
        let req = Request::builder().uri("/__fake/traffic").body(Vec::new())?;
        let rows: Vec<Row> = serde_json::from_str(&self.client.request_text(req).await?)
            .context("parsing /__fake/traffic")?;
        Ok(Traffic(
            rows.into_iter()
                .map(|r| {
                    let verb = r.verb.unwrap_or_default();
                    let count = Count {
                        requests: r.requests,
                        bytes: r.bytes,
                        sent: r.request_bytes,
                    };
                    ((verb, r.metadata_only), count)
                })
                .collect(),
        ))
    }

    /// Replaces a Secret's `data` with a JSON merge patch.
    pub async fn patch_data(
        &self,
        namespace: &str,
        name: &str,
        data: &BTreeMap<String, ByteString>,
    ) -> Result<()> {
        let body = serde_json::to_vec(&serde_json::json!({ "data": data }))?;
        let sent = body.len() as u64;
        let req = Request::builder()
            .method(Method::PATCH)
            .uri(format!("/api/v1/namespaces/{namespace}/secrets/{name}"))
            .header("content-type", "application/merge-patch+json")
            .header("accept", "application/json")
            .body(body)?;
        let text = self
            .client
            .request_text(req)
            .await
            .with_context(|| format!("patching {namespace}/{name}"))?;
        self.patches.fetch_add(1, Ordering::Relaxed);
        self.patch_bytes
            .fetch_add(text.len() as u64, Ordering::Relaxed);
        self.patch_sent.fetch_add(sent, Ordering::Relaxed);
        Ok(())
    }

    /// The patches this client sent and the bytes it was answered with.
    pub fn own_patches(&self) -> Count {
        Count {
            requests: self.patches.load(Ordering::Relaxed),
            bytes: self.patch_bytes.load(Ordering::Relaxed),
            sent: self.patch_sent.load(Ordering::Relaxed),
        }
    }
}
