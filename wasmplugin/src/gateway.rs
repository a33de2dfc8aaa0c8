//! The Gateway (`networking.istio.io/v1`) that makes Istio create the
//! status listener the WasmPlugin attaches to.
//!
//! Gateways only get the listeners their Gateway servers ask for, so
//! without this one there would be nothing but user listeners to attach to.
//!
//! No VirtualService: Istio builds the listener for an HTTP Gateway server
//! whether or not a VirtualService is bound to it; with none, its route
//! configuration is a default 404 virtual host (istiod logs "constructed
//! http route config ... with no vhosts; Setting up a default 404 vhost").
//! That is what this listener should answer anyway, and the filter needs no
//! route: its work runs in the root context, which Envoy creates when it
//! loads the listener's filter configuration, not per request.

use crate::meta::{object, selector, GATEWAY_NAME, STATUS_SERVER_NAME};
use crate::settings::{GatewaySettings, SettingsError};
use serde_json::{json, Value};

/// The status Gateway: one plain-HTTP server on the status port, bound to
/// [`GatewaySettings::status_bind`] when set.
pub fn gateway(settings: &GatewaySettings) -> Result<Value, SettingsError> {
    settings.validate()?;
    let mut server = json!({
        "port": {
            "number": settings.status_port,
            "name": STATUS_SERVER_NAME,
            "protocol": "HTTP",
        },
        "hosts": ["*"],
    });
    if let (Some(bind), Value::Object(map)) = (&settings.status_bind, &mut server) {
        map.insert("bind".into(), bind.as_str().into());
    }
    Ok(object(
        "networking.istio.io/v1",
        "Gateway",
        GATEWAY_NAME,
        settings,
        json!({
            "selector": selector(settings),
            "servers": [server],
        }),
    ))
}
