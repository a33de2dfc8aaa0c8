//! Envoy bootstraps shaped like an Istio ingress gateway, as JSON (valid
//! Envoy config, no YAML dependency):
//!
//! - admin on `127.0.0.1:<admin_port>`;
//! - an HTTPS listener with one filter chain per SNI host, each serving its
//!   certificate from file-based SDS ([`crate::sds`]) and answering 200;
//! - with the filter: a status listener whose HTTP filter chain is the
//!   cert-sync wasm filter then the router, answering 200;
//! - optionally a plain-HTTP user listener (benchmarks), never filtered;
//! - STATIC clusters `cert-sync-admin` (Envoy's own admin, which the filter
//!   polls) and `cert-sync-controller` (the report receiver);
//! - optionally the pod's mesh identity ([`MeshIdentity`]): an upstream
//!   cluster whose TLS context loads SDS `default` and `ROOTCA`, as every
//!   `ISTIO_MUTUAL` cluster of an Istio gateway does.

use crate::ports::free_port;
use crate::sds::{SdsSource, SECRET_TYPE};
use anyhow::{bail, Context, Result};
use certsync_contract::plugin_config;
use serde::Serialize;
use serde_json::{json, Value};
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

pub use certsync_contract::wire::{ADMIN_CLUSTER, CONTROLLER_CLUSTER};
/// The filter's `root_id` and VM id.
pub const ROOT_ID: &str = "cert-sync";
pub const WASM_FILTER: &str = "envoy.filters.http.wasm";
pub const DEFAULT_NODE_ID: &str =
    "router~127.0.0.1~gw-0.istio-system~istio-system.svc.cluster.local";
pub const DEFAULT_NODE_CLUSTER: &str = "istio-ingressgateway.istio-system";
/// The upstream cluster that loads the mesh identity ([`MeshIdentity`]),
/// named as Istio names an outbound cluster.
pub const MESH_CLUSTER: &str = "outbound|443||mesh-peer.istio-system.svc.cluster.local";
/// Body of the direct responses, so tests can tell which listener answered.
pub const HTTPS_BODY: &str = "cert-sync e2e https";
pub const STATUS_BODY: &str = "cert-sync e2e status";
pub const HTTP_BODY: &str = "cert-sync e2e http";

/// The filter's plugin configuration: certsync-contract's document (the one
/// the filter parses and the WasmPlugin carries) with builder methods for
/// tests. Unset fields are left out, so the filter's defaults apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PluginConfig(pub plugin_config::PluginConfig);

impl Default for PluginConfig {
    /// Points at this harness's clusters (`cert-sync-admin`,
    /// `cert-sync-controller`) with a fast 200 ms poll and pod `gw-0` in
    /// `istio-system`; everything else is left to the filter's defaults.
    fn default() -> Self {
        PluginConfig(plugin_config::PluginConfig {
            admin_cluster: Some(ADMIN_CLUSTER.into()),
            interval_ms: Some(200),
            pod_name: Some("gw-0".into()),
            pod_namespace: Some("istio-system".into()),
            ..plugin_config::PluginConfig::new(CONTROLLER_CLUSTER)
        })
    }
}

impl PluginConfig {
    /// Only the required field: everything else at the filter's defaults.
    pub fn minimal(report_cluster: impl Into<String>) -> Self {
        PluginConfig(plugin_config::PluginConfig::new(report_cluster))
    }

    pub fn admin_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.0.admin_cluster = Some(cluster.into());
        self
    }

    pub fn report_path(mut self, path: impl Into<String>) -> Self {
        self.0.report_path = Some(path.into());
        self
    }

    pub fn report_authority(mut self, authority: impl Into<String>) -> Self {
        self.0.report_authority = Some(authority.into());
        self
    }

    pub fn interval_ms(mut self, ms: u64) -> Self {
        self.0.interval_ms = Some(ms);
        self
    }

    pub fn heartbeat_ms(mut self, ms: u64) -> Self {
        self.0.heartbeat_ms = Some(ms);
        self
    }

    pub fn timeout_ms(mut self, ms: u64) -> Self {
        self.0.timeout_ms = Some(ms);
        self
    }

    pub fn max_backoff_ms(mut self, ms: u64) -> Self {
        self.0.max_backoff_ms = Some(ms);
        self
    }

    pub fn report_token(mut self, token: impl Into<String>) -> Self {
        self.0.report_token = Some(token.into());
        self
    }

    pub fn resource_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.0.resource_prefixes = Some(prefixes.iter().map(|p| (*p).to_owned()).collect());
        self
    }

    pub fn pod(mut self, name: impl Into<String>, namespace: impl Into<String>) -> Self {
        self.0.pod_name = Some(name.into());
        self.0.pod_namespace = Some(namespace.into());
        self
    }

    pub fn to_json(&self) -> Value {
        self.0.to_json()
    }
}

