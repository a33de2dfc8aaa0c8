//! The gate in front of every publication: a source is published only if its
//! certificate chain parses, is in order, is inside its validity window, and
//! its private key matches the leaf.

use crate::cert::{self, CertSummary};
use crate::error::{CertError, InvalidKind};
use crate::key::{self, KeyAlgorithm, KeyError};
use thiserror::Error;

/// A certificate/key pair that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedPair {
    pub summary: CertSummary,
    pub key: KeyAlgorithm,
}

/// Why a pair was refused. [`Invalid::kind`] says which kind of failure
/// (what the controller turns into a Kubernetes reason).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Invalid {
    #[error("tls.crt: {0}")]
    Certificate(#[source] CertError),
    #[error("tls.key: {0}")]
    Key(#[source] KeyError),
    #[error("certificate expired at {not_after} (Unix seconds)")]
    Expired { not_after: i64 },
    #[error("certificate is not valid before {not_before} (Unix seconds)")]
    NotYetValid { not_before: i64 },
    #[error("certificate chain is out of order: each certificate must be issued by the next")]
    ChainOrder,
}

impl Invalid {
    /// Which kind of failure this is.
    pub fn kind(&self) -> InvalidKind {
        match self {
            Invalid::Certificate(e) => e.kind(),
            Invalid::Key(e) => e.kind(),
            Invalid::Expired { .. } => InvalidKind::Expired,
            Invalid::NotYetValid { .. } => InvalidKind::NotYetValid,
            Invalid::ChainOrder => InvalidKind::ChainOrder,
        }
    }

    /// [`Self::kind`] as its stable label.
    pub fn reason(&self) -> &'static str {
        self.kind().as_str()
    }
}

/// The only check whose outcome changes with time alone: whether `now`
/// (Unix seconds) is inside the leaf's validity window. A pair that passed
/// [`validate_pair`] is re-checked with this, from its summary.
pub fn check_window(summary: &CertSummary, now: i64) -> Result<(), Invalid> {
    if now < summary.not_before {
        return Err(Invalid::NotYetValid {
            not_before: summary.not_before,
        });
    }
    if now > summary.not_after {
        return Err(Invalid::Expired {
            not_after: summary.not_after,
        });
    }
    Ok(())
}

/// Validates a `tls.crt`/`tls.key` pair at time `now` (Unix seconds).
pub fn validate_pair(cert_pem: &[u8], key_pem: &[u8], now: i64) -> Result<ValidatedPair, Invalid> {
    let summary = cert::summarize_chain(cert_pem).map_err(Invalid::Certificate)?;
    if !cert::chain_in_order(cert_pem).map_err(Invalid::Certificate)? {
        return Err(Invalid::ChainOrder);
    }
    check_window(&summary, now)?;
    let key = key::check_matches(cert_pem, key_pem).map_err(|e| match e {
        KeyError::Certificate(c) => Invalid::Certificate(c),
        other => Invalid::Key(other),
    })?;
    Ok(ValidatedPair { summary, key })
}
