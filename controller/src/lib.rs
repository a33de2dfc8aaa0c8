//! The cert-sync controller: publishes selected `kubernetes.io/tls` Secrets
//! where Istio ingress gateways load them (credential Secrets, a merged
//! Secret, or files), plus the gateway-side EnvoyFilter and WasmPlugin, and
//! proves every rollout from the gateway pods' reports.
//!
//! `core` holds the decisions as plain functions; `runtime` is the thin layer
//! that talks to Kubernetes, the file system and the gateway pods; `app` is
//! the one loop that drives them (publish → verify → record); `status_cli`
//! is `cert-sync status`.
pub mod app;
pub mod config;
pub mod core;
pub mod crd;
pub mod runtime;
pub mod status_cli;
