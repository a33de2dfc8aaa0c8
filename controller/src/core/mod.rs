//! The controller's pure logic: which sources are selected, whether they may
//! be published, and what the published objects must look like. No kube, no
//! I/O, no clock (callers pass `now`): everything here is a plain function of
//! its inputs, tested without a cluster. `runtime` does the I/O.
//!
//! ```text
//!  SourceMeta* ─┐                        ┌─▶ Refusal* (Events, metrics, status)
//!  CertMerge*  ─┼─▶ selection::select ───┤
//!  Policy      ─┘                        └─▶ Selection (target ← sources)
//!                                                 │ sources()
//!  SourceData* ─▶ validation::check_all ─▶ Validations
//!                                                 │
//!  Published (read back) ──────────────▶ desired::render ─▶ DesiredState
//!        │                                                     │
//!        └────────────────────────────▶ desired::diff ◀────────┘
//!                                            │
//!                                 Plan (Create/Update/Replace/Unchanged/Delete,
//!                                       TargetNotManaged refusals)
//!                                            │
//!                         manifest::build ─▶ manifest::render (ConfigMap data)
//! ```
//!
//! `hosts` decides whether a certificate covers the hosts it is served for,
//! `served` what an Istio Gateway server makes its gateway load;
//! `naming` derives every published name and SDS resource name, `labels`
//! evaluates Kubernetes label selectors, `reasons` holds every Event reason
//! (refusals and rollout), `conditions` every CertMerge condition and member
//! state, `model::keys` every label and annotation key; `freshness` decides
//! when a source is read again, `announce` what is worth an Event.
pub mod announce;
pub mod conditions;
pub mod desired;
pub mod error;
pub mod flat_map;
pub mod freshness;
pub mod gateways;
pub mod hosts;
pub mod labels;
pub mod manifest;
pub mod merge_status;
pub mod mesh_ca;
pub mod model;
pub mod naming;
pub mod reasons;
pub mod referenced;
pub mod rollout;
pub mod scoped;
pub mod selection;
pub mod served;
pub mod status;
#[cfg(test)]
pub(crate) mod testing;
pub mod validation;
pub mod vault;
