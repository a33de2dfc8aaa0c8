//! One gateway "pod": its cert-sync writer process, its SDS agent thread and
//! its Envoy, sharing a directory as the containers of a pod share a
//! volume.
//!
//! ```text
//! <pod dir>/certs/   the writer's cert dir (..data swaps)  ─▶ agent
//! <pod dir>/sds/<ns>.<name>/sds.yaml                        ─▶ Envoy (HTTPS, one chain per SNI)
//! ```

use super::agent::{Agent, AgentSite};
use super::controller::{spawn_writer, GATEWAY_NS};
use super::Site;
use crate::bootstrap::{Bootstrap, PluginConfig};
use crate::envoy::{Envoy, EnvoyOptions};
use crate::pki::TestCert;
use crate::procs::Proc;
use crate::tls_client::{probe, TlsProbe};
use anyhow::{anyhow, Context, Result};
use certsync_contract::Fingerprint;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a pod needs to start.
pub struct PodSpec<'a> {
    pub name: String,
    pub dir: PathBuf,
    pub bins: &'a Path,
    pub kubeconfig: &'a Path,
    pub sites: &'a [Site],
    pub placeholder: &'a TestCert,
    pub controller_port: u16,
    pub report_token: &'a str,
    pub report_interval: Duration,
    pub heartbeat: Duration,
    pub agent_poll: Duration,
}

/// A running gateway pod.
pub struct GatewayPod {
    name: String,
    dir: PathBuf,
    writer: Option<Proc>,
    writer_frozen: bool,
    agent: Agent,
    envoy: Envoy,
    config: Bootstrap,
}

impl GatewayPod {
    pub fn start(spec: PodSpec<'_>) -> Result<GatewayPod> {
        let certs = spec.dir.join("certs");
        std::fs::create_dir_all(&certs)?;
        let writer = spawn_writer(
            spec.bins,
            spec.kubeconfig,
            &certs,
            &spec.name,
            spec.dir.join("writer.log"),
        )?;
        let sites: Vec<AgentSite> = spec
            .sites
            .iter()
            .map(|s| AgentSite {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
            })
            .collect();
        let agent = Agent::start(
            &certs,
            &spec.dir.join("sds"),
            &sites,
            spec.placeholder,
            spec.agent_poll,
        )?;
        let plugin = PluginConfig::default()
            .report_token(spec.report_token)
            .pod(&spec.name, GATEWAY_NS)
            .interval_ms(millis(spec.report_interval))
            .heartbeat_ms(millis(spec.heartbeat));
        let mut builder = Bootstrap::builder()
            .with_filter(true)
            .plugin_config(plugin)
            .receiver_port(spec.controller_port)
            .node_id(format!(
                "router~127.0.0.1~{}.{GATEWAY_NS}~{GATEWAY_NS}.svc.cluster.local",
                spec.name
            ));
        for site in spec.sites {
            let resource = site.resource();
            let source = agent
                .source(&resource)
                .ok_or_else(|| anyhow!("the agent has no SDS source for {resource}"))?;
            builder = builder.host(&site.host, source.clone());
        }
        let config = builder.build()?;
        let options = EnvoyOptions {
            component_log_level: None,
            temp_root: Some(spec.dir.clone()),
            ..EnvoyOptions::default()
        };
        let envoy = Envoy::start_with(&config, options)
            .with_context(|| format!("starting {}'s Envoy", spec.name))?;
        Ok(GatewayPod {
            name: spec.name,
            dir: spec.dir,
            writer: Some(writer),
            writer_frozen: false,
            agent,
            envoy,
            config,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn https_port(&self) -> u16 {
        self.config.https_port
    }

    pub fn config(&self) -> &Bootstrap {
        &self.config
    }

    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    pub fn envoy(&self) -> &Envoy {
        &self.envoy
    }

    /// What Envoy serves for `host` now (a real TLS handshake).
    pub fn probe(&self, host: &str) -> Result<TlsProbe> {
        probe(self.config.https_port, host)
    }

    /// The leaf fingerprint Envoy serves for `host`.
    pub fn served(&self, host: &str) -> Result<Fingerprint> {
        Ok(self.probe(host)?.fingerprint)
    }

    /// SIGSTOPs the writer: it neither reads the API nor writes files.
    pub fn freeze_writer(&mut self) -> Result<()> {
        self.writer()?.signal("STOP")?;
        self.writer_frozen = true;
        Ok(())
    }

    /// SIGCONTs the writer; it catches up from its watch.
    pub fn thaw_writer(&mut self) -> Result<()> {
        self.writer()?.signal("CONT")?;
        self.writer_frozen = false;
        Ok(())
    }

    fn writer(&mut self) -> Result<&mut Proc> {
        self.writer
            .as_mut()
            .ok_or_else(|| anyhow!("{} has no writer", self.name))
    }

    /// Fails if the writer died (a frozen one counts as alive).
    pub fn check_writer(&mut self) -> Result<()> {
        self.writer()?.check_alive()
    }

    /// Keeps Envoy's directory (bootstrap, logs) when the pod is dropped.
    pub fn keep_files(&mut self) {
        self.envoy.keep_files();
    }

    /// SIGKILLs Envoy; the Pod object stays, so its reports just stop.
    pub fn kill_envoy(&mut self) {
        self.envoy.kill();
    }

    /// Starts Envoy again on the same bootstrap and SDS files.
    pub fn restart_envoy(&mut self) -> Result<()> {
        self.envoy.restart()
    }

    pub fn envoy_running(&mut self) -> bool {
        self.envoy.is_running()
    }
}

impl Drop for GatewayPod {
    fn drop(&mut self) {
        if self.writer_frozen {
            if let Some(writer) = self.writer.as_ref() {
                let _ = writer.signal("CONT");
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
