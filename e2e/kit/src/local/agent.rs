//! The per-pod agent: what istio-agent does in a real gateway pod for
//! certificates a Gateway names by file path — watch the files, push them to
//! Envoy over SDS.
//!
//! In a pod, every container mounts the cert-sync volume at
//! [`MOUNT_PATH`]; Istio names the SDS resource after those paths
//! (`file-cert:/etc/istio/cert-sync/<ns>/<name>.crt~…key`), which is what
//! the controller's manifest expects the filter to report. Locally each pod
//! has its own directory, so the agent reads `<pod>/certs/<ns>/<name>.*`
//! but names the resource after the logical mount path.
//!
//! Every `poll` it reads the `..data` link once and, when it moved, reads
//! each certificate and key under the payload directory it names (one
//! resolution, so cert and key come from the same publish), and for each
//! pair that changed swaps that site's SDS directory ([`crate::sds`]).
//! Each swap is recorded with its instant and leaf fingerprint: the
//! benchmark measures Envoy's own reload from there.

use crate::pki::TestCert;
use crate::sds::{SdsDir, SdsSource, TlsSecret};
use anyhow::{Context, Result};
use certsync_contract::{sds, Fingerprint};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Where a gateway pod mounts the cert-sync volume.
pub const MOUNT_PATH: &str = "/etc/istio/cert-sync";

/// The SDS resource Istio makes of the files for source `namespace/name`.
pub fn site_resource(namespace: &str, name: &str) -> String {
    sds::file_cert(
        &format!("{MOUNT_PATH}/{namespace}/{name}.crt"),
        &format!("{MOUNT_PATH}/{namespace}/{name}.key"),
    )
}

/// One SDS push the agent made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    pub at: Instant,
    pub resource: String,
    pub fingerprint: Fingerprint,
}

/// A source `namespace/name` the agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSite {
    pub namespace: String,
    pub name: String,
}

struct Site {
    resource: String,
    /// `<ns>/<name>` relative to the payload directory.
    rel: PathBuf,
    sds: SdsDir,
    /// Chain and key last pushed.
    pushed: Option<(String, String)>,
}

/// A running agent thread; stopped when dropped.
pub struct Agent {
    stop: Arc<AtomicBool>,
    swaps: Arc<Mutex<Vec<Swap>>>,
    sources: BTreeMap<String, SdsSource>,
    thread: Option<JoinHandle<()>>,
}

impl Agent {
    /// Prepares one SDS directory per site under `sds_root`, each holding
    /// `placeholder` until the writer has published that site (Envoy needs
    /// every SDS file to exist before its listener warms), then starts
    /// watching `cert_dir`.
    pub fn start(
        cert_dir: &Path,
        sds_root: &Path,
        sites: &[AgentSite],
        placeholder: &TestCert,
        poll: Duration,
    ) -> Result<Agent> {
        let mut state = Vec::new();
        let mut sources = BTreeMap::new();
        for site in sites {
            let resource = site_resource(&site.namespace, &site.name);
            let dir = sds_root.join(format!("{}.{}", site.namespace, site.name));
            let mut sds = SdsDir::create(dir)?;
            sds.set(
                crate::sds::DEFAULT_FILE,
                TlsSecret::from_cert(&resource, placeholder),
            )?;
            sources.insert(resource.clone(), sds.source(&resource)?);
            state.push(Site {
                resource,
                rel: Path::new(&site.namespace).join(&site.name),
                sds,
                pushed: None,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(Mutex::new(Vec::new()));
        let mut watcher = Watcher {
            cert_dir: cert_dir.to_path_buf(),
            sites: state,
            last_payload: None,
            swaps: swaps.clone(),
        };
        // One pass now, so Envoy starts on whatever is already published.
        watcher.tick();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sds-agent".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        watcher.tick();
                        std::thread::sleep(poll);
                    }
                })
                .context("starting the agent thread")?
        };
        Ok(Agent {
            stop,
            swaps,
            sources,
            thread: Some(thread),
        })
    }

    /// Where Envoy reads `resource` from.
    pub fn source(&self, resource: &str) -> Option<&SdsSource> {
        self.sources.get(resource)
    }

    /// A handle on the agent's swap record, for other threads.
    pub fn swap_log(&self) -> SwapLog {
        SwapLog(self.swaps.clone())
    }
}

/// The swaps an agent made, shareable across threads.
#[derive(Clone)]
pub struct SwapLog(Arc<Mutex<Vec<Swap>>>);

impl SwapLog {
    /// Every swap so far, oldest first.
    pub fn all(&self) -> Vec<Swap> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The first swap of `resource` to `fingerprint`.
    pub fn swap_to(&self, resource: &str, fingerprint: &Fingerprint) -> Option<Swap> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|s| s.resource == resource && s.fingerprint == *fingerprint)
            .cloned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Watcher {
    cert_dir: PathBuf,
    sites: Vec<Site>,
    last_payload: Option<PathBuf>,
    swaps: Arc<Mutex<Vec<Swap>>>,
}

impl Watcher {
    fn tick(&mut self) {
        // One resolution of `..data` per pass: cert and key from one payload.
        let Ok(target) = std::fs::read_link(self.cert_dir.join("..data")) else {
            return;
        };
        if self.last_payload.as_ref() == Some(&target) {
            return;
        }
        let payload = self.cert_dir.join(&target);
        let mut complete = true;
        for site in &mut self.sites {
            let read =
                |ext: &str| std::fs::read_to_string(payload.join(site.rel.with_extension(ext)));
            let (chain, key) = match (read("crt"), read("key")) {
                (Ok(chain), Ok(key)) => (chain, key),
                (Err(e), _) | (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Not published (yet): keep what Envoy has.
                    continue;
                }
                // The payload went away under us (a newer swap): retry next pass.
                _ => {
                    complete = false;
                    continue;
                }
            };
            if site.pushed.as_ref() == Some(&(chain.clone(), key.clone())) {
                continue;
            }
            let Ok(cert) = TestCert::from_pem(&chain, &key) else {
                // Unparseable files are Envoy's to reject; push them as they are.
                let _ = site.sds.set(
                    crate::sds::DEFAULT_FILE,
                    TlsSecret::new(&site.resource, chain.clone(), key.clone()),
                );
                site.pushed = Some((chain, key));
                continue;
            };
            if site
                .sds
                .set(
                    crate::sds::DEFAULT_FILE,
                    TlsSecret::from_cert(&site.resource, &cert),
                )
                .is_err()
            {
                complete = false;
                continue;
            }
            self.swaps
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Swap {
                    at: Instant::now(),
                    resource: site.resource.clone(),
                    fingerprint: cert.fingerprint,
                });
            site.pushed = Some((chain, key));
        }
        if complete {
            self.last_payload = Some(target);
        }
    }
}
