//! SDS secrets served from files laid out the way the kubelet mounts a
//! Secret or ConfigMap volume, so Envoy sees rotations exactly as in a pod:
//!
//! ```text
//! <dir>/..2026_11_22_18_52_02.931000000/sds.yaml   the payload
//! <dir>/..data -> ..2026_11_22_18_52_02.931000000  swapped atomically
//! <dir>/sds.yaml -> ..data/sds.yaml                what Envoy's path names
//! ```
//!
//! A rotation writes a fresh timestamped directory, points a temporary
//! symlink at it and `rename()`s that over `..data` (one atomic step, which
//! Envoy's `watched_directory` sees as a move), then removes the old payload.
//!
//! Each file holds exactly one `Secret`: Envoy's SDS subscription for a
//! resource name rejects an update carrying any other number of resources
//! ("Unexpected SDS secrets length"), so several secrets in one volume means
//! several files, all swapped together by the same `..data` rename.
//!
//! With [`PemEncoding::Files`] the volume holds PEM files instead and the
//! SDS resource file lives beside it (`<dir>/config/`, as if from a
//! ConfigMap) naming them: a rotation swaps only the PEM files, seen by the
//! Secret's own `watched_directory`, and the resource file Envoy subscribed
//! to never changes. That is the one case in which Envoy 1.36 moves no
//! stamp in `config_dump` (see the filter's `tripwire` module).

use crate::pki::TestCert;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

pub const SECRET_TYPE: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/// File name used when a directory holds a single secret.
pub const DEFAULT_FILE: &str = "sds.yaml";
const DATA_LINK: &str = "..data";
const DATA_TMP_LINK: &str = "..data_tmp";
/// Where [`PemEncoding::Files`] resource files live, outside the payload.
const CONFIG_DIR: &str = "config";

/// How the PEM blocks are carried in the Secret's `DataSource`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PemEncoding {
    /// `inline_string`: the PEM text as is.
    #[default]
    InlineString,
    /// `inline_bytes`: base64 of the PEM, as Istio's SDS server sends it.
    InlineBytes,
    /// `filename`s of `<stem>.crt` and `<stem>.key` in the volume, with the
    /// Secret's `watched_directory` on it (see the module doc).
    Files,
}

/// One TLS certificate secret: an SDS resource name, chain and key.
#[derive(Clone, PartialEq, Eq)]
pub struct TlsSecret {
    pub name: String,
    pub chain_pem: String,
    pub key_pem: String,
    pub encoding: PemEncoding,
}

impl fmt::Debug for TlsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSecret")
            .field("name", &self.name)
            .field(
                "chain_pem",
                &format_args!("<{} bytes>", self.chain_pem.len()),
            )
            .field("key_pem", &format_args!("<redacted>"))
            .field("encoding", &self.encoding)
            .finish()
    }
}

impl TlsSecret {
    pub fn new(
        name: impl Into<String>,
        chain_pem: impl Into<String>,
        key_pem: impl Into<String>,
    ) -> Self {
        TlsSecret {
            name: name.into(),
            chain_pem: chain_pem.into(),
            key_pem: key_pem.into(),
            encoding: PemEncoding::InlineString,
        }
    }

    /// The secret named `name` holding `cert`'s chain and key.
    pub fn from_cert(name: impl Into<String>, cert: &TestCert) -> Self {
        TlsSecret::new(name, cert.chain_pem.clone(), cert.key_pem.clone())
    }

