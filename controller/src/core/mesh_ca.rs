//! The mesh CA: istiod's plugged-in CA Secret `cacerts`, written from a
//! cert-manager CA Secret (`tls.crt`, `tls.key`, `ca.crt`) or a Vault KV
//! secret with the same fields, in Istio's layout, after checks that
//! istiod itself makes only at start-up or not at all.
//!
//! ```text
//!  SourceData (chain, key, roots) ─▶ check: CA flag, keyCertSign, key match,
//!                                   window, validity left, chain verified to a root
//!                     │ ValidCa
//!                     ▼
//!   layout: ca-cert.pem (signing cert) · ca-key.pem · cert-chain.pem (signing
//!           cert first, then higher intermediates) · root-cert.pem (roots)
//!   proof:  ROOTCA must hold the root; `default` must be issued by the signing cert
//! ```
//!
//! Istio 1.28 (`docs/istio-reading.md`, "Mesh CA"): istiod reads the four
//! `*.pem` keys of the mounted `cacerts` (a `tls.crt` key would take
//! precedence, so it is never written), reloads them on change when it
//! started with them, but ignores a whole update whose root bytes differ
//! (`pilot/pkg/bootstrap/istio_ca.go:349-367`) until it is restarted.

use super::desired::DesiredSecret;
use super::flat_map::FlatMap;
use super::manifest::{ManifestEntry, MeshProof, TargetRef};
use super::model::{self, Blob, ObjectRef, PublishedSecret, SourceData};
use super::reasons;
use base64::Engine as _;
use certsync_contract::sds;
use certsync_contract::validate::validate_pair;
use certsync_contract::{pem, Fingerprint};
use std::collections::BTreeMap;
use std::sync::Arc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The `cacerts` keys (`security/pkg/pki/ca/ca.go:43-62`).
pub mod keys {
    pub const CA_CERT: &str = "ca-cert.pem";
    pub const CA_KEY: &str = "ca-key.pem";
    pub const CERT_CHAIN: &str = "cert-chain.pem";
    pub const ROOT_CERT: &str = "root-cert.pem";
    /// The Secret's name: istiod mounts `cacerts` at `/etc/cacerts`.
    pub const SECRET: &str = "cacerts";
    /// Names the CA's source on `cacerts`. Not `certsync.istio.io/source`:
    /// a managed Secret with that annotation in the gateway namespace is a
    /// publication, deleted when no source claims it.
    pub const SOURCE: &str = "certsync.istio.io/mesh-ca-source";
}

/// A CA that passed every check, with the `cacerts` data to write.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidCa {
    /// SHA-256 of the signing (intermediate) certificate: what every
    /// workload certificate is issued by.
    pub signing: Fingerprint,
    pub signing_serial: String,
    /// SHA-256 of every root in the bundle; `roots[0]` is the one the
    /// chain verifies to.
    pub roots: Vec<Fingerprint>,
    /// The earlier of the signing certificate's and its root's notAfter.
    pub not_after: i64,
    /// The `cacerts` data, by key.
    pub data: BTreeMap<&'static str, Blob>,
}

impl std::fmt::Debug for ValidCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidCa")
            .field("signing", &self.signing)
            .field("roots", &self.roots)
            .field("not_after", &self.not_after)
            .field("data", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a CA is refused: a reason of `core::reasons` and a message that
/// never quotes key bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
    pub message: String,
}

fn refuse(reason: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        reason,
        message: message.into(),
    }
}

