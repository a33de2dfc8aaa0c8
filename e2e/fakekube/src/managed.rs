//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Tests assert things like "every published Secret has exactly one field
//! manager" and "a re-apply of the same content is a no-op", so the fake
//! keeps real-looking managedFields: one entry per (manager, operation,
//! subresource), listing the leaf fields that manager set. The model is
//! simpler than the API server's structured-merge-diff but keeps its
//! observable rules:
//!
//! - apply merges maps recursively and replaces lists (lists are atomic);
//! - a field the manager applied before and omits now is removed, unless
//!   another manager also owns it;
//! - changing a field owned by another manager is a 409 Conflict unless
//!   `force=true`, which transfers ownership;
//! - non-apply writes (create, PUT, patch) give the fields they changed to
//!   their manager (`fieldManager` or the User-Agent prefix) with operation
//!   `Update`, taking them away from other managers.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::meta;

/// A field path through nested maps.
pub type Path = Vec<String>;

/// A set of leaf field paths.
pub type FieldSet = BTreeSet<Path>;

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource, including `.status`.
    All,
    /// The main resource of a type with a status subresource: not `.status`.
    NoStatus,
    /// The `/status` subresource: only `.status`.
    StatusOnly,
}

impl Scope {
    fn subresource(self) -> Option<&'static str> {
        (self == Scope::StatusOnly).then_some("status")
    }

    fn admits(self, path: &[String]) -> bool {
        let first = path.first().map(String::as_str);
        if matches!(first, Some("apiVersion" | "kind")) {
            return false;
        }
        if first == Some("metadata") {
            let second = path.get(1).map(String::as_str).unwrap_or("");
            if matches!(
                second,
                "" | "name"
                    | "namespace"
                    | "uid"
                    | "resourceVersion"
                    | "generation"
                    | "creationTimestamp"
                    | "managedFields"
                    | "deletionTimestamp"
                    | "selfLink"
            ) {
                return false;
            }
        }
        match self {
            Scope::All => true,
            Scope::NoStatus => first != Some("status"),
            Scope::StatusOnly => first == Some("status"),
        }
    }
}

/// How a write is attributed in managedFields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply by this manager, with the fields it applied.
    Apply { manager: String, fields: FieldSet },
    /// Any other write by this manager.
    Update { manager: String },
}

/// One managedFields entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: FieldSet,
}

impl Entry {
    fn same_slot(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }
}

/// The leaf paths of `v` that `scope` tracks.
pub fn tracked_fields(v: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    leaf_paths(v, &mut Vec::new(), &mut out);
    out.retain(|p| scope.admits(p));
    out
}

fn leaf_paths(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                leaf_paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
        }
    }
}

fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in init {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(m) = cur {
        m.remove(last);
    }
}

/// True if one path is a prefix of the other (they denote overlapping fields).
fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn owned_by(set: &FieldSet, path: &[String]) -> bool {
    set.iter().any(|p| overlaps(p, path))
}

/// Recursively merges `applied` into `target`: maps merge, everything else
/// (lists included) is replaced; `null` removes the field.
pub fn deep_merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        deep_merge(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, a) => *t = a.clone(),
    }
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let mut fields = FieldSet::new();
            if let Some(f) = e.get("fieldsV1") {
                from_fields_v1(f, &mut Vec::new(), &mut fields);
            }
            Entry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                subresource: e
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                fields,
            }
        })
        .collect()
}

fn from_fields_v1(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Value::Object(m) = v else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix.clone());
        }
        return;
    }
    for (k, child) in children {
        prefix.push(k[2..].to_string());
        from_fields_v1(child, prefix, out);
        prefix.pop();
    }
}

fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for k in path {
            let entry = cur
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(m) => cur = m,
                _ => break,
            }
        }
    }
    Value::Object(root)
}

fn write_entries(obj: &mut Value, entries: &[Entry]) {
    let Some(m) = meta::metadata_mut(obj) else {
        return;
    };
    if entries.is_empty() {
        m.remove("managedFields");
        return;
    }
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(sub) = &e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    m.insert("managedFields".into(), Value::Array(list));
}

