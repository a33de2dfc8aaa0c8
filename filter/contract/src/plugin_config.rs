//! The filter's plugin configuration as JSON: what a WasmPlugin's
//! `pluginConfig` holds (Istio hands it to the filter serialized as JSON),
//! what the test harness writes into its Envoy bootstraps, and what the
//! filter parses. One type, so a renamed or added field cannot reach one
//! side only.
//!
//! [`PluginConfig`] is the document as written: every field but
//! `report_cluster` may be left out, and the filter then applies the
//! default named on the field. What the filter requires beyond the shape
//! (a minimum interval, a heartbeat no shorter than it, ...) it checks when
//! it parses, naming the field.

use serde::{Deserialize, Deserializer, Serialize};

/// `admin_authority` when left out: any value reaches Envoy's admin API.
pub const DEFAULT_ADMIN_AUTHORITY: &str = "envoy-admin";
/// `interval_ms` when left out: a rotation is seen within a second.
pub const DEFAULT_INTERVAL_MS: u64 = 1_000;
/// `heartbeat_ms` when left out.
pub const DEFAULT_HEARTBEAT_MS: u64 = 10_000;
/// `resync_ms` when left out.
pub const DEFAULT_RESYNC_MS: u64 = 60_000;
/// `timeout_ms` when left out.
pub const DEFAULT_TIMEOUT_MS: u64 = 2_000;
/// `max_backoff_ms` when left out.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 30_000;
/// Shortest `interval_ms` the filter accepts: below it the admin API cost
/// dominates.
pub const MIN_INTERVAL_MS: u64 = 100;

/// The plugin configuration document. Unknown fields are refused (a typo
/// must not silently fall back to a default); a field left out is `None`
/// and serializes as absent. Fields the filter defaults refuse an explicit
/// `null`, as they always have; the optional identities and the token
/// accept it as "not set".
// Field order is the order serde lists fields in the filter's error for an
// unknown field; keep it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Envoy cluster that reaches this Envoy's own admin API. Default
    /// [`crate::wire::ADMIN_CLUSTER`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub admin_cluster: Option<String>,
    /// `:authority` sent to the admin API. Default [`DEFAULT_ADMIN_AUTHORITY`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub admin_authority: Option<String>,
    /// Envoy cluster that reaches the cert-sync controller. Required.
    pub report_cluster: String,
    /// Path reports are posted to. Default [`crate::report::REPORT_PATH`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub report_path: Option<String>,
    /// `:authority` of reports. Default: `report_cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_authority: Option<String>,
    /// How often the loaded certificates are polled. Default
    /// [`DEFAULT_INTERVAL_MS`], at least [`MIN_INTERVAL_MS`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub interval_ms: Option<u64>,
    /// Longest time between two reports when nothing changes. Default
    /// [`DEFAULT_HEARTBEAT_MS`], at least `interval_ms`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub heartbeat_ms: Option<u64>,
    /// How often the secret index and `/certs` (what every TLS context
    /// serves) are re-read although no counter moved: secrets added or
    /// removed, and changes Envoy signals nowhere.
    /// Default [`DEFAULT_RESYNC_MS`], at least `interval_ms`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub resync_ms: Option<u64>,
    /// Timeout of every HTTP call the filter makes. Default
    /// [`DEFAULT_TIMEOUT_MS`], not 0.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub timeout_ms: Option<u64>,
    /// Cap of the exponential backoff after failures. Default
    /// [`DEFAULT_MAX_BACKOFF_MS`], not 0.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub max_backoff_ms: Option<u64>,
    /// Bearer token presented to the controller. Default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_token: Option<String>,
    /// Only SDS resources whose names start with one of these are reported
    /// (see [`crate::sds`] for the names). Default: all. Plain prefixes:
    /// `default` and `ROOTCA` select the pod's mesh identity and nothing
    /// else Istio names, since every other resource name Istio gives a
    /// gateway begins with a scheme (`kubernetes://`, `kubernetes-gateway://`,
    /// `file-cert:`, `file-root:`). Those two are reported with the
    /// fingerprints of their whole chain or bundle (`LoadedCertificate::chain_sha256`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "not_null"
    )]
    pub resource_prefixes: Option<Vec<String>>,
    /// The pod's name in reports. Default: Envoy's node metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's namespace in reports. Default: Envoy's node metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
}

impl PluginConfig {
    /// Only the required field: everything else at the filter's defaults.
    pub fn new(report_cluster: impl Into<String>) -> Self {
        PluginConfig {
            admin_cluster: None,
            admin_authority: None,
            report_cluster: report_cluster.into(),
            report_path: None,
            report_authority: None,
            interval_ms: None,
            heartbeat_ms: None,
            resync_ms: None,
            timeout_ms: None,
            max_backoff_ms: None,
            report_token: None,
            resource_prefixes: None,
            pod_name: None,
            pod_namespace: None,
        }
    }

    /// As a JSON value (object keys sorted), as a WasmPlugin or a bootstrap
    /// embeds it.
    pub fn to_json(&self) -> serde_json::Value {
        // A struct of strings, integers and lists always serializes.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A field that may be left out but, when present, must hold a value:
/// `null` is a type error naming what was expected, not "unset".
fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}
