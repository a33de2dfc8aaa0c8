//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and
//! strategic merge patch treated as a merge patch.
//!
//! Strategic merge differs from merge patch only for lists with merge keys
//! (containers, ports, ...), which cert-sync's objects do not rely on; the
//! simplification is deliberate. Server-side apply lives in `managed.rs`
//! because it needs field ownership.

use serde_json::Value;

use crate::error::ApiError;

/// The patch formats kube-rs sends, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json` (handled as merge)
    Strategic,
    /// `application/json-patch+json`
    Json,
    /// `application/apply-patch+yaml` (server-side apply; JSON in practice)
    Apply,
}

impl PatchType {
    /// Parses a `Content-Type` header value.
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies an RFC 7386 merge patch in place.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch_map {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Applies an RFC 6902 JSON patch (add, remove, replace, move, copy, test).
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("json patch must be an array of operations"))?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = pointer(op, "path")?;
        match kind {
            "add" => add(target, &path, value_of(op)?)?,
            "remove" => {
                remove(target, &path)?;
            }
            "replace" => {
                remove(target, &path)?;
                add(target, &path, value_of(op)?)?;
            }
            "move" => {
                let from = pointer(op, "from")?;
                let v = remove(target, &from)?;
                add(target, &path, v)?;
            }
            "copy" => {
                let from = pointer(op, "from")?;
                let v = get(target, &from).cloned().ok_or_else(|| missing(&from))?;
                add(target, &path, v)?;
            }
            "test" => {
                let want = value_of(op)?;
                if get(target, &path) != Some(&want) {
                    return Err(ApiError::new(
                        422,
                        format!("json patch test failed at /{}", path.join("/")),
                    ));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown json patch op {other:?}"
                )))
            }
        }
    }
    Ok(())
}

fn value_of(op: &Value) -> Result<Value, ApiError> {
    op.get("value")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("json patch op lacks a value"))
}

fn pointer(op: &Value, field: &str) -> Result<Vec<String>, ApiError> {
    let p = op
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request(format!("json patch op lacks {field}")))?;
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| ApiError::bad_request(format!("bad json pointer {p:?}")))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn missing(path: &[String]) -> ApiError {
    ApiError::new(422, format!("json patch: no value at /{}", path.join("/")))
}

fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| match cur {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn parent<'a>(v: &'a mut Value, path: &[String]) -> Result<(&'a mut Value, String), ApiError> {
    let (last, init) = path.split_last().ok_or_else(|| missing(path))?;
    let mut cur = v;
    for seg in init {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok((cur, last.clone()))
}

fn add(target: &mut Value, path: &[String], value: Value) -> Result<(), ApiError> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (p, last) = parent(target, path)?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
            Ok(())
        }
        Value::Array(a) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>().map_err(|_| missing(path))?
            };
            if idx > a.len() {
                return Err(missing(path));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(missing(path)),
    }
}

fn remove(target: &mut Value, path: &[String]) -> Result<Value, ApiError> {
    let (p, last) = parent(target, path)?;
    match p {
        Value::Object(m) => m.remove(&last).ok_or_else(|| missing(path)),
        Value::Array(a) => {
            let idx = last.parse::<usize>().map_err(|_| missing(path))?;
            if idx >= a.len() {
                return Err(missing(path));
            }
            Ok(a.remove(idx))
        }
        _ => Err(missing(path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "l": [3]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "l": [3]}));
    }

    #[test]
    fn json_patch_ops() {
        let mut t = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2]});
        json_patch(
            &mut t,
            &json!([
                {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
                {"op": "remove", "path": "/metadata/labels/a"},
                {"op": "replace", "path": "/list/0", "value": 9},
                {"op": "add", "path": "/list/-", "value": 3},
                {"op": "copy", "from": "/list/0", "path": "/x"},
                {"op": "move", "from": "/x", "path": "/y"},
                {"op": "test", "path": "/y", "value": 9}
            ]),
        )
        .map_err(|e| e.message)
        .expect("patch applies");
        assert_eq!(
            t,
            json!({"metadata": {"labels": {"b/c": "2"}}, "list": [9, 2, 3], "y": 9})
        );
        let err = json_patch(&mut t, &json!([{"op": "test", "path": "/y", "value": 1}]));
        assert_eq!(err.map_err(|e| e.code), Err(422));
        let err = json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}]));
        assert_eq!(err.map_err(|e| e.code), Err(422));
    }
}
