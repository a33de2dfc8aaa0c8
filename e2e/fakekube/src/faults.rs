//! Fault injection: make chosen requests fail or slow down.
//!
//! A fault is a matcher (verb, resource, namespace, name, subresource; each
//! optional), an action (an error status, possibly with `Retry-After`, added
//! latency, or another client's write landing just before the request), how
//! many matching requests pass untouched first (`skip`), and how many it
//! applies to (unlimited if unset). Faults are checked in the order they
//! were added: every matching latency fault adds its delay and every
//! matching write is stored, then the first matching status fault answers
//! the request. The same types travel as JSON over
//! `/__fake/faults` for the standalone server.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{reason_for, ApiError};
use crate::record::Verb;
use crate::registry::ResourceType;

/// Which requests a fault applies to; unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FaultMatch {
    /// API verb.
    pub verb: Option<Verb>,
    /// Resource as `plural` or `plural.group`.
    pub resource: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Object name.
    pub name: Option<String>,
    /// Subresource (`status`, `eviction`).
    pub subresource: Option<String>,
}

impl FaultMatch {
    /// Matches every API request (not discovery unless the verb says so).
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches one object of a resource.
    pub fn object(resource: &str, namespace: &str, name: &str) -> Self {
        Self::any()
            .resource(resource)
            .namespace(namespace)
            .name(name)
    }

    /// Restricts to a verb.
    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    /// Restricts to a resource (`secrets`, `leases.coordination.k8s.io`).
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.to_string());
        self
    }

    /// Restricts to a namespace.
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_string());
        self
    }

    /// Restricts to an object name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    /// Restricts to a subresource.
    pub fn subresource(mut self, subresource: &str) -> Self {
        self.subresource = Some(subresource.to_string());
        self
    }

    fn matches(&self, req: &RequestInfo<'_>) -> bool {
        self.verb.is_none_or(|v| v == req.verb)
            && self
                .resource
                .as_deref()
                .is_none_or(|r| req.rt.is_some_and(|rt| rt.is_named(r)))
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| req.namespace == Some(n))
            && self.name.as_deref().is_none_or(|n| req.name == Some(n))
            && self
                .subresource
                .as_deref()
                .is_none_or(|s| req.subresource == Some(s))
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FaultAction {
    /// Answer with this HTTP status and a `Status` body.
    #[serde(rename_all = "camelCase")]
    Status {
        /// HTTP code (409, 429, 500, 503, ...).
        code: u16,
        /// Seconds for a `Retry-After` header.
        #[serde(default)]
        retry_after: Option<u64>,
        /// Status reason; defaults to the conventional one for the code.
        #[serde(default)]
        reason: Option<String>,
        /// Status message.
        #[serde(default)]
        message: Option<String>,
    },
    /// Delay the request, then handle it normally.
    Latency {
        /// Delay in milliseconds.
        millis: u64,
    },
    /// Store `object` as another client's write would (new resourceVersion,
    /// watch event), then handle the request normally: a change that lands
    /// between two requests of the client under test.
    Write {
        /// The whole object, as for `/__fake/objects`.
        object: serde_json::Value,
    },
}

/// A fault: matcher, action, and how many times it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Which requests.
    #[serde(rename = "match", default)]
    pub matcher: FaultMatch,
    /// What happens to them.
    pub action: FaultAction,
    /// How many matching requests it applies to; unlimited if unset.
    #[serde(default)]
    pub times: Option<u32>,
    /// How many matching requests pass untouched before it applies.
    #[serde(default)]
    pub skip: u32,
}

impl Fault {
    /// Fail matching requests with `code`.
    pub fn status(code: u16, matcher: FaultMatch) -> Self {
        Self {
            matcher,
            action: FaultAction::Status {
                code,
                retry_after: None,
                reason: None,
                message: None,
            },
            times: None,
            skip: 0,
        }
    }

    /// 429 TooManyRequests with `Retry-After: secs`.
    pub fn throttle(retry_after_secs: u64, matcher: FaultMatch) -> Self {
        Self {
            matcher,
            action: FaultAction::Status {
                code: 429,
                retry_after: Some(retry_after_secs),
                reason: None,
                message: None,
            },
            times: None,
            skip: 0,
        }
    }

    /// Delay matching requests.
    pub fn latency(delay: Duration, matcher: FaultMatch) -> Self {
        Self {
            matcher,
            action: FaultAction::Latency {
                millis: delay.as_millis().min(u128::from(u64::MAX)) as u64,
            },
            times: None,
            skip: 0,
        }
    }

    /// Stores `object` just before each matching request is handled.
    pub fn write(object: serde_json::Value, matcher: FaultMatch) -> Self {
        Self {
            matcher,
            action: FaultAction::Write { object },
            times: None,
            skip: 0,
        }
    }

