//! The filter's plugin configuration (a WasmPlugin's `pluginConfig`, handed
//! to the filter as JSON): certsync-contract's document, then the filter's
//! checks. An accepted configuration keeps every promise the checks make;
//! a refusal never quotes a value (it may be the report token).
#![no_main]

use certsync_contract::plugin_config::{PluginConfig as Document, MIN_INTERVAL_MS};
use certsync_filter::config::PluginConfig;
use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    match PluginConfig::parse(data) {
        Ok(c) => {
            assert!(c.interval >= Duration::from_millis(MIN_INTERVAL_MS));
            assert!(c.heartbeat >= c.interval && c.resync >= c.interval);
            assert!(c.max_backoff >= c.interval);
            assert!(!c.timeout.is_zero());
            assert!(c.report_path.starts_with('/'));
            for field in [&c.admin_cluster, &c.report_cluster, &c.admin_authority] {
                assert!(!field.trim().is_empty());
            }
            assert!(c.report_token.as_ref().is_none_or(|t| !t.is_empty()));
            let _ = c.reports_resource("kubernetes://shop.shop-tls");
        }
        // At most the one `"…"` that stands for a redacted value.
        Err(e) => assert!(e.to_string().matches('"').count() <= 2, "{e}"),
    }
    // What renders the document writes what it read.
    if let Ok(doc) = serde_json::from_slice::<Document>(data) {
        let back = serde_json::from_value::<Document>(doc.to_json());
        assert!(back.as_ref().ok() == Some(&doc), "{back:?} != {doc:?}");
    }
});
