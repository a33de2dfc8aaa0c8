//! Compact caches for the two Secret watches.
//!
//! kube's reflector keeps every watched object whole (a `PartialObjectMeta`
//! is an `ObjectMeta` with some twenty fields, each map and string its own
//! allocation) and clones each one on the way in. For 10,000 TLS Secrets
//! that was most of cert-sync's memory. These stores keep only what a
//! decision reads, with repeated strings and label sets shared:
//!
//! * [`SourceStore`] (every `kubernetes.io/tls` Secret, metadata-only): name,
//!   uid, resourceVersion, creation time, labels and the autosync
//!   annotation — the only annotation the core reads
//!   ([`crate::core::selection::is_autosync`]).
//! * [`ManagedStore`] (cert-sync's own Secrets in the gateway namespace): what
//!   [`crate::core::model::PublishedSecret`] holds. The data is kept by digest only (see
//!   [`crate::core::model::Blob`]), with the summaries of the certificates: a thousand published
//!   Secrets cost their metadata, not their PEM.
//!
//! Both keep the reflector's semantics: a relist is buffered and replaces
//! the contents at once when complete; `wait_until_ready` returns after the
//! first complete list. `state()` gives the kube-shaped view the tests and
//! the resourceVersion preconditions use.

use super::journal::{Changes, Journal};
use crate::core::model::{keys, ObjectRef, SourceMeta};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::PartialObjectMeta;
use kube::core::PartialObjectMetaExt;
use kube::runtime::watcher;
use kube::Resource as _;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use thiserror::Error;
use tokio::sync::watch;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("the watch feeding this store stopped before its first list completed")]
    WatchStopped,
}

/// A label or annotation map.
type Labels = BTreeMap<String, String>;

/// Shares repeated strings (namespaces, annotation values) and whole label
/// sets between records. Entries nobody else holds are dropped by
/// [`Interner::prune`], so it never outgrows the store.
#[derive(Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
    label_sets: HashSet<Arc<Labels>>,
    /// Records removed or replaced since the last prune.
    released: usize,
}

impl Interner {
    fn string(&mut self, s: &str) -> Arc<str> {
        if let Some(found) = self.strings.get(s) {
            return Arc::clone(found);
        }
        let new: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&new));
        new
    }

    fn labels(&mut self, labels: Labels) -> Arc<Labels> {
        if let Some(found) = self.label_sets.get(&labels) {
            return Arc::clone(found);
        }
        let new = Arc::new(labels);
        self.label_sets.insert(Arc::clone(&new));
        new
    }

    fn prune(&mut self) {
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        self.label_sets.retain(|s| Arc::strong_count(s) > 1);
        self.released = 0;
    }

    /// Prunes once as many records went as the store holds (amortised O(1)).
    fn released(&mut self, live: usize) {
        self.released += 1;
        if self.released > live / 2 + 64 {
            self.prune();
        }
    }
}

/// A string that is usually a decimal number (resourceVersion) or a UUID
/// (uid), held in place when it is one. Displays as the original text.
#[derive(Clone, PartialEq, Eq)]
enum Text {
    Number(u64),
    Uuid([u8; 16]),
    Other(Box<str>),
}

impl Text {
    fn new(s: &str) -> Text {
        if let Ok(n) = s.parse::<u64>() {
            // Only the canonical spelling: "007" must come back as "007".
            if n.to_string() == s {
                return Text::Number(n);
            }
        }
        if let Some(uuid) = parse_uuid(s) {
            return Text::Uuid(uuid);
        }
        Text::Other(s.into())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Text::Number(n) => write!(f, "{n}"),
            Text::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Text::Other(s) => f.write_str(s),
        }
    }
}

/// The 16 bytes of a lowercase, hyphenated UUID (the form Kubernetes
/// writes); anything else is kept as text.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let bytes = s.as_bytes();
    if bytes.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut hex = bytes
        .iter()
        .enumerate()
        .filter(|(i, _)| !matches!(i, 8 | 13 | 18 | 23));
    for slot in &mut out {
        let mut byte = 0u8;
        for _ in 0..2 {
            let (_, c) = hex.next()?;
            let nibble = match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => return None,
            };
            byte = byte << 4 | nibble;
        }
        *slot = byte;
    }
    [8, 13, 18, 23]
        .iter()
        .all(|&i| bytes[i] == b'-')
        .then_some(out)
}

/// How a record is made from a watched object.
pub trait Record: Sized + Send + Sync + 'static {
    type Object: kube::Resource;
    /// `previous` is the record held for the same object, if any.
    fn compact(
        object: Self::Object,
        namespace: &str,
        name: &str,
        previous: Option<&Self>,
        interner: &mut Interner,
    ) -> Self;
}

/// namespace → name → record. Namespaces are interned: one allocation each.
type Records<R> = BTreeMap<Arc<str>, BTreeMap<Box<str>, R>>;

