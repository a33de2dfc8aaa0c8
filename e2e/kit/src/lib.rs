//! Test harness that runs the cert-sync filter's world for real: an Envoy
//! process, certificates delivered over file-based SDS exactly as Kubernetes
//! mounts Secrets, a TLS client that looks at what Envoy actually serves, and
//! an in-process stand-in for the controller's report endpoint.
//!
//! ```text
//!   pki ──▶ sds::SdsDir (..data swap) ──▶ bootstrap::Bootstrap ──▶ envoy::Envoy
//!                                              │ status listener + wasm      │ HTTPS per SNI
//!                                              ▼                             ▼
//!                          receiver::Receiver (POST /v1/reports)   tls_client::probe
//! ```
//!
//! [`local`] assembles these with the real `cert-sync` and `fake-apiserver`
//! binaries ([`procs`]) into a local cluster of several gateway pods: the
//! end-to-end tests, `just demo` and the rollout benchmark run on it.
//!
//! It is test support, so errors are `anyhow` and carry enough context (log
//! tails, Envoy's own words) to diagnose a failing test without re-running it.
//! Every wait is bounded: see [`wait::poll`].
//!
//! [`bao`] runs a real OpenBao dev server for the Vault-backed source, with
//! Kubernetes auth against the fake API server's TokenReview.

pub mod bao;
pub mod bootstrap;
pub mod envoy;
pub mod http1;
pub mod local;
pub mod mesh_pki;
pub mod pki;
pub mod ports;
pub mod procs;
pub mod receiver;
pub mod sds;
pub mod tls_client;
pub mod wait;
pub mod wasm;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use bootstrap::{Bootstrap, BootstrapBuilder, PluginConfig};
pub use envoy::{
    envoy_binary, envoy_version, expiry_gauge_name, sds_stat_name, Envoy, EnvoyOptions,
};
pub use http1::HttpResponse;
pub use pki::{TestCa, TestCert};
pub use receiver::{ReceivedReport, Receiver, ReceiverMode};
pub use sds::{SdsDir, SdsSource, TlsSecret};
pub use tls_client::{https_get, probe, TlsProbe};
pub use wait::poll;
pub use wasm::filter_wasm_path;

/// The cargo workspace this crate belongs to (`e2e/kit/` is two levels down).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}
