//! `naive-watcher`: the baseline for the controller benchmark
//! (`e2e/bench/src/bin/controller_bench`), not part of the product.
//!
//! It is what a straightforward kube-rs controller does: watch every Secret
//! in the cluster (no `type=kubernetes.io/tls` field selector, not
//! metadata-only) and keep all of them, data included, in a reflector
//! store. cert-sync's memory is judged against this process's peak RSS, so
//! it must do nothing beyond that: it prints `synced N` to stdout once the
//! initial list is in the store, then keeps the store current until killed.
//!
//! `KUBECONFIG` (or the in-cluster environment) selects the API server.

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::{reflector, watcher, WatchStreamExt as _};
use kube::{Api, Client};
use std::io::Write as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let api = Api::<Secret>::all(client);
    let (store, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects();
    let drive = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                tracing::warn!(error = %e, "watch error");
            }
        }
    });
    store.wait_until_ready().await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "synced {}", store.len())?;
    out.flush()?;
    drop(out);
    drive.await?;
    Ok(())
}
