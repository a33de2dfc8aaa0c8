//! The checked-in CRD must be what the Rust types generate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use certsync_controller::crd::CertMerge;
use serde_json::Value;

/// Every CRD cert-sync ships, with the file it is checked in as.
fn crds() -> Vec<(&'static str, Value)> {
    use certsync_controller::crd::VaultCertificate;
    use kube::CustomResourceExt;
    vec![
        (
            "crds/certmerge.yaml",
            serde_json::to_value(CertMerge::crd()).unwrap(),
        ),
        (
            "crds/vaultcertificate.yaml",
            serde_json::to_value(VaultCertificate::crd()).unwrap(),
        ),
    ]
}

/// A CRD as YAML, as checked in under `controller/crds/`. Written here,
/// not by the controller: it never needs YAML at run time.
fn crd_yaml(crd: &Value) -> String {
    format!(
        "# Generated from controller/src/crd.rs; do not edit.\n# Regenerate: UPDATE_CRDS=1 cargo test -p cert-sync --test crd\n{}",
        certsync_testkit::yaml::documents(std::slice::from_ref(crd)).unwrap()
    )
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    for (file, crd) in crds() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let generated = crd_yaml(&crd);
        if std::env::var_os("UPDATE_CRDS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} is stale; regenerate it with:\n  UPDATE_CRDS=1 cargo test -p cert-sync --test crd",
            path.display()
        );
    }
}

/// The YAML says what the JSON says.
#[test]
fn the_crd_yaml_parses_back_to_the_generated_crd() {
    for (file, crd) in crds() {
        let parsed: Value = serde_norway::from_str(&crd_yaml(&crd)).unwrap();
        assert_eq!(parsed, crd, "{file}");
    }
}

#[test]
fn a_vault_certificate_converts_with_default_fields() {
    use certsync_controller::crd::VaultCertificate;
    let vc: VaultCertificate = serde_json::from_value(serde_json::json!({
        "apiVersion": "certsync.istio.io/v1alpha1", "kind": "VaultCertificate",
        "metadata": {"name": "shop", "namespace": "apps", "uid": "u", "resourceVersion": "9"},
        "spec": {"path": "shop/tls", "fields": {"privateKey": "key"}}
    }))
    .unwrap();
    let m = vc.to_model();
    assert_eq!(m.key.to_string(), "apps/shop");
    assert_eq!(m.path, "shop/tls");
    assert_eq!(
        (
            m.fields.certificate.as_str(),
            m.fields.private_key.as_str(),
            m.fields.ca.as_str()
        ),
        ("tls.crt", "key", "ca.crt")
    );
    assert_eq!(m.resource_version, "9");
}

#[test]
fn the_crd_serves_v1alpha1_with_a_status_subresource_and_camel_case_fields() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(CertMerge::crd()).unwrap();
    assert_eq!(crd["spec"]["group"], "certsync.istio.io");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert!(version["subresources"]["status"].is_object());
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert!(spec["secretList"].is_object() && spec["selector"].is_object());
    assert_eq!(crd["spec"]["scope"], "Namespaced");
}

#[test]
fn a_certmerge_converts_to_the_core_model_with_the_gateway_namespace_as_default() {
    let cm: CertMerge = serde_json::from_value(serde_json::json!({
        "apiVersion": "certsync.istio.io/v1alpha1", "kind": "CertMerge",
        "metadata": {"name": "shop", "namespace": "shop", "creationTimestamp": "2026-11-22T10:00:00Z"},
        "spec": {"name": "shop.merged",
                 "selector": [{"labelSelector": {"matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}, "namespace": "shop"}],
                 "secretList": [{"name": "extra", "namespace": "shop"}]}
    }))
    .unwrap();
    let m = cm.to_model("istio-system");
    assert_eq!(m.target.to_string(), "istio-system/shop.merged");
    assert_eq!(m.key.to_string(), "shop/shop");
    assert_eq!(m.selectors[0].label_selector.match_labels["app"], "web");
    assert_eq!(
        m.selectors[0].label_selector.match_expressions[0].values,
        ["a"]
    );
    assert_eq!(m.secrets[0].to_string(), "shop/extra");
    assert_eq!(m.created, 1_795_341_600);
}
