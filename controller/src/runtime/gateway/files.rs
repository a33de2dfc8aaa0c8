//! `directory` mode: publish a set of files (`<namespace>/<name>.crt` and
//! `.key`) under a certificate directory so that a reader never sees a new
//! certificate with an old key, nor a half-written file — even if cert-sync
//! is killed mid-write.
//!
//! The layout is the kubelet's AtomicWriter (Secret and ConfigMap volumes),
//! which Envoy's `watched_directory` and istio-agent already understand:
//!
//! ```text
//! <certdir>/..lock                                      flock: one writer at a time
//! <certdir>/..2026_11_22_19_40_01.123456789/            payload: a fresh dir per publish
//!               shop/shop-tls.crt   (0644)
//!               shop/shop-tls.key   (0600)
//! <certdir>/..data -> ..2026_11_22_19_40_01.123456789   the only thing that is ever swapped
//! <certdir>/shop   -> ..data/shop                       one link per top-level entry
//! ```
//!
//! Readers use `<certdir>/shop/shop-tls.crt`; every such path goes through
//! `..data`, so the whole tree changes in the instant `..data` is renamed.
//!
//! # Order of a publish, and why
//!
//! 1. **Compare with what is live.** Identical → nothing is touched (no new
//!    payload, no mtime change): Envoy would reload on any move of `..data`.
//! 2. **Fill a fresh payload dir, fsync files and dirs.** Changed files are
//!    written (`.key` 0600, others 0644, set before the first byte);
//!    unchanged ones are hard-linked from the live payload — files are
//!    never modified in place, so sharing an inode is safe, and a rotation
//!    of one pair among thousands writes and syncs two files. Nothing
//!    references the dir yet, so a crash here leaves only an orphan that
//!    [`DirectoryPublisher::open`] removes. The fsyncs make the content
//!    durable *before* anything points at it: after a power loss `..data`
//!    must never name a dir with empty or missing files.
//! 3. **Create the new top-level links, fsync the root.** A new namespace's
//!    link dangles until the swap (a reader gets `ENOENT`, exactly as before),
//!    then resolves at the instant of the swap, so new namespaces appear in
//!    the same step as their files.
//! 4. **Swap `..data`:** symlink `..data_tmp` → new payload, then
//!    `rename(2)` it over `..data`, fsync the root. `rename` replaces the
//!    link atomically: every path resolution sees the old payload or the new
//!    one, never a mixture and never nothing.
//! 5. **Remove stale top-level links.** Only now: before the swap they still
//!    served live files; after it they dangle.
//! 6. **Remove the old payload dir** last. A reader that resolved `..data`
//!    just before the swap may then get `ENOENT` and retry; files it already
//!    opened stay readable. It never reads a mixed pair.
//!
//! A crash anywhere leaves `..data` on the old payload (before the rename)
//! or on the new one (after it); [`DirectoryPublisher::open`] removes the leftovers
//! (`..data_tmp`, payload dirs that are not the `..data` target, dangling
//! links) and restores missing links.
//!
//! # What a reader may rely on
//!
//! - Each file opened through `<certdir>/...` is complete (never short or
//!   empty): files are never rewritten in place.
//! - A certificate and its key read through **one** resolution of `..data`
//!   (read the link once, then read both under the payload dir it names; or
//!   open the dir once and read relative to it) always belong together. Two
//!   independent opens of `<certdir>/ns/a.crt` and `<certdir>/ns/a.key` may
//!   straddle a swap; reading `..data` before and after and retrying when it
//!   moved gives the same guarantee (payload names are never reused).
//!
//! Keys are 0600 and owned by cert-sync's user: the gateway container must
//! run as the same uid (or root) to read them.
//!
//! Published names come from tenants (namespace and Secret names), so every
//! relative path is validated ([`validate_path`]): no absolute paths, no
//! `..`, no component starting with `.` (which would escape the root or
//! collide with `..data`). Top-level entries that cert-sync did not create
//! are never replaced or removed. File contents (key material) never appear
//! in errors or logs; only paths do.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

mod steps;
pub use steps::validate_path;
use steps::*;

/// The link readers go through; it names the live payload dir.
pub const DATA_LINK: &str = "..data";
const DATA_TMP: &str = "..data_tmp";
const LOCK_FILE: &str = "..lock";

