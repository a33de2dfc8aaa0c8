//! Leader election against the fake API server, with short timings
//! (lease 1.5 s, renew deadline 1 s, retry 200 ms).
//!
//! The central property — two replicas never both lead — is checked by a
//! sampler that reads every elector's receiver every 2 ms for the whole
//! test, while faults are injected: 500s and 429s on the Lease, added
//! latency longer than the renew deadline, API server restarts, and a
//! network partition that black-holes the leader's connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use certsync_controller::runtime::kube::leader::{LeaderElector, LeaseConfig};
use certsync_controller::runtime::ops::metrics::Metrics;
use certsync_fakekube::{FakeApiServer, Fault, FaultMatch, Verb};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep, timeout, Instant};

const NS: &str = "istio-system";
const LEASE: &str = "cert-sync-leader";

fn timing() -> LeaseConfig {
    LeaseConfig {
        lease_duration: Duration::from_millis(1500),
        renew_deadline: Duration::from_millis(1000),
        retry_period: Duration::from_millis(200),
    }
}

/// A running elector: its receiver and the switch that shuts it down.
struct Replica {
    id: &'static str,
    leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    metrics: Metrics,
}

impl Replica {
    fn start(client: kube::Client, id: &'static str) -> Replica {
        let metrics = Metrics::new();
        let elector = LeaderElector::new(client, NS, LEASE, id, timing())
            .expect("valid elector")
            .with_metrics(metrics.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let leading = elector.run(async move {
            let _ = stopped.await;
        });
        Replica {
            id,
            leading,
            stop: Some(stop),
            metrics,
        }
    }

    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    async fn wait_leading(&self, want: bool, within: Duration) -> bool {
        let mut rx = self.leading.clone();
        timeout(
            within,
            async move { rx.wait_for(|l| *l == want).await.is_ok() },
        )
        .await
        .unwrap_or(false)
    }

    /// Shuts the elector down and waits until its task has ended (after
    /// releasing the lease, if it held it).
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut rx = self.leading.clone();
        let ended = timeout(Duration::from_secs(5), async {
            while rx.changed().await.is_ok() {}
        })
        .await;
        assert!(ended.is_ok(), "{} did not stop", self.id);
        assert!(!*rx.borrow(), "{} still leads after stopping", self.id);
    }
}

/// Reads every receiver every 2 ms and counts the samples where more than
/// one replica leads. Also records each change of leader.
struct Sampler {
    overlaps: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
    leaders: Arc<std::sync::Mutex<Vec<Option<usize>>>>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(replicas: &[&Replica]) -> Sampler {
        let rxs: Vec<watch::Receiver<bool>> = replicas.iter().map(|r| r.leading.clone()).collect();
        let overlaps = Arc::new(AtomicUsize::new(0));
        let samples = Arc::new(AtomicUsize::new(0));
        let leaders = Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (overlaps, samples, leaders, done) = (
                overlaps.clone(),
                samples.clone(),
                leaders.clone(),
                done.clone(),
            );
            async move {
                let mut tick = tokio::time::interval(Duration::from_millis(2));
                while !done.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let now: Vec<usize> = rxs
                        .iter()
                        .enumerate()
                        .filter(|(_, rx)| *rx.borrow())
                        .map(|(i, _)| i)
                        .collect();
                    samples.fetch_add(1, Ordering::SeqCst);
                    if now.len() > 1 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    let current = now.first().copied();
                    let mut log = leaders.lock().expect("leader log");
                    if log.last() != Some(&current) {
                        log.push(current);
                    }
                }
            }
        });
        Sampler {
            overlaps,
            samples,
            leaders,
            done,
            task,
        }
    }

    fn overlaps(&self) -> usize {
        self.overlaps.load(Ordering::SeqCst)
    }

    /// Stops sampling; returns (samples, overlapping samples, leader log).
    async fn finish(self) -> (usize, usize, Vec<Option<usize>>) {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let log = self.leaders.lock().expect("leader log").clone();
        (
            self.samples.load(Ordering::SeqCst),
            self.overlaps.load(Ordering::SeqCst),
            log,
        )
    }
}