    pub fn with_encoding(mut self, encoding: PemEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The `Secret` resource as it appears in a DiscoveryResponse; a
    /// [`PemEncoding::Files`] secret names `<volume>/<stem>.crt` and `.key`.
    pub fn to_resource(&self, volume: &Path, stem: &str) -> Value {
        let source = |pem: &str, ext: &str| match self.encoding {
            PemEncoding::InlineString => json!({ "inline_string": pem }),
            PemEncoding::InlineBytes => json!({ "inline_bytes": base64(pem.as_bytes()) }),
            PemEncoding::Files => json!({ "filename": volume.join(format!("{stem}.{ext}")) }),
        };
        let mut tls = json!({
            "certificate_chain": source(&self.chain_pem, "crt"),
            "private_key": source(&self.key_pem, "key"),
        });
        if self.encoding == PemEncoding::Files {
            tls["watched_directory"] = json!({ "path": volume });
        }
        json!({ "@type": SECRET_TYPE, "name": self.name, "tls_certificate": tls })
    }
}

/// Where Envoy reads one SDS resource from: what goes in a
/// `tls_certificate_sds_secret_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdsSource {
    /// SDS resource name (`kubernetes://...`).
    pub resource: String,
    /// `<dir>/<file>`, the user-visible symlink.
    pub path: PathBuf,
    /// `<dir>`, watched for the `..data` swap; `None` when the file itself
    /// never changes ([`PemEncoding::Files`]: the Secret watches the volume).
    pub watched_directory: Option<PathBuf>,
}

impl SdsSource {
    /// An `SdsSecretConfig` for this resource.
    pub fn to_secret_config(&self) -> Value {
        let mut source = json!({ "path": self.path });
        if let Some(dir) = &self.watched_directory {
            source["watched_directory"] = json!({ "path": dir });
        }
        json!({
            "name": self.resource,
            "sds_config": { "path_config_source": source },
        })
    }
}

/// A Kubernetes-style volume directory of SDS files.
pub struct SdsDir {
    root: PathBuf,
    /// File name → secret, as currently published.
    files: BTreeMap<String, TlsSecret>,
    /// Names in the current payload (the links beside `..data`).
    payload: BTreeSet<String>,
    /// `version_info` written into every file's DiscoveryResponse.
    version_info: Option<String>,
    current: Option<String>,
    _temp: Option<TempDir>,
}

impl fmt::Debug for SdsDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdsDir")
            .field("root", &self.root)
            .field("files", &self.files)
            .field("current", &self.current)
            .finish()
    }
}

impl SdsDir {
    /// An empty volume at `root` (created if missing). Nothing is published
    /// yet: call [`SdsDir::set`] or [`SdsDir::publish`] before Envoy starts.
    pub fn create(root: impl Into<PathBuf>) -> Result<SdsDir> {
        let root = root.into();
        fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        Ok(SdsDir {
            root,
            files: BTreeMap::new(),
            payload: BTreeSet::new(),
            version_info: None,
            current: None,
            _temp: None,
        })
    }

    /// An empty volume in a new temp directory, removed on drop.
    pub fn temp() -> Result<SdsDir> {
        let temp = tempfile::Builder::new().prefix("certsync-sds-").tempdir()?;
        let mut dir = SdsDir::create(temp.path().to_path_buf())?;
        dir._temp = Some(temp);
        Ok(dir)
    }

