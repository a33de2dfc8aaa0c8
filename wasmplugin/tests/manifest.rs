//! The checked-in `manifests/gateway.yaml` is exactly the default rendering,
//! and the rendering has the shape the controller relies on.
//!
//! Regenerate the file with `UPDATE_MANIFESTS=1 cargo test -p
//! certsync-wasmplugin --test manifest`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use certsync_wasmplugin::{
    envoy_filter, gateway, manifest_yaml, render, wasm_plugin, GatewaySettings, ModuleSource,
    ReportToken, LABEL_MANAGED_BY, LABEL_PART_OF,
};
use serde_json::{json, Value};

fn manifest_path() -> std::path::PathBuf {
    support::crate_dir().join("manifests/gateway.yaml")
}

#[test]
fn checked_in_manifest_is_the_default_rendering() {
    let want = manifest_yaml(&GatewaySettings::default()).unwrap();
    let path = manifest_path();
    if std::env::var_os("UPDATE_MANIFESTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale; regenerate it with:\n  UPDATE_MANIFESTS=1 cargo test -p certsync-wasmplugin --test manifest",
        path.display()
    );
}

/// The YAML says what the JSON says: parsed back, document by document.
#[test]
fn checked_in_manifest_parses_back_to_the_rendered_objects() {
    use serde::Deserialize;
    let text = manifest_yaml(&GatewaySettings::default()).unwrap();
    let parsed: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .collect();
    assert_eq!(parsed, render(&GatewaySettings::default()).unwrap());
}

#[test]
fn render_is_deterministic_and_in_apply_order() {
    let settings = GatewaySettings::default();
    let first = render(&settings).unwrap();
    assert_eq!(first, render(&settings).unwrap());
    assert_eq!(
        serde_json::to_string(&first).unwrap(),
        serde_json::to_string(&render(&settings).unwrap()).unwrap()
    );
    let kinds: Vec<(&str, &str)> = first
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("EnvoyFilter", "cert-sync"),
            ("Gateway", "cert-sync-status"),
            ("WasmPlugin", "cert-sync")
        ]
    );
    assert_eq!(first[0], envoy_filter(&settings).unwrap());
    assert_eq!(first[1], gateway(&settings).unwrap());
    assert_eq!(first[2], wasm_plugin(&settings).unwrap());
}

#[test]
fn every_object_is_labelled_and_namespaced() {
    let settings = GatewaySettings {
        namespace: "istio-ingress".into(),
        ..GatewaySettings::default()
    };
    for object in render(&settings).unwrap() {
        let metadata = &object["metadata"];
        assert_eq!(metadata["namespace"], "istio-ingress");
        assert_eq!(metadata["labels"][LABEL_MANAGED_BY], "cert-sync");
        assert_eq!(metadata["labels"][LABEL_PART_OF], "cert-sync");
    }
}

