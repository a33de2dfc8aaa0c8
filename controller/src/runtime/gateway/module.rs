//! The filter module as a gateway pod will fetch it. Before the leader
//! points a WasmPlugin at the module (or re-stamps it), it fetches the module
//! itself through the very URL the WasmPlugin names — the controller's
//! Service — and checks the bytes against the `sha256` it writes.
//!
//! ```text
//!  leader ──GET http://cert-sync.<ns>.svc:8080/v1/filter/<sha>.wasm──▶ Service ──▶ a Ready replica
//!     │ 200 and SHA-256 = <sha>: apply the WasmPlugin
//!     └ else: keep the old one, retry with backoff (ModuleUnavailable)
//! ```
//!
//! Why: istio-agent gives up on an `http://` module after five attempts
//! (3–10 s in all; at once on a 4xx), then with `FAIL_OPEN` serves an
//! allow-all filter in its place and never fetches again until istiod
//! pushes the WasmPlugin anew (istio 1.28.10 `pkg/wasm/httpfetcher.go:65-140`,
//! `pkg/wasm/convert.go:132-151`). Applying
//! the WasmPlugin while the controller's own Service has no Ready endpoint —
//! the leader's first pass, right after its caches sync — would leave every
//! gateway pod without the filter, silently.

use crate::runtime::ops::http_get;
use certsync_wasmplugin::{GatewaySettings, ModuleSource};
use hyper::Uri;
use sha2::{Digest, Sha256};
use std::time::Duration;
use thiserror::Error;

/// The whole fetch: an in-cluster hop for a module of a few hundred KiB.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Far above the module's size budget (400 KiB); a wrong URL cannot make the
/// controller buffer without bound.
const MAX_MODULE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ModuleError {
    #[error("fetching the filter module from {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the filter module at {url} has sha256 {got}, not the {want} the WasmPlugin pins")]
    Mismatch {
        url: String,
        got: String,
        want: String,
    },
}

/// Fetches the module the WasmPlugin names and checks its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleProbe {
    url: String,
    authority: String,
    path: String,
    sha256: String,
}

impl ModuleProbe {
    /// A probe for a module the controller serves itself, pinned by
    /// digest; `None` for other sources (an OCI registry or another server
    /// vouches for those, and istio-agent's retries are theirs).
    pub fn for_settings(settings: &GatewaySettings) -> Option<Self> {
        let ModuleSource::Controller {
            sha256: Some(sha256),
        } = &settings.module
        else {
            return None;
        };
        let url = settings.module_url();
        let uri: Uri = url.parse().ok()?;
        let authority = uri.authority()?;
        Some(ModuleProbe {
            authority: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(80)
            ),
            path: uri.path().to_owned(),
            sha256: sha256.clone(),
            url,
        })
    }

    /// The URL probed: the WasmPlugin's `url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `Ok` when the URL answers 200 with bytes whose SHA-256 is the pinned one.
    pub async fn check(&self) -> Result<(), ModuleError> {
        let body = http_get::get(&self.authority, &self.path, MAX_MODULE_BYTES, PROBE_TIMEOUT)
            .await
            .map_err(|e| ModuleError::Unreachable {
                url: self.url.clone(),
                reason: format!("{e:#}"),
            })?;
        let got: String = Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if got == self.sha256 {
            Ok(())
        } else {
            Err(ModuleError::Mismatch {
                url: self.url.clone(),
                got,
                want: self.sha256.clone(),
            })
        }
    }
}