impl From<PluginConfig> for Value {
    fn from(config: PluginConfig) -> Value {
        config.to_json()
    }
}

/// One SNI host on the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHost {
    pub sni: String,
    pub source: SdsSource,
}

/// The pod's own mesh identity, as Istio configures it on every
/// `ISTIO_MUTUAL` upstream cluster: the workload certificate chain and key
/// (SDS `default`) and the validation context of the mesh's roots (SDS
/// `ROOTCA`). The sources may carry any resource names; Istio's are
/// `certsync_contract::sds::{WORKLOAD_CERT, ROOT_CA}`. Envoy loads both with
/// the cluster ([`MESH_CLUSTER`]), which is never connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshIdentity {
    /// A certificate secret, e.g. an [`crate::sds::SdsDir`] holding a
    /// `TlsSecret` named `default`.
    pub certificate: SdsSource,
    /// A validation-context secret, e.g. from [`write_ca_secret`].
    pub roots: SdsSource,
}

/// Writes a file-based SDS response at `path` holding one validation-context
/// secret, `name` trusting the CA certificates of `bundle_pem` (as Istio's
/// `ROOTCA` holds the mesh's roots), and returns where Envoy finds it.
/// Written to a temporary file renamed over `path`: rewriting it is an
/// update Envoy sees (it watches the file for moves).
pub fn write_ca_secret(path: &Path, name: &str, bundle_pem: &str) -> Result<SdsSource> {
    let response = json!({
        "resources": [{
            "@type": SECRET_TYPE,
            "name": name,
            "validation_context": { "trusted_ca": { "inline_string": bundle_pem } },
        }],
    });
    let file_name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    fs::write(&tmp, serde_json::to_string_pretty(&response)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} over {}", tmp.display(), path.display()))?;
    Ok(SdsSource {
        resource: name.to_owned(),
        path: path.to_path_buf(),
        watched_directory: None,
    })
}

/// A complete bootstrap; see [`Bootstrap::builder`].
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub admin_port: u16,
    /// The HTTPS listener's port (the listener exists only with hosts).
    pub https_port: u16,
    /// The status listener's port, with the filter only.
    pub status_port: Option<u16>,
    /// The plain-HTTP user listener's port, if asked for.
    pub http_port: Option<u16>,
    /// Where `cert-sync-controller` points.
    pub receiver_port: u16,
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    pub hosts: Vec<TlsHost>,
    /// The filter's wasm module, with the filter only.
    pub wasm_path: Option<PathBuf>,
    /// The filter's configuration, with the filter only.
    pub plugin: Option<Value>,
    pub node_id: String,
    pub node_cluster: String,
    /// When set, the status listener comes from file-based LDS at this path,
    /// as Istio delivers listeners dynamically: one Envoy rejects (say, a
    /// plugin whose configuration is invalid) leaves the others serving.
    pub status_lds: Option<PathBuf>,
    /// The mesh identity's upstream cluster, if asked for.
    pub mesh_identity: Option<MeshIdentity>,
}

impl Bootstrap {
    pub fn builder() -> BootstrapBuilder {
        BootstrapBuilder::default()
    }

    pub fn with_filter(&self) -> bool {
        self.status_port.is_some()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        loopback(self.admin_port)
    }

    pub fn https_addr(&self) -> SocketAddr {
        loopback(self.https_port)
    }

    /// The Envoy bootstrap.
    pub fn to_json(&self) -> Value {
        let mut listeners = Vec::new();
        if !self.hosts.is_empty() {
            listeners.push(self.https_listener());
        }
        if let (Some(status), None) = (self.status_listener(), &self.status_lds) {
            listeners.push(status);
        }
        if let Some(port) = self.http_port {
            listeners.push(http_listener("http", port, HTTP_BODY, vec![router()]));
        }
        let mut clusters = vec![
            static_cluster(ADMIN_CLUSTER, self.admin_port),
            static_cluster(CONTROLLER_CLUSTER, self.receiver_port),
        ];
        if let Some(mesh) = &self.mesh_identity {
            clusters.push(self.mesh_cluster(mesh));
        }
        let mut bootstrap = json!({
            "node": { "id": self.node_id, "cluster": self.node_cluster },
            "admin": { "address": socket_address(self.admin_port) },
            "static_resources": {
                "listeners": listeners,
                "clusters": clusters,
            },
        });
        if let Some(path) = &self.status_lds {
            bootstrap["dynamic_resources"] = json!({
                "lds_config": {
                    "path_config_source": { "path": path },
                    "resource_api_version": "V3",
                },
            });
        }
        bootstrap
    }

