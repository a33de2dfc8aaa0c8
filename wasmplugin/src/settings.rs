//! What can vary between installations, with the defaults that
//! `manifests/gateway.yaml` is rendered from, and the checks that keep a bad
//! value from ever reaching a cluster.

use crate::rules::{is_dns_label, is_dns_name, is_label_key, is_label_name, is_sha256_hex};
use certsync_contract::plugin_config::{
    DEFAULT_HEARTBEAT_MS, DEFAULT_INTERVAL_MS, DEFAULT_MAX_BACKOFF_MS, DEFAULT_TIMEOUT_MS,
    MIN_INTERVAL_MS,
};
use certsync_contract::sds;
use certsync_contract::wire::{module_path, MODULE_PATH};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use thiserror::Error;

/// Ports the Istio proxy itself uses in every pod (Istio's "Ports used by
/// Istio"); a status listener there would clash with Envoy's own.
const ISTIO_PROXY_PORTS: [u16; 10] = [
    15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090,
];
/// Longest connect timeout: these are in-pod or in-cluster hops.
const MAX_CONNECT_TIMEOUT_MS: u64 = 60_000;

/// Everything the three objects depend on. [`Default`] is the documented
/// default install; every field says its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Namespace of all three objects: the gateway's. Default `istio-system`.
    /// In Istio's root namespace the WasmPlugin and EnvoyFilter apply to
    /// matching pods in every namespace; elsewhere only in their own.
    pub namespace: String,
    /// Labels selecting the gateway pods, used by all three objects.
    /// Default `istio: ingressgateway`. Never empty: an empty selector in the
    /// root namespace would load the filter into every proxy of the mesh.
    pub selector: BTreeMap<String, String>,
    /// Port of the status listener the filter lives on. Default 15099: above
    /// 1024 (Istio skips privileged ports on unprivileged gateways), next to
    /// but outside Istio's own 150xx ports, and not exposed by the gateway
    /// Service. Must not be a port the gateway Service maps to another
    /// targetPort, since Istio matches the WasmPlugin on the listener port.
    pub status_port: u16,
    /// Address the status listener binds. Default `Some("127.0.0.1")`: the
    /// listener only exists for the filter, so nothing outside the pod needs
    /// to reach it. `None` binds Istio's wildcard (pod IP).
    pub status_bind: Option<String>,
    /// The controller's Service host, which the filter reports to and (by
    /// default) loads the module from. Default
    /// `cert-sync.istio-system.svc.cluster.local`.
    pub controller_host: String,
    /// The controller's Service port. Default 8080.
    pub controller_port: u16,
    /// Envoy's admin address inside istio-proxy. Default `127.0.0.1`
    /// (`::1` on IPv6-only clusters).
    pub admin_address: String,
    /// Envoy's admin port inside istio-proxy. Default 15000.
    pub admin_port: u16,
    /// `connect_timeout` of both clusters, in milliseconds. Default 1000:
    /// both are in-pod or in-cluster hops, and the filter retries with backoff.
    pub connect_timeout_ms: u64,
    /// Where Istio fetches the module. Default: served by the controller,
    /// sha256 not pinned (see [`ModuleSource::Controller`]).
    pub module: ModuleSource,
    /// The filter's own settings, rendered into the WasmPlugin's `pluginConfig`.
    pub plugin: PluginSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            namespace: "istio-system".into(),
            selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            status_port: 15099,
            status_bind: Some("127.0.0.1".into()),
            controller_host: "cert-sync.istio-system.svc.cluster.local".into(),
            controller_port: 8080,
            admin_address: "127.0.0.1".into(),
            admin_port: 15000,
            connect_timeout_ms: 1_000,
            module: ModuleSource::Controller { sha256: None },
            plugin: PluginSettings::default(),
        }
    }
}

/// Where the WasmPlugin's `url` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleSource {
    /// Served by the controller itself, so no registry is needed. The
    /// controller always sets `sha256` (lowercase hex of the module it
    /// serves), and the URL is then content-addressed:
    /// `http://<controller_host>:<controller_port>/v1/filter/<sha256>.wasm`.
    /// `None` is for the static manifest, which cannot know the
    /// controller's build: `/v1/filter.wasm`, fetched with `Always`.
    Controller { sha256: Option<String> },
    /// Any URL Istio can fetch: `oci://`, `https://`, `http://` or `file://`.
    /// `sha256` is required for `http(s)://` (nothing else vouches for the
    /// bytes) and optional otherwise (an OCI reference may pin a digest).
    Url { url: String, sha256: Option<String> },
}

