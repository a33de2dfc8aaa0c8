//! What operators see and what keeps the process lean: the HTTP server
//! (health, metrics, the filter module), Prometheus metrics, heap tuning.
#[cfg(feature = "alloc-stats")]
pub mod alloc_stats;
pub mod heap;
pub mod http;
pub mod http_get;
pub mod metrics;