    /// A volume at `root` holding `secret` in `sds.yaml`, published.
    pub fn single(root: impl Into<PathBuf>, secret: TlsSecret) -> Result<SdsDir> {
        let mut dir = SdsDir::create(root)?;
        dir.set(DEFAULT_FILE, secret)?;
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sets the DiscoveryResponse `version_info` for the next publish (Envoy
    /// then reports it as the secret's version); `None` leaves it out.
    pub fn set_version_info(&mut self, version: Option<String>) {
        self.version_info = version;
    }

    /// Adds or replaces the secret in `file`, then publishes the volume.
    pub fn set(&mut self, file: &str, secret: TlsSecret) -> Result<()> {
        let mut files = self.files.clone();
        files.insert(file.to_owned(), secret);
        self.publish(files)
    }

    /// Removes `file`, then publishes the volume.
    pub fn remove(&mut self, file: &str) -> Result<()> {
        let mut files = self.files.clone();
        if files.remove(file).is_none() {
            bail!("{} holds no file {file}", self.root.display());
        }
        self.publish(files)
    }

    /// Replaces the secret with the same resource name as `secret` (wherever
    /// it lives), then publishes the volume.
    pub fn rotate(&mut self, secret: TlsSecret) -> Result<()> {
        let file = self
            .files
            .iter()
            .find(|(_, s)| s.name == secret.name)
            .map(|(f, _)| f.clone())
            .ok_or_else(|| anyhow!("{} holds no secret {}", self.root.display(), secret.name))?;
        self.set(&file, secret)
    }

    /// The secret currently published in `file`.
    pub fn secret(&self, file: &str) -> Option<&TlsSecret> {
        self.files.get(file)
    }

    /// Where Envoy finds resource `resource` in this volume.
    pub fn source(&self, resource: &str) -> Result<SdsSource> {
        let (file, secret) = self
            .files
            .iter()
            .find(|(_, s)| s.name == resource)
            .ok_or_else(|| anyhow!("{} holds no secret {resource}", self.root.display()))?;
        Ok(if secret.encoding == PemEncoding::Files {
            SdsSource {
                resource: resource.to_owned(),
                path: self.root.join(CONFIG_DIR).join(file),
                watched_directory: None,
            }
        } else {
            SdsSource {
                resource: resource.to_owned(),
                path: self.root.join(file),
                watched_directory: Some(self.root.clone()),
            }
        })
    }

    /// The timestamped payload directory `..data` points at now.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.current.as_ref().map(|name| self.root.join(name))
    }

    /// Publishes exactly `files` (file name → secret) with one atomic
    /// `..data` swap, the way the kubelet's AtomicWriter does.
    pub fn publish(&mut self, files: BTreeMap<String, TlsSecret>) -> Result<()> {
        for name in files.keys() {
            if name.is_empty() || name.starts_with('.') || name.contains('/') {
                bail!("bad SDS file name {name:?}");
            }
        }
        // 1. The payload, in a fresh timestamped directory.
        let ts_name = self.fresh_timestamp_dir()?;
        let ts_dir = self.root.join(&ts_name);
        let mut payload = BTreeSet::new();
        for (name, secret) in &files {
            let stem = name.split_once('.').map_or(name.as_str(), |(s, _)| s);
            let mut response = json!({ "resources": [secret.to_resource(&self.root, stem)] });
            if let Some(version) = &self.version_info {
                response["version_info"] = json!(version);
            }
            let text = serde_json::to_string_pretty(&response)?;
            if secret.encoding == PemEncoding::Files {
                write(&ts_dir.join(format!("{stem}.crt")), &secret.chain_pem)?;
                write(&ts_dir.join(format!("{stem}.key")), &secret.key_pem)?;
                payload.extend([format!("{stem}.crt"), format!("{stem}.key")]);
                // Outside the payload, rewritten only when it changes.
                let config = self.root.join(CONFIG_DIR);
                fs::create_dir_all(&config)?;
                let path = config.join(name);
                if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                    write(&path, &text)?;
                }
            } else {
                write(&ts_dir.join(name), &text)?;
                payload.insert(name.clone());
            }
        }
        // 2. `..data_tmp -> ..<ts>`, renamed over `..data`: the atomic step.
        let tmp_link = self.root.join(DATA_TMP_LINK);
        remove_if_exists(&tmp_link)?;
        symlink(&ts_name, &tmp_link).with_context(|| format!("linking {}", tmp_link.display()))?;
        let data_link = self.root.join(DATA_LINK);
        fs::rename(&tmp_link, &data_link).with_context(|| {
            format!(
                "renaming {} over {}",
                tmp_link.display(),
                data_link.display()
            )
        })?;
        // 3. User-visible links for new files; stale ones go.
        for name in &payload {
            let link = self.root.join(name);
            if fs::symlink_metadata(&link).is_err() {
                symlink(Path::new(DATA_LINK).join(name), &link)
                    .with_context(|| format!("linking {}", link.display()))?;
            }
        }
        for name in self.payload.iter().filter(|n| !payload.contains(*n)) {
            remove_if_exists(&self.root.join(name))?;
        }
        self.payload = payload;
        // 4. The old payload.
        if let Some(old) = self.current.replace(ts_name) {
            fs::remove_dir_all(self.root.join(&old))
                .with_context(|| format!("removing the old payload {old}"))?;
        }
        self.files = files;
        Ok(())
    }

