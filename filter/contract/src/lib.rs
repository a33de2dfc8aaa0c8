//! The certificate core shared by the cert-sync filter (compiled to wasm, inside
//! every gateway pod) and the controller (native). One implementation computes
//! both the fingerprint the controller expects and the one the gateway reports,
//! so the two can be compared byte for byte.
//!
//! It is also where every contract between cert-sync's components is
//! defined, once, as types and constants: the report protocol ([`report`]),
//! the filter's plugin configuration ([`plugin_config`]), the Envoy cluster
//! names and HTTP paths ([`wire`]), Istio's SDS resource names ([`sds`]),
//! the Kubernetes labels and annotations ([`metadata`]), and the kinds of
//! invalid certificate/key pair ([`InvalidKind`]).
//!
//! ```text
//!  PEM chain ──▶ pem::certificates ──▶ cert::summarize ──▶ CertSummary ──▶ report::Report (filter)
//!                                         │                      ▲
//!  PEM key ───▶ key::check_matches ◀──────┘                      │
//!                        └──────────▶ validate::validate_pair ───┘ (controller, feature "keys")
//! ```
//!
//! Nothing here performs I/O or reads the clock: callers pass `now`, which keeps
//! the crate deterministic and usable under `wasm32-unknown-unknown` as well.

pub mod cert;
pub mod error;
pub mod fingerprint;
#[cfg(feature = "keys")]
pub mod key;
pub mod metadata;
pub mod pem;
pub mod plugin_config;
pub mod report;
pub mod sds;
#[cfg(feature = "keys")]
pub mod validate;
pub mod wire;

pub use cert::{summarize_chain, CertSummary, San};
pub use error::{CertError, InvalidKind};
pub use fingerprint::Fingerprint;
