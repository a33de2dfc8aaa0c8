//! Everything the filter asks of Envoy, behind one trait: the proxy-wasm
//! implementation lives in `shim`, an in-memory double in `testing`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// A finished outbound HTTP call, as the filter sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `:status`, or `None` when Envoy failed the call (reset, timeout, no upstream).
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

pub trait Host {
    /// Wall-clock time in milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Starts an HTTP call; the answer arrives later with the returned token.
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String>;
    /// Data shared by every worker's VM: value and its compare-and-swap token.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Writes `value` if `cas` still matches (`None` writes unconditionally).
    /// Returns false on a CAS mismatch or failure.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    fn set_gauge(&mut self, name: &str, value: u64);
    fn add_counter(&mut self, name: &str, delta: u64);
    fn log(&self, level: Level, message: &str);
    /// A string property of the Envoy node (e.g. `["node", "id"]`).
    fn property(&self, path: &[&str]) -> Option<String>;
}
