//! The thin I/O layer, grouped by what it talks to. Decisions live in
//! `core`; this code reads, writes and reports what happened.
//!
//! | module | talks to |
//! |---|---|
//! | [`kube`] | the Kubernetes API: watches and stores, server-side apply, Events, the Lease, the non-TLS sweep |
//! | [`gateway`] | the gateway pods: their discovery, their reports, the Istio objects that load the filter, the certificate directory they read |
//! | [`ops`] | operators: HTTP endpoints, Prometheus metrics, the heap |
//! | [`vault`] | Vault / OpenBao KV v2: VaultCertificates' versions and data |
pub mod gateway;
pub mod kube;
pub mod ops;
pub mod vault;