async fn lease(fake: &FakeApiServer) -> Lease {
    let api: Api<Lease> = Api::namespaced(fake.client().expect("client"), NS);
    api.get(LEASE).await.expect("lease exists")
}

fn spec(lease: &Lease) -> LeaseSpec {
    lease.spec.clone().unwrap_or_default()
}

fn update_lease() -> FaultMatch {
    FaultMatch::object("leases", NS, LEASE).verb(Verb::Update)
}

fn any_lease_request() -> FaultMatch {
    FaultMatch::object("leases", NS, LEASE)
}

/// Waits until exactly one of `replicas` leads; returns its index.
async fn wait_for_a_leader(replicas: &[&Replica], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let leading: Vec<usize> = (0..replicas.len())
            .filter(|i| replicas[*i].leads())
            .collect();
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(leading.len() < 2, "two leaders at once");
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn one_of_two_replicas_leads_and_the_lease_names_it() {
    let fake = FakeApiServer::start().await.expect("fake");
    let a = Replica::start(fake.client().expect("client"), "replica-a");
    let b = Replica::start(fake.client().expect("client"), "replica-b");
    let sampler = Sampler::start(&[&a, &b]);

    let leader = wait_for_a_leader(&[&a, &b], Duration::from_secs(5)).await;
    let (leader, follower) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    let first = lease(&fake).await;
    let first_spec = spec(&first);
    assert_eq!(first_spec.holder_identity.as_deref(), Some(leader.id));
    assert_eq!(
        first_spec.lease_duration_seconds,
        Some(2),
        "1.5 s rounded up"
    );
    assert_eq!(
        first_spec.lease_transitions,
        Some(0),
        "created, no transition"
    );
    assert!(first_spec.acquire_time.is_some());

    // Over several renew periods the leader keeps leading and renewing,
    // and the follower keeps following.
    sleep(Duration::from_millis(1200)).await;
    assert!(leader.leads() && !follower.leads());
    let later = spec(&lease(&fake).await);
    assert_eq!(later.holder_identity.as_deref(), Some(leader.id));
    assert_eq!(later.acquire_time, first_spec.acquire_time);
    assert!(later.renew_time > first_spec.renew_time, "renewed");
    assert!(
        fake.write_count("leases", NS, LEASE) >= 4,
        "renewals are writes"
    );

    // Metrics follow.
    let text = leader.metrics.encode();
    assert!(text.contains("\ncertsync_leader 1\n"));
    assert!(text.contains("certsync_api_requests_total{verb=\"update\",outcome=\"ok\"}"));
    assert!(follower.metrics.encode().contains("\ncertsync_leader 0\n"));

    let (samples, overlaps, log) = sampler.finish().await;
    assert_eq!(overlaps, 0);
    assert!(samples > 100, "{samples} samples");
    assert_eq!(
        log.iter().flatten().count(),
        1,
        "one leader throughout: {log:?}"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn two_replicas_never_both_lead_under_api_faults() {
    let fake = FakeApiServer::start().await.expect("fake");
    let a = Replica::start(fake.client().expect("client"), "replica-a");
    let b = Replica::start(fake.client().expect("client"), "replica-b");
    let sampler = Sampler::start(&[&a, &b]);
    let first = wait_for_a_leader(&[&a, &b], Duration::from_secs(5)).await;

    // A short run of 500s on renewals is absorbed within the renew deadline.
    fake.fail_next(2, 500, update_lease());
    sleep(Duration::from_millis(1200)).await;
    assert!(
        [&a, &b][first].leads(),
        "two failed renewals cost leadership"
    );

    // Latency below the renew deadline: still one leader.
    let slow = fake.add_latency(Duration::from_millis(300), any_lease_request());
    sleep(Duration::from_millis(1200)).await;
    fake.remove_fault(slow);

    // Latency beyond the renew deadline: the leader must step down; the
    // slow writes still land later, so the record keeps moving.
    let stuck = fake.add_latency(Duration::from_millis(1300), any_lease_request());
    assert!(
        [&a, &b][first]
            .wait_leading(false, Duration::from_millis(2500))
            .await,
        "leader stepped down when renewals took longer than the renew deadline"
    );
    sleep(Duration::from_millis(500)).await;
    fake.remove_fault(stuck);
    wait_for_a_leader(&[&a, &b], Duration::from_secs(5)).await;

    // API server restarts, one mid-renewal.
    fake.restart();
    sleep(Duration::from_millis(300)).await;
    fake.restart();
    sleep(Duration::from_millis(500)).await;

    // Throttling (kube retries 429 by itself; the elector's deadline wins)
    // and failing reads.
    fake.throttle_next(3, 1, any_lease_request());
    fake.fail_next(5, 500, any_lease_request().verb(Verb::Get));
    sleep(Duration::from_millis(1500)).await;

    // Every Lease write fails for longer than the lease: nobody may lead.
    let down = fake.inject(Fault::status(500, update_lease()));
    assert!(a.wait_leading(false, Duration::from_millis(1500)).await);
    assert!(b.wait_leading(false, Duration::from_millis(1500)).await);
    sleep(Duration::from_millis(2500)).await;
    assert!(
        !a.leads() && !b.leads(),
        "nobody can lead while writes fail"
    );
    fake.remove_fault(down);

    fake.clear_faults();
    wait_for_a_leader(&[&a, &b], Duration::from_secs(5)).await;
    let (samples, overlaps, log) = sampler.finish().await;
    assert_eq!(overlaps, 0, "both led at once; leader log {log:?}");
    assert!(samples > 1000, "{samples} samples");
    a.stop().await;
    b.stop().await;
}

/// A TCP forwarder to the fake API server that can be cut like a network
/// partition: while cut, nothing is forwarded in either direction and new
/// connections are accepted but never answered, so requests hang rather
/// than fail fast.
struct Partition {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Partition {
    async fn start(target: SocketAddr) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (cut, _) = watch::channel(false);
        let cut_tx = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = cut_tx.subscribe();
                tokio::spawn(async move {
                    if !*cut.borrow_and_update() {
                        let Ok(mut outbound) = TcpStream::connect(target).await else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                            _ = cut.wait_for(|c| *c) => {}
                        }
                    }
                    // Partitioned: hold the connection silently until healed.
                    let _ = cut.wait_for(|c| !*c).await;
                });
            }
        });
        Partition { addr, cut }
    }

    fn client(&self, fake: &FakeApiServer) -> kube::Client {
        let mut config = fake.config().expect("config");
        config.cluster_url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(config).expect("client")
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn heal(&self) {
        self.cut.send_replace(false);
    }
}

