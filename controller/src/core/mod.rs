//! The controller's pure logic: which sources are selected, whether they may
//! be published, and what the published objects must look like. No kube, no
//! I/O, no clock (callers pass `now`): everything here is a plain function of
//! its inputs, tested without a cluster. `runtime` does the I/O.
//!
//! ```text
//!  SourceMeta* ─┐                          ┌─▶ Refusal* (Events, metrics, status)
//!  CertMerge*  ─┼─▶ selection::select ─────┤
//!  Policy      ─┘        │                 └─▶ Selection (target ← sources)
//!                        ▼                                   │
//!  SourceData ─▶ validation::check ─▶ Validated ─▶ desired::render ─▶ DesiredState
//!                                                             (Secrets | files, manifest)
//! ```
pub mod model;