/// The filter's behaviour; field names and defaults follow the filter's
/// plugin configuration (`certsync_contract::plugin_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// How often the filter polls Envoy's loaded certificates. Default 1000
    /// ms: a rotation is seen within a second. At least 100.
    pub interval_ms: u64,
    /// Longest time between two reports when nothing changes. Default
    /// 10000 ms; the controller's "Unknown" window must be longer.
    pub heartbeat_ms: u64,
    /// Timeout of each admin API call and report. Default 2000 ms.
    pub timeout_ms: u64,
    /// Cap of the filter's retry backoff. Default 30000 ms.
    pub max_backoff_ms: u64,
    /// Bearer token the filter presents to the controller. Default none.
    /// Anyone who can read the WasmPlugin can read it. Checked when built
    /// ([`ReportToken::new`]).
    pub report_token: Option<ReportToken>,
    /// Only SDS resources starting with one of these are reported (all when
    /// empty). Default: Gateway credentials (`kubernetes://`), Gateway file
    /// certificates (`file-cert:`, `file-root:`), and the pod's own mesh
    /// identity and root (`default`, `ROOTCA`), so mesh-CA rotation shows too:
    /// those two are reported with the SHA-256 of every certificate of their
    /// chain or bundle (which CA issued the workload certificate, which roots
    /// the pod trusts). Prefixes, yet `default` and `ROOTCA` select only
    /// those two resources: every other name Istio gives an SDS resource
    /// begins with a scheme (`kubernetes://`, `file-cert:`, ...).
    pub resource_prefixes: Vec<String>,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            interval_ms: DEFAULT_INTERVAL_MS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
            report_token: None,
            resource_prefixes: [
                sds::KUBERNETES_PREFIX,
                // Gateway API listeners' certificates (`kubernetes://`
                // does not cover them: the two differ after `kubernetes`).
                sds::KUBERNETES_GATEWAY_PREFIX,
                sds::FILE_CERT_PREFIX,
                sds::FILE_ROOT_PREFIX,
                sds::WORKLOAD_CERT,
                sds::ROOT_CA,
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// A report bearer token; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ReportToken(String);

impl ReportToken {
    /// Visible ASCII only (it goes into an `Authorization` header).
    pub fn new(token: impl Into<String>) -> Result<Self, SettingsError> {
        let token = token.into();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SettingsError::InvalidToken);
        }
        Ok(ReportToken(token))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ReportToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReportToken(…)")
    }
}

