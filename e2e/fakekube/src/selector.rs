//! Label and field selectors, parsed from the query string and matched
//! against stored JSON objects.
//!
//! Label selectors support the full set-based syntax the API server accepts
//! (`=`, `==`, `!=`, `in`, `notin`, exists, `!`exists). Field selectors
//! support `=`, `==`, `!=` on the labels a resource type accepts; anything
//! else is a 400, as on a real server.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::ApiError;
use crate::registry::ResourceType;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<LabelReq>,
}

impl LabelSelector {
    /// Selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Parses `app=x,tier!=db,env in (a,b),!legacy`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_label_term(term)?);
        }
        Ok(Self { reqs })
    }

    /// True if the object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            LabelReq::Eq(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEq(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.contains(x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_label_term(term: &str) -> Result<LabelReq, ApiError> {
    let bad = || ApiError::bad_request(format!("unable to parse requirement: {term:?}"));
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(valid_key(key.trim()).ok_or_else(bad)?));
    }
    if let Some((k, v)) = term.split_once("!=") {
        return Ok(LabelReq::NotEq(
            valid_key(k.trim()).ok_or_else(bad)?,
            v.trim().into(),
        ));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelReq::Eq(
            valid_key(k.trim()).ok_or_else(bad)?,
            v.trim().into(),
        ));
    }
    if let Some(open) = term.find('(') {
        let head = term[..open].trim();
        let body = term[open + 1..].strip_suffix(')').ok_or_else(bad)?;
        let values: BTreeSet<String> = body
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let (key, op) = head.rsplit_once(char::is_whitespace).ok_or_else(bad)?;
        let key = valid_key(key.trim()).ok_or_else(bad)?;
        return match op {
            "in" => Ok(LabelReq::In(key, values)),
            "notin" => Ok(LabelReq::NotIn(key, values)),
            _ => Err(bad()),
        };
    }
    Ok(LabelReq::Exists(valid_key(term).ok_or_else(bad)?))
}

fn valid_key(k: &str) -> Option<String> {
    let ok = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    ok.then(|| k.to_string())
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Parses `metadata.name=foo,type=kubernetes.io/tls`, refusing labels
    /// the resource type does not accept.
    pub fn parse(s: &str, rt: &ResourceType) -> Result<Self, ApiError> {
        let mut reqs = Vec::new();
        for term in s.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (label, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{term}'; can't understand '{term}'"
                )));
            };
            let label = label.trim();
            if !rt.accepts_field(label) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {label}"
                )));
            }
            reqs.push((label.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self { reqs })
    }

    /// True if every requirement holds; a missing field compares as "".
    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(label, equal, want)| {
            let mut cur = Some(obj);
            for part in label.split('.') {
                cur = cur.and_then(|v| v.get(part));
            }
            let got = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}, "type": "kubernetes.io/tls"})
    }

    #[test]
    fn label_operators() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        let m = |s: &str| LabelSelector::parse(s).map(|sel| sel.matches(&o));
        assert_eq!(m("app=web"), Ok(true));
        assert_eq!(m("app==web,tier=front"), Ok(true));
        assert_eq!(m("app!=web"), Ok(false));
        assert_eq!(m("app in (db, web)"), Ok(true));
        assert_eq!(m("app notin (db,web)"), Ok(false));
        assert_eq!(m("missing notin (x)"), Ok(true));
        assert_eq!(m("tier"), Ok(true));
        assert_eq!(m("!tier"), Ok(false));
        assert_eq!(m("!legacy,app in (web)"), Ok(true));
        assert_eq!(m(""), Ok(true));
        assert!(LabelSelector::parse("app in (x").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selectors() {
        let secrets = ResourceType::new("", "v1", "Secret", "secrets").with_fields(&["type"]);
        let o = obj(json!({}));
        let m = |s: &str| FieldSelector::parse(s, &secrets).map(|sel| sel.matches(&o));
        assert_eq!(m("type=kubernetes.io/tls"), Ok(true));
        assert_eq!(m("type!=kubernetes.io/tls"), Ok(false));
        assert_eq!(m("metadata.name=a,metadata.namespace=ns"), Ok(true));
        assert_eq!(m("metadata.name=b"), Ok(false));
        assert_eq!(m("spec.nodeName=x").map_err(|e| e.code), Err(400));
    }
}