    /// Writes the bootstrap as pretty JSON (and the LDS file, if any).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let (Some(lds), Some(status)) = (&self.status_lds, self.status_listener()) {
            let mut listener = status;
            listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
            let response = json!({ "version_info": "1", "resources": [listener] });
            fs::write(lds, serde_json::to_string_pretty(&response)?)
                .with_context(|| format!("writing {}", lds.display()))?;
        }
        let text = serde_json::to_string_pretty(&self.to_json())?;
        fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    fn status_listener(&self) -> Option<Value> {
        let (port, wasm, plugin) = (
            self.status_port?,
            self.wasm_path.as_ref()?,
            self.plugin.as_ref()?,
        );
        let filters = vec![wasm_filter(wasm, plugin), router()];
        Some(http_listener("status", port, STATUS_BODY, filters))
    }

    /// Pointed at the HTTPS listener's port, though nothing is sent: the
    /// cluster exists for its TLS context.
    fn mesh_cluster(&self, mesh: &MeshIdentity) -> Value {
        let mut cluster = static_cluster(MESH_CLUSTER, self.https_port);
        cluster["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [mesh.certificate.to_secret_config()],
                    "validation_context_sds_secret_config": mesh.roots.to_secret_config(),
                },
                "sni": "mesh-peer.istio-system.svc.cluster.local",
            },
        });
        cluster
    }

    fn https_listener(&self) -> Value {
        let chains: Vec<Value> = self
            .hosts
            .iter()
            .map(|host| {
                json!({
                    "filter_chain_match": { "server_names": [host.sni] },
                    "transport_socket": {
                        "name": "envoy.transport_sockets.tls",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                            "common_tls_context": {
                                "tls_certificate_sds_secret_configs": [host.source.to_secret_config()],
                            },
                        },
                    },
                    "filters": [hcm("https", HTTPS_BODY, vec![router()])],
                })
            })
            .collect();
        json!({
            "name": "https",
            "address": socket_address(self.https_port),
            // SNI-based filter chain matching needs the TLS inspector.
            "listener_filters": [{
                "name": "envoy.filters.listener.tls_inspector",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                },
            }],
            "filter_chains": chains,
        })
    }
}

/// Builds a [`Bootstrap`], picking free ports for whatever is not set.
#[derive(Debug, Clone, Default)]
pub struct BootstrapBuilder {
    hosts: Vec<TlsHost>,
    concurrency: Option<u32>,
    with_filter: bool,
    plugin: Option<Value>,
    wasm_path: Option<PathBuf>,
    receiver_port: Option<u16>,
    http_listener: bool,
    admin_port: Option<u16>,
    https_port: Option<u16>,
    status_port: Option<u16>,
    http_port: Option<u16>,
    node_id: Option<String>,
    node_cluster: Option<String>,
    status_lds: Option<PathBuf>,
    mesh_identity: Option<MeshIdentity>,
}

impl BootstrapBuilder {
    /// Serves SNI `sni` with the certificate in `source`.
    pub fn host(mut self, sni: impl Into<String>, source: SdsSource) -> Self {
        self.hosts.push(TlsHost {
            sni: sni.into(),
            source,
        });
        self
    }

    /// Envoy worker threads; default 1.
    pub fn concurrency(mut self, workers: u32) -> Self {
        self.concurrency = Some(workers);
        self
    }

    /// Adds the status listener with the wasm filter; default off (the
    /// baseline for benchmarks, and what works before the filter builds).
    pub fn with_filter(mut self, on: bool) -> Self {
        self.with_filter = on;
        self
    }

    /// The filter's configuration, any JSON (invalid ones included, for
    /// negative tests); default [`PluginConfig::default`]. Implies nothing
    /// about `with_filter`.
    pub fn plugin_config(mut self, config: impl Into<Value>) -> Self {
        self.plugin = Some(config.into());
        self
    }