/// What went wrong. Messages name paths, never file contents.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("refusing to publish {}: {reason}", path.display())]
    InvalidPath { path: PathBuf, reason: &'static str },
    #[error("{} exists and was not created by cert-sync; refusing to replace it", path.display())]
    Conflict { path: PathBuf },
    #[error("{op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A fault injected with [`DirectoryPublisher::with_fault`]: the publish
    /// stopped at that step as if the process had been killed there.
    #[error("injected fault at step {0:?}")]
    Injected(Step),
}

/// The steps of a publish at which a test can stop it (as if killed),
/// in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The first file of the new payload is written, the others are not.
    PartialPayload,
    /// The new payload is complete and synced; nothing references it.
    PayloadWritten,
    /// New top-level links exist (dangling for new namespaces).
    LinksCreated,
    /// `..data_tmp` names the new payload; `..data` still the old one.
    TempLinkCreated,
    /// `..data` names the new payload; stale links and old payload remain.
    Swapped,
    /// Stale links are gone; the old payload dir remains.
    StaleLinksRemoved,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::PartialPayload,
        Step::PayloadWritten,
        Step::LinksCreated,
        Step::TempLinkCreated,
        Step::Swapped,
        Step::StaleLinksRemoved,
    ];
}

/// Result of [`DirectoryPublisher::publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The live set already was exactly this; nothing was written.
    Unchanged,
    /// A new payload was swapped in.
    Published {
        /// Name of the new payload dir (e.g. `..2026_11_22_19_40_01.123456789`).
        payload: String,
        /// Paths that are new or whose content changed.
        changed: BTreeSet<PathBuf>,
        /// Paths that were live before and are gone now.
        removed: BTreeSet<PathBuf>,
    },
}

/// Publishes file sets atomically under one root (the certificate dir).
///
/// Holds no state besides the root: every call reads the disk, so a
/// restarted process (or another one) carries on where the last one stopped.
/// Writers on the same root are serialised by an `flock` on `<root>/..lock`.
#[derive(Debug)]
pub struct DirectoryPublisher {
    root: PathBuf,
    fault: Option<Step>,
}

