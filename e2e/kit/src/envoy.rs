//! A real Envoy process owned by the test.
//!
//! Envoy is spawned directly by the test process: one started in the
//! background of a short-lived shell is sent SIGTERM when that shell exits.
//! Each instance gets `--use-dynamic-base-id`, so several Envoys (parallel
//! tests) never fight over the hot-restart shared memory, and its own temp
//! directory holding the bootstrap and the log. Dropping the handle kills the
//! process; if the test is panicking the directory is kept and the log tail
//! printed, so a failure can be diagnosed.

use crate::bootstrap::Bootstrap;
use crate::http1::{self, HttpResponse};
use crate::wait::poll;
use anyhow::{anyhow, bail, Context, Result};
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// Environment variable naming the Envoy binary to use.
pub const ENVOY_BIN_ENV: &str = "ENVOY_BIN";
/// Set to keep every Envoy's temp directory (config, logs) after the test.
pub const KEEP_ENV: &str = "CERTSYNC_E2E_KEEP";

/// Finds the Envoy binary: `$ENVOY_BIN`, then the project's bootstrap venv
/// (`<workspace>/.tools/venv/bin/envoy`), then `envoy` on `PATH`.
pub fn envoy_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(ENVOY_BIN_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{ENVOY_BIN_ENV}={} is not a file", path.display());
    }
    let bootstrapped = crate::workspace_root().join(".tools/venv/bin/envoy");
    if bootstrapped.is_file() {
        return Ok(bootstrapped);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("envoy");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "no Envoy binary found: set {ENVOY_BIN_ENV}, or run `bash .ci/bootstrap` to install it \
         at {}, or put `envoy` on PATH",
        bootstrapped.display()
    )
}

