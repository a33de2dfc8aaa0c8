//! `fake-apiserver`: the fake Kubernetes API server as a standalone process,
//! for the end-to-end suite (controller binary + real Envoys + this).
//!
//! ```text
//! fake-apiserver [--port N] [--kubeconfig-out PATH] [--seed FILE.json]
//!                [--event-log N] [--bookmark-interval-ms N]
//! ```
//!
//! Prints `listening on http://127.0.0.1:PORT` once serving (after writing
//! the kubeconfig, if asked), then runs until SIGINT/SIGTERM. The fault and
//! inspection API is under `/__fake/…`. Requests are logged with tracing
//! (`RUST_LOG`, default `info`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use certsync_fakekube::{FakeApiServer, Options};
use tracing_subscriber::EnvFilter;

struct Args {
    options: Options,
    kubeconfig_out: Option<PathBuf>,
    seed: Option<PathBuf>,
    /// Added to every request, like a real API server's round trip (one
    /// measured at about four times this fake's).
    latency: Option<Duration>,
}

fn usage() -> &'static str {
    "usage: fake-apiserver [--port N] [--kubeconfig-out PATH] [--seed FILE.json] \
     [--event-log N] [--bookmark-interval-ms N] [--latency-ms N]"
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        options: Options::default(),
        kubeconfig_out: None,
        seed: None,
        latency: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{}", usage());
            std::process::exit(0);
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it.next().with_context(|| format!("{name} needs a value")),
            }
        };
        match name.as_str() {
            "--port" => args.options.port = value()?.parse().context("--port")?,
            "--kubeconfig-out" => args.kubeconfig_out = Some(value()?.into()),
            "--seed" => args.seed = Some(value()?.into()),
            "--event-log" => {
                args.options.event_log_capacity = value()?.parse().context("--event-log")?
            }
            "--bookmark-interval-ms" => {
                args.options.bookmark_interval =
                    Duration::from_millis(value()?.parse().context("--bookmark-interval-ms")?)
            }
            "--latency-ms" => {
                args.latency = Some(Duration::from_millis(
                    value()?.parse().context("--latency-ms")?,
                ))
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = parse_args()?;
    let server = FakeApiServer::start_with(args.options).await?;
    if let Some(latency) = args.latency {
        server.add_latency(latency, certsync_fakekube::FaultMatch::any());
    }
    if let Some(seed) = &args.seed {
        let text =
            std::fs::read_to_string(seed).with_context(|| format!("reading {}", seed.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", seed.display()))?;
        let n = server.put_all(value)?;
        tracing::info!(objects = n, seed = %seed.display(), "seeded");
    }
    if let Some(path) = &args.kubeconfig_out {
        // Write then rename, so a reader polling for the file never sees half of it.
        let tmp = path.with_extension("tmp");
        server.write_kubeconfig(&tmp)?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("listening on {}", server.url());
    tracing::info!(url = %server.url(), "fake API server ready");
    wait_for_signal().await?;
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}
