//! The verify stage: feeds `core::rollout` with what was published, the
//! live gateway pods and their reports, and carries out what it decides —
//! Events, metrics, the status view, and the re-trigger ladder's writes.
//!
//! ```text
//!  publish ──Publications (manifest, refusals)────────┐
//!  POST /v1/reports ─▶ ReportSink (observations) ────┤
//!  Pod watch ─▶ GatewayPods (live pods) ─────────────┼─▶ step(now) ─▶ assess ─▶ Tracker::step
//!                                                     │                  │             │
//!        /v1/status ◀── StatusSnapshot ◀─────────────┘      metrics ◀──┘   Events, re-push,
//!        record (manifest, CertMerge status) ◀── notes()                               re-apply, evict
//! ```
//!
//! Only the leader acts (writes, Events); every replica keeps its view.

use super::Context;
use crate::config::Args;
use crate::core::manifest::{rfc3339_ms, Manifest, TargetRef};
use crate::core::model::{keys::REPUSHED_AT, Mode, Policy};
use crate::core::reasons::{self, actions};
use crate::core::rollout::{
    self, Action, LadderConfig, NoteMap, PublicationKey, PublicationView, RolloutNote,
    RolloutNotes, Silence, Tracker, Warning,
};
use crate::core::status::{PodSummary, Publications};
use crate::runtime::gateway::config::GatewayConfig;
use crate::runtime::gateway::pods::GatewayPods;
use crate::runtime::gateway::reports::ReportSink;
use crate::runtime::kube::cluster::FIELD_MANAGER;
use crate::runtime::kube::events::secret_reference;
use crate::runtime::ops::metrics::LadderStep;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Secret};
use kube::api::{EvictParams, Patch, PatchParams};
use kube::Api;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The knobs of verification.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A pod without a report for this long is `Unknown`.
    pub heartbeat_window: Duration,
    /// A rollout unconverged this long climbs the ladder, one rung per timeout.
    pub timeout: Duration,
    pub evict: bool,
    /// Warn when a served certificate expires within this long.
    pub expiry_warning: Duration,
    /// The controller applies the gateway-side Istio objects (the ladder
    /// can re-apply them).
    pub manages_gateway_config: bool,
    /// The certificate directory as the gateway sees it (directory mode's
    /// SDS names).
    pub cert_dir: String,
}

impl Settings {
    pub fn from_args(args: &Args, manages_gateway_config: bool) -> Self {
        Settings {
            heartbeat_window: args.heartbeat_window,
            timeout: args.rollout_timeout,
            evict: args.evict_stale_pods,
            expiry_warning: args.expiry_warning,
            manages_gateway_config,
            cert_dir: args.cert_dir.display().to_string(),
        }
    }
}

pub struct Verifier {
    gateway_namespace: String,
    mode: Mode,
    settings: Settings,
    ladder: LadderConfig,
    sink: Arc<ReportSink>,
    pods: GatewayPods,
    tracker: Tracker,
    warned: BTreeSet<Warning>,
    /// Live pods silent past the heartbeat window (told once each).
    silence: Silence,
    notes: RolloutNotes,
    status: SharedStatus,
}

mod silence;
mod status;
pub use status::{status_router, SharedStatus, StatusSnapshot};

impl Verifier {
    pub fn new(
        policy: &Policy,
        settings: Settings,
        sink: Arc<ReportSink>,
        pods: GatewayPods,
    ) -> Self {
        let ladder = LadderConfig {
            timeout_ms: millis(settings.timeout),
            can_repush: !matches!(policy.mode, Mode::Directory),
            can_reapply: settings.manages_gateway_config,
            can_evict: settings.evict,
            // Never more than one eviction per five timeouts, cluster-wide.
            eviction_interval_ms: millis(settings.timeout) * 5,
        };
        Verifier {
            gateway_namespace: policy.gateway_namespace.clone(),
            mode: policy.mode.clone(),
            settings,
            ladder,
            sink,
            pods,
            tracker: Tracker::default(),
            warned: BTreeSet::new(),
            silence: Silence::default(),
            notes: RolloutNotes::default(),
            status: Arc::new(RwLock::new(None)),
        }
    }

