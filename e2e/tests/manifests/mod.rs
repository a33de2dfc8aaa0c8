//! Shared by the manifest tests (`kind_manifests.rs`, `install.rs`): YAML
//! documents, the strict k8s-openapi round trip, Istio's schemas (through
//! `wasmplugin/schema/validate.mjs`) and `kubectl kustomize`.
#![allow(dead_code)] // each test binary uses part of this

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

pub fn root() -> PathBuf {
    certsync_testkit::workspace_root()
}

pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

// ---------------------------------------------------------------- documents

/// One YAML document of one file.
#[derive(Clone)]
pub struct Doc {
    pub file: String,
    pub index: usize,
    pub value: Value,
}

impl Doc {
    pub fn str(&self, pointer: &str) -> &str {
        self.value
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.str("/apiVersion")
    }
    pub fn kind(&self) -> &str {
        self.str("/kind")
    }
    pub fn name(&self) -> &str {
        self.str("/metadata/name")
    }
    pub fn namespace(&self) -> &str {
        self.str("/metadata/namespace")
    }
    pub fn label(&self) -> String {
        format!(
            "{} (document {}): {} {}",
            self.file,
            self.index,
            self.kind(),
            self.name()
        )
    }
}

pub fn parse_docs(file: &str, text: &str) -> Vec<Doc> {
    serde_norway::Deserializer::from_str(text)
        .enumerate()
        .map(|(index, de)| {
            let value = Value::deserialize(de)
                .unwrap_or_else(|e| panic!("{file}: document {index} is not valid YAML: {e}"));
            Doc {
                file: file.to_owned(),
                index,
                value,
            }
        })
        // A leading comment block before the first `---` is an empty document.
        .filter(|doc| !doc.value.is_null())
        .collect()
}