struct State<R> {
    live: Records<R>,
    len: usize,
    /// The objects of a relist in progress (after `Init`, until `InitDone`).
    relist: Option<(Records<R>, usize)>,
    interner: Interner,
    /// What changed since the publisher last looked.
    journal: Journal,
}

impl<R> Default for State<R> {
    fn default() -> Self {
        State {
            live: BTreeMap::new(),
            len: 0,
            relist: None,
            interner: Interner::default(),
            journal: Journal::default(),
        }
    }
}

impl<R: Record> State<R> {
    /// An object added or changed outside a relist.
    fn apply_live(&mut self, object: R::Object) {
        if let Some(name) = object.meta().name.as_deref() {
            let namespace = object.meta().namespace.as_deref().unwrap_or_default();
            self.journal.record(namespace, name);
        }
        if insert(
            &mut self.live,
            &mut self.len,
            None,
            &mut self.interner,
            object,
        ) {
            self.interner.released(self.len);
        }
    }
}

fn insert<R: Record>(
    into: &mut Records<R>,
    len: &mut usize,
    previous: Option<&Records<R>>,
    interner: &mut Interner,
    object: R::Object,
) -> bool {
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let Some(name) = object.meta().name.clone() else {
        return false;
    };
    let earlier = previous
        .unwrap_or(into)
        .get(namespace.as_str())
        .and_then(|m| m.get(name.as_str()));
    let record = R::compact(object, &namespace, &name, earlier, interner);
    let ns = interner.string(&namespace);
    let replaced = into
        .entry(ns)
        .or_default()
        .insert(name.into_boxed_str(), record);
    if replaced.is_none() {
        *len += 1;
    }
    replaced.is_some()
}

/// A watch-fed store of compact records; cheap to clone (shared).
pub struct CompactStore<R> {
    state: Arc<RwLock<State<R>>>,
    ready: watch::Receiver<bool>,
}

impl<R> Clone for CompactStore<R> {
    fn clone(&self) -> Self {
        CompactStore {
            state: Arc::clone(&self.state),
            ready: self.ready.clone(),
        }
    }
}

/// The writing half, driven by the watch task.
pub struct Writer<R> {
    state: Arc<RwLock<State<R>>>,
    ready: watch::Sender<bool>,
}

fn new_store<R>() -> (CompactStore<R>, Writer<R>) {
    let state = Arc::new(RwLock::new(State::default()));
    let (tx, rx) = watch::channel(false);
    (
        CompactStore {
            state: Arc::clone(&state),
            ready: rx,
        },
        Writer { state, ready: tx },
    )
}

impl<R: Record> Writer<R> {
    /// Applies one watch event, as kube's reflector would.
    pub fn apply(&self, event: watcher::Event<R::Object>) {
        let mut guard = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        match event {
            watcher::Event::Init => {
                state.relist = Some((BTreeMap::new(), 0));
                state.journal.everything();
            }
            watcher::Event::InitApply(object) => match &mut state.relist {
                Some((records, len)) => {
                    insert(records, len, Some(&state.live), &mut state.interner, object);
                }
                None => state.apply_live(object),
            },
            watcher::Event::InitDone => {
                if let Some((records, len)) = state.relist.take() {
                    state.live = records;
                    state.len = len;
                    state.interner.prune();
                }
                state.journal.everything();
                self.ready.send_replace(true);
            }
            watcher::Event::Apply(object) => state.apply_live(object),
            watcher::Event::Delete(object) => {
                let namespace = object.meta().namespace.as_deref().unwrap_or_default();
                let Some(name) = object.meta().name.as_deref() else {
                    return;
                };
                state.journal.record(namespace, name);
                let removed = state
                    .live
                    .get_mut(namespace)
                    .and_then(|m| m.remove(name))
                    .is_some();
                if state.live.get(namespace).is_some_and(BTreeMap::is_empty) {
                    state.live.remove(namespace);
                }
                if removed {
                    state.len -= 1;
                    state.interner.released(state.len);
                }
            }
        }
    }
}

impl<R> CompactStore<R> {
    /// A relist is in progress: the store shows the state from before it.
    pub fn relisting(&self) -> bool {
        self.read().relist.is_some()
    }

    /// Waits until the first list is complete.
    pub async fn wait_until_ready(&self) -> Result<(), StoreError> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|r| *r)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::WatchStopped)
    }

    pub fn len(&self) -> usize {
        self.read().len
    }

    /// Whether the watch journaled a change not yet taken.
    pub fn changes_pending(&self) -> bool {
        self.read().journal.pending()
    }

    /// What changed since the last call (see `journal`).
    pub fn take_changes(&self) -> Changes {
        self.state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .journal
            .take()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State<R>> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls `f` with each record, in namespace/name order.
    fn each(&self, mut f: impl FnMut(&str, &str, &R)) {
        let state = self.read();
        for (namespace, records) in &state.live {
            for (name, record) in records {
                f(namespace, name, record);
            }
        }
    }
}

