//! Leader election on a `coordination.k8s.io/v1` Lease, so that several
//! replicas can run and only one of them writes.
//!
//! The algorithm is client-go's `leaderelection`:
//!
//! * **Acquire** when the Lease is absent (create it; `409 AlreadyExists`
//!   means another replica won), released (no `holderIdentity`), or expired;
//!   taking it over is a `replace` carrying the observed `resourceVersion`,
//!   so of two replicas racing for it one gets `409 Conflict` and stays a
//!   follower. A takeover bumps `leaseTransitions` and sets `acquireTime`.
//! * **Expired** means: the record (holder, `renewTime`, ...) has not changed
//!   for `leaseDurationSeconds` *as measured by this replica's monotonic
//!   clock* since it first saw that record. `renewTime` is the holder's wall
//!   clock, and comparing it with ours would let clock skew between nodes put
//!   two leaders in place; like client-go we only write `renewTime` (for
//!   people and tools) and judge expiry from when we observed it. A
//!   consequence: a replica that starts next to the Lease of a crashed
//!   holder waits one lease duration before taking it over.
//! * **Renew** every `retry_period` while leading. Leadership is valid until
//!   `renew_deadline` after the *start* of the last successful renewal; the
//!   write reached the server after that start, so any other replica can
//!   see it expire no earlier than `lease_duration` after that start. With
//!   `renew_deadline < lease_duration` we therefore step down (publish
//!   `false`) before anyone else can step up (given clocks that tick at
//!   about the same rate; their offsets do not matter), whatever the API
//!   server does:
//!   every call runs under a timeout ending at that deadline, so a stuck
//!   request, kube's own retries of 429/503 or a partition cannot keep us
//!   leading past it. API errors (5xx, 429, timeouts) are simply retried at
//!   the next `retry_period`; they never make two replicas lead.
//! * **Release** on shutdown: after publishing `false`, the holder clears
//!   `holderIdentity` and shortens the duration to 1 s, so a standby takes
//!   over at its next poll instead of waiting for expiry.
//!
//! Outside the model: deleting the Lease by hand lets another replica
//! create it and lead while the old leader still believes it leads, until
//! its next renewal finds the Lease gone (at most one `retry_period`); the
//! old leader then steps down at once.
//!
//! [`LeaderElector::run`] returns a `watch::Receiver<bool>` that is `true`
//! exactly while this replica may write.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};

use crate::runtime::gateway::forward::Endpoint;
use crate::runtime::ops::metrics::{ApiOutcome, ApiVerb, Metrics};

/// Timing of the election. It must hold that
/// `lease_duration > renew_deadline > retry_period > 0`: the gap between the
/// first two is the safety margin that keeps two leaders from overlapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long followers wait, from the last change they saw, before
    /// taking over. Written to the Lease rounded up to whole seconds.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// How often to renew (leader) or poll (followers, with jitter).
    pub retry_period: Duration,
}

