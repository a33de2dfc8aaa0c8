//! Typed errors. None of them carries input bytes: a certificate field may be
//! echoed, key material never.

use thiserror::Error;

/// Why a PEM certificate chain could not be read.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum CertError {
    #[error("input is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("no PEM CERTIFICATE block found")]
    NoCertificate,
    #[error("PEM block {index} is malformed: {reason}")]
    MalformedPem { index: usize, reason: String },
    /// A non-certificate block (most often a private key pasted into `tls.crt`).
    /// Only the label is named, never the content.
    #[error("PEM block {index} is a {label:?} block, expected CERTIFICATE")]
    UnexpectedBlock { index: usize, label: String },
    #[error("certificate {index} in the chain is not valid X.509 DER: {reason}")]
    MalformedCertificate { index: usize, reason: String },
    #[error("chain has {len} certificates, over the limit of {limit}")]
    ChainTooLong { len: usize, limit: usize },
}

impl CertError {
    /// A stable, low-cardinality label for metrics and Event reasons.
    pub fn reason(&self) -> &'static str {
        match self {
            CertError::TooLarge { .. } | CertError::ChainTooLong { .. } => "too_large",
            CertError::NoCertificate
            | CertError::MalformedPem { .. }
            | CertError::UnexpectedBlock { .. }
            | CertError::MalformedCertificate { .. } => "malformed_certificate",
        }
    }
}
