//! cert-sync's gateway filter: a proxy-wasm module that reports, from inside
//! every gateway pod, which certificates Envoy has actually loaded.
//!
//! ```text
//!  Envoy admin API ──(index, changed secrets)──▶ reporter ──(POST /v1/reports)──▶ controller
//!        ▲                                          │
//!        └────────── host (proxy-wasm shim) ◀───────┘──▶ gauges: notAfter per certificate
//! ```
//!
//! It attaches to a status listener that user traffic never crosses, and all
//! of its work runs in root contexts on ticks. Only `shim` touches proxy-wasm;
//! everything else is plain logic tested natively against `testing::FakeHost`.
// A panic aborts the VM and silences reporting for the pod: none outside tests.

pub mod admin;
pub mod config;
pub mod host;
pub mod inventory;
pub mod lease;
pub mod reporter;
#[cfg(test)]
mod reporter_tests;
#[cfg(target_arch = "wasm32")]
mod shim;
#[cfg(test)]
mod testing;
pub mod tripwire;
