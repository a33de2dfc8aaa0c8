//! The small file-system steps of a swap, and the path checks that keep
//! every write inside the certificate directory.

use super::FilesError;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

const MAX_COMPONENT_LEN: usize = 255;

/// Checks one relative path: not empty or absolute, every `/`-separated
/// component non-empty, not starting with `.` (so no `.`, `..`, `..data` or
/// hidden names), no NUL, at most 255 bytes.
pub fn validate_path(path: &Path) -> Result<(), FilesError> {
    let invalid = |reason| {
        Err(FilesError::InvalidPath {
            path: path.to_path_buf(),
            reason,
        })
    };
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return invalid("empty path");
    }
    if bytes.first() == Some(&b'/') {
        return invalid("absolute path");
    }
    for component in bytes.split(|b| *b == b'/') {
        if component.is_empty() {
            return invalid("empty path component");
        }
        if component.first() == Some(&b'.') {
            return invalid("a path component starts with '.'");
        }
        if component.contains(&0) {
            return invalid("NUL in path");
        }
        if component.len() > MAX_COMPONENT_LEN {
            return invalid("path component longer than 255 bytes");
        }
    }
    Ok(())
}

/// Validates every path and that no file is also a directory of another;
/// returns the top-level names.
pub(super) fn validate_set(
    files: &BTreeMap<PathBuf, Vec<u8>>,
) -> Result<BTreeSet<OsString>, FilesError> {
    let mut top = BTreeSet::new();
    for path in files.keys() {
        validate_path(path)?;
        if path.ancestors().skip(1).any(|a| files.contains_key(a)) {
            return Err(FilesError::InvalidPath {
                path: path.clone(),
                reason: "a parent of this path is published as a file",
            });
        }
        if let Some(first) = path.iter().next() {
            top.insert(first.to_os_string());
        }
    }
    Ok(top)
}

pub(super) fn mode_for(rel: &Path) -> u32 {
    if rel.extension() == Some(OsStr::new("key")) {
        0o600
    } else {
        0o644
    }
}

pub(super) fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), FilesError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io_err("create", path))?;
    // fchmod before any byte is written, so a key is never world-readable,
    // and independent of the umask.
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_err("chmod", path))?;
    file.write_all(content).map_err(io_err("write", path))
}

pub(super) fn sync_dir(path: &Path) -> Result<(), FilesError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err("fsync", path))
}

pub(super) fn remove_if_exists(path: &Path) -> Result<(), FilesError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

pub(super) fn read_tree(
    dir: &Path,
    rel: &Path,
    out: &mut BTreeMap<PathBuf, Vec<u8>>,
) -> Result<(), FilesError> {
    for entry in fs::read_dir(dir).map_err(io_err("read dir", dir))? {
        let entry = entry.map_err(io_err("read dir", dir))?;
        let path = entry.path();
        let rel = rel.join(entry.file_name());
        if entry.file_type().map_err(io_err("stat", &path))?.is_dir() {
            read_tree(&path, &rel, out)?;
        } else {
            out.insert(rel, fs::read(&path).map_err(io_err("read", &path))?);
        }
    }
    Ok(())
}

/// `..` + digits, `_` and `.`: what [`payload_name`] produces.
pub(super) fn is_payload_name(name: &OsStr) -> bool {
    match name.as_bytes().strip_prefix(b"..") {
        Some(rest) => {
            rest.first().is_some_and(u8::is_ascii_digit)
                && rest
                    .iter()
                    .all(|b| b.is_ascii_digit() || *b == b'_' || *b == b'.')
        }
        None => false,
    }
}

/// `..YYYY_MM_DD_HH_MM_SS.nnnnnnnnn` (UTC), like the kubelet's.
pub(super) fn payload_name(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let stamp = jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!(
        "..{}.{:09}",
        stamp.strftime("%Y_%m_%d_%H_%M_%S"),
        since.subsec_nanos()
    )
}

pub(super) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FilesError {
    let path = path.to_path_buf();
    move |source| FilesError::Io { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn payload_names_are_kubelet_style_utc_timestamps() {
        let t = UNIX_EPOCH + Duration::new(1_795_376_401, 123_456_789);
        assert_eq!(payload_name(t), "..2026_11_22_19_40_01.123456789");
        assert_eq!(payload_name(UNIX_EPOCH), "..1970_01_01_00_00_00.000000000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(payload_name(leap), "..2000_02_29_00_00_00.000000000");
        assert!(is_payload_name(OsStr::new(&payload_name(t))));
        for other in ["..data", "..data_tmp", "..lock", "shop", "..", "..x1"] {
            assert!(!is_payload_name(OsStr::new(other)), "{other}");
        }
    }
}
