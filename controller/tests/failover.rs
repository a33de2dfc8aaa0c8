//! `cert-sync` replicas against the fake API server, through failover and
//! API-server outages: a replica that gains the Lease publishes at once
//! what changed while nobody led (not at the next resync, a minute later),
//! a replica stopped with SIGTERM hands the Lease over at once, the Lease's
//! fields are managed by `cert-sync`, and after an API-server restart the
//! watches relist promptly and nothing is written from stale preconditions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failed assertion

#[path = "support/mod.rs"]
mod support;

use certsync_fakekube::{Fault, FaultMatch};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Far below the 60 s resync: a pass that waits for it fails the test.
const PROMPTLY: Duration = Duration::from_secs(12);
const LEASE: &str = "2s";

struct Replica {
    name: &'static str,
    child: Child,
    port: u16,
}

fn start(kubeconfig: &std::path::Path, name: &'static str) -> Replica {
    start_with(kubeconfig, name, &[])
}

fn start_with(kubeconfig: &std::path::Path, name: &'static str, extra: &[String]) -> Replica {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_cert-sync"))
        .env_remove("RUST_LOG")
        .env("KUBECONFIG", kubeconfig)
        .args(["--pod-name", name, "--lease-duration", LEASE])
        .args(["--manage-gateway-config=false", "--http-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Replica { name, child, port }
}

fn holder(server: &FakeApiServer) -> Option<String> {
    let lease = server.get("leases", GW, "cert-sync")?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
}

async fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// Until `replica` accepts connections on its HTTP port.
async fn wait_listening(replica: &Replica) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", replica.port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < PROMPTLY,
            "{} not listening within {PROMPTLY:?}",
            replica.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas, one leading with `shop/first` published; returns them
/// as (leader, standby).
async fn two_replicas(server: &FakeApiServer, dir: &std::path::Path) -> (Replica, Replica) {
    two_replicas_with(server, dir, &[]).await
}

async fn two_replicas_with(
    server: &FakeApiServer,
    dir: &std::path::Path,
    extra: &[String],
) -> (Replica, Replica) {
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    server.put(mk_pair("shop", "first", P256, true)).unwrap();
    let a = start_with(&kubeconfig, "replica-a", extra);
    let b = start_with(&kubeconfig, "replica-b", extra);
    wait_for("a leader", PROMPTLY, || holder(server).is_some()).await;
    wait_for("the first publication", PROMPTLY, || {
        server.get("secrets", GW, "shop.first").is_some()
    })
    .await;
    // As a kubelet would before sending traffic: a loaded machine can give
    // the leader its Lease before the other process has bound its port.
    for replica in [&a, &b] {
        wait_listening(replica).await;
    }
    if holder(server).as_deref() == Some(a.name) {
        (a, b)
    } else {
        (b, a)
    }
}

#[tokio::test]
async fn a_standby_that_takes_over_publishes_what_changed_at_once() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut leader, standby) = two_replicas(&server, dir.path()).await;

    leader.child.start_kill().unwrap();
    leader.child.wait().await.unwrap();
    // Changed while nobody leads: only the next leader can publish it.
    server.put(mk_pair("shop", "second", RSA, true)).unwrap();
    wait_for("the standby taking the Lease", PROMPTLY, || {
        holder(&server).as_deref() == Some(standby.name)
    })
    .await;
    // Promptly, not at the next resync (60 s); the figure is `just bench`'s.
    wait_for("the change published by the new leader", PROMPTLY, || {
        server.get("secrets", GW, "shop.second").is_some()
    })
    .await;
}

#[tokio::test]
async fn sigterm_releases_the_lease_and_the_standby_leads_at_once() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut leader, standby) = two_replicas(&server, dir.path()).await;

    // The Lease is written with cert-sync's field manager.
    let lease = server.get("leases", GW, "cert-sync").unwrap();
    let managers: Vec<&str> = lease["metadata"]["managedFields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["manager"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !managers.is_empty() && managers.iter().all(|m| *m == "cert-sync"),
        "Lease field managers: {managers:?}"
    );

    let pid = leader.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(PROMPTLY, leader.child.wait())
        .await
        .expect("the leader exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "a graceful exit: {status:?}");
    server.put(mk_pair("shop", "second", RSA, true)).unwrap();
    // Released, not expired: the standby need not wait out the lease.
    wait_for("the change published by the standby", PROMPTLY, || {
        server.get("secrets", GW, "shop.second").is_some()
    })
    .await;
    assert_eq!(holder(&server).as_deref(), Some(standby.name));
}

