//! Names both ends of a connection must spell alike, and nothing but a
//! failed connection would tell they do not: the Envoy clusters the filter
//! calls through, and the controller's HTTP paths the gateways use.

/// Envoy cluster reaching the pod's own Envoy admin API: added by the
/// EnvoyFilter, named in the plugin configuration (its default there), and
/// polled by the filter.
pub const ADMIN_CLUSTER: &str = "cert-sync-admin";
/// Envoy cluster reaching the cert-sync controller: added by the
/// EnvoyFilter, named in the plugin configuration; the filter reports
/// through it.
pub const CONTROLLER_CLUSTER: &str = "cert-sync-controller";
/// Where the controller serves the filter module; a WasmPlugin that loads
/// the module from the controller points its `url` here.
pub const MODULE_PATH: &str = "/v1/filter.wasm";
/// Where the filter posts its reports (defined with the report protocol).
pub use crate::report::REPORT_PATH;
