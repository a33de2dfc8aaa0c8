//! `just demo`: cert-sync end to end on this machine. A fake Kubernetes API
//! server and the real `cert-sync` controller run as processes; three
//! gateway pods each run a directory-mode writer and a real Envoy with the
//! cert-sync filter ([`certsync_testkit::local`]). The demo publishes, rotates
//! and breaks certificates, freezes one pod's writer, and shows the
//! `cert-sync status` table (the real binary, `--server`) as the state
//! changes, with what a TLS client is actually served.

use anyhow::Result;
use certsync_testkit::local::controller::STALL_REASONS;
use certsync_testkit::local::status::Status;
use certsync_testkit::local::{LocalCluster, LocalOptions, Site};
use certsync_testkit::pki::TestCert;
use certsync_testkit::procs;
use std::cell::RefCell;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

fn main() -> Result<()> {
    procs::kill_children_on_panic();
    say("Building cert-sync and fake-apiserver (cargo; quick when up to date)");
    procs::cluster_binaries()?;
    say("Starting a local cluster: fake API server, cert-sync controller, 3 gateway pods");
    let started = Instant::now();
    let mut rig = LocalCluster::start(LocalOptions::default())?;
    let demo = Demo {
        shown: RefCell::new(String::new()),
    };
    println!(
        "  up in {:.1}s; controller on {}; each pod: a cert-sync writer (directory mode),\n  \
         an SDS agent (istio-agent's role) and Envoy 1.40 with the filter reporting every 1 s",
        started.elapsed().as_secs_f64(),
        rig.controller().url()
    );
    for pod in rig.pods() {
        println!("  {}: HTTPS on 127.0.0.1:{}", pod.name(), pod.https_port());
    }
    let sites = rig.sites().to_vec();

    say("1. Publish: three TLS Secrets annotated certsync.istio.io/autosync=true");
    let mut certs = Vec::new();
    for site in &sites {
        let cert = rig.new_cert(&site.host)?;
        rig.publish(site, &cert)?;
        certs.push(cert);
    }
    let t = Instant::now();
    demo.watch(&rig, "all three Converged", |s| {
        all_converged(s, &rig, &sites, &certs)
    })?;
    println!(
        "  converged on all pods in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    demo.served(&rig, &sites, &certs)?;

    say(&format!(
        "2. Rotate {}: a new certificate in its Secret",
        sites[0].host
    ));
    certs[0] = rig.new_cert(&sites[0].host)?;
    rig.publish(&sites[0], &certs[0])?;
    let t = Instant::now();
    demo.watch(&rig, "the rotation Converged", |s| {
        all_converged(s, &rig, &sites, &certs)
    })?;
    println!(
        "  Secret updated → verified on every pod in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    demo.served(&rig, &sites[..1], &certs[..1])?;

    let broken = &sites[1];
    say(&format!(
        "3. Break {}: its Secret gets a key that does not match the certificate",
        broken.host
    ));
    let rejected = rig.new_cert(&broken.host)?;
    rig.publish_bad_key(broken, &rejected)?;
    let source = broken.source();
    demo.watch(&rig, "the refusal", |s| {
        s.kept(&source).is_some() || s.refusals().iter().any(|r| r.1 == "KeyMismatch")
    })?;
    let event = rig.wait_event(&broken.namespace, &["KeyMismatch"], WAIT)?;
    println!(
        "  Event on {}: {} {}: {}",
        source, event.kind, event.reason, event.message
    );
    println!("  every pod still serves the last good certificate:");
    demo.served(&rig, &sites[1..2], &certs[1..2])?;
    let fixed = rig.new_cert(&broken.host)?;
    rig.publish(broken, &fixed)?;
    certs[1] = fixed;
    demo.watch(&rig, "the fix Converged", |s| {
        all_converged(s, &rig, &sites, &certs)
    })?;
    println!("  a good certificate in the Secret is published again");

    let slow = &sites[2];
    say(&format!(
        "4. Freeze gw-1's writer (SIGSTOP), then rotate {}",
        slow.host
    ));
    rig.pod_mut(1).freeze_writer()?;
    certs[2] = rig.new_cert(&slow.host)?;
    rig.publish(slow, &certs[2])?;
    let source = slow.source();
    demo.watch(&rig, "gw-1 Stale", |s| {
        s.pod_state(&source, "gw-1") == Some("Stale")
    })?;
    println!(
        "  gw-1 still serves the old certificate; after --rollout-timeout ({}s) the rollout stalls:",
        rig.options().rollout_timeout.as_secs()
    );
    let stall = rig.wait_event(&slow.namespace, &STALL_REASONS, WAIT)?;
    println!(
        "  Event on {source}: {} {}: {}",
        stall.kind, stall.reason, stall.message
    );
    say("   ... thaw gw-1's writer (SIGCONT)");
    rig.pod_mut(1).thaw_writer()?;
    let t = Instant::now();
    demo.watch(&rig, "Converged again", |s| {
        all_converged(s, &rig, &sites, &certs)
    })?;
    println!(
        "  gw-1 caught up and was verified {:.1}s after the thaw",
        t.elapsed().as_secs_f64()
    );
    demo.served(&rig, &sites[2..], &certs[2..])?;

    say("What happened");
    println!(
        "  * cert-sync validated every Secret before publishing it; the mismatched key was\n    \
         refused (KeyMismatch: status, Event), so no pod ever lost its certificate.\n  \
         * The filter inside each Envoy reported what Envoy actually loaded; the controller\n    \
         compared those fingerprints with what it published: Verified per pod, Converged\n    \
         when every live pod serves it. A TLS client saw the same fingerprints.\n  \
         * A pod that did not pick up a rotation showed as Stale, the rollout stalled\n    \
         visibly (Event, metric) and converged as soon as the pod caught up."
    );
    rig.check_alive()?;
    rig.shutdown();
    Ok(())
}

struct Demo {
    /// The rollout picture last shown, so only changes are printed.
    shown: RefCell<String>,
}

impl Demo {
    /// Polls the status until `done`, printing the `cert-sync status` table
    /// each time the rollout picture changes.
    fn watch(&self, rig: &LocalCluster, what: &str, done: impl Fn(&Status) -> bool) -> Result<()> {
        let deadline = Instant::now() + WAIT;
        loop {
            let status = rig.status()?;
            let picture = picture(&status);
            let finished = done(&status);
            if picture != *self.shown.borrow() {
                self.table(rig)?;
                lagging(&status);
                self.shown.replace(picture);
            }
            if finished {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("gave up after {WAIT:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `cert-sync status --server <controller>`.
    fn table(&self, rig: &LocalCluster) -> Result<()> {
        println!("  $ cert-sync status");
        let text = rig
            .controller()
            .status_table(false)
            .unwrap_or_else(|e| format!("{e:#}"));
        for line in text.lines() {
            println!("  {line}");
        }
        Ok(())
    }

    /// What a TLS client is served, per pod and host.
    fn served(&self, rig: &LocalCluster, sites: &[Site], certs: &[TestCert]) -> Result<()> {
        for (site, cert) in sites.iter().zip(certs) {
            let served = rig.served(&site.host)?;
            let shown: Vec<String> = served
                .iter()
                .zip(rig.pod_names())
                .map(|(f, pod)| {
                    let mark = if *f == cert.fingerprint { "✓" } else { "✗" };
                    format!("{pod} {} {mark}", f.short())
                })
                .collect();
            println!("  TLS client, SNI {:<18} {}", site.host, shown.join("   "));
        }
        Ok(())
    }
}

/// Pods not (yet) serving a publication, with what they serve instead.
fn lagging(status: &Status) {
    for p in status.0["publications"].as_array().into_iter().flatten() {
        let pods: Vec<String> = p["pods"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v["state"] != "Verified")
            .map(|(pod, v)| {
                let served = v["servedSha256"]
                    .as_str()
                    .map_or("", |s| &s[..s.len().min(12)]);
                format!("{pod} {} {served}", v["state"].as_str().unwrap_or("?"))
            })
            .collect();
        if !pods.is_empty() {
            println!(
                "    {}: {}",
                p["source"].as_str().unwrap_or_default(),
                pods.join(", ")
            );
        }
    }
}

/// Every site Converged on its certificate.
fn all_converged(status: &Status, rig: &LocalCluster, sites: &[Site], certs: &[TestCert]) -> bool {
    let pods = rig.pod_names();
    sites.iter().zip(certs).all(|(site, cert)| {
        status.converged_on(&site.source(), &cert.fingerprint.to_string(), &pods)
    })
}

/// What the table would show, minus timestamps: states per publication and pod.
fn picture(status: &Status) -> String {
    let mut out = String::new();
    for p in status.0["publications"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{} {} {} {};",
            p["source"], p["sha256"], p["state"], p["kept"]
        ));
        for (pod, v) in p["pods"].as_object().into_iter().flatten() {
            out.push_str(&format!("{pod}={} ", v["state"]));
        }
    }
    out
}

fn say(text: &str) {
    println!("\n== {text}");
}