/// The version an Envoy binary reports, e.g. `1.36.4` (from `--version`:
/// `envoy  version: <sha>/1.36.4/Clean/RELEASE/BoringSSL`).
pub fn envoy_version(binary: &Path) -> Result<String> {
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("running {} --version", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_once("version:")
        .and_then(|(_, v)| v.split('/').nth(1))
        .filter(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .with_context(|| format!("no version in `{}`", text.trim()))
}

/// The name of an SDS secret's stat, e.g. `sds_stat_name("kubernetes://shop",
/// "update_rejected")` is `sds.kubernetes_shop.update_rejected`. Envoy
/// sanitizes the resource name as `Stats::Utility::sanitizeStatsName` does:
/// `://`, `:/` and `:` become `_`.
pub fn sds_stat_name(resource: &str, stat: &str) -> String {
    format!("sds.{}.{stat}", certsync_contract::sds::stat_name(resource))
}

/// The Envoy stat holding the filter's notAfter gauge for `resource`.
pub fn expiry_gauge_name(resource: &str) -> String {
    format!(
        "wasmcustom.{}",
        certsync_filter::reporter::not_after_metric(resource)
    )
}

/// How to run Envoy, beyond what the bootstrap says.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// Worker threads (`--concurrency`).
    pub concurrency: u32,
    /// `-l`: the default log level. Keep it at `info` or above when SDS
    /// secrets are served from files: at `debug` Envoy's filesystem
    /// subscription logs the whole file, private key included.
    pub log_level: String,
    /// `--component-log-level`, e.g. `wasm:debug` (what the filter logs).
    pub component_log_level: Option<String>,
    /// How long [`Envoy::wait_ready`] waits for `/ready`.
    pub ready_timeout: Duration,
    /// Appended to the command line as they are.
    pub extra_args: Vec<String>,
    /// Where Envoy's own temp directory (bootstrap, logs) is created;
    /// default the system's temp dir. The local cluster puts it in the
    /// pod's directory, so a kept cluster keeps the Envoy logs too.
    pub temp_root: Option<PathBuf>,
    /// The Envoy to run; default [`envoy_binary`]. Benchmarks that compare
    /// Envoy lines in one run set it (tests choose with `$ENVOY_BIN`).
    pub binary: Option<PathBuf>,
}

impl Default for EnvoyOptions {
    fn default() -> Self {
        EnvoyOptions {
            concurrency: 1,
            log_level: "info".into(),
            component_log_level: Some("wasm:debug".into()),
            ready_timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
            temp_root: None,
            binary: None,
        }
    }
}

/// A running Envoy; killed when dropped.
pub struct Envoy {
    binary: PathBuf,
    dir: Option<TempDir>,
    config_path: PathBuf,
    admin_port: u16,
    options: EnvoyOptions,
    child: Option<Child>,
    /// Keep the directory when dropped ([`Envoy::keep_files`]).
    keep: bool,
}

impl Envoy {
    /// Writes `config` to a fresh temp dir, starts Envoy on it with
    /// `config.concurrency` workers and waits until `/ready` answers.
    pub fn start(config: &Bootstrap) -> Result<Envoy> {
        Envoy::start_with(config, EnvoyOptions::default())
    }

    /// [`Envoy::start`] with explicit options; `options.concurrency` is
    /// replaced by the config's.
    pub fn start_with(config: &Bootstrap, mut options: EnvoyOptions) -> Result<Envoy> {
        options.concurrency = config.concurrency;
        let dir = temp_dir(options.temp_root.as_deref())?;
        let config_path = dir.path().join("envoy.json");
        config.write(&config_path)?;
        let mut envoy = Envoy::spawn_in(dir, config_path, config.admin_port, options)?;
        envoy.wait_ready()?;
        Ok(envoy)
    }

    /// Starts Envoy on an existing bootstrap file whose admin listener is on
    /// `127.0.0.1:admin_port`, without waiting for it to become ready.
    pub fn spawn(config_path: &Path, admin_port: u16, options: EnvoyOptions) -> Result<Envoy> {
        let dir = temp_dir(options.temp_root.as_deref())?;
        Envoy::spawn_in(dir, config_path.to_path_buf(), admin_port, options)
    }

    fn spawn_in(
        dir: TempDir,
        config_path: PathBuf,
        admin_port: u16,
        options: EnvoyOptions,
    ) -> Result<Envoy> {
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => envoy_binary()?,
        };
        let mut envoy = Envoy {
            binary,
            dir: Some(dir),
            config_path,
            admin_port,
            options,
            child: None,
            keep: false,
        };
        envoy.launch()?;
        Ok(envoy)
    }

    fn launch(&mut self) -> Result<()> {
        let dir = self.dir()?.to_path_buf();
        let stdout = File::create(dir.join("stdout.log"))?;
        let stderr = File::create(dir.join("stderr.log"))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("-c")
            .arg(&self.config_path)
            .arg("--concurrency")
            .arg(self.options.concurrency.to_string())
            .arg("--use-dynamic-base-id")
            .arg("--base-id-path")
            .arg(dir.join("base-id"))
            // Envoy buffers its file log (10 s by default); tests read it live.
            .args(["--file-flush-interval-msec", "50"])
            .arg("--log-path")
            .arg(dir.join("envoy.log"))
            .arg("-l")
            .arg(&self.options.log_level);
        if let Some(levels) = &self.options.component_log_level {
            command.arg("--component-log-level").arg(levels);
        }
        command
            .args(&self.options.extra_args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        // Killed by the panic hook too, where panics abort (benchmarks).
        crate::procs::register(child.id());
        self.child = Some(child);
        Ok(())
    }

    fn dir(&self) -> Result<&Path> {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .ok_or_else(|| anyhow!("Envoy's directory is gone"))
    }

    /// Polls `/ready` until it answers 200 (`LIVE`), failing early with the log
    /// tail if Envoy exits.
    pub fn wait_ready(&mut self) -> Result<()> {
        let timeout = self.options.ready_timeout;
        let outcome = poll("Envoy's /ready", timeout, || {
            if let Some(status) = self.exit_status()? {
                // An exit is final: stop polling.
                return Ok(Some(Err(anyhow!(
                    "Envoy exited with {status} before becoming ready"
                ))));
            }
            let response = self.admin_request("GET", "/ready")?;
            Ok((response.status == 200).then_some(Ok(())))
        });
        outcome
            .and_then(|exited| exited)
            .map_err(|e| e.context(format!("Envoy log tail:\n{}", self.log_tail(30))))
    }

    /// The process's exit status if it has exited.
    pub fn exit_status(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => bail!("Envoy is not running"),
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.admin_port))
    }

    /// One admin request; any status is returned as is.
    pub fn admin_request(&self, method: &str, path: &str) -> Result<HttpResponse> {
        http1::send(self.admin_addr(), method, path, &[], &[])
    }

    /// `GET` an admin path (`/stats`, `/config_dump?...`); errors on a non-2xx status.
    pub fn admin_get(&self, path: &str) -> Result<String> {
        let response = self.admin_request("GET", path)?;
        if !response.is_success() {
            bail!(
                "admin GET {path} answered {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(response.text())
    }

    /// `POST` an admin path (`/logging?wasm=trace`, `/healthcheck/fail`, ...).
    pub fn admin_post(&self, path: &str) -> Result<String> {
        let response = self.admin_request("POST", path)?;
        if !response.is_success() {
            bail!(
                "admin POST {path} answered {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(response.text())
    }

    /// A counter or gauge by its exact name, `None` if Envoy has no such stat.
    pub fn stat(&self, name: &str) -> Result<Option<u64>> {
        let filter = http1::percent_encode(&format!("^{}$", regex_escape(name)));
        let text = self.admin_get(&format!("/stats?filter={filter}"))?;
        for line in text.lines() {
            if let Some((stat, value)) = line.split_once(": ") {
                if stat == name {
                    return Ok(value.trim().parse().ok());
                }
            }
        }
        Ok(None)
    }

    /// Kills Envoy (SIGKILL) and starts it again on the same bootstrap file,
    /// waiting until ready. The log file is appended to.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.launch()?;
        self.wait_ready()
    }

    /// Rewrites the bootstrap with `config` and restarts on it.
    pub fn restart_with(&mut self, config: &Bootstrap) -> Result<()> {
        self.kill();
        config.write(&self.config_path)?;
        self.admin_port = config.admin_port;
        self.options.concurrency = config.concurrency;
        self.launch()?;
        self.wait_ready()
    }

    /// Kills the process and reaps it; a no-op if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Errors mean it already exited; either way it is gone after wait().
            let _ = child.kill();
            let _ = child.wait();
            crate::procs::unregister(child.id());
        }
    }

    /// Keeps the directory (bootstrap, logs) when dropped, as on panic.
    pub fn keep_files(&mut self) {
        self.keep = true;
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Envoy's log (`--log-path`), followed by whatever it wrote to stderr.
    pub fn log_contents(&self) -> Result<String> {
        let dir = self.dir()?;
        let mut log = fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
        let stderr = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        if !stderr.trim().is_empty() {
            log.push_str("\n--- stderr ---\n");
            log.push_str(&stderr);
        }
        Ok(log)
    }

    /// The last `n` log lines that are log records (start with `[`): the
    /// multi-line config dumps Envoy writes at debug level, which can hold
    /// key material from SDS files, are left out.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log_contents().unwrap_or_default();
        let records: Vec<&str> = log
            .lines()
            .filter(|line| line.starts_with('[') || line.starts_with("---"))
            .collect();
        records[records.len().saturating_sub(n)..].join("\n")
    }

    /// Runs `envoy --mode validate -c config_path`; the error carries Envoy's output.
    pub fn validate(config_path: &Path) -> Result<()> {
        let binary = envoy_binary()?;
        let output = Command::new(&binary)
            .arg("--mode")
            .arg("validate")
            .arg("-c")
            .arg(config_path)
            .arg("-l")
            .arg("warn")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {} --mode validate", binary.display()))?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        bail!(
            "envoy --mode validate rejected {} ({}):\n{}",
            config_path.display(),
            output.status,
            text.trim()
        )
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.kill();
        let keep = self.keep || std::env::var_os(KEEP_ENV).is_some();
        if std::thread::panicking() || keep {
            if std::thread::panicking() {
                eprintln!("--- Envoy log tail ---\n{}", self.log_tail(40));
            }
            if let Some(dir) = self.dir.take() {
                eprintln!("Envoy files kept in {}", dir.keep().display());
            }
        }
    }
}

fn temp_dir(root: Option<&Path>) -> Result<TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("certsync-envoy-");
    match root {
        Some(root) => builder.tempdir_in(root),
        None => builder.tempdir(),
    }
    .context("creating a temp dir for Envoy")
}

/// Escapes regex metacharacters so a stat name matches literally.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sds_stats_like_envoy() {
        assert_eq!(
            sds_stat_name("kubernetes://shop-tls", "update_rejected"),
            "sds.kubernetes_shop-tls.update_rejected"
        );
        assert_eq!(
            sds_stat_name(
                "file-cert:/etc/certs/a.crt~/etc/certs/a.key",
                "update_success"
            ),
            "sds.file-cert_etc/certs/a.crt~/etc/certs/a.key.update_success"
        );
    }

    #[test]
    fn escapes_stat_names() {
        assert_eq!(
            regex_escape("sds.kubernetes_a.b.update_success"),
            "sds\\.kubernetes_a\\.b\\.update_success"
        );
    }
}
