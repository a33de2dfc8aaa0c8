//! The object store: what etcd plus the API server's write path would be.
//!
//! One global, monotonically increasing resourceVersion for the whole store
//! (like an etcd revision). Every persisted change appends an event, holding
//! the object before and after, to a bounded in-memory log. That log serves
//! three purposes: watch replay from a resourceVersion, selector transitions
//! in watches (the previous object tells whether it used to match), and
//! consistent paginated lists at an older resourceVersion (the state at
//! revision R is rebuilt by undoing the events after R). Anything older than
//! the log start is "compacted" and answered with 410 Expired, as etcd
//! compaction makes the real API server do.
//!
//! No-op writes (an object byte-identical to the stored one after all server
//! rules are applied) are not persisted: no resourceVersion bump, no event,
//! no write count.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::meta;
use crate::registry::{Registry, ResourceType};

mod read;
mod write;

pub use read::{ListPage, ListQuery, WatchFilter};

/// Identifies a stored object: resource id (`secrets`,
/// `leases.coordination.k8s.io`), namespace ("" if cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    pub rid: String,
    pub namespace: String,
    pub name: String,
}

impl ObjKey {
    pub fn new(rt: &ResourceType, namespace: &str, name: &str) -> Self {
        Self {
            rid: rt.id(),
            namespace: if rt.namespaced {
                namespace.to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }
}

/// A watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

struct LogEntry {
    rv: u64,
    key: ObjKey,
    kind: EventType,
    object: Arc<Value>,
    prev: Option<Arc<Value>>,
}

/// A recorded pod eviction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvictionRecord {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// resourceVersion at which the pod was deleted.
    pub resource_version: u64,
}

/// The store. Guarded by a mutex in `Shared`; never held across an await.
pub struct Store {
    registry: Registry,
    objects: BTreeMap<ObjKey, Arc<Value>>,
    rv: u64,
    log: VecDeque<LogEntry>,
    log_capacity: usize,
    compacted: u64,
    writes: HashMap<ObjKey, u64>,
    uid_counter: u64,
    uid_salt: u64,
    evictions: Vec<EvictionRecord>,
    rv_tx: watch::Sender<u64>,
}

impl Store {
    pub fn new(registry: Registry, log_capacity: usize, rv_tx: watch::Sender<u64>) -> Self {
        let salt = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Self {
            registry,
            objects: BTreeMap::new(),
            rv: 1,
            log: VecDeque::new(),
            log_capacity: log_capacity.max(1),
            compacted: 0,
            writes: HashMap::new(),
            uid_counter: 0,
            uid_salt: salt,
            evictions: Vec::new(),
            rv_tx,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// A receiver of the latest revision, to wake watchers.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.rv_tx.subscribe()
    }

    /// Watches from a resourceVersion below this get 410.
    pub fn compacted(&self) -> u64 {
        self.compacted
    }

    pub fn evictions(&self) -> Vec<EvictionRecord> {
        self.evictions.clone()
    }

    pub fn write_count(&self, key: &ObjKey) -> u64 {
        self.writes.get(key).copied().unwrap_or(0)
    }

    /// Drops history up to `rv` (at most the current revision).
    pub fn compact(&mut self, rv: u64) {
        let rv = rv.min(self.rv);
        while self.log.front().is_some_and(|e| e.rv <= rv) {
            self.log.pop_front();
        }
        self.compacted = self.compacted.max(rv);
    }

    /// Simulates an API server restart over kept etcd state: the revision
    /// moves on (other clients always write something meanwhile) and the
    /// watch cache starts empty, so every resourceVersion a client holds is
    /// too old.
    pub fn restart(&mut self) {
        self.rv += 1;
        self.log.clear();
        self.compacted = self.rv;
        self.rv_tx.send_replace(self.rv);
    }

    fn commit(
        &mut self,
        key: ObjKey,
        kind: EventType,
        obj: Option<Value>,
        prev: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        let mut object = match (obj, &prev) {
            (Some(o), _) => o,
            (None, Some(p)) => (**p).clone(),
            (None, None) => json!({}),
        };
        meta::set_resource_version(&mut object, self.rv);
        let object = Arc::new(object);
        if kind == EventType::Deleted {
            self.objects.remove(&key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        *self.writes.entry(key.clone()).or_insert(0) += 1;
        self.log.push_back(LogEntry {
            rv: self.rv,
            key,
            kind,
            object: object.clone(),
            prev,
        });
        while self.log.len() > self.log_capacity {
            if let Some(e) = self.log.pop_front() {
                self.compacted = self.compacted.max(e.rv);
            }
        }
        self.rv_tx.send_replace(self.rv);
        object
    }

    fn next_uid(&mut self) -> String {
        self.uid_counter += 1;
        meta::uid(self.uid_counter, self.uid_salt)
    }

    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects.get(&ObjKey::new(rt, namespace, name)).cloned()
    }

    fn get_or_404(
        &self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.get(rt, namespace, name)
            .ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, name))
    }

