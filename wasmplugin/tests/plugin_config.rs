//! The rendered `pluginConfig` is what the filter's own parser accepts, and
//! the settings checks agree with the filter's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use certsync_filter::config::PluginConfig;
use certsync_wasmplugin::{
    plugin_config, wasm_plugin, GatewaySettings, ReportToken, ADMIN_CLUSTER, CONTROLLER_CLUSTER,
    REPORT_PATH,
};
use std::time::Duration;

fn parse(settings: &GatewaySettings) -> PluginConfig {
    let rendered = wasm_plugin(settings).unwrap();
    // Istio hands the filter `pluginConfig` serialized as JSON.
    let json = serde_json::to_vec(&rendered["spec"]["pluginConfig"]).unwrap();
    PluginConfig::parse(&json).unwrap()
}

#[test]
fn default_plugin_config_parses_with_the_documented_values() {
    let config = parse(&GatewaySettings::default());
    assert_eq!(config.admin_cluster, ADMIN_CLUSTER);
    assert_eq!(config.report_cluster, CONTROLLER_CLUSTER);
    assert_eq!(config.report_path, "/v1/reports");
    assert_eq!(
        config.report_authority,
        "cert-sync.istio-system.svc.cluster.local:8080"
    );
    assert_eq!(config.interval, Duration::from_secs(1));
    assert_eq!(config.heartbeat, Duration::from_secs(10));
    assert_eq!(config.timeout, Duration::from_secs(2));
    assert_eq!(config.max_backoff, Duration::from_secs(30));
    assert_eq!(config.report_token, None);
    assert_eq!(config.pod_name, None);
    for name in [
        "kubernetes://shop.tls",
        "kubernetes://shop.tls-cacert",
        "file-cert:/etc/certs/a.crt~/etc/certs/a.key",
        "file-root:/etc/certs/ca.crt",
        "default",
        "ROOTCA",
    ] {
        assert!(config.reports_resource(name), "{name}");
    }
    assert!(!config.reports_resource("something-else"));
}

#[test]
fn report_path_is_the_core_protocol_path() {
    assert_eq!(REPORT_PATH, certsync_contract::report::REPORT_PATH);
}

#[test]
fn custom_settings_parse_too() {
    let mut settings = GatewaySettings::default();
    settings.plugin.interval_ms = 100;
    settings.plugin.heartbeat_ms = 100;
    settings.plugin.report_token = Some(ReportToken::new("t0k3n").unwrap());
    settings.plugin.resource_prefixes.clear();
    settings.controller_host = "fd00::10".into();
    let config = parse(&settings);
    assert_eq!(config.interval, Duration::from_millis(100));
    assert_eq!(config.report_token.as_deref(), Some("t0k3n"));
    assert_eq!(config.report_authority, "[fd00::10]:8080");
    assert!(config.reports_resource("anything"));
}

/// Settings the crate refuses are ones the filter would refuse too: fed to
/// the filter anyway, they fail there with the same field named.
#[test]
fn refused_settings_are_refused_by_the_filter_as_well() {
    type Mutation = fn(&mut GatewaySettings);
    let cases: [(Mutation, &str); 4] = [
        (|s| s.plugin.interval_ms = 99, "interval_ms"),
        (|s| s.plugin.heartbeat_ms = 999, "heartbeat_ms"),
        (|s| s.plugin.timeout_ms = 0, "timeout_ms"),
        (|s| s.plugin.max_backoff_ms = 0, "max_backoff_ms"),
    ];
    for (mutate, field) in cases {
        let mut settings = GatewaySettings::default();
        mutate(&mut settings);
        let ours = settings.validate().unwrap_err().to_string();
        assert!(ours.contains(field), "{ours}");
        let json = serde_json::to_vec(&plugin_config(&settings)).unwrap();
        let theirs = PluginConfig::parse(&json).unwrap_err().to_string();
        assert!(theirs.contains(field), "{theirs}");
    }
}
