//! `cert-sync status`: reads the controller's `/v1/status` (with `--server`)
//! or the manifest ConfigMap (with the kubeconfig) and prints the table.

use crate::config::{StatusArgs, StatusOutput};
use crate::core::manifest;
use crate::core::status::{self, TableWidth};
use anyhow::{bail, ensure, Context, Result};
use http_body_util::{BodyExt, Collected, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::HOST;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// `cert-sync status`.
pub async fn run(args: &StatusArgs) -> Result<()> {
    let json = match &args.server {
        Some(server) => http_get(server, "/v1/status").await?,
        None => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API (KUBECONFIG)")?;
            let name = manifest::NAME;
            crate::runtime::kube::cluster::read_manifest_json(&client, &args.namespace)
                .await
                .with_context(|| format!("reading ConfigMap {}/{name}", args.namespace))?
                .with_context(|| {
                    format!(
                        "no manifest in ConfigMap {}/{name} (is cert-sync running?)",
                        args.namespace
                    )
                })?
        }
    };
    let view = status::parse(&json).context("reading the status")?;
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
/// How much of a refusal's body the error quotes.
const QUOTED_CHARS: usize = 1024;

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
    tokio::time::timeout(timeout, exchange(&authority, path, max_bytes))
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))
        .and_then(|answer| answer)
        .with_context(|| format!("GET {url}"))
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

/// One request on a fresh connection; the body is read up to `max_bytes`.
async fn exchange(authority: &str, path: &str, max_bytes: usize) -> Result<String> {
    let stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("starting HTTP/1.1")?;
    let request = Request::get(path)
        .header(HOST, authority)
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let answer = async move {
        let response = sender.send_request(request).await?;
        // Dropping the sender lets the connection end once the body is read.
        drop(sender);
        let status = response.status();
        let body = Limited::new(response.into_body(), max_bytes)
            .collect()
            .await;
        Ok::<_, hyper::Error>((status, body))
    };
    // The connection is driven alongside the exchange; its own error, if
    // any, is also the exchange's.
    let (answer, _) = tokio::join!(answer, connection);
    let (status, body) = answer.context("reading the answer")?;
    let body = body.map(Collected::to_bytes).map_err(|e| {
        if e.is::<LengthLimitError>() {
            anyhow::anyhow!("the answer is over {max_bytes} bytes")
        } else {
            anyhow::Error::from_boxed(e).context("reading the answer")
        }
    });
    if status != StatusCode::OK {
        let quoted = body.as_deref().map(quote).unwrap_or_default();
        bail!("answered {status}: {quoted}");
    }
    String::from_utf8(body?.to_vec()).context("the answer is not UTF-8")
}

/// The start of a refusal's body, trimmed, for the error message.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
#[path = "status_cli_tests.rs"]
mod tests;