impl Default for LeaseConfig {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    fn default() -> Self {
        LeaseConfig {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseConfig {
    /// Checks the ordering the safety argument needs.
    pub fn validate(&self) -> Result<(), LeaderError> {
        if self.retry_period.is_zero() {
            return Err(LeaderError::InvalidConfig("retry_period must be positive"));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(LeaderError::InvalidConfig(
                "renew_deadline must be longer than retry_period",
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(LeaderError::InvalidConfig(
                "lease_duration must be longer than renew_deadline",
            ));
        }
        if self.lease_duration > Duration::from_secs(i32::MAX as u64) {
            return Err(LeaderError::InvalidConfig("lease_duration is too long"));
        }
        Ok(())
    }

    /// `leaseDurationSeconds` to write: rounded up, so followers never wait
    /// less than configured.
    fn lease_duration_seconds(&self) -> i32 {
        let secs =
            self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// Why an elector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("invalid leader election timing: {0}")]
    InvalidConfig(&'static str),
    #[error("leader election identity must not be empty")]
    EmptyIdentity,
    #[error("leader election lease name must not be empty")]
    EmptyLeaseName,
}

/// One candidate for leadership. See the module docs for the algorithm.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    lease_name: String,
    identity: String,
    config: LeaseConfig,
    metrics: Option<Metrics>,
    /// Where this replica takes reports, written on the Lease while it
    /// leads; and who leads, as read from it (`gateway::forward`).
    endpoint: Option<(Endpoint, watch::Sender<Option<Endpoint>>)>,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector")
            .field("namespace", &self.namespace)
            .field("lease_name", &self.lease_name)
            .field("identity", &self.identity)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The record as this replica last saw it, and since when (monotonic).
struct Observed {
    spec: LeaseSpec,
    since: Instant,
}

/// While leading: the Lease as we last wrote it and when leading must end
/// unless renewed.
struct Lead {
    lease: Lease,
    deadline: Instant,
}

/// What one acquire-or-renew attempt found.
enum Attempt {
    /// We hold the Lease; this is what the server stored.
    Holding(Box<Lease>),
    /// Someone else holds it (or won the race for it).
    HeldBy(String),
}

impl LeaderElector {
    /// An elector for the Lease `namespace/lease_name`. `identity` must be
    /// unique per replica (the pod name, typically).
    pub fn new(
        client: Client,
        namespace: &str,
        lease_name: &str,
        identity: &str,
        config: LeaseConfig,
    ) -> Result<Self, LeaderError> {
        config.validate()?;
        if identity.is_empty() {
            return Err(LeaderError::EmptyIdentity);
        }
        if lease_name.is_empty() {
            return Err(LeaderError::EmptyLeaseName);
        }
        Ok(LeaderElector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
            config,
            metrics: None,
            endpoint: None,
        })
    }

    /// Writes `own` (address and forward key) on the Lease while leading,
    /// and tells the receiver who leads whenever the Lease is read.
    pub fn with_endpoint(mut self, own: Endpoint) -> (Self, watch::Receiver<Option<Endpoint>>) {
        let (tx, rx) = watch::channel(None);
        self.endpoint = Some((own, tx));
        (self, rx)
    }

    /// [`observe`], and the leader's endpoint passed on.
    fn seen(&self, observed: &mut Option<Observed>, lease: &Lease) -> Instant {
        if let Some((_, tx)) = &self.endpoint {
            let holder = lease
                .spec
                .as_ref()
                .and_then(|s| s.holder_identity.as_deref());
            let leader = Endpoint::of_holder(holder, &lease.metadata);
            tx.send_if_modified(|current| {
                let changed = *current != leader;
                *current = leader;
                changed
            });
        }
        observe(observed, lease)
    }

    /// Our endpoint's annotations on a Lease we write.
    fn stamp(&self, lease: &mut Lease) {
        if let Some((own, _)) = &self.endpoint {
            own.stamp(&mut lease.metadata);
        }
    }

    /// Reports leadership (`certsync_leader`) and Lease requests
    /// (`certsync_api_requests_total`) to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Starts electing on a new task. The receiver is `true` exactly while
    /// this replica leads. When `shutdown` completes, the elector publishes
    /// `false`, releases the Lease if it holds it, and ends; the end is
    /// visible as `changed()` returning an error on the receiver, so a
    /// caller can wait for the release before exiting.
    pub fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(self.run_loop(tx, shutdown));
        rx
    }

    async fn run_loop(
        self,
        tx: watch::Sender<bool>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut observed: Option<Observed> = None;
        let mut lead: Option<Lead> = None;
        tracing::info!(
            lease = %self.lease_ref(),
            identity = %self.identity,
            "leader election started"
        );
        'election: loop {
            let started = Instant::now();
            let attempt_deadline = lead
                .as_ref()
                .map_or(started + self.config.renew_deadline, |l| l.deadline);
            let cached = lead.as_ref().map(|l| l.lease.clone());
            let result = tokio::select! {
                biased;
                () = &mut shutdown => break 'election,
                r = timeout_at(attempt_deadline, self.try_acquire_or_renew(&mut observed, cached)) => r,
            };
            match result {
                Ok(Ok(Attempt::Holding(lease))) => {
                    let deadline = started + self.config.renew_deadline;
                    if Instant::now() < deadline {
                        if lead.is_none() {
                            self.publish(&tx, true);
                            let spec = lease.spec.as_ref();
                            tracing::info!(
                                lease = %self.lease_ref(),
                                identity = %self.identity,
                                transitions = spec.and_then(|s| s.lease_transitions).unwrap_or(0),
                                "became leader"
                            );
                        }
                        lead = Some(Lead {
                            lease: *lease,
                            deadline,
                        });
                    } else if lead.take().is_some() {
                        // The write succeeded, but too late to rely on.
                        self.step_down(&tx, "renewal answered after the renew deadline");
                    }
                }
                Ok(Ok(Attempt::HeldBy(holder))) => {
                    if lead.take().is_some() {
                        tracing::warn!(%holder, "the lease was taken over");
                        self.step_down(&tx, "another replica holds the lease");
                    } else {
                        tracing::trace!(%holder, "following");
                    }
                }
                Ok(Err(error)) => {
                    tracing::warn!(
                        lease = %self.lease_ref(),
                        leading = lead.is_some(),
                        %error,
                        "leader election request failed; retrying"
                    );
                    if lead.as_ref().is_some_and(|l| Instant::now() >= l.deadline) {
                        lead = None;
                        self.step_down(&tx, "renewals failed until the renew deadline");
                    }
                }
                Err(_elapsed) => {
                    if lead.take().is_some() {
                        self.step_down(&tx, "no successful renewal before the renew deadline");
                    } else {
                        tracing::warn!(lease = %self.lease_ref(), "acquiring the lease timed out");
                    }
                }
            }

            // Leaders renew on a steady beat; followers poll with jitter so
            // that replicas started together do not keep colliding.
            let next = match &lead {
                Some(_) => started + self.config.retry_period,
                None => Instant::now() + jittered(self.config.retry_period),
            };
            let deadline = lead.as_ref().map(|l| l.deadline);
            tokio::select! {
                biased;
                () = &mut shutdown => break 'election,
                () = sleep_until(deadline.unwrap_or(next)), if deadline.is_some_and(|d| d < next) => {
                    lead = None;
                    self.step_down(&tx, "renewals failed until the renew deadline");
                }
                () = sleep_until(next) => {}
            }
        }

        if let Some(lead) = lead {
            // Stop writing first, then let a standby in at once.
            self.publish(&tx, false);
            self.release(lead).await;
        }
        self.publish(&tx, false);
        tracing::info!(lease = %self.lease_ref(), identity = %self.identity, "leader election stopped");
    }

    /// One round of client-go's `tryAcquireOrRenew`.
    async fn try_acquire_or_renew(
        &self,
        observed: &mut Option<Observed>,
        cached: Option<Lease>,
    ) -> Result<Attempt, kube::Error> {
        // Fast path while leading: renew what we wrote last, no read needed.
        // A conflict means someone else wrote the Lease: read and decide.
        if let Some(cached) = cached {
            let renewed = self.renewed(cached);
            match self.replace(&renewed).await {
                Ok(lease) => {
                    self.seen(observed, &lease);
                    return Ok(Attempt::Holding(Box::new(lease)));
                }
                Err(e) if is_conflict(&e) => {
                    tracing::debug!("lease renewal conflicted; re-reading it");
                }
                // Deleted under us: anyone may create it now, so stop
                // leading at once rather than at the deadline.
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    return Ok(Attempt::HeldBy(String::from(
                        "(nobody: the lease was deleted)",
                    )));
                }
                Err(e) => return Err(e),
            }
        }

        let Some(current) = self.get().await? else {
            return match self.create(&self.fresh_lease()).await {
                Ok(lease) => {
                    self.seen(observed, &lease);
                    Ok(Attempt::Holding(Box::new(lease)))
                }
                Err(e) if is_conflict(&e) => {
                    Ok(Attempt::HeldBy(String::from("(created concurrently)")))
                }
                Err(e) => Err(e),
            };
        };
        let since = self.seen(observed, &current);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let desired = match &holder {
            Some(_) if ours => self.renewed(current),
            Some(other) => {
                let duration = spec
                    .lease_duration_seconds
                    .filter(|s| *s > 0)
                    .map_or(self.config.lease_duration, |s| {
                        Duration::from_secs(s.unsigned_abs().into())
                    });
                if Instant::now() < since + duration {
                    return Ok(Attempt::HeldBy(other.clone()));
                }
                tracing::info!(
                    lease = %self.lease_ref(),
                    previous = %other,
                    "lease expired; taking it over"
                );
                self.taken_over(current)
            }
            None => self.taken_over(current),
        };
        match self.replace(&desired).await {
            Ok(lease) => {
                self.seen(observed, &lease);
                Ok(Attempt::Holding(Box::new(lease)))
            }
            Err(e) if is_conflict(&e) => {
                Ok(Attempt::HeldBy(holder.unwrap_or_else(|| {
                    String::from("(acquired concurrently)")
                })))
            }
            Err(e) => Err(e),
        }
    }

    /// Clears the holder so a standby takes over without waiting. Only
    /// this replica's own record is cleared: the write carries the
    /// resourceVersion of a record naming us, so if anyone else wrote the
    /// Lease meanwhile it fails with 409 and nothing is lost. Bounded by
    /// `renew_deadline`, so shutdown never hangs on it.
    async fn release(&self, lead: Lead) {
        let deadline = Instant::now() + self.config.renew_deadline;
        match timeout_at(deadline, self.clear_holder(lead.lease)).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.lease_ref(), "released the lease"),
            Ok(Ok(false)) => tracing::info!("the lease was no longer ours to release"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "releasing the lease failed; it will expire instead");
            }
            Err(_) => tracing::warn!("releasing the lease timed out; it will expire instead"),
        }
    }