pub fn find<'a>(docs: &'a [Doc], kind: &str, name: &str) -> &'a Doc {
    docs.iter()
        .find(|d| d.kind() == kind && d.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

// ------------------------------------------------------- strict k8s decoding

/// Decodes into `T` and re-encodes; every difference from the input is a
/// field the typed decoder dropped, added or changed.
pub fn strict<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), String> {
    let typed: T = serde_json::from_value(value.clone()).map_err(|e| format!("decode: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("re-encode: {e}"))?;
    let mut problems = Vec::new();
    diff("", value, &back, &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

pub fn diff(path: &str, input: &Value, back: &Value, out: &mut Vec<String>) {
    match (input, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let here = format!("{path}/{key}");
                match b.get(key) {
                    Some(vb) => diff(&here, va, vb, out),
                    None if va.is_null() => {}
                    None => out.push(format!("{here}: unknown field (a strict decoder refuses it; the API server would drop it)")),
                }
            }
            for key in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}/{key}: added by the decoder"));
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff(&format!("{path}/{i}"), va, vb, out);
            }
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => {}
        _ if input == back => {}
        _ => out.push(format!("{path}: {input} decodes as {back}")),
    }
}

/// The strict check for a Kubernetes built-in kind; `None` for other kinds.
pub fn check_kubernetes(
    api_version: &str,
    kind: &str,
    value: &Value,
) -> Option<Result<(), String>> {
    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    Some(match (api_version, kind) {
        ("v1", "Namespace") => strict::<core::Namespace>(value),
        ("v1", "Service") => strict::<core::Service>(value),
        ("v1", "ServiceAccount") => strict::<core::ServiceAccount>(value),
        ("v1", "Secret") => strict::<core::Secret>(value),
        ("v1", "ConfigMap") => strict::<core::ConfigMap>(value),
        ("apps/v1", "Deployment") => strict::<apps::Deployment>(value),
        ("policy/v1", "PodDisruptionBudget") => {
            strict::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(value)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => strict::<rbac::ClusterRole>(value),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            strict::<rbac::ClusterRoleBinding>(value)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => strict::<rbac::Role>(value),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => strict::<rbac::RoleBinding>(value),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            strict::<apiext::CustomResourceDefinition>(value)
        }
        _ => return None,
    })
}

// ------------------------------------------------- Istio schema (node script)

pub struct SchemaVerdict {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `wasmplugin/schema/validate.mjs` (as wasmplugin's own tests do) on
/// the objects, given as a JSON-lines file. A missing Node or schema package
/// fails with the command that installs it; nothing is skipped.
pub fn istio_schema(objects: &[Value], tag: &str) -> SchemaVerdict {
    let node_modules = std::env::var_os("CERTSYNC_SCHEMA_NODE_MODULES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/npm-schema/node_modules"));
    assert!(
        node_modules
            .join("@kubernetes-models/istio/package.json")
            .is_file(),
        "Istio schema package not found under {}: run `bash .ci/bootstrap` (or set CERTSYNC_SCHEMA_NODE_MODULES)",
        node_modules.display()
    );
    let lines: String = objects
        .iter()
        .map(|o| serde_json::to_string(o).unwrap() + "\n")
        .collect();
    let input = std::env::temp_dir().join(format!(
        "certsync-kind-manifests-{}-{tag}.jsonl",
        std::process::id()
    ));
    std::fs::write(&input, lines).unwrap();
    let node = std::env::var_os("NODE")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "node".into());
    let output = Command::new(node)
        .arg(root().join("wasmplugin/schema/validate.mjs"))
        .arg("--node-modules")
        .arg(&node_modules)
        .arg(&input)
        .output()
        .expect("running node (is Node.js installed? `bash .ci/bootstrap` needs it too)");
    let _ = std::fs::remove_file(&input);
    let verdict = SchemaVerdict {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    // 2 is a usage or setup problem, never a verdict on the objects.
    assert!(
        matches!(output.status.code(), Some(0 | 1)),
        "validate.mjs could not run ({:?}): {}",
        output.status.code(),
        verdict.stderr
    );
    verdict
}

// --------------------------------------------------------- the kind e2e

/// What run.sh applies for the controller (`kubectl apply -k`).
pub const OVERLAY: &str = "controller/deploy/overlays/credential";

/// The YAML files of `dir` (not its kustomization, which is rendered).
pub fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        // Kustomizations are rendered, not applied: install.rs checks them.
        .filter(|name| name != "kustomization.yaml")
        .map(|name| format!("{dir}/{name}"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {dir}");
    files
}

/// `NAME=value` assignments at the top level of run.sh (the fixed names the
/// manifests must agree with). Overridable ones (`${NAME:-…}`) keep the
/// default.
pub fn run_sh_vars() -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in read("e2e/kind/run.sh").lines() {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        let value = value.trim_matches('"');
        let value = match value
            .strip_prefix(&format!("${{{name}:-"))
            .and_then(|v| v.strip_suffix('}'))
        {
            Some(default) => default,
            None => value,
        };
        vars.insert(name.to_owned(), value.to_owned());
    }
    vars
}

pub fn var(vars: &BTreeMap<String, String>, name: &str) -> String {
    vars.get(name)
        .cloned()
        .unwrap_or_else(|| panic!("run.sh does not set {name}"))
}

/// Dockerfile instructions with continuation lines joined and comments dropped.
pub fn dockerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

// ----------------------------------------------------------------- kustomize

/// kubectl (with its built-in kustomize): `$KUBECTL`, else the one
/// `.ci/bootstrap` installs. Missing, it fails with the command that
/// installs it; nothing is skipped.
pub fn kubectl() -> PathBuf {
    let path = std::env::var_os("KUBECTL")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/venv/bin/kubectl"));
    assert!(
        path.is_file(),
        "kubectl not found at {}: run `bash .ci/bootstrap` (or set KUBECTL)",
        path.display()
    );
    path
}

/// `kubectl kustomize <dir>` (relative to the workspace), as documents
/// labelled `<dir> (rendered)`.
pub fn kustomize(dir: &str) -> Vec<Doc> {
    let output = Command::new(kubectl())
        .arg("kustomize")
        .arg(root().join(dir))
        .output()
        .expect("running kubectl kustomize");
    assert!(
        output.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_docs(
        &format!("{dir} (rendered)"),
        &String::from_utf8_lossy(&output.stdout),
    )
}

/// `kubectl patch --local` of `target` (a file) with the strategic-merge
/// patch `patch` (a file): the object a user gets from patching a live one.
pub fn patch_locally(target: &std::path::Path, patch: &str) -> Value {
    let output = Command::new(kubectl())
        .args([
            "patch",
            "--local",
            "--type",
            "strategic",
            "-o",
            "json",
            "-f",
        ])
        .arg(target)
        .arg("--patch-file")
        .arg(root().join(patch))
        .output()
        .expect("running kubectl patch --local");
    assert!(
        output.status.success(),
        "kubectl patch --local with {patch}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl patch prints JSON")
}
