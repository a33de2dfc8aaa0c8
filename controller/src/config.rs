//! Command line and environment configuration. `--help` is the operator's
//! manual for the modes, so it says what each one writes and who reads it.

use crate::core::model::{LabelSelector, Mode, NamespacePolicy, Policy};
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const ABOUT: &str =
    "Publishes selected kubernetes.io/tls Secrets where Istio ingress gateways load them, \
and proves each rollout.";

const LONG_ABOUT: &str = "Publishes selected kubernetes.io/tls Secrets where Istio ingress gateways load them.

SELECTING: a TLS Secret annotated certsync.istio.io/autosync: \"true\" is published; removing the \
annotation or deleting the Secret unpublishes it. A CertMerge (certsync.istio.io/v1alpha1) builds \
one merged Secret from Secrets chosen by label selector per namespace and by explicit list. \
--namespaces / --namespace-selector limit which namespaces may publish.

MODES (--mode):
  credential  (default) one Secret per source in the gateway namespace, named <namespace>.<name>;
              the Istio Gateway refers to it with credentialName and the gateway loads it over SDS.
  merged      one Secret (--merged-secret, default istio-ingressgateway-certs) holding
              <namespace>.<name>.crt / .key for every source; the gateway mounts it at
              /etc/istio/ingressgateway-certs (the classic mounted-secret setup).
  directory   files <cert-dir>/<namespace>/<name>.crt / .key in a volume shared with the gateway,
              swapped atomically (new files in a fresh directory, then one rename). Run as a
              sidecar or DaemonSet, or as an init container with --once so the files exist before
              Envoy starts. Needs no Secret write access on the gateway side.

Every source is validated first (PEM parses, key matches the leaf, within its validity window, chain \
in order, sizes bounded). A source that fails keeps whatever was published for it before; the \
refusal is a Warning Event on the source, a log line and the metric certsync_refusals_total{reason}. \
cert-sync never overwrites or deletes an object it does not manage.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Credential,
    Merged,
    Directory,
}

