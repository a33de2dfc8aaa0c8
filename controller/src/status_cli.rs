//! `cert-sync status`: reads the controller's `/v1/status` (with `--server`)
//! or the manifest ConfigMap (with the kubeconfig) and prints the table.

use crate::config::{StatusArgs, StatusOutput};
use crate::core::manifest;
use crate::core::status::{self, TableWidth};
use anyhow::{Context, Result};

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
    match args.output {
        StatusOutput::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        StatusOutput::Table | StatusOutput::Wide => {
            let width = if args.output == StatusOutput::Wide {
                TableWidth::Wide
            } else {
                TableWidth::Normal
            };
            print!(
                "{}",
                status::render_table(&view, width, jiff::Timestamp::now().as_second())
            );
        }
    }
    Ok(())
}

/// A plain HTTP/1.1 GET (the controller's port, usually port-forwarded).
async fn http_get(server: &str, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = server
        .strip_prefix("http://")
        .context("--server must be an http:// URL (e.g. after kubectl port-forward)")?
        .trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.contains(" 200 ") {
        anyhow::bail!("{server}{path}: {status_line}: {}", body.trim());
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(dechunk(body));
    }
    Ok(body.to_owned())
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            "hello world"
        );
        assert_eq!(dechunk("zz\r\n"), "");
    }
}
