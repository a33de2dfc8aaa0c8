//! The checked-in YAML files (the CRD, the gateway manifest) as the tests
//! that regenerate them write them: one document per value, keys sorted at
//! every level, so a file does not depend on serde_json's `preserve_order`
//! feature (which workspace feature unification may turn on).

use anyhow::Result;
use serde_json::Value;

/// Each value as a YAML document starting with `---`.
pub fn documents(values: &[Value]) -> Result<String> {
    let mut out = String::new();
    for value in values {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&sorted(value))?);
    }
    Ok(out)
}

/// `value` with object keys sorted at every level.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), sorted(value)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        scalar => scalar.clone(),
    }
}
