//! `cert-sync`: see `cert-sync --help`.

use anyhow::{Context, Result};
use certsync_controller::config::{Args, Command, LogFormat, ModeArg};
use certsync_controller::reconcile::Reconciler;
use certsync_controller::runtime::gateway::config::GatewayConfig;
use certsync_controller::runtime::gateway::files::DirectoryPublisher;
use certsync_controller::runtime::gateway::pods::GatewayPods;
use certsync_controller::runtime::gateway::reports::{ReportAuth, ReportSink};
use certsync_controller::runtime::kube::cluster;
use certsync_controller::runtime::kube::events::Events;
use certsync_controller::runtime::kube::leader::{LeaderElector, LeaseConfig};
use certsync_controller::runtime::kube::sweep;
use certsync_controller::runtime::ops::heap;
use certsync_controller::runtime::ops::http::{self, HttpState};
use certsync_controller::runtime::ops::metrics::{Metrics, ReconcileOutcome};
use certsync_controller::runtime::rollout::{self, RolloutDriver, RolloutSettings};
use clap::Parser;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{watch, Notify};

/// Reconcile at least this often, whatever the watches say.
const RESYNC: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often rollouts are re-assessed for timeouts and silent pods (a
/// report that changes what a pod serves triggers a pass at once).
const ROLLOUT_TICK: Duration = Duration::from_secs(1);

// One thread: the controller waits on the API server and gateway reports,
// and a single-threaded runtime keeps one malloc arena (measured: ~2 MiB
// lower peak RSS at 10,000 Secrets, same latency).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    heap::configure();
    let args = Args::parse();
    if let Some(Command::Status(status_args)) = &args.command {
        return certsync_controller::status_cli::run(status_args).await;
    }
    init_logging(args.log_format);
    let policy = args.policy().map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster or KUBECONFIG)")?;
    // A directory-mode instance that writes files is a per-pod writer: no
    // leader election, no gateway config, no manifest, no reports.
    let writer = args.mode == ModeArg::Directory && args.publish_files;
    let verify = !writer && !args.once;
    let metrics = Metrics::new();
    let report_token = match &args.report_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the report token {}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };

    let changed = Arc::new(Notify::new());
    let with_namespaces = matches!(
        policy.namespaces,
        certsync_controller::core::model::NamespacePolicy::Selector(_)
    );
    let (stores, _watches) = cluster::watch(
        &client,
        &policy.gateway_namespace,
        with_namespaces,
        args.certmerge && !writer,
        Arc::clone(&changed),
    );
    // Per-pod writers leave the other Secrets to the central instance.
    let _sweep = (!writer && !args.once).then(|| {
        sweep::spawn(
            &client,
            stores.non_tls.clone(),
            sweep::EVERY,
            Arc::clone(&changed),
        )
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = shutdown_tx.send(true);
    });

    let (ready_tx, ready_rx) = watch::channel(false);
    let filter_wasm = match &args.filter_wasm {
        Some(path) => Some(Arc::new(
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )),
        None => None,
    };
    let mut gateway_config = if args.manage_gateway_config && !writer && !args.once {
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
    let leading = if args.leader_election && !writer && !args.once {
        let elector = LeaderElector::new(
            client.clone(),
            &policy.gateway_namespace,
            &args.lease_name,
            &args.pod_name,
            LeaseConfig::default(),
        )?
        .with_metrics(metrics.clone());
        let mut stop = shutdown_rx.clone();
        elector.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
    } else {
        watch::channel(true).1
    };

    let rollout_changed = Arc::new(Notify::new());
    let mut driver = None;
    let mut report_routes = axum::Router::new();
    if verify {
        let (pods, _pods_task) = GatewayPods::watch(
            &client,
            &policy.gateway_namespace,
            &args.gateway_selector,
            Arc::clone(&rollout_changed),
        );
        if report_token.is_none() {
            tracing::warn!("no --report-token-file: reports are checked by pod address only");
        }
        let sink = Arc::new(ReportSink::new(
            ReportAuth {
                token: report_token.clone(),
                check_source: args.report_source_check,
            },
            &policy.gateway_namespace,
            pods.clone(),
            leading.clone(),
            metrics.clone(),
            Arc::clone(&rollout_changed),
        ));
        let d = RolloutDriver::new(
            client.clone(),
            policy.mode.clone(),
            &policy.gateway_namespace,
            &args.cert_dir.display().to_string(),
            RolloutSettings {
                heartbeat_window: args.heartbeat_window,
                timeout: args.rollout_timeout,
                evict: args.evict_stale_pods,
                expiry_warning: args.expiry_warning,
            },
            gateway_config.is_some(),
            Arc::clone(&sink),
            pods,
            metrics.clone(),
            &args.pod_name,
        );
        report_routes = certsync_controller::runtime::gateway::reports::router(sink)
            .merge(rollout::status_router(d.status()));
        driver = Some(d);
    }
    if !args.once {
        let state = Arc::new(HttpState::new(metrics.clone(), ready_rx, filter_wasm));
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
    tracing::info!(mode = ?args.mode, gateway_namespace = %policy.gateway_namespace, "caches synced");

    let files = if writer {
        Some((
            DirectoryPublisher::open(&args.cert_dir)
                .with_context(|| format!("opening {}", args.cert_dir.display()))?,
            args.cert_dir.clone(),
        ))
    } else {
        None
    };
    let events = Events::new(client.clone(), &args.pod_name);
    let mut reconciler = Reconciler::new(
        client.clone(),
        policy,
        stores,
        events,
        metrics.clone(),
        files,
    );
    reconciler.set_cert_dir(&args.cert_dir);
    if driver.is_some() {
        reconciler.defer_manifest();
    }

    if args.once {
        let outcome = reconciler.reconcile(unix_now()).await?;
        tracing::info!(?outcome, "published once; exiting");
        return Ok(());
    }

    if let Some(d) = driver.as_mut() {
        // Publish times survive a restart through the manifest.
        if let Some(previous) = read_manifest(&client, &args.gateway_namespace).await {
            d.seed(&previous);
        }
    }
    let mut backoff = Duration::from_millis(200);
    let mut shutdown = shutdown_rx;
    let mut resync = tokio::time::interval(RESYNC);
    let mut tick = tokio::time::interval(ROLLOUT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reconcile_due = true;
    let mut trim_after_pass = false;
    loop {
        if reconcile_due {
            reconcile_due = false;
            let triggered = std::time::Instant::now();
            // Coalesce a burst of watch events into one reconcile.
            tokio::time::sleep(args.debounce()).await;
            if *leading.borrow() {
                if let Some(config) = gateway_config.as_mut() {
                    if let Err(e) = config.apply(&client).await {
                        tracing::warn!(error = %e, "applying the gateway-side Istio objects failed; retrying");
                    }
                }
                match reconciler.reconcile(unix_now()).await {
                    Ok(outcome) => {
                        metrics.reconciled(ReconcileOutcome::Ok);
                        backoff = Duration::from_millis(200);
                        if outcome.writes + outcome.deletes > 0 || outcome.files_swapped {
                            metrics.observe_publish(triggered.elapsed());
                            tracing::info!(?outcome, "reconciled");
                        }
                    }
                    Err(e) => {
                        metrics.reconciled(ReconcileOutcome::Error);
                        tracing::warn!(error = %e, retry_in = ?backoff, "reconcile failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        changed.notify_one();
                    }
                }
                if let (Some(d), Some(published)) = (driver.as_mut(), reconciler.published()) {
                    d.set_publications(Arc::clone(published));
                }
            }
            trim_after_pass = true;
        }
        if let Some(d) = driver.as_mut() {
            let now_ms = jiff::Timestamp::now().as_millisecond();
            let leads = *leading.borrow();
            let moved = d.step(now_ms, leads, gateway_config.as_mut()).await;
            if leads {
                // The manifest is written here, after verification saw the
                // new publications: one write per change, rollout included.
                reconciler.set_rollout_notes(d.notes().clone());
                if let Err(e) = reconciler.write_manifest().await {
                    tracing::warn!(error = %e, "writing the manifest failed; retrying");
                    reconcile_due = true;
                    continue;
                }
                if moved && reconciler.has_cert_merges() {
                    // CertMerge status carries RolledOut.
                    reconcile_due = true;
                    continue;
                }
            }
        }
        if std::mem::take(&mut trim_after_pass) {
            // After the pass's writes (manifest included), off the publish path.
            heap::release_free_pages();
        }
        tokio::select! {
            _ = changed.notified() => reconcile_due = true,
            _ = resync.tick() => reconcile_due = true,
            _ = rollout_changed.notified() => {}
            _ = tick.tick(), if driver.is_some() => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    tracing::info!("shutting down");
    // Let the elector release the Lease, so a standby takes over at once.
    let mut leading = leading;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while leading.changed().await.is_ok() {}
    })
    .await;
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: log collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// The manifest a previous controller wrote, if any.
async fn read_manifest(
    client: &kube::Client,
    namespace: &str,
) -> Option<certsync_controller::core::manifest::Manifest> {
    let json = cluster::read_manifest_json(client, namespace)
        .await
        .ok()??;
    certsync_controller::core::manifest::parse(&json).ok()
}
