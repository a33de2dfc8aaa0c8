//! `just bench`, failover and recovery: how soon a change made while the
//! controller could not act is published, against the fake API server
//! (every request slowed by `--latency-ms`, as a real server is slower than
//! the fake) and real `cert-sync` processes.
//!
//! ```text
//! failover_bench [--out FILE] [--append] [--rounds N] [--lease-s N] [--outage-s N] [--latency-ms N]
//! ```
//!
//! * **leader killed** (SIGKILL): two replicas; the change is made right
//!   after the kill; the figure is kill → published, as a ratio to the lease
//!   duration (a standby may take over only once the lease expired, so ≥ 1
//!   is physics, and the margin above it is ours).
//! * **leader stopped** (SIGTERM, a rolling update): the same, ratio to the
//!   lease (the Lease is released, so it should be far below 1).
//! * **API server restart**: one replica; every request fails for the
//!   outage (its watches and Lease renewals too), the change is made during
//!   it, then the server comes back having lost its watch history (410 for
//!   every watch); the figure is recovery → published, as a ratio to the
//!   outage.

use anyhow::{bail, Context, Result};
use certsync_fakekube::{FakeApiServer, Fault, FaultMatch};
use certsync_testkit::pki::TestCa;
use certsync_testkit::procs::{self, Proc};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const GW: &str = "istio-system";
const TIMEOUT: Duration = Duration::from_secs(120);
const USAGE: &str = "usage: failover_bench [--out FILE] [--append] [--rounds N] [--lease-s N] \
                     [--outage-s N] [--latency-ms N]";

struct Args {
    out: PathBuf,
    append: bool,
    rounds: usize,
    lease: Duration,
    outage: Duration,
    latency: Duration,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        out: "bench-failover.md".into(),
        append: false,
        rounds: 5,
        lease: Duration::from_secs(4),
        outage: Duration::from_secs(10),
        latency: Duration::from_millis(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--out" => args.out = value("--out")?.into(),
            "--append" => args.append = true,
            "--rounds" => args.rounds = value("--rounds")?.parse()?,
            "--lease-s" => args.lease = Duration::from_secs(value("--lease-s")?.parse()?),
            "--outage-s" => args.outage = Duration::from_secs(value("--outage-s")?.parse()?),
            "--latency-ms" => args.latency = Duration::from_millis(value("--latency-ms")?.parse()?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn log(msg: impl AsRef<str>) {
    eprintln!("[failover_bench] {}", msg.as_ref());
}

/// The fake API server, a CA for the Secrets, and where the replicas run.
struct Rig {
    server: FakeApiServer,
    ca: TestCa,
    bins: PathBuf,
    dir: tempfile::TempDir,
    lease: Duration,
    changes: usize,
}

impl Rig {
    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn replica(&self, name: &str) -> Result<Proc> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(self.bins.join("cert-sync"));
        cmd.env("KUBECONFIG", self.kubeconfig())
            .env_remove("RUST_LOG")
            .args(["--pod-name", name, "--manage-gateway-config", "false"])
            .args(["--lease-duration", &format!("{}s", self.lease.as_secs())])
            .args(["--http-addr", &format!("127.0.0.1:{port}")]);
        Proc::spawn(
            name,
            cmd,
            self.dir.path().join(format!("{name}.log")),
            false,
        )
    }

    fn holder(&self) -> Option<String> {
        let lease = self.server.get("leases", GW, "cert-sync")?;
        lease["spec"]["holderIdentity"]
            .as_str()
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
    }

    /// A new annotated source; returns the name of its credential Secret.
    fn change(&mut self) -> Result<String> {
        self.changes += 1;
        let name = format!("change-{}", self.changes);
        let leaf = self.ca.leaf(&[&format!("{name}.example.com")])?;
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        self.server.put(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": "shop",
                         "annotations": {"certsync.istio.io/autosync": "true"}},
            "data": {"tls.crt": b64(&leaf.chain_pem), "tls.key": b64(&leaf.key_pem)},
        }))?;
        Ok(format!("shop.{name}"))
    }

    fn published(&self, secret: &str) -> bool {
        self.server.get("secrets", GW, secret).is_some()
    }
}