/// Why settings cannot be rendered. Messages name the field and never echo
/// a token.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("`namespace` {0:?} is not a Kubernetes namespace name")]
    InvalidNamespace(String),
    #[error("`selector` is empty: it would match every proxy, not just the gateways")]
    EmptySelector,
    #[error("`selector` label {key:?}: {value:?} is not a valid Kubernetes label")]
    InvalidSelector { key: String, value: String },
    #[error("`status_port` {port}: {reason}")]
    StatusPort { port: u16, reason: &'static str },
    #[error("`{field}` {value:?} is not an IP address")]
    InvalidAddress { field: &'static str, value: String },
    #[error("`controller_host` {0:?} is not a DNS name or IP address")]
    InvalidHost(String),
    #[error("`{0}` must not be 0")]
    ZeroPort(&'static str),
    #[error("`connect_timeout_ms` {0} is outside 1..={MAX_CONNECT_TIMEOUT_MS}")]
    ConnectTimeout(u64),
    #[error("module `sha256` must be 64 lowercase hex digits")]
    InvalidSha256,
    #[error("module url {0:?} must start with oci://, https://, http:// or file://")]
    InvalidModuleUrl(String),
    #[error("module url {0:?} is fetched over HTTP(S): a `sha256` is required")]
    MissingSha256(String),
    #[error("`plugin.interval_ms` {0} is below the filter's minimum of {MIN_INTERVAL_MS}")]
    IntervalTooShort(u64),
    #[error(
        "`plugin.heartbeat_ms` ({heartbeat}) must be at least `plugin.interval_ms` ({interval})"
    )]
    HeartbeatBelowInterval { heartbeat: u64, interval: u64 },
    #[error("`plugin.{0}` must be greater than zero")]
    Zero(&'static str),
    #[error("`plugin.report_token` must be non-empty visible ASCII")]
    InvalidToken,
    #[error("`plugin.resource_prefixes` must not contain an empty prefix")]
    EmptyPrefix,
}

impl GatewaySettings {
    /// Checks every field; rendering calls this first.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !is_dns_label(&self.namespace) {
            return Err(SettingsError::InvalidNamespace(self.namespace.clone()));
        }
        if self.selector.is_empty() {
            return Err(SettingsError::EmptySelector);
        }
        for (key, value) in &self.selector {
            if !is_label_key(key) || !(value.is_empty() || is_label_name(value)) {
                return Err(SettingsError::InvalidSelector {
                    key: key.clone(),
                    value: value.clone(),
                });
            }
        }
        self.validate_status_port()?;
        if let Some(bind) = &self.status_bind {
            check_ip("status_bind", bind)?;
        }
        check_ip("admin_address", &self.admin_address)?;
        if self.admin_port == 0 {
            return Err(SettingsError::ZeroPort("admin_port"));
        }
        if self.controller_host.parse::<IpAddr>().is_err() && !is_dns_name(&self.controller_host) {
            return Err(SettingsError::InvalidHost(self.controller_host.clone()));
        }
        if self.controller_port == 0 {
            return Err(SettingsError::ZeroPort("controller_port"));
        }
        if !(1..=MAX_CONNECT_TIMEOUT_MS).contains(&self.connect_timeout_ms) {
            return Err(SettingsError::ConnectTimeout(self.connect_timeout_ms));
        }
        self.module.validate()?;
        self.plugin.validate()
    }

    fn validate_status_port(&self) -> Result<(), SettingsError> {
        let reason = if self.status_port < 1024 {
            Some("must be at least 1024: Istio skips privileged ports on unprivileged gateways")
        } else if self.status_port == self.admin_port
            || ISTIO_PROXY_PORTS.contains(&self.status_port)
        {
            Some("is a port the Istio proxy itself uses")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(SettingsError::StatusPort {
                port: self.status_port,
                reason,
            }),
            None => Ok(()),
        }
    }

    /// `host:port` of the controller (`[v6]:port` for an IPv6 literal).
    pub fn controller_authority(&self) -> String {
        match self.controller_host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.controller_port),
            _ => format!("{}:{}", self.controller_host, self.controller_port),
        }
    }

    /// The WasmPlugin's `url`.
    pub fn module_url(&self) -> String {
        match &self.module {
            ModuleSource::Controller { sha256: None } => {
                format!("http://{}{MODULE_PATH}", self.controller_authority())
            }
            ModuleSource::Controller {
                sha256: Some(sha256),
            } => format!(
                "http://{}{}",
                self.controller_authority(),
                module_path(sha256)
            ),
            ModuleSource::Url { url, .. } => url.clone(),
        }
    }

    /// The WasmPlugin's `sha256`, when pinned.
    pub fn module_sha256(&self) -> Option<&str> {
        match &self.module {
            ModuleSource::Controller { sha256 } | ModuleSource::Url { sha256, .. } => {
                sha256.as_deref()
            }
        }
    }
}

impl ModuleSource {
    fn validate(&self) -> Result<(), SettingsError> {
        let sha256 = match self {
            ModuleSource::Controller { sha256 } => sha256,
            ModuleSource::Url { url, sha256 } => {
                let scheme = url.split_once("://").map(|(s, rest)| (s, rest.is_empty()));
                match scheme {
                    Some(("http" | "https", false)) if sha256.is_none() => {
                        return Err(SettingsError::MissingSha256(url.clone()))
                    }
                    Some(("oci" | "http" | "https" | "file", false)) => {}
                    _ => return Err(SettingsError::InvalidModuleUrl(url.clone())),
                }
                sha256
            }
        };
        match sha256 {
            Some(hex) if !is_sha256_hex(hex) => Err(SettingsError::InvalidSha256),
            _ => Ok(()),
        }
    }
}

impl PluginSettings {
    /// The same rules as the filter's `PluginConfig::parse`, checked before
    /// anything reaches a gateway.
    fn validate(&self) -> Result<(), SettingsError> {
        if self.interval_ms < MIN_INTERVAL_MS {
            return Err(SettingsError::IntervalTooShort(self.interval_ms));
        }
        if self.heartbeat_ms < self.interval_ms {
            return Err(SettingsError::HeartbeatBelowInterval {
                heartbeat: self.heartbeat_ms,
                interval: self.interval_ms,
            });
        }
        for (field, value) in [
            ("timeout_ms", self.timeout_ms),
            ("max_backoff_ms", self.max_backoff_ms),
        ] {
            if value == 0 {
                return Err(SettingsError::Zero(field));
            }
        }
        if self.resource_prefixes.iter().any(String::is_empty) {
            return Err(SettingsError::EmptyPrefix);
        }
        Ok(())
    }
}

