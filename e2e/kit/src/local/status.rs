//! A read-only view of the controller's `GET /v1/status`, held as JSON and
//! read defensively: a missing field is `None`, never a panic, so a test
//! fails on what it asserts rather than on a parse error, and the whole
//! document is at hand for its message.

use serde_json::Value;
use std::fmt;

/// One `/v1/status` document.
#[derive(Clone, PartialEq)]
pub struct Status(pub Value);

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Pretty JSON: it goes into assertion messages.
        let text = serde_json::to_string_pretty(&self.0).unwrap_or_default();
        f.write_str(&text)
    }
}

impl Status {
    /// The publication of source `namespace/name`.
    pub fn publication(&self, source: &str) -> Option<&Value> {
        self.0["publications"]
            .as_array()?
            .iter()
            .find(|p| p["source"].as_str() == Some(source))
    }

    /// A publication's rollout state: `Converged`, `Progressing`, `NoPods`.
    pub fn state(&self, source: &str) -> Option<&str> {
        self.publication(source)?["state"].as_str()
    }

    /// The SHA-256 (hex) published for `source`.
    pub fn sha256(&self, source: &str) -> Option<&str> {
        self.publication(source)?["sha256"].as_str()
    }

    /// Why the last update of `source` was refused, if it was.
    pub fn kept(&self, source: &str) -> Option<&str> {
        self.publication(source)?["kept"].as_str()
    }

    /// One pod's state for `source`: `Verified`, `Stale`, `Missing`, `Unknown`.
    pub fn pod_state(&self, source: &str, pod: &str) -> Option<&str> {
        self.publication(source)?["pods"][pod]["state"].as_str()
    }

    /// True when `source` is Converged on `sha256` with every pod in `pods` Verified.
    pub fn converged_on(&self, source: &str, sha256: &str, pods: &[String]) -> bool {
        self.sha256(source) == Some(sha256)
            && self.state(source) == Some("Converged")
            && pods
                .iter()
                .all(|p| self.pod_state(source, p) == Some("Verified"))
    }

    /// The refusals, as `(subject, reason, message)`.
    pub fn refusals(&self) -> Vec<(String, String, String)> {
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        self.0["refusals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| (text(r, "subject"), text(r, "reason"), text(r, "message")))
            .collect()
    }

    /// The pod entry named `pod` in the top-level `pods` list.
    pub fn pod(&self, pod: &str) -> Option<&Value> {
        self.0["pods"]
            .as_array()?
            .iter()
            .find(|p| p["name"].as_str() == Some(pod))
    }
}
