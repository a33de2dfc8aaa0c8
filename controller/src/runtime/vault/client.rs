//! The three Vault (or OpenBao) calls cert-sync makes, over the hyper and
//! rustls already in the tree for kube: log in, read a KV v2 secret's
//! metadata (`current_version`), read one version's data.
//!
//! Not `vaultrs`: it brings reqwest, rustify and derive_builder (a second
//! HTTP stack beside kube's) for three JSON requests.
//!
//! Tokens never leave this module: not in errors, not in logs, and a Vault
//! error message is quoted only from its `errors` list (Vault's own words,
//! never a secret's data).

use crate::core::model::Blob;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::Mutex;

/// A whole answer must arrive within this.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read: a KV secret with a certificate chain, key and CA
/// is a few kilobytes; Vault's own limit on a request is 32 MiB.
const MAX_ANSWER: usize = 1024 * 1024;
/// A login token is used until this share of its lease has passed.
const TOKEN_USE_SHARE: f64 = 2.0 / 3.0;
/// Where a pod's own ServiceAccount token is mounted.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How cert-sync proves who it is to Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Vault's Kubernetes auth method: the ServiceAccount token in
    /// `jwt_file` (read at every login: kubelet rotates projected tokens)
    /// is exchanged for a Vault token at `auth/<mount>/login`.
    Kubernetes {
        mount: String,
        role: String,
        jwt_file: PathBuf,
    },
    /// A Vault token in a file, read before every request (a Vault agent
    /// sink or a mounted Secret rewrites it).
    TokenFile(PathBuf),
}

/// Where Vault is and how to reach it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `https://vault.vault.svc:8200` (or `http://` on loopback in tests).
    pub addr: String,
    pub auth: Auth,
    /// PEM bundle of the CAs that sign Vault's serving certificate; the
    /// system's roots when unset.
    pub ca_file: Option<PathBuf>,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
}

/// Why a Vault call failed, in the words a user needs.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("Vault at {addr} is unreachable: {detail}")]
    Unreachable { addr: String, detail: String },
    #[error("Vault is sealed or in standby without forwarding (503)")]
    Sealed,
    #[error("Vault denied access ({status}): {detail}")]
    Denied { status: u16, detail: String },
    #[error("Vault answered {status}: {detail}")]
    Failed { status: u16, detail: String },
    #[error("cannot log in to Vault: {0}")]
    Login(String),
    #[error("Vault's answer is not what the KV v2 API returns: {0}")]
    Malformed(String),
}

impl VaultError {
    /// Failures that are about Vault, not one path: every path is
    /// affected, so polling backs off as a whole.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            VaultError::Unreachable { .. } | VaultError::Sealed | VaultError::Login(_)
        )
    }
}

/// A KV v2 secret's metadata, as far as cert-sync needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvVersion {
    /// `current_version`.
    pub current: u64,
    /// The current version is soft-deleted or destroyed: the secret has no
    /// readable data, as if it were gone.
    pub deleted: bool,
}

struct Token {
    value: String,
    /// Re-login after this (Kubernetes auth); never for a token file.
    use_until: Option<Instant>,
}

/// A Vault client. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct VaultClient {
    settings: Arc<Settings>,
    base: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    token: Arc<Mutex<Option<Token>>>,
}

