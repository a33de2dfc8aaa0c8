//! The plugin configuration (the WasmPlugin's `pluginConfig`), parsed and
//! checked once in `on_configure`.

use serde::Deserialize;
use std::time::Duration;
use thiserror::Error;

/// Validated plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Envoy cluster that reaches this Envoy's own admin API.
    pub admin_cluster: String,
    /// `:authority` sent to the admin API.
    pub admin_authority: String,
    /// Envoy cluster that reaches the cert-sync controller.
    pub report_cluster: String,
    pub report_path: String,
    pub report_authority: String,
    /// How often the loaded certificates are polled.
    pub interval: Duration,
    /// Longest time between two reports when nothing changes.
    pub heartbeat: Duration,
    /// How often the full secret index is re-read although the tripwire did
    /// not move (catches secrets added or removed without an update).
    pub resync: Duration,
    /// Timeout of every HTTP call the filter makes.
    pub timeout: Duration,
    /// Cap of the exponential backoff after failures.
    pub max_backoff: Duration,
    /// Bearer token presented to the controller, if any.
    pub report_token: Option<String>,
    /// Only SDS resources whose names start with one of these are reported
    /// (all when empty).
    pub resource_prefixes: Vec<String>,
    /// Overrides for the pod identity; by default read from Envoy's node metadata.
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

/// The JSON shape, with every optional field optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default = "default_admin_cluster")]
    admin_cluster: String,
    #[serde(default = "default_admin_authority")]
    admin_authority: String,
    report_cluster: String,
    #[serde(default = "default_report_path")]
    report_path: String,
    report_authority: Option<String>,
    #[serde(default = "default_interval_ms")]
    interval_ms: u64,
    #[serde(default = "default_heartbeat_ms")]
    heartbeat_ms: u64,
    #[serde(default = "default_resync_ms")]
    resync_ms: u64,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_max_backoff_ms")]
    max_backoff_ms: u64,
    report_token: Option<String>,
    #[serde(default)]
    resource_prefixes: Vec<String>,
    pod_name: Option<String>,
    pod_namespace: Option<String>,
}

fn default_admin_cluster() -> String {
    "cert-sync-admin".into()
}
fn default_admin_authority() -> String {
    "envoy-admin".into()
}
fn default_report_path() -> String {
    certsync_contract::report::REPORT_PATH.into()
}
fn default_interval_ms() -> u64 {
    1_000
}
fn default_heartbeat_ms() -> u64 {
    10_000
}
fn default_resync_ms() -> u64 {
    60_000
}
fn default_timeout_ms() -> u64 {
    2_000
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

/// Shortest accepted poll interval: below it the admin API cost dominates.
pub const MIN_INTERVAL_MS: u64 = 100;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("plugin configuration is empty: `report_cluster` is required")]
    Empty,
    #[error("plugin configuration is not valid JSON for cert-sync: {0}")]
    Json(String),
    #[error("`{field}` must not be empty")]
    EmptyField { field: &'static str },
    #[error("`interval_ms` is {0}, below the minimum of {MIN_INTERVAL_MS}")]
    IntervalTooShort(u64),
    #[error("`{field}` ({value}) must be at least `interval_ms` ({interval})")]
    BelowInterval {
        field: &'static str,
        value: u64,
        interval: u64,
    },
    #[error("`{field}` must be greater than zero")]
    Zero { field: &'static str },
    #[error("`report_path` must start with '/', got {0:?}")]
    RelativePath(String),
}

impl PluginConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::Empty);
        }
        // serde's message names the field and position, never a token value.
        let raw: RawConfig = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::Json(redact_token(&e.to_string())))?;
        for (field, value) in [
            ("admin_cluster", &raw.admin_cluster),
            ("report_cluster", &raw.report_cluster),
            ("admin_authority", &raw.admin_authority),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::EmptyField { field });
            }
        }
        if !raw.report_path.starts_with('/') {
            return Err(ConfigError::RelativePath(raw.report_path));
        }
        if raw.interval_ms < MIN_INTERVAL_MS {
            return Err(ConfigError::IntervalTooShort(raw.interval_ms));
        }
        for (field, value) in [
            ("heartbeat_ms", raw.heartbeat_ms),
            ("resync_ms", raw.resync_ms),
        ] {
            if value < raw.interval_ms {
                return Err(ConfigError::BelowInterval {
                    field,
                    value,
                    interval: raw.interval_ms,
                });
            }
        }
        for (field, value) in [
            ("timeout_ms", raw.timeout_ms),
            ("max_backoff_ms", raw.max_backoff_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        Ok(PluginConfig {
            report_authority: raw
                .report_authority
                .unwrap_or_else(|| raw.report_cluster.clone()),
            admin_cluster: raw.admin_cluster,
            admin_authority: raw.admin_authority,
            report_cluster: raw.report_cluster,
            report_path: raw.report_path,
            interval: Duration::from_millis(raw.interval_ms),
            heartbeat: Duration::from_millis(raw.heartbeat_ms),
            resync: Duration::from_millis(raw.resync_ms),
            timeout: Duration::from_millis(raw.timeout_ms),
            max_backoff: Duration::from_millis(raw.max_backoff_ms.max(raw.interval_ms)),
            report_token: raw.report_token.filter(|t| !t.is_empty()),
            resource_prefixes: raw.resource_prefixes,
            pod_name: raw.pod_name.filter(|s| !s.is_empty()),
            pod_namespace: raw.pod_namespace.filter(|s| !s.is_empty()),
        })
    }

    /// Whether an SDS resource is in scope for reporting.
    pub fn reports_resource(&self, name: &str) -> bool {
        self.resource_prefixes.is_empty()
            || self
                .resource_prefixes
                .iter()
                .any(|p| name.starts_with(p.as_str()))
    }
}