fn check_ip(field: &'static str, value: &str) -> Result<(), SettingsError> {
    value
        .parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| SettingsError::InvalidAddress {
            field,
            value: value.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        GatewaySettings::default().validate().unwrap();
    }

    #[test]
    fn default_prefixes_include_the_mesh_identity_by_its_exact_names() {
        let prefixes = PluginSettings::default().resource_prefixes;
        let mesh: Vec<&str> = prefixes
            .iter()
            .map(String::as_str)
            .filter(|p| sds::is_mesh_identity(p))
            .collect();
        assert_eq!(mesh, [sds::WORKLOAD_CERT, sds::ROOT_CA]);
        // The other defaults are schemes, which neither name starts with.
        for prefix in prefixes.iter().filter(|p| !sds::is_mesh_identity(p)) {
            assert!(prefix.ends_with(':') || prefix.ends_with("://"), "{prefix}");
            assert!(!sds::WORKLOAD_CERT.starts_with(prefix.as_str()));
            assert!(!sds::ROOT_CA.starts_with(prefix.as_str()));
        }
    }

    #[test]
    fn each_bad_field_is_refused_naming_it() {
        let sha = "ab".repeat(32);
        type Mutation = Box<dyn Fn(&mut GatewaySettings)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (
                Box::new(|s| s.namespace = "Istio_System".into()),
                "namespace",
            ),
            (Box::new(|s| s.selector.clear()), "selector"),
            (
                Box::new(|s| {
                    s.selector.insert("istio".into(), "has space".into());
                }),
                "selector",
            ),
            (Box::new(|s| s.status_port = 80), "status_port"),
            (Box::new(|s| s.status_port = 15021), "status_port"),
            (Box::new(|s| s.status_port = s.admin_port), "status_port"),
            (
                Box::new(|s| s.status_bind = Some("localhost".into())),
                "status_bind",
            ),
            (Box::new(|s| s.admin_address = "".into()), "admin_address"),
            (
                Box::new(|s| s.controller_host = "http://x".into()),
                "controller_host",
            ),
            (Box::new(|s| s.controller_port = 0), "controller_port"),
            (Box::new(|s| s.connect_timeout_ms = 0), "connect_timeout_ms"),
            (
                Box::new(|s| {
                    s.module = ModuleSource::Controller {
                        sha256: Some("ABC".into()),
                    }
                }),
                "sha256",
            ),
            (
                Box::new(|s| {
                    s.module = ModuleSource::Url {
                        url: "https://example.com/f.wasm".into(),
                        sha256: None,
                    }
                }),
                "sha256",
            ),
            (
                Box::new(move |s| {
                    s.module = ModuleSource::Url {
                        url: "ftp://x/f.wasm".into(),
                        sha256: Some(sha.clone()),
                    }
                }),
                "url",
            ),
            (Box::new(|s| s.plugin.interval_ms = 10), "interval_ms"),
            (Box::new(|s| s.plugin.heartbeat_ms = 500), "heartbeat_ms"),
            (Box::new(|s| s.plugin.timeout_ms = 0), "timeout_ms"),
            (
                Box::new(|s| s.plugin.resource_prefixes.push(String::new())),
                "resource_prefixes",
            ),
        ];
        for (mutate, needle) in cases {
            let mut settings = GatewaySettings::default();
            mutate(&mut settings);
            let err = settings.validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should name {needle}");
        }
    }

    #[test]
    fn oci_and_file_urls_need_no_sha256() {
        for url in ["oci://registry.example/cert-sync:1.0", "file:///opt/f.wasm"] {
            let settings = GatewaySettings {
                module: ModuleSource::Url {
                    url: url.into(),
                    sha256: None,
                },
                ..GatewaySettings::default()
            };
            settings.validate().unwrap();
            assert_eq!(settings.module_url(), url);
            assert_eq!(settings.module_sha256(), None);
        }
    }

    #[test]
    fn controller_url_follows_the_controller_service() {
        let mut settings = GatewaySettings::default();
        assert_eq!(
            settings.module_url(),
            "http://cert-sync.istio-system.svc.cluster.local:8080/v1/filter.wasm"
        );
        settings.controller_host = "fd00::1".into();
        settings.controller_port = 9000;
        assert_eq!(
            settings.module_url(),
            "http://[fd00::1]:9000/v1/filter.wasm"
        );
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        assert_eq!(ReportToken::new(""), Err(SettingsError::InvalidToken));
        assert_eq!(ReportToken::new("a b"), Err(SettingsError::InvalidToken));
        let token = ReportToken::new("s3cr3t").unwrap();
        let mut settings = GatewaySettings::default();
        settings.plugin.report_token = Some(token);
        assert!(!format!("{settings:?}").contains("s3cr3t"));
    }
}