    /// Creates and returns the name of a new `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN` directory.
    fn fresh_timestamp_dir(&self) -> Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
        let mut nanos = now.as_nanos();
        for _ in 0..1000 {
            let name = timestamp_dir_name(nanos);
            match fs::create_dir(self.root.join(&name)) {
                Ok(()) => return Ok(name),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => nanos += 1,
                Err(e) => return Err(e).with_context(|| format!("creating {name}")),
            }
        }
        bail!(
            "could not create a fresh payload directory in {}",
            self.root.display()
        )
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The kubelet's payload directory name for a Unix time in nanoseconds.
fn timestamp_dir_name(unix_nanos: u128) -> String {
    let secs = i64::try_from(unix_nanos / 1_000_000_000).unwrap_or(i64::MAX);
    let stamp = jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format!(
        "..{}.{:09}",
        stamp.strftime("%Y_%m_%d_%H_%M_%S"),
        unix_nanos % 1_000_000_000
    )
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, marker: &str) -> TlsSecret {
        TlsSecret::new(name, format!("CHAIN {marker}"), format!("KEY {marker}"))
    }

    #[test]
    fn names_payload_dirs_like_the_kubelet() {
        assert_eq!(timestamp_dir_name(0), "..1970_01_01_00_00_00.000000000");
        // 2026-11-22T18:52:02.931000001Z
        assert_eq!(
            timestamp_dir_name(1_795_373_522_931_000_001),
            "..2026_11_22_18_52_02.931000001"
        );
        assert_eq!(
            timestamp_dir_name(1_709_164_800_000_000_000),
            "..2024_02_29_00_00_00.000000000"
        );
    }