    /// The gateway pods verification counts.
    pub fn pods(&self) -> &GatewayPods {
        &self.pods
    }

    /// The view `/v1/status` serves.
    pub fn status(&self) -> SharedStatus {
        Arc::clone(&self.status)
    }

    /// Publish times from a manifest a previous controller wrote, so a
    /// restart keeps time-to-converge honest.
    pub fn seed(&mut self, previous: &Manifest) {
        let ms = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_millisecond())
        };
        for entry in &previous.publications {
            if let Some(at) = ms(&entry.published_at) {
                self.tracker.remember_published(
                    PublicationKey::of(entry),
                    entry.sha256,
                    at,
                    ms(&entry.converged_at),
                );
            }
        }
    }

    /// Rollout notes per source for the manifest and CertMerge status
    /// (replaced only when they change).
    pub fn notes(&self) -> &RolloutNotes {
        &self.notes
    }

    /// One pass: assess, update metrics and the status view, and (when
    /// `leading`) act. Returns true when the notes changed, i.e. the
    /// manifest and CertMerge status need writing.
    pub async fn step(
        &mut self,
        ctx: &Context,
        now_ms: i64,
        leading: bool,
        mut gateway_config: Option<&mut GatewayConfig>,
        published: Option<&Publications>,
    ) -> bool {
        let Some(published) = published.cloned() else {
            return false;
        };
        let manifest = &*published;
        let live = self.pods.live();
        let names: BTreeSet<String> = live.iter().map(|p| p.name.clone()).collect();
        self.sink.retain_pods(&names);
        let observations = self.sink.observations();
        let window = millis(self.settings.heartbeat_window);
        let views = rollout::assess(&manifest.publications, &live, &observations, now_ms, window);
        let actions = self.tracker.step(&views, now_ms, &self.ladder);
        let mode = self.mode.clone();
        let certdir = self.settings.cert_dir.clone();
        let warnings = rollout::warnings(
            &manifest.publications,
            &live,
            &observations,
            |r| rollout::is_ours(&mode, &certdir, r),
            now_ms.div_euclid(1000),
            i64::try_from(self.settings.expiry_warning.as_secs()).unwrap_or(i64::MAX),
        );
        ctx.metrics.set_rollout(&views);

        let mut reapplied = false;
        if leading {
            reapplied = self
                .act(ctx, &actions, manifest, gateway_config.as_deref_mut())
                .await;
            self.warn(ctx, &warnings, manifest).await;
        }
        if leading {
            let silence = self.silence.step(
                &live,
                &observations,
                now_ms,
                window,
                self.ladder.can_reapply,
            );
            ctx.metrics.set_gateway_pods(self.silence.states().values());
            self.tell_silence(ctx, &silence, gateway_config, reapplied)
                .await;
        } else {
            // A standby takes no reports, so it cannot tell who is silent;
            // should it lead, every pod gets a fresh window from then.
            self.silence = Silence::default();
            ctx.metrics.set_gateway_pods(std::iter::empty());
        }

        let changed = self.renew_notes(&views);
        let pods = live
            .iter()
            .map(|p| {
                let obs = observations.get(&p.name);
                PodSummary {
                    name: p.name.clone(),
                    ip: p.ips.first().map(ToString::to_string),
                    last_report: obs.map(|o| rfc3339_ms(o.received_at_ms)),
                    seq: obs.map(|o| o.seq),
                    certificates: obs.map_or(0, |o| o.certificates.len()),
                    reporting: self.silence.states().get(&p.name).copied(),
                }
            })
            .collect();
        let snapshot = StatusSnapshot {
            published,
            views,
            notes: Arc::clone(&self.notes),
            pods,
            warnings,
            now_ms,
        };
        if let Ok(mut status) = self.status.write() {
            *status = Some(snapshot);
        }
        changed
    }

    /// The rollout notes of `views`; whether they changed. Walked in key
    /// order beside the last notes and the tracker's episodes (maps in the
    /// same order), so ten thousand publications cost no lookups; an
    /// unchanged note keeps its allocation (the manifest writer compares by
    /// pointer) and unchanged notes keep their map.
    fn renew_notes(&mut self, views: &[PublicationView]) -> bool {
        let mut sorted: Vec<&PublicationView> = views.iter().collect();
        sorted.sort_by(|a, b| a.key.cmp(&b.key));
        sorted.dedup_by(|a, b| a.key == b.key);
        let mut old = self.notes.iter().peekable();
        let mut times = self.tracker.times().peekable();
        let mut changed = sorted.len() != self.notes.len();
        let mut fresh: Vec<(&PublicationKey, Arc<RolloutNote>)> = Vec::with_capacity(sorted.len());
        for v in sorted {
            while old.next_if(|(k, _)| **k < v.key).is_some() {}
            while times.next_if(|(k, ..)| **k < v.key).is_some() {}
            let (published_at, converged_at) = times
                .next_if(|(k, ..)| **k == v.key)
                .map_or((None, None), |(_, p, c)| (Some(p), c));
            let note = RolloutNote {
                sha256: v.sha256,
                state: v.state,
                published_at,
                converged_at,
                pods: v.pods.iter().map(|(p, s)| (p.clone(), s.state)).collect(),
            };
            let note = match old.next_if(|(k, _)| **k == v.key) {
                Some((_, n)) if **n == note => Arc::clone(n),
                _ => {
                    changed = true;
                    Arc::new(note)
                }
            };
            fresh.push((&v.key, note));
        }
        if changed {
            let notes: NoteMap = fresh.into_iter().map(|(k, n)| (k.clone(), n)).collect();
            self.notes = Arc::new(notes);
        }
        changed
    }

    async fn act(
        &mut self,
        ctx: &Context,
        actions: &[Action],
        manifest: &Manifest,
        mut gateway_config: Option<&mut GatewayConfig>,
    ) -> bool {
        let stamp = jiff::Timestamp::now().to_string();
        let mut reapplied = false;
        for action in actions {
            match action {
                Action::Converged {
                    source,
                    sha256,
                    after_ms,
                } => {
                    let after = Duration::from_millis(u64::try_from(*after_ms).unwrap_or(0));
                    ctx.metrics.observe_converge(after);
                    let pods = self.pods.live().len();
                    let message = format!(
                        "sha256 {} verified on {pods}/{pods} gateway pods after {:.1}s",
                        sha256.short(),
                        after.as_secs_f64()
                    );
                    tracing::info!(%source, "{message}");
                    ctx.emit_action(
                        source_ref(source),
                        false,
                        actions::VERIFY,
                        reasons::ROLLED_OUT,
                        &message,
                    )
                    .await;
                }
                Action::Stalled {
                    source,
                    sha256,
                    pods,
                } => {
                    ctx.metrics.ladder_step(LadderStep::Stalled);
                    let lagging: Vec<String> =
                        pods.iter().map(|(p, s)| format!("{p} {s}")).collect();
                    let message = format!(
                        "sha256 {} not served by every gateway pod after {}s: {}",
                        sha256.short(),
                        self.settings.timeout.as_secs(),
                        lagging.join(", ")
                    );
                    tracing::warn!(%source, "{message}");
                    ctx.emit_action(
                        source_ref(source),
                        true,
                        actions::VERIFY,
                        reasons::ROLLOUT_STALLED,
                        &message,
                    )
                    .await;
                }
                Action::RePush { key } => {
                    let source = &key.source;
                    let target = manifest.publications.iter().find(|e| key.is(e));
                    let Some(secret) = target.and_then(|e| published_secret(&e.target)) else {
                        continue;
                    };
                    ctx.metrics.ladder_step(LadderStep::RePush);
                    let result = self.repush(ctx, secret, &stamp).await;
                    let message = match &result {
                        Ok(()) => format!("re-pushed Secret {secret}: a gateway pod still serves an older certificate"),
                        Err(e) => format!("re-pushing Secret {secret} failed: {e}"),
                    };
                    tracing::warn!(%source, "{message}");
                    ctx.emit_action(
                        source_ref(source),
                        true,
                        actions::RETRIGGER,
                        reasons::REPUSHED,
                        &message,
                    )
                    .await;
                }
                Action::Reapply => {
                    let Some(config) = gateway_config.as_deref_mut() else {
                        continue;
                    };
                    ctx.metrics.ladder_step(LadderStep::ReapplyGatewayConfig);
                    self.reapply(ctx, config, &stamp, "rollouts are stuck")
                        .await;
                    reapplied = true;
                }
                Action::Evict { pod, source } => {
                    ctx.metrics.ladder_step(LadderStep::Evict);
                    let api = Api::<Pod>::namespaced(ctx.client.clone(), &self.gateway_namespace);
                    let result = api.evict(pod, &EvictParams::default()).await;
                    let (reason, message) = match &result {
                        Ok(_) => (
                            reasons::POD_EVICTED,
                            format!("evicted gateway pod {pod}: it does not serve {source}'s current certificate"),
                        ),
                        Err(e) => (
                            reasons::EVICTION_FAILED,
                            format!("evicting gateway pod {pod} failed (a PodDisruptionBudget?): {e}"),
                        ),
                    };
                    tracing::warn!(%source, "{message}");
                    ctx.emit_action(
                        pod_ref(&self.gateway_namespace, pod),
                        true,
                        actions::RETRIGGER,
                        reason,
                        &message,
                    )
                    .await;
                }
            }
        }
        reapplied
    }

    /// Events for warnings that are new; nothing repeats while they persist.
    async fn warn(&mut self, ctx: &Context, warnings: &[Warning], manifest: &Manifest) {
        let sources: BTreeMap<&str, &str> = manifest
            .publications
            .iter()
            .map(|e| (e.sds_resource.as_str(), e.source.as_str()))
            .collect();
        let now: BTreeSet<Warning> = warnings.iter().cloned().collect();
        for w in now.difference(&self.warned) {
            let reason = match w.kind {
                rollout::WarningKind::Expiring => reasons::CERTIFICATE_EXPIRING,
                rollout::WarningKind::Expired => reasons::CERTIFICATE_EXPIRED,
                rollout::WarningKind::Drift => reasons::SERVED_DRIFT,
            };
            let message = w.message();
            tracing::warn!(pod = %w.pod, resource = %w.resource, "{message}");
            let about = match sources.get(w.resource.as_str()) {
                Some(source) => source_ref(source),
                None => pod_ref(&self.gateway_namespace, &w.pod),
            };
            ctx.emit_action(about, true, actions::VERIFY, reason, &message)
                .await;
        }
        self.warned = now;
    }

    async fn repush(&self, ctx: &Context, secret: &str, stamp: &str) -> Result<(), kube::Error> {
        let api = Api::<Secret>::namespaced(ctx.client.clone(), &self.gateway_namespace);
        // A merge patch, not an apply: an apply of only this annotation would
        // drop every other field cert-sync's apply owns.
        let patch = serde_json::json!({"metadata": {"annotations": {REPUSHED_AT: stamp}}});
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        api.patch(secret, &params, &Patch::Merge(&patch))
            .await
            .map(|_| ())
    }
}

fn published_secret(target: &TargetRef) -> Option<&str> {
    match target {
        TargetRef::Credential { secret } | TargetRef::Merged { secret, .. } => Some(secret),
        TargetRef::Directory { .. } | TargetRef::Referenced { .. } | TargetRef::MeshCa { .. } => {
            None
        }
    }
}

fn source_ref(source: &str) -> ObjectReference {
    let (namespace, name) = source.split_once('/').unwrap_or(("", source));
    secret_reference(&crate::core::model::ObjectRef::new(namespace, name))
}

fn pod_ref(namespace: &str, pod: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(namespace.to_owned()),
        name: Some(pod.to_owned()),
        ..ObjectReference::default()
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