#[test]
fn default_objects_have_the_documented_shape() {
    let settings = GatewaySettings::default();
    let plugin = wasm_plugin(&settings).unwrap();
    let spec = &plugin["spec"];
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(
        spec["selector"],
        json!({"matchLabels": {"istio": "ingressgateway"}})
    );
    assert_eq!(
        spec["url"],
        "http://cert-sync.istio-system.svc.cluster.local:8080/v1/filter.wasm"
    );
    assert!(spec.get("sha256").is_none());
    assert_eq!(spec["imagePullPolicy"], "IfNotPresent");
    assert_eq!(spec["type"], "HTTP");
    assert_eq!(spec["failStrategy"], "FAIL_OPEN");
    // CLIENT: Istio classes gateway listeners as CLIENT; SERVER never matches.
    assert_eq!(
        spec["match"],
        json!([{"mode": "CLIENT", "ports": [{"number": 15099}]}])
    );
    assert_eq!(
        spec["pluginConfig"]["report_cluster"],
        "cert-sync-controller"
    );
    assert_eq!(spec["pluginConfig"]["admin_cluster"], "cert-sync-admin");

    let filter = envoy_filter(&settings).unwrap();
    assert_eq!(filter["apiVersion"], "networking.istio.io/v1alpha3");
    assert_eq!(
        filter["spec"]["workloadSelector"],
        json!({"labels": {"istio": "ingressgateway"}})
    );
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let clusters: Vec<(&str, &str, &str, u64)> = patches
        .iter()
        .map(|p| {
            assert_eq!(p["applyTo"], "CLUSTER");
            assert_eq!(p["match"], json!({"context": "GATEWAY"}));
            assert_eq!(p["patch"]["operation"], "ADD");
            let c = &p["patch"]["value"];
            let addr = &c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
                ["address"]["socket_address"];
            (
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                addr["address"].as_str().unwrap(),
                addr["port_value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        clusters,
        [
            ("cert-sync-admin", "STATIC", "127.0.0.1", 15000),
            (
                "cert-sync-controller",
                "STRICT_DNS",
                "cert-sync.istio-system.svc.cluster.local",
                8080
            ),
        ]
    );

    let gw = gateway(&settings).unwrap();
    assert_eq!(gw["apiVersion"], "networking.istio.io/v1");
    assert_eq!(gw["spec"]["selector"], json!({"istio": "ingressgateway"}));
    assert_eq!(
        gw["spec"]["servers"],
        json!([{
            "port": {"number": 15099, "name": "http-cert-sync-status", "protocol": "HTTP"},
            "hosts": ["*"],
            "bind": "127.0.0.1",
        }])
    );
}

#[test]
fn settings_flow_into_every_object() {
    let sha = "0123456789abcdef".repeat(4);
    let settings = GatewaySettings {
        selector: [("app".to_string(), "edge".to_string())].into(),
        status_port: 16000,
        status_bind: None,
        module: ModuleSource::Url {
            url: "oci://registry.example/cert-sync/filter:1.2.3".into(),
            sha256: Some(sha.clone()),
        },
        ..GatewaySettings::default()
    };
    let [filter, gw, plugin] = <[Value; 3]>::try_from(render(&settings).unwrap()).unwrap();
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        json!({"app": "edge"})
    );
    assert_eq!(gw["spec"]["selector"], json!({"app": "edge"}));
    assert_eq!(gw["spec"]["servers"][0]["port"]["number"], 16000);
    assert!(gw["spec"]["servers"][0].get("bind").is_none());
    assert_eq!(
        plugin["spec"]["selector"]["matchLabels"],
        json!({"app": "edge"})
    );
    assert_eq!(plugin["spec"]["match"][0]["ports"][0]["number"], 16000);
    assert_eq!(
        plugin["spec"]["url"],
        "oci://registry.example/cert-sync/filter:1.2.3"
    );
    assert_eq!(plugin["spec"]["sha256"], sha.as_str());
}

#[test]
fn invalid_settings_render_nothing() {
    let settings = GatewaySettings {
        selector: Default::default(),
        ..GatewaySettings::default()
    };
    assert!(render(&settings).is_err());
    assert!(wasm_plugin(&settings).is_err());
    assert!(envoy_filter(&settings).is_err());
    assert!(gateway(&settings).is_err());
    assert!(manifest_yaml(&settings).is_err());
}

#[test]
fn the_report_token_reaches_only_the_plugin_config() {
    let mut settings = GatewaySettings::default();
    settings.plugin.report_token = Some(ReportToken::new("t0k3n").unwrap());
    let [filter, gw, plugin] = <[Value; 3]>::try_from(render(&settings).unwrap()).unwrap();
    assert_eq!(plugin["spec"]["pluginConfig"]["report_token"], "t0k3n");
    assert!(!filter.to_string().contains("t0k3n"));
    assert!(!gw.to_string().contains("t0k3n"));
    let default_plugin = wasm_plugin(&GatewaySettings::default()).unwrap();
    assert!(default_plugin["spec"]["pluginConfig"]
        .get("report_token")
        .is_none());
}