impl VaultClient {
    pub fn new(settings: Settings) -> Result<Self, String> {
        let base = settings.addr.trim_end_matches('/').to_owned();
        base.parse::<Uri>()
            .map_err(|e| format!("--vault-addr {base:?}: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = match &settings.ca_file {
            Some(path) => HttpsConnectorBuilder::new().with_tls_config(tls_config(provider, path)?),
            None => HttpsConnectorBuilder::new()
                .with_provider_and_native_roots(provider)
                .map_err(|e| format!("loading the system's CA roots: {e}"))?,
        };
        let connector = builder.https_or_http().enable_http1().build();
        Ok(VaultClient {
            settings: Arc::new(settings),
            base,
            http: Client::builder(TokioExecutor::new()).build(connector),
            token: Arc::new(Mutex::new(None)),
        })
    }

    pub fn addr(&self) -> &str {
        &self.base
    }

    /// `GET <mount>/metadata/<path>`: `None` when the secret does not exist.
    pub async fn version(&self, mount: &str, path: &str) -> Result<Option<KvVersion>, VaultError> {
        let Some(body) = self.get(&format!("{mount}/metadata/{path}")).await? else {
            return Ok(None);
        };
        let answer: Answer<Metadata> =
            serde_json::from_slice(&body).map_err(|e| VaultError::Malformed(e.to_string()))?;
        let meta = answer.data;
        let current = meta.versions.get(&meta.current_version.to_string());
        let deleted = meta.current_version == 0
            || current.is_some_and(|v| v.destroyed || !v.deletion_time.is_empty());
        Ok(Some(KvVersion {
            current: meta.current_version,
            deleted,
        }))
    }

    /// `GET <mount>/data/<path>?version=<n>`: the string fields of that
    /// version, `None` when it is gone (deleted in between).
    pub async fn read(
        &self,
        mount: &str,
        path: &str,
        version: u64,
    ) -> Result<Option<BTreeMap<String, Blob>>, VaultError> {
        let Some(body) = self
            .get(&format!("{mount}/data/{path}?version={version}"))
            .await?
        else {
            return Ok(None);
        };
        let answer: Answer<Data> =
            serde_json::from_slice(&body).map_err(|e| VaultError::Malformed(e.to_string()))?;
        let Some(fields) = answer.data.data else {
            return Ok(None);
        };
        Ok(Some(
            fields
                .into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, Blob::from(s.into_bytes()))),
                    _ => None,
                })
                .collect(),
        ))
    }

    /// A GET with the current token; one fresh login and retry when a
    /// login token was refused (revoked or expired early). `None` on 404.
    async fn get(&self, api_path: &str) -> Result<Option<Bytes>, VaultError> {
        let mut relogged = false;
        loop {
            let token = self.token().await?;
            let (status, body) = self.send(Method::GET, api_path, Some(&token), None).await?;
            match status {
                StatusCode::OK => return Ok(Some(body)),
                StatusCode::NOT_FOUND => return Ok(None),
                StatusCode::FORBIDDEN
                    if !relogged && matches!(self.settings.auth, Auth::Kubernetes { .. }) =>
                {
                    relogged = true;
                    *self.token.lock().await = None;
                }
                other => return Err(refusal(other, &body)),
            }
        }
    }

    async fn token(&self) -> Result<String, VaultError> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            if t.use_until.is_none_or(|until| Instant::now() < until) {
                return Ok(t.value.clone());
            }
        }
        let fresh = match &self.settings.auth {
            Auth::TokenFile(path) => {
                // Read every time: not cached, so a rewritten file counts at once.
                let value = std::fs::read_to_string(path)
                    .map_err(|e| VaultError::Login(format!("reading {}: {e}", path.display())))?;
                return Ok(value.trim().to_owned());
            }
            Auth::Kubernetes {
                mount,
                role,
                jwt_file,
            } => self.login(mount, role, jwt_file).await?,
        };
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    async fn login(
        &self,
        mount: &str,
        role: &str,
        jwt_file: &PathBuf,
    ) -> Result<Token, VaultError> {
        let jwt = std::fs::read_to_string(jwt_file).map_err(|e| {
            VaultError::Login(format!(
                "reading the ServiceAccount token {}: {e}",
                jwt_file.display()
            ))
        })?;
        let body = serde_json::json!({ "role": role, "jwt": jwt.trim() }).to_string();
        let (status, answer) = self
            .send(
                Method::POST,
                &format!("auth/{mount}/login"),
                None,
                Some(body.into_bytes()),
            )
            .await?;
        match status {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => return Err(VaultError::Sealed),
            // The role does not admit this ServiceAccount (or does not exist).
            other if other.is_client_error() => {
                return Err(VaultError::Denied {
                    status: other.as_u16(),
                    detail: format!(
                        "logging in as role {role:?} at auth/{mount}: {}",
                        vault_errors(&answer)
                    ),
                })
            }
            other => {
                return Err(VaultError::Login(format!(
                    "auth/{mount}/login as role {role:?} answered {other}: {}",
                    vault_errors(&answer)
                )))
            }
        }
        let login: Login = serde_json::from_slice(&answer)
            .map_err(|e| VaultError::Malformed(format!("login answer: {e}")))?;
        let lease = Duration::from_secs(login.auth.lease_duration);
        Ok(Token {
            value: login.auth.client_token,
            // Lease 0 is a token that never expires.
            use_until: (!lease.is_zero()).then(|| Instant::now() + lease.mul_f64(TOKEN_USE_SHARE)),
        })
    }

    async fn send(
        &self,
        method: Method,
        api_path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), VaultError> {
        let unreachable = |detail: String| VaultError::Unreachable {
            addr: self.base.clone(),
            detail,
        };
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}/v1/{api_path}", self.base));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(ns) = &self.settings.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| unreachable(format!("building the request: {e}")))?;
        let exchange = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|e| unreachable(error_chain(&e)))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
    }
}

/// A non-2xx answer as an error.
fn refusal(status: StatusCode, body: &[u8]) -> VaultError {
    let detail = vault_errors(body);
    match status {
        StatusCode::SERVICE_UNAVAILABLE => VaultError::Sealed,
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => VaultError::Denied {
            status: status.as_u16(),
            detail,
        },
        other => VaultError::Failed {
            status: other.as_u16(),
            detail,
        },
    }
}

/// Vault's `{"errors": [...]}`, joined; its words only.
fn vault_errors(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e.errors.join("; "),
        _ => "no error message".to_owned(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// TLS trusting only the CAs in `path` (Vault's own CA, typically).
fn tls_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    path: &PathBuf,
) -> Result<rustls::ClientConfig, String> {
    let what = |e: &dyn std::fmt::Display| format!("--vault-ca-file {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| what(&e))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in certsync_contract::pem::certificates(&pem).map_err(|e| what(&e))? {
        roots.add(der.into()).map_err(|e| what(&e))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| what(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[derive(Deserialize)]
struct Answer<T> {
    data: T,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    current_version: u64,
    #[serde(default)]
    versions: BTreeMap<String, VersionMeta>,
}

#[derive(Deserialize)]
struct VersionMeta {
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    data: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize)]
struct Login {
    auth: LoginAuth,
}

#[derive(Deserialize)]
struct LoginAuth {
    client_token: String,
    #[serde(default)]
    lease_duration: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_quote_vault_words_only() {
        let e = refusal(
            StatusCode::FORBIDDEN,
            br#"{"errors":["1 error occurred:\n\t* permission denied\n\n"]}"#,
        );
        assert!(matches!(e, VaultError::Denied { status: 403, .. }));
        assert!(e.to_string().contains("permission denied"), "{e}");
        assert_eq!(
            refusal(StatusCode::SERVICE_UNAVAILABLE, b""),
            VaultError::Sealed
        );
        let e = refusal(StatusCode::INTERNAL_SERVER_ERROR, b"<html>token=abc</html>");
        assert!(!e.to_string().contains("abc"), "{e}");
    }

    #[test]
    fn outages_are_about_vault_not_a_path() {
        assert!(VaultError::Sealed.is_outage());
        assert!(!VaultError::Denied {
            status: 403,
            detail: String::new()
        }
        .is_outage());
    }
}
