//! The Envoy parts of the rendered objects pass `envoy --mode validate`:
//! the EnvoyFilter's two clusters exactly as rendered, and a status listener
//! carrying the wasm filter configured the way Istio translates the
//! WasmPlugin (root_id = pluginName, V8, pluginConfig as a StringValue of
//! JSON). Validation mode loads the module into V8 and runs the filter's
//! `on_configure`, so a plugin config the filter refuses fails here too.
//!
//! The bootstrap leaves Envoy's failure policy at its default (fail closed)
//! rather than mirror FAIL_OPEN, so that validation can only pass with the
//! module created. (In Envoy 1.40 a plugin whose `on_configure` fails is
//! refused at load time with fail-open too; FAIL_OPEN covers fetch and
//! runtime failures.)
//!
//! What this cannot show: how Istio merges the clusters into a real gateway's
//! config, DNS resolution of the controller (validation mode resolves nothing).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use certsync_wasmplugin::{render, GatewaySettings, ModuleSource, ReportToken};
use serde_json::{json, Value};
use std::path::Path;

/// Builds the bootstrap from the rendered objects alone.
fn bootstrap(objects: &[Value], wasm: &Path) -> Value {
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} rendered"))
    };
    let clusters: Vec<Value> = find("EnvoyFilter")["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|patch| patch["patch"]["value"].clone())
        .collect();
    let plugin = &find("WasmPlugin")["spec"];
    let server = &find("Gateway")["spec"]["servers"][0];
    let port = &server["port"]["number"];
    assert_eq!(&plugin["match"][0]["ports"][0]["number"], port);
    let bind = server["bind"].as_str().unwrap_or("0.0.0.0");
    let plugin_name = plugin["pluginName"].as_str().unwrap();
    let wasm_filter = json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": format!("{}.{}", find("WasmPlugin")["metadata"]["namespace"].as_str().unwrap(), plugin_name),
                "root_id": plugin_name,
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm } },
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": serde_json::to_string(&plugin["pluginConfig"]).unwrap(),
                },
            },
        },
    });
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
        "static_resources": {
            "clusters": clusters,
            "listeners": [{
                "name": format!("{bind}_{port}"),
                "address": { "socket_address": { "address": bind, "port_value": port } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "cert_sync_status",
                        // What Istio serves on a Gateway server with no VirtualService.
                        "route_config": {
                            "name": format!("http.{port}"),
                            "virtual_hosts": [{ "name": format!("blackhole:{port}"), "domains": ["*"], "routes": [] }],
                        },
                        "http_filters": [
                            wasm_filter,
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                            },
                        ],
                    },
                }] }],
            }],
        },
    })
}

struct Outcome {
    ok: bool,
    log: String,
}

fn envoy_validate(name: &str, config: &Value) -> Outcome {
    let dir = support::scratch_dir(name);
    let path = dir.join("bootstrap.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let outcome = match certsync_testkit::Envoy::validate(&path) {
        Ok(()) => Outcome {
            ok: true,
            log: String::new(),
        },
        Err(e) => Outcome {
            ok: false,
            log: format!("{e:#}"),
        },
    };
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

#[test]
fn default_rendering_passes_envoy_validation() {
    let objects = render(&GatewaySettings::default()).unwrap();
    let outcome = envoy_validate("default", &bootstrap(&objects, &filter_wasm()));
    assert!(outcome.ok, "envoy --mode validate failed:\n{}", outcome.log);
}

#[test]
fn variant_rendering_passes_envoy_validation() {
    let mut settings = GatewaySettings {
        status_bind: None,
        connect_timeout_ms: 250,
        controller_host: "10.96.0.20".into(),
        module: ModuleSource::Controller {
            sha256: Some("ab".repeat(32)),
        },
        ..GatewaySettings::default()
    };
    settings.plugin.report_token = Some(ReportToken::new("t0k3n").unwrap());
    let objects = render(&settings).unwrap();
    let outcome = envoy_validate("variant", &bootstrap(&objects, &filter_wasm()));
    assert!(outcome.ok, "envoy --mode validate failed:\n{}", outcome.log);
}

/// The filter's `on_configure` runs in validation mode: a plugin config it
/// refuses fails validation, with the filter's reason in Envoy's log.
#[test]
fn a_plugin_config_the_filter_refuses_fails_validation() {
    let mut objects = render(&GatewaySettings::default()).unwrap();
    objects[2]["spec"]["pluginConfig"]["report_cluster"] = "".into();
    let outcome = envoy_validate("bad-plugin", &bootstrap(&objects, &filter_wasm()));
    assert!(!outcome.ok, "validation should fail:\n{}", outcome.log);
    assert!(
        outcome.log.contains("`report_cluster` must not be empty"),
        "{}",
        outcome.log
    );
}

#[test]
fn a_broken_cluster_fails_validation() {
    let mut objects = render(&GatewaySettings::default()).unwrap();
    objects[0]["spec"]["configPatches"][1]["patch"]["value"]["type"] = "STRICT_DSN".into();
    let outcome = envoy_validate("bad-cluster", &bootstrap(&objects, &filter_wasm()));
    assert!(!outcome.ok, "validation should fail:\n{}", outcome.log);
    assert!(outcome.log.contains("STRICT_DSN"), "{}", outcome.log);
}

fn filter_wasm() -> std::path::PathBuf {
    certsync_testkit::filter_wasm_path().expect("the shipped filter module (filter/build-wasm.sh)")
}
