//! What `cert-sync status` and a restarted controller read back: the
//! manifest's index and shards (`core::manifest::shards::assemble`). The
//! input is the index JSON, then `label`, `json` pairs, split at NULs.
//! Whatever assembles, written again as the controller writes it (split
//! along a fresh layout, each shard rendered), must read back the same.
#![no_main]

use certsync_controller::core::manifest::shards::{self, Layout};
use certsync_controller::core::manifest::{ManifestEntry, Rendering};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.split('\0');
    let index = fields.next().unwrap_or_default();
    let mut parts = BTreeMap::new();
    while let (Some(label), Some(json)) = (fields.next(), fields.next()) {
        parts.insert(label.to_owned(), json.to_owned());
    }
    let Ok(read) = shards::assemble(index, &parts) else {
        return;
    };
    let mut layout = Layout::default();
    let split = shards::split(&read, &mut layout);
    let none = |_: &mut ManifestEntry| {};
    let mut written = BTreeMap::new();
    for (prefix, part) in &split.shards {
        let json = Rendering::of(part.doc(*prefix, &none)).json();
        assert!(json.is_ok(), "a shard that was read renders");
        written.insert(prefix.label(), json.unwrap_or_default());
    }
    let index_json = serde_json::to_string(&split.index);
    assert!(index_json.is_ok());
    let again = shards::assemble(&index_json.unwrap_or_default(), &written);
    assert!(again.is_ok(), "what the controller writes reads back");
    let (mut a, mut b) = (read, again.unwrap_or_else(|_| unreachable_manifest()));
    for m in [&mut a, &mut b] {
        m.publications
            .sort_by(|x, y| (&x.source, &x.sds_resource).cmp(&(&y.source, &y.sds_resource)));
        m.refusals.sort_by(|x, y| {
            (&x.subject, &x.reason, &x.message).cmp(&(&y.subject, &y.reason, &y.message))
        });
    }
    assert_eq!(a.publications, b.publications);
    assert_eq!(a.refusals, b.refusals);
    assert_eq!((a.gateway_namespace, a.mode), (b.gateway_namespace, b.mode));
});

/// Never used: `again` was just asserted to be `Ok`.
fn unreachable_manifest() -> certsync_controller::core::manifest::Manifest {
    certsync_controller::core::manifest::Manifest {
        version: 0,
        gateway_namespace: String::new(),
        mode: String::new(),
        publications: Vec::new(),
        refusals: Vec::new(),
    }
}