    /// Lets the next `n` matching requests through untouched first.
    pub fn skip(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Applies to the next `n` matching requests only.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Sets the Status message.
    pub fn message(mut self, text: &str) -> Self {
        if let FaultAction::Status { message, .. } = &mut self.action {
            *message = Some(text.to_string());
        }
        self
    }

    fn error(&self, req: &RequestInfo<'_>) -> Option<ApiError> {
        let FaultAction::Status {
            code,
            retry_after,
            reason,
            message,
        } = &self.action
        else {
            return None;
        };
        let default_message = match code {
            429 if req.subresource == Some("eviction") => {
                "Cannot evict pod as it would violate the pod's disruption budget.".to_string()
            }
            429 => "the server has received too many requests and has asked us to try again later"
                .to_string(),
            409 => {
                let (plural, group) = req
                    .rt
                    .map_or(("", ""), |rt| (rt.plural.as_str(), rt.group.as_str()));
                ApiError::conflict(plural, group, req.name.unwrap_or("")).message
            }
            c => format!("injected fault ({c} {})", reason_for(*c)),
        };
        let mut e = ApiError::new(*code, message.clone().unwrap_or(default_message));
        if let Some(r) = reason {
            e.reason = r.clone();
        }
        if let (Some(rt), Some(name)) = (req.rt, req.name) {
            e = e.with_details(&rt.plural, &rt.group, name);
        }
        e.retry_after = *retry_after;
        Some(e)
    }
}

/// What faults match on.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub verb: Verb,
    pub rt: Option<&'a ResourceType>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
}

/// What the matching faults do to one request.
#[derive(Debug, Default)]
pub struct Effects {
    /// Added latency.
    pub delay: Duration,
    /// Objects to store before the request is handled.
    pub writes: Vec<serde_json::Value>,
    /// The error to answer with instead of handling it.
    pub error: Option<ApiError>,
}

/// The active faults.
#[derive(Debug, Default)]
pub struct FaultSet {
    faults: Vec<(u64, Fault)>,
    next_id: u64,
}

impl FaultSet {
    /// Adds a fault, returning its id.
    pub fn add(&mut self, fault: Fault) -> u64 {
        self.next_id += 1;
        self.faults.push((self.next_id, fault));
        self.next_id
    }

    /// Removes one fault.
    pub fn remove(&mut self, id: u64) {
        self.faults.retain(|(i, _)| *i != id);
    }

    /// Removes all faults.
    pub fn clear(&mut self) {
        self.faults.clear();
    }

    /// Consumes the faults matching a request.
    pub fn take(&mut self, req: &RequestInfo<'_>) -> Effects {
        let mut out = Effects::default();
        for (_, f) in self.faults.iter_mut() {
            if f.times == Some(0) || !f.matcher.matches(req) {
                continue;
            }
            if f.skip > 0 {
                f.skip -= 1;
                continue;
            }
            match &f.action {
                FaultAction::Latency { millis } => out.delay += Duration::from_millis(*millis),
                FaultAction::Write { object } => out.writes.push(object.clone()),
                FaultAction::Status { .. } => {
                    if out.error.is_some() {
                        continue;
                    }
                    out.error = f.error(req);
                }
            }
            if let Some(n) = f.times.as_mut() {
                *n -= 1;
            }
        }
        self.faults.retain(|(_, f)| f.times != Some(0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_hits_only_its_object_once() {
        let secrets = ResourceType::new("", "v1", "Secret", "secrets");
        let mut set = FaultSet::default();
        set.add(
            Fault::status(
                500,
                FaultMatch::object("secrets", "ns", "a").verb(Verb::Update),
            )
            .times(1),
        );
        let req = |name| RequestInfo {
            verb: Verb::Update,
            rt: Some(&secrets),
            namespace: Some("ns"),
            name: Some(name),
            subresource: None,
        };
        assert!(set.take(&req("b")).error.is_none());
        assert_eq!(set.take(&req("a")).error.map(|e| e.code), Some(500));
        assert!(set.take(&req("a")).error.is_none());
    }

    #[test]
    fn skip_lets_requests_through_before_a_write_lands() {
        let secrets = ResourceType::new("", "v1", "Secret", "secrets");
        let mut set = FaultSet::default();
        let object = serde_json::json!({"apiVersion": "v1", "kind": "Secret"});
        set.add(
            Fault::write(object.clone(), FaultMatch::object("secrets", "ns", "a"))
                .skip(1)
                .times(1),
        );
        let get = RequestInfo {
            verb: Verb::Get,
            rt: Some(&secrets),
            namespace: Some("ns"),
            name: Some("a"),
            subresource: None,
        };
        assert!(set.take(&get).writes.is_empty(), "the first GET passes");
        assert_eq!(set.take(&get).writes, [object]);
        assert!(set.take(&get).writes.is_empty(), "once");
        let json: Fault = serde_json::from_str(
            r#"{"match": {"name": "a"}, "action": {"write": {"object": {}}}, "skip": 2}"#,
        )
        .expect("parses");
        assert_eq!(json.skip, 2);
    }

    #[test]
    fn fault_json_shape() {
        let f: Fault = serde_json::from_str(
            r#"{"match": {"verb": "update", "resource": "secrets"}, "action": {"status": {"code": 429, "retryAfter": 2}}, "times": 3}"#,
        )
        .expect("parses");
        assert_eq!(
            f,
            Fault::throttle(2, FaultMatch::any().verb(Verb::Update).resource("secrets")).times(3)
        );
        let l: Fault =
            serde_json::from_str(r#"{"action": {"latency": {"millis": 50}}}"#).expect("parses");
        assert_eq!(
            l,
            Fault::latency(Duration::from_millis(50), FaultMatch::any())
        );
    }
}
