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
use tokio::process::{Child, Command};

/// Far below the 60 s resync: a pass that waits for it fails the test.
const PROMPTLY: Duration = Duration::from_secs(12);
const LEASE: &str = "2s";

struct Replica {
    name: &'static str,
    child: Child,
}

fn start(kubeconfig: &std::path::Path, name: &'static str) -> Replica {
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    Replica { name, child }
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

/// Two replicas, one leading with `shop/first` published; returns them
/// as (leader, standby).
async fn two_replicas(server: &FakeApiServer, dir: &std::path::Path) -> (Replica, Replica) {
    let kubeconfig = dir.join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    server.put(mk_pair("shop", "first", P256, true)).unwrap();
    let a = start(&kubeconfig, "replica-a");
    let b = start(&kubeconfig, "replica-b");
    wait_for("a leader", PROMPTLY, || holder(server).is_some()).await;
    wait_for("the first publication", PROMPTLY, || {
        server.get("secrets", GW, "shop.first").is_some()
    })
    .await;
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