#[tokio::test]
async fn after_an_api_server_restart_a_change_is_published_promptly_and_never_from_stale_state() {
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    server.put(mk_pair("shop", "first", P256, true)).unwrap();
    server.put(mk_pair("shop", "gone", RSA, true)).unwrap();
    let _replica = start(&kubeconfig, "replica-a");
    wait_for("the first publications", PROMPTLY, || {
        server.get("secrets", GW, "shop.first").is_some()
            && server.get("secrets", GW, "shop.gone").is_some()
    })
    .await;

    // The API server is down long enough for a doubling backoff to grow.
    // (500, not 503: kube's client retries 503 itself, hiding the watch
    // errors a stopped API server causes.)
    let down = server.inject(Fault::status(500, FaultMatch::any()));
    server.drop_watches();
    tokio::time::sleep(Duration::from_secs(12)).await;
    // Meanwhile: a source goes, and its published copy is touched, so the
    // controller's view of it (and a delete precondition from it) is stale.
    server.delete("secrets", "shop", "gone").unwrap();
    let mut copy = server.get("secrets", GW, "shop.gone").unwrap();
    copy["metadata"]["annotations"]["touched"] = "by someone".into();
    server.put(copy).unwrap();

    // Back, having lost its watch history: every watch gets 410.
    server.remove_fault(down);
    server.restart();
    let back = server.requests().last().map_or(0, |r| r.seq);
    server.put(mk_pair("shop", "second", RSA, true)).unwrap();
    // Promptly: a watch backoff grown during the outage (kube's default
    // reaches 30 s) or a publish retry sleeping out its backoff fails this;
    // the figure itself is `just bench`'s.
    wait_for("the pending change published", PROMPTLY, || {
        server.get("secrets", GW, "shop.second").is_some()
            && server.get("secrets", GW, "shop.gone").is_none()
    })
    .await;
    let conflicts: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.seq > back && r.status == 409)
        .map(|r| format!("{:?} {}", r.verb, r.path))
        .collect();
    assert!(
        conflicts.is_empty(),
        "writes from stale state: {conflicts:?}"
    );
}

/// One HTTP/1.1 exchange on a fresh connection: (status, body).
async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: cert-sync\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn reports_counted(metrics: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .find(|l| {
            l.starts_with("certsync_reports_total") && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_report_sent_to_the_standby_reaches_the_leader_in_the_same_request_and_survives_a_leader_change(
) {
    const TOKEN: &str = "s3cret-report-token";
    let server = FakeApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    server
        .put(mk_gateway_pod("gw-0", "127.0.0.1", true))
        .unwrap();
    server
        .put(mk_gateway_pod("gw-far", "10.9.9.9", true))
        .unwrap();
    let extra = [
        "--pod-ip=127.0.0.1".to_owned(),
        format!("--report-token-file={}", token_file.display()),
    ];
    let (mut leader, standby) = two_replicas_with(&server, dir.path(), &extra).await;
    // The leader's address and forward key are on the Lease.
    let lease = server.get("leases", GW, "cert-sync").unwrap();
    let annotations = &lease["metadata"]["annotations"];
    assert_eq!(
        annotations["certsync.istio.io/leader-address"],
        format!("127.0.0.1:{}", leader.port)
    );
    let key = annotations["certsync.istio.io/forward-key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(key.len(), 64);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    // The standby learns the leader's endpoint at its next read of the
    // Lease (every retry period, LEASE / 7.5); until then it answers 503.
    let started = Instant::now();
    let mut seq = 2;
    let status = loop {
        seq += 1;
        let report = mk_report("gw-0", seq, &[("kubernetes://shop.first", P256)]);
        let (status, _) = http(standby.port, "POST", "/v1/reports", &auth, &report).await;
        if status != 503 || started.elapsed() > PROMPTLY {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // To the standby: answered by the leader, in the same request.
    assert_eq!(status, 204);
    // Once it knows the leader, every report goes through at once.
    for _ in 0..5 {
        seq += 1;
        let report = mk_report("gw-0", seq, &[("kubernetes://shop.first", P256)]);
        let (status, _) = http(standby.port, "POST", "/v1/reports", &auth, &report).await;
        assert_eq!(status, 204);
    }
    let (_, metrics) = http(standby.port, "GET", "/metrics", &[], b"").await;
    assert_eq!(reports_counted(&metrics, "forwarded"), 6, "{metrics}");
    let (_, metrics) = http(leader.port, "GET", "/metrics", &[], b"").await;
    assert_eq!(reports_counted(&metrics, "accepted"), 6);
    // The leader judged it: an older report through the standby is its 409.
    let older = mk_report("gw-0", seq - 1, &[("kubernetes://shop.first", P256)]);
    let (status, _) = http(standby.port, "POST", "/v1/reports", &auth, &older).await;
    assert_eq!(status, 409);

    // A gateway pod cannot borrow another's address by naming it: without
    // the key the header is ignored (the source check sees 127.0.0.1).
    let far = mk_report("gw-far", 1, &[]);
    let forged = [
        auth[0],
        auth[1],
        ("x-certsync-forwarded-for", "10.9.9.9"),
        ("x-certsync-forward-key", "guess"),
    ];
    let (status, _) = http(leader.port, "POST", "/v1/reports", &forged, &far).await;
    assert_eq!(status, 403);
    let keyed = [
        auth[0],
        auth[1],
        ("x-certsync-forwarded-for", "10.9.9.9"),
        ("x-certsync-forward-key", key.as_str()),
    ];
    let (status, _) = http(leader.port, "POST", "/v1/reports", &keyed, &far).await;
    assert_eq!(
        status, 204,
        "with the Lease's key the forwarded address counts"
    );

    // The leader goes; the standby leads with gw-0's report already kept.
    leader.child.start_kill().unwrap();
    leader.child.wait().await.unwrap();
    wait_for("the standby taking the Lease", PROMPTLY, || {
        holder(&server).as_deref() == Some(standby.name)
    })
    .await;
    // No new report needed: the one the standby kept counts.
    let started = Instant::now();
    loop {
        let (_, body) = http(standby.port, "GET", "/v1/status", &[], b"").await;
        let view: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let kept = view["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["name"] == "gw-0" && p["seq"] == seq);
        if kept {
            break;
        }
        assert!(
            started.elapsed() < PROMPTLY,
            "gw-0's report not in the new leader's status: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
