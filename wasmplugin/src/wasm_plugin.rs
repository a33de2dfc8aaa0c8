//! The WasmPlugin (`extensions.istio.io/v1alpha1`) that loads the filter
//! into the gateway pods, on the status listener only.

use crate::meta::{object, selector, WASM_PLUGIN_NAME};
use crate::plugin_config::plugin_config;
use crate::settings::{GatewaySettings, SettingsError};
use serde_json::{json, Value};

/// Traffic direction in the WasmPlugin's `match`. Istio classes every
/// gateway listener as CLIENT (`workloadModeForListenerClass` in
/// pilot/pkg/model/extensions.go: `ListenerClassGateway` → `CLIENT`);
/// `SERVER` matches only sidecar inbound listeners, so on a gateway it would
/// silently match nothing. The port selector is what keeps the filter off
/// user traffic.
pub const MATCH_MODE: &str = "CLIENT";

/// `pluginName`: Envoy's `root_id` for the filter, also used in its logs.
pub const PLUGIN_NAME: &str = "cert-sync";

/// The WasmPlugin: HTTP filter, `FAIL_OPEN` (a module that cannot be fetched
/// or started is skipped and the gateway keeps serving), `IfNotPresent`
/// (fetched once per sha256/url), matched to the status port only.
pub fn wasm_plugin(settings: &GatewaySettings) -> Result<Value, SettingsError> {
    settings.validate()?;
    let mut spec = json!({
        "selector": { "matchLabels": selector(settings) },
        "url": settings.module_url(),
        "imagePullPolicy": "IfNotPresent",
        "pluginName": PLUGIN_NAME,
        "type": "HTTP",
        "failStrategy": "FAIL_OPEN",
        "match": [{
            "mode": MATCH_MODE,
            "ports": [{ "number": settings.status_port }],
        }],
        "pluginConfig": plugin_config(settings),
    });
    if let (Some(sha256), Value::Object(map)) = (settings.module_sha256(), &mut spec) {
        map.insert("sha256".into(), sha256.into());
    }
    Ok(object(
        "extensions.istio.io/v1alpha1",
        "WasmPlugin",
        WASM_PLUGIN_NAME,
        settings,
        spec,
    ))
}