/// Checks a CA at `now`; `min_left` is the validity (seconds) the signing
/// certificate and its root must still have.
pub fn check(data: &SourceData, now: i64, min_left: i64) -> Result<ValidCa, Refused> {
    let chain_pem = bytes(&data.cert_pem)
        .ok_or_else(|| refuse(reasons::MISSING_CERTIFICATE, "tls.crt is missing or empty"))?;
    let key_pem = bytes(&data.key_pem)
        .ok_or_else(|| refuse(reasons::MISSING_KEY, "tls.key is missing or empty"))?;
    let roots_pem = bytes(&data.ca_pem).ok_or_else(|| {
        refuse(
            reasons::CHAIN_NOT_TRUSTED,
            "ca.crt (the root the mesh trusts) is missing or empty",
        )
    })?;
    // Parses the chain, checks its order and window, and the key match.
    validate_pair(chain_pem, key_pem, now).map_err(|e| {
        refuse(
            reasons::for_invalid(e.kind()),
            format!("CA certificate: {e}"),
        )
    })?;
    let chain = ders(chain_pem, "tls.crt")?;
    let roots = ders(roots_pem, "ca.crt")?;
    let signing = parse(&chain[0], "tls.crt")?;
    is_ca(&signing)?;
    can_sign(&signing)?;
    let root_index = verify_to_root(&chain, &roots)?;
    let root = parse(&roots[root_index], "ca.crt")?;
    let not_after = signing
        .validity()
        .not_after
        .timestamp()
        .min(root.validity().not_after.timestamp());
    enough_left(not_after, now, min_left)?;

    let mut root_fps: Vec<Fingerprint> = roots.iter().map(|d| Fingerprint::of_der(d)).collect();
    root_fps.swap(0, root_index);
    Ok(ValidCa {
        signing: Fingerprint::of_der(&chain[0]),
        signing_serial: signing.raw_serial_as_string().replace(':', ""),
        roots: root_fps,
        not_after,
        data: BTreeMap::from([
            (keys::CA_CERT, Blob::from(pem_encode(&chain[0]))),
            (keys::CA_KEY, Blob::from(key_pem.to_vec())),
            (keys::CERT_CHAIN, Blob::from(chain_pem.to_vec())),
            (keys::ROOT_CERT, Blob::from(roots_pem.to_vec())),
        ]),
    })
}

/// Whether writing `new` over `current` (root-cert.pem bytes) changes the
/// root: istiod then ignores the whole update until it is restarted.
pub fn root_changed(current: Option<&Blob>, new: &ValidCa) -> bool {
    match (current, new.data.get(keys::ROOT_CERT)) {
        (Some(old), Some(new)) => old != new,
        _ => false,
    }
}

/// The `cacerts` Secret for `valid`, from `source` (as the manifest
/// names it): Opaque, labelled managed-by cert-sync, annotated with its
/// source and the CA's fingerprint.
pub fn desired(valid: &ValidCa, target: &ObjectRef, source: &str) -> DesiredSecret {
    DesiredSecret {
        name: target.name.clone(),
        namespace: target.namespace.clone(),
        secret_type: "Opaque".to_owned(),
        labels: Arc::new(BTreeMap::from([(
            model::keys::MANAGED_BY.to_owned(),
            model::keys::MANAGED_BY_VALUE.to_owned(),
        )])),
        annotations: Arc::new(FlatMap::from(BTreeMap::from([
            (keys::SOURCE.to_owned(), source.to_owned()),
            (
                model::keys::SOURCE_SHA256.to_owned(),
                valid.signing.to_string(),
            ),
        ]))),
        data: Arc::new(
            valid
                .data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        ),
    }
}

/// `current` already is `desired` (data by digest, labels, annotations).
pub fn up_to_date(current: &PublishedSecret, desired: &DesiredSecret) -> bool {
    current.data == desired.data
        && current.annotations == desired.annotations
        && current.labels.get(model::keys::MANAGED_BY)
            == desired.labels.get(model::keys::MANAGED_BY)
}

/// The manifest rows that prove `valid` per gateway pod: `ROOTCA` holds
/// the root, `default` is issued by the CA.
pub fn entries(valid: &ValidCa, target: &ObjectRef, source: &str) -> [ManifestEntry; 2] {
    let row = |sds: &str, sha256: Fingerprint, proof: MeshProof| ManifestEntry {
        source: source.to_owned(),
        target: TargetRef::MeshCa {
            secret: target.to_string(),
            proof,
        },
        sds_resource: sds.to_owned(),
        sds_ca_resource: None,
        sha256,
        serial: valid.signing_serial.clone(),
        not_after: super::manifest::rfc3339(valid.not_after),
        kept: None,
        published_at: None,
        converged_at: None,
        state: None,
        rollout: BTreeMap::new(),
    };
    [
        row(sds::ROOT_CA, valid.roots[0], MeshProof::TrustsRoot),
        row(sds::WORKLOAD_CERT, valid.signing, MeshProof::IssuedBy),
    ]
}

