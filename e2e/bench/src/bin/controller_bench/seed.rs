//! The benchmark's cluster contents: TLS Secrets of realistic size, and the
//! fresh certificates the update phase rotates in.
//!
//! Generating 10,000 distinct certificates would dominate the run, and
//! memory and traffic depend on sizes, not on distinctness, so a few dozen
//! leaf+key pairs are reused across the Secrets. Every pair is a valid
//! P-256 leaf signed by an intermediate (chain leaf + intermediate, root in
//! `ca.crt`) whose SAN count varies per pair, which spreads the Secrets'
//! data over roughly 2.5–5 KiB, as production Secrets with long SAN lists
//! and chains are. Every source carries a valid pair, so the controller's
//! validation does its full work for each annotated one.

use anyhow::{Context, Result};
use certsync_testkit::pki::{TestCa, TestCert};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

/// The annotation that selects a Secret for publishing.
pub use certsync_contract::metadata::AUTOSYNC;

/// How big the benchmark is.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub namespaces: usize,
    pub secrets: usize,
    pub annotated: usize,
    pub updates: usize,
    /// Distinct certificate pairs reused across the Secrets.
    pub pairs: usize,
    /// Other (Opaque) Secrets beside the TLS ones: tokens, Helm releases.
    pub others: usize,
}

impl Scale {
    pub const FULL: Scale = Scale {
        namespaces: 100,
        secrets: 10_000,
        annotated: 1_000,
        updates: 100,
        pairs: 50,
        others: 0,
    };
    /// The issue-15 scale: 100,000 TLS Secrets (10,000 annotated) and
    /// 20,000 other Secrets in 1,000 namespaces.
    pub const LARGE: Scale = Scale {
        namespaces: 1_000,
        secrets: 100_000,
        annotated: 10_000,
        updates: 100,
        pairs: 50,
        others: 20_000,
    };
    /// 10,000 publications without the 100k Secrets around them: the
    /// issue-15 latency figure in a minute rather than ten.
    pub const DENSE: Scale = Scale {
        namespaces: 100,
        secrets: 10_000,
        annotated: 10_000,
        updates: 100,
        pairs: 50,
        others: 0,
    };
    pub const QUICK: Scale = Scale {
        namespaces: 10,
        secrets: 1_000,
        annotated: 100,
        updates: 20,
        pairs: 10,
        others: 0,
    };

    /// Every `step`-th Secret is annotated.
    fn step(&self) -> usize {
        (self.secrets / self.annotated.max(1)).max(1)
    }

    /// Namespace and name of Secret `k`.
    pub fn source(&self, k: usize) -> (String, String) {
        let per_ns = self.secrets.div_ceil(self.namespaces.max(1));
        (format!("app-{:03}", k / per_ns), format!("tls-{k:05}"))
    }

    pub fn is_annotated(&self, k: usize) -> bool {
        k.is_multiple_of(self.step()) && k / self.step() < self.annotated
    }

    /// The certificate pair Secret `k` starts with; annotated Secrets
    /// (every `step`-th) still get every pair.
    fn pair_of(&self, k: usize) -> usize {
        (k + k / self.step()) % self.pairs.max(1)
    }

    /// The annotated Secret that update `u` rotates: spread over all of them.
    pub fn update_target(&self, u: usize) -> usize {
        let every = (self.annotated / self.updates.max(1)).max(1);
        ((u * every) % self.annotated.max(1)) * self.step()
    }

    /// SANs for pair `p`: 4 to 40 names.
    fn san_count(p: usize) -> usize {
        4 + (p * 13) % 37
    }
}

/// Certificates for the seed and for the updates.
pub struct Pki {
    ca_pem: String,
    pairs: Vec<TestCert>,
    /// One fresh certificate per update, sized like its target's.
    pub updates: Vec<TestCert>,
}

fn sans(pair: usize, count: usize, serial: usize) -> Vec<String> {
    (0..count)
        .map(|j| format!("svc-{j:02}.team-{pair:03}-{serial}.apps.example-corp.internal"))
        .collect()
}

