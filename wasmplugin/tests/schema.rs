//! The rendered objects validate against Istio's real CRD schemas (from the
//! pinned npm package @kubernetes-models/istio, offline), including a check
//! for unknown fields the API server would silently prune. Each negative
//! test proves the validator catches one kind of mistake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

mod support;

use certsync_wasmplugin::{render, GatewaySettings, ModuleSource, ReportToken};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

struct Verdict {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `schema/validate.mjs` on the objects, as JSON lines on stdin.
fn validate(objects: &[Value]) -> Verdict {
    let script = support::crate_dir().join("schema/validate.mjs");
    let mut child = Command::new(support::node())
        .arg(&script)
        .arg("--node-modules")
        .arg(support::schema_node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running node (is Node.js installed?)");
    let mut input = String::new();
    for object in objects {
        input.push_str(&serde_json::to_string(object).unwrap());
        input.push('\n');
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let code = output.status.code();
    let verdict = Verdict {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    // 2 is a usage or setup problem, never a verdict on the objects.
    assert!(
        matches!(code, Some(0 | 1)),
        "validate.mjs could not run ({code:?}): {}",
        verdict.stderr
    );
    verdict
}

fn assert_valid(objects: &[Value]) {
    let verdict = validate(objects);
    assert!(verdict.ok, "schema validation failed:\n{}", verdict.stderr);
    assert_eq!(
        verdict.stdout.lines().count(),
        objects.len(),
        "{}",
        verdict.stdout
    );
}

fn assert_invalid(objects: &[Value], needle: &str) {
    let verdict = validate(objects);
    assert!(!verdict.ok, "expected a schema error about {needle}");
    assert!(
        verdict.stderr.contains(needle),
        "error should mention {needle}:\n{}",
        verdict.stderr
    );
}

fn wasm_plugin_default() -> Value {
    render(&GatewaySettings::default()).unwrap().remove(2)
}

#[test]
fn default_objects_are_valid() {
    assert_valid(&render(&GatewaySettings::default()).unwrap());
}

#[test]
fn gateway_api_objects_are_valid() {
    let gateways = ["web".to_owned(), "api".to_owned()];
    let objects =
        certsync_wasmplugin::render_for_gateway_api(&GatewaySettings::default(), &gateways)
            .unwrap();
    assert_eq!(objects.len(), 3);
    assert_valid(&objects);
}

#[test]
fn variant_objects_are_valid() {
    let mut settings = GatewaySettings {
        namespace: "istio-ingress".into(),
        status_bind: None,
        module: ModuleSource::Url {
            url: "oci://registry.example/cert-sync/filter:1.2.3".into(),
            sha256: Some("0123456789abcdef".repeat(4)),
        },
        connect_timeout_ms: 250,
        ..GatewaySettings::default()
    };
    settings.plugin.report_token = Some(ReportToken::new("t0k3n").unwrap());
    settings
        .selector
        .insert("app.kubernetes.io/name".into(), "edge".into());
    assert_valid(&render(&settings).unwrap());
}

#[test]
fn a_wrong_enum_value_is_rejected() {
    let mut plugin = wasm_plugin_default();
    plugin["spec"]["failStrategy"] = "SOMETIMES".into();
    assert_invalid(
        &[plugin],
        "/spec/failStrategy must be equal to one of the allowed values",
    );
}

#[test]
fn a_wrong_type_is_rejected() {
    let mut plugin = wasm_plugin_default();
    plugin["spec"]["match"][0]["ports"][0]["number"] = "15099".into();
    assert_invalid(&[plugin], "/spec/match/0/ports/0/number must be integer");
}

/// The API server would prune a misspelled field and Istio would use its
/// default (here FAIL_CLOSE): the validator must say so.
#[test]
fn an_unknown_field_is_rejected() {
    let mut plugin = wasm_plugin_default();
    let spec = plugin["spec"].as_object_mut().unwrap();
    let value = spec.remove("failStrategy").unwrap();
    spec.insert("failStategy".into(), value);
    assert_invalid(&[plugin], "unknown field /spec/failStategy");
}

/// Free-form fields (pluginConfig, EnvoyFilter patch values) hold anything.
#[test]
fn free_form_fields_are_not_checked_for_unknown_keys() {
    let mut objects = render(&GatewaySettings::default()).unwrap();
    objects[2]["spec"]["pluginConfig"]["made_up"] = serde_json::json!({"x": 1});
    objects[0]["spec"]["configPatches"][0]["patch"]["value"]["made_up"] = 1.into();
    assert_valid(&objects);
}

#[test]
fn a_missing_required_field_is_rejected() {
    let mut gateway = render(&GatewaySettings::default()).unwrap().remove(1);
    gateway["spec"]["servers"][0]
        .as_object_mut()
        .unwrap()
        .remove("hosts");
    assert_invalid(
        &[gateway],
        "/spec/servers/0 must have required property hosts",
    );
}