#[derive(Debug, Clone, Parser)]
#[command(name = "cert-sync", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Args {
    /// Where certificates are published (see MODES above).
    #[arg(long, env = "CERTSYNC_MODE", value_enum, default_value = "credential")]
    pub mode: ModeArg,

    /// Namespace of the ingress gateway: published Secrets, the manifest
    /// ConfigMap, the Lease and the gateway-side Istio objects live here.
    #[arg(
        long,
        env = "CERTSYNC_GATEWAY_NAMESPACE",
        default_value = "istio-system"
    )]
    pub gateway_namespace: String,

    /// merged mode: name of the merged Secret.
    #[arg(
        long,
        env = "CERTSYNC_MERGED_SECRET",
        default_value = "istio-ingressgateway-certs"
    )]
    pub merged_secret: String,

    /// directory mode: root of the shared volume.
    #[arg(
        long,
        env = "CERTSYNC_CERT_DIR",
        default_value = "/etc/istio/cert-sync"
    )]
    pub cert_dir: PathBuf,

    /// directory mode: publish once, then exit (init container).
    #[arg(long)]
    pub once: bool,

    /// Only these source namespaces may publish (comma-separated; default: all).
    #[arg(long, env = "CERTSYNC_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// Only namespaces whose labels match may publish (`key=value,...`).
    #[arg(
        long,
        env = "CERTSYNC_NAMESPACE_SELECTOR",
        conflicts_with = "namespaces"
    )]
    pub namespace_selector: Option<String>,

    /// Serve CertMerge resources (needs the CRD installed).
    #[arg(long, env = "CERTSYNC_CERTMERGE", default_value_t = true, action = clap::ArgAction::Set)]
    pub certmerge: bool,

    /// Address of /healthz, /readyz, /metrics and /v1/filter.wasm.
    #[arg(long, env = "CERTSYNC_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// The proxy-wasm module served at /v1/filter.wasm for the WasmPlugin.
    #[arg(long, env = "CERTSYNC_FILTER_WASM")]
    pub filter_wasm: Option<PathBuf>,

    /// Apply the gateway-side EnvoyFilter, status Gateway and WasmPlugin
    /// (credential and merged modes).
    #[arg(long, env = "CERTSYNC_MANAGE_GATEWAY_CONFIG", default_value_t = true, action = clap::ArgAction::Set)]
    pub manage_gateway_config: bool,

    /// Labels selecting the gateway pods (`key=value,...`).
    #[arg(
        long,
        env = "CERTSYNC_GATEWAY_SELECTOR",
        default_value = "istio=ingressgateway"
    )]
    pub gateway_selector: String,

    /// Host name under which gateways reach this controller (reports, module download).
    #[arg(
        long,
        env = "CERTSYNC_CONTROLLER_HOST",
        default_value = "cert-sync.istio-system.svc.cluster.local"
    )]
    pub controller_host: String,

    /// Load the filter from this URL (e.g. `oci://…`) instead of /v1/filter.wasm.
    #[arg(long, env = "CERTSYNC_WASM_URL")]
    pub wasm_url: Option<String>,

    /// Elect a leader on a Lease so several replicas can run (directory mode needs none).
    #[arg(long, env = "CERTSYNC_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease in the gateway namespace.
    #[arg(long, env = "CERTSYNC_LEASE_NAME", default_value = "cert-sync")]
    pub lease_name: String,

    /// This replica's identity (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "cert-sync-local")]
    pub pod_name: String,

    /// Coalesce bursts of changes for this long before reconciling.
    #[arg(long, env = "CERTSYNC_DEBOUNCE_MS", default_value_t = 10)]
    pub debounce_ms: u64,

    /// Log format.
    #[arg(long, env = "CERTSYNC_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Args {
    /// What the gateway-side objects are rendered from; `module_sha256` is
    /// the SHA-256 of the module this controller serves, if any.
    pub fn gateway_settings(
        &self,
        module_sha256: Option<String>,
    ) -> Result<certsync_wasmplugin::GatewaySettings, String> {
        use certsync_wasmplugin::{GatewaySettings, ModuleSource};
        let selector = parse_selector(&self.gateway_selector)
            .map_err(|e| e.replace("--namespace-selector", "--gateway-selector"))?
            .match_labels;
        let module = match &self.wasm_url {
            Some(url) => ModuleSource::Url {
                url: url.clone(),
                sha256: module_sha256.filter(|_| url.starts_with("http")),
            },
            None => ModuleSource::Controller {
                sha256: module_sha256,
            },
        };
        let settings = GatewaySettings {
            namespace: self.gateway_namespace.clone(),
            selector,
            controller_host: self.controller_host.clone(),
            controller_port: self.http_addr.port(),
            module,
            ..GatewaySettings::default()
        };
        settings.validate().map_err(|e| e.to_string())?;
        Ok(settings)
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }

    /// The policy the core decides with.
    pub fn policy(&self) -> Result<Policy, String> {
        let mode = match self.mode {
            ModeArg::Credential => Mode::Credential,
            ModeArg::Merged => Mode::Merged {
                secret_name: self.merged_secret.clone(),
            },
            ModeArg::Directory => Mode::Directory,
        };
        let namespaces = match (&self.namespace_selector, self.namespaces.is_empty()) {
            (Some(selector), _) => NamespacePolicy::Selector(parse_selector(selector)?),
            (None, false) => NamespacePolicy::List(self.namespaces.clone()),
            (None, true) => NamespacePolicy::All,
        };
        Ok(Policy {
            gateway_namespace: self.gateway_namespace.clone(),
            mode,
            namespaces,
        })
    }
}

/// `a=b,c=d` (equality only; use a CertMerge for richer selection).
fn parse_selector(text: &str) -> Result<LabelSelector, String> {
    let mut selector = LabelSelector::default();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--namespace-selector: {pair:?} is not key=value"))?;
        selector
            .match_labels
            .insert(key.trim().to_owned(), value.trim().to_owned());
    }
    if selector.match_labels.is_empty() {
        return Err("--namespace-selector is empty".to_owned());
    }
    Ok(selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("cert-sync").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn defaults_publish_credentials_for_all_namespaces() {
        let policy = parse(&[]).policy().unwrap();
        assert_eq!(policy.mode, Mode::Credential);
        assert_eq!(policy.namespaces, NamespacePolicy::All);
        assert_eq!(policy.gateway_namespace, "istio-system");
    }

    #[test]
    fn namespace_list_and_selector() {
        let p = parse(&["--namespaces", "shop,blog"]).policy().unwrap();
        assert_eq!(
            p.namespaces,
            NamespacePolicy::List(vec!["shop".into(), "blog".into()])
        );
        let p = parse(&["--namespace-selector", "tls=public"])
            .policy()
            .unwrap();
        assert!(
            matches!(p.namespaces, NamespacePolicy::Selector(s) if s.match_labels["tls"] == "public")
        );
        assert!(parse(&["--namespace-selector", "nope"]).policy().is_err());
        assert!(Args::try_parse_from([
            "cert-sync",
            "--namespaces",
            "a",
            "--namespace-selector",
            "x=y"
        ])
        .is_err());
    }

    #[test]
    fn help_explains_every_mode() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for needle in [
            "credential",
            "merged",
            "directory",
            "--once",
            "credentialName",
            "atomically",
        ] {
            assert!(help.contains(needle), "--help lacks {needle}");
        }
    }
}
