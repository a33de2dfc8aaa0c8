//! The same three objects for the pods Istio deploys for Kubernetes Gateway
//! API Gateways, which carry none of the classic ingress labels.
//!
//! How each reaches those pods, as read in Istio 1.28.10:
//! * WasmPlugin and EnvoyFilter name the Gateways in `targetRefs`
//!   (`group: gateway.networking.k8s.io, kind: Gateway`). Istio attaches a
//!   policy with targetRefs to a Gateway API gateway's pods when the policy
//!   is in the Gateway's namespace and names it, whatever
//!   `ENABLE_SELECTOR_BASED_K8S_GATEWAY_POLICY` says, and never to a pod
//!   without the `gateway.networking.k8s.io/gateway-name` label — so the
//!   classic ingress pods do not get the filter twice
//!   (`pilot/pkg/model/policyattachment.go:123-197`; WasmPlugin
//!   `extensions.go:102`, EnvoyFilter `push_context.go:2352`). targetRefs
//!   on WasmPlugin and EnvoyFilter need Istio 1.22 or later.
//! * The status Gateway selects pods by label like any Istio Gateway
//!   (`push_context.go:2437-2444`): here the label Istio's gateway
//!   controller puts on every pod it deploys,
//!   `gateway.istio.io/managed: istio.io-gateway-controller`
//!   (`kube-gateway.yaml:45-71`). The extra listener on the status port is
//!   inert on a pod whose Gateway is not listed (no filter, default 404).
//!
//! No Gateway API Gateway, no objects: a WasmPlugin with an empty targetRefs
//! would fall back to selecting by its (empty) selector, i.e. every workload
//! of the namespace.

use crate::meta::{ENVOY_FILTER_NAME, GATEWAY_NAME, WASM_PLUGIN_NAME};
use crate::settings::{GatewaySettings, SettingsError};
use serde_json::{json, Value};

/// Appended to each object's name.
pub const GATEWAY_API_SUFFIX: &str = "-gateway-api";
/// The label (and value) Istio's gateway controller puts on the pods it
/// deploys for Gateway API Gateways.
pub const ISTIO_MANAGED_GATEWAY: (&str, &str) =
    ("gateway.istio.io/managed", "istio.io-gateway-controller");

/// The names of the three Gateway API objects (EnvoyFilter, Gateway, WasmPlugin).
pub fn gateway_api_names() -> [(&'static str, String); 3] {
    [
        (
            "EnvoyFilter",
            format!("{ENVOY_FILTER_NAME}{GATEWAY_API_SUFFIX}"),
        ),
        ("Gateway", format!("{GATEWAY_NAME}{GATEWAY_API_SUFFIX}")),
        (
            "WasmPlugin",
            format!("{WASM_PLUGIN_NAME}{GATEWAY_API_SUFFIX}"),
        ),
    ]
}

/// The objects for Gateway API Gateways `gateways` (in the settings'
/// namespace), in apply order; none when `gateways` is empty.
pub fn render_for_gateway_api(
    settings: &GatewaySettings,
    gateways: &[String],
) -> Result<Vec<Value>, SettingsError> {
    if gateways.is_empty() {
        return Ok(Vec::new());
    }
    let target_refs: Vec<Value> = gateways
        .iter()
        .map(|name| json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": name}))
        .collect();
    let mut objects = crate::render(settings)?;
    for object in &mut objects {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        object["metadata"]["name"] = Value::from(format!("{name}{GATEWAY_API_SUFFIX}"));
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let Some(spec) = object["spec"].as_object_mut() else {
            continue;
        };
        match kind.as_str() {
            "EnvoyFilter" => {
                spec.remove("workloadSelector");
                spec.insert("targetRefs".into(), Value::from(target_refs.clone()));
            }
            "WasmPlugin" => {
                spec.remove("selector");
                spec.insert("targetRefs".into(), Value::from(target_refs.clone()));
            }
            _ => {
                spec.insert(
                    "selector".into(),
                    json!({ISTIO_MANAGED_GATEWAY.0: ISTIO_MANAGED_GATEWAY.1}),
                );
            }
        }
    }
    Ok(objects)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_api_objects_target_the_gateways_and_only_them() {
        let settings = GatewaySettings::default();
        assert!(render_for_gateway_api(&settings, &[]).unwrap().is_empty());
        let objects =
            render_for_gateway_api(&settings, &["web".to_owned(), "api".to_owned()]).unwrap();
        let names: Vec<&str> = objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = gateway_api_names().into_iter().map(|(_, n)| n).collect();
        assert_eq!(names, expected);
        for object in &objects {
            let spec = &object["spec"];
            match object["kind"].as_str().unwrap() {
                "Gateway" => assert_eq!(
                    spec["selector"],
                    json!({"gateway.istio.io/managed": "istio.io-gateway-controller"})
                ),
                _ => {
                    assert!(
                        spec.get("selector").is_none() && spec.get("workloadSelector").is_none()
                    );
                    assert_eq!(spec["targetRefs"][1]["name"], "api");
                    assert_eq!(spec["targetRefs"][0]["kind"], "Gateway");
                }
            }
        }
        // Everything else is the classic objects' (module, plugin config, clusters).
        let classic = crate::render(&settings).unwrap();
        assert_eq!(classic[2]["spec"]["url"], objects[2]["spec"]["url"]);
        assert_eq!(
            classic[0]["spec"]["configPatches"],
            objects[0]["spec"]["configPatches"]
        );
    }
}
