//! `cert-sync` processes: the central controller (verifies rollouts from the
//! pods' reports, serves `/v1/status`, writes the manifest, no files) and
//! the per-pod writers (directory mode, writing a pod's certificate files).
//!
//! The controller keeps its port across restarts: every Envoy's report
//! cluster points at it, as a Service would.

use super::status::Status;
use crate::http1;
use crate::procs::Proc;
use anyhow::{bail, ensure, Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The gateway namespace everything lives in.
pub const GATEWAY_NS: &str = "istio-system";
/// The central controller's pod name.
pub const CONTROLLER_POD: &str = "cert-sync-0";
/// Reasons of the Events a stuck rollout produces: the stall, then the
/// ladder's rungs (in directory mode there is no object to re-push and the
/// gateway config is not managed, so often the stall alone).
pub const STALL_REASONS: [&str; 3] = ["RolloutStalled", "RePushed", "GatewayConfigReapplied"];

/// How the central controller is run.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub bins: PathBuf,
    pub kubeconfig: PathBuf,
    pub token_file: PathBuf,
    pub addr: SocketAddr,
    pub rollout_timeout: Duration,
    pub heartbeat_window: Duration,
    pub log: PathBuf,
    /// How it publishes: [`ControllerSettings::directory_central`] (the
    /// local cluster's) or [`ControllerSettings::verify_only`].
    pub mode_args: Vec<String>,
}

impl ControllerSettings {
    /// Directory mode's central instance: no files, manifest and reports.
    pub fn directory_central() -> Vec<String> {
        [
            "--mode",
            "directory",
            "--publish-files=false",
            "--cert-dir",
            super::agent::MOUNT_PATH,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The verify-only install: nothing copied, natively referenced
    /// certificates verified.
    pub fn verify_only() -> Vec<String> {
        ["--mode", "credential", "--publish=false"]
            .map(str::to_owned)
            .to_vec()
    }
}

/// A central controller for a rig rooted at `root`: a fresh report token
/// (written to `root/report-token`, returned), a free loopback port, its log
/// in `root/controller.log`.
pub struct RigController {
    pub controller: Controller,
    pub token: String,
    pub addr: SocketAddr,
}

impl RigController {
    pub fn start(
        bins: &Path,
        kubeconfig: &Path,
        root: &Path,
        timeouts: (Duration, Duration),
        mode_args: Vec<String>,
    ) -> Result<RigController> {
        let token = super::random_token()?;
        let token_file = root.join("report-token");
        std::fs::write(&token_file, &token)?;
        let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, crate::ports::free_port()?));
        let controller = Controller::start(ControllerSettings {
            bins: bins.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            token_file,
            addr,
            rollout_timeout: timeouts.0,
            heartbeat_window: timeouts.1,
            log: root.join("controller.log"),
            mode_args,
        })?;
        Ok(RigController {
            controller,
            token,
            addr,
        })
    }
}

/// The central controller process.
pub struct Controller {
    settings: ControllerSettings,
    proc: Option<Proc>,
}

impl Controller {
    /// Starts the controller and waits until `/readyz` answers 200.
    pub fn start(settings: ControllerSettings) -> Result<Controller> {
        let mut controller = Controller {
            settings,
            proc: None,
        };
        controller.launch()?;
        Ok(controller)
    }

