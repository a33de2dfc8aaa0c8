//! Builders and certificate fixtures shared by the core's unit tests. The
//! certificates are certsync-contract's openssl-made fixtures (test-only keys),
//! valid until 2126; [`NOW`] is inside every leaf's validity window.

use super::model::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// 2030-01-01: after the fixtures were issued, before they expire.
pub const NOW: i64 = 1_893_456_000;
pub const GATEWAY_NS: &str = "istio-system";

macro_rules! fixture {
    ($name:literal) => {
        certsync_fixtures::pem!($name)
    };
}
pub(crate) use fixture;

/// A certificate/key pair, as a source Secret's data.
#[derive(Clone, Copy)]
pub enum Pair {
    P256,
    Rsa,
    Ed25519,
}

impl Pair {
    pub fn cert(self) -> &'static [u8] {
        match self {
            Pair::P256 => fixture!("p256.chain.pem"),
            Pair::Rsa => fixture!("rsa.chain.pem"),
            Pair::Ed25519 => fixture!("ed25519.chain.pem"),
        }
    }

    pub fn key(self) -> &'static [u8] {
        match self {
            Pair::P256 => fixture!("p256.sec1.key"),
            Pair::Rsa => fixture!("rsa.pkcs8.key"),
            Pair::Ed25519 => fixture!("ed25519.pkcs8.key"),
        }
    }

    /// The leaf's SHA-256 as openssl printed it (fixtures/expected.txt).
    pub fn sha256(self) -> &'static str {
        match self {
            Pair::P256 => "ab46a6d03325d3f6008ffb6d8da954885a4bf5e414f522ee0320a8d4e294ef9a",
            Pair::Rsa => "e9bbceeba1a8bfc11a5129ba593548743d2fcf4f0ecce2856d0d4e67c407ee24",
            Pair::Ed25519 => "d3e8d7f84b027b6b066a7489c5140fced2433e3aa08856230fa3df4f7ec2e70f",
        }
    }

    pub fn data(self) -> SourceData {
        SourceData {
            cert_pem: Some(self.cert().into()),
            key_pem: Some(self.key().into()),
            ca_pem: None,
        }
    }
}

/// The test root, as a `ca.crt`.
pub fn ca_pem() -> Blob {
    fixture!("root.crt").into()
}

/// An annotated `kubernetes.io/tls` Secret, created at 1000.
pub fn mk_source(ns: &str, name: &str) -> SourceMeta {
    SourceMeta {
        key: ObjectRef::new(ns, name),
        uid: format!("uid-{ns}-{name}"),
        resource_version: "1".to_owned(),
        secret_type: keys::TLS_TYPE.to_owned(),
        labels: Default::default(),
        annotations: Arc::new([(keys::AUTOSYNC.to_owned(), "true".to_owned())].into()),
        created: 1000,
    }
}

/// A `kubernetes.io/tls` Secret without the annotation, with `labels`.
pub fn mk_labelled(ns: &str, name: &str, labels: &[(&str, &str)]) -> SourceMeta {
    SourceMeta {
        annotations: Default::default(),
        labels: Arc::new(map(labels)),
        ..mk_source(ns, name)
    }
}

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub fn policy(mode: Mode) -> Policy {
    Policy {
        gateway_namespace: GATEWAY_NS.to_owned(),
        mode,
        namespaces: NamespacePolicy::All,
    }
}

pub fn merged_mode() -> Mode {
    Mode::Merged {
        secret_name: "istio-ingressgateway-certs".to_owned(),
    }
}

/// A CertMerge `ns/name` targeting `target` in the gateway namespace,
/// listing `secrets` ("ns/name"), created at 2000.
pub fn mk_merge(ns: &str, name: &str, target: &str, secrets: &[&str]) -> CertMerge {
    CertMerge {
        key: ObjectRef::new(ns, name),
        created: 2000,
        target: ObjectRef::new(GATEWAY_NS, target),
        selectors: Vec::new(),
        secrets: secrets.iter().map(|s| oref(s)).collect(),
    }
}

/// "ns/name" → ObjectRef.
pub fn oref(s: &str) -> ObjectRef {
    let (ns, name) = s.split_once('/').unwrap_or(("", s));
    ObjectRef::new(ns, name)
}

pub fn selector(ns: &str, labels: &[(&str, &str)]) -> MergeSelector {
    MergeSelector {
        namespace: ns.to_owned(),
        label_selector: LabelSelector {
            match_labels: map(labels),
            match_expressions: Vec::new(),
        },
    }
}

/// One reconcile's decisions for `sources` in `mode`: select, validate
/// (at [`NOW`]), render against `current`.
pub fn render_sources(
    mode: Mode,
    sources: &[(SourceMeta, SourceData)],
    current: &Published,
) -> (Policy, super::desired::DesiredState) {
    let p = policy(mode);
    let metas: Vec<SourceMeta> = sources.iter().map(|(m, _)| m.clone()).collect();
    let data: BTreeMap<ObjectRef, SourceData> = sources
        .iter()
        .map(|(m, d)| (m.key.clone(), d.clone()))
        .collect();
    let selection = super::selection::select(&p, &metas, &BTreeMap::new(), &[]);
    let validations = super::validation::check_all(selection.sources(), &data, NOW);
    let desired = super::desired::render(&p, &selection, &validations, current);
    (p, desired)
}

/// The desired entries (credential mode, nothing published yet) for
/// `(namespace, name, pair)` sources.
pub fn desired_entries(sources: &[(&str, &str, Pair)]) -> Vec<super::desired::Entry> {
    let sources: Vec<(SourceMeta, SourceData)> = sources
        .iter()
        .map(|(ns, name, pair)| (mk_source(ns, name), pair.data()))
        .collect();
    render_sources(Mode::Credential, &sources, &Published::default())
        .1
        .entries
}
