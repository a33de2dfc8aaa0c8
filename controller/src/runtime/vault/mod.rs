//! Vault (or OpenBao) KV v2 as a source of certificates: a watch of the
//! `VaultCertificate` objects, a poller that looks at each KV secret's
//! metadata at a bounded rate, and reads of a version's data when the
//! publisher asks (`core::vault` decides what they mean).
//!
//! ```text
//!  VaultCertificate watch ──poke──▶ poller ── GET <mount>/metadata/<path> (interval ± jitter,
//!                                     │        at most --vault-poll-rate a second; an outage
//!                                     │        backs the whole poller off)
//!                                     │ Poll per key; a change pokes the app loop
//!                                     ▼
//!  publish pass: metas() ─▶ select ─▶ read(key) ── GET <mount>/data/<path>?version=N
//!                refusals() (unreachable, sealed, denied, gone, bad path)
//! ```
//!
//! The data is read only when the KV version (or the object) moved, exactly
//! as a Secret is read only when its resourceVersion did.

pub mod client;
mod poller;

pub use client::{Auth, Settings, VaultClient, VaultError};
pub use poller::PollSettings;

use crate::core::model::{ObjectRef, SourceData, SourceMeta};
use crate::core::reasons::{self, Refusal, Subject};
use crate::core::vault::{self, Poll, VaultSource};
use crate::crd::VaultCertificate;
use crate::runtime::kube::cluster;
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Where in Vault the certificates are.
#[derive(Debug, Clone)]
pub struct KvSettings {
    /// The KV v2 mount (`secret`).
    pub mount: String,
    /// Every VaultCertificate reads below `<prefix>/<its namespace>/`.
    pub prefix: String,
}

/// One VaultCertificate as the poller tracks it.
#[derive(Debug, Clone)]
pub(crate) struct Tracked {
    pub source: VaultSource,
    /// Below the mount; an error when `spec.path` is refused.
    pub kv_path: Result<String, String>,
    pub poll: Poll,
}

type Table = Arc<Mutex<BTreeMap<ObjectRef, Tracked>>>;

/// The VaultCertificates and what Vault last said about each.
#[derive(Clone)]
pub struct VaultSources {
    store: Store<VaultCertificate>,
    client: VaultClient,
    kv: Arc<KvSettings>,
    table: Table,
}

impl VaultSources {
    /// Starts the VaultCertificate watch and the poller; `changed` wakes
    /// the app loop when what Vault holds (or the objects) changed.
    pub fn start(
        kube: &Client,
        client: VaultClient,
        kv: KvSettings,
        polling: PollSettings,
        changed: &Arc<Notify>,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let mut tasks = Vec::new();
        let woken = Arc::new(Notify::new());
        let store = cluster::spawn_reflector(
            Api::<VaultCertificate>::all(kube.clone()),
            kube::runtime::watcher::Config::default(),
            &woken,
            &mut tasks,
        );
        let sources = VaultSources {
            store,
            client,
            kv: Arc::new(kv),
            table: Arc::default(),
        };
        tasks.push(tokio::spawn(poller::run(
            sources.clone(),
            polling,
            woken,
            Arc::clone(changed),
        )));
        (sources, tasks)
    }

    /// Waits until the VaultCertificate watch has listed once.
    pub async fn wait_ready(&self) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        self.store.wait_until_ready().await
    }

    /// Waits (at most `timeout`) until every VaultCertificate was polled
    /// once, so the first pass reads them rather than waiting for the next.
    pub async fn wait_polled(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let objects = self.objects();
            let pending = {
                let table = self.lock();
                objects.iter().any(|o| {
                    table
                        .get(&o.key)
                        .is_none_or(|t| t.kv_path.is_ok() && t.poll == Poll::Pending)
                })
            };
            if !pending || tokio::time::Instant::now() >= deadline {
                return !pending;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Whether `key` is a VaultCertificate's (its data is read from Vault).
    pub fn contains(&self, key: &ObjectRef) -> bool {
        self.lock().contains_key(key) || self.objects().iter().any(|s| s.key == *key)
    }

    /// Every VaultCertificate that stands for a source now. From the
    /// watch, not only the poller's table: an object the poller has not
    /// picked up yet (just after start-up) is a source too, so what was
    /// published for it is never dropped in between.
    pub fn metas(&self) -> Vec<SourceMeta> {
        let objects = self.objects();
        let table = self.lock();
        objects
            .iter()
            .filter(|s| vault::kv_path(&self.kv.prefix, &s.key.namespace, &s.path).is_ok())
            .filter_map(|s| {
                let poll = table.get(&s.key).map_or(&Poll::Pending, |t| &t.poll);
                vault::source_meta(s, poll)
            })
            .collect()
    }

    fn objects(&self) -> Vec<VaultSource> {
        self.store.state().iter().map(|o| o.to_model()).collect()
    }

    /// Why VaultCertificates are not (freshly) read: bad paths, failed
    /// polls, deleted KV secrets.
    pub fn refusals(&self) -> Vec<Refusal> {
        self.lock()
            .values()
            .filter_map(|t| match &t.kv_path {
                Err(why) => Some(Refusal::new(
                    Subject::Source(t.source.key.clone()),
                    reasons::INVALID_VAULT_PATH,
                    why.clone(),
                )),
                Ok(path) => vault::poll_refusal(&t.source, path, &t.poll),
            })
            .collect()
    }

    /// Vault is known to be down (the last poll found an outage): reads
    /// would only wait for their timeouts.
    pub fn down(&self) -> bool {
        self.lock().values().any(|t| {
            matches!(&t.poll, Poll::Failed { reason, .. } if *reason == reasons::VAULT_UNAVAILABLE)
        })
    }

    /// The data of `key` at the KV version last polled, with the
    /// resourceVersion its source meta carries. `None` when the object or
    /// the version is gone.
    pub async fn read(&self, key: &ObjectRef) -> Result<Option<(String, SourceData)>, ReadError> {
        let Some(tracked) = self.lock().get(key).cloned() else {
            // Watched but not picked up by the poller yet.
            return Err(ReadError::NoVersion);
        };
        let Ok(path) = tracked.kv_path else {
            return Ok(None);
        };
        let Some(version) = tracked.poll.version() else {
            return Err(ReadError::NoVersion);
        };
        let Some(meta) = vault::source_meta(&tracked.source, &tracked.poll) else {
            return Ok(None);
        };
        let fields = self
            .client
            .read(&self.kv.mount, &path, version)
            .await
            .map_err(|e| ReadError::Vault {
                path: format!("{}/{path} version {version}", self.kv.mount),
                error: e,
            })?;
        Ok(fields.map(|f| {
            (
                meta.resource_version,
                vault::layout(&tracked.source.fields, f),
            )
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ObjectRef, Tracked>> {
        // A poisoned table is still a table: the poller replaces entries whole.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Why a Vault source's data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not polled yet, or Vault has not answered since start-up (the
    /// poll's refusal says which).
    #[error("no KV version is known yet")]
    NoVersion,
    #[error("reading {path}: {error}")]
    Vault { path: String, error: VaultError },
}

impl ReadError {
    /// The refusal reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            ReadError::NoVersion => reasons::VAULT_UNAVAILABLE,
            ReadError::Vault { error, .. } => reason_of(error),
        }
    }
}

/// The refusal reason for a Vault failure.
pub fn reason_of(error: &VaultError) -> &'static str {
    match error {
        VaultError::Denied { .. } => reasons::VAULT_DENIED,
        _ => reasons::VAULT_UNAVAILABLE,
    }
}
