//! Unit tests of `config`.

use super::*;

fn source(name: &str) -> SdsSource {
    SdsSource {
        resource: format!("kubernetes://{name}"),
        path: PathBuf::from(format!("/sds/{name}/sds.yaml")),
        watched_directory: Some(PathBuf::from(format!("/sds/{name}"))),
    }
}

#[test]
fn plugin_config_serializes_the_fixed_field_names() {
    let config = PluginConfig::default()
        .report_token("t0k")
        .resource_prefixes(&["kubernetes://"])
        .heartbeat_ms(10_000)
        .timeout_ms(2000)
        .max_backoff_ms(30_000)
        .report_path("/v1/reports")
        .report_authority("cert-sync")
        .interval_ms(1000)
        .to_json();
    assert_eq!(
        config,
        json!({
            "admin_cluster": "cert-sync-admin",
            "report_cluster": "cert-sync-controller",
            "report_path": "/v1/reports",
            "report_authority": "cert-sync",
            "interval_ms": 1000,
            "heartbeat_ms": 10000,
            "timeout_ms": 2000,
            "max_backoff_ms": 30000,
            "report_token": "t0k",
            "resource_prefixes": ["kubernetes://"],
            "pod_name": "gw-0",
            "pod_namespace": "istio-system",
        })
    );
    assert_eq!(
        PluginConfig::minimal("c").to_json(),
        json!({ "report_cluster": "c" })
    );
}

#[test]
fn bootstrap_without_filter_has_no_status_listener() {
    let config = Bootstrap::builder()
        .host("a.example.com", source("a"))
        .host("b.example.com", source("b"))
        .http_listener(true)
        .build()
        .unwrap();
    let doc = config.to_json();
    let listeners = doc["static_resources"]["listeners"].as_array().unwrap();
    let names: Vec<&str> = listeners
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["https", "http"]);
    let chains = listeners[0]["filter_chains"].as_array().unwrap();
    assert_eq!(chains.len(), 2);
    assert_eq!(
        chains[1]["filter_chain_match"]["server_names"][0],
        "b.example.com"
    );
    let sds = &chains[1]["transport_socket"]["typed_config"]["common_tls_context"]
        ["tls_certificate_sds_secret_configs"][0];
    assert_eq!(sds["name"], "kubernetes://b");
    assert_eq!(
        sds["sds_config"]["path_config_source"]["watched_directory"]["path"],
        "/sds/b"
    );
    let clusters = doc["static_resources"]["clusters"].as_array().unwrap();
    assert_eq!(clusters[0]["name"], ADMIN_CLUSTER);
    assert_eq!(
        clusters[0]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["port_value"],
        config.admin_port
    );
    assert_eq!(clusters[1]["name"], CONTROLLER_CLUSTER);
    assert!(!config.with_filter());
    let ports = [
        config.admin_port,
        config.https_port,
        config.http_port.unwrap(),
        config.receiver_port,
    ];
    let unique: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(unique.len(), ports.len());
}

#[test]
fn bootstrap_with_filter_embeds_the_plugin_configuration() {
    let config = Bootstrap::builder()
        .with_filter(true)
        .wasm_path("/x/certsync_filter.wasm")
        .plugin_config(PluginConfig::default().report_token("abc"))
        .build()
        .unwrap();
    let doc = config.to_json();
    let listeners = doc["static_resources"]["listeners"].as_array().unwrap();
    assert_eq!(listeners.len(), 1, "no hosts, so no https listener");
    let hcm = &listeners[0]["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = hcm["http_filters"].as_array().unwrap();
    assert_eq!(filters[0]["name"], WASM_FILTER);
    assert_eq!(filters[1]["name"], "envoy.filters.http.router");
    let wasm = &filters[0]["typed_config"]["config"];
    assert_eq!(wasm["root_id"], ROOT_ID);
    assert_eq!(wasm["vm_config"]["runtime"], "envoy.wasm.runtime.v8");
    assert_eq!(
        wasm["vm_config"]["code"]["local"]["filename"],
        "/x/certsync_filter.wasm"
    );
    let embedded: Value =
        serde_json::from_str(wasm["configuration"]["value"].as_str().unwrap()).unwrap();
    assert_eq!(embedded["report_token"], "abc");
    assert_eq!(embedded["report_cluster"], CONTROLLER_CLUSTER);
}
