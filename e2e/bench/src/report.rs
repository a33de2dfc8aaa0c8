//! The benchmark report file (`bench-report.md`): each benchmark writes its
//! Markdown section, the first one fresh and the others appended, so one
//! `just bench` gives one report.

use anyhow::{Context, Result};
use std::io::Write as _;
use std::path::Path;

/// Writes `md` to `path`: replacing the file, or appended after a blank line.
pub fn write(path: &Path, append: bool, md: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if append {
        file.write_all(b"\n")?;
    }
    file.write_all(md.as_bytes())?;
    Ok(())
}
