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
/// Where the controller serves the filter module it was started with,
/// whatever its digest: for a static manifest that cannot know the build.
pub const MODULE_PATH: &str = "/v1/filter.wasm";
/// Prefix of the content-addressed module path, [`module_path`].
pub const MODULE_DIR: &str = "/v1/filter/";

/// The content-addressed path of the module whose SHA-256 is `sha256_hex`
/// (`/v1/filter/<hex>.wasm`). A controller answers it only for the module
/// it serves (503 otherwise, which istio-agent retries), so during a rolling
/// upgrade a replica of another version never hands a gateway bytes that
/// mismatch the WasmPlugin's `sha256`.
pub fn module_path(sha256_hex: &str) -> String {
    format!("{MODULE_DIR}{sha256_hex}.wasm")
}
/// Where the filter posts its reports (defined with the report protocol).
pub use crate::report::REPORT_PATH;
