//! The gateway-side Istio objects that put cert-sync's filter into every
//! gateway pod, as plain data.
//!
//! ```text
//!  GatewaySettings ──render──▶ [ WasmPlugin   cert-sync         loads the filter, status port only
//!                                EnvoyFilter  cert-sync         clusters: local admin API, controller
//!                                Gateway      cert-sync-status  the status listener it attaches to ]
//!        │                                  │
//!        └── defaults ──▶ manifests/gateway.yaml (kubectl apply -f)   └─▶ controller: server-side apply
//! ```
//!
//! The controller server-side-applies [`render`]'s output, so rendering is
//! pure and deterministic: the same settings always give the same JSON, in
//! the same order. The checked-in `manifests/gateway.yaml` is the default
//! rendering, which the test that keeps it in sync writes as YAML
//! (`UPDATE_MANIFESTS=1 cargo test -p certsync-wasmplugin --test manifest`
//! rewrites it): nothing here emits YAML, so the controller carries no YAML
//! writer.
//!
//! The filter never sits on user traffic: the WasmPlugin matches only the
//! status port, whose listener exists only because of the `cert-sync-status`
//! Gateway (see [`gateway`]). The filter does its work in its root context,
//! which Envoy creates when the listener's filter config loads, so the
//! listener never needs a request.

mod envoy_filter;
mod gateway;
mod gateway_api;
mod meta;
mod plugin_config;
mod rules;
mod settings;
mod wasm_plugin;

/// The controller's paths the objects point at, from certsync-contract.
pub use certsync_contract::wire::{MODULE_PATH, REPORT_PATH};
pub use envoy_filter::{clusters, envoy_filter};
pub use gateway::gateway;
pub use gateway_api::{
    gateway_api_names, render_for_gateway_api, GATEWAY_API_SUFFIX, ISTIO_MANAGED_GATEWAY,
};
pub use meta::{
    labels, ADMIN_CLUSTER, CONTROLLER_CLUSTER, ENVOY_FILTER_NAME, GATEWAY_NAME, LABEL_MANAGED_BY,
    LABEL_PART_OF, LABEL_VALUE, STATUS_SERVER_NAME, WASM_PLUGIN_NAME,
};
pub use plugin_config::plugin_config;
pub use settings::{GatewaySettings, ModuleSource, PluginSettings, ReportToken, SettingsError};
pub use wasm_plugin::{wasm_plugin, MATCH_MODE, PLUGIN_NAME};

use serde_json::Value;

/// All gateway-side objects, in apply order: the EnvoyFilter (clusters the
/// filter calls), the Gateway (the listener it attaches to), then the
/// WasmPlugin (the filter itself). Fails only on invalid settings.
pub fn render(settings: &GatewaySettings) -> Result<Vec<Value>, SettingsError> {
    Ok(vec![
        envoy_filter(settings)?,
        gateway(settings)?,
        wasm_plugin(settings)?,
    ])
}
