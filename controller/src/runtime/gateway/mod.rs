//! The gateway side: which pods serve (`pods`), what they report
//! (`reports`, passed on to the leader by a standby: `forward`), the Istio objects that load the filter into them
//! (`config`) and the module they load (`module`), and the certificate
//! directory a per-pod writer swaps (`files`).
pub mod config;
pub mod files;
pub mod forward;
pub mod module;
pub mod pods;
pub mod reports;
