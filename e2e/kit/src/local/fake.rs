//! The fake Kubernetes API server as a process, and the few things the rig
//! asks of it: store objects (namespaces, gateway Pods, source Secrets)
//! through its `/__fake/objects` API, and read Events and ConfigMaps back
//! through the ordinary Kubernetes paths.
//!
//! Plain blocking HTTP/1 ([`crate::http1`]): the fake speaks it, and the
//! rig needs no kube client or async runtime of its own for a handful of
//! calls.

use crate::http1;
use crate::pki::TestCert;
use crate::procs::Proc;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The annotation that selects a Secret for publishing.
pub use certsync_contract::metadata::AUTOSYNC;
/// Labels of the gateway pods (the controller's default selector).
pub const GATEWAY_LABEL: (&str, &str) = ("istio", "ingressgateway");

/// A running `fake-apiserver`.
pub struct FakeApi {
    proc: Proc,
    addr: SocketAddr,
    kubeconfig: PathBuf,
}

impl FakeApi {
    /// Starts `<bins>/fake-apiserver`, writing its kubeconfig and log in `dir`.
    pub fn start(bins: &Path, dir: &Path) -> Result<FakeApi> {
        let kubeconfig = dir.join("kubeconfig");
        let mut cmd = Command::new(bins.join("fake-apiserver"));
        cmd.arg("--kubeconfig-out")
            .arg(&kubeconfig)
            .args(["--bookmark-interval-ms", "2000"])
            .env("RUST_LOG", "warn");
        let mut proc = Proc::spawn("fake-apiserver", cmd, dir.join("fake-apiserver.log"), true)?;
        let line = proc.wait_for_line("listening on ", Duration::from_secs(30))?;
        let url = line.trim_start_matches("listening on ").trim();
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .with_context(|| format!("fake-apiserver printed {line:?}"))?;
        Ok(FakeApi {
            proc,
            addr,
            kubeconfig,
        })
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn check_alive(&mut self) -> Result<()> {
        self.proc.check_alive()
    }

    /// Creates or replaces objects (one, an array or a List), notifying watchers.
    pub fn put(&self, objects: &Value) -> Result<()> {
        let body = serde_json::to_vec(objects)?;
        let response = http1::post(
            self.addr,
            "/__fake/objects",
            &[("content-type", "application/json")],
            &body,
        )?;
        if !response.is_success() {
            bail!(
                "fake-apiserver refused objects ({}): {}",
                response.status,
                response.text()
            );
        }
        Ok(())
    }

    /// `GET` a Kubernetes API path; `None` on 404.
    pub fn get(&self, path: &str) -> Result<Option<Value>> {
        let response = http1::get(self.addr, path)?;
        match response.status {
            404 => Ok(None),
            s if (200..300).contains(&s) => Ok(Some(
                serde_json::from_str(&response.text())
                    .with_context(|| format!("parsing GET {path}"))?,
            )),
            s => bail!("GET {path} answered {s}: {}", response.text()),
        }
    }

    /// Every Event in `namespace` (core/v1 and events.k8s.io/v1 alike) as
    /// `(reason, message, regarding object name)`.
    pub fn events(&self, namespace: &str) -> Result<Vec<EventSummary>> {
        let mut out = Vec::new();
        for path in [
            format!("/api/v1/namespaces/{namespace}/events"),
            format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
        ] {
            let Some(list) = self.get(&path)? else {
                continue;
            };
            for item in list["items"].as_array().into_iter().flatten() {
                let text = |keys: &[&str]| {
                    keys.iter()
                        .find_map(|k| item.pointer(k).and_then(Value::as_str))
                        .unwrap_or_default()
                        .to_owned()
                };
                out.push(EventSummary {
                    reason: text(&["/reason"]),
                    message: text(&["/note", "/message"]),
                    object: text(&["/regarding/name", "/involvedObject/name"]),
                    kind: text(&["/type"]),
                });
            }
        }
        Ok(out)
    }
}

/// One Event, reduced to what a person reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    pub reason: String,
    pub message: String,
    /// Name of the object the Event is about.
    pub object: String,
    /// `Normal` or `Warning`.
    pub kind: String,
}

/// A `v1/Namespace`.
pub fn namespace(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name } })
}

/// A Running, Ready gateway `v1/Pod` on 127.0.0.1 (every local "pod"
/// shares the loopback address, as the reports' source address).
pub fn gateway_pod(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": { GATEWAY_LABEL.0: GATEWAY_LABEL.1, "app": "istio-ingressgateway" },
        },
        "spec": { "containers": [{ "name": "istio-proxy", "image": "envoy" }] },
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "podIPs": [{ "ip": "127.0.0.1" }],
            "conditions": [{ "type": "Ready", "status": "True" }],
        },
    })
}

/// An annotated `kubernetes.io/tls` Secret holding `chain_pem` and `key_pem`.
pub fn tls_secret(namespace: &str, name: &str, chain_pem: &str, key_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": { AUTOSYNC: "true" },
        },
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": base64(chain_pem.as_bytes()),
            "tls.key": base64(key_pem.as_bytes()),
        },
    })
}

/// [`tls_secret`] for a test certificate.
pub fn tls_secret_for(namespace: &str, name: &str, cert: &TestCert) -> Value {
    tls_secret(namespace, name, &cert.chain_pem, &cert.key_pem)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
