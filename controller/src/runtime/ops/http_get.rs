//! A one-shot HTTP/1.1 `GET` for the few requests the controller makes
//! outside the Kubernetes API: `cert-sync status --server`, and the probe
//! of its own filter module through its Service. Plain `http://` in-cluster
//! or port-forwarded hops, so hyper's connection API is all it takes.

use anyhow::{anyhow, bail, Context, Result};
use http_body_util::{BodyExt, Collected, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::HOST;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// How much of a refusal's body the error quotes.
const QUOTED_CHARS: usize = 1024;

/// `GET http://<authority><path>` on a fresh connection: the body of a 200
/// answer (read up to `max_bytes`); anything else, or no whole answer
/// within `timeout`, is an error.
pub async fn get(
    authority: &str,
    path: &str,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Bytes> {
    tokio::time::timeout(timeout, exchange(authority, path, max_bytes))
        .await
        .map_err(|_| anyhow!("no answer within {timeout:?}"))
        .and_then(|answer| answer)
}

async fn exchange(authority: &str, path: &str, max_bytes: usize) -> Result<Bytes> {
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
            anyhow!("the answer is over {max_bytes} bytes")
        } else {
            anyhow::Error::from_boxed(e).context("reading the answer")
        }
    });
    if status != StatusCode::OK {
        let quoted = body.as_deref().map(quote).unwrap_or_default();
        bail!("answered {status}: {quoted}");
    }
    body
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
