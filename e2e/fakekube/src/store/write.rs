//! Writes through the API: create, update, patch (merge, JSON, strategic,
//! server-side apply), delete and eviction, with the API server's rules
//! (optimistic concurrency, status subresource, generation, managedFields,
//! no-op detection).

use std::sync::Arc;

use serde_json::{json, Value};

use super::{check_object, is_secret, EventType, EvictionRecord, ObjKey, Store};
use crate::error::ApiError;
use crate::managed::{self, Operation, Scope};
use crate::meta;
use crate::patch::{self, PatchType};
use crate::registry::ResourceType;

impl Store {
    /// POST: create a new object.
    pub fn create(
        &mut self,
        rt: &Arc<ResourceType>,
        namespace: &str,
        mut body: Value,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
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
        check_data_size(rt, &body)?;
        self.init_new(rt, &mut body, namespace);
        let scope = main_scope(rt);
        let op = Operation::Update {
            manager: manager.to_string(),
        };
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
    pub fn update(
        &mut self,
        rt: &Arc<ResourceType>,
        namespace: &str,
        name: &str,
        body: Value,
        manager: &str,
        status: bool,
    ) -> Result<Arc<Value>, ApiError> {
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
        let op = Operation::Update {
            manager: manager.to_string(),
        };
        self.finish_write(rt, old, body, &op, write_scope(rt, status))
    }

    /// PATCH (merge, strategic, JSON, or server-side apply).
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &Arc<ResourceType>,
        namespace: &str,
        name: &str,
        ptype: PatchType,
        body: &Value,
        manager: &str,
        force: bool,
        status: bool,
    ) -> Result<Arc<Value>, ApiError> {
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
        let op = Operation::Update {
            manager: manager.to_string(),
        };
        self.finish_write(rt, old, candidate, &op, scope)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        rt: &Arc<ResourceType>,
        namespace: &str,
        name: &str,
        body: &Value,
        manager: &str,
        force: bool,
        scope: Scope,
    ) -> Result<Arc<Value>, ApiError> {
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
            None if scope == Scope::StatusOnly => {
                Err(ApiError::not_found(&rt.plural, &rt.group, name))
            }
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
                check_data_size(rt, &obj)?;
                self.init_new(rt, &mut obj, namespace);
                let op = Operation::Apply {
                    manager: manager.to_string(),
                    fields,
                };
                managed::finalize(None, &mut obj, &op, scope, &rt.api_version());
                let key = ObjKey::new(rt, namespace, name);
                Ok(self.commit(key, EventType::Added, Some(obj), None))
            }
            Some(old) => {
                check_rv(rt, name, meta::requested_resource_version(body), &old)?;
                let (merged, fields) = managed::apply(Some(&old), body, manager, force, scope)?;
                let op = Operation::Apply {
                    manager: manager.to_string(),
                    fields,
                };
                self.finish_write(rt, old, merged, &op, scope)
            }
        }
    }

    /// The common tail of every update: server-owned fields, status rules,
    /// managedFields, generation, no-op detection, commit.
    fn finish_write(
        &mut self,
        rt: &Arc<ResourceType>,
        old: Arc<Value>,
        mut candidate: Value,
        op: &Operation,
        scope: Scope,
    ) -> Result<Arc<Value>, ApiError> {
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
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "resourceVersion",
                "deletionTimestamp",
            ] {
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
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            if let Some(m) = meta::metadata_mut(&mut candidate) {
                m.insert("generation".into(), json!(generation));
            }
        }
        if candidate == *old {
            return Ok(old);
        }
        check_data_size(rt, &candidate)?;
        let key = ObjKey::new(
            rt,
            meta::namespace(&old).unwrap_or(""),
            meta::name(&old).unwrap_or(""),
        );
        Ok(self.commit(key, EventType::Modified, Some(candidate), Some(old)))
    }

    /// DELETE: removes immediately (no finalizers, no graceful deletion).
    pub fn delete(
        &mut self,
        rt: &Arc<ResourceType>,
        namespace: &str,
        name: &str,
        preconditions: &Value,
    ) -> Result<Arc<Value>, ApiError> {
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
                return Err(ApiError::new(
                    409,
                    format!("Precondition failed: UID in precondition: {uid}"),
                )
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

fn check_rv(
    rt: &ResourceType,
    name: &str,
    requested: Option<&str>,
    old: &Value,
) -> Result<(), ApiError> {
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

/// The API server's cap on a ConfigMap's or Secret's data (`MaxSecretSize`,
/// 1 MiB, kubernetes `pkg/apis/core/validation/validation.go`
/// `ValidateConfigMap`/`ValidateSecret`): summed over `data` (and a
/// ConfigMap's `binaryData`), keys included; a larger write is 422 Invalid.
/// This is the wall a single growing manifest ConfigMap hits.
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

fn check_data_size(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let kind = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "configmaps") => "ConfigMap",
        ("", "secrets") => "Secret",
        _ => return Ok(()),
    };
    let mut total = 0usize;
    for field in ["data", "binaryData", "stringData"] {
        if let Some(map) = obj.get(field).and_then(Value::as_object) {
            for (k, v) in map {
                // Secret data is base64 on the wire; the limit is on bytes.
                let len = v.as_str().map_or(0, str::len);
                let len = if kind == "Secret" && field == "data" {
                    len / 4 * 3
                } else {
                    len
                };
                total += k.len() + len;
            }
        }
    }
    if total > MAX_DATA_BYTES {
        let name = meta::name(obj).unwrap_or("");
        return Err(ApiError::new(
            422,
            format!("{kind} \"{name}\" is invalid: []: Too long: may not be more than {MAX_DATA_BYTES} bytes"),
        ));
    }
    Ok(())
}
