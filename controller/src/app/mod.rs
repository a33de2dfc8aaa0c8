//! The app loop: one place that drives publish → verify → record, for every
//! role an instance can have ([`Role`]).
//!
//! ```text
//!  watches (Secrets, CertMerges, Namespaces) ──poke──┐
//!  resync (60 s) ────────────────────────────────────┤
//!                                                     ▼
//!                             publish::Publisher::pass      (leader only)
//!                     select → validate → render → diff → write → announce
//!                                                     │ Publications (manifest without
//!                                                     │ rollout, refusals), CertMerge statuses
//!  POST /v1/reports ─▶ ReportSink ──poke──┐           ▼     (a standby forwards to the leader)
//!  gateway Pod watch ─────────────────────┴─▶ verify::Verifier::step  (every replica; the
//!  tick (1 s) ──────────────────────────────▶   assess → ladder       leader acts)
//!                                                     │ RolloutNotes
//!                                                     ▼
//!                                     record::Recorder::write         (leader only)
//!                              manifest ConfigMap, CertMerge status: one write per change
//! ```
//!
//! Everything the stages share is in one [`Context`]: the API client, the
//! policy, the metrics and the one Event recorder. Decisions are in `core`;
//! the stages do I/O.

pub mod context;
pub mod publish;
pub mod record;
pub mod verify;

pub use context::Context;

use crate::config::{Args, Role};
use crate::core::model::NamespacePolicy;
use crate::core::referenced::Scope;
use crate::runtime::gateway::config::GatewayConfig;
use crate::runtime::gateway::files::{DirectoryPublisher, FilesError};
use crate::runtime::gateway::forward::{Endpoint, Forwarder};
use crate::runtime::gateway::pods::GatewayPods;
use crate::runtime::gateway::reports::{self, ReportAuth, ReportSink};
use crate::runtime::kube::gateways::GatewayStores;
use crate::runtime::kube::leader::LeaderElector;
use crate::runtime::kube::{cluster, sweep};
use crate::runtime::ops::heap;
use crate::runtime::ops::http::{self, HttpState};
use crate::runtime::ops::metrics::{Metrics, ReconcileOutcome};
use crate::runtime::vault::{VaultClient, VaultSources};
use anyhow::Context as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::{watch, Notify};

/// Publish at least this often, whatever the watches say.
const RESYNC: Duration = Duration::from_secs(60);
/// A failed pass is retried after a doubling delay up to this, or at once
/// when the watches bring news (the API server is back) or leadership is
/// gained: the delay never holds the loop, so a grown backoff cannot delay
/// recovery.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often rollouts are re-assessed for timeouts and silent pods (a
/// report that changes what a pod serves triggers a pass at once).
const ROLLOUT_TICK: Duration = Duration::from_secs(1);
/// First retry of a failed apply of the gateway-side objects (doubling up
/// to [`MAX_BACKOFF`]): a new controller's Service gets its first Ready
/// endpoint within a readiness period or two.
const CONFIG_RETRY: Duration = Duration::from_secs(1);
/// How long start-up waits for the Gateway and ReferenceGrant watches.
const GATEWAYS_SYNC: Duration = Duration::from_secs(30);
/// How long start-up waits for the first look at every Vault KV secret.
const VAULT_FIRST_POLL: Duration = Duration::from_secs(10);
/// How soon a target blocked by an object cert-sync does not manage (and
/// does not watch) is looked at again.
const BLOCKED_RECHECK: Duration = Duration::from_secs(10);

