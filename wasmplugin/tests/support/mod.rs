//! Finding the tools the checks run: Node with the pinned Istio schema
//! package (Envoy and the filter module come from the certsync-testkit harness).
//! A missing tool fails the test with the command that installs it; nothing
//! is skipped silently.
#![allow(dead_code)] // each test binary uses part of this

use std::path::PathBuf;

pub use certsync_testkit::workspace_root;

pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `$CERTSYNC_SCHEMA_NODE_MODULES`, else `.tools/npm-schema/node_modules`.
pub fn schema_node_modules() -> PathBuf {
    let dir = std::env::var_os("CERTSYNC_SCHEMA_NODE_MODULES")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".tools/npm-schema/node_modules"));
    assert!(
        dir.join("@kubernetes-models/istio/package.json").is_file(),
        "Istio schema package not found under {}; install it with:\n  \
         mkdir -p .tools/npm-schema && cp wasmplugin/schema/package.json wasmplugin/schema/package-lock.json .tools/npm-schema/ \
         && npm ci --no-audit --no-fund --prefix .tools/npm-schema\n\
         (or set CERTSYNC_SCHEMA_NODE_MODULES)",
        dir.display()
    );
    dir
}

/// `$NODE`, else `node` from PATH.
pub fn node() -> PathBuf {
    std::env::var_os("NODE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "node".into())
}

/// A fresh directory under the system temp dir for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("certsync-wasmplugin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating scratch dir");
    dir
}