/// serde_json quotes an offending string value in some messages ("invalid
/// type: string \"...\""); a misplaced token must not reach the log.
fn redact_token(message: &str) -> String {
    match (message.find('"'), message.rfind('"')) {
        (Some(start), Some(end)) if end > start => {
            format!("{}\"…\"{}", &message[..start], &message[end + 1..])
        }
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = PluginConfig::parse(br#"{"report_cluster":"cert-sync"}"#).unwrap();
        assert_eq!(c.admin_cluster, "cert-sync-admin");
        assert_eq!(c.report_path, "/v1/reports");
        assert_eq!(c.report_authority, "cert-sync");
        assert_eq!(c.interval, Duration::from_secs(1));
        assert_eq!(c.heartbeat, Duration::from_secs(10));
        assert_eq!(c.resync, Duration::from_secs(60));
        assert!(c.reports_resource("anything"));
    }

    #[test]
    fn each_invalid_config_is_refused_with_a_reason_naming_the_field() {
        let cases: [(&[u8], &str); 8] = [
            (b"", "report_cluster"),
            (b"{", "not valid JSON"),
            (br#"{"admin_cluster":"x"}"#, "report_cluster"),
            (br#"{"report_cluster":""}"#, "report_cluster"),
            (br#"{"report_cluster":"c","interval_ms":5}"#, "interval_ms"),
            (
                br#"{"report_cluster":"c","interval_ms":2000,"heartbeat_ms":1000}"#,
                "heartbeat_ms",
            ),
            (
                br#"{"report_cluster":"c","report_path":"v1"}"#,
                "report_path",
            ),
            (br#"{"report_cluster":"c","intervl_ms":1000}"#, "intervl_ms"),
        ];
        for (input, needle) in cases {
            let err = PluginConfig::parse(input).unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn a_token_in_the_wrong_place_is_not_echoed() {
        let err = PluginConfig::parse(br#"{"report_cluster":"c","interval_ms":"s3cr3t-token"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn prefixes_limit_reported_resources() {
        let c = PluginConfig::parse(
            br#"{"report_cluster":"c","resource_prefixes":["kubernetes://","file-cert:"]}"#,
        )
        .unwrap();
        assert!(c.reports_resource("kubernetes://shop.tls"));
        assert!(c.reports_resource("file-cert:/a.crt~/a.key"));
        assert!(!c.reports_resource("default"));
    }
}
