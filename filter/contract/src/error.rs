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
    /// Which kind of failure this is.
    pub fn kind(&self) -> InvalidKind {
        match self {
            CertError::TooLarge { .. } | CertError::ChainTooLong { .. } => InvalidKind::TooLarge,
            CertError::NoCertificate
            | CertError::MalformedPem { .. }
            | CertError::UnexpectedBlock { .. }
            | CertError::MalformedCertificate { .. } => InvalidKind::MalformedCertificate,
        }
    }

    /// [`Self::kind`] as its stable label.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// What is wrong with a certificate/key pair, in a closed set: every error
/// of this crate maps to one. Deliberately not `#[non_exhaustive]`: the
/// controller turns each kind into its own Kubernetes reason with an
/// exhaustive `match`, so a kind added here does not compile until it has
/// one there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InvalidKind {
    /// An input (chain, key) or the chain's length is over its limit.
    TooLarge,
    /// The chain is not PEM certificates of valid X.509.
    MalformedCertificate,
    /// No private key block.
    MissingKey,
    /// The key's PEM or structure does not parse.
    MalformedKey,
    /// An encrypted key, or an algorithm cert-sync does not support.
    UnsupportedKey,
    /// The key does not belong to the leaf certificate.
    KeyMismatch,
    /// The leaf's notAfter has passed.
    Expired,
    /// The leaf's notBefore has not come yet.
    NotYetValid,
    /// Some certificate of the chain is not issued by the next one.
    ChainOrder,
}

impl InvalidKind {
    /// Every kind, e.g. for tests that each has its own label or reason.
    pub const ALL: [InvalidKind; 9] = [
        InvalidKind::TooLarge,
        InvalidKind::MalformedCertificate,
        InvalidKind::MissingKey,
        InvalidKind::MalformedKey,
        InvalidKind::UnsupportedKey,
        InvalidKind::KeyMismatch,
        InvalidKind::Expired,
        InvalidKind::NotYetValid,
        InvalidKind::ChainOrder,
    ];

    /// A stable, low-cardinality snake_case label (logs, metrics, tests).
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidKind::TooLarge => "too_large",
            InvalidKind::MalformedCertificate => "malformed_certificate",
            InvalidKind::MissingKey => "missing_key",
            InvalidKind::MalformedKey => "malformed_key",
            InvalidKind::UnsupportedKey => "unsupported_key",
            InvalidKind::KeyMismatch => "key_mismatch",
            InvalidKind::Expired => "expired",
            InvalidKind::NotYetValid => "not_yet_valid",
            InvalidKind::ChainOrder => "chain_order",
        }
    }
}

impl core::fmt::Display for InvalidKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