    /// Writes `lease` without a holder; if our copy is stale (an interrupted
    /// renewal may have landed), re-reads once and retries while it still
    /// names us. `Ok(false)`: someone else holds it.
    async fn clear_holder(&self, mut lease: Lease) -> Result<bool, kube::Error> {
        for _ in 0..2 {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now());
            match self.replace(&lease).await {
                Ok(_) => return Ok(true),
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
            match self.get().await? {
                Some(current)
                    if current
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_deref())
                        == Some(self.identity.as_str()) =>
                {
                    lease = current;
                }
                _ => return Ok(false),
            }
        }
        Ok(false)
    }

    fn publish(&self, tx: &watch::Sender<bool>, leading: bool) {
        tx.send_if_modified(|v| std::mem::replace(v, leading) != leading);
        if let Some(m) = &self.metrics {
            m.set_leader(leading);
        }
    }

    fn step_down(&self, tx: &watch::Sender<bool>, why: &str) {
        self.publish(tx, false);
        tracing::warn!(
            lease = %self.lease_ref(),
            identity = %self.identity,
            reason = why,
            "stopped leading"
        );
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }

    fn fresh_lease(&self) -> Lease {
        let now = now();
        let mut lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.lease_name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.config.lease_duration_seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        self.stamp(&mut lease);
        lease
    }

    /// Same holder, fresh `renewTime`.
    fn renewed(&self, mut lease: Lease) -> Lease {
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        spec.renew_time = Some(now());
        if spec.acquire_time.is_none() {
            spec.acquire_time = spec.renew_time.clone();
        }
        self.stamp(&mut lease);
        lease
    }

    /// New holder: a transition.
    fn taken_over(&self, mut lease: Lease) -> Lease {
        let now = now();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(self.config.lease_duration_seconds());
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        self.stamp(&mut lease);
        lease
    }

    async fn get(&self) -> Result<Option<Lease>, kube::Error> {
        let r = self.api.get_opt(&self.lease_name).await;
        self.count(ApiVerb::Get, &r);
        r
    }

    async fn create(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        let r = self.api.create(&write_params(), lease).await;
        self.count(ApiVerb::Create, &r);
        r
    }

    async fn replace(&self, lease: &Lease) -> Result<Lease, kube::Error> {
        let r = self
            .api
            .replace(&self.lease_name, &write_params(), lease)
            .await;
        self.count(ApiVerb::Update, &r);
        r
    }

    fn count<T>(&self, verb: ApiVerb, r: &Result<T, kube::Error>) {
        if let Some(m) = &self.metrics {
            m.api_request(verb, ApiOutcome::of(r));
        }
    }
}

/// Records `lease`'s spec as seen now unless it is the one already seen;
/// returns since when the current record has been seen unchanged.
fn observe(observed: &mut Option<Observed>, lease: &Lease) -> Instant {
    let spec = lease.spec.clone().unwrap_or_default();
    match observed {
        Some(o) if o.spec == spec => o.since,
        _ => {
            let since = Instant::now();
            *observed = Some(Observed { spec, since });
            since
        }
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 409)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// `base` stretched by a random factor in [1, 2.2), like client-go's
/// `JitterUntil(retryPeriod, 1.2)`.
fn jittered(base: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // 53 random bits → [0, 1).
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(1.0 + 1.2 * unit)
}

/// Lease writes carry cert-sync's one field manager, so `managedFields`
/// names who holds the Lease's fields (not `unknown`).
fn write_params() -> PostParams {
    PostParams {
        field_manager: Some(super::cluster::FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

#[cfg(test)]
#[path = "leader_tests.rs"]
mod tests;
