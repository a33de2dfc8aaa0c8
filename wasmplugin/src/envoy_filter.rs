//! The EnvoyFilter (`networking.istio.io/v1alpha3`) adding the two Envoy
//! clusters the filter calls, in the gateway pods only (context GATEWAY).
//!
//! Istio generates no cluster for Envoy's own admin API, and the
//! controller's Service cluster (if any) is named by Istio's scheme and
//! may be filtered away on gateways; fixed names the plugin config can
//! refer to need their own clusters.

use crate::meta::{object, selector, ADMIN_CLUSTER, CONTROLLER_CLUSTER, ENVOY_FILTER_NAME};
use crate::settings::GatewaySettings;
use crate::settings::SettingsError;
use serde_json::{json, Value};

/// The two Envoy clusters, exactly as the EnvoyFilter adds them:
/// `cert-sync-admin` (STATIC, Envoy's admin API in the same istio-proxy
/// container) and `cert-sync-controller` (STRICT_DNS, the controller
/// Service). Plain HTTP/1.1 both: the admin API speaks nothing else, and the
/// controller authenticates reports itself.
pub fn clusters(settings: &GatewaySettings) -> Result<Vec<Value>, SettingsError> {
    settings.validate()?;
    let timeout = duration(settings.connect_timeout_ms);
    Ok(vec![
        cluster(
            ADMIN_CLUSTER,
            "STATIC",
            &timeout,
            &settings.admin_address,
            settings.admin_port,
        ),
        cluster(
            CONTROLLER_CLUSTER,
            "STRICT_DNS",
            &timeout,
            &settings.controller_host,
            settings.controller_port,
        ),
    ])
}

/// The EnvoyFilter: one `CLUSTER`/`ADD` patch per cluster, in the gateway
/// context, on the pods matched by the gateway selector.
pub fn envoy_filter(settings: &GatewaySettings) -> Result<Value, SettingsError> {
    let patches: Vec<Value> = clusters(settings)?
        .into_iter()
        .map(|cluster| {
            json!({
                "applyTo": "CLUSTER",
                "match": { "context": "GATEWAY" },
                "patch": { "operation": "ADD", "value": cluster },
            })
        })
        .collect();
    Ok(object(
        "networking.istio.io/v1alpha3",
        "EnvoyFilter",
        ENVOY_FILTER_NAME,
        settings,
        json!({
            "workloadSelector": { "labels": selector(settings) },
            "configPatches": patches,
        }),
    ))
}

fn cluster(name: &str, kind: &str, connect_timeout: &str, address: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": kind,
        "connect_timeout": connect_timeout,
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{
                "lb_endpoints": [{
                    "endpoint": {
                        "address": {
                            "socket_address": { "address": address, "port_value": port },
                        },
                    },
                }],
            }],
        },
    })
}

/// A protobuf JSON Duration: "1s", "0.250s".
fn duration(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::duration;

    #[test]
    fn durations_are_protobuf_json() {
        assert_eq!(duration(1000), "1s");
        assert_eq!(duration(250), "0.250s");
        assert_eq!(duration(2500), "2.500s");
    }
}
