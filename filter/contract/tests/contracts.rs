//! The cross-component contracts: their spelling is what other components
//! (and Istio, and users' manifests) depend on, so it is pinned here. The
//! same tests run natively and compiled to `wasm32-unknown-unknown`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use certsync_contract::plugin_config::{PluginConfig, MIN_INTERVAL_MS};
use certsync_contract::{metadata, sds, wire, InvalidKind};
use serde_json::json;

#[test]
fn invalid_kinds_have_distinct_stable_labels() {
    let labels: Vec<&str> = InvalidKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        labels,
        [
            "too_large",
            "malformed_certificate",
            "missing_key",
            "malformed_key",
            "unsupported_key",
            "key_mismatch",
            "expired",
            "not_yet_valid",
            "chain_order",
        ]
    );
    assert_eq!(InvalidKind::KeyMismatch.to_string(), "key_mismatch");
}

#[test]
fn sds_names_are_istios() {
    assert_eq!(sds::credential("shop.tls"), "kubernetes://shop.tls");
    assert_eq!(
        sds::credential_ca("shop.tls"),
        "kubernetes://shop.tls-cacert"
    );
    assert_eq!(
        sds::gateway_credential("shop", "tls"),
        "kubernetes-gateway://shop/tls"
    );
    assert_eq!(
        sds::file_cert("/etc/certs/a.crt", "/etc/certs/a.key"),
        "file-cert:/etc/certs/a.crt~/etc/certs/a.key"
    );
    assert_eq!(
        sds::file_root("/etc/certs/ca.crt"),
        "file-root:/etc/certs/ca.crt"
    );
    assert_eq!((sds::WORKLOAD_CERT, sds::ROOT_CA), ("default", "ROOTCA"));
    // A Gateway API reference is not a `kubernetes://` one.
    assert!(!sds::gateway_credential("a", "b").starts_with(sds::KUBERNETES_PREFIX));
}

#[test]
fn the_mesh_identity_is_default_and_rootca_by_exact_name() {
    assert!(sds::is_mesh_identity(sds::WORKLOAD_CERT));
    assert!(sds::is_mesh_identity(sds::ROOT_CA));
    for other in [
        "default-extra",
        "ROOTCA2",
        "rootca",
        "",
        "kubernetes://default",
        "file-root:/etc/certs/ROOTCA",
    ] {
        assert!(!sds::is_mesh_identity(other), "{other:?}");
    }
    // No other kind of Istio name starts like them, so as resource prefixes
    // they select the mesh identity alone.
    for name in [
        sds::credential("default"),
        sds::credential_ca("ROOTCA"),
        sds::gateway_credential("default", "ROOTCA"),
        sds::file_cert("default", "ROOTCA"),
        sds::file_root("ROOTCA"),
    ] {
        assert!(
            !name.starts_with(sds::WORKLOAD_CERT) && !name.starts_with(sds::ROOT_CA),
            "{name}"
        );
    }
}

#[test]
fn a_credential_resource_names_its_secret_but_its_ca_does_not() {
    assert_eq!(
        sds::credential_secret(&sds::credential("shop.tls")),
        Some("shop.tls")
    );
    assert_eq!(
        sds::credential_secret(&sds::credential_ca("shop.tls")),
        None
    );
    assert_eq!(sds::credential_secret("file-cert:/a~/b"), None);
    assert_eq!(
        sds::credential_secret(&sds::gateway_credential("a", "b")),
        None
    );
}

#[test]
fn wire_names_and_keys_are_pinned() {
    assert_eq!(wire::ADMIN_CLUSTER, "cert-sync-admin");
    assert_eq!(wire::CONTROLLER_CLUSTER, "cert-sync-controller");
    assert_eq!(wire::REPORT_PATH, "/v1/reports");
    assert_eq!(wire::MODULE_PATH, "/v1/filter.wasm");
    for key in [
        metadata::AUTOSYNC,
        metadata::SOURCE,
        metadata::SOURCE_SHA256,
        metadata::REPUSHED_AT,
        metadata::REAPPLIED_AT,
    ] {
        assert!(key.starts_with("certsync.istio.io/"), "{key}");
    }
    assert_eq!(metadata::MANAGED_BY, "app.kubernetes.io/managed-by");
    assert_eq!(metadata::MANAGED_BY_VALUE, "cert-sync");
}

#[test]
fn a_minimal_plugin_config_is_only_its_report_cluster() {
    assert_eq!(
        PluginConfig::new("c").to_json(),
        json!({ "report_cluster": "c" })
    );
}

#[test]
fn a_full_plugin_config_round_trips_with_its_field_names() {
    let config = PluginConfig {
        admin_cluster: Some(wire::ADMIN_CLUSTER.into()),
        admin_authority: Some("admin".into()),
        report_path: Some(wire::REPORT_PATH.into()),
        report_authority: Some("cert-sync:8080".into()),
        interval_ms: Some(MIN_INTERVAL_MS),
        heartbeat_ms: Some(1_000),
        resync_ms: Some(2_000),
        timeout_ms: Some(3_000),
        max_backoff_ms: Some(4_000),
        report_token: Some("t0k".into()),
        resource_prefixes: Some(vec![sds::KUBERNETES_PREFIX.into()]),
        pod_name: Some("gw-0".into()),
        pod_namespace: Some("istio-system".into()),
        ..PluginConfig::new(wire::CONTROLLER_CLUSTER)
    };
    let value = config.to_json();
    assert_eq!(
        value,
        json!({
            "admin_cluster": "cert-sync-admin",
            "admin_authority": "admin",
            "report_cluster": "cert-sync-controller",
            "report_path": "/v1/reports",
            "report_authority": "cert-sync:8080",
            "interval_ms": 100,
            "heartbeat_ms": 1000,
            "resync_ms": 2000,
            "timeout_ms": 3000,
            "max_backoff_ms": 4000,
            "report_token": "t0k",
            "resource_prefixes": ["kubernetes://"],
            "pod_name": "gw-0",
            "pod_namespace": "istio-system",
        })
    );
    let back: PluginConfig = serde_json::from_value(value).unwrap();
    assert_eq!(back, config);
}

#[test]
fn unknown_fields_and_nulls_where_a_default_applies_are_refused() {
    let parse = |text: &str| serde_json::from_str::<PluginConfig>(text);
    let err = parse(r#"{"report_cluster":"c","intervl_ms":1}"#).unwrap_err();
    assert!(err.to_string().contains("intervl_ms"), "{err}");
    assert!(parse(r#"{"interval_ms":1000}"#).is_err(), "report_cluster");
    for field in [
        "admin_cluster",
        "admin_authority",
        "report_path",
        "interval_ms",
        "heartbeat_ms",
        "resync_ms",
        "timeout_ms",
        "max_backoff_ms",
        "resource_prefixes",
    ] {
        let text = format!(r#"{{"report_cluster":"c","{field}":null}}"#);
        assert!(parse(&text).is_err(), "{field}: null accepted");
    }
    // Where there is nothing to default to, null is "not set".
    let config = parse(
        r#"{"report_cluster":"c","report_authority":null,"report_token":null,
            "pod_name":null,"pod_namespace":null}"#,
    )
    .unwrap();
    assert_eq!(config, PluginConfig::new("c"));
}
