//! Object metadata helpers: timestamps, uids, the metadata-only
//! (`PartialObjectMetadata`) view, and the few per-kind defaults the API
//! server applies (Secret `stringData` → `data`, default `type`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// `metadata.resourceVersion` of an object, parsed; 0 if absent.
pub fn resource_version(obj: &Value) -> u64 {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `metadata.resourceVersion` as sent by a client, if non-empty.
pub fn requested_resource_version(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `metadata.name`, if present.
pub fn name(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// `metadata.namespace`, if present.
pub fn namespace(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The `metadata` map, created if missing; `None` if `obj` is not an object.
pub fn metadata_mut(obj: &mut Value) -> Option<&mut Map<String, Value>> {
    let m = obj
        .as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut()
}

/// Sets `metadata.resourceVersion`.
pub fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Some(m) = metadata_mut(obj) {
        m.insert("resourceVersion".into(), json!(rv.to_string()));
    }
}

/// The metadata-only view of an object, as served for
/// `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`.
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Now as an RFC 3339 UTC timestamp with second precision.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// A UUID-shaped uid, unique within one fake server.
pub fn uid(counter: u64, salt: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (salt >> 32) as u32,
        (salt >> 16) as u16,
        (salt & 0xfff) as u16,
        (counter >> 48) as u16 & 0xfff,
        counter & 0xffff_ffff_ffff
    )
}

/// Secret defaults the API server applies on every write: `stringData` is
/// merged into `data` (base64) and dropped; `type` defaults to `Opaque`.
pub fn normalize_secret(obj: &mut Value) {
    if let Some(Value::Object(string_data)) =
        obj.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = json!({});
        }
        if let Some(Value::Object(data)) = obj.get_mut("data") {
            for (k, v) in string_data {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
                data.insert(k, Value::String(encoded));
            }
        }
    }
    if obj.get("type").is_none_or(Value::is_null) {
        obj["type"] = json!("Opaque");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn secret_string_data() {
        let mut s = json!({"stringData": {"a": "hi"}, "data": {"b": "eA=="}});
        normalize_secret(&mut s);
        assert_eq!(
            s,
            json!({"data": {"a": "aGk=", "b": "eA=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn uids_are_distinct() {
        assert_ne!(uid(1, 7), uid(2, 7));
        assert_eq!(uid(1, 7).len(), 36);
    }
}
