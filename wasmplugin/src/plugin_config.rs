//! The WasmPlugin's `pluginConfig`: the filter's plugin configuration,
//! certsync-contract's [`PluginConfig`], whose field names and defaults the
//! filter parses with.
//!
//! Every field that matters operationally is written out rather than left to
//! the filter's defaults, so the object shows what a gateway runs. Istio
//! stores `pluginConfig` as a protobuf Struct (numbers are doubles) and hands
//! it to the filter as JSON; integral millisecond values survive that as
//! integers.

use crate::settings::GatewaySettings;
use certsync_contract::plugin_config::PluginConfig;
use certsync_contract::wire::{ADMIN_CLUSTER, CONTROLLER_CLUSTER, REPORT_PATH};
use serde_json::Value;

/// The filter's plugin configuration for these settings. Pod name and
/// namespace are left to the filter, which reads them from Envoy's node
/// metadata; `admin_authority` and `resync_ms` are left at its defaults.
/// Call on validated settings (the object renderers do).
pub fn plugin_config(settings: &GatewaySettings) -> Value {
    let plugin = &settings.plugin;
    PluginConfig {
        admin_cluster: Some(ADMIN_CLUSTER.into()),
        report_path: Some(REPORT_PATH.into()),
        // The controller's Service authority, as an HTTP client would send it.
        report_authority: Some(settings.controller_authority()),
        interval_ms: Some(plugin.interval_ms),
        heartbeat_ms: Some(plugin.heartbeat_ms),
        timeout_ms: Some(plugin.timeout_ms),
        max_backoff_ms: Some(plugin.max_backoff_ms),
        report_token: plugin.report_token.as_ref().map(|t| t.expose().to_owned()),
        resource_prefixes: Some(plugin.resource_prefixes.clone()),
        ..PluginConfig::new(CONTROLLER_CLUSTER)
    }
    .to_json()
}
