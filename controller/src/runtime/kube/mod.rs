//! The Kubernetes API: watches and their stores, reads and server-side
//! applies, Events, leader election on a Lease, the sweep for annotated
//! non-TLS Secrets.
pub mod backoff;
pub mod cluster;
pub mod events;
pub mod gateways;
pub mod journal;
pub mod leader;
pub mod store;
pub mod sweep;