async fn wait(what: &str, mut done: impl FnMut() -> bool) -> Result<Duration> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > TIMEOUT {
            bail!("{what}: not within {TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(started.elapsed())
}

/// Kill (or stop) the leader of two replicas, make a change at once, and
/// time it until published; the stopped replica comes back for the next round.
async fn failover(rig: &mut Rig, rounds: usize, signal: &str) -> Result<Vec<Duration>> {
    let mut replicas = vec![rig.replica("replica-a")?, rig.replica("replica-b")?];
    let mut times = Vec::new();
    for round in 0..rounds {
        wait("a leader", || rig.holder().is_some()).await?;
        let warm = rig.change()?;
        wait("a warm-up publication", || rig.published(&warm)).await?;
        let holder = rig.holder().context("no leader")?;
        let index = replicas
            .iter()
            .position(|r| r.name() == holder)
            .context("the leader is not ours")?;
        let mut leader = replicas.remove(index);
        let killed = Instant::now();
        leader.signal(signal)?;
        let change = rig.change()?;
        wait("the change", || rig.published(&change)).await?;
        times.push(killed.elapsed());
        log(format!("{signal} round {round}: {:?}", killed.elapsed()));
        leader.kill();
        replicas.push(rig.replica(&holder)?);
    }
    for mut r in replicas {
        r.kill();
    }
    Ok(times)
}

/// Take the API server away for `outage` (every request 500s, watches
/// dropped), make a change meanwhile, bring it back with its watch history
/// lost, and time recovery → published.
async fn recovery(rig: &mut Rig, rounds: usize, outage: Duration) -> Result<Vec<Duration>> {
    let mut replica = rig.replica("replica-a")?;
    let mut times = Vec::new();
    for round in 0..rounds {
        let warm = rig.change()?;
        wait("a warm-up publication", || rig.published(&warm)).await?;
        let down = rig.server.inject(Fault::status(500, FaultMatch::any()));
        rig.server.drop_watches();
        tokio::time::sleep(outage / 2).await;
        let change = rig.change()?;
        tokio::time::sleep(outage - outage / 2).await;
        rig.server.remove_fault(down);
        rig.server.restart();
        let back = Instant::now();
        wait("the change", || rig.published(&change)).await?;
        times.push(back.elapsed());
        log(format!("recovery round {round}: {:?}", back.elapsed()));
    }
    replica.kill();
    Ok(times)
}

fn summary(times: &[Duration], base: Duration) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    let max = sorted.last().copied().unwrap_or_default();
    let ratio = |d: Duration| d.as_secs_f64() / base.as_secs_f64();
    format!(
        "{:.2} s / {:.2} s | {:.2} / {:.2}",
        p50.as_secs_f64(),
        max.as_secs_f64(),
        ratio(p50),
        ratio(max)
    )
}

#[tokio::main]
async fn main() -> Result<()> {
    procs::kill_children_on_panic();
    let args = parse_args()?;
    log("building cert-sync");
    let bins = procs::build_binaries(&[("cert-sync", "cert-sync")])?;
    let server = FakeApiServer::start().await?;
    server.add_latency(args.latency, FaultMatch::any());
    let dir = tempfile::tempdir()?;
    server.write_kubeconfig(dir.path().join("kubeconfig"))?;
    let mut rig = Rig {
        server,
        ca: TestCa::new()?,
        bins,
        dir,
        lease: args.lease,
        changes: 0,
    };
    let killed = failover(&mut rig, args.rounds, "KILL").await?;
    let stopped = failover(&mut rig, args.rounds, "TERM").await?;
    let recovered = recovery(&mut rig, args.rounds.div_ceil(2), args.outage).await?;
    let md = format!(
        "## Failover and recovery (`failover_bench`)\n\n\
         Real `cert-sync` replicas against the fake API server with {} ms added \
         to every request; a change made while no replica could act, timed until \
         its Secret is published. Lease {} s, outage {} s.\n\n\
         | event (rounds) | p50 / max | ratio p50 / max | to |\n|---|---|---|---|\n\
         | leader killed, SIGKILL ({}) | {} | the lease |\n\
         | leader stopped, SIGTERM ({}) | {} | the lease |\n\
         | API server back after an outage, 410 for every watch ({}) | {} | the outage |\n",
        args.latency.as_millis(),
        args.lease.as_secs(),
        args.outage.as_secs(),
        killed.len(),
        summary(&killed, args.lease),
        stopped.len(),
        summary(&stopped, args.lease),
        recovered.len(),
        summary(&recovered, args.outage),
    );
    print!("{md}");
    certsync_bench::report::write(&args.out, args.append, &md)?;
    Ok(())
}
