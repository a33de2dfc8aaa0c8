//! Locating (and if need be building) the filter's wasm module, so a plain
//! `cargo test` works from a clean tree. Tests load the module that ships:
//! `filter/build-wasm.sh` (cargo release build, then `wasm-opt -Oz`).

use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Set to a prebuilt `certsync_filter.wasm` to skip the build.
pub const FILTER_WASM_ENV: &str = "CERTSYNC_FILTER_WASM";

/// The filter's wasm module, up to date with its sources.
///
/// `$CERTSYNC_FILTER_WASM` wins if set. Otherwise the first call in a
/// process runs `filter/build-wasm.sh` (cargo decides whether anything is
/// stale); later calls reuse that outcome.
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
    let script = crate::workspace_root().join("filter/build-wasm.sh");
    // The script reads cargo's output under the workspace's `target/`, so
    // its cargo must put it there whatever target dir the caller uses.
    let output = Command::new("bash")
        .arg(&script)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !path.is_file() {
        bail!(
            "the filter build succeeded but {} does not exist",
            path.display()
        );
    }
    Ok(path)
}
