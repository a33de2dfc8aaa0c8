//! Finding the tools the checks run: Node with the pinned Istio schema
//! package, Envoy, and the filter's wasm module. A missing tool fails the
//! test with the command that installs it; nothing is skipped silently.
#![allow(dead_code)] // each test binary uses part of this

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("wasmplugin/ has a parent")
        .to_path_buf()
}

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

/// `$ENVOY_BIN`, else the bootstrap venv's, else `envoy` from PATH.
pub fn envoy() -> PathBuf {
    if let Some(path) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = workspace_root().join(".tools/venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    "envoy".into()
}

/// The filter module: `$CERTSYNC_FILTER_WASM`, else built once per test
/// process with `cargo build -p certsync-filter --target wasm32-wasip1
/// --release` (cargo decides whether anything is stale).
pub fn filter_wasm() -> PathBuf {
    if let Some(path) = std::env::var_os("CERTSYNC_FILTER_WASM").filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "CERTSYNC_FILTER_WASM={} is not a file",
            path.display()
        );
        return path;
    }
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(build_filter_wasm).clone()
}

fn build_filter_wasm() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--quiet",
            "-p",
            "certsync-filter",
            "--target",
            "wasm32-wasip1",
            "--release",
        ])
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "building the filter module failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("wasm32-wasip1/release/certsync_filter.wasm");
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A fresh directory under the system temp dir for one test's files.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("certsync-wasmplugin-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating scratch dir");
    dir
}