impl DirectoryPublisher {
    /// Opens `root` (creating it if missing) and recovers from a crashed
    /// publish: removes `..data_tmp`, payload dirs that `..data` does not
    /// name, and dangling links; restores missing top-level links.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, FilesError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_err("create", &root))?;
        let publisher = DirectoryPublisher { root, fault: None };
        let _lock = publisher.lock()?;
        publisher.clean_up()?;
        Ok(publisher)
    }

    /// For tests: make [`publish`](Self::publish) stop at `step`, leaving
    /// the disk exactly as a process killed there would, and return
    /// [`FilesError::Injected`].
    pub fn with_fault(mut self, step: Step) -> Self {
        self.fault = Some(step);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The live set: relative path → content, read through one resolution
    /// of `..data`. Empty before the first publish.
    pub fn current(&self) -> Result<BTreeMap<PathBuf, Vec<u8>>, FilesError> {
        let _lock = self.lock()?;
        self.read_live()
    }

    /// Makes `files` (relative path → content) the live set, atomically.
    /// Every path is validated first; a bad path or a conflict with an entry
    /// cert-sync does not manage is an error and nothing is written.
    pub fn publish(
        &self,
        files: &BTreeMap<PathBuf, Vec<u8>>,
    ) -> Result<PublishOutcome, FilesError> {
        let top = validate_set(files)?;
        let _lock = self.lock()?;
        let live = self.read_live()?;
        if live == *files {
            self.reconcile_links(&top)?;
            return Ok(PublishOutcome::Unchanged);
        }
        for name in &top {
            self.check_link_slot(name)?;
        }

        let old = self.live_target()?.map(|target| (target, &live));
        let payload = self.create_payload_dir()?;
        if let Err(e) = self.stage_and_swap(&payload, files, old, &top) {
            let live_now = self.live_target().ok().flatten();
            if !matches!(e, FilesError::Injected(_)) && live_now.as_ref() != Some(&payload) {
                // Best effort: never leave an orphan behind a real error.
                let _ = fs::remove_dir_all(self.root.join(&payload));
            }
            return Err(e);
        }
        self.fault_point(Step::Swapped)?;
        self.reconcile_links(&top)?;
        self.fault_point(Step::StaleLinksRemoved)?;
        self.remove_leftovers()?;

        let changed: BTreeSet<PathBuf> = files
            .iter()
            .filter(|(path, content)| live.get(*path) != Some(*content))
            .map(|(path, _)| path.clone())
            .collect();
        let removed: BTreeSet<PathBuf> = live
            .keys()
            .filter(|path| !files.contains_key(*path))
            .cloned()
            .collect();
        let payload = payload.to_string_lossy().into_owned();
        tracing::info!(
            root = %self.root.display(),
            %payload,
            files = files.len(),
            changed = changed.len(),
            removed = removed.len(),
            "published certificate files"
        );
        Ok(PublishOutcome::Published {
            payload,
            changed,
            removed,
        })
    }

    /// Steps 2–4 of the module doc: payload, links, swap.
    fn stage_and_swap(
        &self,
        payload: &OsStr,
        files: &BTreeMap<PathBuf, Vec<u8>>,
        old: Option<(OsString, &BTreeMap<PathBuf, Vec<u8>>)>,
        top: &BTreeSet<OsString>,
    ) -> Result<(), FilesError> {
        let dir = self.root.join(payload);
        let mut dirs = BTreeSet::new();
        let mut written = Vec::new();
        for (i, (rel, content)) in files.iter().enumerate() {
            let path = dir.join(rel);
            if let Some(parent) = path.parent().filter(|p| !dirs.contains(*p)) {
                fs::create_dir_all(parent).map_err(io_err("create", parent))?;
                let inside = parent.ancestors().take_while(|a| *a != dir);
                dirs.extend(inside.map(Path::to_path_buf));
            }
            let linked = match &old {
                Some((old_dir, live)) if live.get(rel) == Some(content) => {
                    fs::hard_link(self.root.join(old_dir).join(rel), &path).is_ok()
                }
                _ => false,
            };
            if !linked {
                write_file(&path, content, mode_for(rel))?;
                written.push(path);
            }
            if i == 0 {
                self.fault_point(Step::PartialPayload)?;
            }
        }
        // Sync after writing everything (the first fsync's journal commit
        // flushes most of it: 2,000 files in ~0.5 s instead of ~2.5 s), then
        // the dirs deepest first and the payload dir itself.
        for path in &written {
            File::open(path)
                .and_then(|f| f.sync_all())
                .map_err(io_err("fsync", path))?;
        }
        for d in dirs.iter().rev() {
            sync_dir(d)?;
        }
        sync_dir(&dir)?;
        self.fault_point(Step::PayloadWritten)?;

        for name in top {
            self.ensure_link(name)?;
        }
        sync_dir(&self.root)?;
        self.fault_point(Step::LinksCreated)?;

        let tmp = self.root.join(DATA_TMP);
        remove_if_exists(&tmp)?;
        symlink(payload, &tmp).map_err(io_err("symlink", &tmp))?;
        self.fault_point(Step::TempLinkCreated)?;
        let data = self.root.join(DATA_LINK);
        fs::rename(&tmp, &data).map_err(io_err("rename to ..data", &tmp))?;
        sync_dir(&self.root)
    }

    fn fault_point(&self, step: Step) -> Result<(), FilesError> {
        match self.fault {
            Some(f) if f == step => Err(FilesError::Injected(step)),
            _ => Ok(()),
        }
    }

    /// Exclusive `flock` on `<root>/..lock`, released when the file drops
    /// (or the process dies).
    fn lock(&self) -> Result<File, FilesError> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        file.lock().map_err(io_err("lock", &path))?;
        Ok(file)
    }

    /// The payload dir `..data` names, if any.
    fn live_target(&self) -> Result<Option<OsString>, FilesError> {
        let data = self.root.join(DATA_LINK);
        match fs::read_link(&data) {
            Ok(target) => Ok(Some(target.into_os_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read link", &data)(e)),
        }
    }

    fn read_live(&self) -> Result<BTreeMap<PathBuf, Vec<u8>>, FilesError> {
        let mut out = BTreeMap::new();
        if let Some(target) = self.live_target()? {
            read_tree(&self.root.join(target), Path::new(""), &mut out)?;
        }
        Ok(out)
    }

    /// Names of the top-level entries of the live payload.
    fn live_top(&self) -> Result<BTreeSet<OsString>, FilesError> {
        let mut out = BTreeSet::new();
        if let Some(target) = self.live_target()? {
            let dir = self.root.join(target);
            for entry in fs::read_dir(&dir).map_err(io_err("read dir", &dir))? {
                out.insert(entry.map_err(io_err("read dir", &dir))?.file_name());
            }
        }
        Ok(out)
    }

    fn create_payload_dir(&self) -> Result<OsString, FilesError> {
        let now = SystemTime::now();
        let mut attempt = 0u32;
        loop {
            let name = payload_name(now + Duration::from_nanos(u64::from(attempt)));
            let path = self.root.join(&name);
            match fs::create_dir(&path) {
                Ok(()) => return Ok(name.into()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1
                }
                Err(e) => return Err(io_err("create", &path)(e)),
            }
        }
    }

    /// A top-level entry `name` is free, or already our link.
    fn check_link_slot(&self, name: &OsStr) -> Result<(), FilesError> {
        let path = self.root.join(name);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("stat", &path)(e)),
            Ok(_) if self.is_our_link(name)? => Ok(()),
            Ok(_) => Err(FilesError::Conflict { path }),
        }
    }

    fn ensure_link(&self, name: &OsStr) -> Result<(), FilesError> {
        self.check_link_slot(name)?;
        let path = self.root.join(name);
        match symlink(Path::new(DATA_LINK).join(name), &path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.is_our_link(name)? => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(FilesError::Conflict { path })
            }
            Err(e) => Err(io_err("symlink", &path)(e)),
        }
    }

    /// `<root>/<name>` is a symlink to `..data/<name>` (the only kind of
    /// top-level entry cert-sync creates, removes or replaces).
    fn is_our_link(&self, name: &OsStr) -> Result<bool, FilesError> {
        let path = self.root.join(name);
        match fs::read_link(&path) {
            Ok(target) => Ok(target == Path::new(DATA_LINK).join(name)),
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(false), // not a link
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("read link", &path)(e)),
        }
    }

    /// Exactly the links in `want` exist (others of ours are removed).
    fn reconcile_links(&self, want: &BTreeSet<OsString>) -> Result<(), FilesError> {
        for entry in fs::read_dir(&self.root).map_err(io_err("read dir", &self.root))? {
            let name = entry.map_err(io_err("read dir", &self.root))?.file_name();
            if name.as_bytes().first() != Some(&b'.')
                && !want.contains(&name)
                && self.is_our_link(&name)?
            {
                let path = self.root.join(&name);
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                tracing::debug!(path = %path.display(), "removed stale link");
            }
        }
        // Repair every link we can; report the first entry in the way.
        let mut conflict = None;
        for name in want {
            match self.ensure_link(name) {
                Err(e @ FilesError::Conflict { .. }) => {
                    conflict.get_or_insert(e);
                }
                other => other?,
            }
        }
        conflict.map_or(Ok(()), Err)
    }

    /// Removes `..data_tmp` and every payload dir `..data` does not name.
    fn remove_leftovers(&self) -> Result<(), FilesError> {
        let live = self.live_target()?;
        for entry in fs::read_dir(&self.root).map_err(io_err("read dir", &self.root))? {
            let entry = entry.map_err(io_err("read dir", &self.root))?;
            let name = entry.file_name();
            let path = entry.path();
            if name == DATA_TMP {
                remove_if_exists(&path)?;
            } else if is_payload_name(&name) && live.as_deref() != Some(name.as_os_str()) {
                let is_dir = entry.file_type().map_err(io_err("stat", &path))?.is_dir();
                if is_dir {
                    fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
                    tracing::debug!(path = %path.display(), "removed old payload");
                }
            }
        }
        Ok(())
    }

    /// Recovery after a crash. An entry someone else put where a live link
    /// belongs is only logged here (the publisher stays usable; `publish`
    /// reports it as a [`FilesError::Conflict`]).
    fn clean_up(&self) -> Result<(), FilesError> {
        self.remove_leftovers()?;
        let top = self.live_top()?;
        match self.reconcile_links(&top) {
            Err(FilesError::Conflict { path }) => {
                tracing::warn!(path = %path.display(), "not created by cert-sync; left in place");
                Ok(())
            }
            other => other,
        }
    }
}
