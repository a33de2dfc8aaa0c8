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
/// or started is skipped and the gateway keeps serving), matched to the
/// status port only.
///
/// istio-agent caches an `http(s)://` module by URL and `sha256` (istio
/// 1.28.10 `pkg/wasm/cache.go:82-88,164-209`). Pinned, `IfNotPresent` is
/// exact: a new module has a new digest (and, from the controller, a new
/// content-addressed URL), which misses the cache. Unpinned (the static
/// manifest), `IfNotPresent` would keep the first module fetched for as long
/// as the agent runs; `Always` fetches again whenever the WasmPlugin's
/// resourceVersion changes (`cache.go:174-186,380-389`).
pub fn wasm_plugin(settings: &GatewaySettings) -> Result<Value, SettingsError> {
    settings.validate()?;
    let pull_policy = match settings.module_sha256() {
        Some(_) => "IfNotPresent",
        None => "Always",
    };
    let mut spec = json!({
        "selector": { "matchLabels": selector(settings) },
        "url": settings.module_url(),
        "imagePullPolicy": pull_policy,
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
