//! What `cert-sync status` reads: the controller's `/v1/status` answer or
//! the manifest ConfigMap's JSON (`core::status::parse`, which hands a
//! manifest to `core::manifest::parse`), then the table it prints in both
//! widths.
#![no_main]

use certsync_controller::core::status::{self, TableWidth};
use certsync_fuzz::NOW;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(view) = status::parse(json) else {
        return;
    };
    for width in [TableWidth::Normal, TableWidth::Wide] {
        let table = status::render_table(&view, width, NOW);
        assert!(table.starts_with("SOURCE"), "{table}");
    }
});
