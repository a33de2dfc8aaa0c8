//! The report wire protocol, filter → controller (`POST /v1/reports`).
//!
//! Versioned by `version`: a receiver refuses versions it does not know rather
//! than guess. Unknown fields are ignored, so minor additions stay compatible.

use crate::cert::CertSummary;
use crate::fingerprint::Fingerprint;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The protocol version this crate speaks.
pub const REPORT_VERSION: u32 = 1;
/// Largest report body a receiver accepts. 1,000 certificates with typical
/// SAN lists serialize to well under 1 MiB.
pub const MAX_REPORT_BYTES: usize = 2 * 1024 * 1024;
/// Most certificates one report may carry; the filter stops tracking beyond it.
pub const MAX_CERTIFICATES: usize = 5_000;
/// Path of the report endpoint on the controller.
pub const REPORT_PATH: &str = "/v1/reports";

/// Which gateway pod is reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
}

/// Why this report was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// First report after the filter (or its reporting worker) started.
    Startup,
    /// What Envoy has loaded changed since the last report.
    Change,
    /// Nothing changed; the heartbeat interval elapsed.
    Heartbeat,
}

/// One SDS secret Envoy has loaded, as the filter observed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedCertificate {
    /// SDS resource name, e.g. `kubernetes://shop.shop-tls` or `file-cert:/a.crt~/a.key`.
    pub resource: String,
    /// SDS version Envoy reports for the resource (may be empty for file sources).
    #[serde(default)]
    pub version: String,
    #[serde(flatten)]
    pub cert: CertSummary,
    /// SHA-256 of each certificate after the first, in order; filled for the
    /// mesh identity resources (`default`, `ROOTCA`: [`crate::sds::is_mesh_identity`])
    /// only. For `default` the issuing intermediate(s), then the root if the
    /// chain carries it; for `ROOTCA` the roots after the first (more than one
    /// during a root rotation). Computed with [`crate::cert::chain_fingerprints`].
    /// Left out of the JSON when empty; reports without it decode as empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain_sha256: Vec<Fingerprint>,
}

impl LoadedCertificate {
    /// Every fingerprint known for the resource, in chain or bundle order:
    /// the first certificate's (`cert.sha256`), then `chain_sha256`. For
    /// `ROOTCA` these are all the roots the pod trusts; for other resources
    /// than the mesh identity, only the first certificate's.
    pub fn fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        std::iter::once(self.cert.sha256).chain(self.chain_sha256.iter().copied())
    }
}

/// A loaded SDS secret the filter could not summarize (the chain did not parse).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceError {
    pub resource: String,
    pub error: String,
}

/// The body of `POST /v1/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub pod: PodRef,
    /// Envoy's node id (in Istio: `router~<ip>~<pod>.<ns>~<ns>.svc.cluster.local`).
    pub node_id: String,
    /// Increases by one with every report the pod's reporter sends; resets on restart.
    pub seq: u64,
    pub trigger: Trigger,
    /// Sorted by resource name.
    pub certificates: Vec<LoadedCertificate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ResourceError>,
}

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("report is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("report is not valid JSON for protocol version {REPORT_VERSION}: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("report protocol version {0} is not supported (this side speaks {REPORT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("report carries {0} certificates, over the limit of {MAX_CERTIFICATES}")]
    TooManyCertificates(usize),
    #[error("report names no pod")]
    MissingPod,
}

impl Report {
    /// Decodes and checks a report body as a receiver must before trusting it.
    pub fn decode(body: &[u8]) -> Result<Report, ReportError> {
        if body.len() > MAX_REPORT_BYTES {
            return Err(ReportError::TooLarge {
                size: body.len(),
                limit: MAX_REPORT_BYTES,
            });
        }
        let report: Report = serde_json::from_slice(body).map_err(ReportError::Malformed)?;
        if report.version != REPORT_VERSION {
            return Err(ReportError::UnsupportedVersion(report.version));
        }
        if report.certificates.len() > MAX_CERTIFICATES {
            return Err(ReportError::TooManyCertificates(report.certificates.len()));
        }
        if report.pod.name.is_empty() || report.pod.namespace.is_empty() {
            return Err(ReportError::MissingPod);
        }
        Ok(report)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}