#[tokio::test]
async fn leadership_moves_when_the_leaders_renewals_keep_failing() {
    let fake = FakeApiServer::start().await.expect("fake");
    let link = Partition::start(fake.addr()).await;
    let a = Replica::start(link.client(&fake), "replica-a");
    assert!(a.wait_leading(true, Duration::from_secs(5)).await);
    let b = Replica::start(fake.client().expect("client"), "replica-b");
    let sampler = Sampler::start(&[&a, &b]);
    sleep(Duration::from_millis(500)).await;
    assert!(a.leads() && !b.leads());

    // The leader loses the API server: its renewals hang.
    let cut_at = Instant::now();
    link.cut();
    assert!(
        a.wait_leading(false, Duration::from_millis(1500)).await,
        "leader stepped down within the renew deadline"
    );
    let stepped_down = cut_at.elapsed();
    assert!(
        b.wait_leading(true, Duration::from_secs(5)).await,
        "standby took over"
    );
    let took_over = cut_at.elapsed();
    assert!(
        took_over > stepped_down + Duration::from_millis(500),
        "takeover {took_over:?} after step-down {stepped_down:?} with a margin"
    );
    assert_eq!(sampler.overlaps(), 0);

    // Healed, the old leader finds the lease held and stays a follower.
    link.heal();
    sleep(Duration::from_millis(1500)).await;
    assert!(b.leads() && !a.leads());
    let s = spec(&lease(&fake).await);
    assert_eq!(s.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(s.lease_transitions, Some(1));

    let (_, overlaps, log) = sampler.finish().await;
    assert_eq!(overlaps, 0);
    assert_eq!(log, vec![Some(0), None, Some(1)], "a, nobody, then b");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn graceful_release_hands_over_at_once() {
    let fake = FakeApiServer::start().await.expect("fake");
    let a = Replica::start(fake.client().expect("client"), "replica-a");
    assert!(a.wait_leading(true, Duration::from_secs(5)).await);
    let b = Replica::start(fake.client().expect("client"), "replica-b");
    let sampler = Sampler::start(&[&a, &b]);
    sleep(Duration::from_millis(500)).await;
    assert!(a.leads() && !b.leads());

    let stopped_at = Instant::now();
    a.stop().await;
    assert!(
        b.wait_leading(true, Duration::from_secs(1)).await,
        "standby took over within 1 s of the release"
    );
    let handover = stopped_at.elapsed();
    assert!(handover < Duration::from_secs(1), "{handover:?}");

    let s = spec(&lease(&fake).await);
    assert_eq!(s.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(s.lease_transitions, Some(1));
    let (_, overlaps, _) = sampler.finish().await;
    assert_eq!(overlaps, 0);
    b.stop().await;

    // The last replica releases too.
    assert_eq!(spec(&lease(&fake).await).holder_identity, None);
}

fn held_lease(holder: Option<&str>, transitions: i32) -> Lease {
    let now = MicroTime(Timestamp::now());
    Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

#[tokio::test]
async fn a_dead_holders_lease_is_taken_after_it_expires() {
    let fake = FakeApiServer::start().await.expect("fake");
    let dead = held_lease(Some("crashed-pod"), 4);
    fake.put(&dead).expect("put lease");

    let started = Instant::now();
    let a = Replica::start(fake.client().expect("client"), "replica-a");
    // Not before the 1 s lease has expired as seen from here...
    assert!(!a.wait_leading(true, Duration::from_millis(800)).await);
    // ...but soon after.
    assert!(a.wait_leading(true, Duration::from_secs(3)).await);
    assert!(started.elapsed() >= Duration::from_secs(1));

    let s = spec(&lease(&fake).await);
    assert_eq!(s.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(s.lease_transitions, Some(5));
    assert!(s.acquire_time > spec(&dead).acquire_time);
    a.stop().await;
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once() {
    let fake = FakeApiServer::start().await.expect("fake");
    fake.put(held_lease(None, 2)).expect("put lease");
    let a = Replica::start(fake.client().expect("client"), "replica-a");
    assert!(a.wait_leading(true, Duration::from_millis(800)).await);
    assert_eq!(spec(&lease(&fake).await).lease_transitions, Some(3));
    a.stop().await;
}

#[tokio::test]
async fn a_deleted_lease_ends_leadership_at_the_next_renewal() {
    let fake = FakeApiServer::start().await.expect("fake");
    let a = Replica::start(fake.client().expect("client"), "replica-a");
    assert!(a.wait_leading(true, Duration::from_secs(5)).await);
    fake.delete("leases", NS, LEASE).expect("lease existed");
    // Anyone may create it now: stop at the next renewal (200 ms), not at
    // the renew deadline (1 s)...
    assert!(a.wait_leading(false, Duration::from_millis(600)).await);
    // ...then compete again like anyone else.
    assert!(a.wait_leading(true, Duration::from_secs(3)).await);
    let s = spec(&lease(&fake).await);
    assert_eq!(s.holder_identity.as_deref(), Some("replica-a"));
    assert_eq!(s.lease_transitions, Some(0), "a new Lease");
    a.stop().await;
}

#[test]
fn invalid_timing_is_refused() {
    let bad = LeaseConfig {
        lease_duration: Duration::from_secs(10),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };
    assert!(bad.validate().is_err());
}