    #[test]
    fn encodes_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"[redacted]"), "W3JlZGFjdGVkXQ==");
    }

    #[test]
    fn lays_out_and_rotates_like_a_kubernetes_volume() {
        let mut dir = SdsDir::temp().unwrap();
        dir.set(DEFAULT_FILE, secret("kubernetes://a", "1"))
            .unwrap();
        let first = dir.data_dir().unwrap();
        let root = dir.root().to_path_buf();
        assert_eq!(
            fs::read_link(root.join("..data")).unwrap(),
            Path::new(first.file_name().unwrap())
        );
        assert_eq!(
            fs::read_link(root.join("sds.yaml")).unwrap(),
            Path::new("..data/sds.yaml")
        );
        let doc: Value =
            serde_json::from_str(&fs::read_to_string(root.join("sds.yaml")).unwrap()).unwrap();
        assert_eq!(doc["resources"][0]["name"], "kubernetes://a");
        assert_eq!(doc["resources"][0]["@type"], SECRET_TYPE);
        assert_eq!(
            doc["resources"][0]["tls_certificate"]["certificate_chain"]["inline_string"],
            "CHAIN 1"
        );

        dir.rotate(secret("kubernetes://a", "2")).unwrap();
        let second = dir.data_dir().unwrap();
        assert_ne!(first, second);
        assert!(!first.exists(), "old payload removed");
        assert!(!root.join("..data_tmp").exists());
        let text = fs::read_to_string(root.join("sds.yaml")).unwrap();
        assert!(text.contains("CHAIN 2"));

        let source = dir.source("kubernetes://a").unwrap();
        assert_eq!(source.path, root.join("sds.yaml"));
        assert_eq!(source.watched_directory, Some(root.clone()));
        assert!(dir.source("kubernetes://nope").is_err());
        assert!(dir.rotate(secret("kubernetes://nope", "3")).is_err());
    }

    #[test]
    fn pem_files_rotate_under_a_resource_file_that_never_changes() {
        let mut dir = SdsDir::temp().unwrap();
        let files = |m: &str| secret("kubernetes://a", m).with_encoding(PemEncoding::Files);
        dir.set("a.yaml", files("1")).unwrap();
        let root = dir.root().to_path_buf();
        let source = dir.source("kubernetes://a").unwrap();
        assert_eq!(source.path, root.join("config/a.yaml"));
        assert_eq!(source.watched_directory, None);
        let config = source.to_secret_config();
        assert!(config["sds_config"]["path_config_source"]
            .get("watched_directory")
            .is_none());
        let resource_text = fs::read_to_string(&source.path).unwrap();
        let doc: Value = serde_json::from_str(&resource_text).unwrap();
        let tls = &doc["resources"][0]["tls_certificate"];
        assert_eq!(
            tls["certificate_chain"]["filename"],
            json!(root.join("a.crt"))
        );
        assert_eq!(tls["private_key"]["filename"], json!(root.join("a.key")));
        assert_eq!(tls["watched_directory"]["path"], json!(root));
        assert_eq!(fs::read_to_string(root.join("a.crt")).unwrap(), "CHAIN 1");
        assert!(
            !root.join("a.yaml").exists(),
            "no resource file in the payload"
        );

        let modified = fs::metadata(&source.path).unwrap().modified().unwrap();
        dir.rotate(files("2")).unwrap();
        assert_eq!(fs::read_to_string(root.join("a.crt")).unwrap(), "CHAIN 2");
        assert_eq!(fs::read_to_string(root.join("a.key")).unwrap(), "KEY 2");
        assert_eq!(fs::read_to_string(&source.path).unwrap(), resource_text);
        assert_eq!(
            fs::metadata(&source.path).unwrap().modified().unwrap(),
            modified,
            "the resource file is not rewritten"
        );
    }

    #[test]
    fn several_files_swap_together() {
        let mut dir = SdsDir::temp().unwrap();
        dir.set("a.yaml", secret("kubernetes://a", "1")).unwrap();
        dir.set(
            "b.yaml",
            secret("kubernetes://b", "1").with_encoding(PemEncoding::InlineBytes),
        )
        .unwrap();
        let root = dir.root().to_path_buf();
        let b: Value =
            serde_json::from_str(&fs::read_to_string(root.join("b.yaml")).unwrap()).unwrap();
        assert_eq!(
            b["resources"][0]["tls_certificate"]["private_key"]["inline_bytes"],
            base64(b"KEY 1")
        );
        dir.remove("a.yaml").unwrap();
        assert!(fs::symlink_metadata(root.join("a.yaml")).is_err());
        assert!(root.join("b.yaml").exists());
        let payloads = fs::read_dir(&root)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy();
                name.starts_with("..2") || name.starts_with("..1")
            })
            .count();
        assert_eq!(payloads, 1, "one payload directory at a time");
    }

    #[test]
    fn writes_version_info_when_asked() {
        let mut dir = SdsDir::temp().unwrap();
        dir.set_version_info(Some("v7".into()));
        dir.set(DEFAULT_FILE, secret("kubernetes://a", "1"))
            .unwrap();
        let doc: Value =
            serde_json::from_str(&fs::read_to_string(dir.root().join("sds.yaml")).unwrap())
                .unwrap();
        assert_eq!(doc["version_info"], "v7");
    }

    #[test]
    fn debug_output_hides_keys() {
        let text = format!("{:?}", secret("kubernetes://a", "SECRETMARKER"));
        assert!(!text.contains("KEY SECRETMARKER"), "{text}");
    }
}
