//! The WasmPlugin's `pluginConfig`: the filter's plugin configuration
//! (`certsync_filter::config::PluginConfig`), field names fixed by the filter.
//!
//! Every field that matters operationally is written out rather than left to
//! the filter's defaults, so the object shows what a gateway runs. Istio
//! stores `pluginConfig` as a protobuf Struct (numbers are doubles) and hands
//! it to the filter as JSON; integral millisecond values survive that as
//! integers.

use crate::meta::{ADMIN_CLUSTER, CONTROLLER_CLUSTER};
use crate::settings::GatewaySettings;
use serde_json::{json, Value};

/// Path of the controller's report endpoint (`certsync_contract::report::REPORT_PATH`).
pub const REPORT_PATH: &str = "/v1/reports";

/// The filter's plugin configuration for these settings. Pod name and
/// namespace are left to the filter, which reads them from Envoy's node
/// metadata. Call on validated settings (the object renderers do).
pub fn plugin_config(settings: &GatewaySettings) -> Value {
    let plugin = &settings.plugin;
    let mut config = json!({
        "admin_cluster": ADMIN_CLUSTER,
        "report_cluster": CONTROLLER_CLUSTER,
        "report_path": REPORT_PATH,
        // The controller's Service authority, as an HTTP client would send it.
        "report_authority": settings.controller_authority(),
        "interval_ms": plugin.interval_ms,
        "heartbeat_ms": plugin.heartbeat_ms,
        "timeout_ms": plugin.timeout_ms,
        "max_backoff_ms": plugin.max_backoff_ms,
        "resource_prefixes": plugin.resource_prefixes,
    });
    if let (Some(token), Value::Object(map)) = (&plugin.report_token, &mut config) {
        map.insert("report_token".into(), token.expose().into());
    }
    config
}
