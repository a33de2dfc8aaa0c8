//! Locating (and if need be building) the filter's wasm module, so a plain
//! `cargo test` works from a clean tree.

use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Set to a prebuilt `certsync_filter.wasm` to skip the build (CI, demo).
pub const FILTER_WASM_ENV: &str = "CERTSYNC_FILTER_WASM";
pub const WASM_TARGET: &str = "wasm32-wasip1";
pub const FILTER_PACKAGE: &str = "certsync-filter";

/// Where `cargo build -p certsync-filter --target wasm32-wasip1 --release` puts the module.
pub fn filter_wasm_target_path() -> PathBuf {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    target_dir
        .join(WASM_TARGET)
        .join("release")
        .join("certsync_filter.wasm")
}

/// The filter's wasm module, up to date with its sources.
///
/// `$CERTSYNC_FILTER_WASM` wins if set. Otherwise the first call in a test
/// process runs `cargo build -p certsync-filter --target wasm32-wasip1
/// --release` (cargo itself decides whether anything is stale); later calls
/// reuse that outcome.
pub fn filter_wasm_path() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(FILTER_WASM_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{FILTER_WASM_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn build() -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .current_dir(crate::workspace_root())
        .args([
            "build",
            "-p",
            FILTER_PACKAGE,
            "--target",
            WASM_TARGET,
            "--release",
        ])
        .output()
        .with_context(|| format!("running {} build", PathBuf::from(&cargo).display()))?;
    if !output.status.success() {
        bail!(
            "`cargo build -p {FILTER_PACKAGE} --target {WASM_TARGET} --release` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = filter_wasm_target_path();
    if !path.is_file() {
        bail!(
            "the filter build succeeded but {} does not exist",
            path.display()
        );
    }
    Ok(path)
}