/// Server-side apply of `applied` onto `old` (None: create). Returns the
/// merged object (managedFields not yet final) and the applied field set
/// to hand to [`finalize`] as [`Operation::Apply`].
pub fn apply(
    old: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    scope: Scope,
) -> Result<(Value, FieldSet), ApiError> {
    let new_set = tracked_fields(applied, scope);
    let Some(old) = old else {
        return Ok((applied.clone(), new_set));
    };
    let sub = scope.subresource();
    let mut entries = read_entries(old);
    let mut conflicts = Vec::new();
    for path in &new_set {
        let current = get_path(old, path);
        if current.is_none() || current == get_path(applied, path) {
            continue;
        }
        for e in entries.iter_mut() {
            if e.same_slot(manager, "Apply", sub) || !owned_by(&e.fields, path) {
                continue;
            }
            if force {
                e.fields.retain(|p| !overlaps(p, path));
            } else {
                conflicts.push(format!(
                    "conflict with \"{}\": .{}",
                    e.manager,
                    path.join(".")
                ));
            }
        }
    }
    if !conflicts.is_empty() {
        let mut err = ApiError::new(
            409,
            format!(
                "Apply failed with {} conflict{}: {}",
                conflicts.len(),
                if conflicts.len() == 1 { "" } else { "s" },
                conflicts.join(", ")
            ),
        );
        err.reason = "Conflict".into();
        return Err(err);
    }
    let mut merged = old.clone();
    deep_merge(&mut merged, applied);
    let previous = entries
        .iter()
        .find(|e| e.same_slot(manager, "Apply", sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for gone in previous.difference(&new_set) {
        let shared = entries
            .iter()
            .any(|e| !e.same_slot(manager, "Apply", sub) && owned_by(&e.fields, gone));
        if !shared && !owned_by(&new_set, gone) {
            remove_path(&mut merged, gone);
        }
    }
    entries.retain(|e| !e.fields.is_empty() || e.same_slot(manager, "Apply", sub));
    write_entries(&mut merged, &entries);
    Ok((merged, new_set))
}

/// Writes the final managedFields of `new` after a write by `op`.
///
/// `old` is the object before the write (None for a create). The manager's
/// entry gets a fresh `time` only when it changes, so a no-op write leaves
/// the object byte-identical (and the store then skips it).
pub fn finalize(
    old: Option<&Value>,
    new: &mut Value,
    op: &Operation,
    scope: Scope,
    api_version: &str,
) {
    let sub = scope.subresource();
    let mut entries = read_entries(new);
    let old_fields = old
        .map(|o| tracked_fields(o, Scope::All))
        .unwrap_or_default();
    let new_fields = tracked_fields(new, Scope::All);
    // Fields that no longer exist are owned by nobody.
    for e in entries.iter_mut() {
        e.fields.retain(|p| owned_by(&new_fields, p));
    }
    let (manager, operation, fields) = match op {
        Operation::Apply { manager, fields } => (manager.as_str(), "Apply", fields.clone()),
        Operation::Update { manager } => {
            let changed: FieldSet = tracked_fields(new, scope)
                .into_iter()
                .filter(|p| {
                    !old_fields.contains(p) || old.and_then(|o| get_path(o, p)) != get_path(new, p)
                })
                .collect();
            for e in entries.iter_mut() {
                if !e.same_slot(manager, "Update", sub) {
                    e.fields.retain(|p| !changed.iter().any(|c| overlaps(c, p)));
                }
            }
            let mut mine = entries
                .iter()
                .find(|e| e.same_slot(manager, "Update", sub))
                .map(|e| e.fields.clone())
                .unwrap_or_default();
            mine.extend(changed);
            (manager.as_str(), "Update", mine)
        }
    };
    let object_changed = match old {
        Some(o) => strip_managed(o) != strip_managed(new),
        None => true,
    };
    match entries
        .iter_mut()
        .find(|e| e.same_slot(manager, operation, sub))
    {
        Some(e) if e.fields != fields || object_changed => {
            e.fields = fields;
            e.time = meta::now_rfc3339();
            e.api_version = api_version.to_string();
        }
        Some(_) => {}
        None if !fields.is_empty() => entries.push(Entry {
            manager: manager.to_string(),
            operation: operation.to_string(),
            api_version: api_version.to_string(),
            time: meta::now_rfc3339(),
            subresource: sub.map(str::to_string),
            fields,
        }),
        None => {}
    }
    entries.retain(|e| !e.fields.is_empty());
    write_entries(new, &entries);
}

fn strip_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    v
}

/// The field managers listed in an object's `metadata.managedFields`, as
/// (manager, operation) pairs, e.g. `("cert-sync", "Apply")`.
pub fn managers(obj: &Value) -> Vec<(String, String)> {
    read_entries(obj)
        .into_iter()
        .map(|e| (e.manager, e.operation))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}, "data": data})
    }

    fn apply_ok(old: Option<&Value>, applied: &Value, mgr: &str, force: bool) -> Value {
        let (mut merged, fields) = apply(old, applied, mgr, force, Scope::All).expect("apply");
        let op = Operation::Apply {
            manager: mgr.into(),
            fields,
        };
        finalize(old, &mut merged, &op, Scope::All, "v1");
        merged
    }

    #[test]
    fn apply_creates_merges_and_removes_dropped_fields() {
        let a = apply_ok(None, &cm(json!({"a": "1", "b": "2"})), "m", false);
        assert_eq!(managers(&a), vec![("m".to_string(), "Apply".to_string())]);
        let b = apply_ok(Some(&a), &cm(json!({"a": "1"})), "m", false);
        assert_eq!(b["data"], json!({"a": "1"}));
        let again = apply_ok(Some(&b), &cm(json!({"a": "1"})), "m", false);
        assert_eq!(again, b, "no-op apply leaves the object identical");
    }

    #[test]
    fn apply_conflicts_with_other_manager_unless_forced() {
        let a = apply_ok(None, &cm(json!({"a": "1"})), "one", false);
        let err = apply(Some(&a), &cm(json!({"a": "2"})), "two", false, Scope::All);
        assert_eq!(err.map(|_| ()).map_err(|e| e.code), Err(409));
        let same = apply_ok(Some(&a), &cm(json!({"a": "1"})), "two", false);
        assert_eq!(managers(&same).len(), 2, "same value: shared ownership");
        let forced = apply_ok(Some(&a), &cm(json!({"a": "2"})), "two", true);
        assert_eq!(
            managers(&forced),
            vec![("two".to_string(), "Apply".to_string())]
        );
    }

    #[test]
    fn update_takes_changed_fields() {
        let a = apply_ok(None, &cm(json!({"a": "1", "b": "2"})), "applier", false);
        let mut b = a.clone();
        b["data"]["a"] = json!("changed");
        finalize(
            Some(&a),
            &mut b,
            &Operation::Update {
                manager: "kubectl".into(),
            },
            Scope::All,
            "v1",
        );
        let ms = managers(&b);
        assert!(ms.contains(&("kubectl".to_string(), "Update".to_string())));
        assert!(ms.contains(&("applier".to_string(), "Apply".to_string())));
        let fields = &b["metadata"]["managedFields"];
        assert!(fields.to_string().contains("f:a"));
    }
}
