//! Names and labels shared by the three objects, so the controller (which
//! must find and own them) and the manifests agree on them in one place.

use crate::settings::GatewaySettings;
use serde_json::{json, Map, Value};

/// The WasmPlugin's name.
pub const WASM_PLUGIN_NAME: &str = "cert-sync";
/// The EnvoyFilter's name.
pub const ENVOY_FILTER_NAME: &str = "cert-sync";
/// The status Gateway's name.
pub const GATEWAY_NAME: &str = "cert-sync-status";
/// The status server's port name (Istio reads the protocol from the
/// `protocol` field; the `http-` prefix is the convention).
pub const STATUS_SERVER_NAME: &str = "http-cert-sync-status";

// The two clusters the EnvoyFilter adds and the plugin configuration names,
// and the labels the controller selects its objects by: defined with the
// other contracts in certsync-contract, re-exported for this crate's users.
pub use certsync_contract::metadata::{
    MANAGED_BY as LABEL_MANAGED_BY, MANAGED_BY_VALUE as LABEL_VALUE, PART_OF as LABEL_PART_OF,
};
pub use certsync_contract::wire::{ADMIN_CLUSTER, CONTROLLER_CLUSTER};

/// The labels every rendered object carries; the controller selects what it
/// manages by `app.kubernetes.io/managed-by`.
pub fn labels() -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert(LABEL_MANAGED_BY.into(), LABEL_VALUE.into());
    labels.insert(LABEL_PART_OF.into(), LABEL_VALUE.into());
    labels
}

/// `apiVersion`, `kind` and `metadata` of one object in the gateway namespace.
pub(crate) fn object(
    api_version: &str,
    kind: &str,
    name: &str,
    settings: &GatewaySettings,
    spec: Value,
) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels(),
        },
        "spec": spec,
    })
}

/// The gateway selector as a JSON object.
pub(crate) fn selector(settings: &GatewaySettings) -> Value {
    Value::Object(
        settings
            .selector
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}