    /// Every object of a resource (optionally in one namespace), by key order.
    pub fn objects_of(&self, rt: &ResourceType, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let rid = rt.id();
        self.objects
            .iter()
            .filter(|(k, _)| k.rid == rid && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Sets identity fields the server owns on a new object.
    fn init_new(&mut self, rt: &ResourceType, obj: &mut Value, namespace: &str) {
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let uid = self.next_uid();
        if let Some(m) = meta::metadata_mut(obj) {
            if rt.namespaced {
                m.insert("namespace".into(), json!(namespace));
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), json!(uid));
            m.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
            m.remove("resourceVersion");
            if rt.generation {
                m.insert("generation".into(), json!(1));
            } else {
                m.remove("generation");
            }
        }
        if is_secret(rt) {
            meta::normalize_secret(obj);
        }
    }

    /// Direct-store write: creates or replaces the whole object as given
    /// (status included, no managedFields bookkeeping), keeping uid and
    /// creationTimestamp of an existing object.
    pub fn put_raw(&mut self, mut obj: Value) -> Result<Arc<Value>, crate::Error> {
        check_object(&obj).map_err(|e| crate::Error::InvalidObject(e.message))?;
        let api_version = obj
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let rt = self
            .registry
            .by_kind(&api_version, &kind)
            .ok_or(crate::Error::UnknownKind { api_version, kind })?;
        let name = meta::name(&obj)
            .ok_or_else(|| crate::Error::InvalidObject("metadata.name is required".into()))?
            .to_string();
        let namespace = meta::namespace(&obj).unwrap_or("").to_string();
        if rt.namespaced && namespace.is_empty() {
            return Err(crate::Error::InvalidObject(format!(
                "{} is namespaced: metadata.namespace is required",
                rt.kind
            )));
        }
        let key = ObjKey::new(&rt, &namespace, &name);
        match self.objects.get(&key).cloned() {
            Some(old) => {
                if let Some(m) = meta::metadata_mut(&mut obj) {
                    for k in ["uid", "creationTimestamp"] {
                        if let Some(v) = old.pointer(&format!("/metadata/{k}")) {
                            m.insert(k.into(), v.clone());
                        }
                    }
                    m.remove("resourceVersion");
                }
                if is_secret(&rt) {
                    meta::normalize_secret(&mut obj);
                }
                let mut cmp = obj.clone();
                meta::set_resource_version(&mut cmp, meta::resource_version(&old));
                if cmp == *old {
                    return Ok(old);
                }
                Ok(self.commit(key, EventType::Modified, Some(obj), Some(old)))
            }
            None => {
                let status = obj.get("status").cloned();
                let managed = obj.pointer("/metadata/managedFields").cloned();
                let generation = obj.pointer("/metadata/generation").cloned();
                self.init_new(&rt, &mut obj, &namespace);
                if let Some(s) = status {
                    obj["status"] = s;
                }
                if let Some(m) = meta::metadata_mut(&mut obj) {
                    if let Some(mf) = managed {
                        m.insert("managedFields".into(), mf);
                    }
                    if let Some(g) = generation {
                        m.insert("generation".into(), g);
                    }
                }
                Ok(self.commit(key, EventType::Added, Some(obj), None))
            }
        }
    }

    /// Direct-store delete.
    pub fn delete_raw(
        &mut self,
        rt: &Arc<ResourceType>,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        self.delete(rt, namespace, name, &Value::Null).ok()
    }
}

fn is_secret(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "secrets"
}

fn check_object(v: &Value) -> Result<(), ApiError> {
    if v.is_object() && v.get("metadata").is_none_or(Value::is_object) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "the body must be a JSON object with object metadata",
        ))
    }
}
