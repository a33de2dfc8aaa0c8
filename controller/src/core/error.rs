//! The core's one error type. Decisions are not errors (those are
//! [`Refusal`](super::reasons::Refusal)s); only encoding can fail.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoreError {
    #[error("manifest could not be encoded or decoded as JSON: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error(
        "manifest version {found} is not supported (this cert-sync reads version {supported})"
    )]
    ManifestVersion { found: u32, supported: u32 },
    #[error("manifest shard {0} (being rewritten? read again)")]
    ManifestShard(String),
}