    /// The wasm module; default [`crate::filter_wasm_path`] (built if needed).
    pub fn wasm_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.wasm_path = Some(path.into());
        self
    }

    /// Where `cert-sync-controller` points; default a free port nobody
    /// listens on (reports then fail to connect).
    pub fn receiver_port(mut self, port: u16) -> Self {
        self.receiver_port = Some(port);
        self
    }

    /// Adds the plain-HTTP user listener (no filter), for benchmarks.
    pub fn http_listener(mut self, on: bool) -> Self {
        self.http_listener = on;
        self
    }

    pub fn admin_port(mut self, port: u16) -> Self {
        self.admin_port = Some(port);
        self
    }

    pub fn https_port(mut self, port: u16) -> Self {
        self.https_port = Some(port);
        self
    }

    pub fn status_port(mut self, port: u16) -> Self {
        self.status_port = Some(port);
        self
    }

    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }

    pub fn node_id(mut self, id: impl Into<String>) -> Self {
        self.node_id = Some(id.into());
        self
    }

    pub fn node_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.node_cluster = Some(cluster.into());
        self
    }

    /// Delivers the status listener through file-based LDS at `path`.
    pub fn status_listener_via_lds(mut self, path: impl Into<PathBuf>) -> Self {
        self.status_lds = Some(path.into());
        self
    }

    /// Loads the pod's mesh identity (SDS `default` and `ROOTCA` in an
    /// Istio gateway) through an upstream cluster's TLS context; default none.
    pub fn mesh_identity(mut self, certificate: SdsSource, roots: SdsSource) -> Self {
        self.mesh_identity = Some(MeshIdentity { certificate, roots });
        self
    }

    pub fn build(self) -> Result<Bootstrap> {
        let port = |p: Option<u16>| p.map_or_else(free_port, Ok);
        let concurrency = self.concurrency.unwrap_or(1);
        if concurrency == 0 {
            bail!("concurrency must be at least 1");
        }
        let (status_port, wasm_path, plugin) = if self.with_filter {
            let wasm = match self.wasm_path {
                Some(path) => path,
                None => crate::wasm::filter_wasm_path()?,
            };
            let plugin = self
                .plugin
                .unwrap_or_else(|| PluginConfig::default().to_json());
            (Some(port(self.status_port)?), Some(wasm), Some(plugin))
        } else {
            (None, None, None)
        };
        Ok(Bootstrap {
            admin_port: port(self.admin_port)?,
            https_port: port(self.https_port)?,
            status_port,
            http_port: if self.http_listener {
                Some(port(self.http_port)?)
            } else {
                None
            },
            receiver_port: port(self.receiver_port)?,
            concurrency,
            hosts: self.hosts,
            wasm_path,
            plugin,
            node_id: self.node_id.unwrap_or_else(|| DEFAULT_NODE_ID.into()),
            node_cluster: self
                .node_cluster
                .unwrap_or_else(|| DEFAULT_NODE_CLUSTER.into()),
            status_lds: self.status_lds,
            mesh_identity: self.mesh_identity,
        })
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn socket_address(port: u16) -> Value {
    json!({ "socket_address": { "address": "127.0.0.1", "port_value": port } })
}

fn static_cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{ "endpoint": { "address": socket_address(port) } }],
            }],
        },
    })
}

fn router() -> Value {
    json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
    })
}

fn wasm_filter(wasm: &Path, plugin: &Value) -> Value {
    json!({
        "name": WASM_FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": ROOT_ID,
                "root_id": ROOT_ID,
                // As the WasmPlugin's failStrategy FAIL_OPEN: a module that
                // cannot load or configure must not take the gateway down.
                "fail_open": true,
                "vm_config": {
                    "vm_id": ROOT_ID,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm } },
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin.to_string(),
                },
            },
        },
    })
}

/// An HTTP connection manager answering every request with 200 `body`.
fn hcm(stat_prefix: &str, body: &str, http_filters: Vec<Value>) -> Value {
    json!({
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "route_config": {
                "name": stat_prefix,
                "virtual_hosts": [{
                    "name": stat_prefix,
                    "domains": ["*"],
                    "routes": [{
                        "match": { "prefix": "/" },
                        "direct_response": { "status": 200, "body": { "inline_string": body } },
                    }],
                }],
            },
            "http_filters": http_filters,
        },
    })
}

fn http_listener(name: &str, port: u16, body: &str, http_filters: Vec<Value>) -> Value {
    json!({
        "name": name,
        "address": socket_address(port),
        "filter_chains": [{ "filters": [hcm(name, body, http_filters)] }],
    })
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;
