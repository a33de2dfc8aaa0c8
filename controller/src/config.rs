//! Command line and environment configuration. `--help` is the operator's
//! manual for the modes, so it says what each one writes and who reads it.

use crate::core::model::{LabelSelector, Mode, NamespacePolicy, Policy};
use clap::{Parser, Subcommand, ValueEnum};
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
cert-sync never overwrites or deletes an object it does not manage.

VERIFYING: the filter in every gateway pod (WasmPlugin) reports what Envoy serves to POST /v1/reports \
(bearer token from --report-token-file, and the pod's own address). Per publication and pod the state is \
Verified, Stale, Missing or Unknown; a rollout still not Converged after --rollout-timeout climbs a ladder \
(re-push the published Secret, re-apply the gateway config, and with --evict-stale-pods evict the pod), \
each step an Event and a metric. `cert-sync status` prints the table; /v1/status serves it as JSON.

In directory mode, run one central instance with --publish-files=false: it writes no files but keeps \
the manifest, verifies rollouts and serves the status, while the per-pod instances write the files.";

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

    /// Copy annotated Secrets (and CertMerge members) to the gateway. False
    /// is the verify-only install: nothing is published, natively
    /// referenced certificates are verified (see `--verify-referenced`).
    #[arg(long, env = "CERTSYNC_PUBLISH", default_value_t = true, action = clap::ArgAction::Set)]
    pub publish: bool,

    /// Verify the certificates Istio Gateways and Gateway API Gateways
    /// reference natively (`credentialName`, `certificateRefs`), per pod,
    /// with pre-flight checks; nothing is written for them.
    #[arg(long, env = "CERTSYNC_VERIFY_REFERENCED", default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_referenced: bool,

    /// `gatewayClassName`s of Gateway API Gateways Istio implements.
    #[arg(
        long,
        env = "CERTSYNC_GATEWAY_CLASSES",
        default_value = "istio",
        value_delimiter = ','
    )]
    pub gateway_classes: Vec<String>,

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

    /// Host name under which gateways reach this controller (reports, module
    /// download): its Service, not this process's listen address.
    #[arg(
        long,
        env = "CERTSYNC_CONTROLLER_HOST",
        default_value = "cert-sync.istio-system.svc.cluster.local"
    )]
    pub controller_host: String,

    /// Port of that Service: what the WasmPlugin's module URL and the
    /// EnvoyFilter's controller cluster use. Independent of `--http-addr`
    /// (the Service may map 8080 to any target port).
    #[arg(long, env = "CERTSYNC_CONTROLLER_PORT", default_value_t = 8080)]
    pub controller_port: u16,

    /// Load the filter from this URL (e.g. `oci://…`) instead of /v1/filter.wasm.
    #[arg(long, env = "CERTSYNC_WASM_URL")]
    pub wasm_url: Option<String>,

    /// Elect a leader on a Lease so several replicas can run (directory mode needs none).
    #[arg(long, env = "CERTSYNC_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Name of the Lease in the gateway namespace.
    #[arg(long, env = "CERTSYNC_LEASE_NAME", default_value = "cert-sync")]
    pub lease_name: String,

    /// How long a Lease holds without renewal: a standby takes over this
    /// long after the leader died (a leader that stops gracefully releases
    /// the Lease at once). Renewal deadline and retry period follow
    /// client-go's proportions (15 s → 10 s, 2 s).
    #[arg(long, env = "CERTSYNC_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// This replica's identity (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "cert-sync-local")]
    pub pod_name: String,

    /// This replica's address (the pod IP, from the downward API). The
    /// leader writes it, with the `--http-addr` port, on the Lease, and a
    /// standby passes the reports it receives on to it. Without it a
    /// standby answers 503 and the filter retries.
    #[arg(long, env = "POD_IP")]
    pub pod_ip: Option<std::net::IpAddr>,

    /// Coalesce bursts of changes for this long before reconciling.
    #[arg(long, env = "CERTSYNC_DEBOUNCE_MS", default_value_t = 10)]
    pub debounce_ms: u64,

    /// Log format.
    #[arg(long, env = "CERTSYNC_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// directory mode: write the files (the per-pod writer). `false` for the
    /// central instance that indexes, verifies and reports status.
    #[arg(long, env = "CERTSYNC_PUBLISH_FILES", default_value_t = true, action = clap::ArgAction::Set)]
    pub publish_files: bool,

    /// File holding the bearer token gateway filters present with their
    /// reports (also written into the WasmPlugin's pluginConfig).
    #[arg(long, env = "CERTSYNC_REPORT_TOKEN_FILE")]
    pub report_token_file: Option<PathBuf>,

    /// Accept a report only from the reporting pod's own address (needs the
    /// controller to run without a sidecar).
    #[arg(long, env = "CERTSYNC_REPORT_SOURCE_CHECK", default_value_t = true, action = clap::ArgAction::Set)]
    pub report_source_check: bool,

    /// A gateway pod silent for this long is Unknown (`500ms`, `30s`, `2m`).
    #[arg(long, env = "CERTSYNC_HEARTBEAT_WINDOW", default_value = "35s", value_parser = parse_duration)]
    pub heartbeat_window: Duration,

    /// A rollout not Converged after this long climbs the re-trigger ladder, one step per period.
    #[arg(long, env = "CERTSYNC_ROLLOUT_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub rollout_timeout: Duration,

    /// Last ladder step: evict a gateway pod that still serves a stale
    /// certificate (eviction API, respects PodDisruptionBudgets).
    #[arg(long, env = "CERTSYNC_EVICT_STALE_PODS")]
    pub evict_stale_pods: bool,

    /// Warn when a served certificate expires within this long (`14d`).
    #[arg(long, env = "CERTSYNC_EXPIRY_WARNING", default_value = "14d", value_parser = parse_duration)]
    pub expiry_warning: Duration,

    /// Vault (or OpenBao) address: publish the certificates
    /// VaultCertificates name from its KV v2 engine (needs the CRD).
    #[arg(long, env = "CERTSYNC_VAULT_ADDR")]
    pub vault_addr: Option<String>,

    /// How cert-sync logs in to Vault: `kubernetes` (its ServiceAccount
    /// token, --vault-role) or `token` (--vault-token-file).
    #[arg(
        long,
        env = "CERTSYNC_VAULT_AUTH",
        value_enum,
        default_value = "kubernetes"
    )]
    pub vault_auth: VaultAuthArg,

    /// Kubernetes auth: the Vault role.
    #[arg(long, env = "CERTSYNC_VAULT_ROLE", default_value = "cert-sync")]
    pub vault_role: String,

    /// Kubernetes auth: the auth method's mount.
    #[arg(long, env = "CERTSYNC_VAULT_AUTH_MOUNT", default_value = "kubernetes")]
    pub vault_auth_mount: String,

    /// Kubernetes auth: the ServiceAccount token presented at login.
    #[arg(long, env = "CERTSYNC_VAULT_JWT_FILE", default_value = crate::runtime::vault::client::SERVICE_ACCOUNT_TOKEN)]
    pub vault_jwt_file: PathBuf,

    /// Token auth: the file holding the Vault token (read before each request).
    #[arg(long, env = "CERTSYNC_VAULT_TOKEN_FILE")]
    pub vault_token_file: Option<PathBuf>,

    /// PEM bundle of the CA that signs Vault's certificate (default: system roots).
    #[arg(long, env = "CERTSYNC_VAULT_CA_FILE")]
    pub vault_ca_file: Option<PathBuf>,

    /// Vault Enterprise / OpenBao namespace.
    #[arg(long, env = "CERTSYNC_VAULT_NAMESPACE")]
    pub vault_namespace: Option<String>,

    /// The KV v2 mount holding the certificates.
    #[arg(long, env = "CERTSYNC_VAULT_KV_MOUNT", default_value = "secret")]
    pub vault_kv_mount: String,

    /// A VaultCertificate in namespace N reads `<prefix>/N/<spec.path>`:
    /// tenants cannot name each other's secrets.
    #[arg(long, env = "CERTSYNC_VAULT_KV_PREFIX", default_value = "cert-sync")]
    pub vault_kv_prefix: String,

    /// Each KV secret's version is looked at again after this (± 10 %).
    #[arg(long, env = "CERTSYNC_VAULT_POLL_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub vault_poll_interval: Duration,

    /// At most this many Vault requests a second for polling.
    #[arg(long, env = "CERTSYNC_VAULT_POLL_RATE", default_value_t = 20)]
    pub vault_poll_rate: u32,

    /// Publish the mesh CA: istiod's `cacerts` (in --mesh-ca-namespace)
    /// from `secret:<namespace>/<name>` (a cert-manager CA Secret) or
    /// `vault:<path>` (a KV v2 secret below --vault-kv-mount), after
    /// checking it is a CA that chains to its root.
    #[arg(long, env = "CERTSYNC_MESH_CA_FROM")]
    pub mesh_ca_from: Option<String>,

    /// istiod's namespace (where `cacerts` is written).
    #[arg(
        long,
        env = "CERTSYNC_MESH_CA_NAMESPACE",
        default_value = "istio-system"
    )]
    pub mesh_ca_namespace: String,

    /// Refuse a mesh CA (or root) with less validity left than this.
    #[arg(long, env = "CERTSYNC_MESH_CA_MIN_VALIDITY", default_value = "7d", value_parser = parse_duration)]
    pub mesh_ca_min_validity: Duration,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VaultAuthArg {
    Kubernetes,
    Token,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print what is published and whether every gateway pod serves it.
    Status(StatusArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Read the controller's /v1/status (e.g. http://127.0.0.1:8080 after a
    /// port-forward): includes each pod's served fingerprint, warnings and
    /// refusals. Without it, the manifest ConfigMap is read with your kubeconfig.
    #[arg(long, env = "CERTSYNC_SERVER")]
    pub server: Option<String>,

    /// Namespace of the manifest ConfigMap.
    #[arg(short = 'n', long, default_value = "istio-system")]
    pub namespace: String,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: StatusOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusOutput {
    Table,
    Wide,
    Json,
}

/// `250ms`, `30s`, `5m`, `2h`, `14d`.
/// What an instance does, decided once from the flags ([`Args::role`]);
/// everything that depends on it asks it, never the flags.
///
/// | role | publishes | verifies, manifest, reports, gateway config | leader-elected | runs |
/// |---|---|---|---|---|
/// | `Full` | Secrets (credential, merged) | yes | yes | until stopped |
/// | `Central` | nothing itself: decides the tree the writers publish | yes | yes | until stopped |
/// | `Writer` | files in its own pod | no | no | until stopped |
/// | `Once` | Secrets, or files with `files` | no (the manifest only without `files`) | no | one pass |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Credential or merged mode: the whole controller.
    Full,
    /// Directory mode with `--publish-files=false`: the per-pod writers'
    /// index; it writes no files, keeps the manifest, takes the reports.
    Central,
    /// Directory mode: a per-pod writer (sidecar or DaemonSet) swapping the
    /// certificate directory its gateway reads.
    Writer,
    /// `--once`: one pass, then exit (an init container).
    Once {
        /// Writes the certificate directory (directory mode, `--publish-files`).
        files: bool,
    },
}

impl Role {
    /// Swaps a certificate directory itself.
    pub fn writes_files(self) -> bool {
        matches!(self, Role::Writer | Role::Once { files: true })
    }
    /// Central work: CertMerges, the manifest (a file writer leaves both to
    /// the central instance).
    pub fn indexes(self) -> bool {
        !self.writes_files()
    }
    /// Long-running central work: verification, reports, the gateway-side
    /// Istio objects, the non-TLS sweep, leader election.
    pub fn verifies(self) -> bool {
        matches!(self, Role::Full | Role::Central)
    }
    /// Runs until stopped (serves `/healthz`, `/metrics`, …).
    pub fn long_running(self) -> bool {
        !matches!(self, Role::Once { .. })
    }
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit (ms, s, m, h, d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: unit must be ms, s, m, h or d")),
    };
    Ok(Duration::from_millis(n.saturating_mul(ms)))
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
        report_token: Option<&str>,
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
            // Without a module the WasmPlugin would point at a 503: every
            // gateway pod would fall back to FAIL_OPEN, silently.
            None if module_sha256.is_none() => {
                return Err("--manage-gateway-config serves the filter from the controller: give --filter-wasm (or --wasm-url)".into())
            }
            None => ModuleSource::Controller {
                sha256: module_sha256,
            },
        };
        let mut settings = GatewaySettings {
            namespace: self.gateway_namespace.clone(),
            selector,
            controller_host: self.controller_host.clone(),
            controller_port: self.controller_port,
            module,
            ..GatewaySettings::default()
        };
        if let Some(token) = report_token {
            settings.plugin.report_token =
                Some(certsync_wasmplugin::ReportToken::new(token).map_err(|e| e.to_string())?);
        }
        settings.validate().map_err(|e| e.to_string())?;
        Ok(settings)
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.debounce_ms)
    }

    /// The Lease timing from `--lease-duration`.
    pub fn lease_config(&self) -> crate::runtime::kube::leader::LeaseConfig {
        let lease = self.lease_duration;
        crate::runtime::kube::leader::LeaseConfig {
            lease_duration: lease,
            renew_deadline: lease * 2 / 3,
            retry_period: lease * 2 / 15,
        }
    }

    /// What this instance is, decided once from the flags.
    pub fn role(&self) -> Role {
        let files = self.mode == ModeArg::Directory && self.publish_files;
        match (self.once, files) {
            (true, files) => Role::Once { files },
            (false, true) => Role::Writer,
            (false, false) if self.mode == ModeArg::Directory => Role::Central,
            (false, false) => Role::Full,
        }
    }

    /// Vault as a source, when `--vault-addr` is set.
    pub fn vault(
        &self,
    ) -> Result<
        Option<(
            crate::runtime::vault::Settings,
            crate::runtime::vault::KvSettings,
            crate::runtime::vault::PollSettings,
        )>,
        String,
    > {
        use crate::runtime::vault::{Auth, KvSettings, PollSettings, Settings};
        let Some(addr) = &self.vault_addr else {
            return Ok(None);
        };
        let auth = match self.vault_auth {
            VaultAuthArg::Kubernetes => Auth::Kubernetes {
                mount: self.vault_auth_mount.clone(),
                role: self.vault_role.clone(),
                jwt_file: self.vault_jwt_file.clone(),
            },
            VaultAuthArg::Token => Auth::TokenFile(
                self.vault_token_file
                    .clone()
                    .ok_or("--vault-auth=token needs --vault-token-file")?,
            ),
        };
        if self.vault_poll_interval < Duration::from_millis(100) {
            return Err("--vault-poll-interval must be at least 100ms".to_owned());
        }
        Ok(Some((
            Settings {
                addr: addr.clone(),
                auth,
                ca_file: self.vault_ca_file.clone(),
                namespace: self.vault_namespace.clone(),
            },
            KvSettings {
                mount: self.vault_kv_mount.trim_matches('/').to_owned(),
                prefix: self.vault_kv_prefix.clone(),
            },
            PollSettings {
                interval: self.vault_poll_interval,
                rate: self.vault_poll_rate.max(1),
            },
        )))
    }

    /// The mesh CA's settings, when `--mesh-ca-from` is set.
    pub fn mesh_ca(&self) -> Result<Option<crate::app::publish::MeshCaSettings>, String> {
        use crate::app::publish::{MeshCaFrom, MeshCaSettings};
        let Some(from) = &self.mesh_ca_from else {
            return Ok(None);
        };
        let from = MeshCaFrom::parse(from)?;
        if matches!(from, MeshCaFrom::Vault { .. }) && self.vault_addr.is_none() {
            return Err("--mesh-ca-from vault:… needs --vault-addr".to_owned());
        }
        Ok(Some(MeshCaSettings {
            from,
            target: crate::core::model::ObjectRef::new(
                self.mesh_ca_namespace.clone(),
                crate::core::mesh_ca::keys::SECRET,
            ),
            min_left: i64::try_from(self.mesh_ca_min_validity.as_secs()).unwrap_or(i64::MAX),
        }))
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
    fn durations_read_like_kubectl() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3w").is_err());
        let a = parse(&["--rollout-timeout", "3s", "--heartbeat-window", "4s"]);
        assert_eq!(a.rollout_timeout, Duration::from_secs(3));
        assert_eq!(a.heartbeat_window, Duration::from_secs(4));
    }

    #[test]
    fn gateways_reach_the_advertised_service_not_the_listen_address() {
        let a = parse(&["--http-addr", "0.0.0.0:9090"]);
        let sha = Some("ab".repeat(32));
        let settings = a.gateway_settings(sha.clone(), None).unwrap();
        assert_eq!(settings.controller_port, 8080);
        assert!(
            a.gateway_settings(None, None).is_err(),
            "no module to serve"
        );
        let a = parse(&["--http-addr", "0.0.0.0:9090", "--controller-port", "9443"]);
        let settings = a.gateway_settings(sha, None).unwrap();
        assert_eq!(
            (settings.controller_host.as_str(), settings.controller_port),
            ("cert-sync.istio-system.svc.cluster.local", 9443)
        );
    }

    #[test]
    fn status_subcommand() {
        let a = parse(&["status", "--server", "http://x:1", "-o", "wide"]);
        let Some(Command::Status(s)) = a.command else {
            panic!("no status subcommand");
        };
        assert_eq!(s.server.as_deref(), Some("http://x:1"));
        assert_eq!(s.output, StatusOutput::Wide);
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
            "--publish-files=false",
            "Verified, Stale, Missing or Unknown",
        ] {
            assert!(help.contains(needle), "--help lacks {needle}");
        }
    }
}