/// What can go wrong in a pass of the loop.
#[derive(Debug, Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificate directory: {0}")]
    Files(#[from] FilesError),
    #[error("manifest: {0}")]
    Manifest(#[from] crate::core::error::CoreError),
    #[error("data of {0:?} changed since it was checked; reading the sources again")]
    DataChanged(Vec<String>),
}

/// Runs the controller as `args` say until SIGINT/SIGTERM (or, for
/// [`Role::Once`], for one pass).
pub async fn run(args: &Args) -> anyhow::Result<()> {
    let role = args.role();
    let policy = args.policy().map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    let ctx = Context::new(client, policy, Metrics::new(), &args.pod_name);
    let report_token = read_token(args)?;

    let changed = Arc::new(Notify::new());
    let keyed = Arc::new(Notify::new());
    let with_namespaces = matches!(ctx.policy.namespaces, NamespacePolicy::Selector(_));
    let (stores, _watches) = cluster::watch(
        &ctx.client,
        &ctx.policy.gateway_namespace,
        with_namespaces,
        args.certmerge && role.indexes(),
        Arc::clone(&changed),
        Arc::clone(&keyed),
    );
    // Per-pod writers leave the other Secrets to the central instance.
    let _sweep = role.verifies().then(|| {
        sweep::spawn(
            &ctx.client,
            stores.non_tls.clone(),
            sweep::EVERY,
            Arc::clone(&changed),
        )
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        stop_signal().await;
        let _ = shutdown_tx.send(true);
    });

    let filter_wasm = match &args.filter_wasm {
        Some(path) => Some(Arc::new(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        None => None,
    };
    let mut gateway_config = if args.manage_gateway_config && role.verifies() {
        let sha256 = filter_wasm.as_deref().map(|m| {
            use sha2::Digest;
            certsync_contract::Fingerprint(sha2::Sha256::digest(m).into()).to_string()
        });
        Some(GatewayConfig::new(
            args.gateway_settings(sha256, report_token.as_deref())
                .map_err(anyhow::Error::msg)?,
        ))
    } else {
        None
    };
    let mut forwarding = None;
    let leading = if args.leader_election && role.verifies() {
        let mut elector = LeaderElector::new(
            ctx.client.clone(),
            &ctx.policy.gateway_namespace,
            &args.lease_name,
            &args.pod_name,
            args.lease_config(),
        )?
        .with_metrics(ctx.metrics.clone());
        if let Some(ip) = args.pod_ip {
            let address = std::net::SocketAddr::new(ip, args.http_addr.port()).to_string();
            let own = Endpoint::own(&args.pod_name, address).context("making a forward key")?;
            let (with, leader) = elector.with_endpoint(own.clone());
            elector = with;
            forwarding = Some(Forwarder::new(own, leader));
        }
        let mut stop = shutdown_rx.clone();
        elector.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
    } else {
        watch::channel(true).1
    };

    let rollout_changed = Arc::new(Notify::new());
    let mut verifier = None;
    let mut report_routes = axum::Router::new();
    if role.verifies() {
        let (pods, _pods_task) = GatewayPods::watch(
            &ctx.client,
            &ctx.policy.gateway_namespace,
            &args.gateway_selector,
            Arc::clone(&rollout_changed),
        );
        if report_token.is_none() {
            tracing::warn!("no --report-token-file: reports are checked by pod address only");
        }
        let mut sink = ReportSink::new(
            ReportAuth {
                token: report_token.clone(),
                check_source: args.report_source_check,
            },
            &ctx.policy.gateway_namespace,
            pods.clone(),
            leading.clone(),
            ctx.metrics.clone(),
            Arc::clone(&rollout_changed),
        );
        if let Some(forwarder) = forwarding {
            sink = sink.with_forwarder(forwarder);
        }
        let sink = Arc::new(sink);
        let v = verify::Verifier::new(
            &ctx.policy,
            verify::Settings::from_args(args, gateway_config.is_some()),
            Arc::clone(&sink),
            pods,
        );
        report_routes = reports::router(sink).merge(verify::status_router(v.status()));
        verifier = Some(v);
    }
    let (ready_tx, ready_rx) = watch::channel(false);
    if role.long_running() {
        let state = Arc::new(HttpState::new(ctx.metrics.clone(), ready_rx, filter_wasm));
        let listener = tokio::net::TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding {}", args.http_addr))?;
        let mut stop = shutdown_rx.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let app = http::router(state).merge(report_routes);
            if let Err(e) = http::serve_router(listener, app, shutdown).await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    }

    stores
        .wait_ready()
        .await
        .context("initial list of watched resources")?;
    let _ = ready_tx.send(true);
    tracing::info!(?role, gateway_namespace = %ctx.policy.gateway_namespace, "caches synced");

    let files = if role.writes_files() {
        Some(
            DirectoryPublisher::open(&args.cert_dir)
                .with_context(|| format!("opening {}", args.cert_dir.display()))?,
        )
    } else {
        None
    };
    let mut publisher = publish::Publisher::new(stores, files, &args.cert_dir);
    if !args.publish {
        publisher = publisher.verify_only();
    }
    let mut _vault_tasks = Vec::new();
    let mut vault_client = None;
    if let Some((settings, kv, polling)) = args.vault().map_err(anyhow::Error::msg)? {
        let client = VaultClient::new(settings).map_err(anyhow::Error::msg)?;
        vault_client = Some((client.clone(), kv.mount.clone()));
        tracing::info!(addr = client.addr(), mount = %kv.mount, prefix = %kv.prefix, "Vault KV source");
        let (vault, tasks) = VaultSources::start(&ctx.client, client, kv, polling, &changed);
        _vault_tasks = tasks;
        // Bounded like the gateway watches: publishing Secrets must not
        // wait on Vault. The first pass then reads every polled version.
        match tokio::time::timeout(GATEWAYS_SYNC, vault.wait_ready()).await {
            Ok(Ok(())) => {
                if !vault.wait_polled(VAULT_FIRST_POLL).await {
                    tracing::warn!(timeout = ?VAULT_FIRST_POLL, "Vault not polled yet; publishing its certificates once it answers");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "VaultCertificate watch stopped"),
            Err(_) => {
                tracing::warn!(timeout = ?GATEWAYS_SYNC, "VaultCertificate watch not synced (is the CRD installed?)")
            }
        }
        publisher = publisher.with_vault(vault);
    }
    // The central work: a per-pod file writer leaves it to the leader.
    if let Some(settings) = args
        .mesh_ca()
        .map_err(anyhow::Error::msg)?
        .filter(|_| role.indexes())
    {
        tracing::info!(from = %settings.from.label(), target = %settings.target, "publishing the mesh CA");
        publisher = publisher.with_mesh_ca(publish::MeshCa::new(settings, vault_client));
    }
    let mut _gateway_watches = Vec::new();
    if args.verify_referenced && role.verifies() {
        let (gateways, tasks) = GatewayStores::watch(&ctx.client, &changed).await;
        _gateway_watches = tasks;
        // Bounded: without Istio's CRDs the Gateway watch never lists, and
        // copying must not wait on verification.
        match tokio::time::timeout(GATEWAYS_SYNC, gateways.wait_ready()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "gateway watches stopped"),
            Err(_) => {
                tracing::warn!(timeout = ?GATEWAYS_SYNC, "gateway watches not synced; verifying referenced certificates once they are")
            }
        }
        publisher = publisher.with_referenced(publish::Referenced::new(
            gateways,
            Scope {
                gateway_namespace: ctx.policy.gateway_namespace.clone(),
                classes: args.gateway_classes.clone(),
            },
        ));
    }
    let mut app = App {
        ctx,
        role,
        publisher,
        verifier,
        recorder: record::Recorder::default(),
    };

    if !role.long_running() {
        let outcome = app.publisher.pass(&app.ctx, unix_now()).await?;
        app.record().await?;
        tracing::info!(?outcome, "published once; exiting");
        return Ok(());
    }
    if let Some(v) = app.verifier.as_mut() {
        // Publish times survive a restart through the manifest (read once,
        // for the recorder too).
        if let Some(previous) = app.recorder.read_back(&app.ctx).await {
            v.seed(&previous);
        }
    }
    let triggers = Triggers {
        changed,
        keyed,
        rollout_changed,
        shutdown: shutdown_rx,
        debounce: args.debounce(),
    };
    app.run(triggers, leading, gateway_config.as_mut()).await;
    Ok(())
}

/// The stages and what they share.
struct App {
    ctx: Context,
    role: Role,
    publisher: publish::Publisher,
    verifier: Option<verify::Verifier>,
    recorder: record::Recorder,
}

/// What wakes the loop.
struct Triggers {
    /// A CertMerge, namespace, Vault source, Gateway… changed: a full pass.
    changed: Arc<Notify>,
    /// A source or managed Secret changed: its store journaled which, so
    /// the pass can be scoped to it (`publish::scoped`).
    keyed: Arc<Notify>,
    /// A report changed what a pod serves, or the gateway pods changed.
    rollout_changed: Arc<Notify>,
    shutdown: watch::Receiver<bool>,
    /// Coalesce a burst of watch events into one pass.
    debounce: Duration,
}

impl App {
    async fn run(
        &mut self,
        mut triggers: Triggers,
        mut leading: watch::Receiver<bool>,
        mut gateway_config: Option<&mut GatewayConfig>,
    ) {
        let mut backoff = Duration::from_millis(200);
        let mut config_backoff = CONFIG_RETRY;
        let mut config_retry_at: Option<tokio::time::Instant> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut resync = tokio::time::interval(RESYNC);
        let mut tick = tokio::time::interval(ROLLOUT_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut publish_due = true;
        // Anything but a journaled change, and a failed pass, calls for
        // deciding everything again.
        let mut full_due = true;
        let mut verified = tokio::time::Instant::now();
        loop {
            let leads = *leading.borrow();
            let mut passed = false;
            if publish_due {
                publish_due = false;
                passed = true;
                let triggered = std::time::Instant::now();
                tokio::time::sleep(triggers.debounce).await;
                if leads {
                    retry_at = None;
                    let passed = if full_due {
                        self.publisher.pass(&self.ctx, unix_now()).await
                    } else {
                        self.publisher.pass_changed(&self.ctx, unix_now()).await
                    };
                    full_due = passed.is_err();
                    match passed {
                        Ok(outcome) => {
                            self.ctx.metrics.reconciled(ReconcileOutcome::Ok);
                            backoff = Duration::from_millis(200);
                            if self.publisher.blocked() {
                                retry_at = earliest(
                                    retry_at,
                                    tokio::time::Instant::now() + BLOCKED_RECHECK,
                                );
                            }
                            if outcome.writes + outcome.deletes > 0 || outcome.files_swapped {
                                self.ctx.metrics.observe_publish(triggered.elapsed());
                                tracing::info!(?outcome, "reconciled");
                            }
                        }
                        Err(e) => {
                            self.ctx.metrics.reconciled(ReconcileOutcome::Error);
                            tracing::warn!(error = %e, retry_in = ?backoff, "reconcile failed");
                            retry_at = earliest(retry_at, tokio::time::Instant::now() + backoff);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                    // Pods of Gateway API Gateways are gateway pods too,
                    // and get the filter.
                    let api_gateways = self.publisher.gateway_api_names().to_vec();
                    if let Some(v) = self.verifier.as_ref() {
                        v.pods().set_gateway_api(&api_gateways);
                    }
                    if let Some(config) = gateway_config.as_deref_mut() {
                        config.set_gateway_api(api_gateways);
                    }
                    // After publishing, so a module that cannot be fetched
                    // (the probe waits up to its timeout) never delays a
                    // certificate; while it fails, only at its own retry time.
                    let now = tokio::time::Instant::now();
                    if let Some(config) = gateway_config
                        .as_deref_mut()
                        .filter(|_| config_retry_at.is_none_or(|at| now >= at))
                    {
                        config_retry_at = None;
                        if let Err(e) = config.apply(&self.ctx.client).await {
                            // Typically the module is not yet fetchable
                            // through the Service (no Ready endpoint yet):
                            // seconds, not the next resync.
                            tracing::warn!(error = %e, retry_in = ?config_backoff, "applying the gateway-side Istio objects failed");
                            let at = tokio::time::Instant::now() + config_backoff;
                            config_retry_at = Some(at);
                            retry_at = earliest(retry_at, at);
                            config_backoff = (config_backoff * 2).min(MAX_BACKOFF);
                        } else {
                            config_backoff = CONFIG_RETRY;
                        }
                    }
                }
            }
            if !leads {
                // A retry is the leader's; a demoted replica must not wake
                // for it (a past instant would fire on every turn).
                retry_at = None;
            }
            // Publishing comes first: with another change journaled while
            // this pass ran (a burst of rotations), pass again before
            // verifying and recording, for at most a rollout tick.
            if passed
                && leads
                && self.publisher.changes_pending()
                && verified.elapsed() < ROLLOUT_TICK
            {
                publish_due = true;
                continue;
            }
            verified = tokio::time::Instant::now();
            let stepped = std::time::Instant::now();
            if let Some(v) = self.verifier.as_mut() {
                let now_ms = jiff::Timestamp::now().as_millisecond();
                v.step(
                    &self.ctx,
                    now_ms,
                    leads,
                    gateway_config.as_deref_mut(),
                    self.publisher.publications(),
                )
                .await;
            }
            let recorded = std::time::Instant::now();
            if leads {
                // After verification saw the new publications: one write per
                // change, rollout included.
                if let Err(e) = self.record().await {
                    tracing::warn!(error = %e, retry_in = ?backoff, "writing the manifest or CertMerge status failed");
                    // The next pass records again; on the same doubling
                    // timer as a failed pass, never in a tight loop.
                    retry_at = earliest(retry_at, tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            tracing::trace!(step = ?recorded - stepped, record = ?recorded.elapsed(), "verified and recorded");
            if passed {
                // After the pass's writes (manifest included), off the publish path.
                heap::release_free_pages();
            }
            let full = tokio::select! {
                _ = triggers.changed.notified() => true,
                _ = triggers.keyed.notified() => false,
                // The periodic safety net: everything decided again.
                _ = resync.tick() => true,
                () = sleep_until(retry_at), if retry_at.is_some() => true,
                // A new leader publishes at once: changes made while nobody
                // led are waiting (the watches kept every replica's stores
                // current, so nothing pokes it otherwise).
                Ok(()) = leading.changed() => {
                    let leads = *leading.borrow();
                    publish_due |= leads;
                    full_due |= leads;
                    continue;
                }
                _ = triggers.rollout_changed.notified() => continue,
                _ = tick.tick(), if self.verifier.is_some() => continue,
                _ = triggers.shutdown.wait_for(|s| *s) => break,
            };
            publish_due = true;
            full_due |= full;
        }
        tracing::info!("shutting down");
        // Let the elector release the Lease, so a standby takes over at once.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while leading.changed().await.is_ok() {}
        })
        .await;
    }

    /// The manifest and CertMerge statuses for what was published and how
    /// far it rolled out; nothing from a file writer (the central instance
    /// owns both).
    async fn record(&mut self) -> Result<(), Error> {
        if !self.role.indexes() {
            return Ok(());
        }
        let notes = self.verifier.as_ref().map(verify::Verifier::notes);
        self.recorder
            .write(&self.ctx, &self.publisher, notes, unix_now())
            .await
    }
}

fn earliest(
    a: Option<tokio::time::Instant>,
    b: tokio::time::Instant,
) -> Option<tokio::time::Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGTERM (what Kubernetes sends a pod being stopped) or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn read_token(args: &Args) -> anyhow::Result<Option<String>> {
    let Some(path) = &args.report_token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(path)
        .with_context(|| format!("reading the report token {}", path.display()))?;
    Ok(Some(token.trim().to_owned()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