    fn launch(&mut self) -> Result<()> {
        let s = &self.settings;
        let mut cmd = Command::new(s.bins.join("cert-sync"));
        cmd.env("KUBECONFIG", &s.kubeconfig)
            .env("RUST_LOG", "info")
            .args(&s.mode_args)
            .args(["--gateway-namespace", GATEWAY_NS])
            .arg("--http-addr")
            .arg(s.addr.to_string())
            .args(["--manage-gateway-config=false", "--certmerge=false"])
            .arg("--report-token-file")
            .arg(&s.token_file)
            .args(["--pod-name", CONTROLLER_POD])
            .arg("--rollout-timeout")
            .arg(humantime(s.rollout_timeout))
            .arg("--heartbeat-window")
            .arg(humantime(s.heartbeat_window))
            .args(["--gateway-selector", "istio=ingressgateway"]);
        let proc = Proc::spawn("cert-sync controller", cmd, s.log.clone(), false)?;
        self.proc = Some(proc);
        let addr = s.addr;
        crate::poll("the controller's /readyz", Duration::from_secs(30), || {
            if let Some(proc) = self.proc.as_mut() {
                proc.check_alive()?;
            }
            Ok(http1::get(addr, "/readyz")?.is_success().then_some(()))
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.settings.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.settings.addr)
    }

    /// Kills the controller (SIGKILL: no goodbye) and starts a fresh one on
    /// the same port; it knows nothing but what the cluster and the next
    /// reports tell it.
    pub fn restart(&mut self) -> Result<()> {
        if let Some(mut proc) = self.proc.take() {
            proc.kill();
        }
        self.launch()
    }

    pub fn check_alive(&mut self) -> Result<()> {
        match self.proc.as_mut() {
            Some(proc) => proc.check_alive(),
            None => bail!("the controller is not running"),
        }
    }

    pub fn log_tail(&self) -> String {
        self.proc.as_ref().map(Proc::log_tail).unwrap_or_default()
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<Status> {
        let response = http1::get(self.addr(), "/v1/status")?;
        if !response.is_success() {
            bail!(
                "/v1/status answered {}: {}",
                response.status,
                response.text()
            );
        }
        Ok(Status(
            serde_json::from_str(&response.text()).context("parsing /v1/status")?,
        ))
    }

    /// Polls `/v1/status` until `check` holds, up to `timeout`; the error
    /// carries the last status seen and the controller's log tail.
    pub fn wait_status(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Status) -> bool,
    ) -> Result<Status> {
        let mut last = None;
        let outcome = crate::poll(what, timeout, || {
            let status = self.status()?;
            let done = check(&status);
            last = Some(status.clone());
            Ok(done.then_some(status))
        });
        outcome.map_err(|e| {
            e.context(format!(
                "last /v1/status: {:?}{}",
                last.map_or(serde_json::Value::Null, |s| s.0),
                self.log_tail()
            ))
        })
    }

    /// `cert-sync status --server <this controller> [-o wide]`: the table a
    /// person reads, from the real binary.
    pub fn status_table(&self, wide: bool) -> Result<String> {
        let mut cmd = Command::new(self.settings.bins.join("cert-sync"));
        cmd.args(["status", "--server", &self.url()]);
        if wide {
            cmd.args(["-o", "wide"]);
        }
        let output = cmd.output().context("running cert-sync status")?;
        ensure!(
            output.status.success(),
            "cert-sync status failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `GET /metrics`.
    pub fn metrics(&self) -> Result<String> {
        Ok(http1::get(self.addr(), "/metrics")?.text())
    }

    /// The sum of every sample of `name` whose labels contain all of `labels`
    /// (`key="value"` pairs); 0 when there is none.
    pub fn metric(&self, name: &str, labels: &[&str]) -> Result<f64> {
        Ok(sum_metric(&self.metrics()?, name, labels))
    }

    /// `POST /v1/reports` with `body`, as anyone on the network could.
    /// Returns the HTTP status.
    pub fn post_report(&self, token: Option<&str>, body: &[u8]) -> Result<u16> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("authorization", auth.as_str()));
        }
        let response = http1::post(
            self.addr(),
            certsync_contract::report::REPORT_PATH,
            &headers,
            body,
        )?;
        Ok(response.status)
    }
}

/// A per-pod writer: `cert-sync --mode directory` publishing into `cert_dir`.
pub fn spawn_writer(
    bins: &Path,
    kubeconfig: &Path,
    cert_dir: &Path,
    pod: &str,
    log: PathBuf,
) -> Result<Proc> {
    let mut cmd = Command::new(bins.join("cert-sync"));
    cmd.env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info")
        .args(["--mode", "directory"])
        .arg("--cert-dir")
        .arg(cert_dir)
        .args(["--gateway-namespace", GATEWAY_NS])
        .args(["--http-addr", "127.0.0.1:0"])
        .args(["--manage-gateway-config=false", "--certmerge=false"])
        .args(["--leader-election=false"])
        .arg("--pod-name")
        .arg(format!("{pod}-writer"));
    Proc::spawn(&format!("{pod} writer"), cmd, log, false)
}

/// `3s`, `250ms`: a duration as the controller's flags take it.
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Sums a Prometheus text exposition's samples of `name` carrying `labels`.
pub fn sum_metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, rest)) => (m, rest),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_labelled_samples() {
        let text = "# HELP x y\n\
                    certsync_reports_total{outcome=\"accepted\"} 7\n\
                    certsync_reports_total{outcome=\"forbidden\"} 2\n\
                    certsync_reports_total_other 9\n";
        assert_eq!(
            sum_metric(text, "certsync_reports_total", &["outcome=\"forbidden\""]),
            2.0
        );
        assert_eq!(sum_metric(text, "certsync_reports_total", &[]), 9.0);
        assert_eq!(sum_metric(text, "nope", &[]), 0.0);
    }

    #[test]
    fn formats_durations_for_flags() {
        assert_eq!(humantime(Duration::from_secs(3)), "3s");
        assert_eq!(humantime(Duration::from_millis(1500)), "1500ms");
    }
}