fn bytes(blob: &Option<Blob>) -> Option<&[u8]> {
    blob.as_ref()
        .and_then(Blob::bytes)
        .filter(|b| !b.iter().all(u8::is_ascii_whitespace))
}

fn ders(pem_text: &[u8], what: &str) -> Result<Vec<Vec<u8>>, Refused> {
    let ders = pem::certificates(pem_text)
        .map_err(|e| refuse(reasons::MALFORMED_CERTIFICATE, format!("{what}: {e}")))?;
    if ders.is_empty() {
        return Err(refuse(
            reasons::MALFORMED_CERTIFICATE,
            format!("{what} holds no certificate"),
        ));
    }
    Ok(ders)
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, Refused> {
    X509Certificate::from_der(der)
        .map(|(_, c)| c)
        .map_err(|e| refuse(reasons::MALFORMED_CERTIFICATE, format!("{what}: {e}")))
}

/// basicConstraints CA:TRUE. istiod checks it at start-up only
/// (`security/pkg/pki/ca/ca.go:308-325`); a reload would take a leaf.
fn is_ca(cert: &X509Certificate<'_>) -> Result<(), Refused> {
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Ok(()),
        _ => Err(refuse(
            reasons::NOT_A_CA,
            "tls.crt's first certificate is not a CA (basicConstraints CA:TRUE is missing)",
        )),
    }
}

/// keyUsage, when present, allows keyCertSign: without it every peer
/// refuses the workload certificates it signs (istiod never checks).
fn can_sign(cert: &X509Certificate<'_>) -> Result<(), Refused> {
    match cert.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(refuse(
            reasons::NOT_A_CA,
            "tls.crt's first certificate may not sign certificates (keyUsage lacks keyCertSign)",
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(refuse(
            reasons::MALFORMED_CERTIFICATE,
            format!("tls.crt: keyUsage: {e}"),
        )),
    }
}

/// Every certificate of the chain is signed by the next, and the last by
/// (or is) a self-signed root of the bundle: the index of that root.
fn verify_to_root(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> Result<usize, Refused> {
    let untrusted = |m: String| refuse(reasons::CHAIN_NOT_TRUSTED, m);
    let certs = chain
        .iter()
        .map(|d| parse(d, "tls.crt"))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, pair) in certs.windows(2).enumerate() {
        if pair[0]
            .verify_signature(Some(pair[1].public_key()))
            .is_err()
        {
            return Err(untrusted(format!(
                "tls.crt: certificate {i} is not signed by certificate {}",
                i + 1
            )));
        }
    }
    let last_der = &chain[chain.len() - 1];
    let last = &certs[certs.len() - 1];
    for (index, der) in roots.iter().enumerate() {
        let root = parse(der, "ca.crt")?;
        if root.verify_signature(None).is_err() {
            continue;
        }
        if der == last_der || last.verify_signature(Some(root.public_key())).is_ok() {
            return Ok(index);
        }
    }
    Err(untrusted(
        "tls.crt does not chain to a self-signed root in ca.crt".to_owned(),
    ))
}

fn enough_left(not_after: i64, now: i64, min_left: i64) -> Result<(), Refused> {
    if not_after - now < min_left {
        return Err(refuse(
            reasons::CA_EXPIRING,
            format!(
                "the CA (or its root) expires at {}, within the required {} days",
                super::manifest::rfc3339(not_after),
                min_left / 86_400
            ),
        ));
    }
    Ok(())
}

fn pem_encode(der: &[u8]) -> Vec<u8> {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

#[cfg(test)]
#[path = "mesh_ca_tests.rs"]
mod tests;
