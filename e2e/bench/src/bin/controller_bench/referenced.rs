//! The verify-only half: natively referenced certificates. After the copy
//! phase, the gateway namespace holds one TLS Secret per annotated source;
//! one Istio Gateway per Secret references it by `credentialName` (as a
//! cert-manager `Certificate` in the gateway namespace would be), and
//! `cert-sync --publish=false` runs alone against that cluster.
//!
//! Measured: time to ready and until the manifest lists every referenced
//! certificate, peak RSS, CPU for the initial sync and per change, and the
//! time from a Secret update until the manifest expects the new leaf (seen
//! through a watch on the manifest ConfigMap, as the copy phase sees its
//! Secrets).

use crate::fake::FakeApi;
use crate::seed::{Pki, Scale};
use crate::{log, readyz, DEBOUNCE_MS, GATEWAY_NS, SETTLE};
use anyhow::{bail, Context, Result};
use certsync_testkit::procs::{self, Proc};
use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// How often the watched rows are looked at while waiting.
const POLL: Duration = Duration::from_millis(1);

/// The manifest's referenced rows as a watch last saw them: source →
/// (expected SHA-256, when that value first arrived).
type Rows = Arc<Mutex<BTreeMap<String, (String, Instant)>>>;

fn watch_rows(api: &FakeApi) -> Rows {
    let rows: Rows = Arc::default();
    let seen = Arc::clone(&rows);
    let configmaps =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(api.client.clone(), GATEWAY_NS);
    // The manifest's shards: each holds its rows as the whole did.
    let config = watcher::Config::default().labels("certsync.istio.io/manifest-part=shard");
    tokio::spawn(async move {
        let stream = watcher(configmaps, config).applied_objects();
        futures::pin_mut!(stream);
        while let Some(Ok(shard)) = stream.next().await {
            let now = Instant::now();
            let text = shard
                .data
                .and_then(|d| d.get("manifest.json").cloned())
                .unwrap_or_default();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let mut rows = seen.lock().unwrap_or_else(PoisonError::into_inner);
            for p in json["publications"].as_array().into_iter().flatten() {
                if p["target"]["kind"] != "referenced" {
                    continue;
                }
                let (Some(source), Some(sha)) = (p["source"].as_str(), p["sha256"].as_str()) else {
                    continue;
                };
                if rows.get(source).is_none_or(|(s, _)| s != sha) {
                    rows.insert(source.to_owned(), (sha.to_owned(), now));
                }
            }
        }
    });
    rows
}

pub struct ReferencedRun {
    pub gateways: usize,
    pub ready: Duration,
    pub all_rows: Duration,
    pub memory_synced: procs::Memory,
    pub memory_after_updates: procs::Memory,
    pub cpu_sync: f64,
    /// CPU seconds over all updates.
    pub cpu_updates: f64,
    /// Secret updated → the manifest expects its new SHA-256, one per update.
    pub latencies: Vec<Duration>,
}

/// The managed Secret the copy phase published for annotated source `k`.
fn published_name(scale: &Scale, k: usize) -> String {
    let (namespace, name) = scale.source(k);
    format!("{namespace}.{name}")
}

pub async fn referenced_phase(
    scale: &Scale,
    bins: &Path,
    kubeconfig: &Path,
    dir: &Path,
    api: &FakeApi,
    pki: &Pki,
) -> Result<ReferencedRun> {
    let annotated: Vec<usize> = (0..scale.secrets)
        .filter(|k| scale.is_annotated(*k))
        .collect();
    log(format!("verify-only: {} Istio Gateways", annotated.len()));
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "networking.istio.io",
        "v1",
        "Gateway",
    ));
    let gateways = Api::<DynamicObject>::namespaced_with(api.client.clone(), "apps", &resource);
    for (i, k) in annotated.iter().enumerate() {
        let name = format!("gw-{i:05}");
        // `*`: any host, nothing to check (the copied certificates' SANs
        // change with the updates); host coverage is microseconds per
        // host, unit-tested in core::hosts.
        let gateway = serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": "apps"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{
                "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                "hosts": ["*"],
                "tls": {"mode": "SIMPLE", "credentialName": published_name(scale, *k)}}]}
        });
        gateways
            .patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&gateway))
            .await
            .with_context(|| format!("creating Gateway apps/{name}"))?;
    }

    let http_port = certsync_testkit::ports::free_port()?;
    let http_addr = std::net::SocketAddr::from(([127, 0, 0, 1], http_port));
    let mut cmd = Command::new(bins.join("cert-sync"));
    cmd.env("KUBECONFIG", kubeconfig)
        .args(["--mode", "credential", "--publish=false"])
        .args(["--gateway-namespace", GATEWAY_NS])
        .args([
            "--leader-election",
            "false",
            "--manage-gateway-config",
            "false",
        ])
        .args(["--certmerge", "false"])
        .arg("--http-addr")
        .arg(http_addr.to_string())
        .arg("--debounce-ms")
        .arg(DEBOUNCE_MS.to_string());
    let rows = watch_rows(api);
    let start = Instant::now();
    let mut proc = Proc::spawn(
        "cert-sync (verify-only)",
        cmd,
        dir.join("verify.log"),
        false,
    )?;
    let timeout = Duration::from_secs(600);
    let mut ready = None;
    loop {
        proc.check_alive()?;
        if ready.is_none() && readyz(http_addr).await {
            ready = Some(start.elapsed());
        }
        if ready.is_some() && lock(&rows).len() >= annotated.len() {
            break;
        }
        if start.elapsed() > timeout {
            bail!(
                "verify-only: not every row after {timeout:?}{}",
                proc.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_rows = start.elapsed();
    let ready = ready.unwrap_or_default();
    log(format!(
        "verify-only: ready after {ready:.2?}, all {} rows after {all_rows:.2?}",
        annotated.len()
    ));
    tokio::time::sleep(SETTLE).await;
    let memory_synced = proc.memory()?;
    let cpu_sync = proc.cpu_seconds()?;

    // The copy phase left each update target's Secret holding that
    // update's certificate: rotating it back to its initial one is a change.
    let mut latencies = Vec::with_capacity(scale.updates);
    for u in 0..pki.updates.len() {
        let cert = pki.initial(scale, scale.update_target(u))?;
        let secret = published_name(scale, scale.update_target(u));
        let source = format!("{GATEWAY_NS}/{secret}");
        let sha = cert.fingerprint.to_string();
        let sent = Instant::now();
        api.patch_data(GATEWAY_NS, &secret, &pki.data(cert)).await?;
        let arrived = loop {
            if let Some((_, at)) = lock(&rows).get(&source).filter(|(s, _)| *s == sha) {
                break *at;
            }
            if sent.elapsed() > Duration::from_secs(30) {
                bail!(
                    "verify-only update {u}: {source} never expected {sha}{}",
                    proc.log_tail()
                );
            }
            tokio::time::sleep(POLL).await;
        };
        latencies.push(arrived.saturating_duration_since(sent));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proc.check_alive()?;
    Ok(ReferencedRun {
        gateways: annotated.len(),
        ready,
        all_rows,
        memory_synced,
        memory_after_updates: proc.memory()?,
        cpu_sync,
        cpu_updates: proc.cpu_seconds()? - cpu_sync,
        latencies,
    })
}

fn lock(rows: &Rows) -> std::sync::MutexGuard<'_, BTreeMap<String, (String, Instant)>> {
    rows.lock().unwrap_or_else(PoisonError::into_inner)
}
