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

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::error::ApiError;
use crate::managed::{self, Operation, Scope};
use crate::meta;
use crate::patch::{self, PatchType};
use crate::registry::{Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};

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
            namespace: if rt.namespaced { namespace.to_string() } else { String::new() },
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

/// Parameters of a list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<Arc<Value>>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// What a watch selects.
#[derive(Debug, Clone)]
pub struct WatchFilter {
    pub rt: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl WatchFilter {
    fn in_scope(&self, key: &ObjKey, rid: &str) -> bool {
        key.rid == rid && self.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// Events a watcher should receive, or the compaction point if it fell
/// behind the log.
pub type ScanResult = Result<(Vec<(EventType, Arc<Value>)>, u64), u64>;

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
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

    fn commit(&mut self, key: ObjKey, kind: EventType, obj: Option<Value>, prev: Option<Arc<Value>>) -> Arc<Value> {
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

    fn get_or_404(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Arc<Value>, ApiError> {
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

    /// POST: create a new object.
    pub fn create(&mut self, rt: &Arc<ResourceType>, namespace: &str, mut body: Value, manager: &str) -> Result<Arc<Value>, ApiError> {
        check_object(&body)?;
        check_namespace(rt, namespace, &body)?;
        let name = match meta::name(&body) {
            Some(n) => n.to_string(),
            None => {
                let prefix = body
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ApiError::new(422, "name or generateName is required"))?
                    .to_string();
                let n = format!("{prefix}{}", self.generated_suffix());
                if let Some(m) = meta::metadata_mut(&mut body) {
                    m.insert("name".into(), json!(n));
                }
                n
            }
        };
        let key = ObjKey::new(rt, namespace, &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(&rt.plural, &rt.group, &name));
        }
        if let Some(m) = meta::metadata_mut(&mut body) {
            m.remove("managedFields");
        }
        if rt.status_subresource {
            if let Some(o) = body.as_object_mut() {
                o.remove("status");
            }
        }
        self.init_new(rt, &mut body, namespace);
        let scope = main_scope(rt);
        let op = Operation::Update { manager: manager.to_string() };
        managed::finalize(None, &mut body, &op, scope, &rt.api_version());
        Ok(self.commit(key, EventType::Added, Some(body), None))
    }

    fn generated_suffix(&mut self) -> String {
        self.uid_counter += 1;
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.uid_counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ self.uid_salt;
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    /// PUT on the object or its `/status`.
    pub fn update(&mut self, rt: &Arc<ResourceType>, namespace: &str, name: &str, body: Value, manager: &str, status: bool) -> Result<Arc<Value>, ApiError> {
        check_object(&body)?;
        check_namespace(rt, namespace, &body)?;
        if let Some(n) = meta::name(&body) {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let old = self.get_or_404(rt, namespace, name)?;
        check_rv(rt, name, meta::requested_resource_version(&body), &old)?;
        let op = Operation::Update { manager: manager.to_string() };
        self.finish_write(rt, old, body, &op, write_scope(rt, status))
    }

    /// PATCH (merge, strategic, JSON, or server-side apply).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(&mut self, rt: &Arc<ResourceType>, namespace: &str, name: &str, ptype: PatchType, body: &Value, manager: &str, force: bool, status: bool) -> Result<Arc<Value>, ApiError> {
        let scope = write_scope(rt, status);
        if ptype == PatchType::Apply {
            return self.apply(rt, namespace, name, body, manager, force, scope);
        }
        let old = self.get_or_404(rt, namespace, name)?;
        let mut candidate = (*old).clone();
        match ptype {
            PatchType::Json => patch::json_patch(&mut candidate, body)?,
            _ => {
                if !body.is_object() {
                    return Err(ApiError::bad_request("merge patch must be a JSON object"));
                }
                patch::merge_patch(&mut candidate, body)
            }
        }
        check_object(&candidate)?;
        check_rv(rt, name, meta::requested_resource_version(&candidate), &old)?;
        let op = Operation::Update { manager: manager.to_string() };
        self.finish_write(rt, old, candidate, &op, scope)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(&mut self, rt: &Arc<ResourceType>, namespace: &str, name: &str, body: &Value, manager: &str, force: bool, scope: Scope) -> Result<Arc<Value>, ApiError> {
        if manager.is_empty() {
            return Err(ApiError::new(
                422,
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        check_object(body)?;
        check_namespace(rt, namespace, body)?;
        if let Some(n) = meta::name(body) {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let old = self.get(rt, namespace, name);
        match old {
            None if scope == Scope::StatusOnly => Err(ApiError::not_found(&rt.plural, &rt.group, name)),
            None => {
                if meta::requested_resource_version(body).is_some() {
                    return Err(ApiError::conflict(&rt.plural, &rt.group, name));
                }
                let mut applied = body.clone();
                if let Some(m) = meta::metadata_mut(&mut applied) {
                    m.insert("name".into(), json!(name));
                    m.remove("managedFields");
                }
                if rt.status_subresource {
                    if let Some(o) = applied.as_object_mut() {
                        o.remove("status");
                    }
                }
                let (mut obj, fields) = managed::apply(None, &applied, manager, force, scope)?;
                self.init_new(rt, &mut obj, namespace);
                let op = Operation::Apply { manager: manager.to_string(), fields };
                managed::finalize(None, &mut obj, &op, scope, &rt.api_version());
                let key = ObjKey::new(rt, namespace, name);
                Ok(self.commit(key, EventType::Added, Some(obj), None))
            }
            Some(old) => {
                check_rv(rt, name, meta::requested_resource_version(body), &old)?;
                let (merged, fields) = managed::apply(Some(&old), body, manager, force, scope)?;
                let op = Operation::Apply { manager: manager.to_string(), fields };
                self.finish_write(rt, old, merged, &op, scope)
            }
        }
    }

    /// The common tail of every update: server-owned fields, status rules,
    /// managedFields, generation, no-op detection, commit.
    fn finish_write(&mut self, rt: &Arc<ResourceType>, old: Arc<Value>, mut candidate: Value, op: &Operation, scope: Scope) -> Result<Arc<Value>, ApiError> {
        check_object(&candidate)?;
        candidate["apiVersion"] = json!(rt.api_version());
        candidate["kind"] = json!(rt.kind);
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let managed_source = match op {
            Operation::Apply { .. } => candidate.pointer("/metadata/managedFields").cloned(),
            Operation::Update { .. } => old_meta.get("managedFields").cloned(),
        };
        match scope {
            Scope::StatusOnly => {
                let mut next = (*old).clone();
                match candidate.get("status") {
                    Some(s) => next["status"] = s.clone(),
                    None => {
                        if let Some(o) = next.as_object_mut() {
                            o.remove("status");
                        }
                    }
                }
                candidate = next;
            }
            Scope::NoStatus => match old.get("status") {
                Some(s) => candidate["status"] = s.clone(),
                None => {
                    if let Some(o) = candidate.as_object_mut() {
                        o.remove("status");
                    }
                }
            },
            Scope::All => {}
        }
        if let Some(m) = meta::metadata_mut(&mut candidate) {
            for k in ["name", "namespace", "uid", "creationTimestamp", "generation", "resourceVersion", "deletionTimestamp"] {
                match old_meta.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            match managed_source {
                Some(mf) => m.insert("managedFields".into(), mf),
                None => m.remove("managedFields"),
            };
        }
        if is_secret(rt) {
            meta::normalize_secret(&mut candidate);
        }
        managed::finalize(Some(&old), &mut candidate, op, scope, &rt.api_version());
        if rt.generation && spec_part(&candidate) != spec_part(&old) {
            let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            if let Some(m) = meta::metadata_mut(&mut candidate) {
                m.insert("generation".into(), json!(generation));
            }
        }
        if candidate == *old {
            return Ok(old);
        }
        let key = ObjKey::new(rt, meta::namespace(&old).unwrap_or(""), meta::name(&old).unwrap_or(""));
        Ok(self.commit(key, EventType::Modified, Some(candidate), Some(old)))
    }

    /// DELETE: removes immediately (no finalizers, no graceful deletion).
    pub fn delete(&mut self, rt: &Arc<ResourceType>, namespace: &str, name: &str, preconditions: &Value) -> Result<Arc<Value>, ApiError> {
        let old = self.get_or_404(rt, namespace, name)?;
        if let Some(rv) = preconditions.get("resourceVersion").and_then(Value::as_str) {
            if rv != meta::resource_version(&old).to_string() {
                return Err(ApiError::new(
                    409,
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta::resource_version(&old)
                    ),
                )
                .with_details(&rt.plural, &rt.group, name));
            }
        }
        if let Some(uid) = preconditions.get("uid").and_then(Value::as_str) {
            if Some(uid) != old.pointer("/metadata/uid").and_then(Value::as_str) {
                return Err(ApiError::new(409, format!("Precondition failed: UID in precondition: {uid}"))
                    .with_details(&rt.plural, &rt.group, name));
            }
        }
        let key = ObjKey::new(rt, namespace, name);
        Ok(self.commit(key, EventType::Deleted, None, Some(old)))
    }

    /// POST pods/{name}/eviction: records it and deletes the pod.
    pub fn evict(&mut self, namespace: &str, name: &str) -> Result<(), ApiError> {
        let rt = self
            .registry
            .by_path("", "v1", "pods")
            .ok_or_else(ApiError::no_route)?;
        self.delete(&rt, namespace, name, &Value::Null)?;
        self.evictions.push(EvictionRecord {
            namespace: namespace.to_string(),
            name: name.to_string(),
            resource_version: self.rv,
        });
        Ok(())
    }

    /// Direct-store write: creates or replaces the whole object as given
    /// (status included, no managedFields bookkeeping), keeping uid and
    /// creationTimestamp of an existing object.
    pub fn put_raw(&mut self, mut obj: Value) -> Result<Arc<Value>, crate::Error> {
        check_object(&obj).map_err(|e| crate::Error::InvalidObject(e.message))?;
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
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
    pub fn delete_raw(&mut self, rt: &Arc<ResourceType>, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.delete(rt, namespace, name, &Value::Null).ok()
    }

    /// Objects of `rid` as of revision `at` (which must not be compacted),
    /// rebuilt by undoing newer events.
    fn snapshot(&self, rt: &ResourceType, at: u64) -> BTreeMap<ObjKey, Arc<Value>> {
        let rid = rt.id();
        let mut objs: BTreeMap<ObjKey, Arc<Value>> = self
            .objects
            .iter()
            .filter(|(k, _)| k.rid == rid)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for e in self.log.iter().rev() {
            if e.rv <= at {
                break;
            }
            if e.key.rid != rid {
                continue;
            }
            match &e.prev {
                Some(p) => objs.insert(e.key.clone(), p.clone()),
                None => objs.remove(&e.key),
            };
        }
        objs
    }

    /// GET collection, with selectors and limit/continue pagination.
    pub fn list(&self, rt: &ResourceType, q: &ListQuery) -> Result<ListPage, ApiError> {
        let too_old = |rv: u64| {
            ApiError::expired(format!(
                "The resourceVersion for the provided list is too old: {rv} < {}",
                self.compacted
            ))
        };
        let mut start_after: Option<(String, String)> = None;
        let at = if let Some(token) = q.continue_token.as_deref().filter(|t| !t.is_empty()) {
            let t = decode_continue(token)?;
            if t.rv < self.compacted {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ));
            }
            start_after = Some((t.ns, t.name));
            t.rv
        } else {
            let requested = q
                .resource_version
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<u64>()
                        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))
                })
                .transpose()?;
            match (requested, q.resource_version_match.as_deref()) {
                (Some(rv), Some("Exact")) => {
                    if rv < self.compacted {
                        return Err(too_old(rv));
                    }
                    if rv > self.rv {
                        return Err(too_large(rv));
                    }
                    rv
                }
                (Some(rv), _) if rv > self.rv => return Err(too_large(rv)),
                _ => self.rv,
            }
        };
        let source: Box<dyn Iterator<Item = (ObjKey, Arc<Value>)>> = if at == self.rv {
            let rid = rt.id();
            Box::new(
                self.objects
                    .iter()
                    .filter(move |(k, _)| k.rid == rid)
                    .map(|(k, v)| (k.clone(), v.clone())),
            )
        } else {
            Box::new(self.snapshot(rt, at).into_iter())
        };
        let mut matching: Vec<((String, String), Arc<Value>)> = source
            .filter(|(k, v)| {
                q.namespace.as_ref().is_none_or(|ns| *ns == k.namespace)
                    && q.labels.matches(v)
                    && q.fields.matches(v)
            })
            .map(|(k, v)| ((k.namespace, k.name), v))
            .filter(|(k, _)| start_after.as_ref().is_none_or(|s| k > s))
            .collect();
        let limit = q.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let rest = matching.len().saturating_sub(limit);
        matching.truncate(limit);
        let continue_token = match matching.last() {
            Some(((ns, name), _)) if rest > 0 => Some(encode_continue(&ContinueToken {
                rv: at,
                ns: ns.clone(),
                name: name.clone(),
            })?),
            _ => None,
        };
        Ok(ListPage {
            items: matching.into_iter().map(|(_, v)| v).collect(),
            resource_version: at,
            continue_token,
            remaining: (rest > 0).then_some(rest as u64),
        })
    }

    /// Current matching objects for a watch starting from "now", and the
    /// revision to continue from.
    pub fn watch_initial(&self, f: &WatchFilter) -> (Vec<Arc<Value>>, u64) {
        let rid = f.rt.id();
        let items = self
            .objects
            .iter()
            .filter(|(k, v)| f.in_scope(k, &rid) && f.matches(v))
            .map(|(_, v)| v.clone())
            .collect();
        (items, self.rv)
    }

    /// Events after `pos` for a watcher, applying selector transitions the
    /// way the API server's watch cache does: an object that starts
    /// matching is ADDED, one that stops matching is DELETED (its previous
    /// state, stamped with the new resourceVersion).
    pub fn watch_scan(&self, f: &WatchFilter, pos: u64) -> ScanResult {
        if pos < self.compacted {
            return Err(self.compacted);
        }
        let rid = f.rt.id();
        let start = self.log.partition_point(|e| e.rv <= pos);
        let mut out = Vec::new();
        for e in self.log.iter().skip(start) {
            if !f.in_scope(&e.key, &rid) {
                continue;
            }
            let now = e.kind != EventType::Deleted && f.matches(&e.object);
            let before = e.prev.as_deref().is_some_and(|p| f.matches(p));
            match e.kind {
                EventType::Added if now => out.push((EventType::Added, e.object.clone())),
                EventType::Deleted if f.matches(&e.object) => out.push((EventType::Deleted, e.object.clone())),
                EventType::Modified => match (before, now) {
                    (true, true) => out.push((EventType::Modified, e.object.clone())),
                    (false, true) => out.push((EventType::Added, e.object.clone())),
                    (true, false) => {
                        let mut gone = e.prev.as_deref().cloned().unwrap_or_else(|| json!({}));
                        meta::set_resource_version(&mut gone, e.rv);
                        out.push((EventType::Deleted, Arc::new(gone)));
                    }
                    (false, false) => {}
                },
                _ => {}
            }
        }
        Ok((out, self.rv))
    }
}

fn too_large(rv: u64) -> ApiError {
    let mut e = ApiError::new(504, format!("Too large resource version: {rv}"));
    e.reason = "Timeout".into();
    e
}

fn encode_continue(t: &ContinueToken) -> Result<String, ApiError> {
    let raw = serde_json::to_vec(t).map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

fn decode_continue(token: &str) -> Result<ContinueToken, ApiError> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.as_bytes())
        .map_err(|_| bad())?;
    serde_json::from_slice(&raw).map_err(|_| bad())
}

fn is_secret(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "secrets"
}

fn main_scope(rt: &ResourceType) -> Scope {
    if rt.status_subresource {
        Scope::NoStatus
    } else {
        Scope::All
    }
}

fn write_scope(rt: &ResourceType, status: bool) -> Scope {
    if status {
        Scope::StatusOnly
    } else {
        main_scope(rt)
    }
}

fn check_object(v: &Value) -> Result<(), ApiError> {
    if v.is_object() && v.get("metadata").is_none_or(Value::is_object) {
        Ok(())
    } else {
        Err(ApiError::bad_request("the body must be a JSON object with object metadata"))
    }
}

fn check_namespace(rt: &ResourceType, namespace: &str, body: &Value) -> Result<(), ApiError> {
    if !rt.namespaced {
        return Ok(());
    }
    match meta::namespace(body) {
        Some(ns) if ns != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

fn check_rv(rt: &ResourceType, name: &str, requested: Option<&str>, old: &Value) -> Result<(), ApiError> {
    match requested {
        Some(rv) if rv != meta::resource_version(old).to_string() => {
            Err(ApiError::conflict(&rt.plural, &rt.group, name))
        }
        _ => Ok(()),
    }
}

/// Everything but metadata and status: what `generation` tracks.
fn spec_part(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("metadata");
        o.remove("status");
    }
    v
}