fn time(seconds: i64) -> Option<Time> {
    // 0 stands for "no creationTimestamp" (see `SourceMeta::created`).
    (seconds != 0)
        .then(|| jiff::Timestamp::from_second(seconds).ok())
        .flatten()
        .map(Time)
}

// ---------------------------------------------------------------- sources

/// One `kubernetes.io/tls` Secret as the source watch keeps it.
pub struct SourceRecord {
    uid: Text,
    resource_version: Text,
    created: i64,
    labels: Arc<Labels>,
    /// `certsync.istio.io/autosync` alone, when present (interned: one map
    /// for every annotated Secret); the other annotations are not kept.
    autosync: Option<Arc<Labels>>,
}

impl Record for SourceRecord {
    type Object = PartialObjectMeta<Secret>;

    fn compact(
        object: Self::Object,
        _namespace: &str,
        _name: &str,
        _previous: Option<&Self>,
        interner: &mut Interner,
    ) -> Self {
        let meta = object.metadata;
        SourceRecord {
            uid: Text::new(meta.uid.as_deref().unwrap_or_default()),
            resource_version: Text::new(meta.resource_version.as_deref().unwrap_or_default()),
            created: meta.creation_timestamp.map_or(0, |t| t.0.as_second()),
            labels: interner.labels(meta.labels.unwrap_or_default()),
            autosync: meta
                .annotations
                .and_then(|mut a| a.remove_entry(keys::AUTOSYNC))
                .map(|entry| interner.labels(BTreeMap::from([entry]))),
        }
    }
}

/// Every `kubernetes.io/tls` Secret in the cluster, metadata only.
pub type SourceStore = CompactStore<SourceRecord>;

pub(crate) fn source_store() -> (SourceStore, Writer<SourceRecord>) {
    new_store()
}

impl SourceRecord {
    fn meta(&self, namespace: &str, name: &str) -> SourceMeta {
        SourceMeta {
            key: ObjectRef::new(namespace, name),
            uid: self.uid.to_string(),
            resource_version: self.resource_version.to_string(),
            // The watch's field selector admits only TLS Secrets.
            secret_type: keys::TLS_TYPE.to_owned(),
            labels: Arc::clone(&self.labels),
            annotations: self.autosync.clone().unwrap_or_default(),
            created: self.created,
        }
    }
}

impl CompactStore<SourceRecord> {
    /// The sources a decision can involve: Secrets with the autosync
    /// annotation, and every Secret in `merge_namespaces`.
    pub fn sources(&self, merge_namespaces: &BTreeSet<String>) -> Vec<SourceMeta> {
        let mut out = Vec::new();
        self.each(|namespace, name, r| {
            if r.autosync.is_some() || merge_namespaces.contains(namespace) {
                out.push(r.meta(namespace, name));
            }
        });
        out
    }

    /// One TLS Secret's metadata, as [`CompactStore::sources`] gives it.
    pub fn source(&self, key: &ObjectRef) -> Option<SourceMeta> {
        let state = self.read();
        state
            .live
            .get(key.namespace.as_str())
            .and_then(|m| m.get(key.name.as_str()))
            .map(|r| r.meta(&key.namespace, &key.name))
    }

    /// The resourceVersion of one TLS Secret; `None` when the watch has
    /// no such Secret.
    pub fn resource_version_of(&self, key: &ObjectRef) -> Option<String> {
        let state = self.read();
        state
            .live
            .get(key.namespace.as_str())
            .and_then(|m| m.get(key.name.as_str()))
            .map(|r| r.resource_version.to_string())
    }

    /// The kube-shaped view (name, namespace, uid, resourceVersion,
    /// creationTimestamp, labels, the autosync annotation).
    pub fn state(&self) -> Vec<Arc<PartialObjectMeta<Secret>>> {
        let mut out = Vec::with_capacity(self.len());
        self.each(|namespace, name, r| {
            let meta = r.meta(namespace, name);
            out.push(Arc::new(
                ObjectMeta {
                    name: Some(meta.key.name),
                    namespace: Some(meta.key.namespace),
                    uid: Some(meta.uid),
                    resource_version: Some(meta.resource_version),
                    creation_timestamp: time(meta.created),
                    labels: Some((*meta.labels).clone()),
                    annotations: Some((*meta.annotations).clone()),
                    ..ObjectMeta::default()
                }
                .into_request_partial::<Secret>(),
            ));
        });
        out
    }
}

mod managed;
pub(crate) use managed::{digested, managed_store};
pub use managed::{ManagedRecord, ManagedStore};

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
