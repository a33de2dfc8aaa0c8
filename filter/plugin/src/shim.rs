//! The proxy-wasm adapter: Envoy's callbacks in, `Host` calls out. No logic
//! lives here beyond translating types; see `reporter` for what happens.

use crate::config::PluginConfig;
use crate::host::{Host, Level, Response};
use crate::reporter::{Reporter, MAX_ADMIN_BODY};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel, MapType, MetricType};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    // Replaces the SDK's hook, which unwraps; logging must never panic in turn.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("cert-sync filter panicked: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { reporter: None }) });
}}

/// Host calls through proxy-wasm; metric ids are defined once per VM.
#[derive(Default)]
pub struct ProxyWasmHost {
    metrics: HashMap<String, u32>,
}

impl ProxyWasmHost {
    fn metric(&mut self, kind: MetricType, name: &str) -> Option<u32> {
        if let Some(id) = self.metrics.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        self.metrics.insert(name.to_owned(), id);
        Some(id)
    }
}

impl Host for ProxyWasmHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, String> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
            .map_err(|status| format!("cannot call cluster {cluster:?}: {status:?}"))
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }

    fn set_gauge(&mut self, name: &str, value: u64) {
        if let Some(id) = self.metric(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn add_counter(&mut self, name: &str, delta: u64) {
        if let Some(id) = self.metric(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, i64::try_from(delta).unwrap_or(i64::MAX));
        }
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        let _ = hostcalls::log(level, message);
    }

    fn property(&self, path: &[&str]) -> Option<String> {
        let bytes = hostcalls::get_property(path.to_vec()).ok()??;
        String::from_utf8(bytes).ok().filter(|s| !s.is_empty())
    }
}

struct Root {
    reporter: Option<Reporter<ProxyWasmHost>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(reporter) = self.reporter.as_mut() else {
            return;
        };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok());
        let response = if body_size > MAX_ADMIN_BODY {
            reporter.host().log(
                Level::Warn,
                &format!("response of {body_size} bytes exceeds the {MAX_ADMIN_BODY}-byte limit"),
            );
            Response {
                status: None,
                body: Vec::new(),
            }
        } else {
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            Response { status, body }
        };
        reporter.on_response(token, response);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let host = ProxyWasmHost::default();
        let raw = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let config = match PluginConfig::parse(&raw) {
            Ok(config) => config,
            Err(e) => {
                host.log(Level::Error, &format!("invalid plugin configuration: {e}"));
                return false;
            }
        };
        if hostcalls::set_tick_period(config.interval).is_err() {
            host.log(Level::Error, "cannot set the tick period");
            return false;
        }
        // Each worker's VM needs a distinct lease id; std seeds RandomState from WASI random_get.
        let id = std::collections::hash_map::RandomState::new().hash_one(0u8);
        let reporter = Reporter::new(host, config, id);
        let pod = reporter.pod();
        reporter.host().log(
            Level::Info,
            &format!("configured for pod {}/{}", pod.namespace, pod.name),
        );
        self.reporter = Some(reporter);
        true
    }

    fn on_tick(&mut self) {
        if let Some(reporter) = self.reporter.as_mut() {
            reporter.on_tick();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The filter sits on the status listener only and does nothing per request.
struct PassThrough;
impl Context for PassThrough {}
impl HttpContext for PassThrough {}
