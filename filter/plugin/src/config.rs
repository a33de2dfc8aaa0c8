//! The plugin configuration (the WasmPlugin's `pluginConfig`), parsed and
//! checked once in `on_configure`. Its JSON shape and defaults are
//! certsync-contract's [`plugin_config::PluginConfig`], shared with what
//! renders it; the checks that a well-formed document also makes sense are
//! here, so that the error names the field.

use certsync_contract::plugin_config::{
    self, DEFAULT_ADMIN_AUTHORITY, DEFAULT_HEARTBEAT_MS, DEFAULT_INTERVAL_MS,
    DEFAULT_MAX_BACKOFF_MS, DEFAULT_RESYNC_MS, DEFAULT_TIMEOUT_MS, MIN_INTERVAL_MS,
};
use certsync_contract::wire::{ADMIN_CLUSTER, REPORT_PATH};
use std::time::Duration;
use thiserror::Error;

/// Validated plugin configuration, with every default applied.
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
    /// (all when empty); `default` and `ROOTCA` as prefixes select exactly
    /// the mesh identity (certsync-contract's `PluginConfig` says why).
    pub resource_prefixes: Vec<String>,
    /// Overrides for the pod identity; by default read from Envoy's node metadata.
    pub pod_name: Option<String>,
    pub pod_namespace: Option<String>,
}

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
    /// The value is not quoted: a misplaced report token must not reach
    /// the log (found by the `plugin_config` fuzz target).
    #[error("`report_path` must start with '/' (a value of {len} bytes does not)")]
    RelativePath { len: usize },
}

impl PluginConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ConfigError::Empty);
        }
        // serde's message names the field and position, never a token value.
        let raw: plugin_config::PluginConfig = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::Json(redact_token(&e.to_string())))?;
        let admin_cluster = raw.admin_cluster.unwrap_or_else(|| ADMIN_CLUSTER.into());
        let admin_authority = raw
            .admin_authority
            .unwrap_or_else(|| DEFAULT_ADMIN_AUTHORITY.into());
        let report_path = raw.report_path.unwrap_or_else(|| REPORT_PATH.into());
        let interval_ms = raw.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
        let heartbeat_ms = raw.heartbeat_ms.unwrap_or(DEFAULT_HEARTBEAT_MS);
        let resync_ms = raw.resync_ms.unwrap_or(DEFAULT_RESYNC_MS);
        let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        let max_backoff_ms = raw.max_backoff_ms.unwrap_or(DEFAULT_MAX_BACKOFF_MS);
        for (field, value) in [
            ("admin_cluster", &admin_cluster),
            ("report_cluster", &raw.report_cluster),
            ("admin_authority", &admin_authority),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::EmptyField { field });
            }
        }
        if !report_path.starts_with('/') {
            return Err(ConfigError::RelativePath {
                len: report_path.len(),
            });
        }
        if interval_ms < MIN_INTERVAL_MS {
            return Err(ConfigError::IntervalTooShort(interval_ms));
        }
        for (field, value) in [("heartbeat_ms", heartbeat_ms), ("resync_ms", resync_ms)] {
            if value < interval_ms {
                return Err(ConfigError::BelowInterval {
                    field,
                    value,
                    interval: interval_ms,
                });
            }
        }
        for (field, value) in [
            ("timeout_ms", timeout_ms),
            ("max_backoff_ms", max_backoff_ms),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        Ok(PluginConfig {
            report_authority: raw
                .report_authority
                .unwrap_or_else(|| raw.report_cluster.clone()),
            admin_cluster,
            admin_authority,
            report_cluster: raw.report_cluster,
            report_path,
            interval: Duration::from_millis(interval_ms),
            heartbeat: Duration::from_millis(heartbeat_ms),
            resync: Duration::from_millis(resync_ms),
            timeout: Duration::from_millis(timeout_ms),
            max_backoff: Duration::from_millis(max_backoff_ms.max(interval_ms)),
            report_token: raw.report_token.filter(|t| !t.is_empty()),
            resource_prefixes: raw.resource_prefixes.unwrap_or_default(),
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
        // All, the mesh identity included.
        assert!(c.reports_resource("default") && c.reports_resource("ROOTCA"));
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
    fn null_is_refused_where_a_default_applies_and_unset_elsewhere() {
        let err = PluginConfig::parse(br#"{"report_cluster":"c","interval_ms":null}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("null"), "{err}");
        let c = PluginConfig::parse(br#"{"report_cluster":"c","report_token":null}"#).unwrap();
        assert_eq!(c.report_token, None);
    }

    #[test]
    fn a_token_in_the_wrong_place_is_not_echoed() {
        let err = PluginConfig::parse(br#"{"report_cluster":"c","interval_ms":"s3cr3t-token"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        // Found by the `plugin_config` fuzz target: fields given by position
        // (a JSON array) put a string where `report_path` is read.
        let err = PluginConfig::parse(br#"["c","a","b","s3cr3t-token"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("report_path") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    #[test]
    fn prefixes_limit_reported_resources() {
        let c = PluginConfig::parse(
            br#"{"report_cluster":"c","resource_prefixes":["kubernetes://","file-cert:"]}"#,
        )
        .unwrap();
        assert!(c.reports_resource("kubernetes://shop.tls"));
        assert!(c.reports_resource("file-cert:/a.crt~/a.key"));
        // Custom prefixes that leave out the mesh identity leave it out.
        assert!(!c.reports_resource("default"));
        assert!(!c.reports_resource("ROOTCA"));

        let c = PluginConfig::parse(
            br#"{"report_cluster":"c","resource_prefixes":["kubernetes://","default","ROOTCA"]}"#,
        )
        .unwrap();
        for name in ["default", "ROOTCA", "kubernetes://shop.tls"] {
            assert!(c.reports_resource(name), "{name}");
        }
        assert!(!c.reports_resource("file-root:/etc/certs/ca.crt"));
    }
}
