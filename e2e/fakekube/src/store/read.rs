//! Reads of the store: lists (with selectors, pagination and consistent
//! snapshots rebuilt from the event log) and watch scans (replay with
//! selector transitions).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{EventType, ObjKey, Store};
use crate::error::ApiError;
use crate::meta;
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};

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
        key.rid == rid
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
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

impl Store {
    /// GET collection, with selectors and limit/continue pagination.
    pub fn list(&self, rt: &ResourceType, q: &ListQuery) -> Result<ListPage, ApiError> {
        let too_old = |rv: u64| {
            ApiError::expired(format!(
                "The resourceVersion for the provided list is too old: {rv} < {}",
                self.compacted
            ))
        };
        validate_list_params(q)?;
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
                    s.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(format!("invalid resourceVersion {s:?}"))
                    })
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
        // Walk the collection in key order from the continue point and stop
        // once the page is full, as etcd's range read does: a page costs its
        // own size, not the collection's (a 100,000-object list in pages of
        // 500 must not be quadratic). A list at an older revision overlays
        // the few objects changed since on the current ones.
        let rid = rt.id();
        let from = ObjKey {
            rid: rid.clone(),
            namespace: start_after.as_ref().map_or_else(
                || q.namespace.clone().unwrap_or_default(),
                |(ns, _)| ns.clone(),
            ),
            name: start_after
                .as_ref()
                .map_or_else(String::new, |(_, n)| n.clone()),
        };
        let changed = self.changed_since(&rid, at);
        let current = self
            .objects
            .range(from.clone()..)
            .take_while(|(k, _)| k.rid == rid)
            .filter(|(k, _)| !changed.contains_key(*k))
            .map(|(k, v)| (k, Some(v)));
        let earlier = changed.range(from..).map(|(k, v)| (k, v.as_ref()));
        let in_order = merge_by_key(current, earlier);
        let mut candidates = in_order
            .filter_map(|(k, v)| Some((k, v?)))
            .filter(|(k, _)| {
                start_after
                    .as_ref()
                    .is_none_or(|(ns, name)| (&k.namespace, &k.name) > (ns, name))
            })
            .take_while(|(k, _)| q.namespace.as_ref().is_none_or(|ns| *ns == k.namespace))
            .filter(|(_, v)| q.labels.matches(v) && q.fields.matches(v));
        let limit = q.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let matching: Vec<(&ObjKey, &Arc<Value>)> = candidates.by_ref().take(limit).collect();
        // Like the API server, the remaining count only without selectors
        // (counting would mean evaluating them on the whole rest).
        let more = candidates.next().is_some();
        let remaining = (more && q.labels.is_empty() && q.fields.is_empty())
            .then(|| 1 + candidates.count() as u64);
        let continue_token = match matching.last() {
            Some((k, _)) if more => Some(encode_continue(&ContinueToken {
                rv: at,
                ns: k.namespace.clone(),
                name: k.name.clone(),
            })?),
            _ => None,
        };
        Ok(ListPage {
            items: matching.into_iter().map(|(_, v)| Arc::clone(v)).collect(),
            resource_version: at,
            continue_token,
            remaining,
        })
    }

    /// Objects of `rid` changed after revision `at`, each as it was at `at`
    /// (`None`: it did not exist then).
    fn changed_since(&self, rid: &str, at: u64) -> BTreeMap<ObjKey, Option<Arc<Value>>> {
        let mut out = BTreeMap::new();
        for e in self.log.iter().rev() {
            if e.rv <= at {
                break;
            }
            if e.key.rid == rid {
                // Walking back in time: the oldest change's `prev` wins.
                out.insert(e.key.clone(), e.prev.clone());
            }
        }
        out
    }
}

/// Two iterators sorted by key, merged into one sorted by key (their keys
/// are disjoint).
fn merge_by_key<'a, A, B>(a: A, b: B) -> impl Iterator<Item = (&'a ObjKey, Option<&'a Arc<Value>>)>
where
    A: Iterator<Item = (&'a ObjKey, Option<&'a Arc<Value>>)>,
    B: Iterator<Item = (&'a ObjKey, Option<&'a Arc<Value>>)>,
{
    let mut a = a.peekable();
    let mut b = b.peekable();
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((ka, _)), Some((kb, _))) => {
            if ka < kb {
                a.next()
            } else {
                b.next()
            }
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

impl Store {
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
                EventType::Deleted if f.matches(&e.object) => {
                    out.push((EventType::Deleted, e.object.clone()))
                }
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

/// The API server's list option validation (kube-rs never sends these
/// combinations; a client that does gets the same 400 as from a cluster).
fn validate_list_params(q: &ListQuery) -> Result<(), ApiError> {
    let set = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    let has_continue = set(&q.continue_token);
    if has_continue && set(&q.resource_version_match) {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden when continue is provided",
        ));
    }
    if has_continue
        && q.resource_version
            .as_deref()
            .is_some_and(|s| !s.is_empty() && s != "0")
    {
        return Err(ApiError::bad_request(
            "specifying resource version is not allowed when using continue",
        ));
    }
    if set(&q.resource_version_match) && !set(&q.resource_version) {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    Ok(())
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