impl Pki {
    pub fn generate(scale: &Scale) -> Result<Pki> {
        let ca = TestCa::new()?;
        let leaf = |pair: usize, serial: usize| -> Result<TestCert> {
            let names = sans(pair, Scale::san_count(pair), serial);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            ca.leaf(&refs)
        };
        let pairs = (0..scale.pairs)
            .map(|p| leaf(p, 0))
            .collect::<Result<Vec<_>>>()?;
        let updates = (0..scale.updates)
            .map(|u| leaf(scale.pair_of(scale.update_target(u)), u + 1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pki {
            ca_pem: ca.root_pem(),
            pairs,
            updates,
        })
    }

    /// The Secret `data` for a certificate.
    pub fn data(&self, cert: &TestCert) -> BTreeMap<String, ByteString> {
        BTreeMap::from([
            ("tls.crt".into(), ByteString(cert.chain_pem.clone().into())),
            ("tls.key".into(), ByteString(cert.key_pem.clone().into())),
            ("ca.crt".into(), ByteString(self.ca_pem.clone().into())),
        ])
    }

    /// The certificate Secret `k` is seeded with.
    pub fn initial(&self, scale: &Scale, k: usize) -> Result<&TestCert> {
        self.pairs
            .get(scale.pair_of(k))
            .context("no certificate pairs generated")
    }
}

/// Sizes of the seeded Secrets' decoded `data`, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeedSizes {
    pub min: usize,
    pub max: usize,
    pub mean: usize,
    /// The seed file (the Secrets as JSON, base64 data).
    pub file_bytes: u64,
}

/// Writes the seed for `fake-apiserver --seed`: a JSON array of the
/// namespaces and the Secrets.
pub fn write_seed(path: &Path, scale: &Scale, pki: &Pki) -> Result<SeedSizes> {
    let mut items = Vec::with_capacity(scale.secrets + scale.namespaces + 1);
    let mut namespaces: Vec<String> = vec!["istio-system".into()];
    let (mut min, mut max, mut total) = (usize::MAX, 0, 0);
    for k in 0..scale.secrets {
        let (namespace, name) = scale.source(k);
        if namespaces.last() != Some(&namespace) {
            namespaces.push(namespace.clone());
        }
        let data = pki.data(pki.initial(scale, k)?);
        let size: usize = data.values().map(|v| v.0.len()).sum();
        (min, max, total) = (min.min(size), max.max(size), total + size);
        let annotations = scale
            .is_annotated(k)
            .then(|| BTreeMap::from([(AUTOSYNC.to_owned(), "true".to_owned())]));
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: Some(namespace),
                annotations,
                labels: Some(BTreeMap::from([
                    (
                        "app.kubernetes.io/name".to_owned(),
                        format!("app-{}", k % 37),
                    ),
                    ("app.kubernetes.io/part-of".to_owned(), "bench".to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".into()),
            data: Some(data),
            ..Secret::default()
        };
        items.push(serde_json::to_value(&secret)?);
    }
    // Opaque Secrets of about a service-account token's size, spread over
    // the same namespaces: outside cert-sync's TLS watch, inside the naive one.
    let per_ns = scale.secrets.div_ceil(scale.namespaces.max(1));
    for k in 0..scale.others {
        let (namespace, _) = scale.source((k * per_ns) % scale.secrets.max(1));
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(format!("other-{k:05}")),
                namespace: Some(namespace),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                "token".to_owned(),
                ByteString(vec![b'x'; 1024]),
            )])),
            ..Secret::default()
        };
        items.push(serde_json::to_value(&secret)?);
    }
    for name in namespaces {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        items.push(serde_json::to_value(&ns)?);
    }
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    serde_json::to_writer(&mut out, &items)?;
    out.flush()?;
    Ok(SeedSizes {
        min,
        max,
        mean: total / scale.secrets.max(1),
        file_bytes: std::fs::metadata(path)?.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotated_sources_and_update_targets_are_spread() {
        let s = Scale::FULL;
        let annotated = (0..s.secrets).filter(|k| s.is_annotated(*k)).count();
        assert_eq!(annotated, s.annotated);
        let targets: std::collections::BTreeSet<usize> =
            (0..s.updates).map(|u| s.update_target(u)).collect();
        assert_eq!(targets.len(), s.updates);
        assert!(targets.iter().all(|k| s.is_annotated(*k)));
        let pairs: std::collections::BTreeSet<usize> = (0..s.secrets)
            .filter(|k| s.is_annotated(*k))
            .map(|k| s.pair_of(k))
            .collect();
        assert_eq!(pairs.len(), s.pairs);
        assert_eq!(s.source(9_999), ("app-099".into(), "tls-09999".into()));
        let q = Scale::QUICK;
        assert_eq!((0..q.secrets).filter(|k| q.is_annotated(*k)).count(), 100);
    }
}
