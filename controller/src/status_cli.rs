//! `cert-sync status`: reads the controller's `/v1/status` (with `--server`)
//! or the manifest ConfigMap (with the kubeconfig) and prints the table.

use crate::config::{StatusArgs, StatusOutput};
use crate::core::manifest;
use crate::core::status::{self, TableWidth};
use crate::runtime::ops::http_get;
use anyhow::{bail, ensure, Context, Result};
use hyper::Uri;
use std::time::Duration;

/// `cert-sync status`.
pub async fn run(args: &StatusArgs) -> Result<()> {
    let view = match &args.server {
        Some(server) => {
            let json = http_get(server, "/v1/status").await?;
            status::parse(&json).context("reading the status")?
        }
        None => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (KUBECONFIG)")?;
            let name = manifest::NAME;
            let (index, shards) =
                crate::runtime::kube::cluster::read_manifest_parts(&client, &args.namespace)
                    .await
                    .with_context(|| format!("reading ConfigMaps {}/{name}*", args.namespace))?
                    .with_context(|| {
                        format!(
                            "no manifest in ConfigMap {}/{name} (is cert-sync running?)",
                            args.namespace
                        )
                    })?;
            manifest::shards::assemble(&index, &shards)
                .context("reading the manifest")?
                .into()
        }
    };
    let text = match args.output {
        StatusOutput::Json => serde_json::to_string_pretty(&view)? + "\n",
        StatusOutput::Table | StatusOutput::Wide => {
            let width = if args.output == StatusOutput::Wide {
                TableWidth::Wide
            } else {
                TableWidth::Normal
            };
            status::render_table(&view, width, jiff::Timestamp::now().as_second())
        }
    };
    print_quietly(&text)
}

/// Writes `text` to stdout. A reader that stopped reading (`| head -1`)
/// is not an error: the command ends quietly, as Unix tools do.
fn print_quietly(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Largest `/v1/status` answer read: thousands of certificates on dozens
/// of gateway pods stay far below it, and a wrong `--server` cannot make the
/// command buffer without bound.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Connecting and the whole exchange: a port-forward that went away fails
/// the command instead of hanging it.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET <server><path>` over HTTP/1.1 (the controller's port, usually
/// port-forwarded): the body of a 200 answer, anything else is an error.
async fn http_get(server: &str, path: &str) -> Result<String> {
    http_get_bounded(server, path, MAX_ANSWER_BYTES, ANSWER_TIMEOUT).await
}

async fn http_get_bounded(
    server: &str,
    path: &str,
    max_bytes: usize,
    timeout: Duration,
) -> Result<String> {
    let authority = authority_of(server)?;
    let url = format!("http://{authority}{path}");
    let body = http_get::get(&authority, path, max_bytes, timeout)
        .await
        .with_context(|| format!("GET {url}"))?;
    String::from_utf8(body.to_vec()).with_context(|| format!("GET {url}: the answer is not UTF-8"))
}

/// `host:port` of an `http://host[:port][/]` URL (port 80 by default).
fn authority_of(server: &str) -> Result<String> {
    const USAGE: &str =
        "--server must be an http:// URL (e.g. http://127.0.0.1:8080 after kubectl port-forward)";
    let uri: Uri = server
        .parse()
        .with_context(|| format!("{USAGE}, not {server:?}"))?;
    let authority = match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(authority)) => authority,
        _ => bail!("{USAGE}, not {server:?}"),
    };
    ensure!(
        matches!(uri.path(), "" | "/") && uri.query().is_none(),
        "{USAGE} without a path, not {server:?}"
    );
    Ok(format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    ))
}

#[cfg(test)]
#[path = "status_cli_tests.rs"]
mod tests;
